"""The S3 protocol layer: routing, errors, XML bodies and checksums, all pure.

Layer: s3 protocol. Rules: nothing here does I/O or knows aiohttp; the S3 front door
(handlers over ``kvbox.core.service.Store``) calls these functions and owns the
sockets. Submodules: ``router`` (request -> ``Endpoint``), ``errors`` (``S3Error`` and
the translation of kvbox's errors through ``kvbox.errors.WIRE``), ``xml`` (every XML
body), ``checksums`` (flexible checksums and the multipart ETag).
"""

from kvbox.s3.errors import S3Error, from_kvbox_error
from kvbox.s3.router import Endpoint, Op, RouteError, route, valid_bucket_name

__all__ = [
    "Endpoint",
    "Op",
    "RouteError",
    "S3Error",
    "from_kvbox_error",
    "route",
    "valid_bucket_name",
]
