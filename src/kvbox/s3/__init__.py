"""The S3 protocol, pure: routing, errors, XML bodies, checksums, CORS and website rules.

Layer: s3 protocol. Rules: no I/O, no asyncio, nothing from ``kvbox.core``,
``kvbox.server`` or the door (tests/test_layering.py checks it); the S3 front door
(``kvbox.s3door``: handlers over ``kvbox.core.store.Store``) calls these functions,
and ``kvbox.server`` owns the sockets. Submodules: ``router`` (request ->
``Endpoint``), ``errors`` (``S3Error`` and the translation of kvbox's errors through
``kvbox.errors.WIRE``), ``xml`` (every XML body), ``checksums`` (flexible checksums and
the multipart ETag), ``cors`` (matching a request to a CORS rule), ``website`` (planning
a website request).
"""

from kvbox.s3.errors import S3Error, from_kvbox_error
from kvbox.s3.names import RouteError, valid_bucket_name
from kvbox.s3.router import Endpoint, Op, route

__all__ = [
    "Endpoint",
    "Op",
    "RouteError",
    "S3Error",
    "from_kvbox_error",
    "route",
    "valid_bucket_name",
]
