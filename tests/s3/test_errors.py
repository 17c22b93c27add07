"""kvbox.s3.errors: S3Error, and kvbox errors translated through the one table.

The table itself (``kvbox.errors.WIRE``, ``S3_CODES``) is tested in tests/test_errors.py.
"""

from __future__ import annotations

import doctest

import pytest

from kvbox import errors as core
from kvbox.errors import S3_CODES, SignatureDoesNotMatch, SigV2DoesNotMatch, wire
from kvbox.s3 import checksums, errors, router, xml
from kvbox.s3.errors import S3Error, from_kvbox_error
from kvbox.s3.xml import base as xml_base
from kvbox.s3.xml import bucket as xml_bucket
from kvbox.s3.xml import objects as xml_objects

from ._oracle import boto_error


def test_s3_error() -> None:
    err = S3Error("NoSuchKey", resource="/b/k", extra={"Key": "k"}, headers={"x": "1"})
    assert (err.code, err.status, err.resource) == ("NoSuchKey", 404, "/b/k")
    assert err.message == S3_CODES["NoSuchKey"].message
    assert err.extra == {"Key": "k"} and err.headers == {"x": "1"}
    assert err.has_body
    assert not S3Error("NotModified").has_body
    assert S3Error("InvalidArgument", "bad x").message == "bad x"
    assert "NoSuchKey" in str(err) and "NoSuchKey" in repr(err)
    with pytest.raises(KeyError):
        S3Error("NoSuchThing")
    assert isinstance(router.RouteError("InvalidURI"), S3Error)


@pytest.mark.parametrize(
    ("exc", "code", "message"),
    [
        (core.NoSuchBucket("b"), "NoSuchBucket", None),
        (core.NoSuchKey("k"), "NoSuchKey", None),
        (core.NoSuchVersion("v"), "NoSuchVersion", None),
        (core.NotFound("x"), "NoSuchKey", None),
        (
            core.InvalidArgument("versioning cannot be turned off"),
            "InvalidArgument",
            "versioning cannot be turned off",
        ),
        (core.InvalidKey("bad key"), "InvalidArgument", "bad key"),
        (core.InvalidArgument(), "InvalidArgument", None),
        (core.ValueTooLarge("value of 9 bytes exceeds --max-memory"), "EntityTooLarge", None),
        (core.ConditionFailed(), "PreconditionFailed", None),
        (core.BucketExists("b"), "BucketAlreadyExists", None),
        (core.BucketNotEmpty("b"), "BucketNotEmpty", None),
        (core.Conflict("x"), "OperationAborted", None),
        (core.ChunkMissing("/data/chunks/ab/cd missing"), "InternalError", None),
        (core.StorageError("sqlite: disk I/O error at /var/lib"), "InternalError", None),
        (core.Busy("too many"), "SlowDown", None),
        (
            core.ObjectLocked("retention until 2030"),
            "AccessDenied",
            "Access Denied because object protected by object lock.",
        ),
        (core.InvalidBucketState("needs versioning"), "InvalidBucketState", "needs versioning"),
        (core.ProtocolError("bad"), "InvalidRequest", None),
        (core.RemoteError("ERR", "x"), "InternalError", None),
        (core.KvboxError("x"), "InternalError", None),
        (OSError("/secret/path"), "InternalError", None),
        (RuntimeError("Traceback (most recent call last)"), "InternalError", None),
    ],
)
def test_from_kvbox_error(exc: BaseException, code: str, message: str | None) -> None:
    err = from_kvbox_error(exc, resource="/r")
    assert err.code == code
    assert err.resource == "/r"
    assert err.message == (S3_CODES[code].message if message is None else message)


def test_an_s3_error_passes_through() -> None:
    same = S3Error("AccessDenied")
    assert from_kvbox_error(same) is same


def test_fields_come_from_the_row() -> None:
    exc = SignatureDoesNotMatch(
        access_key="AK", signature_provided="sig", string_to_sign="sts", canonical_request="cr"
    )
    err = from_kvbox_error(exc, resource="/b")
    assert (err.code, err.status) == ("SignatureDoesNotMatch", 403)
    assert err.message == str(exc)  # the row is public: the text was written for clients
    assert list(err.extra.items()) == [
        ("AWSAccessKeyId", "AK"),
        ("StringToSign", "sts"),
        ("SignatureProvided", "sig"),
        ("CanonicalRequest", "cr"),
    ]
    assert err.extra == wire(exc).s3_fields(exc)


def test_sigv2_fields() -> None:
    exc = SigV2DoesNotMatch(access_key="AK", signature_provided="sig", string_to_sign="GET\n")
    err = from_kvbox_error(exc)
    assert err.code == "SignatureDoesNotMatch"
    assert err.extra == {
        "AWSAccessKeyId": "AK",
        "StringToSign": "GET\n",
        "SignatureProvided": "sig",
        "StringToSignBytes": "47 45 54 0a",
    }


def test_botocore_reads_every_error() -> None:
    for code, spec in S3_CODES.items():
        if not spec.status >= 400:
            continue
        body = xml.render_error(S3Error(code), request_id="R")
        parsed = boto_error(body, spec.status)
        assert parsed["Error"]["Code"] == code
        assert parsed["Error"]["Message"] == spec.message


@pytest.mark.parametrize("module", [errors, router, xml_base, xml_bucket, xml_objects, checksums])
def test_docstring_examples(module: object) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)  # type: ignore[arg-type]
    assert result.attempted > 0
    assert result.failed == 0
