"""The access log's writer side: batched GW-KV lines equal one-by-one lines, a stalled
output drops (and counts) lines instead of growing memory, and ``close`` writes every
waiting line in order. The lines real servers write are in tests/e2e/test_access_log.py."""

from __future__ import annotations

import json
import logging
import threading

import pytest

from kvbox.proto import gwkv as p
from kvbox.server import accesslog
from kvbox.server.accesslog import AccessLog, Peer
from kvbox.server.doors import DoorsCollector


@pytest.mark.parametrize("fmt", ["plain", "json"])
def test_a_batch_is_written_as_its_requests_one_by_one(fmt: str) -> None:
    keys = ["apple", "b", "c20d", "long" * 50]  # GW-KV keys are [A-Za-z0-9]+
    replies = [b"VALUE 3 0 1-1\nabc\n", b"NOTFOUND\n", b"VALUE 0 0 1-2\n\n", b"NOTFOUND\n"]
    batched: list[str] = []
    single: list[str] = []
    for out, as_batch in ((batched, True), (single, False)):
        log = AccessLog(out.append, fmt)
        peer = Peer("gwkv", "127.0.0.1:4000", "kv", conn_id="c1")
        gets = [p.Get(k) for k in keys]
        sets = [p.Set(k, b"v" * i) for i, k in enumerate(keys)]
        if as_batch:
            log.gwkv((peer, gets, replies, 10.0, 10.000123))
            log.gwkv((peer, sets, b"OK\nOK\nCONFLICT\nOK\n", 10.0, 10.000123))
        else:
            for ev, r in zip(gets, replies, strict=True):
                log.gwkv((peer, ev, r, 10.0, 10.000123))
            for one, r in zip(sets, [b"OK\n", b"OK\n", b"CONFLICT\n", b"OK\n"], strict=True):
                log.gwkv((peer, one, r, 10.0, 10.000123))
        log.drain()
    lines, expected = "".join(batched).splitlines(), "".join(single).splitlines()
    if fmt == "json":  # the same fields and values; the batch writes no spaces
        lines = [json.dumps(json.loads(line)) for line in lines]
        expected = [json.dumps(json.loads(line)) for line in expected]
    assert lines == expected
    assert len(lines) == 8
    assert lines[-1].endswith(('c1-8"}', " c1-8"))


def test_a_stalled_output_drops_and_counts_lines_then_close_writes_the_rest(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(accesslog, "MAX_PENDING", 100)
    stalled = threading.Event()
    written: list[str] = []

    def write(text: str) -> None:
        stalled.wait(10)
        written.append(text)

    log = AccessLog(write, "plain", interval=0.01)
    log.start()
    peer = Peer("gwkv", "127.0.0.1:4000", "kv", conn_id="c1")
    with caplog.at_level(logging.WARNING, logger="kvbox"):
        # The writer drains a first record and then waits on the stalled output.
        log.gwkv((peer, p.Get("first"), b"NOTFOUND\n", 1.0, 1.0))
        for _ in range(500):
            if not log._q:
                break
            threading.Event().wait(0.01)
        for i in range(150):
            log.gwkv((peer, [p.Get(f"k{i}"), p.Get(f"k{i}")], [b"NOTFOUND\n"] * 2, 1.0, 1.0))
        log.request("s3", "-", None, "GetObject", "b/k", "200", 0, 0, 0.0, "rid")
    assert log.dropped == 50 * 2 + 1
    warnings = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert len(warnings) == 1  # said once, counted in /metrics
    (family,) = [
        f
        for f in DoorsCollector({}, access=log).collect()
        if f.name == "kvbox_access_log_dropped_lines"
    ]
    assert family.samples[0].value == 101
    stalled.set()
    log.close()
    lines = "".join(written).splitlines()
    assert len(lines) == 1 + 100 * 2  # every record that was kept reached the output
    assert [line.rsplit(" ", 1)[1] for line in lines] == [f"c1-{n}" for n in range(1, 202)]
