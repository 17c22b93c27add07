"""kvbox.s3.errors: the table, S3Error, and the kvbox core -> S3 mapping."""

from __future__ import annotations

import doctest

import pytest

from kvbox import errors as core
from kvbox.s3 import checksums, errors, router, xml
from kvbox.s3.errors import CORE_TO_S3, ERRORS, S3Error, from_kvbox_error

from ._oracle import boto_error

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


@pytest.mark.parametrize(("code", "status"), sorted(REQUIRED.items()))
def test_required_codes(code: str, status: int) -> None:
    spec = ERRORS[code]
    assert (spec.code, spec.status) == (code, status)
    assert spec.message and spec.message[0].isupper()


def test_table_is_consistent() -> None:
    for code, spec in ERRORS.items():
        assert spec.code == code
        assert code[0].isupper() and code.isalnum()
        assert 300 <= spec.status <= 599


def test_s3_error() -> None:
    err = S3Error("NoSuchKey", resource="/b/k", extra={"Key": "k"}, headers={"x": "1"})
    assert (err.code, err.status, err.resource) == ("NoSuchKey", 404, "/b/k")
    assert err.message == ERRORS["NoSuchKey"].message
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
    assert err.message == (ERRORS[code].message if message is None else message)


def test_from_kvbox_error_covers_the_whole_core_tree() -> None:
    def subclasses(cls: type[core.KvboxError]) -> set[type[core.KvboxError]]:
        out = {cls}
        for sub in cls.__subclasses__():
            out |= subclasses(sub)
        return out

    assert subclasses(core.KvboxError) <= set(CORE_TO_S3), "add new core errors to CORE_TO_S3"
    same = S3Error("AccessDenied")
    assert from_kvbox_error(same) is same


def test_botocore_reads_every_error() -> None:
    for code, spec in ERRORS.items():
        if not spec.status >= 400:
            continue
        body = xml.render_error(S3Error(code), request_id="R")
        parsed = boto_error(body, spec.status)
        assert parsed["Error"]["Code"] == code
        assert parsed["Error"]["Message"] == spec.message


@pytest.mark.parametrize("module", [errors, router, xml, checksums])
def test_docstring_examples(module: object) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)  # type: ignore[arg-type]
    assert result.attempted > 0
    assert result.failed == 0
