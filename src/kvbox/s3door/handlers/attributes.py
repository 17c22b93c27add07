"""GetObjectAttributes: what S3 knows of an object, without reading its bytes.

Layer: s3 handlers. Rules, from AWS's GetObjectAttributes reference:

* ``x-amz-object-attributes`` names what to return (ETag, Checksum, ObjectParts,
  StorageClass, ObjectSize); missing or empty is InvalidRequest, an unknown name
  InvalidArgument. Only what was asked for is answered.
* The version is resolved as GetObject resolves it (``versionId``, a delete marker is
  404 with ``x-amz-delete-marker``); the answer carries ``Last-Modified`` and the
  version id.
* The ETag comes without its quotes, and a COMPOSITE checksum without its ``-N``
  (the part count is ``ObjectParts/PartsCount``), as AWS answers here and nowhere else.
* ObjectParts exists only for a multipart object. Its parts are listed (a page of
  ``x-amz-max-parts`` after ``x-amz-part-number-marker``) only when the object has
  COMPOSITE part checksums (attr ``part-sums:ALG``), each part with its size and
  checksum; otherwise just the count.
"""

from __future__ import annotations

from collections.abc import Mapping

from kvbox.core.model import ObjectVersion
from kvbox.s3.checksums import Algorithm, ChecksumType
from kvbox.s3.errors import S3Error
from kvbox.s3.router import Endpoint
from kvbox.s3.xml import (
    GetObjectAttributesResponse,
    ObjectAttribute,
    ObjectPartAttributes,
    ObjectPartsAttributes,
)
from kvbox.s3door.handlers.common import (
    CHECKSUM,
    CHECKSUM_TYPE,
    PART_SUMS,
    PARTS,
    Context,
    http_date,
    xml_response,
)
from kvbox.s3door.handlers.object import part_sizes, resolve_version
from kvbox.s3door.types import S3Request, S3Response

#: S3's cap on x-amz-max-parts (and its default).
MAX_PARTS = 1000


def _header_int(req: S3Request, name: str, default: int) -> int:
    raw = req.header(name)
    if raw is None:
        return default
    raw = raw.strip()
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 9:
        raise S3Error(
            "InvalidArgument",
            f"Provided {name} not an integer or within integer range",
            extra={"ArgumentName": name, "ArgumentValue": raw},
        )
    return int(raw)


def _checksums(attrs: Mapping[str, str]) -> dict[Algorithm, str]:
    return {
        Algorithm(k[len(CHECKSUM) :]): v.partition("-")[0]
        for k, v in attrs.items()
        if k.startswith(CHECKSUM)
    }


def _object_parts(v: ObjectVersion, marker: int, max_parts: int) -> ObjectPartsAttributes | None:
    sizes = part_sizes(v.attrs.get(PARTS))
    if sizes is None:
        return None  # not a multipart object
    listed = v.attrs.get(CHECKSUM_TYPE) == ChecksumType.COMPOSITE.value
    part_sums = {
        Algorithm(k[len(PART_SUMS) :]): val.split(",")
        for k, val in v.attrs.items()
        if k.startswith(PART_SUMS)
    }
    if not listed or not part_sums:
        return ObjectPartsAttributes(len(sizes))
    numbers = range(marker + 1, len(sizes) + 1)
    page = numbers[:max_parts]
    parts = tuple(
        ObjectPartAttributes(
            n, sizes[n - 1], {alg: values[n - 1] for alg, values in part_sums.items()}
        )
        for n in page
    )
    truncated = len(numbers) > len(page)
    return ObjectPartsAttributes(
        len(sizes),
        part_number_marker=marker,
        next_part_number_marker=page[-1] if truncated and page else None,
        max_parts=max_parts,
        is_truncated=truncated,
        parts=parts,
        listed=True,
    )


async def get_object_attributes(ctx: Context, req: S3Request, ep: Endpoint) -> S3Response:
    wanted = ObjectAttribute.parse_header(req.header("x-amz-object-attributes"))
    max_parts = min(_header_int(req, "x-amz-max-parts", MAX_PARTS), MAX_PARTS)
    marker = _header_int(req, "x-amz-part-number-marker", 0)
    v = await resolve_version(ctx, ep, req)
    sums = _checksums(v.attrs)
    kind = v.attrs.get(CHECKSUM_TYPE, ChecksumType.FULL_OBJECT.value)
    answer = GetObjectAttributesResponse(
        etag=v.etag if ObjectAttribute.ETAG in wanted else None,
        checksums=sums if ObjectAttribute.CHECKSUM in wanted else None,
        checksum_type=ChecksumType(kind) if sums else None,
        object_parts=_object_parts(v, marker, max_parts)
        if ObjectAttribute.OBJECT_PARTS in wanted
        else None,
        storage_class="STANDARD" if ObjectAttribute.STORAGE_CLASS in wanted else None,
        object_size=v.size if ObjectAttribute.OBJECT_SIZE in wanted else None,
    )
    resp = xml_response(answer.to_xml())
    resp.headers["Last-Modified"] = http_date(v.mtime_ns)
    if not v.is_null:
        resp.headers["x-amz-version-id"] = v.version_id
    return resp
