"""The router against every operation of botocore's S3 service model.

Each operation is built the way botocore sends it (method, URI, its required query
parameters and the headers that tell operations apart) and must route to that very
operation or be refused with an error -- never land on another operation that would
then succeed doing something else (``PUT /b/k?annotation`` storing the XML body as the
object, ``DELETE /b/k?annotation`` deleting it, ``GET /b?abac`` listing the bucket).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import botocore.session  # type: ignore[import-untyped]
import pytest

from kvbox.s3.router import Op, RouteError, route

MODEL: Any = botocore.session.get_session().get_service_model("s3")

#: Model operations kvbox serves under another of AWS's names for the same request.
ALIASES = {
    "GetBucketLifecycle": "GetBucketLifecycleConfiguration",
    "PutBucketLifecycle": "PutBucketLifecycleConfiguration",
    "GetBucketNotification": "GetBucketNotificationConfiguration",
    "PutBucketNotification": "PutBucketNotificationConfiguration",
    "ListDirectoryBuckets": "ListBuckets",
}
#: Placeholder values for members that route a request (query string and headers).
_VALUES = {"uploadId": "u1", "partNumber": "1", "x-amz-copy-source": "src/k", "id": "i1"}


def _request(name: str) -> tuple[str, str, list[tuple[str, str]], dict[str, str]]:
    """(method, path, query pairs, headers) of ``name`` with its required members."""
    op = MODEL.operation_model(name)
    path, _, query = op.http["requestUri"].partition("?")
    path = path.replace("{Bucket}", "b1b").replace("{Key+}", "k")
    pairs: list[tuple[str, str]] = []
    for piece in filter(None, query.split("&")):
        key, _, value = piece.partition("=")
        pairs.append((key, value))
    headers = {"host": "localhost"}
    shape = op.input_shape
    for member in shape.required_members if shape is not None else ():
        where = shape.members[member].serialization.get("location")
        wire = shape.members[member].serialization.get("name", member)
        if where == "querystring":
            pairs.append((wire, _VALUES.get(wire, "x")))
        elif where == "header":
            headers[wire] = _VALUES.get(wire, "x")
    return op.http["method"], path, pairs, headers


@pytest.mark.parametrize("name", sorted(MODEL.operation_names))
def test_every_model_operation_routes_to_itself_or_is_refused(name: str) -> None:
    method, path, query, headers = _request(name)
    try:
        ep = route(method, path, query, headers, domain=None)
    except RouteError as exc:
        assert exc.code in ("NotImplemented", "InvalidBucketName", "MethodNotAllowed"), exc
        return
    assert ep.op.value == ALIASES.get(name, name), (name, method, path, query)


def test_the_model_names_every_op_kvbox_routes() -> None:
    served = {Op(ALIASES.get(n, n)) for n in MODEL.operation_names if ALIASES.get(n, n) in set(Op)}
    # CORS preflights are HTTP, and POST Object a browser form: neither is in the model.
    assert set(Op) - served == {Op.PREFLIGHT, Op.POST_OBJECT}


#: docs/s3-compat.md, whose "At a glance" table names every model operation.
COMPAT = Path(__file__).resolve().parents[2] / "docs" / "s3-compat.md"


def _glance() -> dict[str, str]:
    """Operation name -> status, from the "At a glance" table of docs/s3-compat.md."""
    text = COMPAT.read_text(encoding="utf-8")
    section = text.split("\n## At a glance\n", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0] not in ("operation", "---"):
            assert cells[0] not in rows, f"{cells[0]} is in the table twice"
            rows[cells[0]] = cells[1]
    return rows


def test_the_compatibility_table_names_every_operation_with_its_true_status() -> None:
    rows = _glance()
    in_model = {name: rows.get(name) for name in MODEL.operation_names}
    assert [n for n, status in in_model.items() if status is None] == []
    for name, status in in_model.items():
        method, path, query, headers = _request(name)
        try:
            route(method, path, query, headers, domain=None)
            served = True
        except RouteError:
            served = False
        expected = ("supported", "partial") if served else ("not supported",)
        assert status in expected, (name, status, "served" if served else "refused")
    extra = set(rows) - set(MODEL.operation_names)
    assert {e.split(" ", 1)[0] for e in extra} == {"POST", "CORS"}, extra
