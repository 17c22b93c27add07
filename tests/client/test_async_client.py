"""``kvbox.AsyncClient`` against the fake server: commands, pipelining, streaming, errors."""

from __future__ import annotations

import asyncio
import io
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kvbox import AsyncClient
from kvbox.errors import ConditionFailed, InvalidArgument, InvalidKey, RemoteError
from kvbox.proto import gwkv
from kvbox.proto.gwkv import Expect

from .fakeserver import FAIL_KEY, FakeServer

BIG = bytes(range(256)) * (12 * 1024 + 7)


async def test_every_command(fake: FakeServer) -> None:
    async with AsyncClient("127.0.0.1", fake.port) as kv:
        v1 = await kv.set("apple", "red")
        assert await kv.get("apple") == b"red"
        assert await kv.get("pear") is None
        assert await kv.version("apple") == v1
        assert await kv.stats() == 1
        await kv.cas("apple", v1, "green")
        with pytest.raises(ConditionFailed) as caught:
            await kv.cas("apple", v1, "blue")
        assert caught.value.current == await kv.version("apple")
        assert len(await kv.mset([("a", "1"), ("b", "2")])) == 2
        assert await kv.mget(["a", "x", "b"]) == [b"1", None, b"2"]
        assert await kv.delete("a") is True
        assert await kv.delete("a") is False
        await kv.ping()
        assert (await kv.info())["version"] == "fake"
        await kv.bset("bin", b"\x00\n")
        assert await kv.bget("bin") == b"\x00\n"
        with pytest.raises(RemoteError) as err:
            await kv.get("bin")
        assert err.value.code == "NOTTEXT"
        with pytest.raises(RemoteError) as err:
            await kv.set(FAIL_KEY, "x")
        assert err.value.code == "STORAGE"
        with pytest.raises(InvalidKey):
            await kv.get("no-dashes")
        await kv.ping()


async def test_get_at_and_get_version(fake: FakeServer) -> None:
    async with AsyncClient(port=fake.port) as kv:
        v1 = await kv.set("k", "one")
        await asyncio.sleep(0.002)
        between = time.time_ns()
        await asyncio.sleep(0.002)
        await kv.bset("k", BIG)
        assert await kv.get_at("k", datetime.fromtimestamp(between / 1e9, UTC)) == b"one"
        assert await kv.get_at("k", datetime.now(UTC)) == BIG
        assert await kv.get_at("k", "1970-01-01T00:00:00Z") is None
        sink = io.BytesIO()
        assert await kv.get_at_into("k", between // 1_000_000, sink) is True
        assert sink.getvalue() == b"one"
        assert await kv.get_version("k", v1) == b"one"
        assert await kv.get_version("k", "0" * 26) is None
        with pytest.raises(InvalidArgument):
            await kv.get_at("k", datetime(2026, 1, 1))  # naive: refused before sending
        replies = await kv.pipeline([gwkv.GetAt("k", between), gwkv.GetAt("k", 0, binary=True)])
        assert replies == [gwkv.ValueReply(b"one"), gwkv.NotFoundReply()]


async def test_pipeline(fake: FakeServer) -> None:
    async with AsyncClient(port=fake.port) as kv:
        await kv.bset("big", BIG)
        replies = await kv.pipeline(
            [
                gwkv.Set("k", b"v"),
                gwkv.Get("k"),
                gwkv.Get("nope"),
                gwkv.Cas("k", None, b"w"),
                gwkv.MultiGet(("k", "nope")),
                gwkv.BGet("big"),
                gwkv.Info(),
                gwkv.Ping(),
            ]
        )
        assert isinstance(replies[0], gwkv.OkReply)
        version = replies[0].words[0]
        assert replies[1:] == [
            gwkv.ValueReply(b"v"),
            gwkv.NotFoundReply(),
            gwkv.ConflictReply(version),
            gwkv.MultiReply((gwkv.ValueReply(b"v"), gwkv.NotFoundReply())),
            gwkv.BinaryReply(len(BIG), fake.data["big"][0], BIG),
            gwkv.InfoReply((("objects", "2"), ("version", "fake"))),
            gwkv.OkReply(("PONG",)),
        ]
        batch = b"".join(gwkv.encode_get("k") for _ in range(16))
        for _ in range(10):
            assert await kv.pipeline_raw(batch, [Expect.LINE] * 16) == [gwkv.ValueReply(b"v")] * 16


async def test_tasks_can_share_a_client(fake: FakeServer) -> None:
    async with AsyncClient(port=fake.port) as kv:
        versions = await asyncio.gather(*(kv.set(f"k{i}", str(i)) for i in range(50)))
        assert len(set(versions)) == 50
        values = await asyncio.gather(*(kv.get(f"k{i}") for i in range(50)))
        assert values == [str(i).encode() for i in range(50)]


async def test_streams_files(fake: FakeServer, tmp_path: Path) -> None:
    src = tmp_path / "in.bin"
    src.write_bytes(BIG)
    dst = tmp_path / "out.bin"
    async with AsyncClient(port=fake.port) as kv:
        with src.open("rb") as f:
            version = await kv.bset("big", f)
        with dst.open("wb") as f:
            assert await kv.bget_into("big", f) is True
        assert dst.read_bytes() == BIG
        with dst.open("wb") as f:
            assert await kv.bget_into("absent", f) is False
        v2 = await kv.bcas("big", version, b"small")
        assert await kv.version("big") == v2


async def test_closing_error_drops_the_connection(fake: FakeServer) -> None:
    async with AsyncClient(port=fake.port) as kv:
        replies = await kv.pipeline_raw(b"BSET k x\n", [Expect.LINE])
        assert isinstance(replies[0], gwkv.ErrorReply) and replies[0].code == "BADLENGTH"
        await kv.ping()  # on a new connection


@pytest.mark.parametrize("size", [2000, len(BIG)])
async def test_refused_value_reports_the_servers_error(size: int, tmp_path: Path) -> None:
    src = tmp_path / "big"
    src.write_bytes(BIG[:size])
    with FakeServer(max_value=1000) as small:
        async with AsyncClient(port=small.port) as kv:
            with pytest.raises(RemoteError) as caught:
                await kv.bset("big", BIG[:size])
            assert caught.value.code == "TOOLARGE"
            with pytest.raises(RemoteError) as caught, src.open("rb") as f:
                await kv.bset("big", f)
            assert caught.value.code == "TOOLARGE"
            await kv.ping()


async def test_refused(closed_port: int) -> None:
    kv = AsyncClient(port=closed_port)
    with pytest.raises(ConnectionRefusedError, match=str(closed_port)):
        await kv.ping()
    await kv.close()


async def test_timeout(mute_port: int) -> None:
    async with AsyncClient(port=mute_port, timeout=0.2) as kv:
        with pytest.raises(TimeoutError, match="within"):
            await kv.ping()


async def test_server_close_then_reconnect(fake: FakeServer) -> None:
    async with AsyncClient(port=fake.port) as kv:
        await kv.ping()
        fake.drop_connections()
        await asyncio.sleep(0.1)
        await kv.ping()  # the idle close was noticed before sending
