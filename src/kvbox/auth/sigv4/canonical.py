"""Stage 1: the canonical request (URI, query string, headers).

Layer: auth (pure). The rules are ``kvbox.auth.sigv4``'s docstring.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from urllib.parse import quote, unquote_to_bytes

from kvbox.auth.sigv4.base import (
    _REENCODE_CACHE,
    _UNRESERVED_PATH_RE,
    _UNRESERVED_RE,
    _utf8,
)

# --- stage 1: canonical request -------------------------------------------------------


def uri_encode(value: str | bytes, *, keep_slash: bool = False) -> str:
    """SigV4's URI-encode: every byte but ``A-Za-z0-9-_.~`` (and ``/`` if asked) as ``%XX``."""
    return quote(value, safe="/" if keep_slash else "")


def _canonical_component(raw: str) -> str:
    """``uri_encode(unquote(raw))`` of one raw path segment, query key or query value.

    Every request goes through this a dozen times, so the common cases skip urllib:
    unreserved-only text is already canonical, and anything else is cached.
    """
    if _UNRESERVED_RE.fullmatch(raw) is not None:
        return raw
    return _reencode(raw)


@functools.lru_cache(maxsize=_REENCODE_CACHE)
def _reencode(raw: str) -> str:
    return uri_encode(unquote_to_bytes(_utf8(raw)))


def canonical_uri(raw_path: str) -> str:
    """The canonical URI of a raw (as received, percent-encoded) request path, S3 rule.

    >>> canonical_uri("/test$file.text")
    '/test%24file.text'
    >>> canonical_uri("/bucket/a%2Fb//c d")
    '/bucket/a%2Fb//c%20d'
    """
    if not raw_path:
        return "/"
    if _UNRESERVED_PATH_RE.fullmatch(raw_path) is not None:
        return raw_path
    return "/".join(_canonical_component(seg) for seg in raw_path.split("/"))


def parse_query_string(raw_query: str) -> list[tuple[str, str]]:
    """Split a raw query string into raw ``(key, value)`` pairs; nothing is decoded.

    ``?acl`` gives ``[("acl", "")]``; empty pieces (``a&&b``) are dropped.
    """
    pairs: list[tuple[str, str]] = []
    for piece in raw_query.split("&"):
        if piece:
            key, _, value = piece.partition("=")
            pairs.append((key, value))
    return pairs


def canonical_query_string(query: Iterable[tuple[str, str]]) -> str:
    """Decode each raw pair, re-encode it strictly, sort by key then value, join.

    A literal ``+`` stays a ``+`` (encoded ``%2B``): SigV4 clients encode spaces as
    ``%20``, and S3 does not read ``+`` as a space when checking signatures.
    """
    encoded = sorted(
        (_canonical_component(key), _canonical_component(value)) for key, value in query
    )
    return "&".join(f"{key}={value}" for key, value in encoded)


def _trim_all(value: str) -> str:
    # SigV4's Trimall: no leading or trailing whitespace, runs of whitespace as one space.
    # str.split() is botocore's rule too, so tabs and folded line breaks collapse alike.
    return " ".join(value.split())


def _header_values(headers: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for name, value in headers:
        values.setdefault(name.strip().lower(), []).append(value)
    return values


def canonical_headers(headers: Iterable[tuple[str, str]], signed_headers: Sequence[str]) -> str:
    """``name:value\\n`` for each signed header, sorted; repeated headers joined by ``,``.

    A signed header that is missing from the request canonicalizes with an empty value,
    so the signature simply fails to match.
    """
    return _canonical_headers(_header_values(headers), sorted(set(signed_headers)))


def _canonical_headers(values: dict[str, list[str]], names: Iterable[str]) -> str:
    """``canonical_headers`` over ``_header_values``, for sorted, distinct ``names``."""
    return "".join(
        f"{name}:{','.join(_trim_all(v) for v in values.get(name, ()))}\n" for name in names
    )


def canonical_request(
    method: str,
    raw_path: str,
    query: Iterable[tuple[str, str]],
    headers: Iterable[tuple[str, str]],
    signed_headers: Sequence[str],
    payload_hash: str,
) -> str:
    """Stage 1. ``query`` and ``raw_path`` are raw (as on the wire), headers as received."""
    return _canonical_request(
        method, raw_path, query, _header_values(headers), signed_headers, payload_hash
    )


def _canonical_request(
    method: str,
    raw_path: str,
    query: Iterable[tuple[str, str]],
    values: dict[str, list[str]],
    signed_headers: Sequence[str],
    payload_hash: str,
) -> str:
    """``canonical_request`` with the headers already grouped by ``_header_values``
    (verification groups them once for every check)."""
    names = sorted(set(signed_headers))
    return "\n".join(
        (
            method,
            canonical_uri(raw_path),
            canonical_query_string(query),
            _canonical_headers(values, names),
            ";".join(names),
            payload_hash,
        )
    )
