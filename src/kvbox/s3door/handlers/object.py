"""Object operations: Put/Get/Head/Delete, DeleteObjects, CopyObject, object tagging.

Layer: s3 handlers. Rules:

* Bodies stream: PutObject hands ``common.payload`` straight to ``Store.put_stream``
  (at most one store chunk in memory) and GetObject streams ``Store.iter_bytes``.
  Small bodies are one piece instead: a PutObject of at most ``ONE_PIECE_MAX`` bytes
  is read whole into ``Store.put``, and an inline object is answered with its bytes.
  A GetObject of at least ``FILE_BODY_MIN`` bytes over local chunk files answers a
  ``FileBody`` (pinned files), which the HTTP layer sends with sendfile.
* Conditional writes map onto the core's conditions, so the check and the write are one
  atomic commit: ``If-None-Match: *`` is ``IF_ABSENT``, ``If-Match: "etag"`` is
  ``IF_ETAG``; a lost condition is 412 PreconditionFailed.
* Read conditions follow RFC 9110 §13.2.2 as S3 applies them: If-Match (else
  If-Unmodified-Since) decides 412 first, then If-None-Match (else If-Modified-Since)
  decides 304. Dates compare at whole seconds, the resolution of an HTTP date.
* Tagging and ACL changes rewrite one version's attrs in place (``Store.set_attrs``):
  no new version, same Last-Modified, as S3 does. Copy onto itself writes a new
  version with the same bytes (the chunks are content-addressed, so no byte is stored
  twice), guarded by ``IF_VERSION`` so a concurrent overwrite is never undone.
* Reads name a version by ``versionId``, or by an instant with kvbox's additive
  ``x-kvbox-at`` (query parameter or header): the version that was newest then.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import datetime

from kvbox import timeparse
from kvbox.core import lock
from kvbox.core.model import Condition, CondKind, ObjectVersion
from kvbox.errors import ConditionFailed, KvboxError
from kvbox.policy.acl import Acl, private
from kvbox.s3 import acl as acl_wire
from kvbox.s3.checksums import Algorithm, ChecksumType, parse_algorithm
from kvbox.s3.errors import S3Error, from_kvbox_error
from kvbox.s3.router import Endpoint, delete_action
from kvbox.s3.xml import (
    CopyObjectResult,
    Delete,
    DeletedEntry,
    DeleteErrorEntry,
    DeleteResult,
    Tagging,
    quote_etag,
    timestamp_from_ns,
)
from kvbox.s3door.explain import ownership_of
from kvbox.s3door.handlers.acl import (
    acl_from_request,
    check_public,
    check_users,
    owner_of_version,
    version_acl,
    write_acl_attrs,
)
from kvbox.s3door.handlers.common import (
    CHECKSUM,
    CHECKSUM_TYPE,
    OBJECT_ACL,
    OWNER,
    PART_SUMS,
    PARTS,
    SUPPORTED_CHECKSUMS,
    TAG,
    Context,
    PayloadChecks,
    checksum_headers,
    checksummed,
    drain,
    http_date,
    metadata_headers,
    parse_http_date,
    payload,
    read_small,
    require_integrity_check,
    stored_headers,
    tags_of,
    user_metadata,
    without,
    xml_response,
)
from kvbox.s3door.handlers.config import bucket_of
from kvbox.s3door.handlers.lifecycle import expiration_headers
from kvbox.s3door.handlers.locking import (
    may_bypass,
    needs_integrity_check,
    read_headers,
    write_lock_attrs,
)
from kvbox.s3door.types import FileBody, S3Request, S3Response

#: The response-* query parameters of GetObject and the header each overrides.
RESPONSE_OVERRIDES = {
    "response-content-type": "Content-Type",
    "response-content-language": "Content-Language",
    "response-expires": "Expires",
    "response-cache-control": "Cache-Control",
    "response-content-disposition": "Content-Disposition",
    "response-content-encoding": "Content-Encoding",
}
DEFAULT_CONTENT_TYPE = "binary/octet-stream"


def _no_such_key(ep: Endpoint) -> S3Error:
    return S3Error("NoSuchKey", resource=f"/{ep.bucket}/{ep.key}", extra={"Key": ep.key or ""})


#: kvbox's time-travel read: a query parameter (or header) naming an instant.
AT_PARAM = "x-kvbox-at"


def parse_instant(value: str) -> int:
    """``x-kvbox-at``: RFC 3339 with a zone or epoch milliseconds (``kvbox.timeparse``,
    the same rule as GW-KV's GETAT); nanoseconds since the epoch."""
    try:
        return timeparse.parse_instant(value)
    except timeparse.InvalidInstant as exc:
        raise S3Error(
            "InvalidArgument",
            f"x-kvbox-at: {exc}",
            extra={"ArgumentName": AT_PARAM, "ArgumentValue": value},
        ) from None


def _instant(req: S3Request | None) -> int | None:
    if req is None:
        return None
    value = req.param(AT_PARAM)
    if value is None:
        value = req.header(AT_PARAM)
    return None if value is None else parse_instant(value)


_VERSION_ID = re.compile(r"[0-9A-HJKMNP-TV-Z]{26}")


def check_version_id(version_id: str | None) -> None:
    """kvbox's ids are 26 Crockford base-32 characters (``model.VersionIdGenerator``) or
    "null"; anything else cannot name a version, which S3 calls an invalid argument."""
    if version_id is not None and version_id != "null" and not _VERSION_ID.fullmatch(version_id):
        raise S3Error(
            "InvalidArgument",
            "Invalid version id specified",
            extra={"ArgumentName": "versionId", "ArgumentValue": version_id},
        )


def _marker_headers(v: ObjectVersion) -> dict[str, str]:
    return {
        "x-amz-delete-marker": "true",
        "x-amz-version-id": v.s3_version_id,
        "Last-Modified": http_date(v.mtime_ns),
    }


async def resolve_version(
    ctx: Context, ep: Endpoint, req: S3Request | None = None, *, verify: bool = True
) -> ObjectVersion:
    """The version a read names: versionId, the kvbox time-travel instant, or the newest.
    ``verify=False``: the caller uses its metadata only (tags, ACL, lock), so a damaged
    inline value does not stop it (``Store.head``).

    As AWS answers: a missing version id is 404 NoSuchVersion; a key whose newest version
    is a delete marker is 404 NoSuchKey with ``x-amz-delete-marker: true``; a delete
    marker named by version id is 405 MethodNotAllowed (with ``Allow: DELETE``).
    """
    assert ep.bucket is not None and ep.key is not None
    check_version_id(ep.version_id)
    at = _instant(req) if ep.version_id is None else None
    if ep.version_id is not None:
        v = await ctx.store.get_version(ep.bucket, ep.key, ep.version_id, verify=verify)
        if v is None:
            raise S3Error(
                "NoSuchVersion",
                resource=f"/{ep.bucket}/{ep.key}",
                extra={"Key": ep.key, "VersionId": ep.version_id},
            )
        if v.is_delete_marker:
            raise S3Error(
                "MethodNotAllowed",
                resource=f"/{ep.bucket}/{ep.key}",
                extra={"Method": req.method if req is not None else "GET"},
                headers={**_marker_headers(v), "Allow": "DELETE"},
            )
        return v
    if at is not None:
        found = await ctx.store.version_at(ep.bucket, ep.key, at)
    else:
        found = await ctx.store.head(ep.bucket, ep.key, verify=verify)
    if found is None:
        raise _no_such_key(ep)
    if found.is_delete_marker:
        raise S3Error(
            "NoSuchKey",
            resource=f"/{ep.bucket}/{ep.key}",
            extra={"Key": ep.key},
            headers=_marker_headers(found),
        )
    return found


def _etag_matches(header: str, etag: str) -> bool:
    """An If-Match / If-None-Match list against an ETag (``*`` matches any object)."""
    for item in header.split(","):
        item = item.strip().removeprefix("W/")
        if item == "*" or item.strip('"') == etag:
            return True
    return False


def _seconds(v: ObjectVersion) -> int:
    return v.mtime_ns // 1_000_000_000


def _before_or_at(v: ObjectVersion, when: datetime) -> bool:
    return _seconds(v) <= int(when.timestamp())


def check_read_conditions(
    v: ObjectVersion, headers: Mapping[str, str], prefix: str = "if-"
) -> int | None:
    """412 or 304 when a read condition says so, else None (see the module docstring).

    ``prefix`` is ``x-amz-copy-source-if-`` for CopyObject, where a failed
    If-None-Match/If-Modified-Since is also 412 (there is no "not modified" copy).
    """
    im = headers.get(prefix + "match")
    ius = headers.get(prefix + "unmodified-since")
    inm = headers.get(prefix + "none-match")
    ims = headers.get(prefix + "modified-since")
    if im is not None:
        if not _etag_matches(im, v.etag):
            return 412
    elif ius is not None:
        when = parse_http_date(ius)
        if when is not None and not _before_or_at(v, when):
            return 412
    if inm is not None:
        if _etag_matches(inm, v.etag):
            return 304
    elif ims is not None:
        when = parse_http_date(ims)
        if when is not None and _before_or_at(v, when) and when.timestamp() >= 0:
            return 304
    return None


def _object_headers(v: ObjectVersion, req: S3Request) -> dict[str, str]:
    h = {
        "Content-Type": v.content_type,
        "ETag": quote_etag(v.etag),
        "Last-Modified": http_date(v.mtime_ns),
        "Accept-Ranges": "bytes",
    }
    h.update(metadata_headers(v.attrs))
    if not v.is_null:
        h["x-amz-version-id"] = v.version_id
    if (req.header("x-amz-checksum-mode") or "").upper() == "ENABLED":
        h.update(checksum_headers(v.attrs))
    return h


_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def parse_range(value: str, size: int) -> tuple[int, int] | None:
    """One byte range as (first, last inclusive); None to serve the whole object.

    Syntax S3 does not understand (several ranges, other units) is ignored, as S3 does;
    a well-formed range that selects nothing is InvalidRange (416).
    """
    m = _RANGE.fullmatch(value.strip())
    if m is None or (not m.group(1) and not m.group(2)):
        return None
    first_s, last_s = m.group(1), m.group(2)
    if not first_s:  # suffix: the last n bytes
        n = int(last_s)
        if n == 0 or size == 0:
            raise _invalid_range(size)
        return max(0, size - n), size - 1
    first = int(first_s)
    last = int(last_s) if last_s else size - 1
    if last_s and last < first:
        return None
    if first >= size:
        raise _invalid_range(size)
    return first, min(last, size - 1)


def _invalid_range(size: int) -> S3Error:
    return S3Error(
        "InvalidRange",
        extra={"ActualObjectSize": str(size)},
        headers={"Content-Range": f"bytes */{size}"},
    )


async def get_object(
    ctx: Context, req: S3Request, ep: Endpoint, *, head: bool = False
) -> S3Response:
    v = await resolve_version(ctx, ep, req)
    status = check_read_conditions(v, req.headers)
    headers = _object_headers(v, req)
    sizes = part_sizes(v.attrs.get(PARTS))
    part_span = None
    if ep.part_number is not None:
        if req.header("range") is not None:
            raise S3Error("InvalidRequest", "Cannot specify both Range header and partNumber")
        if sizes is None:
            if ep.part_number != 1:
                # A single-part object has only part 1 (InvalidPartNumber is also a 416).
                raise S3Error("InvalidRange", "The requested partnumber is not satisfiable")
        elif ep.part_number > len(sizes):
            raise S3Error("InvalidRange", "The requested partnumber is not satisfiable")
        else:
            first = sum(sizes[: ep.part_number - 1])
            part_span = (first, first + sizes[ep.part_number - 1] - 1)
    if sizes is not None:
        headers["x-amz-mp-parts-count"] = str(len(sizes))
    if v.attrs:
        headers.update(await read_headers(ctx, req, ep, v))
    if ep.version_id is None:
        b = await ctx.store.get_bucket(v.bucket)  # from memory
        if b is not None and b.attrs and _instant(req) is None:
            headers.update(expiration_headers(b, v))
    if status == 412:
        raise S3Error("PreconditionFailed", extra={"Condition": "If-Match"})
    if status == 304:
        keep = ("ETag", "Last-Modified", "x-amz-version-id")
        return S3Response(304, {k: headers[k] for k in keep if k in headers})
    for param, name in RESPONSE_OVERRIDES.items():
        value = req.param(param)
        if value is not None:
            if req.principal is None:  # AWS: a presigned or signed request may; no one else
                raise S3Error(
                    "InvalidRequest",
                    "Request specific response headers cannot be used for anonymous GET requests.",
                )
            headers[name] = value
    rng = req.header("range")
    span = parse_range(rng, v.size) if rng is not None else part_span
    if head:
        if span is not None:
            first, last = span
            headers["Content-Range"] = f"bytes {first}-{last}/{v.size}"
            return S3Response(206, headers, b"", last - first + 1)
        return S3Response(200, headers, b"", v.size)
    if span is None:
        return S3Response(200, headers, await _read_body(ctx, v, 0, v.size - 1), v.size)
    first, last = span
    headers["Content-Range"] = f"bytes {first}-{last}/{v.size}"
    headers.pop("x-amz-checksum-type", None)
    for alg in Algorithm:  # a checksum describes the whole object, not a range
        headers.pop(alg.header, None)
    return S3Response(206, headers, await _read_body(ctx, v, first, last), last - first + 1)


#: Bodies at least this big go out as a ``FileBody`` (sendfile) when the store has the
#: chunks as local files: below it, one read into memory and one write cost less than
#: handing the socket to a sendfile thread.
FILE_BODY_MIN = 1 << 20


async def _read_body(
    ctx: Context, v: ObjectVersion, first: int, last: int
) -> bytes | AsyncIterator[bytes] | FileBody:
    """Bytes ``first..last`` of ``v``: the inline bytes themselves (no stream for a small
    object), local files to send, or a stream of chunks."""
    if v.inline is not None:
        return v.inline if first == 0 and last == v.size - 1 else v.inline[first : last + 1]
    if last - first + 1 >= FILE_BODY_MIN:
        pinned = await ctx.store.pin_files(v, first, last)  # first chunk checked
        if pinned is not None:
            return FileBody(pinned, ctx.store.iter_bytes(v, first, last))
    # The first chunk is read (and checked) now, while a damaged one can still be a 500.
    return await ctx.store.open_read(v, first, last)


async def head_object(ctx: Context, req: S3Request, ep: Endpoint) -> S3Response:
    return await get_object(ctx, req, ep, head=True)


def part_sizes(encoded: str | None) -> list[int] | None:
    """The part sizes of a multipart object (attr ``PARTS``), for ``partNumber`` reads.

    >>> part_sizes("5242880*3,17"), part_sizes(None)
    ([5242880, 5242880, 5242880, 17], None)
    """
    if not encoded:
        return None
    out: list[int] = []
    for run in encoded.split(","):
        size, _, count = run.partition("*")
        out += [int(size)] * int(count or 1)
    return out


def encode_part_sizes(sizes: Sequence[int]) -> str:
    """Run-length ``SIZE*COUNT`` runs: every S3 client uploads equal parts but the last,
    so even a 10,000-part object costs a few bytes of metadata.

    >>> encode_part_sizes([5, 5, 5, 2])
    '5*3,2'
    """
    runs: list[list[int]] = []
    for size in sizes:
        if runs and runs[-1][0] == size:
            runs[-1][1] += 1
        else:
            runs.append([size, 1])
    return ",".join(f"{size}*{n}" if n > 1 else str(size) for size, n in runs)


def _copy_checksum_algorithm(req: S3Request) -> Algorithm | None:
    raw = req.header("x-amz-checksum-algorithm")
    if raw is None:
        return None
    alg = parse_algorithm(raw.strip())
    if alg not in SUPPORTED_CHECKSUMS:
        raise S3Error("InvalidRequest", f"Checksum algorithm {alg.value} is not supported")
    return alg


def write_condition(req: S3Request) -> Condition | None:
    """A write's If-None-Match (only ``*``) or If-Match, as a core ``Condition``."""
    inm = req.header("if-none-match")
    im = req.header("if-match")
    if inm is not None and im is not None:
        raise S3Error("NotImplemented", "If-Match and If-None-Match together are not supported")
    if inm is not None:
        if inm.strip() != "*":
            raise S3Error("NotImplemented", "If-None-Match on a write only accepts *")
        return Condition(CondKind.IF_ABSENT)
    if im is not None:
        return Condition(CondKind.IF_ETAG, im.strip().strip('"'))
    return None


def precondition_failed(condition: Condition | None) -> S3Error:
    """412, naming the header whose condition did not hold."""
    header = "If-None-Match" if condition and condition.kind is CondKind.IF_ABSENT else "If-Match"
    return S3Error("PreconditionFailed", extra={"Condition": header})


def _tagging_attrs(req: S3Request) -> dict[str, str]:
    value = req.header("x-amz-tagging")
    if value is None:
        return {}
    return {TAG + k: v for k, v in Tagging.from_header(value).tags}


async def put_object(ctx: Context, req: S3Request, ep: Endpoint) -> S3Response:
    assert ep.bucket is not None and ep.key is not None
    # The bucket (its object lock and lifecycle settings) comes from the Store's memory,
    # no trip to the metadata thread, which matters for small PUTs; a missing bucket is
    # put_stream's NoSuchBucket.
    condition = write_condition(req)
    attrs = user_metadata(req.headers)
    attrs.update(stored_headers(req.headers))
    attrs.update(_tagging_attrs(req))
    attrs.update(await write_acl_attrs(ctx, req, ep.bucket))
    b = await ctx.store.get_bucket(ep.bucket)
    attrs.update(write_lock_attrs(b, req, ep.bucket))
    if needs_integrity_check(b, req):
        require_integrity_check(req, "Put Object")
    content_type = req.header("content-type") or DEFAULT_CONTENT_TYPE
    checks = PayloadChecks()
    # The checksums are known only once the body is read; the attrs mapping is read by
    # the store when it builds the version, after the source is exhausted.
    final_attrs: dict[str, str] = dict(attrs)

    async def source() -> AsyncIterator[bytes]:
        async for piece in payload(req, checks):
            yield piece
        for alg, value in checks.checksums.items():
            final_attrs[CHECKSUM + alg.value] = value

    if _one_piece(req):
        data = b"".join([piece async for piece in payload(req, checks)])
        final_attrs.update((CHECKSUM + alg.value, value) for alg, value in checks.checksums.items())
        v = await put_version(ctx, ep.bucket, ep.key, data, condition, content_type, final_attrs)
    else:
        v = await put_version(
            ctx, ep.bucket, ep.key, source(), condition, content_type, final_attrs
        )
    headers = {"ETag": quote_etag(v.etag)}
    if not v.is_null:
        headers["x-amz-version-id"] = v.version_id
    for alg, value in checks.checksums.items():
        headers[alg.header] = value
    headers.update(expiration_headers(b, v))
    return S3Response(200, headers)


async def put_version(
    ctx: Context,
    bucket: str,
    key: str,
    body: bytes | AsyncIterator[bytes],
    condition: Condition | None,
    content_type: str,
    attrs: Mapping[str, str],
) -> ObjectVersion:
    """Store a body read whole (one ``Store.put``) or streamed (``Store.put_stream``);
    a lost write condition is 412 PreconditionFailed."""
    try:
        if isinstance(body, bytes):
            return await ctx.store.put(
                bucket, key, body, condition=condition, content_type=content_type, attrs=attrs
            )
        return await ctx.store.put_stream(
            bucket, key, body, condition=condition, content_type=content_type, attrs=attrs
        )
    except ConditionFailed:
        raise precondition_failed(condition) from None


#: A PutObject body of at most this many bytes (by Content-Length) is read whole and
#: stored with one ``Store.put``: a small PUT then skips the streaming layers (a chunk
#: buffer, a generator per piece), which were a tenth of its CPU.
ONE_PIECE_MAX = 64 * 1024


def _one_piece(req: S3Request) -> bool:
    length = req.header("content-length")
    return length is not None and length.isdigit() and int(length) <= ONE_PIECE_MAX


async def _bucket(ctx: Context, name: str) -> None:
    if await ctx.store.get_bucket(name) is None:
        raise S3Error("NoSuchBucket", resource=f"/{name}", extra={"BucketName": name})


async def delete_object(ctx: Context, req: S3Request, ep: Endpoint) -> S3Response:
    assert ep.bucket is not None and ep.key is not None
    check_version_id(ep.version_id)
    await drain(req)
    bypass = ep.version_id is not None and await may_bypass(ctx, req, ep, ep.key)
    result = await ctx.store.delete(ep.bucket, ep.key, ep.version_id, bypass_governance=bypass)
    headers: dict[str, str] = {}
    if ep.version_id is not None:
        headers["x-amz-version-id"] = ep.version_id
    if any(v.is_delete_marker for v in result.removed):
        headers["x-amz-delete-marker"] = "true"  # a marker removed by its id
    for v in result.written:
        if v.is_delete_marker:
            headers["x-amz-delete-marker"] = "true"
            if not v.is_null:
                headers["x-amz-version-id"] = v.version_id
    return S3Response(204, headers)


async def delete_objects(ctx: Context, req: S3Request, ep: Endpoint) -> S3Response:
    assert ep.bucket is not None
    await _bucket(ctx, ep.bucket)
    body = Delete.from_xml(await read_small(req))
    deleted: list[DeletedEntry] = []
    errors: list[DeleteErrorEntry] = []
    for obj in body.objects:
        try:
            if ctx.check_key is not None:
                await ctx.check_key(req, ep, obj.key, delete_action(obj.version_id))
            if obj.etag is not None or obj.size is not None:
                cur = await ctx.store.head(ep.bucket, obj.key, verify=False)
                if cur is None or cur.is_delete_marker:
                    raise S3Error("NoSuchKey")
                if (obj.etag is not None and obj.etag != cur.etag) or (
                    obj.size is not None and obj.size != cur.size
                ):
                    raise S3Error("PreconditionFailed")
            bypass = obj.version_id is not None and await may_bypass(ctx, req, ep, obj.key)
            result = await ctx.store.delete(
                ep.bucket, obj.key, obj.version_id, bypass_governance=bypass
            )
        except (S3Error, KvboxError) as exc:
            e = from_kvbox_error(exc)
            errors.append(DeleteErrorEntry(obj.key, e.code, e.message, obj.version_id))
            continue
        marker = next((v for v in result.written if v.is_delete_marker), None)
        removed_marker = next((v for v in result.removed if v.is_delete_marker), None)
        if marker is None and obj.version_id is not None:
            marker = removed_marker  # a marker deleted by its id: S3 reports it as one
        if not body.quiet:
            deleted.append(
                DeletedEntry(
                    obj.key,
                    obj.version_id,
                    True if marker is not None else None,
                    marker.s3_version_id if marker is not None else None,
                )
            )
    return xml_response(DeleteResult(deleted, errors).to_xml())


# --- copy ----------------------------------------------------------------------------

_DIRECTIVES = ("COPY", "REPLACE")


def _directive(req: S3Request, name: str) -> str:
    value = (req.header(name) or "COPY").strip().upper()
    if value not in _DIRECTIVES:
        raise S3Error(
            "InvalidArgument",
            f"Unknown {name}",
            extra={"ArgumentName": name, "ArgumentValue": value},
        )
    return value


async def copy_object(ctx: Context, req: S3Request, ep: Endpoint) -> S3Response:
    assert ep.bucket is not None and ep.key is not None and ep.copy_source is not None
    src_ep = Endpoint(
        ep.op, ep.copy_source.bucket, ep.copy_source.key, version_id=ep.copy_source.version_id
    )
    await _bucket(ctx, ep.copy_source.bucket)
    await _bucket(ctx, ep.bucket)
    await drain(req)
    src = await resolve_version(ctx, src_ep)
    if check_read_conditions(src, req.headers, "x-amz-copy-source-if-") is not None:
        raise S3Error("PreconditionFailed", extra={"Condition": "x-amz-copy-source-If-Match"})
    meta_directive = _directive(req, "x-amz-metadata-directive")
    tag_directive = _directive(req, "x-amz-tagging-directive")
    same = (ep.copy_source.bucket, ep.copy_source.key) == (ep.bucket, ep.key)
    # Copying a named version onto its own key is how S3 restores an old version (user
    # guide, "Restoring previous versions"); only a copy of the current object onto itself
    # that changes nothing is refused.
    restore = ep.copy_source.version_id is not None
    if same and not restore and meta_directive == "COPY" and tag_directive == "COPY":
        raise S3Error(
            "InvalidRequest",
            "This copy request is illegal because it is trying to copy an object to itself "
            "without changing the object's metadata, storage class, website redirect "
            "location or encryption attributes.",
        )
    checksums = {k: v for k, v in src.attrs.items() if k.startswith(CHECKSUM)}
    if meta_directive == "COPY":
        attrs = lock.without_lock(without(src.attrs, TAG))  # a copy never inherits a lock
        content_type = src.content_type
    else:
        attrs = user_metadata(req.headers)
        attrs.update(stored_headers(req.headers))
        attrs.update(checksums)
        content_type = req.header("content-type") or DEFAULT_CONTENT_TYPE
    if tag_directive == "COPY":
        attrs.update({k: v for k, v in src.attrs.items() if k.startswith(TAG)})
    else:
        attrs.update(_tagging_attrs(req))
    # A copy is a new single-part object: it gets the ACL the request names (private by
    # default), never the source's, as on AWS; no part layout, no COMPOSITE checksum.
    attrs.pop(OBJECT_ACL, None)
    attrs.pop(OWNER, None)
    attrs.pop(PARTS, None)
    attrs.pop(CHECKSUM_TYPE, None)
    for name in [k for k in attrs if k.startswith(PART_SUMS)]:
        del attrs[name]
    # The copy's checksums are of its own bytes: the algorithm the request names
    # (x-amz-checksum-algorithm) replaces the source's; without one, a source's
    # COMPOSITE (multipart) checksum is recomputed for the single-part copy and a
    # whole-object one is still right as it is.
    requested = _copy_checksum_algorithm(req)
    recompute = {
        Algorithm(k[len(CHECKSUM) :])
        for k, val in attrs.items()
        if k.startswith(CHECKSUM) and (requested is not None or "-" in val)
    }
    for alg in recompute:
        del attrs[CHECKSUM + alg.value]
    if requested is not None:
        recompute = {requested}
    attrs.update(await write_acl_attrs(ctx, req, ep.bucket))
    dest = await ctx.store.get_bucket(ep.bucket)
    attrs.update(write_lock_attrs(dest, req, ep.bucket))
    condition = write_condition(req)
    if same and not restore and condition is None:
        # a metadata rewrite replaces exactly the version it read (a restore, by design,
        # replaces whatever is newest)
        condition = Condition(CondKind.IF_VERSION, src.version_id)
    sums: dict[Algorithm, str] = {}

    async def copied() -> AsyncIterator[bytes]:
        async for piece in checksummed(ctx.store.iter_bytes(src), recompute, sums):
            yield piece
        attrs.update((CHECKSUM + alg.value, value) for alg, value in sums.items())

    v = await put_version(ctx, ep.bucket, ep.key, copied(), condition, content_type, attrs)
    headers: dict[str, str] = {}
    if not src.is_null:
        headers["x-amz-copy-source-version-id"] = src.version_id
    if not v.is_null:
        headers["x-amz-version-id"] = v.version_id
    kept = {
        Algorithm(k[len(CHECKSUM) :]): val for k, val in v.attrs.items() if k.startswith(CHECKSUM)
    }
    result = CopyObjectResult(
        v.etag,
        timestamp_from_ns(v.mtime_ns),
        kept,
        ChecksumType.FULL_OBJECT if kept else None,
    )
    resp = xml_response(result.to_xml())
    resp.headers.update(headers)
    resp.headers.update(expiration_headers(dest, v))
    return resp


# --- tagging -------------------------------------------------------------------------


async def get_object_tagging(ctx: Context, req: S3Request, ep: Endpoint) -> S3Response:
    v = await resolve_version(ctx, ep, verify=False)
    resp = xml_response(Tagging(tuple(tags_of(v.attrs))).to_xml())
    if not v.is_null:
        resp.headers["x-amz-version-id"] = v.version_id
    return resp


async def set_version_attrs(
    ctx: Context, ep: Endpoint, change: Callable[[Mapping[str, str]], dict[str, str]]
) -> ObjectVersion:
    """Rewrite one version's attrs in place (tags, ACL): same version, same bytes, same
    Last-Modified, as S3 does. The version is named by its own id, so an overwrite
    racing with this is never given the old object's attrs; the change is then made
    again on the new newest version (a few times at most)."""
    assert ep.bucket is not None and ep.key is not None
    for _ in range(3):  # without a versionId, an overwrite in between means: try the new one
        v = await resolve_version(ctx, ep, verify=False)
        new = await ctx.store.set_attrs(ep.bucket, ep.key, v.version_id, change(v.attrs))
        if new is not None:
            return new
        if ep.version_id is not None:
            break
    raise _no_such_key(ep)


async def _retag(ctx: Context, ep: Endpoint, tags: Tagging) -> S3Response:
    def change(attrs: Mapping[str, str]) -> dict[str, str]:
        out = without(attrs, TAG)
        out.update({TAG + k: val for k, val in tags.tags})
        return out

    new = await set_version_attrs(ctx, ep, change)
    headers = {} if new.is_null else {"x-amz-version-id": new.version_id}
    return S3Response(200, headers)


async def put_object_tagging(ctx: Context, req: S3Request, ep: Endpoint) -> S3Response:
    tags = Tagging.from_xml(await read_small(req, 64 * 1024))
    return await _retag(ctx, ep, tags)


async def delete_object_tagging(ctx: Context, req: S3Request, ep: Endpoint) -> S3Response:
    await drain(req)
    resp = await _retag(ctx, ep, Tagging())
    resp.status = 204
    return resp


# --- ACL ---------------------------------------------------------------------------


async def get_object_acl(ctx: Context, req: S3Request, ep: Endpoint) -> S3Response:
    v = await resolve_version(ctx, ep, verify=False)
    b = await bucket_of(ctx, ep)
    resp = xml_response(acl_wire.document_of(version_acl(b, v.attrs)).to_xml())
    if not v.is_null:
        resp.headers["x-amz-version-id"] = v.version_id
    return resp


async def put_object_acl(ctx: Context, req: S3Request, ep: Endpoint) -> S3Response:
    b = await bucket_of(ctx, ep)
    current = await resolve_version(ctx, ep, verify=False)
    acl = await acl_from_request(ctx, req, owner_of_version(b, current.attrs), b.owner)
    acl_wire.check_enforced(acl, ownership_of(b), b.owner)
    check_public(b, acl)
    await check_users(ctx, acl)

    def change(attrs: Mapping[str, str]) -> dict[str, str]:
        out = dict(attrs)
        out.pop(OBJECT_ACL, None)
        # The version changed may be a newer one (an overwrite raced): the grants stay
        # as asked, its own owner decides how they are stored.
        mine = Acl(owner_of_version(b, attrs), acl.grants)
        if mine != private(mine.owner):
            out[OBJECT_ACL] = mine.to_text(b.owner)
        return out

    new = await set_version_attrs(ctx, ep, change)
    return S3Response(200, {} if new.is_null else {"x-amz-version-id": new.version_id})
