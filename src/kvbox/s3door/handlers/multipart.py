"""Multipart upload: Create, UploadPart(Copy), Complete, Abort, ListParts, ListMultipartUploads.

Layer: s3 handlers. Rules:

* A part's body goes through ``common.payload`` exactly like a PutObject body
  (aws-chunked, Content-MD5, flexible checksums), then ``Store.upload_part`` streams it
  into chunks; the verified checksums are kept with the part and returned in ListParts.
* UploadPartCopy streams the source version (or ``x-amz-copy-source-range`` of it)
  through the same ``Store.upload_part``; identical chunks are still stored once.
* Completion never copies bytes: the core makes the parts' chunks the object's chunks.
  The body's order is checked by ``xml.CompleteMultipartUpload`` (InvalidPartOrder);
  missing parts, wrong ETags and small parts are the core's errors (InvalidPart,
  EntityTooSmall), mapped through ``kvbox.errors.WIRE``.
* The object's metadata (user metadata, Content-Type, stored headers, tags) is taken at
  CreateMultipartUpload, as S3 does; checksums of a whole multipart object are not
  stored (S3's composite checksums are not computed; docs/s3-compat.md).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence

from kvbox.core import lock
from kvbox.core.model import Bucket, Part
from kvbox.errors import ConditionFailed
from kvbox.s3.checksums import (
    MULTIPART_TYPES,
    Algorithm,
    ChecksumType,
    composite_checksum,
    full_object_checksum,
    parse_algorithm,
)
from kvbox.s3.errors import S3Error
from kvbox.s3.router import Endpoint
from kvbox.s3.xml import (
    CompleteMultipartUpload,
    CompleteMultipartUploadResult,
    CopyPartResult,
    InitiateMultipartUploadResult,
    ListMultipartUploadsResult,
    ListPartsResult,
    Owner,
    PartEntry,
    Tagging,
    UploadEntry,
    quote_etag,
    timestamp_from_ns,
)
from kvbox.s3door.handlers.acl import owner_of_version, write_acl_attrs
from kvbox.s3door.handlers.common import (
    CHECKSUM,
    CHECKSUM_ALGORITHM,
    CHECKSUM_TYPE,
    INITIATOR,
    PART_SUMS,
    PARTS,
    SUPPORTED_CHECKSUMS,
    TAG,
    Context,
    PayloadChecks,
    checksummed,
    drain,
    has_integrity_check,
    payload,
    read_small,
    require_integrity_check,
    stored_headers,
    user_metadata,
    xml_response,
)
from kvbox.s3door.handlers.config import bucket_of
from kvbox.s3door.handlers.lifecycle import expiration_headers
from kvbox.s3door.handlers.locking import write_lock_attrs
from kvbox.s3door.handlers.object import (
    check_read_conditions,
    encode_part_sizes,
    precondition_failed,
    resolve_version,
    write_condition,
)
from kvbox.s3door.types import S3Request, S3Response

#: S3's cap on max-parts and max-uploads.
MAX_PAGE = 1000
DEFAULT_CONTENT_TYPE = "binary/octet-stream"


def _page_size(req: S3Request, name: str) -> int:
    raw = req.param(name)
    if raw is None:
        return MAX_PAGE
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 9:
        raise S3Error(
            "InvalidArgument",
            f"Provided {name} not an integer or within integer range",
            extra={"ArgumentName": name, "ArgumentValue": raw},
        )
    return min(int(raw), MAX_PAGE)


def object_checksums(
    parts: Sequence[Part],
    attrs: Mapping[str, str],
    sent: Mapping[int, Mapping[Algorithm, str]],
) -> dict[str, str]:
    """The object's attrs with its whole-object checksums, from the parts' checksums.

    A checksum the Complete body lists for a part must equal the one verified at upload
    (else InvalidPart). For each algorithm every part has, the object gets S3's value:
    CRC64NVME (and CRC32/CRC32C when the upload asked for ``x-amz-checksum-type:
    FULL_OBJECT``) the CRC of all the bytes, combined from the parts' CRCs without
    reading them; otherwise the COMPOSITE checksum of the part checksums, ``-N``.
    """
    for p in parts:
        stored = _part_checksums(p.attrs)
        for alg, value in sent.get(p.part_number, {}).items():
            if stored.get(alg) != value:
                raise S3Error(
                    "InvalidPart",
                    f"part {p.part_number}'s {alg.value} checksum is not the one uploaded",
                )
    out = {k: v for k, v in attrs.items() if not k.startswith((CHECKSUM, PART_SUMS))}
    out.pop(CHECKSUM_ALGORITHM, None)
    full = attrs.get(CHECKSUM_TYPE) == ChecksumType.FULL_OBJECT.value
    kinds: set[str] = set()
    for alg in Algorithm:
        values = [_part_checksums(p.attrs).get(alg) for p in parts]
        if not values or any(v is None for v in values):
            continue
        got = [v for v in values if v is not None]
        out[PART_SUMS + alg.value] = ",".join(got)  # base64 has no commas
        if alg is Algorithm.CRC64NVME or (full and alg in (Algorithm.CRC32, Algorithm.CRC32C)):
            out[CHECKSUM + alg.value] = full_object_checksum(
                alg, [(v, p.size) for v, p in zip(got, parts, strict=True)]
            )
            kinds.add(ChecksumType.FULL_OBJECT.value)
        else:
            out[CHECKSUM + alg.value] = composite_checksum(alg, got)
            kinds.add(ChecksumType.COMPOSITE.value)
    out.pop(CHECKSUM_TYPE, None)
    out.pop(INITIATOR, None)  # the upload's, not the object's
    if len(kinds) == 1:
        out[CHECKSUM_TYPE] = kinds.pop()
    out[PARTS] = encode_part_sizes([p.size for p in parts])
    return out


def declared_checksum(req: S3Request) -> tuple[Algorithm, ChecksumType] | None:
    """CreateMultipartUpload's ``x-amz-checksum-algorithm`` and ``x-amz-checksum-type``
    (the algorithm's default type when absent), with AWS's refusals."""
    raw_alg = (req.header("x-amz-checksum-algorithm") or "").strip()
    raw_kind = (req.header("x-amz-checksum-type") or "").strip().upper()
    if raw_kind and raw_kind not in (t.value for t in ChecksumType):
        raise S3Error("InvalidRequest", "Value for x-amz-checksum-type header is invalid.")
    if not raw_alg:
        if raw_kind:
            raise S3Error(
                "InvalidRequest",
                "The x-amz-checksum-type header can only be used with the "
                "x-amz-checksum-algorithm header.",
            )
        return None
    alg = parse_algorithm(raw_alg)
    if alg not in SUPPORTED_CHECKSUMS:
        raise S3Error("InvalidRequest", f"Checksum algorithm {alg.value} is not supported")
    allowed = MULTIPART_TYPES[alg]
    kind = ChecksumType(raw_kind) if raw_kind else allowed[0]
    if kind not in allowed:
        raise S3Error(
            "InvalidRequest",
            f"The {kind.value} checksum type cannot be used with the "
            f"{alg.value.lower()} checksum algorithm.",
        )
    return alg, kind


def _upload_checksum(attrs: Mapping[str, str]) -> tuple[Algorithm | None, ChecksumType | None]:
    """The algorithm and type an upload declared, if it did."""
    alg = attrs.get(CHECKSUM_ALGORITHM)
    kind = attrs.get(CHECKSUM_TYPE)
    if alg is None:
        return None, None
    return Algorithm(alg), ChecksumType(kind) if kind is not None else None


def _part_checksums(attrs: Mapping[str, str]) -> dict[Algorithm, str]:
    return {Algorithm(k[len(CHECKSUM) :]): v for k, v in attrs.items() if k.startswith(CHECKSUM)}


async def create_multipart_upload(ctx: Context, req: S3Request, ep: Endpoint) -> S3Response:
    assert ep.bucket is not None and ep.key is not None
    attrs = user_metadata(req.headers)
    attrs.update(stored_headers(req.headers))
    tagging = req.header("x-amz-tagging")
    if tagging is not None:
        attrs.update({TAG + k: v for k, v in Tagging.from_header(tagging).tags})
    attrs.update(await write_acl_attrs(ctx, req, ep.bucket, upload=True))
    attrs.update(write_lock_attrs(await ctx.store.get_bucket(ep.bucket), req, ep.bucket))
    declared = declared_checksum(req)
    if declared is not None:
        attrs[CHECKSUM_ALGORITHM] = declared[0].value
        attrs[CHECKSUM_TYPE] = declared[1].value
    content_type = req.header("content-type") or DEFAULT_CONTENT_TYPE
    up = await ctx.store.create_multipart(ep.bucket, ep.key, content_type=content_type, attrs=attrs)
    resp = xml_response(InitiateMultipartUploadResult(ep.bucket, ep.key, up.upload_id).to_xml())
    if declared is not None:  # echoed, as AWS does
        resp.headers["x-amz-checksum-algorithm"] = declared[0].value
        resp.headers["x-amz-checksum-type"] = declared[1].value
    return resp


async def upload_part(ctx: Context, req: S3Request, ep: Endpoint) -> S3Response:
    assert ep.bucket is not None and ep.key is not None
    assert ep.upload_id is not None and ep.part_number is not None
    up = await ctx.store.get_upload(ep.bucket, ep.key, ep.upload_id)
    if not has_integrity_check(req) and await _will_be_locked(ctx, ep, up.attrs):
        require_integrity_check(req, "Put Part")
    # A part of an upload that declared an algorithm must carry that checksum.
    checks = PayloadChecks(algorithm=_upload_checksum(up.attrs)[0])
    # Filled once the body is read; the store reads it after the source is exhausted.
    attrs: dict[str, str] = {}

    async def source() -> AsyncIterator[bytes]:
        async for piece in payload(req, checks):
            yield piece
        for alg, value in checks.checksums.items():
            attrs[CHECKSUM + alg.value] = value

    part = await ctx.store.upload_part(
        ep.bucket, ep.key, ep.upload_id, ep.part_number, source(), attrs
    )
    headers = {"ETag": quote_etag(part.etag)}
    for alg, value in checks.checksums.items():
        headers[alg.header] = value
    return S3Response(200, headers)


def _copy_range(value: str | None, size: int) -> tuple[int, int]:
    """``x-amz-copy-source-range: bytes=first-last`` (both required, as S3 wants)."""
    if value is None:
        return 0, size - 1
    spec = value.strip()
    first_raw, sep, last_raw = spec.removeprefix("bytes=").partition("-")
    if (
        not spec.startswith("bytes=")
        or not sep
        or not (first_raw.isascii() and first_raw.isdigit())
        or not (last_raw.isascii() and last_raw.isdigit())
        or int(first_raw) > int(last_raw)
    ):
        raise S3Error(
            "InvalidArgument",
            "The x-amz-copy-source-range value must be of the form bytes=first-last "
            "where first and last are the zero-based offsets of the first and last bytes "
            "to copy",
        )
    first, last = int(first_raw), int(last_raw)
    if last >= size:
        raise S3Error("InvalidRange", extra={"ActualObjectSize": str(size)})
    return first, last


async def upload_part_copy(ctx: Context, req: S3Request, ep: Endpoint) -> S3Response:
    assert ep.bucket is not None and ep.key is not None and ep.copy_source is not None
    assert ep.upload_id is not None and ep.part_number is not None
    cs = ep.copy_source
    await drain(req)
    up = await ctx.store.get_upload(ep.bucket, ep.key, ep.upload_id)
    if await ctx.store.get_bucket(cs.bucket) is None:
        raise S3Error("NoSuchBucket", resource=f"/{cs.bucket}", extra={"BucketName": cs.bucket})
    src = await resolve_version(ctx, Endpoint(ep.op, cs.bucket, cs.key, version_id=cs.version_id))
    if check_read_conditions(src, req.headers, "x-amz-copy-source-if-") is not None:
        raise S3Error("PreconditionFailed", extra={"Condition": "x-amz-copy-source-If-Match"})
    first, last = _copy_range(req.header("x-amz-copy-source-range"), src.size)
    source: AsyncIterator[bytes] = ctx.store.iter_bytes(src, first, last)
    # An upload that declared an algorithm gets it for copied parts too, computed on the
    # copied bytes (the store reads ``attrs`` once the source is exhausted).
    alg = _upload_checksum(up.attrs)[0]
    sums: dict[Algorithm, str] = {}
    attrs: dict[str, str] = {}
    if alg is not None:

        async def with_sums(inner: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
            async for piece in checksummed(inner, (alg,), sums):
                yield piece
            attrs.update((CHECKSUM + a.value, v) for a, v in sums.items())

        source = with_sums(source)
    part = await ctx.store.upload_part(
        ep.bucket, ep.key, ep.upload_id, ep.part_number, source, attrs
    )
    result = CopyPartResult(part.etag, timestamp_from_ns(part.mtime_ns), sums)
    resp = xml_response(result.to_xml())
    if not src.is_null:
        resp.headers["x-amz-copy-source-version-id"] = src.version_id
    return resp


async def complete_multipart_upload(ctx: Context, req: S3Request, ep: Endpoint) -> S3Response:
    assert ep.bucket is not None and ep.key is not None and ep.upload_id is not None
    condition = write_condition(req)  # decided in the commit itself (Store.complete_multipart)
    up = await ctx.store.get_upload(ep.bucket, ep.key, ep.upload_id)  # NoSuchUpload first
    # Its x-amz-checksum-* headers are the object's checksum, not its body's.
    xml = await read_small(req, checks=PayloadChecks(header_checksums=False))
    body = CompleteMultipartUpload.from_xml(xml)
    wanted = [(p.part_number, p.etag) for p in body.parts]
    sent = {p.part_number: p.checksums for p in body.parts}
    alg, kind = _upload_checksum(up.attrs)
    if alg is not None and kind is ChecksumType.COMPOSITE:
        for p in body.parts:  # a composite checksum is made of the ones the client lists
            if alg not in p.checksums:
                raise S3Error(
                    "InvalidRequest",
                    f"The upload was created using a {alg.value.lower()} checksum. The "
                    "complete request must include the checksum for each part. It was "
                    f"missing for part {p.part_number} in the request.",
                )

    asked_kind = (req.header("x-amz-checksum-type") or "").strip().upper()
    if asked_kind and kind is not None and asked_kind != kind.value:
        raise S3Error(
            "InvalidRequest",
            f"The upload was created using the {kind.value} checksum mode. The complete "
            "request must use the same checksum mode.",
        )
    expected_size = req.header("x-amz-mp-object-size")
    whole = {a: sent_sum.strip() for a in Algorithm if (sent_sum := req.header(a.header))}

    def derive(parts: Sequence[Part], attrs: Mapping[str, str]) -> Mapping[str, str]:
        """The object's attrs; also where the Complete's own claims about the whole
        object are checked, before anything is committed."""
        size = sum(p.size for p in parts)
        if expected_size is not None and expected_size.strip() != str(size):
            raise S3Error(
                "InvalidRequest",
                f"The provided 'x-amz-mp-object-size' header value {expected_size.strip()} "
                f"does not match what was computed: {size}",
            )
        out = object_checksums(parts, attrs, sent)
        for a, value in whole.items():  # x-amz-checksum-<alg>: the object's checksum
            computed = out.get(CHECKSUM + a.value)
            if computed is None or computed.partition("-")[0] != value.partition("-")[0]:
                raise S3Error(
                    "BadDigest",
                    f"The {a.value} you specified did not match the calculated checksum.",
                )
        return out

    try:
        v, _ = await ctx.store.complete_multipart(
            ep.bucket, ep.key, ep.upload_id, wanted, derive_attrs=derive, condition=condition
        )
    except ConditionFailed:
        raise precondition_failed(condition) from None
    sums = _part_checksums(v.attrs)
    object_kind = v.attrs.get(CHECKSUM_TYPE)
    result = CompleteMultipartUploadResult(
        f"/{ep.bucket}/{ep.key}",
        ep.bucket,
        ep.key,
        v.etag,
        sums,
        ChecksumType(object_kind) if object_kind is not None and sums else None,
    )
    resp = xml_response(result.to_xml())
    if not v.is_null:
        resp.headers["x-amz-version-id"] = v.version_id
    resp.headers.update(expiration_headers(await ctx.store.get_bucket(ep.bucket), v))
    return resp


async def _will_be_locked(ctx: Context, ep: Endpoint, upload_attrs: Mapping[str, str]) -> bool:
    """The upload's object will have a lock: one its CreateMultipartUpload asked for, or
    its bucket's default retention (AWS then wants each part's Content-MD5 or checksum)."""
    assert ep.bucket is not None
    config = lock.config_of(await ctx.store.get_bucket(ep.bucket))
    if config is None:
        return False
    return config.default is not None or lock.has_lock_attrs(upload_attrs)


async def abort_multipart_upload(ctx: Context, req: S3Request, ep: Endpoint) -> S3Response:
    assert ep.bucket is not None and ep.key is not None and ep.upload_id is not None
    await ctx.store.abort_multipart(ep.bucket, ep.key, ep.upload_id)
    return S3Response(204)


async def list_parts(ctx: Context, req: S3Request, ep: Endpoint) -> S3Response:
    assert ep.bucket is not None and ep.key is not None and ep.upload_id is not None
    limit = _page_size(req, "max-parts")
    raw_marker = req.param("part-number-marker") or "0"
    if not (raw_marker.isascii() and raw_marker.isdigit()) or len(raw_marker) > 9:
        raise S3Error("InvalidArgument", "Invalid part-number-marker")
    marker = int(raw_marker)
    up, parts = await ctx.store.list_parts(ep.bucket, ep.key, ep.upload_id, marker, limit + 1)
    alg, kind = _upload_checksum(up.attrs)
    initiator, owner = _people(await bucket_of(ctx, ep), up.attrs)
    truncated = len(parts) > limit > 0  # max-parts=0: an empty, untruncated page
    parts = parts[:limit]
    result = ListPartsResult(
        bucket=ep.bucket,
        key=ep.key,
        upload_id=ep.upload_id,
        part_number_marker=marker,
        max_parts=limit,
        is_truncated=truncated,
        parts=[
            PartEntry(
                p.part_number,
                timestamp_from_ns(p.mtime_ns),
                p.etag,
                p.size,
                _part_checksums(p.attrs),
            )
            for p in parts
        ],
        next_part_number_marker=parts[-1].part_number if parts else None,
        initiator=initiator,
        owner=owner,
        checksum_algorithm=alg,
        checksum_type=kind,
    )
    return xml_response(result.to_xml())


async def list_multipart_uploads(ctx: Context, req: S3Request, ep: Endpoint) -> S3Response:
    assert ep.bucket is not None
    b = await bucket_of(ctx, ep)
    limit = _page_size(req, "max-uploads")
    prefix = req.param("prefix") or ""
    key_marker = req.param("key-marker") or ""
    # S3 ignores upload-id-marker without a key-marker.
    upload_id_marker = (req.param("upload-id-marker") or "") if key_marker else ""
    delimiter = req.param("delimiter") or None
    encoding = req.param("encoding-type")
    if encoding is not None and encoding != "url":
        raise S3Error("InvalidArgument", "Invalid Encoding Method specified in Request")
    entries: list[UploadEntry] = []
    prefixes: list[str] = []
    truncated = False
    next_key = next_id = ""
    k_marker, u_marker = key_marker, upload_id_marker
    # Bounded: each round either fills the page or ends the listing. max-uploads=0 is an
    # empty page that is not truncated.
    while not truncated and limit > 0:
        ups = await ctx.store.list_uploads(ep.bucket, prefix, k_marker, u_marker, limit + 1)
        for up in ups:
            if delimiter:
                cut = up.key.find(delimiter, len(prefix))
                if cut >= 0:
                    cp = up.key[: cut + len(delimiter)]
                    if prefixes and prefixes[-1] == cp:
                        k_marker, u_marker = up.key, up.upload_id
                        continue
                    if len(entries) + len(prefixes) >= limit:
                        truncated = True
                        break
                    prefixes.append(cp)
                    next_key, next_id = up.key, up.upload_id
                    k_marker, u_marker = up.key, up.upload_id
                    continue
            if len(entries) + len(prefixes) >= limit:
                truncated = True
                break
            initiator, owner = _people(b, up.attrs)
            entries.append(
                UploadEntry(
                    up.key,
                    up.upload_id,
                    timestamp_from_ns(up.initiated_ns),
                    initiator,
                    owner,
                    checksum_algorithm=_upload_checksum(up.attrs)[0],
                    checksum_type=_upload_checksum(up.attrs)[1],
                )
            )
            next_key, next_id = up.key, up.upload_id
            k_marker, u_marker = up.key, up.upload_id
        if len(ups) <= limit:
            break
    result = ListMultipartUploadsResult(
        bucket=ep.bucket,
        key_marker=key_marker,
        upload_id_marker=upload_id_marker,
        max_uploads=limit,
        is_truncated=truncated,
        uploads=entries,
        common_prefixes=prefixes,
        prefix=prefix or None,
        delimiter=delimiter,
        next_key_marker=next_key or None,
        next_upload_id_marker=next_id or None,
        encoding_type=encoding,
    )
    return xml_response(result.to_xml())


def _people(b: Bucket, attrs: Mapping[str, str]) -> tuple[Owner, Owner]:
    """An upload's Initiator (who started it) and Owner (who will own the object)."""
    initiator = attrs.get(INITIATOR, b.owner)
    owner = owner_of_version(b, attrs)
    return Owner(initiator, initiator), Owner(owner, owner)
