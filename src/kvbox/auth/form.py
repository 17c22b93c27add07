"""Who signed a browser POST form: its Signature Version 4 and Version 2 fields.

Layer: auth (pure; secrets come through ``lookup_secret``, nothing here reads a clock).
Rules, from AWS's "Calculating a signature (POST)" and "HTML forms (V2)":

* The string to sign is the form's ``policy`` field exactly as sent (base64 text). V4:
  ``x-amz-algorithm`` is ``AWS4-HMAC-SHA256``; ``x-amz-credential`` is
  ``AKID/YYYYMMDD/REGION/s3/aws4_request``, its date the date of ``x-amz-date`` and its
  region the server's; the signature is the lowercase hex HMAC-SHA256 of the policy with
  the V4 signing key. V2 (``AWSAccessKeyId`` and ``signature``): base64 HMAC-SHA1, as
  ``kvbox.auth.sigv2`` computes it.
* The policy's expiration and conditions are not checked here (``kvbox.s3.postpolicy``
  does that): this only proves the policy came from the holder of the key.
* A form with none of the signing fields is anonymous; a form with some but not all is
  InvalidArgument naming the missing field, as AWS answers.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import kvbox.auth.sigv2 as sigv2
from kvbox.auth.sigv4 import (
    ALGORITHM,
    AuthorizationQueryParametersError,
    InvalidAccessKeyId,
    InvalidAuthArgument,
    SecretLookup,
    SignatureDoesNotMatch,
    parse_amz_date,
    signature,
    signing_key,
)

V4_FIELDS: Final = ("x-amz-algorithm", "x-amz-credential", "x-amz-date", "x-amz-signature")
V2_FIELDS: Final = ("awsaccesskeyid", "signature")
_TERMINATOR: Final = "aws4_request"


@dataclass(frozen=True, slots=True)
class FormAuth:
    """A verified form: who signed it, and how (``s3:signatureversion``)."""

    access_key: str
    signature_version: str


def _missing(name: str) -> InvalidAuthArgument:
    spelled = {"awsaccesskeyid": "AWSAccessKeyId"}.get(name, name)
    return InvalidAuthArgument(
        f"Bucket POST must contain a field named '{spelled}'.  If it is specified, please "
        "check the order of the fields.",
        argument_name=spelled,
    )


def _credential_error(message: str) -> AuthorizationQueryParametersError:
    return AuthorizationQueryParametersError(
        f"Error parsing the X-Amz-Credential parameter; {message}"
    )


def verify_form(
    fields: Mapping[str, str], lookup_secret: SecretLookup, region: str
) -> FormAuth | None:
    """The signer of a form (``fields`` by lower-case name), or None when it is anonymous.

    Raises InvalidAuthArgument for a half-signed form, InvalidAccessKeyId for an unknown
    key and SignatureDoesNotMatch for a wrong signature.
    """
    v4 = [f for f in V4_FIELDS if f in fields]
    v2 = [f for f in V2_FIELDS if f in fields]
    if not v4 and not v2:
        if "policy" in fields:
            raise _missing("awsaccesskeyid")
        return None
    if v4:
        return _verify_v4(fields, lookup_secret, region)
    for name in V2_FIELDS:
        if name not in fields:
            raise _missing(name)
    if "policy" not in fields:
        raise _missing("policy")
    done = sigv2.verify_form(
        fields["awsaccesskeyid"], fields["policy"], fields["signature"], lookup_secret
    )
    return FormAuth(done.access_key, "AWS")


def v4_form_signature(secret_key: str, date: str, region: str, policy_b64: str) -> str:
    """The ``x-amz-signature`` a V4 form with this policy must carry."""
    return signature(signing_key(secret_key, date, region, "s3"), policy_b64)


def _verify_v4(fields: Mapping[str, str], lookup_secret: SecretLookup, region: str) -> FormAuth:
    for name in (*V4_FIELDS, "policy"):
        if name not in fields:
            raise _missing(name)
    if fields["x-amz-algorithm"] != ALGORITHM:
        raise InvalidAuthArgument(
            f"Invalid algorithm: {fields['x-amz-algorithm']!r}; expecting {ALGORITHM}",
            argument_name="x-amz-algorithm",
            argument_value=fields["x-amz-algorithm"],
        )
    amz_date = fields["x-amz-date"]
    try:
        parse_amz_date(amz_date)
    except ValueError:
        raise InvalidAuthArgument(
            "Invalid x-amz-date: expecting YYYYMMDDTHHMMSSZ",
            argument_name="x-amz-date",
            argument_value=amz_date,
        ) from None
    parts = fields["x-amz-credential"].split("/")
    if len(parts) != 5 or not parts[0]:
        raise _credential_error(
            "the Credential is mal-formed; expecting "
            f'"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/{_TERMINATOR}".'
        )
    access_key, date, cred_region, service, terminator = parts
    if date != amz_date[:8]:
        raise _credential_error("Invalid credential date. Date is not the same as X-Amz-Date.")
    if cred_region != region:
        raise AuthorizationQueryParametersError(
            f"Error parsing the X-Amz-Credential parameter; the region '{cred_region}' is "
            f"wrong; expecting '{region}'",
            region=region,
        )
    if service != "s3" or terminator != _TERMINATOR:
        raise _credential_error(f"the credential scope {date}/{cred_region}/{service} is not s3's")
    secret = lookup_secret(access_key)
    if secret is None:
        raise InvalidAccessKeyId(access_key)
    policy = fields["policy"]
    expected = v4_form_signature(secret, date, region, policy)
    provided = fields["x-amz-signature"]
    if not hmac.compare_digest(expected.encode(), provided.encode("ascii", "replace")):
        raise SignatureDoesNotMatch(
            access_key=access_key,
            signature_provided=provided,
            string_to_sign=policy,
            canonical_request="",
        )
    return FormAuth(access_key, ALGORITHM)
