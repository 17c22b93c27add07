"""kvbox.errors: the one tree and the one table (``WIRE``, ``S3_CODES``)."""

from __future__ import annotations

import ast
import doctest
import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import kvbox
from kvbox import errors
from kvbox.errors import S3_CODES, WIRE, KvboxError, gwkv_code, wire

SRC = Path(kvbox.__file__).parent
DOCS = SRC.parent.parent / "docs"

#: Every code issues 3 and 4 name, with the status AWS gives it.
REQUIRED = {
    "NoSuchBucket": 404,
    "NoSuchKey": 404,
    "NoSuchUpload": 404,
    "NoSuchVersion": 404,
    "AccessDenied": 403,
    "InvalidAccessKeyId": 403,
    "SignatureDoesNotMatch": 403,
    "RequestTimeTooSkewed": 403,
    "MalformedXML": 400,
    "InvalidArgument": 400,
    "EntityTooLarge": 400,
    "EntityTooSmall": 400,
    "InvalidPart": 400,
    "InvalidPartOrder": 400,
    "InvalidRange": 416,
    "PreconditionFailed": 412,
    "NotModified": 304,
    "BucketAlreadyExists": 409,
    "BucketAlreadyOwnedByYou": 409,
    "BucketNotEmpty": 409,
    "InvalidBucketName": 400,
    "KeyTooLongError": 400,
    "BadDigest": 400,
    "InvalidDigest": 400,
    "XAmzContentSHA256Mismatch": 400,
    "IncompleteBody": 400,
    "MissingContentLength": 411,
    "MethodNotAllowed": 405,
    "NotImplemented": 501,
    "MalformedPolicy": 400,
    "NoSuchBucketPolicy": 404,
    "NoSuchCORSConfiguration": 404,
    "NoSuchWebsiteConfiguration": 404,
    "NoSuchTagSet": 404,
    "NoSuchLifecycleConfiguration": 404,
    "InvalidTag": 400,
    "InternalError": 500,
    "SlowDown": 503,
    "ServiceUnavailable": 503,
    "AuthorizationHeaderMalformed": 400,
    "AuthorizationQueryParametersError": 400,
    "InvalidRequest": 400,
    "MalformedACLError": 400,
    "NoSuchPublicAccessBlockConfiguration": 404,
    "InvalidObjectState": 403,
    "InvalidURI": 400,
    "MaxMessageLengthExceeded": 400,
    "AccessForbidden": 403,
}


def _all_kvbox_modules() -> list[str]:
    names = ["kvbox"]
    for info in pkgutil.walk_packages([str(SRC)], prefix="kvbox."):
        if info.name.endswith("__main__"):
            continue
        importlib.import_module(info.name)
        names.append(info.name)
    return names


def _tree(root: type[KvboxError]) -> set[type[KvboxError]]:
    out = {root}
    for sub in root.__subclasses__():
        out |= _tree(sub)
    return out


@pytest.mark.parametrize(("code", "status"), sorted(REQUIRED.items()))
def test_required_codes(code: str, status: int) -> None:
    spec = S3_CODES[code]
    assert (spec.code, spec.status) == (code, status)
    assert spec.message and spec.message[0].isupper()


def test_s3_codes_are_consistent() -> None:
    assert list(S3_CODES) == sorted(S3_CODES), "keep S3_CODES sorted: fewer merge conflicts"
    for code, spec in S3_CODES.items():
        assert spec.code == code
        assert code[0].isupper() and code.isalnum()
        assert 300 <= spec.status <= 599


def test_every_error_class_has_its_own_row() -> None:
    """Every KvboxError subclass anywhere in kvbox is defined in kvbox.errors (the tree
    is the whole tree) and has a row of its own, not only an ancestor's."""
    _all_kvbox_modules()
    classes = _tree(KvboxError)
    assert {c.__module__ for c in classes} == {"kvbox.errors"}
    assert classes == set(WIRE), "add a row to kvbox.errors.WIRE"


def test_the_tree_is_drawn_in_the_docstring() -> None:
    doc = errors.__doc__ or ""
    drawn = set(re.findall(r"[├└]── (\w+)", doc)) | {"KvboxError"}
    assert drawn == {c.__name__ for c in _tree(KvboxError)}


def test_rows_name_known_codes_with_their_status() -> None:
    for cls, row in WIRE.items():
        assert row.s3 in S3_CODES, cls
        assert row.status == S3_CODES[row.s3].status, cls
        assert re.fullmatch(r"[A-Z]+", row.gwkv), cls
        assert re.fullmatch(r"[A-Z]+", row.resp), cls
        assert all(f.element[0].isupper() for f in row.fields), cls


def test_gwkv_words_are_documented() -> None:
    """Each GW-KV word of the table is in docs/protocol.md's error codes."""
    protocol = (DOCS / "protocol.md").read_text()
    for cls, row in WIRE.items():
        assert f"`{row.gwkv}`" in protocol, (cls, row.gwkv)


def _s3error_codes_in_source() -> set[tuple[str, str]]:
    """Every literal code given to S3Error (or its subclass RouteError) in src/kvbox."""
    found: set[tuple[str, str]] = set()
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in {"S3Error", "RouteError"}
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                found.add((str(path.relative_to(SRC)), node.args[0].value))
    return found


def test_every_s3_code_used_is_in_the_list() -> None:
    used = _s3error_codes_in_source()
    assert len(used) > 20  # the scan finds the handlers' raises
    assert {(where, code) for where, code in used if code not in S3_CODES} == set()


@pytest.mark.parametrize(
    ("exc", "gwkv", "s3"),
    [
        (errors.ProtocolError("x", "LINETOOLONG"), "LINETOOLONG", "InvalidRequest"),
        (errors.ProtocolError("x"), "PROTOCOL", "InvalidRequest"),
        (errors.InvalidKey("k"), "BADKEY", "InvalidArgument"),
        (errors.ValueTooLarge("v"), "TOOLARGE", "EntityTooLarge"),
        (errors.InvalidPart("p"), "ARGS", "InvalidPart"),
        (errors.NoSuchBucket("b"), "NOBUCKET", "NoSuchBucket"),
        (errors.NoSuchKey("k"), "NOTFOUND", "NoSuchKey"),
        (errors.ConditionFailed(), "CONFLICT", "PreconditionFailed"),
        (errors.BucketExists("b"), "CONFLICT", "BucketAlreadyExists"),
        (errors.ChunkMissing("c"), "STORAGE", "InternalError"),
        (errors.Busy("b"), "BUSY", "SlowDown"),
        (errors.KvboxError("x"), "INTERNAL", "InternalError"),
        (OSError("disk"), "INTERNAL", "InternalError"),
    ],
)
def test_lookup(exc: BaseException, gwkv: str, s3: str) -> None:
    assert gwkv_code(exc) == gwkv
    assert wire(exc).s3 == s3
    assert wire(type(exc)) is wire(exc)


def test_a_subclass_without_a_row_takes_its_parents() -> None:
    class Local(errors.NoSuchUpload):
        pass

    try:
        assert wire(Local("u")) is WIRE[errors.NoSuchUpload]
    finally:
        del Local  # keep the tree whole for test_every_error_class_has_its_own_row
        import gc

        gc.collect()


def test_docstring_examples() -> None:
    result = doctest.testmod(errors, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
