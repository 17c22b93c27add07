"""``kvbox policy``: check a bucket policy, and explain an access decision.

Layer: cli. Rules: ``validate`` parses a policy file exactly as PutBucketPolicy would
(``kvbox.policy.parse_policy``). ``explain`` runs the one decision function
(``kvbox.policy.access.decide``) either offline, on a policy file and the bucket
settings given as options, or against a running server (``--server URL``), which
explains with the bucket's stored settings: a JSON POST to ``/_kvbox/policy/explain``
signed with SigV4 by the root credentials from ``KVBOX_ROOT_ACCESS_KEY`` and
``KVBOX_ROOT_SECRET_KEY``. Both print the same report. Exit status: ``explain`` 0
allowed, 1 denied; ``validate`` 0 valid, 1 invalid; 2 when it could not run.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kvbox.cli._remote import RemoteError, post_json
from kvbox.policy.access import AccessQuery, PublicAccessFlags, explain_query, request_context
from kvbox.policy.conditions import ContextValue, PolicyError
from kvbox.policy.context import check_supported
from kvbox.policy.evaluate import is_public
from kvbox.policy.language import S3_ARN_PREFIX, Policy, parse_policy
from kvbox.s3door.explain import EXPLAIN_PATH

_PROG = "kvbox policy"
_PAB_FLAGS = {
    "blockpublicacls": "block_public_acls",
    "ignorepublicacls": "ignore_public_acls",
    "blockpublicpolicy": "block_public_policy",
    "restrictpublicbuckets": "restrict_public_buckets",
}


class _Usage(Exception):
    """A problem with the command line or its files: exit status 2."""


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "policy",
        help="validate bucket policies and explain access decisions",
        description="Validate a bucket policy file, or explain why a request would be "
        "allowed or denied (offline from a policy file, or on a running server).",
    )
    verbs = p.add_subparsers(dest="policy_command", metavar="COMMAND", required=True)

    v = verbs.add_parser("validate", help="check a policy file as PutBucketPolicy would")
    v.add_argument("--policy", required=True, metavar="FILE", help="policy JSON ('-': stdin)")
    v.add_argument("--bucket", required=True, help="the bucket the policy is for")
    v.set_defaults(func=run)

    e = verbs.add_parser(
        "explain",
        help="explain the access decision for one request",
        description="Offline: --policy FILE plus the bucket settings as options. "
        "Server: --server URL, which uses the bucket's stored policy, ACLs and public "
        "access block (root credentials from KVBOX_ROOT_ACCESS_KEY/KVBOX_ROOT_SECRET_KEY).",
    )
    e.add_argument(
        "--principal",
        required=True,
        help="a user name, root, or anonymous (an unsigned request)",
    )
    e.add_argument("--action", required=True, help="IAM action, e.g. s3:GetObject")
    e.add_argument("--resource", required=True, help="ARN, e.g. arn:aws:s3:::bucket/key")
    e.add_argument(
        "--context",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a condition key of the request, e.g. aws:SourceIp=203.0.113.7 "
        "(repeat a key for several values)",
    )
    e.add_argument("--json", action="store_true", help="print the report as JSON")
    offline = e.add_argument_group("offline")
    offline.add_argument("--policy", metavar="FILE", help="policy JSON ('-': stdin)")
    offline.add_argument("--bucket", help="bucket name (default: from --resource)")
    offline.add_argument("--owner", default="root", help="bucket owner (default: root)")
    offline.add_argument("--bucket-acl", default="private", help="bucket canned ACL")
    offline.add_argument("--object-acl", default=None, help="object canned ACL (object exists)")
    offline.add_argument(
        "--public-access-block",
        default="",
        metavar="FLAGS",
        help="comma-separated: BlockPublicAcls,IgnorePublicAcls,BlockPublicPolicy,"
        "RestrictPublicBuckets",
    )
    server = e.add_argument_group("server")
    server.add_argument(
        "--server", metavar="URL", help="a running server, e.g. http://127.0.0.1:9000"
    )
    server.add_argument("--region", default="us-east-1", help="SigV4 region (default: us-east-1)")
    server.add_argument("--version-id", default=None, help="object version to read the ACL of")
    e.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        if args.policy_command == "validate":
            return _validate(args)
        return _explain(args)
    except _Usage as exc:
        print(f"{_PROG}: {exc}", file=sys.stderr)
        return 2


# --- validate ---------------------------------------------------------------------------


def _read(path: str) -> bytes:
    try:
        return sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as exc:
        raise _Usage(f"cannot read {path}: {exc.strerror or exc}") from None


def _validate(args: argparse.Namespace) -> int:
    text = _read(args.policy)
    try:
        policy = parse_policy(text, args.bucket)
        check_supported(policy)  # what PutBucketPolicy refuses, this refuses
    except PolicyError as exc:
        print(f"invalid policy: {exc}", file=sys.stderr)
        return 1
    n = len(policy.statements)
    public = "public" if is_public(policy) else "not public"
    print(f"valid policy for bucket {args.bucket}: {n} statement{'s' * (n != 1)}, {public}")
    return 0


# --- explain ----------------------------------------------------------------------------


def _context(pairs: Sequence[str]) -> dict[str, ContextValue]:
    out: dict[str, list[str]] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise _Usage(f"--context wants KEY=VALUE, not {pair!r}")
        out.setdefault(key, []).append(value)
    return {k: v[0] if len(v) == 1 else v for k, v in out.items()}


def _principal(raw: str) -> str | None:
    return None if raw == "anonymous" else raw


def _flags(raw: str) -> PublicAccessFlags:
    chosen: dict[str, bool] = {}
    for name in filter(None, (n.strip() for n in raw.split(","))):
        field = _PAB_FLAGS.get(name.replace("-", "").replace("_", "").lower())
        if field is None:
            raise _Usage(f"unknown public access block flag {name!r}")
        chosen[field] = True
    return PublicAccessFlags(**chosen)


def _explain(args: argparse.Namespace) -> int:
    context = _context(args.context)
    principal = _principal(args.principal)
    if args.server:
        if args.policy:
            raise _Usage("--policy is for offline use; --server uses the bucket's stored policy")
        result = _remote(args, principal, context)
    else:
        result = _offline(args, principal, context)
    if "error" in result:
        print(f"{_PROG}: {result['error']}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print("\n".join(render(result)))
    return 0 if result.get("allowed") else 1


def _offline(
    args: argparse.Namespace, principal: str | None, given: Mapping[str, ContextValue]
) -> dict[str, Any]:
    resource: str = args.resource
    bucket = args.bucket
    if bucket is None:
        if not resource.startswith(S3_ARN_PREFIX):
            raise _Usage("--resource must be arn:aws:s3:::<bucket>[/<key>] (or give --bucket)")
        bucket = resource[len(S3_ARN_PREFIX) :].split("/", 1)[0]
    policy: Policy | None = None
    if args.policy:
        try:
            policy = parse_policy(_read(args.policy), bucket)
        except PolicyError as exc:
            return {"error": f"invalid policy: {exc}"}
    query = AccessQuery(
        principal=principal,
        action=args.action,
        resource=resource,
        bucket=bucket,
        bucket_owner=args.owner,
        policy=policy,
        bucket_acl=args.bucket_acl,
        object_acl=args.object_acl,
        public_access_block=_flags(args.public_access_block),
        context=request_context(principal, now=datetime.now(UTC), extra=given),
    )
    return explain_query(query)


def _remote(
    args: argparse.Namespace, principal: str | None, context: Mapping[str, ContextValue]
) -> dict[str, Any]:
    query = {
        "principal": principal,
        "action": args.action,
        "resource": args.resource,
        "context": context,
        "version_id": args.version_id,
    }
    try:
        answer = post_json(args.server, EXPLAIN_PATH, query, region=args.region)
    except RemoteError as exc:
        return {"error": str(exc)}
    if not isinstance(answer, dict):
        return {"error": "the server's answer is not a JSON object"}
    return answer


# --- the report -------------------------------------------------------------------------


def render(result: Mapping[str, Any]) -> list[str]:
    """The human report of an explanation (``explain_query``'s data)."""
    verdict = "ALLOWED" if result["allowed"] else "DENIED"
    lines = [
        f"{verdict} ({result['decided_by']})",
        f"  principal: {result['principal']}",
        f"  action:    {result['action']}",
        f"  resource:  {result['resource']}",
        f"  reason:    {result['reason']}",
    ]
    st = result.get("statement")
    if st:
        sid = f' (Sid "{st["sid"]}")' if st.get("sid") else ""
        lines.append(f"  deciding statement: #{st['index']}{sid}")
        lines += ["    " + line for line in json.dumps(st["json"], indent=2).splitlines()]
    bucket = result.get("bucket") or {}
    if bucket:
        pab = [k for k, v in (bucket.get("public_access_block") or {}).items() if v]
        lines.append(
            f"  bucket {bucket.get('name')}: owner {bucket.get('owner')}, "
            f"ACL {bucket.get('acl')}"
            + (f", object ACL {bucket['object_acl']}" if bucket.get("object_acl") else "")
            + (", public policy" if bucket.get("policy_public") else "")
            + (f", public access block {'+'.join(pab)}" if pab else "")
            + ("" if bucket.get("policy") else ", no bucket policy")
        )
    trace = result.get("trace") or []
    if trace:
        lines.append("  statements:")
        lines += [f"    {line}" for line in trace]
    return lines
