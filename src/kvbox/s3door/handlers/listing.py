"""ListObjects (v1) and ListObjectsV2 over ``Store.list_objects``.

Layer: s3 handlers. Rules:

* Every page is a handful of indexed range scans (``MetaStore.list_objects``), never a
  scan of the bucket. With a delimiter, a key that falls under a common prefix ends
  the current scan: the prefix is emitted once and the next scan starts right after
  every key the prefix could cover (``past_prefix``), so a prefix holding a million
  keys costs one scan, not a million rows.
* Order is UTF-8 byte order, which for valid strings is Python's code point order, so
  comparisons on ``str`` agree with the store.
* The V2 continuation token is opaque to clients: the URL-safe base64 of the last key
  or common prefix the page returned. A page resumes strictly after it, and a common
  prefix equal to the resume point (the last page ended on it; also v1's NextMarker)
  is skipped whole rather than emitted twice.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable

from kvbox.core.model import Bucket, ObjectVersion
from kvbox.s3.errors import S3Error
from kvbox.s3.names import MAX_KEY_BYTES
from kvbox.s3.router import Endpoint
from kvbox.s3.xml import (
    DeleteMarkerEntry,
    ListObjectsResult,
    ListObjectsV2Result,
    ListVersionsResult,
    ObjectEntry,
    Owner,
    VersionEntry,
    timestamp_from_ns,
)
from kvbox.s3door.handlers.acl import owner_of_version
from kvbox.s3door.handlers.common import Context, xml_response
from kvbox.s3door.handlers.config import bucket_of
from kvbox.s3door.types import S3Request, S3Response

#: Most keys a page returns, whatever max-keys asks (S3's cap).
MAX_KEYS = 1000
#: U+10FFFF encodes as F4 8F BF BF, the greatest 4-byte UTF-8 sequence; enough of them
#: after a prefix make a string greater than every key (<= 1,024 bytes) under it.
_TOP = "\U0010ffff" * (MAX_KEY_BYTES // 4 + 1)


def past_prefix(prefix: str) -> str:
    """A ``start_after`` that skips every key beginning with ``prefix`` and nothing else."""
    return prefix + _TOP


def _max_keys(req: S3Request) -> int:
    raw = req.param("max-keys")
    if raw is None:
        return MAX_KEYS
    if not raw.isascii() or not raw.lstrip("-").isdigit() or int(raw) < 0:
        raise S3Error(
            "InvalidArgument",
            "Provided max-keys not an integer or within integer range",
            extra={"ArgumentName": "max-keys", "ArgumentValue": raw},
        )
    return min(int(raw), MAX_KEYS)


def _encoding(req: S3Request) -> str | None:
    enc = req.param("encoding-type")
    if enc is None:
        return None
    if enc.lower() != "url":
        raise S3Error(
            "InvalidArgument",
            "Invalid Encoding Method specified in Request",
            extra={"ArgumentName": "encoding-type", "ArgumentValue": enc},
        )
    return "url"


def owners(b: Bucket) -> Callable[[ObjectVersion], Owner]:
    """Each listed version's Owner: the writer who kept it, else the bucket owner (one
    ``Owner`` per name, so a page of one owner's objects builds one)."""
    made: dict[str, Owner] = {}

    def owner(v: ObjectVersion) -> Owner:
        name = owner_of_version(b, v.attrs)
        found = made.get(name)
        if found is None:
            found = made[name] = Owner(name, name)
        return found

    return owner


async def _scan(
    ctx: Context,
    bucket: str,
    prefix: str,
    delimiter: str | None,
    after: str,
    max_keys: int,
    owner: Callable[[ObjectVersion], Owner] | None,
) -> tuple[list[ObjectEntry], list[str], bool, str | None]:
    """(contents, common prefixes, truncated, last item returned) for one page.

    ``max-keys=0`` is an empty page that is not truncated, as AWS answers it: nothing
    was asked for, so there is no "more" to announce (and no token to follow).
    """
    if max_keys == 0:
        return [], [], False, None
    contents: list[ObjectEntry] = []
    prefixes: list[str] = []
    last: str | None = None
    cursor = after
    while True:
        want = min(max_keys - len(contents) - len(prefixes) + 1, MAX_KEYS + 1)
        batch = await ctx.store.list_objects(bucket, prefix, cursor, want)
        if not batch:
            return contents, prefixes, False, last
        restart = False
        for v in batch:
            if delimiter:
                i = v.key.find(delimiter, len(prefix))
                if i >= 0:
                    cp = v.key[: i + len(delimiter)]
                    cursor = past_prefix(cp)
                    if cp == after:
                        restart = True  # the previous page ended on this prefix
                        break
                    if len(contents) + len(prefixes) >= max_keys:
                        return contents, prefixes, True, last
                    prefixes.append(cp)
                    last = cp
                    restart = True
                    break
            if len(contents) + len(prefixes) >= max_keys:
                return contents, prefixes, True, last
            contents.append(
                ObjectEntry(
                    v.key,
                    timestamp_from_ns(v.mtime_ns),
                    v.etag,
                    v.size,
                    owner=None if owner is None else owner(v),
                )
            )
            last = v.key
            cursor = v.key
        if not restart and len(batch) < want:
            return contents, prefixes, False, last


def _token(last: str) -> str:
    return base64.urlsafe_b64encode(last.encode("utf-8")).decode("ascii")


def _untoken(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token.encode("ascii")).decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError):
        raise S3Error(
            "InvalidArgument",
            "The continuation token provided is incorrect",
            extra={"ArgumentName": "continuation-token"},
        ) from None


async def list_objects_v2(ctx: Context, req: S3Request, ep: Endpoint) -> S3Response:
    assert ep.bucket is not None
    owner = owners(await bucket_of(ctx, ep))
    prefix = req.param("prefix") or ""
    delimiter = req.param("delimiter") or None
    max_keys = _max_keys(req)
    encoding = _encoding(req)
    token = req.param("continuation-token")
    start_after = req.param("start-after") or None
    after = _untoken(token) if token is not None else (start_after or "")
    fetch_owner = (req.param("fetch-owner") or "").lower() == "true"
    contents, prefixes, truncated, last = await _scan(
        ctx, ep.bucket, prefix, delimiter, after, max_keys, owner if fetch_owner else None
    )
    result = ListObjectsV2Result(
        name=ep.bucket,
        prefix=prefix,
        max_keys=max_keys,
        is_truncated=truncated,
        contents=contents,
        common_prefixes=prefixes,
        delimiter=delimiter,
        encoding_type=encoding,
        continuation_token=token,
        next_continuation_token=_token(last) if truncated and last is not None else None,
        start_after=start_after,
    )
    return xml_response(result.to_xml())


async def list_objects(ctx: Context, req: S3Request, ep: Endpoint) -> S3Response:
    assert ep.bucket is not None
    owner = owners(await bucket_of(ctx, ep))
    prefix = req.param("prefix") or ""
    delimiter = req.param("delimiter") or None
    max_keys = _max_keys(req)
    encoding = _encoding(req)
    marker = req.param("marker") or ""
    contents, prefixes, truncated, last = await _scan(
        ctx, ep.bucket, prefix, delimiter, marker, max_keys, owner
    )
    result = ListObjectsResult(
        name=ep.bucket,
        prefix=prefix,
        marker=marker,
        max_keys=max_keys,
        is_truncated=truncated,
        contents=contents,
        common_prefixes=prefixes,
        delimiter=delimiter,
        next_marker=last if truncated and delimiter else None,
        encoding_type=encoding,
    )
    return xml_response(result.to_xml())


# --- ListObjectVersions --------------------------------------------------------------


async def list_object_versions(ctx: Context, req: S3Request, ep: Endpoint) -> S3Response:
    """Versions and delete markers by key, newest first within a key.

    Pages resume at (key-marker, version-id-marker) through
    ``Store.list_bucket_versions``; with a delimiter a common prefix counts as one entry
    and the scan jumps past it, as ListObjects does. IsLatest is true for the first
    version of a key unless the page starts in the middle of that key.
    """
    assert ep.bucket is not None
    owner = owners(await bucket_of(ctx, ep))
    prefix = req.param("prefix") or ""
    delimiter = req.param("delimiter") or None
    max_keys = _max_keys(req)
    encoding = _encoding(req)
    key_marker = req.param("key-marker") or ""
    vid_marker = req.param("version-id-marker") or ""
    if vid_marker and not key_marker:
        raise S3Error(
            "InvalidArgument",
            "A version-id marker cannot be specified without a key marker.",
            extra={"ArgumentName": "version-id-marker", "ArgumentValue": vid_marker},
        )
    entries: list[VersionEntry | DeleteMarkerEntry] = []
    prefixes: list[str] = []
    truncated = False
    next_key: str | None = None
    next_vid: str | None = None
    km, vm = key_marker, vid_marker
    # A key whose versions continue from the previous page: its first one is not latest.
    prev_key: str | None = key_marker if vid_marker else None
    done = max_keys == 0  # an empty page, not truncated (as _scan)
    while not done:
        want = min(max_keys - len(entries) - len(prefixes) + 1, MAX_KEYS + 1)
        batch = await ctx.store.list_bucket_versions(ep.bucket, prefix, km, vm, want)
        if len(batch) < want:
            done = True
        for v in batch:
            if delimiter:
                i = v.key.find(delimiter, len(prefix))
                if i >= 0:
                    cp = v.key[: i + len(delimiter)]
                    km, vm = past_prefix(cp), ""
                    done = False  # the scan goes on after the prefix
                    if cp == key_marker:
                        break  # the previous page ended on this prefix
                    if len(entries) + len(prefixes) >= max_keys:
                        truncated, done = True, True
                        break
                    prefixes.append(cp)
                    next_key, next_vid = cp, None
                    break
            if len(entries) + len(prefixes) >= max_keys:
                truncated, done = True, True
                break
            latest = v.key != prev_key
            prev_key = v.key
            when = timestamp_from_ns(v.mtime_ns)
            if v.is_delete_marker:
                entries.append(DeleteMarkerEntry(v.key, v.s3_version_id, latest, when, owner(v)))
            else:
                entries.append(
                    VersionEntry(
                        v.key, v.s3_version_id, latest, when, v.etag, v.size, owner=owner(v)
                    )
                )
            next_key, next_vid = v.key, v.s3_version_id
            km, vm = v.key, v.s3_version_id
    result = ListVersionsResult(
        name=ep.bucket,
        prefix=prefix,
        key_marker=key_marker,
        version_id_marker=vid_marker,
        max_keys=max_keys,
        is_truncated=truncated,
        entries=entries,
        common_prefixes=prefixes,
        delimiter=delimiter,
        next_key_marker=next_key if truncated else None,
        next_version_id_marker=next_vid if truncated else None,
        encoding_type=encoding,
    )
    return xml_response(result.to_xml())
