"""What an S3 request may name: bucket names, keys, and how a path component is decoded.

Layer: s3 protocol (pure; no I/O). Rules, as S3 has them:

* A new bucket's name follows AWS's rules for general purpose buckets
  (``valid_bucket_name``); an existing one is *addressed* by the looser legacy rules
  (``addressable_bucket``), which also admit the GW-KV bucket ``kv``.
* Keys are percent-decoded exactly once, byte-wise, then read as strict UTF-8, the way
  S3 does it: ``+`` stays a literal plus (only query strings use ``+`` for space),
  ``%2F`` becomes ``/``, and ``..``, ``//`` and ``./`` are kept verbatim (a key is a
  name, never a file path; nothing here or below resolves it against a directory).
* kvbox refuses two things S3 accepts: a malformed ``%`` escape or invalid UTF-8 is
  ``InvalidURI`` (S3 answers the same), and a key containing NUL (U+0000) is
  ``InvalidArgument``: no S3 tool needs it, XML 1.0 cannot carry it in a listing, and
  it is a classic truncation trick against C-string consumers downstream.
* A key longer than 1,024 bytes of UTF-8 is ``KeyTooLongError``.

The router (``kvbox.s3.router``) applies these to every request; POST uploads and copy
sources apply them to the names they carry.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

from kvbox.s3.errors import S3Error

#: S3's limit on a key's length, in bytes of UTF-8.
MAX_KEY_BYTES = 1024


class RouteError(S3Error):
    """The request names no operation kvbox serves, or names it badly."""


_BUCKET_CHARS = re.compile(r"[a-z0-9.-]{3,63}")
#: IP-shaped, not parsed as an IP: ``1.2.3.999`` is refused as well, as AWS does.
_IPV4_LIKE = re.compile(r"\d+\.\d+\.\d+\.\d+")
_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
#: Names that can be *addressed* (not created): S3's legacy rules, which also admit the
#: short GW-KV bucket ``kv``. Anything else cannot name a bucket at all.
_ADDRESSABLE = re.compile(r"[A-Za-z0-9._-]{1,255}")


def addressable_bucket(name: str) -> bool:
    """May ``name`` be looked up as a bucket (S3's legacy rules; ``kv`` passes)?"""
    return _ADDRESSABLE.fullmatch(name) is not None


def valid_bucket_name(name: str) -> bool:
    """AWS's naming rules for a new general purpose bucket.

    >>> [valid_bucket_name(n) for n in ("my-photos", "My-Photos", "a..b", "192.168.5.4")]
    [True, False, False, False]
    >>> [valid_bucket_name(n) for n in ("xn--bucket", "x-s3alias", "ab", "-ab", "a" * 63)]
    [False, False, False, False, True]
    """
    if _BUCKET_CHARS.fullmatch(name) is None:
        return False
    if not (name[0].isalnum() and name[-1].isalnum()):
        return False
    if ".." in name or _IPV4_LIKE.fullmatch(name):
        return False
    return not (name.startswith(_RESERVED_PREFIXES) or name.endswith(_RESERVED_SUFFIXES))


def check_bucket_name(name: str) -> None:
    """Raise InvalidBucketName unless ``name`` may be created (CreateBucket's check)."""
    if not valid_bucket_name(name):
        raise RouteError("InvalidBucketName", resource=name, extra={"BucketName": name})


_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def decode_component(raw: str) -> str:
    """Percent-decode one URI component as S3 does: byte-wise, then strict UTF-8.

    >>> decode_component("a+b%2Fc%20d/%E2%82%AC")
    'a+b/c d/€'
    """
    if "%" not in raw and raw.isascii():  # the usual key: nothing to decode or check
        return raw
    if _BAD_ESCAPE.search(raw):
        raise RouteError("InvalidURI")
    try:
        return unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise RouteError("InvalidURI") from None


def check_key(key: str) -> None:
    """Refuse keys S3 (or kvbox, for NUL) refuses; see the module docstring."""
    size = len(key.encode("utf-8", "surrogatepass"))
    if size > MAX_KEY_BYTES:
        raise RouteError(
            "KeyTooLongError",
            extra={"Size": str(size), "MaxSizeAllowed": str(MAX_KEY_BYTES)},
        )
    if "\x00" in key:
        raise RouteError("InvalidArgument", "Object key must not contain NUL (U+0000)")
