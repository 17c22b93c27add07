"""Gateways sharing metadata in PostgreSQL: real ``kvbox serve --meta postgresql://...``
processes, real clients (boto3, GW-KV over TCP), a real PostgreSQL.

Layer: tests/e2e. Rules: two gateways on one database are interchangeable: a write
acknowledged by one is read back at once by the other (S3 and GW-KV), a conditional
write racing from both has one winner, a bucket change on one is obeyed by the other
within the stated bound; ``kvbox migrate`` and ``--migrate`` bring a database to the
schema and a gateway refuses any other, naming the command, never the password.
Then the faults: PostgreSQL and a gateway killed with SIGKILL under a bounded load, and
every write either gateway acknowledged is read back intact afterwards.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from threading import Barrier

import pytest
from botocore.exceptions import ClientError  # type: ignore[import-untyped]

from _postgres import PostgresServer

from ._gwkv import wait_until
from ._s3 import ROOT_ENV, S3Server
from ._server import Wire, run_kvbox

#: The bound docs/ARCHITECTURE.md states for another gateway to obey a bucket change
#: (``kvbox.core.meta.postgres.changes.BOUND_SECONDS``).
BOUND = 1.0


def gateway(tmp_path: Path, name: str, url: str, *args: str) -> S3Server:
    return S3Server(tmp_path / name, "--meta", url, *args)


@pytest.fixture
def two_gateways(tmp_path: Path, pg_url: str) -> Iterator[tuple[S3Server, S3Server, str]]:
    """Gateway A migrates the empty database at start (--migrate); B starts on it."""
    a = gateway(tmp_path, "a", pg_url, "--migrate").start()
    b = gateway(tmp_path, "b", pg_url)
    try:
        b.start()
        yield a, b, pg_url
    finally:
        a.close()
        b.close()


def test_a_gateway_refuses_a_database_without_the_schema_and_migrate_fixes_it(
    tmp_path: Path, pg_url: str, postgres: PostgresServer
) -> None:
    srv = gateway(tmp_path, "g", pg_url)
    srv.server.data_dir.mkdir(parents=True)
    srv.server._spawn()
    assert srv.server.proc is not None
    code = srv.server.proc.wait(60)
    text = srv.server.new_log()
    assert code == 1, text
    assert "kvbox migrate --meta postgresql://kvbox:***@127.0.0.1:" in text, text
    assert postgres.password not in text
    done = run_kvbox("migrate", "--meta", pg_url)
    out = done.stdout.decode() + done.stderr.decode()
    assert done.returncode == 0, out
    assert "applied 0001_metadata" in out and postgres.password not in out
    again = run_kvbox("migrate", "--meta", pg_url)
    assert again.returncode == 0 and b"already at schema version" in again.stdout
    assert run_kvbox("migrate", "--meta", pg_url, "--check").returncode == 0
    srv.start()
    try:
        s3 = srv.client()
        s3.create_bucket(Bucket="fine")
        assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["fine", "kv"]
        metrics = urllib.request.urlopen(f"{srv.endpoint}/metrics", timeout=10).read()
        assert postgres.password.encode() not in metrics
        assert b"kvbox_" in metrics
        srv.server.terminate()
        said = srv.server.new_log()  # what kvbox printed (the harness logs its argv)
        assert "metadata in postgresql://kvbox:***@127.0.0.1:" in said, said
        assert postgres.password not in said
    finally:
        srv.close()


def test_a_write_acknowledged_by_one_gateway_is_read_at_once_by_the_other(
    two_gateways: tuple[S3Server, S3Server, str],
) -> None:
    a, b, _ = two_gateways
    sa, sb = a.client(), b.client()
    sa.create_bucket(Bucket="shared")
    wait_until(lambda: _has_bucket(sb, "shared"), BOUND)
    for i in range(20):
        body = f"value {i}".encode()
        writer, reader = (sa, sb) if i % 2 else (sb, sa)
        writer.put_object(Bucket="shared", Key="k", Body=body)
        assert reader.get_object(Bucket="shared", Key="k")["Body"].read() == body
    # GW-KV: a SET acknowledged by A (after its PostgreSQL commit) is a GET away on B
    with (
        Wire.connect("127.0.0.1", a.server.port) as wa,
        Wire.connect("127.0.0.1", b.server.port) as wb,
    ):
        for i in range(20):
            assert wa.request(f"SET kv{i} v{i}\n".encode()).startswith(b"OK ")
            assert wb.request(f"GET kv{i}\n".encode()) == f"VALUE v{i}\n".encode()
    listed = sb.list_objects_v2(Bucket="shared")
    assert [o["Key"] for o in listed["Contents"]] == ["k"]


def test_if_none_match_puts_racing_on_two_gateways_have_one_winner(
    two_gateways: tuple[S3Server, S3Server, str],
) -> None:
    a, b, _ = two_gateways
    sa, sb = a.client(), b.client()
    sa.create_bucket(Bucket="race")
    wait_until(lambda: _has_bucket(sb, "race"), BOUND)
    for i in range(10):
        key = f"once-{i}"
        outcomes: list[str] = []

        def put(client: object, body: bytes, key: str = key, out: list[str] = outcomes) -> None:
            try:
                client.put_object(Bucket="race", Key=key, Body=body, IfNoneMatch="*")  # type: ignore[attr-defined]
                out.append("ok")
            except ClientError as exc:
                out.append(exc.response["Error"]["Code"])

        threads = [
            threading.Thread(target=put, args=(sa, b"from a")),
            threading.Thread(target=put, args=(sb, b"from b")),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sorted(outcomes) == ["PreconditionFailed", "ok"], outcomes
        got = sa.get_object(Bucket="race", Key=key)["Body"].read()
        assert got in (b"from a", b"from b")
    # CompleteMultipartUpload sent to both gateways at once completes the object once
    up = sa.create_multipart_upload(Bucket="race", Key="mp")["UploadId"]
    part = sb.upload_part(Bucket="race", Key="mp", UploadId=up, PartNumber=1, Body=b"p" * 1000)
    done = {"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]}
    finished: list[str] = []

    def complete(client: object) -> None:
        try:
            client.complete_multipart_upload(  # type: ignore[attr-defined]
                Bucket="race", Key="mp", UploadId=up, MultipartUpload=done
            )
            finished.append("ok")
        except ClientError as exc:
            finished.append(exc.response["Error"]["Code"])

    pair = [threading.Thread(target=complete, args=(c,)) for c in (sa, sb)]
    for t in pair:
        t.start()
    for t in pair:
        t.join(30)
    assert sorted(finished) == ["NoSuchUpload", "ok"], finished
    assert sb.get_object(Bucket="race", Key="mp")["Body"].read() == b"p" * 1000


def test_many_connections_keep_their_order_and_cas_races_have_one_winner(
    two_gateways: tuple[S3Server, S3Server, str],
) -> None:
    """Each gateway commits several batches at once (core/meta/postgres/writer.py):
    48 GW-KV connections over both gateways pipeline SETs, GETs and a DELETE at once,
    and every reply is the one a run in order gives; then CAS from 16 connections on
    both gateways, all from the same version, has exactly one winner per round."""
    a, b, _ = two_gateways
    conns, steps = 48, 24
    failures: list[str] = []

    def pipeline(i: int) -> None:
        srv = (a, b)[i % 2]
        k, m = f"order{i}", f"other{i}"
        out: list[bytes] = []
        want: list[bytes | None] = []  # None: "OK <version>"
        for n in range(1, steps + 1):
            out += [f"SET {k} {n}\n".encode(), f"SET {m} {n}\n".encode()]
            want += [None, None]
            if n % 4 == 0:
                out.append(f"GET {k}\n".encode())
                want.append(f"VALUE {n}\n".encode())
        out += [f"DELETE {k}\n".encode(), f"GET {k}\n".encode(), f"SET {k} end\n".encode()]
        want += [b"OK\n", b"NOTFOUND\n", None]
        out += [f"GET {k}\n".encode(), f"GET {m}\n".encode()]
        want += [b"VALUE end\n", f"VALUE {steps}\n".encode()]
        try:
            with Wire.connect("127.0.0.1", srv.server.port, timeout=30) as w:
                w.send(b"".join(out))
                for sent, expected in zip(out, want, strict=True):
                    got = w.readline()
                    ok = got.startswith(b"OK ") if expected is None else got == expected
                    if not ok:
                        failures.append(f"{i}: {sent!r} -> {got!r}, wanted {expected!r}")
                        return
        except (OSError, EOFError) as exc:
            failures.append(f"{i}: {exc!r}")

    threads = [threading.Thread(target=pipeline, args=(i,)) for i in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not failures, failures[:5]
    with Wire.connect("127.0.0.1", b.server.port) as wb:  # the end state, on either gateway
        for i in range(0, conns, 7):
            assert wb.request(f"GET order{i}\n".encode()) == b"VALUE end\n"
            assert wb.request(f"GET other{i}\n".encode()) == f"VALUE {steps}\n".encode()

    with Wire.connect("127.0.0.1", a.server.port) as wa:
        current = wa.request(b"SET hot start\n").split()[1].decode()
    for rnd in range(5):
        replies: list[bytes] = []
        start = Barrier(16)

        def cas(
            n: int, expected: str = current, out: list[bytes] = replies, go: Barrier = start
        ) -> None:
            srv = (a, b)[n % 2]
            with Wire.connect("127.0.0.1", srv.server.port, timeout=30) as w:
                go.wait(30)
                out.append(w.request(f"CAS hot {expected} r{n}\n".encode()))

        racers = [threading.Thread(target=cas, args=(n,)) for n in range(16)]
        for t in racers:
            t.start()
        for t in racers:
            t.join(60)
        won = [r for r in replies if r.startswith(b"OK ")]
        assert len(replies) == 16 and len(won) == 1, (rnd, replies)
        current = won[0].split()[1].decode()
        lost = {r for r in replies if not r.startswith(b"OK ")}
        assert lost == {f"CONFLICT {current}\n".encode()}, (rnd, lost)


def test_bucket_changes_on_one_gateway_are_obeyed_by_the_other_within_the_bound(
    two_gateways: tuple[S3Server, S3Server, str],
) -> None:
    a, b, _ = two_gateways
    sa, sb = a.client(), b.client()
    sa.create_bucket(Bucket="pub")
    sa.put_object(Bucket="pub", Key="page", Body=b"hello")
    assert wait_until(lambda: _has_bucket(sb, "pub"), BOUND)
    anon_url = f"{b.endpoint}/pub/page"
    assert _status(anon_url) == 403
    # a policy made on A lets anonymous readers in through B...
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": "*",
                "Action": "s3:GetObject",
                "Resource": "arn:aws:s3:::pub/*",
            }
        ],
    }
    sa.put_public_access_block(
        Bucket="pub",
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": False,
            "IgnorePublicAcls": False,
            "BlockPublicPolicy": False,
            "RestrictPublicBuckets": False,
        },
    )
    sa.put_bucket_policy(Bucket="pub", Policy=json.dumps(policy))
    t0 = time.monotonic()
    assert wait_until(lambda: _status(anon_url) == 200, BOUND), "B ignored A's policy"
    # ...and its removal on A shuts them out of B again, within the bound
    sa.delete_bucket_policy(Bucket="pub")
    assert wait_until(lambda: _status(anon_url) == 403, BOUND), "B kept A's old policy"
    # a bucket deleted on A is NoSuchBucket on B
    sa.delete_object(Bucket="pub", Key="page")
    sa.delete_bucket(Bucket="pub")
    assert wait_until(lambda: _code(lambda: sb.head_bucket(Bucket="pub")) == "404", BOUND)
    with pytest.raises(ClientError) as err:
        sb.put_object(Bucket="pub", Key="again", Body=b"x")
    assert err.value.response["Error"]["Code"] == "NoSuchBucket"
    assert time.monotonic() - t0 < 30
    # a user's key made on A signs requests to B; disabled on A, B refuses it within
    # the bound (B had it in its cache of key lookups)
    access, secret = a.new_user("carol")
    carol_b = b.client(access, secret)
    assert carol_b.list_buckets()["Buckets"] == []
    off = run_kvbox("admin", "--server", a.endpoint, "key", "disable", access, env=ROOT_ENV)
    assert off.returncode == 0, off.stderr
    refused = lambda: _code(carol_b.list_buckets) == "InvalidAccessKeyId"  # noqa: E731
    assert wait_until(refused, BOUND), "B kept accepting a key disabled on A"


def test_no_acknowledged_write_is_lost_when_postgresql_and_a_gateway_are_killed(
    tmp_path: Path,
) -> None:
    """A bounded load of GW-KV SETs and S3 PUTs through both gateways; PostgreSQL is
    killed with SIGKILL and restarted mid-load, then gateway A is; every write that was
    acknowledged reads back, from either gateway, with the bytes acknowledged."""
    pg = PostgresServer()  # its own: this test kills it
    pg.start()
    a = b = None
    try:
        url = pg.url("postgres")
        assert run_kvbox("migrate", "--meta", url).returncode == 0
        a = gateway(tmp_path, "a", url).start()
        b = gateway(tmp_path, "b", url).start()
        a.client().create_bucket(Bucket="load")
        acked: dict[str, bytes] = {}
        lock = threading.Lock()
        stop = threading.Event()
        errors = itertools.count()

        def kv_load(srv: S3Server, tag: str) -> None:
            n = 0
            while not stop.is_set() and n < 5000:
                n += 1
                try:
                    with Wire.connect("127.0.0.1", srv.server.port, timeout=10) as w:
                        while not stop.is_set() and n < 5000:
                            n += 1
                            key, value = f"{tag}-kv-{n}", f"{tag}{n}".encode()
                            if w.request(b"SET " + key.encode() + b" " + value + b"\n").startswith(
                                b"OK "
                            ):
                                with lock:
                                    acked["kv:" + key] = value
                            else:
                                next(errors)
                except (OSError, EOFError):
                    next(errors)
                    time.sleep(0.05)

        def s3_load(srv: S3Server, tag: str) -> None:
            s3 = srv.client()
            for n in range(2000):
                if stop.is_set():
                    return
                key, body = f"{tag}-s3-{n}", f"{tag} object {n}".encode() * 3
                try:
                    s3.put_object(Bucket="load", Key=key, Body=body)
                except Exception:
                    next(errors)
                    time.sleep(0.02)
                    continue
                with lock:
                    acked["s3:" + key] = body

        workers = [
            threading.Thread(target=kv_load, args=(a, "a")),
            threading.Thread(target=kv_load, args=(b, "b")),
            threading.Thread(target=s3_load, args=(a, "a")),
            threading.Thread(target=s3_load, args=(b, "b")),
        ]
        for t in workers:
            t.start()
        try:
            assert wait_until(lambda: len(acked) >= 200, 30), "no load got through"
            pg.kill()  # SIGKILL of the postmaster
            time.sleep(0.5)
            pg.start()
            before = len(acked)
            assert wait_until(lambda: len(acked) >= before + 100, 60), "no write after restart"
            a.server.kill()  # SIGKILL of gateway A mid-load
            a.server.start()
            before = len(acked)
            assert wait_until(lambda: len(acked) >= before + 100, 60), "no write after restart"
        finally:
            stop.set()
            for t in workers:
                t.join(60)
        assert next(errors) > 0, "the faults were not felt"
        s3a, s3b = a.client(), b.client()
        with (
            Wire.connect("127.0.0.1", a.server.port) as wa,
            Wire.connect("127.0.0.1", b.server.port) as wb,
        ):
            for i, (name, value) in enumerate(sorted(acked.items())):
                kind, key = name.split(":", 1)
                if kind == "kv":
                    w = wa if i % 2 else wb
                    assert w.request(f"GET {key}\n".encode()) == b"VALUE " + value + b"\n"
                else:
                    s3 = s3a if i % 2 else s3b
                    assert s3.get_object(Bucket="load", Key=key)["Body"].read() == value
    finally:
        for srv in (a, b):
            if srv is not None:
                srv.close()
        pg.close()


def test_without_postgresql_a_gateway_answers_503_and_recovers_without_a_restart(
    tmp_path: Path,
) -> None:
    """PostgreSQL killed under a running gateway: S3 answers 503 ServiceUnavailable (boto3
    with retries off sees it at once; with retries on, a PUT made during the outage lands
    once PostgreSQL is back), GW-KV ``ERR STORAGE unavailable: ...`` on a connection that
    stays open, /readyz 503 naming the metadata store while /healthz stays 200; when
    PostgreSQL returns the same process serves again, on the same GW-KV connection."""
    pg = PostgresServer()  # its own: this test kills it
    pg.start()
    srv = None
    try:
        url = pg.url("postgres")
        assert run_kvbox("migrate", "--meta", url).returncode == 0
        srv = gateway(tmp_path, "g", url).start()
        pid = srv.server.pid
        s3 = srv.client()  # retries off
        s3.create_bucket(Bucket="upkeep")
        s3.put_object(Bucket="upkeep", Key="before", Body=b"kept")
        ready = f"{srv.endpoint}/readyz"
        with Wire.connect("127.0.0.1", srv.server.port) as w:
            assert w.request(b"SET k before\n").startswith(b"OK ")
            pg.kill()
            assert wait_until(lambda: _status(ready) == 503, 5), "/readyz stayed ready"
            body = _body(ready)
            assert body.startswith("not ready: metadata store unreachable: "), body
            assert pg.password not in body
            assert _status(f"{srv.endpoint}/healthz") == 200  # alive: a restart won't help
            calls: list[Callable[[], object]] = [
                lambda: s3.put_object(Bucket="upkeep", Key="during", Body=b"x"),
                lambda: s3.get_object(Bucket="upkeep", Key="before"),
            ]
            for call in calls:
                with pytest.raises(ClientError) as err:
                    call()
                meta = err.value.response["ResponseMetadata"]
                assert err.value.response["Error"]["Code"] == "ServiceUnavailable"
                # botocore took it for retryable: it retried until its attempts ran out
                assert meta["HTTPStatusCode"] == 503 and meta.get("MaxAttemptsReached"), meta
            for line in (b"SET k during\n", b"GET k\n"):
                reply = w.request(line)
                assert reply.startswith(b"ERR STORAGE unavailable: "), reply
                assert pg.password.encode() not in reply
            retried: list[object] = []
            patient = srv.client(retries={"total_max_attempts": 10, "mode": "standard"})
            put = threading.Thread(
                target=lambda: retried.append(
                    patient.put_object(Bucket="upkeep", Key="retried", Body=b"landed")
                )
            )
            put.start()
            time.sleep(0.5)  # its first tries meet the outage
            pg.start()
            assert wait_until(lambda: _status(ready) == 200, 15), _body(ready)
            put.join(60)
            assert len(retried) == 1, "the SDK's retries did not land the PUT"
            # the same process and the same GW-KV connection serve again
            assert w.request(b"SET k after\n").startswith(b"OK ")
            assert w.request(b"GET k\n") == b"VALUE after\n"
        assert srv.server.pid == pid
        assert s3.get_object(Bucket="upkeep", Key="before")["Body"].read() == b"kept"
        assert s3.get_object(Bucket="upkeep", Key="retried")["Body"].read() == b"landed"
        s3.put_object(Bucket="upkeep", Key="after", Body=b"fine")
        assert "during" not in {o["Key"] for o in s3.list_objects_v2(Bucket="upkeep")["Contents"]}
    finally:
        if srv is not None:
            srv.close()
        pg.close()


def _body(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return str(resp.read().decode())
    except urllib.error.HTTPError as exc:
        return str(exc.read().decode())


def _has_bucket(client: object, name: str) -> bool:
    return _code(lambda: client.head_bucket(Bucket=name)) == "200"  # type: ignore[attr-defined]


def _code(call: object) -> str:
    try:
        call()  # type: ignore[operator]
    except ClientError as exc:
        return str(exc.response["Error"]["Code"])
    return "200"


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
