"""Shared test helpers: botocore as an oracle, and the golden-XML comparison.

botocore is what boto3 and the AWS CLI run: if its rest-xml parser reads our responses
into the right values, and our parsers read the bodies its serializer writes, real
clients agree with us. The comparison rules are described in tests/vectors/s3/README.md.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import botocore.session  # type: ignore[import-untyped]
from botocore import parsers, serialize

VECTORS = Path(__file__).resolve().parent.parent / "vectors" / "s3"

_MODEL = botocore.session.get_session().get_service_model("s3")


def boto_parse(operation: str, body: bytes, headers: dict[str, str] | None = None) -> Any:
    """What boto3 returns for ``body`` as ``operation``'s 200 response."""
    op = _MODEL.operation_model(operation)
    parser = parsers.create_parser("rest-xml")
    response = {"body": body, "headers": headers or {}, "status_code": 200}
    return parser.parse(response, op.output_shape)


def boto_error(body: bytes, status: int) -> Any:
    """What boto3 reads from an error response body."""
    op = _MODEL.operation_model("GetObject")
    parser = parsers.create_parser("rest-xml")
    return parser.parse({"body": body, "headers": {}, "status_code": status}, op.output_shape)


def boto_body(operation: str, params: dict[str, Any]) -> bytes:
    """The request body boto3 sends for ``operation`` with ``params``."""
    op = _MODEL.operation_model(operation)
    request = serialize.create_serializer("rest-xml").serialize_to_request(params, op)
    body = request["body"]
    assert isinstance(body, bytes)
    return body


def vector(name: str) -> bytes:
    return (VECTORS / name).read_bytes()


_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)?")
#: Siblings that must keep their relative order although their names differ.
_ORDER_GROUPS = {"Version": "Version", "DeleteMarker": "Version"}


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _norm_text(text: str | None) -> str:
    t = (text or "").strip()
    if _TIMESTAMP.fullmatch(t):
        when = datetime.fromisoformat(t.replace("Z", "+00:00"))
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return when.astimezone(UTC).isoformat(timespec="milliseconds")
    if t.lower() in ("true", "false"):
        return t.lower()
    return t


def canonical(el: ET.Element) -> tuple[Any, ...]:
    children = sorted(
        (canonical(c) for c in el),
        key=lambda c: _ORDER_GROUPS.get(c[0], c[0]),
    )
    attrs = tuple(sorted((_local(k), v) for k, v in el.attrib.items()))
    return (_local(el.tag), attrs, _norm_text(el.text), tuple(children))


def same_xml(ours: bytes, theirs: bytes) -> bool:
    """True when the two documents match by the README's rules."""
    a = canonical(ET.fromstring(ours))
    b = canonical(ET.fromstring(theirs))
    if a != b:  # pragma: no cover - shown on failure
        print("ours:  ", a)
        print("theirs:", b)
    return a == b


def namespace(body: bytes) -> str | None:
    tag = ET.fromstring(body).tag
    return tag[1 : tag.index("}")] if tag.startswith("{") else None
