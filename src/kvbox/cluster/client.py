"""A gateway's side of the chunk HTTP API (``kvbox.cluster.node`` is the other side).

Layer: cluster. Rules:

* Every request is signed with the cluster secret (``kvbox.auth.cluster.sign``) and
  has a deadline (``TIMEOUTS``): a node that stops answering costs a caller a bounded
  wait, never a hang, and the caller then tries another replica.
* A node's answer maps onto the BlobStore errors: 404 ``missing`` -> ``ChunkMissing``,
  ``damaged`` -> ``DataDamaged``; anything else (refused connection, timeout, 5xx,
  an unreadable answer) -> ``NodeUnavailable``, which says "try elsewhere" rather
  than anything about the chunk.
* Every full chunk that comes back is hashed again here before a caller sees it: the
  node checked it on disk, this checks what crossed the network.
* A pooled keep-alive connection the node has just closed (its ``--idle-timeout``, a
  restart) is not a node failure: a request that meets one -- the connection was
  reused, and it broke before any byte of an answer -- is sent once more, signed anew,
  on a fresh connection (``NodeClient.retries`` counts them). Every request here is
  safe to repeat: a chunk PUT is content-addressed (the same bytes under the same id),
  GET/HEAD/list and ``?verify`` only read, DELETE of a gone chunk answers 204. Without
  this an idle close would be a spurious failover, and with W = R a spurious 503.
  A refused connection, a timeout or a broken answer is not retried: those say
  something about the node, and the caller tries another replica.
* Idle pooled connections are dropped by the gateway after ``KEEPALIVE`` seconds,
  well before a node's idle timeout (``kvbox blobnode --idle-timeout``, default 120 s),
  so the race above is the exception, not the rule.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Final

import aiohttp

from kvbox.auth import cluster as auth
from kvbox.errors import ChunkMissing, ClusterUnavailable, DataDamaged, StorageError

#: Seconds to connect to a node and to wait between bytes of its answer.
CONNECT_TIMEOUT: Final = 2.0
READ_TIMEOUT: Final = 15.0
TIMEOUTS: Final = aiohttp.ClientTimeout(
    total=None, sock_connect=CONNECT_TIMEOUT, sock_read=READ_TIMEOUT
)
#: Seconds the gateway keeps an idle connection to a node for reuse (aiohttp's default,
#: stated): below a node's idle timeout (``cli.blobnode.NODE_LIMITS``), so the gateway
#: normally closes first and never sends on a connection the node is closing.
KEEPALIVE: Final = 15.0
#: Path of the chunk API (``/v1/chunks/<id>``), versioned so a rolling upgrade can
#: serve two forms at once.
PREFIX: Final = "/v1/chunks"


#: A blob node did not give a usable answer (module docstring): try another one.
NodeUnavailable = ClusterUnavailable


@dataclass(frozen=True, slots=True)
class Verdict:
    """A node's answer to a digest check."""

    present: bool
    sound: bool
    size: int


class _Attempt:
    """One call's trace: whether aiohttp handed it a pooled connection (set by the
    session's trace hook), and whether an answer's head arrived."""

    __slots__ = ("answered", "reused")

    def __init__(self) -> None:
        self.reused = False
        self.answered = False


async def _on_reuse(
    session: aiohttp.ClientSession,
    ctx: SimpleNamespace,
    params: aiohttp.TraceConnectionReuseconnParams,
) -> None:
    attempt = ctx.trace_request_ctx
    if isinstance(attempt, _Attempt):
        attempt.reused = True


def _closed_under_us(exc: BaseException, attempt: _Attempt) -> bool:
    """Whether ``exc`` is a pooled connection the node had closed (module docstring):
    reused, broken before any answer, and not a failure to connect."""
    return (
        attempt.reused
        and not attempt.answered
        and isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError)
        and not isinstance(exc, aiohttp.ClientConnectorError)
    )


class NodeClient:
    """Signed requests to blob nodes over one shared HTTP session."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret
        self._session: aiohttp.ClientSession | None = None
        #: For the one retry of a request whose pooled connection was closed under it:
        #: every connection new (``force_close``), so the retry cannot meet another.
        self._fresh: aiohttp.ClientSession | None = None
        #: Requests sent again after their pooled connection turned out closed.
        self.retries = 0

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            trace = aiohttp.TraceConfig()
            trace.on_connection_reuseconn.append(_on_reuse)
            self._session = aiohttp.ClientSession(
                timeout=TIMEOUTS,
                connector=aiohttp.TCPConnector(
                    limit=64, limit_per_host=16, keepalive_timeout=KEEPALIVE
                ),
                auto_decompress=False,
                trace_configs=[trace],
            )
        return self._session

    def _fresh_session(self) -> aiohttp.ClientSession:
        if self._fresh is None or self._fresh.closed:
            self._fresh = aiohttp.ClientSession(
                timeout=TIMEOUTS,
                connector=aiohttp.TCPConnector(limit=16, force_close=True),
                auto_decompress=False,
            )
        return self._fresh

    async def close(self) -> None:
        for s in (self._session, self._fresh):
            if s is not None:
                await s.close()
        self._session = self._fresh = None

    async def _request(
        self,
        address: str,
        method: str,
        target: str,
        *,
        data: bytes | None = None,
        digest: str = auth.EMPTY_SHA256,
    ) -> tuple[int, bytes, dict[str, str]]:
        attempt = _Attempt()
        try:
            try:
                return await self._send(
                    self.session(), attempt, address, method, target, data, digest
                )
            except (aiohttp.ClientError, OSError) as exc:
                if not _closed_under_us(exc, attempt):
                    raise
            self.retries += 1
            return await self._send(
                self._fresh_session(), _Attempt(), address, method, target, data, digest
            )
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise NodeUnavailable(f"blob node {address}: {type(exc).__name__} {exc}") from None

    async def _send(
        self,
        session: aiohttp.ClientSession,
        attempt: _Attempt,
        address: str,
        method: str,
        target: str,
        data: bytes | None,
        digest: str,
    ) -> tuple[int, bytes, dict[str, str]]:
        # Signed for each attempt: a node refuses a nonce it has seen (a replay).
        headers = auth.sign(self._secret, method, target, time.time(), digest)
        async with session.request(
            method,
            f"http://{address}{target}",
            data=data,
            headers=headers,
            trace_request_ctx=attempt,
        ) as resp:
            attempt.answered = True
            body = await resp.read()
            return resp.status, body, dict(resp.headers)

    @staticmethod
    def _fail(address: str, chunk_id: str, status: int, body: bytes) -> StorageError:
        try:
            info: dict[str, Any] = json.loads(body)
            word, message = str(info.get("error", "")), str(info.get("message", ""))
        except (ValueError, AttributeError):
            word, message = "", body[:200].decode("utf-8", "replace")
        if word == "missing":
            return ChunkMissing(chunk_id)
        if word == "damaged":
            return DataDamaged(f"chunk {chunk_id} is damaged on {address}", chunk_id=chunk_id)
        return NodeUnavailable(f"blob node {address}: HTTP {status} {word} {message}".strip())

    async def put(self, address: str, chunk_id: str, data: bytes) -> None:
        """Store ``data`` (whose SHA-256 is ``chunk_id``) on the node, fsync'd when this
        returns."""
        target = f"{PREFIX}/{chunk_id}"
        status, body, _ = await self._request(address, "PUT", target, data=data, digest=chunk_id)
        if status not in (200, 201):
            raise self._fail(address, chunk_id, status, body)

    async def get(self, address: str, chunk_id: str, offset: int = 0, length: int = -1) -> bytes:
        whole = offset == 0 and length < 0
        target = (
            f"{PREFIX}/{chunk_id}"
            if whole
            else f"{PREFIX}/{chunk_id}?offset={offset}&length={length}"
        )
        status, body, _ = await self._request(address, "GET", target)
        if status != 200:
            raise self._fail(address, chunk_id, status, body)
        if whole and hashlib.sha256(body).hexdigest() != chunk_id:
            raise DataDamaged(
                f"chunk {chunk_id} from {address} does not hash to its address", chunk_id=chunk_id
            )
        return body

    async def head(self, address: str, chunk_id: str) -> int | None:
        """The chunk's size on the node, None if it has none."""
        status, body, headers = await self._request(address, "HEAD", f"{PREFIX}/{chunk_id}")
        if status == 404:
            return None
        if status != 200:
            raise self._fail(address, chunk_id, status, body)
        return int(headers.get("X-Kvbox-Chunk-Size", "0"))

    async def delete(self, address: str, chunk_id: str) -> None:
        status, body, _ = await self._request(address, "DELETE", f"{PREFIX}/{chunk_id}")
        if status not in (200, 204, 404):
            raise self._fail(address, chunk_id, status, body)

    async def delete_if_older(self, address: str, chunk_id: str, seconds: float) -> bool:
        """Delete the node's copy only if its file was last written more than
        ``seconds`` ago (an orphan, not a write in flight); whether it is gone."""
        target = f"{PREFIX}/{chunk_id}?older-than={seconds:g}"
        status, body, _ = await self._request(address, "DELETE", target)
        if status == 409:
            return False
        if status not in (200, 204, 404):
            raise self._fail(address, chunk_id, status, body)
        return True

    async def verify(self, address: str, chunk_id: str) -> Verdict:
        status, body, _ = await self._request(address, "POST", f"{PREFIX}/{chunk_id}?verify")
        if status != 200:
            raise self._fail(address, chunk_id, status, body)
        info = json.loads(body)
        return Verdict(bool(info["present"]), bool(info["sound"]), int(info.get("size", 0)))

    async def list(self, address: str, after: str = "", limit: int = 1000) -> list[str]:
        target = f"{PREFIX}?after={after}&limit={limit}" if after else f"{PREFIX}?limit={limit}"
        status, body, _ = await self._request(address, "GET", target)
        if status != 200:
            raise self._fail(address, "", status, body)
        ids: list[str] = json.loads(body)["chunks"]
        return ids
