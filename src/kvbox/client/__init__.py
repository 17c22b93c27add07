"""Python clients for GW-KV: ``Client`` (blocking), ``AsyncClient`` (asyncio), ``UdpClient``.

Layer: client. Rules: no server or storage imports; all framing comes from
``kvbox.proto.gwkv``, all reply meaning from ``_common``. Errors are ``kvbox.errors``
(``RemoteError`` for ``ERR`` replies, ``ConditionFailed`` for ``CONFLICT``,
``InvalidKey``/``InvalidArgument``/``ValueTooLarge`` before anything is sent) or ``OSError``
subclasses naming the server (``ConnectionRefusedError``, ``ConnectionResetError``,
``TimeoutError``).
"""

from __future__ import annotations

from kvbox.client._async import AsyncClient
from kvbox.client._common import DEFAULT_HOST, DEFAULT_PORT, DEFAULT_TIMEOUT
from kvbox.client._sync import Client, UdpClient, udp_request

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "DEFAULT_TIMEOUT",
    "AsyncClient",
    "Client",
    "UdpClient",
    "udp_request",
]
