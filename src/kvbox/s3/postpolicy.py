"""Browser-based uploads (S3 POST Object): the policy document and the form's rules.

Layer: s3 protocol (pure; no I/O; ``now`` is an argument). Rules, from AWS's "POST
Policy" (Signature Version 4) and "HTML forms" (Version 2) pages:

* The policy is base64 of a UTF-8 JSON object with exactly ``expiration`` (an ISO 8601
  UTC instant) and ``conditions`` (a list); both names are case-sensitive and both are
  required. A condition is ``{"field": "value"}`` (exact match), ``["eq", "$field",
  "value"]``, ``["starts-with", "$field", "prefix"]`` (an empty prefix matches anything)
  or ``["content-length-range", min, max]``. Operators and field names are
  case-insensitive; values are compared exactly, as sent (no escape processing beyond
  JSON's). A document that breaks any of this is InvalidPolicyDocument (400).
* Every condition is enforced: a field it names that the form lacks, or a value that
  does not match, is AccessDenied "Invalid according to Policy: Policy Condition
  failed"; an expired policy is AccessDenied "Policy expired"; the file's size outside
  ``content-length-range`` is EntityTooLarge / EntityTooSmall.
* Every form field must be covered by some condition, except the file, the policy, the
  signature fields (``x-amz-signature``, V2's ``signature`` and ``AWSAccessKeyId``) and
  fields whose names start with ``x-ignore-``; otherwise AccessDenied "Extra input
  fields". The bucket counts as a field (it comes from the URL), so a policy must pin
  it, as AWS requires.
* ``${filename}`` in the key is the file's name as the browser sent it, replaced before
  the conditions are checked.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from kvbox.s3.errors import S3Error

#: Fields no condition has to cover (lower-case).
EXEMPT_FIELDS: Final = frozenset(
    {"file", "policy", "x-amz-signature", "signature", "awsaccesskeyid"}
)
IGNORED_PREFIX: Final = "x-ignore-"
#: The largest object a POST may upload (AWS's limit, as for a single PUT).
MAX_POST_OBJECT: Final = 5 * 1024**3
#: The key variable a form may use.
FILENAME_VARIABLE: Final = "${filename}"


@dataclass(frozen=True, slots=True)
class Condition:
    """An ``eq`` or ``starts-with`` test on one field (lower-case, no ``$``)."""

    op: str
    field: str
    value: str
    #: The condition as the policy wrote it, for error messages.
    source: str

    def holds(self, value: str) -> bool:
        if self.op == "eq":
            return value == self.value
        return value.startswith(self.value)


@dataclass(frozen=True, slots=True)
class PostPolicy:
    expiration: datetime
    conditions: tuple[Condition, ...]
    #: ``content-length-range`` (min, max), if the policy has one.
    length_range: tuple[int, int] | None = None

    @property
    def covered(self) -> frozenset[str]:
        return frozenset(c.field for c in self.conditions)


def _invalid(message: str) -> S3Error:
    return S3Error("InvalidPolicyDocument", f"Invalid Policy: {message}")


def _denied(message: str) -> S3Error:
    return S3Error("AccessDenied", f"Invalid according to Policy: {message}")


def parse_expiration(value: Any) -> datetime:
    """``2007-12-01T12:00:00.000Z`` (milliseconds optional), always UTC.

    >>> parse_expiration("2015-12-30T12:00:00Z").isoformat()
    '2015-12-30T12:00:00+00:00'
    """
    if not isinstance(value, str) or not value.endswith("Z") or "T" not in value:
        raise _invalid(f"Invalid 'expiration' value: {value!r}")
    try:
        when = datetime.fromisoformat(value[:-1])
    except ValueError:
        raise _invalid(f"Invalid 'expiration' value: {value!r}") from None
    if when.tzinfo is not None:
        raise _invalid(f"Invalid 'expiration' value: {value!r}")
    return when.replace(tzinfo=UTC)


def _field_name(raw: Any, source: str) -> str:
    if not isinstance(raw, str) or not raw.startswith("$") or len(raw) < 2:
        raise _invalid(f"Invalid condition field name in {source}")
    return raw[1:].lower()


def _text(raw: Any, source: str) -> str:
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        raise _invalid(f"Invalid condition value in {source}")
    return raw if isinstance(raw, str) else str(raw)


def _length(raw: Any, source: str) -> int:
    if isinstance(raw, bool):
        raise _invalid(f"Invalid content-length-range in {source}")
    if isinstance(raw, str) and raw.isascii() and raw.isdigit():
        raw = int(raw)
    if not isinstance(raw, int) or raw < 0:
        raise _invalid(f"Invalid content-length-range in {source}")
    return raw


def parse_post_policy(encoded: str) -> PostPolicy:
    """Decode and validate a POST form's ``policy`` field."""
    try:
        raw = base64.b64decode(encoded.strip(), validate=True)
        doc = json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError):
        raise _invalid("Invalid 'policy' value: not base64-encoded UTF-8 JSON") from None
    if not isinstance(doc, dict):
        raise _invalid("the policy must be a JSON object")
    unknown = sorted(k for k in doc if k not in ("expiration", "conditions"))
    if unknown:
        raise _invalid(f"Unexpected field {unknown[0]!r}")
    if "expiration" not in doc:
        raise _invalid("Policy missing expiration.")
    if "conditions" not in doc:
        raise _invalid("Policy missing conditions.")
    expiration = parse_expiration(doc["expiration"])
    raw_conditions = doc["conditions"]
    if not isinstance(raw_conditions, list):
        raise _invalid("Invalid 'conditions' value: must be a List.")
    conditions: list[Condition] = []
    length: tuple[int, int] | None = None
    for item in raw_conditions:
        source = json.dumps(item)
        if isinstance(item, dict):
            if len(item) != 1:
                raise _invalid(f"Invalid Simple-Condition: one key/value pair expected: {source}")
            ((name, value),) = item.items()
            conditions.append(Condition("eq", str(name).lower(), _text(value, source), source))
            continue
        if not isinstance(item, list) or not item or not isinstance(item[0], str):
            raise _invalid(f"Invalid Condition: {source}")
        op = item[0].lower()
        if op == "content-length-range":
            if len(item) != 3:
                raise _invalid(f"Invalid content-length-range: two bounds expected: {source}")
            low, high = _length(item[1], source), _length(item[2], source)
            if low > high:
                raise _invalid(f"Invalid content-length-range: min above max: {source}")
            length = (low, high)
        elif op in ("eq", "starts-with"):
            if len(item) != 3:
                raise _invalid(f"Invalid Condition: three elements expected: {source}")
            conditions.append(
                Condition(op, _field_name(item[1], source), _text(item[2], source), source)
            )
        else:
            raise _invalid(f"Invalid Condition: unknown operator {item[0]!r}")
    return PostPolicy(expiration, tuple(conditions), length)


def check_form(policy: PostPolicy, fields: Mapping[str, str], bucket: str, now: datetime) -> None:
    """The policy's verdict on a form: ``fields`` by lower-case name (key already
    expanded), ``bucket`` the one the URL names. Raises AccessDenied unless it holds."""
    if now >= policy.expiration:
        raise _denied("Policy expired.")
    values = {**fields, "bucket": bucket}
    for c in policy.conditions:
        value = values.get(c.field)
        if value is None or not c.holds(value):
            raise _denied(f"Policy Condition failed: {c.source}")
    covered = policy.covered
    extra = sorted(
        name
        for name in values
        if name not in covered and name not in EXEMPT_FIELDS and not name.startswith(IGNORED_PREFIX)
    )
    if extra:
        raise _denied(f"Extra input fields: {', '.join(extra)}")


def check_size(policy: PostPolicy | None, size: int, *, final: bool) -> None:
    """The file's size (so far, or ``final``) against ``content-length-range`` and the
    5 GB limit: EntityTooLarge as soon as it is passed, EntityTooSmall at the end."""
    high = MAX_POST_OBJECT
    low = 0
    if policy is not None and policy.length_range is not None:
        low, high = policy.length_range[0], min(high, policy.length_range[1])
    if size > high:
        raise S3Error(
            "EntityTooLarge",
            "Your proposed upload exceeds the maximum allowed size",
            extra={"ProposedSize": str(size), "MaxSizeAllowed": str(high)},
        )
    if final and size < low:
        raise S3Error(
            "EntityTooSmall",
            "Your proposed upload is smaller than the minimum allowed size",
            extra={"ProposedSize": str(size), "MinSizeAllowed": str(low)},
        )


def expand_key(key: str, filename: str | None) -> str:
    """The key with ``${filename}`` replaced by the uploaded file's name (its last path
    component: some browsers send a full path).

    >>> expand_key("uploads/${filename}", "C:\\\\photos\\\\cat.png")
    'uploads/cat.png'
    """
    if FILENAME_VARIABLE not in key:
        return key
    name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    return key.replace(FILENAME_VARIABLE, name)


def success_status(value: str | None) -> int:
    """``success_action_status``: 200, 201 or 204; anything else is 204, as on AWS."""
    if value is not None and value.strip() in ("200", "201"):
        return int(value.strip())
    return 204
