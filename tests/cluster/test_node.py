"""``kvbox blobnode`` as a real process: the chunk API, its authentication, registration.

Layer: tests/cluster. One node process per module on its own database (the session's
PostgreSQL); requests come from the gateway's own client (``kvbox.cluster.client``)
and, for what that client would never send, from raw signed HTTP. The node's limits
are short (``LIMITS``) so that its governor's timeouts show within a test.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from _cleanup import removed_after
from _postgres import PostgresServer
from kvbox.auth import cluster as auth
from kvbox.cluster.client import PREFIX, NodeClient
from kvbox.errors import ChunkMissing, ClusterUnavailable, DataDamaged

from ._nodes import BlobNodeProcess, blob_nodes

#: The module node's header and idle timeouts, short enough to be seen in a test.
HEADER_TIMEOUT = 1.0
IDLE_TIMEOUT = 0.5
LIMITS = ("--header-timeout", str(HEADER_TIMEOUT), "--idle-timeout", str(IDLE_TIMEOUT))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def meta_url(postgres: PostgresServer) -> str:
    return postgres.new_database(migrated=True)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, meta_url: str) -> Iterator[BlobNodeProcess]:
    with (
        removed_after(tmp_path_factory.mktemp("blobnode")) as base,
        blob_nodes(base, meta_url, 1, LIMITS) as nodes,
    ):
        yield nodes[0]


@pytest.fixture
def secret(node: BlobNodeProcess) -> bytes:
    return auth.load_secret(node.secret_file.read_bytes(), "test")


@pytest.fixture
async def client(secret: bytes) -> AsyncIterator[NodeClient]:
    c = NodeClient(secret)
    yield c
    await c.close()


async def raw(
    node: BlobNodeProcess,
    method: str,
    target: str,
    headers: dict[str, str],
    data: bytes = b"",
) -> tuple[int, dict[str, str]]:
    async with (
        aiohttp.ClientSession() as s,
        s.request(method, f"http://{node.address}{target}", headers=headers, data=data) as r,
    ):
        body = await r.json() if r.content_type == "application/json" else {}
        return r.status, body


async def test_registers_in_postgresql(node: BlobNodeProcess, meta_url: str) -> None:
    conn = await asyncpg.connect(meta_url)
    try:
        row = await conn.fetchrow(
            "SELECT address, state, now() - heartbeat_at < interval '10 s' AS fresh"
            " FROM kvbox.blob_nodes WHERE node_id = $1",
            node.node_id,
        )
    finally:
        await conn.close()
    assert row is not None
    assert (row["address"], row["state"], row["fresh"]) == (node.address, "active", True)
    assert (node.data / "node-id").read_text().strip() == node.node_id


async def test_put_get_ranges_head_list_verify_delete(
    node: BlobNodeProcess, client: NodeClient
) -> None:
    data = os.urandom(300_000)
    cid = sha(data)
    await client.put(node.address, cid, data)
    assert node.chunk_file(cid).read_bytes() == data
    assert await client.get(node.address, cid) == data
    assert await client.get(node.address, cid, 1000, 10) == data[1000:1010]
    assert await client.get(node.address, cid, 299_990) == data[299_990:]
    assert await client.get(node.address, cid, 400_000, 5) == b""
    assert await client.head(node.address, cid) == len(data)
    assert cid in await client.list(node.address)
    verdict = await client.verify(node.address, cid)
    assert (verdict.present, verdict.sound, verdict.size) == (True, True, len(data))
    await client.put(node.address, cid, data)  # the same bytes again: harmless
    assert not await client.delete_if_older(node.address, cid, 3600)  # written just now
    assert node.chunk_file(cid).exists()
    await client.delete(node.address, cid)
    await client.delete(node.address, cid)  # already gone: no error
    assert await client.head(node.address, cid) is None
    with pytest.raises(ChunkMissing):
        await client.get(node.address, cid)
    assert not (await client.verify(node.address, cid)).present
    assert cid not in await client.list(node.address)


async def test_list_pages_in_order(node: BlobNodeProcess, client: NodeClient) -> None:
    datas = [f"page {i}".encode() for i in range(7)]
    ids = sorted(sha(d) for d in datas)
    await asyncio.gather(*(client.put(node.address, sha(d), d) for d in datas))
    seen: list[str] = []
    after = ""
    while page := await client.list(node.address, after, limit=3):
        assert len(page) <= 3
        seen += page
        after = page[-1]
    assert [c for c in seen if c in ids] == ids
    assert seen == sorted(seen)


async def test_a_damaged_replica_is_never_served(node: BlobNodeProcess, client: NodeClient) -> None:
    data = b"soon to rot " * 1000
    cid = sha(data)
    await client.put(node.address, cid, data)
    path = node.chunk_file(cid)
    rotten = bytearray(path.read_bytes())
    rotten[5] ^= 0x01
    path.write_bytes(bytes(rotten))
    for offset, length in ((0, -1), (100, 10)):
        with pytest.raises(DataDamaged) as caught:
            await client.get(node.address, cid, offset, length)
        assert caught.value.chunk_id == cid and node.address in str(caught.value)
    verdict = await client.verify(node.address, cid)
    assert (verdict.present, verdict.sound) == (True, False)
    await client.put(node.address, cid, data)  # a sound copy heals it
    assert await client.get(node.address, cid) == data
    assert "damaged" in node.new_log()


async def test_bytes_that_do_not_hash_to_the_id_are_refused(
    node: BlobNodeProcess, secret: bytes
) -> None:
    data = b"claimed"
    wrong = sha(b"something else")
    headers = auth.sign(secret, "PUT", f"{PREFIX}/{wrong}", time.time(), wrong)
    status, body = await raw(node, "PUT", f"{PREFIX}/{wrong}", headers, data)
    assert (status, body["error"]) == (422, "digest_mismatch")
    assert not node.chunk_file(wrong).exists() and not node.chunk_file(sha(data)).exists()
    assert node.temp_files() == []
    # The signed digest must be the id: a signature over other bytes cannot store these.
    cid = sha(data)
    headers = auth.sign(secret, "PUT", f"{PREFIX}/{cid}", time.time(), sha(b"x"))
    status, body = await raw(node, "PUT", f"{PREFIX}/{cid}", headers, data)
    assert (status, body["error"]) == (400, "bad_request")
    assert not node.chunk_file(cid).exists()


@pytest.mark.parametrize("bad", ["../../etc/passwd", "AB" * 32, "a" * 63, "g" * 64, "a" * 65])
async def test_ids_that_are_not_content_addresses(
    node: BlobNodeProcess, secret: bytes, bad: str
) -> None:
    for method in ("GET", "PUT", "DELETE", "HEAD"):
        target = f"{PREFIX}/{bad}"
        headers = auth.sign(secret, method, target, time.time())
        status, _ = await raw(node, method, target, headers)
        assert status in (400, 403, 404), (method, bad, status)  # never read or written
    assert sorted(p.name for p in (node.data / "chunks").iterdir() if len(p.name) != 2) == ["tmp"]


async def test_unsigned_wrongly_signed_stale_and_replayed_requests_are_refused(
    node: BlobNodeProcess, client: NodeClient, secret: bytes
) -> None:
    data = b"guarded"
    cid = sha(data)
    await client.put(node.address, cid, data)
    target = f"{PREFIX}/{cid}"
    now = time.time()
    cases = {
        "unsigned": {},
        "wrong secret": auth.sign(b"another cluster's secret!", "GET", target, now),
        "stale": auth.sign(secret, "GET", target, now - auth.REPLAY_WINDOW - 5),
        "future": auth.sign(secret, "GET", target, now + auth.REPLAY_WINDOW + 5),
        "signed for another method": auth.sign(secret, "GET", target, now),
    }
    for name, headers in cases.items():
        method = "DELETE" if name == "signed for another method" else "GET"
        status, body = await raw(node, method, target, headers)
        assert (status, body.get("error")) == (403, "denied"), name
    fresh = auth.sign(secret, "DELETE", target, time.time())
    assert (await raw(node, "DELETE", f"{PREFIX}/{sha(b'other')}", fresh))[0] == 403
    assert node.chunk_file(cid).exists()  # nothing above deleted it
    assert (await raw(node, "DELETE", target, fresh))[0] == 204
    assert (await raw(node, "DELETE", target, fresh))[0] == 403  # the same request again
    assert not node.chunk_file(cid).exists()
    async with aiohttp.ClientSession() as s, s.get(f"http://{node.address}/healthz") as r:
        assert r.status == 200  # liveness needs no secret
    async with aiohttp.ClientSession() as s, s.get(f"http://{node.address}/metrics") as r:
        text = await r.text()  # nor do the node's counters
    assert r.status == 200
    refused = next(
        line
        for line in text.splitlines()
        if line.startswith("kvbox_blobnode_refused_requests_total")
    )
    assert float(refused.split()[-1]) >= len(cases) + 2
    assert 'kvbox_blobnode_requests_total{method="PUT",status="201"}' in text
    assert "kvbox_blobnode_free_bytes" in text and "kvbox_blobnode_chunks" in text


async def test_an_unreachable_node_is_unavailable_not_missing(client: NodeClient) -> None:
    from _ports import free_port

    with pytest.raises(ClusterUnavailable):
        await client.get(f"127.0.0.1:{free_port()}", sha(b"x"))


async def test_a_slow_loris_is_cut_at_the_header_timeout(node: BlobNodeProcess) -> None:
    """A request head dribbled a byte at a time is answered 408 (the chunk API's JSON)
    and closed once ``--header-timeout`` has passed since its first byte, however
    steadily it trickles; /metrics counts it."""
    before = node.metric("kvbox_timeouts_total", door="blobnode", phase="header")
    host, port = node.address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    head = b"GET /v1/chunks HTTP/1.1\r\nHost: node\r\nX-Slow: " + b"z" * 1000
    loop = asyncio.get_running_loop()
    started = loop.time()
    answer = b""
    try:
        for byte in head:  # bounded: 1000 bytes, 50 ms apart, stops when cut
            writer.write(bytes([byte]))
            with contextlib.suppress(TimeoutError):
                answer = await asyncio.wait_for(reader.read(65536), 0.05)
            if answer or reader.at_eof():
                break
        cut_after = loop.time() - started
        answer += await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b'"error": "timeout"' in answer
    assert HEADER_TIMEOUT <= cut_after < HEADER_TIMEOUT + 10
    after = node.metric("kvbox_timeouts_total", door="blobnode", phase="header")
    assert after == before + 1
    assert node.metric("kvbox_connections_total", door="blobnode") >= 1


async def test_a_pooled_connection_the_node_closed_is_sent_again_not_failed(
    node: BlobNodeProcess, client: NodeClient
) -> None:
    """The race a gateway meets when a node's idle timeout closes a pooled connection
    just as a request goes out on it. The client's event loop is held (as a busy gateway
    is) until the node has closed the idle connection, so the client has not yet seen
    the close when it sends: the request breaks before any answer, and is sent once
    more on a fresh connection instead of failing (which a gateway would take for a
    dead replica, and with W = R answer 503)."""
    data = b"pooled " * 500
    cid = sha(data)
    for ask in ("verify", "get", "head", "put"):
        await client.put(node.address, cid, data)  # a connection now in the pool
        idle = node.metric("kvbox_timeouts_total", door="blobnode", phase="idle")
        deadline = time.monotonic() + 15
        while node.metric("kvbox_timeouts_total", door="blobnode", phase="idle") <= idle:
            assert time.monotonic() < deadline, "the node never closed the idle connection"
            time.sleep(IDLE_TIMEOUT / 5)  # holds this loop: the close is not seen yet
        retries = client.retries
        if ask == "verify":  # a POST: aiohttp itself never sends one again
            assert (await client.verify(node.address, cid)).sound
            assert client.retries == retries + 1
        elif ask == "get":
            assert await client.get(node.address, cid) == data
        elif ask == "head":
            assert await client.head(node.address, cid) == len(data)
        else:
            await client.put(node.address, cid, data)
        assert client.retries <= retries + 1


def test_node_keeps_its_id_and_chunks_across_kill_9(
    tmp_path: Path, meta_url: str, secret: bytes
) -> None:
    from ._nodes import write_secret

    secret_file = write_secret(tmp_path / "secret")
    n = BlobNodeProcess(tmp_path / "n", meta_url, secret_file)
    try:
        n.start()
        first = n.node_id
        data = b"survives" * 100

        async def put() -> None:
            c = NodeClient(auth.load_secret(secret_file.read_bytes(), "t"))
            try:
                await c.put(n.address, sha(data), data)
            finally:
                await c.close()

        asyncio.run(put())
        n.kill()
        n.start()
        assert n.node_id == first
        assert n.chunk_file(sha(data)).read_bytes() == data
        assert " serving 1 chunks " in n.new_log()

        async def across_a_restart() -> None:
            """One client, its pooled connection dead after the restart: no error."""
            c = NodeClient(auth.load_secret(secret_file.read_bytes(), "t"))
            try:
                assert await c.get(n.address, sha(data)) == data
                n.kill()
                n.start()
                assert await c.get(n.address, sha(data)) == data
                await c.put(n.address, sha(b"after"), b"after")
            finally:
                await c.close()

        asyncio.run(across_a_restart())
    finally:
        n.close()


def test_bad_flags_are_one_line_errors(tmp_path: Path, meta_url: str) -> None:
    from e2e._server import run_kvbox

    short = tmp_path / "short"
    short.write_text("tiny\n")
    base = ["blobnode", "--data", str(tmp_path / "d"), "--listen", "127.0.0.1:1"]
    r = run_kvbox(*base, "--meta", meta_url, "--cluster-secret-file", str(short))
    assert r.returncode == 1 and b"at least 16 bytes" in r.stderr
    r = run_kvbox(*base, "--meta", meta_url, "--cluster-secret-file", str(tmp_path / "none"))
    assert r.returncode == 1 and b"--cluster-secret-file" in r.stderr
    good = tmp_path / "good"
    good.write_text("x" * 32)
    r = run_kvbox(*base, "--meta", "mysql://a@b/c", "--cluster-secret-file", str(good))
    assert r.returncode == 1 and b"--meta" in r.stderr
    for flag, value in (("--idle-timeout", "0"), ("--max-connections-per-ip", "-1")):
        r = run_kvbox(*base, "--meta", meta_url, "--cluster-secret-file", str(good), flag, value)
        assert r.returncode == 1 and flag.encode() in r.stderr, r.stderr
        assert len(r.stderr.splitlines()) == 1
    password = meta_url.split(":")[2].split("@")[0]
    fresh = meta_url.rsplit("/", 1)[0] + "/postgres"  # a database without kvbox's schema
    r = run_kvbox(*base, "--meta", fresh, "--cluster-secret-file", str(good))
    assert r.returncode == 1 and b"kvbox migrate" in r.stderr
    assert password.encode() not in r.stderr + r.stdout
