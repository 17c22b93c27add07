"""``kvbox.Client`` and ``UdpClient`` against the fake server: framing, errors, streaming."""

from __future__ import annotations

import io
import os
import threading
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from kvbox import Client
from kvbox.client import UdpClient, _sync, udp_request
from kvbox.errors import (
    ConditionFailed,
    InvalidArgument,
    InvalidKey,
    RemoteError,
    ValueTooLarge,
)
from kvbox.proto import gwkv

from .fakeserver import FAIL_KEY, FakeServer

BIG = bytes(range(256)) * (12 * 1024 + 7)  # ~3 MiB: streams in chunks both ways


def test_every_command(fake: FakeServer) -> None:
    with Client("127.0.0.1", fake.port) as kv:
        v1 = kv.set("apple", "red")
        assert len(v1) == 26
        assert kv.get("apple") == b"red"
        assert kv.get("pear") is None
        assert kv.version("apple") == v1
        assert kv.version("pear") is None
        assert kv.stats() == 1
        v2 = kv.cas("apple", v1, b"green")
        assert kv.get("apple") == b"green"
        assert kv.cas("pear", None, "") != v2
        assert kv.get("pear") == b""
        versions = kv.mset({"a": "1", "b": "2 words"})
        assert len(versions) == 2
        assert kv.mset([("c", "3")]) == [kv.version("c")]
        assert kv.mget(["a", "zzz", "b"]) == [b"1", None, b"2 words"]
        assert kv.delete("a") is True
        assert kv.delete("a") is False
        kv.ping()
        info = kv.info()
        assert info["objects"] == str(kv.stats())
        blob = b"he\x00lo\r\n"
        vb = kv.bset("blob", blob)
        assert kv.bget("blob") == blob
        assert kv.version("blob") == vb
        assert kv.bget("nothing") is None


def test_cas_conflict_carries_current(fake: FakeServer) -> None:
    with Client(port=fake.port) as kv:
        v1 = kv.set("k", "v")
        with pytest.raises(ConditionFailed) as caught:
            kv.cas("k", None, "w")
        assert caught.value.current == v1
        with pytest.raises(ConditionFailed) as caught:
            kv.cas("absent", v1, "w")
        assert caught.value.current is None
        kv.ping()  # a conflict leaves the connection in step


def test_err_reply_raises_remote_error_and_keeps_connection(fake: FakeServer) -> None:
    with Client(port=fake.port) as kv:
        with pytest.raises(RemoteError) as caught:
            kv.set(FAIL_KEY, "x")
        assert (caught.value.code, caught.value.message) == ("STORAGE", "disk on fire")
        kv.bset("bin", b"\x00")
        with pytest.raises(RemoteError) as caught:
            kv.get("bin")
        assert caught.value.code == "NOTTEXT"
        with pytest.raises(RemoteError):
            kv.mget(["bin"])
        assert kv.bget("bin") == b"\x00"


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda kv: kv.set("bad-key", "v"), InvalidKey),
        (lambda kv: kv.get("k" * 65), InvalidKey),
        (lambda kv: kv.set("k", "v" * 1025), ValueTooLarge),
        (lambda kv: kv.set("k", "line\nbreak"), InvalidArgument),
        (lambda kv: kv.cas("k", "not a version", "v"), InvalidArgument),
        (lambda kv: kv.mget([]), InvalidArgument),
        (lambda kv: kv.bset("k", b"abc", length=2), InvalidArgument),
        (lambda kv: kv.get_at("k", datetime(2026, 1, 1)), InvalidArgument),  # naive
        (lambda kv: kv.get_at("k", "2026-01-01T00:00:00"), InvalidArgument),  # no zone
        (lambda kv: kv.get_at("k", "yesterday"), InvalidArgument),
        (lambda kv: kv.get_at("bad-key", 0), InvalidKey),
    ],
)
def test_bad_arguments_fail_before_sending(fake: FakeServer, call: object, error: type) -> None:
    assert callable(call)
    with Client(port=fake.port) as kv:
        with pytest.raises(error):
            call(kv)
        kv.ping()
    assert fake.requests == [gwkv.Ping()]


def test_bset_and_bget_stream_files(fake: FakeServer, tmp_path: Path) -> None:
    src = tmp_path / "in.bin"
    src.write_bytes(BIG)
    with Client(port=fake.port) as kv:
        with src.open("rb") as f:
            version = kv.bset("big", f)
        dst = tmp_path / "out.bin"
        with dst.open("wb") as f:
            assert kv.bget_into("big", f) is True
        assert dst.read_bytes() == BIG
        assert kv.bget("big") == BIG
        assert kv.version("big") == version
        with dst.open("wb") as f:
            assert kv.bget_into("absent", f) is False
        assert dst.read_bytes() == b""
        # from the current position, and only `length` bytes
        with src.open("rb") as f:
            f.seek(10)
            kv.bset("part", f, length=100)
            assert f.tell() == 110
        assert kv.bget("part") == BIG[10:110]
    assert fake.data["big"][1] == BIG


def test_bset_from_unseekable_stream_is_spooled(fake: FakeServer) -> None:
    read_fd, write_fd = os.pipe()

    def produce() -> None:
        with os.fdopen(write_fd, "wb") as w:
            w.write(BIG)

    writer = threading.Thread(target=produce)
    writer.start()
    with Client(port=fake.port) as kv, os.fdopen(read_fd, "rb") as pipe:
        assert not pipe.seekable()
        kv.bset("piped", pipe)
        assert kv.bget("piped") == BIG
    writer.join(5)


def _tick() -> int:
    """Now in ns, strictly after every earlier write (the fake stamps with time_ns)."""
    time.sleep(0.002)
    now = time.time_ns()
    time.sleep(0.002)
    return now


def _dt(ns: int, tz: timezone = UTC) -> datetime:
    """``ns`` as a datetime, exactly (to its microsecond; a float would round)."""
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ns // 1000)).astimezone(tz)


def test_get_at(fake: FakeServer, tmp_path: Path) -> None:
    with Client(port=fake.port) as kv:
        before = _tick()
        kv.set("k", "one")
        at_one = _tick()
        kv.bset("k", BIG)
        at_big = _tick()
        kv.delete("k")
        gone = _tick()
        assert kv.get_at("k", before // 1_000_000) is None  # int: epoch milliseconds
        assert kv.get_at("k", _dt(at_one)) == b"one"
        east = timezone(timedelta(hours=5, minutes=30))
        assert kv.get_at("k", _dt(at_big, east)) == BIG  # streamed
        assert kv.get_at("k", str(gone // 1_000_000)) is None
        dst = tmp_path / "then.bin"
        with dst.open("wb") as f:
            assert kv.get_at_into("k", at_big // 1_000_000, f) is True
        assert dst.read_bytes() == BIG
        with dst.open("wb") as f:
            assert kv.get_at_into("k", before // 1_000_000, f) is False
        kv.ping()
    sent = [r for r in fake.requests if isinstance(r, gwkv.GetAt)]
    assert [r.binary for r in sent] == [True] * 6
    assert sent[0].at_ns == before // 1_000_000 * 1_000_000
    assert sent[1].at_ns == at_one // 1000 * 1000  # a datetime is exact to the microsecond


def test_bcas(fake: FakeServer) -> None:
    with Client(port=fake.port) as kv:
        v1 = kv.bcas("b", None, io.BytesIO(b"one"))
        with pytest.raises(ConditionFailed):
            kv.bcas("b", None, b"two")
        kv.bcas("b", v1, BIG)
        assert kv.bget("b") == BIG


def test_short_file_drops_the_connection_then_recovers(fake: FakeServer) -> None:
    with Client(port=fake.port) as kv:
        with pytest.raises(InvalidArgument):
            kv.bset("short", io.BytesIO(b"abc"), length=10)
        kv.ping()  # a new connection: the old one was out of step
    assert "short" not in fake.data


@pytest.mark.parametrize("size", [2000, len(BIG)])
def test_refused_value_reports_the_servers_error(size: int) -> None:
    with FakeServer(max_value=1000) as small, Client(port=small.port) as kv:
        with pytest.raises(RemoteError) as caught:
            kv.bset("big", BIG[:size])
        assert caught.value.code == "TOOLARGE"
        kv.ping()  # reconnected: the server closes after refusing a BSET


def test_reconnects_after_the_server_closed(fake: FakeServer) -> None:
    with Client(port=fake.port) as kv:
        kv.ping()
        fake.drop_connections()
        with pytest.raises(ConnectionResetError, match=str(fake.port)):
            kv.ping()
        kv.ping()


def test_refused_connection(closed_port: int) -> None:
    with pytest.raises(ConnectionRefusedError, match=f"127.0.0.1:{closed_port}"):
        Client(port=closed_port)


def test_timeout(mute_port: int) -> None:
    with Client(port=mute_port, timeout=0.2) as kv, pytest.raises(TimeoutError, match="within"):
        kv.ping()


def test_closed_client_stays_closed(fake: FakeServer) -> None:
    kv = Client(port=fake.port)
    kv.close()
    with pytest.raises(ConnectionError, match="closed"):
        kv.ping()


def test_udp_client(fake: FakeServer) -> None:
    with UdpClient("127.0.0.1", fake.udp_port, timeout=2) as kv:
        version = kv.set("u", "over udp")
        assert kv.get("u") == b"over udp"
        assert kv.version("u") == version
        assert kv.stats() == 1
        assert kv.mget(["u", "v"]) == [b"over udp", None]
        kv.bset("b", b"\x00\x01")
        assert kv.bget("b") == b"\x00\x01"
        kv.ping()
        assert kv.info()["objects"] == "2"
        now = datetime.now(UTC) + timedelta(seconds=1)
        assert kv.get_at("u", now) == b"over udp"
        assert kv.get_at("u", 0) is None
        with pytest.raises(RemoteError) as caught:
            kv.set(FAIL_KEY, "x")
        assert caught.value.code == "STORAGE"
        with pytest.raises(ValueTooLarge):
            kv.bset("huge", b"x" * gwkv.UDP_MAX)
    raw = udp_request("127.0.0.1", fake.udp_port, b"PING\nGET u\n")
    assert raw == b"OK PONG\nVALUE over udp\n"


def test_udp_refused(closed_port: int) -> None:
    with pytest.raises(ConnectionRefusedError, match=str(closed_port)):
        udp_request("127.0.0.1", closed_port, b"PING\n", timeout=2)


def test_idle_connection_closed_by_server_is_replaced(
    fake: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_sync, "_STALE_AFTER", 0.0)
    with Client(port=fake.port) as kv:
        kv.ping()
        fake.drop_connections()
        time.sleep(0.1)  # let the FIN arrive
        kv.ping()  # noticed before sending: no error
