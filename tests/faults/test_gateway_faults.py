"""Gateway and PostgreSQL faults under racing load, judged by the history checker.

Layer: tests/faults. One cluster for the module (``_cluster``: PostgreSQL, three blob
nodes, two gateways, each process on its own network namespace where the machine
allows), and in each scenario the racing clients of ``_races`` work through both
gateways over S3 and GW-KV while one fault happens:

* PostgreSQL is killed with SIGKILL and started again on the same data directory;
* a gateway is killed with SIGKILL in the middle of multipart uploads;
* a gateway is killed with SIGKILL in the middle of a long pipelined SET run.

After each: the checker (``history.check``) finds no anomaly in what the clients saw
against the final state (``_final``: every version of every key, through S3); every
acknowledged write reads back intact by its version from either gateway, over the door
that wrote it (``_final.read_back``); and the repair worker returns every chunk to R
copies. Why the system can do it:
PostgreSQL decides every write in one transaction and a gateway answers only after
COMMIT, so a gateway holds nothing another one needs; chunks are immutable and written
to W nodes before the metadata names them.
"""

from __future__ import annotations

import contextlib
import functools
import random
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError  # type: ignore[import-untyped]

from e2e._s3 import signed_head

from ._cluster import Cluster, Gateway, cluster
from ._final import final_state, read_back
from ._races import BUCKET, KV, PLAIN, VERSIONED, Races, s3_client, wait_for
from .history import History, Key, Outcome, Version, check, digest, report

Final = dict[Key, list[Version]]
#: A multipart part (the smallest S3 allows but the last), one chunk on the nodes.
PART = 5 * 1024 * 1024


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with cluster(tmp_path_factory.mktemp("gwfaults")) as c:
        s3 = s3_client(c.gateways[0])
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        s3.create_bucket(Bucket=PLAIN)
        yield c


def judge(c: Cluster, history: History, final: Final | None = None) -> None:
    """The checks after every fault (module docstring); ``final`` if already read."""
    final = final_state(c, history) if final is None else final
    anomalies = check(history, final, versioned=VERSIONED)
    assert not anomalies, report(anomalies)
    problems = read_back(c, history)
    assert not problems, "\n".join(problems[:20])
    acked = history.acked_writes()
    assert any(op.door == "s3" for op in acked) and any(op.door == "kv" for op in acked)
    c.wait_replicated()


def settled(races: Races, gws: list[Gateway], since: float, within: float = 60.0) -> None:
    """Wait until writes started after ``since`` were acknowledged by every gateway
    named, over both doors: the cluster serves again, without anyone's help."""
    for gw in gws:
        wait_for(
            functools.partial(races.serves, since, gw.name),
            within,
            f"{gw.name} acknowledges S3 and GW-KV writes again",
        )


def busy(history: History, since: float, writes: int = 100) -> bool:
    """Whether, since ``since``, ``writes`` writes were acknowledged and at least one
    conditional write lost a race (the clients really raced)."""
    ops = [op for op in history.ops if op.start >= since and op.is_write]
    lost = any(op.kind == "cas" and op.outcome == "fail" for op in ops)
    return lost and sum(op.acked for op in ops) >= writes


def test_postgresql_killed_and_restarted_under_load(fleet: Cluster) -> None:
    """PostgreSQL dies with SIGKILL mid-load and comes back on the same data directory.

    While it is down nothing is acknowledged, and requests fail in each protocol's own
    form (S3 503 ServiceUnavailable -- 500 for a write whose COMMIT was cut, which may
    or may not have landed --, GW-KV ``ERR STORAGE``; the checker takes a failed write
    as unknown), with no unexpected-error traceback in the gateways' logs. Once it is
    back, both gateways serve again on their own -- same processes, no restart --
    because their pools reconnect.
    Every write acknowledged before the kill is still there (COMMIT returned, so it is
    in PostgreSQL's WAL), and the checker finds no stale read, lost update or reordered
    version across the outage."""
    c = fleet
    history = History()
    pids = [gw.proc.pid for gw in c.gateways]
    with Races(c, history, "pg", seed=1, seconds=120) as races:
        settled(races, c.gateways, 0.0)
        wait_for(lambda: busy(history, 0.0), 60, "writes racing before the kill")
        c.pg.kill()
        down = time.monotonic()
        wait_for(
            lambda: any(op.start > down and not op.acked for op in history.ops),
            30,
            "the clients feel PostgreSQL gone",
        )
        back = time.monotonic()
        c.pg.start()
        up = time.monotonic()
        settled(races, c.gateways, up)
        wait_for(lambda: busy(history, up), 60, "writes racing after the restart")
    assert [gw.proc.pid for gw in c.gateways] == pids, "a gateway was restarted"
    assert all(gw.proc.running for gw in c.gateways)
    outage = [op for op in history.ops if op.start > down and op.end < back]
    assert not [op for op in outage if op.is_write and op.acked], "acked with no database"
    kv_errors = {op.result for op in outage if op.result.startswith("ERR ")}
    assert all(e.startswith("ERR STORAGE") for e in kv_errors), kv_errors
    for gw in c.gateways:  # an outage is an expected fault: no unexpected-error traceback
        text = gw.proc.new_log()
        for sign in ("metadata batch failed", "Task exception was never retrieved"):
            assert sign not in text, f"{gw.name} logged {sign!r} during the outage"
    judge(c, history)


def test_a_gateway_killed_mid_multipart_upload(fleet: Cluster) -> None:
    """gw0 dies with SIGKILL while a part's body is half sent, with parts of another
    upload acknowledged, and later while a CompleteMultipartUpload is in flight.

    Through gw1 afterwards: the acknowledged parts are listed with their ETags and
    sizes, the half-sent part is not; the upload completes there and the object reads
    back whole from both gateways; the other upload aborts; the upload whose completion
    was cut is either complete and whole (the COMMIT happened) or still open and
    completes through gw1 -- never half an object. Parts and uploads live in
    PostgreSQL, their chunks on the blob nodes: nothing of them was only in gw0."""
    c = fleet
    gw0, gw1 = c.gateways
    rng = random.Random(2)
    history = History()
    s3_0, s3_1 = s3_client(gw0), s3_client(gw1)
    parts = [rng.randbytes(PART) for _ in range(3)]
    with Races(c, history, "mp", seed=2, seconds=150) as races:
        settled(races, c.gateways, 0.0)
        whole = s3_0.create_multipart_upload(Bucket=BUCKET, Key="mp/whole")["UploadId"]
        etags = [
            s3_0.upload_part(
                Bucket=BUCKET, Key="mp/whole", UploadId=whole, PartNumber=i + 1, Body=parts[i]
            )["ETag"]
            for i in range(2)
        ]
        dropped = s3_0.create_multipart_upload(Bucket=BUCKET, Key="mp/dropped")["UploadId"]
        s3_0.upload_part(
            Bucket=BUCKET, Key="mp/dropped", UploadId=dropped, PartNumber=1, Body=parts[0]
        )
        path = f"/{BUCKET}/mp/whole?partNumber=3&uploadId={whole}"
        with socket.create_connection((gw0.host.ip, gw0.http_port), timeout=10) as raw:
            raw.sendall(signed_head(gw0.http_port, "PUT", path, PART, gw0.host.ip))
            raw.sendall(parts[2][: PART // 2])
            gw0.proc.kill9()

        listed = s3_1.list_parts(Bucket=BUCKET, Key="mp/whole", UploadId=whole)["Parts"]
        assert [(p["PartNumber"], p["ETag"], p["Size"]) for p in listed] == [
            (1, etags[0], PART),
            (2, etags[1], PART),
        ]
        etags.append(
            s3_1.upload_part(
                Bucket=BUCKET, Key="mp/whole", UploadId=whole, PartNumber=3, Body=parts[2]
            )["ETag"]
        )
        complete(history, s3_1, gw1, "mp/whole", whole, etags, b"".join(parts))
        s3_1.abort_multipart_upload(Bucket=BUCKET, Key="mp/dropped", UploadId=dropped)
        with pytest.raises(ClientError) as gone:
            s3_1.list_parts(Bucket=BUCKET, Key="mp/dropped", UploadId=dropped)
        assert gone.value.response["Error"]["Code"] == "NoSuchUpload"

        gw0.proc.restart()
        cut_short_completion(history, gw0, gw1, parts[1] + parts[0][:1000], rng)
        gw0.proc.restart()
        settled(races, c.gateways, time.monotonic())
    uploads = s3_client(gw0).list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])
    assert [u["Key"] for u in uploads if u["Key"].startswith("mp/")] == []
    judge(c, history)


def complete(
    history: History,
    s3: Any,
    gw: Gateway,
    key: str,
    upload: str,
    etags: list[str],
    data: bytes,
) -> None:
    """CompleteMultipartUpload through ``gw``, recorded as the write of ``data``."""
    start = time.monotonic()
    done = s3.complete_multipart_upload(
        Bucket=BUCKET,
        Key=key,
        UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": i + 1, "ETag": e} for i, e in enumerate(etags)]},
    )
    history.record(
        client="multipart", gateway=gw.name, door="s3", kind="put", bucket=BUCKET, key=key,
        start=start, end=time.monotonic(), outcome="ok", digest=digest(data),
        version=done.get("VersionId"),
    )  # fmt: skip


def cut_short_completion(
    history: History, gw0: Gateway, gw1: Gateway, data: bytes, rng: random.Random
) -> None:
    """An upload's CompleteMultipartUpload sent to gw0, which is killed a moment later;
    then gw1 finds the object whole, or the upload open and completes it."""
    s3_1 = s3_client(gw1)
    key = "mp/cut"
    upload = s3_1.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
    etags = [
        s3_1.upload_part(Bucket=BUCKET, Key=key, UploadId=upload, PartNumber=i + 1, Body=piece)[
            "ETag"
        ]
        for i, piece in enumerate((data[:PART], data[PART:]))
    ]
    body = (
        "<CompleteMultipartUpload>"
        + "".join(
            f"<Part><PartNumber>{i + 1}</PartNumber><ETag>{e}</ETag></Part>"
            for i, e in enumerate(etags)
        )
        + "</CompleteMultipartUpload>"
    ).encode()
    path = f"/{BUCKET}/{key}?uploadId={upload}"
    start = time.monotonic()
    with socket.create_connection((gw0.host.ip, gw0.http_port), timeout=10) as raw:
        raw.sendall(signed_head(gw0.http_port, "POST", path, len(body), gw0.host.ip) + body)
        time.sleep(rng.random() * 0.05)  # the fault lands anywhere in the completion
        gw0.proc.kill9()
    history.record(
        client="multipart", gateway=gw0.name, door="s3", kind="put", bucket=BUCKET, key=key,
        start=start, end=time.monotonic(), outcome="unknown", digest=digest(data),
        result="gateway killed during CompleteMultipartUpload",
    )  # fmt: skip
    try:
        s3_1.head_object(Bucket=BUCKET, Key=key)
    except ClientError as exc:
        assert exc.response["Error"]["Code"] in ("404", "NoSuchKey"), exc.response
        complete(history, s3_1, gw1, key, upload, etags, data)
    else:  # completed by gw0 before it died: the upload is gone with it
        with pytest.raises(ClientError) as gone:
            s3_1.list_parts(Bucket=BUCKET, Key=key, UploadId=upload)
        assert gone.value.response["Error"]["Code"] == "NoSuchUpload"


#: Requests in the pipelined run, and after how many replies the gateway is killed.
PIPELINE, KILL_AFTER = 1500, 300


def test_a_gateway_killed_mid_pipelined_set_run(fleet: Cluster) -> None:
    """One GW-KV connection to gw1 pipelines 1,500 requests (SETs on 16 keys, every
    tenth a MULTISET of three keys); gw1 is killed with SIGKILL after 300 replies.

    Every SET answered OK reads back from gw0 (the checker: none lost, none stale);
    no MULTISET is half applied (one transaction); and the requests that landed are a
    prefix of the run -- requests on one connection take effect in order
    (docs/protocol.md), so none landed after one that did not."""
    c = fleet
    gw1 = c.gateways[1]
    history = History()
    rng = random.Random(3)
    requests: list[list[tuple[str, bytes]]] = []
    for i in range(PIPELINE):
        if i % 10 == 9:
            requests.append(
                [(f"runm{j}", f"m{i}-{j}-{rng.randbytes(4).hex()}".encode()) for j in range(3)]
            )
        else:
            requests.append([(f"runs{i % 16}", f"s{i}-{rng.randbytes(6).hex()}".encode())])
    payload = b"".join(
        b"SET %s %s\n" % (r[0][0].encode(), r[0][1])
        if len(r) == 1
        else b"MULTISET 3\n" + b"".join(b"%s %s\n" % (k.encode(), v) for k, v in r)
        for r in requests
    )
    with Races(c, history, "pl", seed=4, seconds=150) as races:
        settled(races, c.gateways, 0.0)
        replies = pipelined_run(gw1, payload, len(requests))
        gw1.proc.restart()
        settled(races, c.gateways, time.monotonic())
    start, stamps = replies
    answered = [r for r in stamps if r is not None]
    assert len(answered) >= KILL_AFTER, "the run was cut before the kill"
    assert len(answered) < len(requests), "every reply came before the kill: no fault felt"
    for i, (req, got) in enumerate(zip(requests, stamps, strict=True)):
        end, line = got if got is not None else (time.monotonic(), b"")
        outcome: Outcome = "ok" if line.startswith(b"OK ") else "unknown"
        assert got is None or outcome == "ok", f"request {i} answered {line!r}"
        versions = line.split()[1:] if outcome == "ok" else [b""] * len(req)
        for (key, value), vid in zip(req, versions, strict=True):
            history.record(
                client="pipeline", gateway=gw1.name, door="kv", kind="put", bucket=KV,
                key=key, start=start, end=end, outcome=outcome, digest=digest(value),
                version=vid.decode() or None, group=f"pl{i}" if len(req) > 1 else None,
            )  # fmt: skip
    final = final_state(c, history)
    present = {(k, v.digest) for (_b, k), vs in final.items() for v in vs}
    landed = [all((k, digest(v)) in present for k, v in req) for req in requests]
    first_missing = landed.index(False) if False in landed else len(landed)
    assert not any(landed[first_missing:]), (
        f"request {first_missing} did not land but "
        f"{[i for i, x in enumerate(landed) if x and i > first_missing][:5]} did"
    )
    judge(c, history, final)


def pipelined_run(
    gw: Gateway, payload: bytes, count: int
) -> tuple[float, list[tuple[float, bytes] | None]]:
    """Send ``payload`` on one connection (from a thread: the server reads while we
    read its replies), read replies, kill ``gw`` after ``KILL_AFTER`` of them; the
    start time and each request's (time, reply line), None where none came."""
    stamps: list[tuple[float, bytes] | None] = [None] * count
    sock = socket.create_connection((gw.host.ip, gw.kv_port), timeout=30)

    def send() -> None:
        with contextlib.suppress(OSError):
            sock.sendall(payload)

    start = time.monotonic()
    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    buf = b""
    n = 0
    try:
        with contextlib.suppress(OSError):
            while n < count:
                nl = buf.find(b"\n")
                if nl < 0:
                    data = sock.recv(1 << 16)
                    if not data:
                        break
                    buf += data
                    continue
                stamps[n], buf = (time.monotonic(), buf[: nl + 1]), buf[nl + 1 :]
                n += 1
                if n == KILL_AFTER:
                    gw.proc.kill9()
    finally:
        sock.close()
        sender.join(30)
    return start, stamps
