"""Pre-encoded requests and the reply scanner of kvbox.bench.workload."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kvbox.bench.workload import (
    ReplyScanner,
    Workload,
    batch_pool,
    encode_get,
    encode_set,
    key_name,
    make_value,
    request_pool,
)

VERSION = b"01JDZ7W6G5R8Q4X0C2N9M1T3KA"


def test_key_names_are_legal_and_distinct() -> None:
    keys = {key_name("bench", i) for i in range(1000)}
    assert len(keys) == 1000
    for k in keys:
        assert k.isalnum() and len(k) <= 64


def test_value_is_legal_text() -> None:
    v = make_value(1024, seed=3)
    assert len(v) == 1024
    assert v.isalnum()
    assert make_value(1024, seed=3) == v
    assert make_value(0) == b""


def test_encode_text_and_binary_forms() -> None:
    assert encode_set(b"k1", b"abc") == b"SET k1 abc\n"
    assert encode_get(b"k1", binary=False) == b"GET k1\n"
    big = b"x" * 2000
    assert encode_set(b"k1", big) == b"BSET k1 2000\n" + big + b"\n"
    assert encode_get(b"k1", binary=True) == b"BGET k1\n"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"op": "del"}, "op"),
        ({"value_size": -1}, "value size"),
        ({"keys": 0}, "keys"),
        ({"set_ratio": 1.5}, "set ratio"),
        ({"key_prefix": "a-b"}, "prefix"),
        ({"key_prefix": "x" * 60}, "too long"),
    ],
)
def test_workload_validation(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Workload(**kwargs)  # type: ignore[arg-type]


def test_request_pool_mix_share_and_keys() -> None:
    wl = Workload(op="mix", value_size=10, keys=50, set_ratio=0.25)
    pool = request_pool(wl, 4000, seed=7)
    assert len(pool) == 4000
    sets = sum(1 for r in pool if r.startswith(b"SET "))
    gets = sum(1 for r in pool if r.startswith(b"GET "))
    assert sets + gets == 4000
    assert 0.2 < sets / 4000 < 0.3
    keys = {r.split(b" ")[1].rstrip(b"\n") for r in pool}
    assert keys <= {key_name("bench", i) for i in range(50)}
    assert len(keys) == 50


def test_request_pool_is_bounded_by_bytes() -> None:
    wl = Workload(op="set", value_size=1 << 20, keys=10)
    pool = request_pool(wl, 10_000, seed=1)
    assert 1 <= len(pool) <= 40  # 32 MiB of 1 MiB requests


def test_batch_pool_batches_hold_pipeline_requests() -> None:
    wl = Workload(op="get", value_size=100, keys=100)
    batches = batch_pool(wl, 10, 16, seed=1)
    assert len(batches) == 10
    for b in batches:
        assert b.count(b"\n") == 16
        assert all(line.startswith(b"GET ") for line in b.split(b"\n")[:-1])


def _replies() -> bytes:
    return (
        b"OK " + VERSION + b"\n"
        + b"VALUE abc\n"
        + b"NOTFOUND\n"
        + b"ERR BADKEY key must be 1-64 letters or digits\n"
        + b"OK PONG\n"
    )  # fmt: skip


def _feed_all(scanner: ReplyScanner, chunks: list[bytes]) -> int:
    return sum(scanner.feed(c) for c in chunks)


@pytest.mark.parametrize("split", ["whole", "bytewise"])
def test_scanner_counts_replies_however_split(split: str) -> None:
    data = _replies()
    chunks = [data] if split == "whole" else [data[i : i + 1] for i in range(len(data))]
    s = ReplyScanner()
    assert _feed_all(s, chunks) == 5
    assert (s.ok, s.misses, s.errors) == (3, 1, 1)
    assert s.error_samples == ["ERR BADKEY key must be 1-64 letters or digits"]
    assert not s.pending


def test_scanner_keeps_a_partial_reply_until_completed() -> None:
    s = ReplyScanner()
    assert s.feed(b"OK 01JDZ") == 0
    assert s.pending
    assert s.feed(b"7W6G5R8Q4X0C2N9M1T3KA\nVAL") == 1
    assert s.feed(b"UE x\n") == 1
    assert s.ok == 2
    s.reset()
    assert not s.pending


def test_scanner_checks_text_value_length() -> None:
    s = ReplyScanner(expect_len=3)
    assert s.feed(b"VALUE abc\nVALUE abcd\n") == 2
    assert s.ok == 1
    assert s.errors == 1
    assert "wrong value length" in s.error_samples[0]


def test_scanner_skips_binary_bodies_even_with_newlines_inside() -> None:
    body = b"line1\nline2\n\x00\xff"
    data = b"VALUE %d %s\n%s\n" % (len(body), VERSION, body) + b"NOTFOUND\nOK " + VERSION + b"\n"
    for step in (len(data), 1, 3):
        s = ReplyScanner(binary=True, expect_len=len(body))
        n = _feed_all(s, [data[i : i + step] for i in range(0, len(data), step)])
        assert n == 3, step
        assert (s.ok, s.misses, s.errors) == (2, 1, 0)


def test_scanner_binary_wrong_length_is_an_error() -> None:
    s = ReplyScanner(binary=True, expect_len=5)
    assert s.feed(b"VALUE 2 %s\nab\n" % VERSION) == 1
    assert s.errors == 1


def test_scanner_clear_counts() -> None:
    s = ReplyScanner()
    s.feed(b"ERR X\nOK\n")
    s.clear_counts()
    assert (s.ok, s.misses, s.errors, s.error_samples) == (0, 0, 0, [])


@given(st.binary(max_size=300), st.integers(min_value=1, max_value=17))
def test_scanner_on_junk_counts_one_reply_per_line(junk: bytes, step: int) -> None:
    """Whatever the bytes, every complete line is exactly one counted reply."""
    s = ReplyScanner()
    n = _feed_all(s, [junk[i : i + step] for i in range(0, len(junk), step)])
    assert n == junk.count(b"\n")
    assert s.ok + s.misses + s.errors == n
    assert len(s.error_samples) <= 5
