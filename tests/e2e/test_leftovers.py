"""What ``kill -9`` leaves, as ``kvbox fsck`` reports it and as the server cleans it up.

Layer: tests/e2e. Rules: the leftovers are made the only honest way, by killing a real
server in the middle of real writes (a streamed BSET, an S3 multipart part); chunk files
are found on disk by their 64-hex names, never through kvbox's code. The sweep's safety
is tested against a write still in flight and a multipart upload left open.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from ._s3 import S3Server
from ._server import KvboxServer, fsck, parse_ok_version, pseudo_random_chunks
from .test_fsck import chunk_files, text

MIB = 1 << 20
ORPHAN_RE = re.compile(r"^  orphan ([0-9a-f]{64})$", re.MULTILINE)


def _wait_for(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _killed_mid_bset(srv: KvboxServer) -> None:
    """Stream part of a 100 MiB BSET, wait until chunks of it are on disk, kill -9."""
    before = set(chunk_files(srv.data_dir))
    with srv.connect(timeout=60) as w:
        w.send(b"BSET doomed %d\n" % (100 * MIB))
        for piece in pseudo_random_chunks(7, 40 * MIB):  # distinct chunks: no dedup
            w.send(piece)
        _wait_for(
            lambda: len(set(chunk_files(srv.data_dir)) - before) >= 3, 60, "chunks of the BSET"
        )
        srv.kill()


def test_kill9_leftovers_are_notes_and_the_server_removes_them(tmp_path: Path) -> None:
    srv = KvboxServer(tmp_path / "data", args=["--leftover-delay", "1"])
    with srv:
        srv.start()
        with srv.connect() as w:
            kept = parse_ok_version(w.request(b"SET kept yes\n"))
        _killed_mid_bset(srv)

        done = fsck(srv.data_dir)
        out = text(done)
        assert done.returncode == 0, out
        orphans = ORPHAN_RE.findall(out)
        assert len(orphans) >= 3, out
        assert re.search(r"^note: orphan chunks: \d+ \(", out, re.MULTILINE), out
        assert "missing chunks: 0" in out
        assert re.search(r"^result: clean \(\d+ notes: leftovers of a crash\)$", out, re.M), out

        srv.start()  # the sweep runs a second after start, for files a second old
        files = chunk_files(srv.data_dir)
        _wait_for(lambda: not any(files[c].exists() for c in orphans), 60, "the sweep")
        # The sweep says so once its files are gone: the line may land a moment later.
        _wait_for(
            lambda: "removed" in srv.new_log() and "orphan chunks" in srv.new_log(),
            30,
            "the sweep's log line",
        )
        with srv.connect() as w:
            assert w.request(b"VERSION kept\n") == f"OK {kept}\n".encode()
        assert srv.oneshot(b"GET doomed\n") == b"NOTFOUND\n"
        assert srv.terminate() == 0

        done = fsck(srv.data_dir)
        assert done.returncode == 0, text(done)
        assert text(done).rstrip().endswith("result: clean"), text(done)


def test_temp_files_are_notes_and_removed_at_start(tmp_path: Path) -> None:
    srv = KvboxServer(tmp_path / "data")
    with srv:
        srv.start()
        assert srv.terminate() == 0
        tmp = srv.data_dir / "chunks" / "tmp"
        (tmp / "0123456789abcdef").write_bytes(b"half a chunk")  # as a crash leaves one
        done = fsck(srv.data_dir)
        assert done.returncode == 0, text(done)
        assert "note: temporary files: 1 (" in text(done) and "temp 0123456789abcdef" in text(done)
        assert (tmp / "0123456789abcdef").exists()  # fsck without --repair changes nothing
        srv.start()
        assert srv.terminate() == 0
        assert list(tmp.iterdir()) == []
        assert text(fsck(srv.data_dir)).rstrip().endswith("result: clean")


def test_sweep_spares_writes_in_flight_and_open_uploads(tmp_path: Path) -> None:
    """With sweeps every second, a BSET that streams for several seconds (its first
    chunks long older than a second before it commits) and a multipart upload left open
    across sweeps both keep every byte."""
    s3 = S3Server(tmp_path / "data", "--leftover-delay", "1").start()
    try:
        client = s3.client()
        client.create_bucket(Bucket="leftovers")
        up = client.create_multipart_upload(Bucket="leftovers", Key="parts")["UploadId"]
        part1 = b"".join(pseudo_random_chunks(9, 5 * MIB))
        where = {"Bucket": "leftovers", "Key": "parts", "UploadId": up}
        e1 = client.upload_part(**where, PartNumber=1, Body=part1)

        value = b"".join(pseudo_random_chunks(8, 24 * MIB))
        with s3.server.connect(timeout=60) as w:
            w.send(b"BSET slow %d\n" % len(value))
            for i in range(0, len(value), MIB):
                w.send(value[i : i + MIB])
                time.sleep(0.15)  # 3.6 s in all: three or more sweeps meanwhile
            w.send(b"\n")
            version = parse_ok_version(w.readline())
            assert w.bget("slow") == (value, version)

        part2 = bytes([2]) * 1000
        e2 = client.upload_part(**where, PartNumber=2, Body=part2)
        client.complete_multipart_upload(
            Bucket="leftovers",
            Key="parts",
            UploadId=up,
            MultipartUpload={
                "Parts": [
                    {"PartNumber": 1, "ETag": e1["ETag"]},
                    {"PartNumber": 2, "ETag": e2["ETag"]},
                ]
            },
        )
        assert client.get_object(Bucket="leftovers", Key="parts")["Body"].read() == part1 + part2
    finally:
        s3.close()
    done = fsck(tmp_path / "data", "--verify")
    assert done.returncode == 0 and "note" not in text(done), text(done)
