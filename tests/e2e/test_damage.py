"""Every byte verified: damaged stored bytes against a real ``kvbox serve`` (issue 10).

Layer: tests/e2e. The damage is made for real -- bytes flipped in chunk files on disk
while the server runs -- and the answers are read with real clients: boto3, raw HTTP
(to see exactly which bytes arrive before a cut), raw GW-KV sockets and ``kvbox
client``. What must hold: a damaged read is an error (S3 500 InternalError before the
body starts, a cut connection after; GW-KV ``ERR STORAGE damaged`` or a cut), never a
wrong byte; undamaged ranges still read; /metrics counts; the log names the object once;
writing the same bytes again heals it.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import random
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError  # type: ignore[import-untyped]

from ._gwkv import MiB, err_code
from ._s3 import S3Server, module_server, signed

BUCKET = "damage"
#: The store's chunk size (kvbox.core.store.CHUNK_SIZE): objects are cut at these bytes.
CHUNK = 8 * MiB


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with module_server(tmp_path_factory, "damage") as s:
        s.client().create_bucket(Bucket=BUCKET)
        yield s


def _data(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def chunk_path(data_dir: Path, piece: bytes) -> Path:
    cid = hashlib.sha256(piece).hexdigest()
    return data_dir / "chunks" / cid[:2] / cid[2:4] / cid


def flip(path: Path, at: int, n: int = 4) -> None:
    """Change ``n`` bytes of ``path`` in place at offset ``at`` (size kept)."""
    with open(path, "r+b") as f:
        f.seek(at)
        old = f.read(n)
        f.seek(at)
        f.write(bytes(b ^ 0x5A for b in old))


def raw_get(srv: S3Server, key: str, rng: str | None = None) -> tuple[int, bytes, bool]:
    """GET with a presigned URL over plain HTTP: (status, body bytes received, whether
    the body was complete)."""
    url = srv.client().generate_presigned_url(
        "get_object", Params={"Bucket": BUCKET, "Key": key}, ExpiresIn=300
    )
    path = url.split(str(srv.http_port), 1)[1]
    conn = http.client.HTTPConnection("127.0.0.1", srv.http_port, timeout=30)
    try:
        conn.request("GET", path, headers={"Range": rng} if rng else {})
        resp = conn.getresponse()
        try:
            return resp.status, resp.read(), True
        except http.client.IncompleteRead as exc:
            return resp.status, exc.partial, False
    finally:
        conn.close()


def metric(srv: S3Server, name: str) -> float:
    with urllib.request.urlopen(f"{srv.endpoint}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    assert m, f"{name} not in /metrics"
    return float(m.group(1))


def damage_lines(srv: S3Server, key: str) -> list[str]:
    return [
        line
        for line in srv.server.log_text().splitlines()
        if " ERROR kvbox.integrity: damaged: " in line and f"/{key} version" in line
    ]


def test_damaged_chunks_are_errors_never_wrong_bytes(srv: S3Server) -> None:
    s3 = srv.client()
    data = _data(1, 2 * CHUNK + 3 * MiB)  # three chunks: 8 + 8 + 3 MiB
    s3.put_object(Bucket=BUCKET, Key="big", Body=data)
    pieces = [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]
    reads0 = metric(srv, "kvbox_damaged_reads_total")

    flip(chunk_path(srv.server.data_dir, pieces[1]), 5 * MiB)  # the middle chunk

    # Whole GET through sendfile: 200, then the first chunk, then the connection is cut.
    status, got, complete = raw_get(srv, "big")
    assert status == 200 and not complete
    assert len(got) <= CHUNK and data.startswith(got)
    # The same through boto3: its read fails rather than return short or wrong data.
    body = s3.get_object(Bucket=BUCKET, Key="big")["Body"]
    with pytest.raises(Exception) as caught:
        body.read()
    assert "ClientError" not in type(caught.value).__name__
    # A streamed range (under sendfile's 1 MiB) across the boundary into the damage.
    status, got, complete = raw_get(srv, "big", f"bytes={CHUNK - 1000}-{CHUNK + 1000}")
    assert status == 206 and not complete and data[CHUNK - 1000 :].startswith(got)
    # Ranges that start in the damaged chunk never start: 500 with a clear message,
    # streamed (small) and sendfile (large) alike.
    for rng in (f"bytes={CHUNK + 10}-{CHUNK + 5000}", f"bytes={CHUNK}-{2 * CHUNK + 2 * MiB}"):
        with pytest.raises(ClientError) as err:
            s3.get_object(Bucket=BUCKET, Key="big", Range=rng)
        e = err.value.response
        assert e["ResponseMetadata"]["HTTPStatusCode"] == 500
        assert e["Error"]["Code"] == "InternalError"
        assert "integrity check" in e["Error"]["Message"]
    # Ranges that touch only sound chunks read exactly, through both paths.
    for first, last in ((10, 5000), (2 * CHUNK + 5, 2 * CHUNK + 2 * MiB), (0, CHUNK - 1)):
        got_range = s3.get_object(Bucket=BUCKET, Key="big", Range=f"bytes={first}-{last}")
        assert got_range["Body"].read() == data[first : last + 1]

    # Now the first chunk too: the whole GET is a 500 before any byte of the body.
    flip(chunk_path(srv.server.data_dir, pieces[0]), 100)
    reply = signed(srv, "GET", f"/{BUCKET}/big")
    assert reply.status == 500 and reply.code == "InternalError"
    assert b"integrity check" in reply.body

    # Counted, and logged once for the object however many reads met it.
    assert metric(srv, "kvbox_damaged_reads_total") >= reads0 + 6
    assert len(damage_lines(srv, "big")) == 1, damage_lines(srv, "big")

    # Writing the same bytes again heals the chunk files: every read is whole again.
    s3.put_object(Bucket=BUCKET, Key="big-again", Body=data)
    assert s3.get_object(Bucket=BUCKET, Key="big")["Body"].read() == data
    status, got, complete = raw_get(srv, "big")
    assert (status, complete) == (200, True) and got == data
    assert "Traceback" not in srv.server.new_log()  # damage is one line, not a traceback


def test_damaged_value_over_gwkv(srv: S3Server) -> None:
    """BGET of a damaged chunked value: a damaged first chunk is ``ERR STORAGE
    damaged``; a later one cuts the connection after the good bytes, and ``kvbox client
    bget`` exits non-zero instead of writing a short or wrong file."""
    server = srv.server
    data = _data(2, CHUNK + 2 * MiB)
    with server.connect(timeout=30) as w:
        assert w.bset("value", data).startswith(b"OK ")
    second = chunk_path(server.data_dir, data[CHUNK:])
    flip(second, 1000)
    with server.connect(timeout=30) as w:
        w.send(b"BGET value\n")
        head = w.readline()
        assert head.startswith(b"VALUE %d " % len(data))
        got = w.read_to_close(limit=len(data) + 2)
        assert len(got) < len(data) and data.startswith(got)
    out = server.cli("bget", "value", timeout=60)
    assert out.returncode != 0
    assert out.stdout != data

    flip(chunk_path(server.data_dir, data[:CHUNK]), 7)
    with server.connect(timeout=30) as w:
        reply = w.request(b"BGET value\n")
    assert err_code(reply) == "STORAGE"
    assert reply.startswith(b"ERR STORAGE damaged: kv/value version ")
    with server.connect() as w:  # the server and the connection carry on
        assert w.request(b"PING\n") == b"OK PONG\n"
    assert "Traceback" not in server.new_log()


def test_damage_found_after_a_restart(srv: S3Server) -> None:
    """Bytes changed while the server was stopped are found at the first read after."""
    s3: Any = srv.client()
    data = _data(3, 300_000)  # one chunk, streamed (under sendfile's 1 MiB)
    s3.put_object(Bucket=BUCKET, Key="cold", Body=data)
    assert s3.get_object(Bucket=BUCKET, Key="cold")["Body"].read() == data
    srv.server.terminate()
    flip(chunk_path(srv.server.data_dir, data), 299_990)
    srv.server.start()
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=BUCKET, Key="cold")
    assert err.value.response["Error"]["Code"] == "InternalError"
    s3.put_object(Bucket=BUCKET, Key="cold", Body=data)
    assert s3.get_object(Bucket=BUCKET, Key="cold")["Body"].read() == data


def _flip_in_file(path: Path, needle: bytes) -> None:
    data = bytearray(path.read_bytes())
    at = data.find(needle)
    assert at >= 0 and data.find(needle, at + 1) < 0, f"{needle!r} not once in {path}"
    data[at] ^= 0x20  # 'h' -> 'H': the kind of change the issue saw ("hello" -> "Jello")
    path.write_bytes(bytes(data))


def test_damaged_inline_values_in_the_database(srv: S3Server) -> None:
    """One byte changed in small values inside the SQLite file (server stopped): GW-KV
    GET and BGET answer ERR STORAGE damaged, S3 GET a 500, never the changed value;
    STATS and deletes still work, and writing the key again heals it."""
    server = srv.server
    s3 = srv.client()
    with server.connect() as w:
        assert w.request(b"SET small hello-from-gwkv-0001\n").startswith(b"OK ")
    s3.put_object(Bucket=BUCKET, Key="tiny", Body=b"hello-from-s3-0002")
    server.terminate()  # a clean stop: the journal applied, the WAL checkpointed
    db = server.data_dir / "meta.sqlite3"
    _flip_in_file(db, b"hello-from-gwkv-0001")
    _flip_in_file(db, b"hello-from-s3-0002")
    server.start()

    with server.connect() as w:
        for request in (b"GET small\n", b"BGET small\n", b"GET small\n"):
            reply = w.request(request)
            assert reply.startswith(b"ERR STORAGE damaged: kv/small version "), reply
            assert b"inline value does not match its checksum" in reply
        objects = int(w.request(b"STATS\n").split()[1])
        assert objects >= 1
    for _ in range(2):
        with pytest.raises(ClientError) as err:
            s3.get_object(Bucket=BUCKET, Key="tiny")
        assert err.value.response["Error"]["Code"] == "InternalError"
    assert len(damage_lines(srv, "small")) == 1 and len(damage_lines(srv, "tiny")) == 1
    # Metadata-only operations are not stopped by the damage.
    s3.put_object_tagging(
        Bucket=BUCKET, Key="tiny", Tagging={"TagSet": [{"Key": "t", "Value": "1"}]}
    )
    assert s3.get_object_tagging(Bucket=BUCKET, Key="tiny")["TagSet"] == [
        {"Key": "t", "Value": "1"}
    ]
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="tiny")["Contents"]] == [
        "tiny"
    ]

    with server.connect() as w:
        assert w.request(b"DELETE small\n") == b"OK\n"
        assert w.request(b"GET small\n") == b"NOTFOUND\n"
        assert w.request(b"SET small hello-again\n").startswith(b"OK ")
        assert w.request(b"GET small\n") == b"VALUE hello-again\n"
    s3.delete_object(Bucket=BUCKET, Key="tiny")
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=BUCKET, Key="tiny")
    assert err.value.response["Error"]["Code"] == "NoSuchKey"
    assert "Traceback" not in server.new_log()


def _metric(endpoint: str, sample: str) -> float:
    with urllib.request.urlopen(endpoint + "/metrics", timeout=10) as r:
        text = r.read().decode()
    m = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def test_the_scrubber_finds_damage_nobody_reads(tmp_path: Path) -> None:
    """--scrub-interval: damage made while the server was stopped (a chunk file and an
    inline value in the database) is found and named by the background passes, once
    each in the log, with no client reading either; /metrics shows the progress."""
    from ._gwkv import wait_until

    s = S3Server(tmp_path / "data", "--scrub-interval", "0.2").start()
    try:
        s3 = s.client()
        s3.create_bucket(Bucket="scrubbed")
        big = _data(7, 100 * 1024)  # one chunk (over the inline maximum)
        s3.put_object(Bucket="scrubbed", Key="big", Body=big)
        s3.put_object(Bucket="scrubbed", Key="tiny", Body=b"hello-scrub-0003")
        s.server.terminate()
        flip(chunk_path(s.server.data_dir, big), 5000)
        _flip_in_file(s.server.data_dir / "meta.sqlite3", b"hello-scrub-0003")
        s.server.start()

        def found(kind: str) -> float:
            return _metric(s.endpoint, f'kvbox_scrub_damaged_total{{kind="{kind}"}}')

        assert wait_until(lambda: found("chunk") >= 1 and found("value") >= 1, 30)
        passes = _metric(s.endpoint, "kvbox_scrub_passes_total")
        assert wait_until(lambda: _metric(s.endpoint, "kvbox_scrub_passes_total") > passes, 30)
        assert _metric(s.endpoint, "kvbox_scrub_pass_bytes") == len(big)
        assert _metric(s.endpoint, "kvbox_scrub_pass_versions") >= 2
        log = s.server.new_log()
        for key in ("scrubbed/big", "scrubbed/tiny"):
            lines = [ln for ln in log.splitlines() if f"damaged: {key} version" in ln]
            assert len(lines) == 1 and "found by the scrubber" in lines[0], lines
        assert _metric(s.endpoint, "kvbox_damaged_reads_total") == 0  # nobody read them
        assert "Traceback" not in log
    finally:
        s.close()


def test_a_file_system_without_user_xattrs_verifies_by_address(tmp_path: Path) -> None:
    """ramfs keeps no user xattrs, so chunk files carry no CRC32C: reads check the
    SHA-256 address instead, serve good data, and still refuse damaged data."""
    import subprocess

    mnt = tmp_path / "ramfs"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "ramfs", "ramfs", str(mnt)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"mounting a ramfs is not allowed here: {done.stderr.decode()}")
    s = S3Server(mnt / "data")
    s.server.log_path = tmp_path / "ramfs.server.log"
    try:
        s.start()
        s3 = s.client()
        s3.create_bucket(Bucket="noxattr")
        good, bad = _data(11, 200 * 1024), _data(12, 200 * 1024)
        s3.put_object(Bucket="noxattr", Key="good", Body=good)
        s3.put_object(Bucket="noxattr", Key="bad", Body=bad)
        path = chunk_path(s.server.data_dir, good)
        with pytest.raises(OSError):
            os.getxattr(path, "user.kvbox.crc32c")
        assert s3.get_object(Bucket="noxattr", Key="good")["Body"].read() == good
        flip(chunk_path(s.server.data_dir, bad), 1000)
        with pytest.raises(ClientError) as err:
            s3.get_object(Bucket="noxattr", Key="bad")
        assert err.value.response["Error"]["Code"] == "InternalError"
        assert s3.get_object(Bucket="noxattr", Key="good")["Body"].read() == good
        assert "Traceback" not in s.server.new_log()
    finally:
        s.close()
        subprocess.run(["umount", str(mnt)], check=False)
