"""Transports: the listening sockets, connection loops and HTTP servers of every door.

Layer: server (asyncio; the only place that owns sockets). Rules: a module here moves
bytes and applies limits, timeouts and backpressure; what a request means is a door's
(``kvbox.kv`` for GW-KV, ``kvbox.s3door`` for S3, ``kvbox.console``), parsing is
``kvbox.proto``'s or aiohttp's, and ``app`` is the composition root that wires them.
"""
