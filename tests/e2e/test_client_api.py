"""``kvbox.Client`` and ``kvbox.AsyncClient`` against a live server.

Layer: tests/e2e. Rules: what the clients return is cross-checked with raw-socket reads,
so a bug shared by the client and the server's codec cannot hide itself.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from _ports import free_port
from kvbox import AsyncClient, Client
from kvbox.errors import ConditionFailed, RemoteError, ValueTooLarge

from ._server import KvboxServer


def test_sync_client_every_op(server: KvboxServer, tmp_path: Path) -> None:
    with Client(server.host, server.port, timeout=10) as kv:
        v1 = kv.set("apple", "red")
        assert kv.get("apple") == b"red"
        assert kv.get("nothing") is None
        assert kv.stats() == 1
        assert kv.version("apple") == v1
        with pytest.raises(ConditionFailed) as lost:
            kv.cas("apple", None, "green")
        assert lost.value.current == v1
        v2 = kv.cas("apple", v1, "green")
        assert kv.get("apple") == b"green"
        versions = kv.mset([("a", "1"), ("b", "2")])
        assert len(versions) == 2
        assert kv.mget(["b", "zz", "a"]) == [b"2", None, b"1"]
        data = bytes(range(256)) * 4096
        vb = kv.bset("blob", data)
        assert kv.bget("blob") == data
        with pytest.raises(RemoteError) as refused:
            kv.get("blob")
        assert refused.value.code == "NOTTEXT"
        # streamed from and into files
        src = tmp_path / "src.bin"
        src.write_bytes(data[::-1])
        with open(src, "rb") as fh:
            vf = kv.bset("fromfile", fh)
        sink = io.BytesIO()
        assert kv.bget_into("fromfile", sink) is True
        assert sink.getvalue() == data[::-1]
        assert kv.bget_into("nothing", io.BytesIO()) is False
        assert kv.delete("a") is True
        assert kv.delete("a") is False
        kv.ping()
        assert kv.info()["objects"] == "4"
        with pytest.raises(ValueTooLarge):  # checked before sending, or refused by the server
            kv.set("k", "v" * 1025)
        assert kv.stats() == 4  # still in step after a refusal
    with server.connect() as w:
        assert w.request(b"VERSION apple\n") == f"OK {v2}\n".encode()
        assert w.bget("blob") == (data, vb)
        assert w.bget("fromfile") == (data[::-1], vf)


def test_sync_client_connection_errors(tmp_path: Path) -> None:
    with pytest.raises(ConnectionRefusedError):
        Client("127.0.0.1", free_port(), timeout=2)


async def test_async_client(server: KvboxServer) -> None:
    async with AsyncClient(server.host, server.port, timeout=10) as kv:
        version = await kv.set("x", "async value")
        assert await kv.get("x") == b"async value"
        assert await kv.version("x") == version
        blob = b"\x00\n" * 300_000
        await kv.bset("b", blob)
        assert await kv.bget("b") == blob
        assert await kv.stats() == 2
        assert await kv.mget(["x", "y"]) == [b"async value", None]
    assert server.oneshot(b"GET x\n") == b"VALUE async value\n"
