"""POST form signatures (``kvbox.auth.form``), checked against botocore's own POST
presigners (``S3SigV4PostAuth``, ``HmacV1PostAuth``) as the oracle."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.auth import HmacV1PostAuth, S3SigV4PostAuth  # type: ignore[import-untyped]
from botocore.credentials import Credentials  # type: ignore[import-untyped]

from kvbox.auth.form import verify_form
from kvbox.auth.sigv4 import (
    AuthorizationQueryParametersError,
    InvalidAccessKeyId,
    InvalidAuthArgument,
    SignatureDoesNotMatch,
)

AK, SK = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"


def botocore_fields(version: str, doc: str) -> dict[str, str]:
    """The fields botocore signs a form with; ``doc`` is decoded JSON fed back through
    botocore so the policy it signs is botocore's own encoding."""
    creds = Credentials(AK, SK)
    request: dict[str, Any] = {
        "context": {"s3-presign-post-fields": {}, "s3-presign-post-policy": json.loads(doc)}
    }
    if version == "v4":
        auth = S3SigV4PostAuth(creds, "s3", "us-east-1")
        auth._timestamp = lambda: "20260301T120000Z"  # what botocore would read off its clock
        auth.add_auth(request=_Req(request))
    else:
        HmacV1PostAuth(creds).add_auth(request=_Req(request))
    fields = request["context"]["s3-presign-post-fields"]
    return {k.lower(): v for k, v in fields.items()}


class _Req:
    """The request shape botocore's POST presigners fill."""

    def __init__(self, d: dict[str, Any]) -> None:
        self.context = d["context"]


def lookup(key: str) -> str | None:
    return SK if key == AK else None


@pytest.mark.parametrize("version", ["v2", "v4"])
def test_botocores_form_signatures_verify(version: str) -> None:
    doc = json.dumps({"expiration": "2026-03-01T13:00:00Z", "conditions": [{"bucket": "b"}]})
    fields = botocore_fields(version, doc)
    auth = verify_form(fields, lookup, "us-east-1")
    assert auth is not None and auth.access_key == AK
    assert auth.signature_version == ("AWS4-HMAC-SHA256" if version == "v4" else "AWS")
    # the policy is what is signed: change one byte and the form no longer verifies
    tampered = dict(fields, policy=fields["policy"][:-4] + "AAAA")
    with pytest.raises(SignatureDoesNotMatch):
        verify_form(tampered, lookup, "us-east-1")
    with pytest.raises(InvalidAccessKeyId):
        verify_form(fields, lambda _: None, "us-east-1")


def test_half_signed_and_misscoped_forms() -> None:
    assert verify_form({"key": "k"}, lookup, "us-east-1") is None
    for missing in ("signature", "awsaccesskeyid", "policy"):
        fields = {"awsaccesskeyid": AK, "signature": "x", "policy": "p"}
        del fields[missing]
        with pytest.raises(InvalidAuthArgument):
            verify_form(fields, lookup, "us-east-1")
    v4 = botocore_fields("v4", json.dumps({"expiration": "2026-03-01T13:00:00Z", "conditions": []}))
    with pytest.raises(AuthorizationQueryParametersError) as info:
        verify_form(v4, lookup, "eu-west-1")
    assert "expecting 'eu-west-1'" in str(info.value)
    with pytest.raises(InvalidAuthArgument):
        verify_form(dict(v4, **{"x-amz-algorithm": "AWS4-HMAC-SHA1"}), lookup, "us-east-1")
    with pytest.raises(AuthorizationQueryParametersError):
        verify_form(dict(v4, **{"x-amz-date": "20260302T000000Z"}), lookup, "us-east-1")
