"""Bucket policy documents: parse, validate and compile (``parse_policy``).

Layer: policy (pure; no I/O). Rules, from AWS's "IAM JSON policy element reference" and
what S3's PutBucketPolicy accepts:

* A policy is at most ``MAX_POLICY_BYTES`` (S3's 20 KB limit on bucket policies) of
  UTF-8 JSON whose first non-blank byte is ``{``; duplicate object keys, ``NaN`` and
  unknown fields are refused (AWS keeps the last duplicate silently; kvbox says so
  instead, because two ``Effect`` keys are a policy nobody can read the same way twice).
* ``Version`` is ``2012-10-17`` or ``2008-10-17`` (missing: ``2008-10-17``, as on AWS);
  only ``2012-10-17`` has policy variables. ``Statement`` is one object or a non-empty
  list of them.
* Every statement needs ``Effect`` (``Allow`` | ``Deny``), exactly one of ``Principal``
  / ``NotPrincipal`` (a bucket policy always names who), of ``Action`` / ``NotAction``
  and of ``Resource`` / ``NotResource``; ``Sid`` and ``Condition`` are optional.
* Principals ("root" is the account, a user is its kvbox name, None is anonymous):
  ``"*"`` or ``{"AWS": "*"}`` is everyone, anonymous included; ``{"AWS": "alice"}``,
  ``{"AWS": "arn:aws:iam::123456789012:user/alice"}`` and ``{"CanonicalUser": "alice"}``
  name user alice (kvbox's canonical id is the user name); ``arn:aws:iam::<12 digits>:
  root``, a bare 12-digit account id and ``root`` name root. Service and Federated
  principals, roles and groups do not exist in kvbox and are refused.
* Actions are ``s3:<Name>`` (case-insensitive, wildcards allowed) and must name, or
  match, an action in ``S3_ACTIONS``; ``*`` is every action. Resources are ``*`` or
  ``arn:aws:s3:::<bucket>[/<key>]`` whose bucket part matches this bucket ("Policy has
  invalid resource" otherwise). As S3 does, a statement whose actions all apply to
  buckets while its resources are all objects (or the other way round) is refused
  ("Action does not apply to any resource(s) in statement"), the most common policy
  mistake (``s3:ListBucket`` on ``arn:aws:s3:::b/*``).
* Every action and resource pattern is compiled to a regex here, once, so evaluation
  never parses; the original text is kept (``Policy.text``) for GetBucketPolicy and the
  statement's JSON (``Statement.source``) for explanations.
"""

from __future__ import annotations

import difflib
import enum
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from kvbox.policy.conditions import (
    VERSION_2012,
    Condition,
    NormalContext,
    Pattern,
    PatternSet,
    PolicyError,
    compile_condition,
    compile_pattern,
    has_wildcard,
    wildcard_regex,
)

#: S3's limit on a bucket policy ("Bucket policies are limited to 20 KB in size").
MAX_POLICY_BYTES: Final = 20 * 1024
VERSIONS: Final = ("2012-10-17", "2008-10-17")
#: What a policy without ``Version`` is read as (no policy variables).
DEFAULT_VERSION: Final = "2008-10-17"
ROOT: Final = "root"
S3_ARN_PREFIX: Final = "arn:aws:s3:::"

_TOP_FIELDS: Final = ("Version", "Id", "Statement")
_STATEMENT_FIELDS: Final = (
    "Sid",
    "Effect",
    "Principal",
    "NotPrincipal",
    "Action",
    "NotAction",
    "Resource",
    "NotResource",
    "Condition",
)

# --- the S3 actions a bucket policy may name ------------------------------------------------
# From AWS's Service Authorization Reference, "Actions defined by Amazon S3": the resource
# type each applies to. "other" actions exist but apply to no bucket or object (account,
# jobs, access points, Storage Lens), so a bucket policy cannot use them.

_BUCKET_ACTIONS = """
CreateBucket DeleteBucket ListBucket ListBucketVersions ListBucketMultipartUploads
GetBucketLocation GetBucketVersioning PutBucketVersioning GetBucketPolicy PutBucketPolicy
DeleteBucketPolicy GetBucketPolicyStatus GetBucketPublicAccessBlock PutBucketPublicAccessBlock
GetBucketAcl PutBucketAcl GetBucketCORS PutBucketCORS GetBucketWebsite PutBucketWebsite
DeleteBucketWebsite GetBucketTagging PutBucketTagging GetBucketLogging PutBucketLogging
GetBucketNotification PutBucketNotification GetBucketObjectLockConfiguration
PutBucketObjectLockConfiguration GetBucketOwnershipControls PutBucketOwnershipControls
DeleteBucketOwnershipControls GetBucketRequestPayment PutBucketRequestPayment
GetAccelerateConfiguration PutAccelerateConfiguration GetAnalyticsConfiguration
PutAnalyticsConfiguration GetEncryptionConfiguration PutEncryptionConfiguration
GetIntelligentTieringConfiguration PutIntelligentTieringConfiguration
GetInventoryConfiguration PutInventoryConfiguration GetLifecycleConfiguration
PutLifecycleConfiguration GetMetricsConfiguration PutMetricsConfiguration
GetReplicationConfiguration PutReplicationConfiguration PauseReplication
GetBucketMetadataTableConfiguration CreateBucketMetadataTableConfiguration
DeleteBucketMetadataTableConfiguration
"""
_OBJECT_ACTIONS = """
AbortMultipartUpload BypassGovernanceRetention DeleteObject DeleteObjectTagging
DeleteObjectVersion DeleteObjectVersionTagging GetObject GetObjectAcl GetObjectAttributes
GetObjectLegalHold GetObjectRetention GetObjectTagging GetObjectTorrent GetObjectVersion
GetObjectVersionAcl GetObjectVersionAttributes GetObjectVersionForReplication
GetObjectVersionTagging GetObjectVersionTorrent InitiateReplication ListMultipartUploadParts
ObjectOwnerOverrideToBucketOwner PutObject PutObjectAcl PutObjectLegalHold PutObjectRetention
PutObjectTagging PutObjectVersionAcl PutObjectVersionTagging ReplicateDelete ReplicateObject
ReplicateTags RestoreObject
"""
_OTHER_ACTIONS = """
ListAllMyBuckets CreateJob DescribeJob ListJobs UpdateJobPriority UpdateJobStatus
GetJobTagging PutJobTagging DeleteJobTagging GetAccountPublicAccessBlock
PutAccountPublicAccessBlock ListAccessPoints CreateAccessPoint DeleteAccessPoint
GetAccessPoint GetAccessPointPolicy PutAccessPointPolicy DeleteAccessPointPolicy
GetAccessPointPolicyStatus PutAccessPointPublicAccessBlock ListStorageLensConfigurations
GetStorageLensConfiguration PutStorageLensConfiguration DeleteStorageLensConfiguration
GetStorageLensDashboard ListMultiRegionAccessPoints CreateMultiRegionAccessPoint
DeleteMultiRegionAccessPoint GetMultiRegionAccessPoint GetDataAccess ListAccessGrants
ListTagsForResource TagResource UntagResource
"""


def _actions(text: str, kind: str) -> dict[str, tuple[str, str]]:
    return {f"s3:{name}".lower(): (f"s3:{name}", kind) for name in text.split()}


#: lower-cased action -> (AWS spelling, "bucket" | "object" | "other").
S3_ACTIONS: Final[Mapping[str, tuple[str, str]]] = {
    **_actions(_BUCKET_ACTIONS, "bucket"),
    **_actions(_OBJECT_ACTIONS, "object"),
    **_actions(_OTHER_ACTIONS, "other"),
}

_ACCOUNT_ID = re.compile(r"\d{12}")
_IAM_ARN = re.compile(r"arn:aws:iam::(\d{12}):(.+)")
_USER_NAME = re.compile(r"[A-Za-z0-9_.@+=,-]{1,64}")


# --- the compiled document ----------------------------------------------------------------


class Effect(enum.StrEnum):
    ALLOW = "Allow"
    DENY = "Deny"


@dataclass(frozen=True, slots=True)
class Principals:
    """Who a Principal (or NotPrincipal) element names."""

    everyone: bool = False
    root: bool = False
    users: frozenset[str] = frozenset()

    def matches(self, principal: str | None) -> bool:
        """``principal``: "root", a user name, or None for an anonymous request."""
        if self.everyone:
            return True
        if principal is None:
            return False
        if principal == ROOT:
            return self.root
        return principal in self.users

    def describe(self) -> str:
        if self.everyone:
            return '"*" (everyone, anonymous included)'
        names = ([ROOT] if self.root else []) + sorted(self.users)
        return ", ".join(names)


@dataclass(frozen=True, slots=True)
class Statement:
    """One compiled statement. ``index`` is its position (0-based) in the policy."""

    index: int
    sid: str | None
    effect: Effect
    principals: Principals
    not_principal: bool
    actions: PatternSet
    not_action: bool
    resources: PatternSet
    not_resource: bool
    conditions: tuple[Condition, ...]
    #: The statement as JSON (compact, keys in the order written), for explanations.
    source: str

    @property
    def label(self) -> str:
        """``statement #1 (Sid "DenyHttp")``: how explanations name it."""
        return f"statement #{self.index}" + (f' (Sid "{self.sid}")' if self.sid else "")

    def principal_applies(self, principal: str | None) -> bool:
        return self.principals.matches(principal) != self.not_principal

    def action_applies(self, action: str) -> bool:
        return self.actions.matches(action, _NO_CONTEXT) != self.not_action

    def resource_applies(self, resource: str, ctx: NormalContext) -> bool:
        return self.resources.matches(resource, ctx) != self.not_resource


_NO_CONTEXT = NormalContext({})


@dataclass(frozen=True, slots=True)
class Policy:
    """A parsed bucket policy: compiled statements plus the text as it was PUT."""

    bucket: str
    version: str
    id: str | None
    statements: tuple[Statement, ...]
    text: str


# --- parsing ----------------------------------------------------------------------------------


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise PolicyError(f"Policies must be valid JSON: the key {k!r} appears twice")
        out[k] = v
    return out


def _no_constants(name: str) -> Any:
    raise PolicyError(f"Policies must be valid JSON: {name} is not a JSON value")


def _decode(text: str | bytes) -> str:
    raw = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    if len(raw) > MAX_POLICY_BYTES:
        raise PolicyError(
            f"Policy exceeds the maximum allowed document size: {len(raw)} bytes, "
            f"the limit is {MAX_POLICY_BYTES} (20 KB)"
        )
    if isinstance(text, str):
        return text
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyError(f"Policies must be UTF-8: invalid byte at offset {exc.start}") from None


def _unknown(name: str, allowed: tuple[str, ...], where: str) -> PolicyError:
    near = {a.lower(): a for a in allowed}.get(name.lower()) or next(
        iter(difflib.get_close_matches(name, allowed, n=1)), None
    )
    hint = f" (did you mean {near}?)" if near else ""
    return PolicyError(f"{where}: unknown field {name!r}{hint}")


def _strings(value: Any, what: str, where: str) -> list[str]:
    """A string or a non-empty list of non-empty strings."""
    items = value if isinstance(value, list) else [value]
    if not items:
        raise PolicyError(f"{where}: {what} is an empty list")
    for item in items:
        if not isinstance(item, str):
            raise PolicyError(f"{where}: {what} must be a string or a list of strings")
        if not item:
            raise PolicyError(f"{where}: {what} contains an empty string")
    return list(items)


def parse_policy(text: str | bytes, bucket: str) -> Policy:
    """Parse, validate and compile a bucket policy for ``bucket``.

    Raises ``PolicyError`` with a message that names the statement and the field.

    >>> p = parse_policy('{"Statement": {"Effect": "Allow", "Principal": "*",'
    ...     ' "Action": "s3:GetObject", "Resource": "arn:aws:s3:::photos/*"}}', "photos")
    >>> (len(p.statements), str(p.statements[0].effect), p.version)
    (1, 'Allow', '2008-10-17')
    """
    body = _decode(text)
    if not body.lstrip().startswith("{"):
        raise PolicyError("Policies must be valid JSON and the first byte must be '{'")
    try:
        doc = json.loads(body, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except json.JSONDecodeError as exc:
        raise PolicyError(
            f"Policies must be valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise PolicyError("Policies must be valid JSON: nested too deeply") from None
    if not isinstance(doc, dict):  # pragma: no cover - the first byte is '{'
        raise PolicyError("Policies must be a JSON object")
    for name in doc:
        if name not in _TOP_FIELDS:
            raise _unknown(name, _TOP_FIELDS, "policy")
    version = doc.get("Version", DEFAULT_VERSION)
    if version not in VERSIONS:
        raise PolicyError(
            f'Policy has invalid Version {version!r}: use "2012-10-17" (or "2008-10-17")'
        )
    policy_id = doc.get("Id")
    if policy_id is not None and not isinstance(policy_id, str):
        raise PolicyError("policy: Id must be a string")
    raw_statements = doc.get("Statement")
    if raw_statements is None:
        raise PolicyError("Missing required field Statement")
    if isinstance(raw_statements, dict):
        raw_statements = [raw_statements]
    if not isinstance(raw_statements, list) or not raw_statements:
        raise PolicyError("policy: Statement must be an object or a non-empty list of objects")
    statements = tuple(
        _statement(i, raw, bucket, version == VERSION_2012) for i, raw in enumerate(raw_statements)
    )
    return Policy(bucket, version, policy_id, statements, body)


def _statement(index: int, raw: Any, bucket: str, variables: bool) -> Statement:
    where = f"statement #{index}"
    if not isinstance(raw, dict):
        raise PolicyError(f"{where}: a statement must be a JSON object")
    sid = raw.get("Sid")
    if sid is not None:
        if not isinstance(sid, str):
            raise PolicyError(f"{where}: Sid must be a string")
        where += f' (Sid "{sid}")'
    for name in raw:
        if name not in _STATEMENT_FIELDS:
            raise _unknown(name, _STATEMENT_FIELDS, where)

    effect = raw.get("Effect")
    if effect is None:
        raise PolicyError(f"{where}: Missing required field Effect")
    if effect not in (Effect.ALLOW, Effect.DENY):
        raise PolicyError(f'{where}: Effect must be "Allow" or "Deny", not {effect!r}')
    effect = Effect(effect)

    principals, not_principal = _one_of(raw, "Principal", "NotPrincipal", where)
    who = _principals(principals, where)
    if not_principal and who.everyone:
        raise PolicyError(f'{where}: NotPrincipal "*" excludes everyone; use a Deny instead')

    actions_raw, not_action = _one_of(raw, "Action", "NotAction", where)
    actions = _strings(actions_raw, "NotAction" if not_action else "Action", where)
    kinds: set[str] = set()
    action_patterns = []
    for a in actions:
        kinds |= _check_action(a, where)
        action_patterns.append(compile_pattern(a, wildcard=True, ignore_case=True))

    resources_raw, not_resource = _one_of(raw, "Resource", "NotResource", where)
    resources = _strings(resources_raw, "NotResource" if not_resource else "Resource", where)
    resource_patterns = [_resource(r, bucket, where, variables) for r in resources]
    if not not_action and not not_resource:
        _check_applies(actions, kinds, resource_patterns, bucket, where)

    conditions = _conditions(raw.get("Condition"), where, variables)
    return Statement(
        index=index,
        sid=sid,
        effect=effect,
        principals=who,
        not_principal=not_principal,
        actions=PatternSet.of(action_patterns),
        not_action=not_action,
        resources=PatternSet.of(resource_patterns),
        not_resource=not_resource,
        conditions=conditions,
        source=json.dumps(raw, ensure_ascii=False),
    )


def _one_of(raw: Mapping[str, Any], name: str, negated: str, where: str) -> tuple[Any, bool]:
    if name in raw and negated in raw:
        raise PolicyError(f"{where}: use either {name} or {negated}, not both")
    if name in raw:
        return raw[name], False
    if negated in raw:
        return raw[negated], True
    raise PolicyError(f"{where}: Missing required field {name}")


# --- principals ---------------------------------------------------------------------------


def _principals(value: Any, where: str) -> Principals:
    if value == "*":
        return Principals(everyone=True)
    if isinstance(value, str):
        raise PolicyError(
            f'{where}: Invalid principal in policy: {value!r}; write "*" or {{"AWS": ...}}'
        )
    if not isinstance(value, dict) or not value:
        raise PolicyError(f'{where}: Principal must be "*" or an object such as {{"AWS": "alice"}}')
    everyone = root = False
    users: set[str] = set()
    for kind, names in value.items():
        if kind in ("Service", "Federated"):
            raise PolicyError(
                f"{where}: Invalid principal in policy: kvbox has no {kind} principals; "
                'name users as {"AWS": "alice"}'
            )
        if kind not in ("AWS", "CanonicalUser"):
            raise PolicyError(
                f"{where}: Invalid principal in policy: unknown principal type {kind!r} "
                "(use AWS or CanonicalUser)"
            )
        for name in _strings(names, f"Principal {kind}", where):
            if name == "*":
                everyone = True
                continue
            user = _principal_name(name, where)
            if user == ROOT:
                root = True
            else:
                users.add(user)
    return Principals(everyone, root, frozenset(users))


def _principal_name(name: str, where: str) -> str:
    """Map one principal string to "root" or a user name."""
    if name.lower() == ROOT or _ACCOUNT_ID.fullmatch(name):
        return ROOT
    m = _IAM_ARN.fullmatch(name)
    if m is not None:
        rest = m.group(2)
        if rest == "root":
            return ROOT
        if rest.startswith("user/"):
            user = rest.rsplit("/", 1)[1]
            if _USER_NAME.fullmatch(user):
                return user
        raise PolicyError(
            f"{where}: Invalid principal in policy: {name!r}; kvbox has users and root "
            "only (arn:aws:iam::<account>:user/<name> or arn:aws:iam::<account>:root)"
        )
    if has_wildcard(name) or not _USER_NAME.fullmatch(name):
        raise PolicyError(
            f"{where}: Invalid principal in policy: {name!r} is not a user name, "
            'a 12-digit account id, an IAM user/root ARN, or "*"'
        )
    return name


# --- actions and resources ------------------------------------------------------------------


def _check_action(action: str, where: str) -> set[str]:
    """Validate one action pattern; returns the resource kinds of the actions it covers."""
    if action == "*":
        return {"bucket", "object"}
    service, sep, name = action.partition(":")
    if not sep or service.lower() != "s3" or not name:
        raise PolicyError(
            f"{where}: Policy has invalid action: {action!r}; bucket policies take "
            's3:<Action> (for example "s3:GetObject") or "*"'
        )
    low = action.lower()
    if has_wildcard(name):
        regex = re.compile(wildcard_regex(low), re.DOTALL)
        kinds = {kind for a, (_, kind) in S3_ACTIONS.items() if regex.fullmatch(a)}
        if not kinds:
            raise PolicyError(
                f"{where}: Policy has invalid action: {action!r} matches no S3 action"
            )
        return kinds
    known = S3_ACTIONS.get(low)
    if known is None:
        near = difflib.get_close_matches(low, list(S3_ACTIONS), n=1)
        hint = f" (did you mean {S3_ACTIONS[near[0]][0]}?)" if near else ""
        raise PolicyError(f"{where}: Policy has invalid action: {action!r}{hint}")
    return {known[1]}


def _resource(text: str, bucket: str, where: str, variables: bool) -> Pattern:
    if text == "*":
        return compile_pattern(text, wildcard=True)
    if not text.startswith(S3_ARN_PREFIX):
        raise PolicyError(
            f"{where}: Policy has invalid resource: {text!r}; resources are "
            f'"arn:aws:s3:::{bucket}" (the bucket) or "arn:aws:s3:::{bucket}/<key>" (objects)'
        )
    bucket_part = text[len(S3_ARN_PREFIX) :].split("/", 1)[0]
    if "${" in bucket_part and variables:
        raise PolicyError(
            f"{where}: Policy has invalid resource: {text!r}; a policy variable cannot "
            "stand in the bucket name"
        )
    if re.fullmatch(wildcard_regex(bucket_part), bucket, re.DOTALL) is None:
        raise PolicyError(
            f"{where}: Policy has invalid resource: {text!r} is not in bucket {bucket!r}"
        )
    return compile_pattern(text, wildcard=True, variables=variables)


def _check_applies(
    actions: list[str], kinds: set[str], resources: list[Pattern], bucket: str, where: str
) -> None:
    """S3's check that some action applies to some resource of the statement."""
    bucket_arn = S3_ARN_PREFIX + bucket
    ctx = _NO_CONTEXT
    names_bucket = any(
        r.text == "*" or (not r.has_variables and r.matches(bucket_arn, ctx)) for r in resources
    )
    # a "*" anywhere may stand for "/<key>", so such a pattern may name objects
    names_objects = any("/" in r.text or "*" in r.text for r in resources)
    if ("bucket" in kinds and names_bucket) or ("object" in kinds and names_objects):
        return
    shown = ", ".join(actions)
    if kinds == {"other"}:
        detail = f"{shown} applies to no bucket or object, so a bucket policy cannot grant it"
    elif "bucket" in kinds and "object" not in kinds:
        detail = (
            f"{shown} applies to the bucket ({bucket_arn!r}), but the statement names only objects"
        )
    else:
        detail = (
            f"{shown} applies to objects ({bucket_arn + '/*'!r}), but the statement "
            "names only the bucket"
        )
    raise PolicyError(f"{where}: Action does not apply to any resource(s) in statement: {detail}")


# --- conditions ----------------------------------------------------------------------------


def _conditions(raw: Any, where: str, variables: bool) -> tuple[Condition, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise PolicyError(f"{where}: Condition must be an object of {{operator: {{key: value}}}}")
    out: list[Condition] = []
    for operator, block in raw.items():
        if not isinstance(block, dict) or not block:
            raise PolicyError(
                f"{where}: Condition {operator!r} must be a non-empty object of {{key: value}}"
            )
        for key, values in block.items():
            out.append(compile_condition(operator, key, values, variables=variables, where=where))
    return tuple(out)
