"""Sans-IO codecs: bytes in, events out; events in, bytes out.

Layer: proto (pure; no asyncio, no sockets, nothing from the core, the servers or the
doors: tests/test_layering.py). ``gwkv`` is the GW-KV protocol (both sides);
``awschunked`` decodes S3's aws-chunked bodies.
"""
