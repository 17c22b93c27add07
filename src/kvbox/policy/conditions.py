"""Policy values and condition operators: wildcards, policy variables, ``Condition``.

Layer: policy (pure; no I/O, no clock, no global state). Rules, from AWS's "IAM JSON
policy elements: Condition operators" and "Creating a condition with multiple context
keys or values":

* Every value is compiled once, when the policy is parsed: a wildcard value (``*`` any
  run of characters, ``/`` included; ``?`` exactly one) becomes one anchored regex, so
  evaluating a request never re-parses the policy. Only values holding a policy variable
  (``${aws:username}``) are resolved per request, because their text depends on it.
* Policy variables exist only in Version ``2012-10-17`` policies, as on AWS; in a
  ``2008-10-17`` policy ``${...}`` is plain text. ``${*}``, ``${?}`` and ``${$}`` are the
  literal characters. A variable whose key is absent (and that has no ``, 'default'``)
  makes that one value match nothing. A substituted value is literal text: a ``*`` in a
  user name is not a wildcard.
* Inside one operator, several keys are ANDed and several values for one key are ORed.
  A key missing from the request makes a positive operator false and a negated one
  (``StringNotEquals``, ``NotIpAddress``, ``ArnNotLike``...) true; ``...IfExists`` makes
  any operator true on a missing key; ``Null`` tests presence itself.
* Set qualifiers: ``ForAnyValue:`` holds when at least one request value passes (false
  on a missing key), ``ForAllValues:`` when every request value passes (true on a
  missing key). Without a qualifier a multi-valued key passes a positive operator if any
  value matches and a negated one if none does.
* ``ArnLike``/``ArnEquals`` (the same test on AWS) match each of an ARN's six
  colon-separated parts on its own, so ``*`` never crosses a colon before the resource
  part; a policy value without six parts is matched as one wildcard string.
* Condition key names are case-insensitive (the whole key, tag suffix included: a
  kvbox simplification); values are case-sensitive except in ``...IgnoreCase``.
* A request value a typed operator cannot read (``NumericLessThan`` against ``"abc"``,
  a date that is not ISO 8601 or epoch seconds, an address that is not an IP) makes the
  test false, for negated operators too.
* Unknown operators and unknown condition keys are refused at parse time with the
  nearest known name, because a misspelt key in a Deny would otherwise never match.
"""

from __future__ import annotations

import difflib
import enum
import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from kvbox.errors import PolicyError as PolicyError  # defined in the one tree

#: What a caller may put in a request context: one value or several (multi-valued keys
#: such as ``s3:RequestObjectTagKeys``).
ContextValue = str | Sequence[str]
RequestContext = Mapping[str, ContextValue]

#: The policy version that has policy variables; the other one treats ``${`` as text.
VERSION_2012: Final = "2012-10-17"


# --- request context ---------------------------------------------------------------------


class NormalContext:
    """A request context looked up by lower-cased key, built lazily.

    The lower-cased copy is made on the first lookup only, so requests whose matching
    statements have no conditions and no variables never pay for it.
    """

    __slots__ = ("_low", "_raw")

    def __init__(self, raw: RequestContext) -> None:
        self._raw = raw
        self._low: dict[str, tuple[str, ...]] | None = None

    def values(self, key_lower: str) -> tuple[str, ...] | None:
        """The key's values, or None when it is absent (an empty list counts as absent)."""
        low = self._low
        if low is None:
            low = self._low = {}
            for k, v in self._raw.items():
                low[k.lower()] = (v,) if isinstance(v, str) else tuple(v)
        found = low.get(key_lower)
        return found if found else None

    def single(self, key_lower: str) -> str | None:
        """The key's value when it has exactly one (what a policy variable needs)."""
        found = self.values(key_lower)
        return found[0] if found is not None and len(found) == 1 else None


# --- wildcards and policy variables ----------------------------------------------------


class _Wild(enum.Enum):
    STAR = "*"
    ONE = "?"


#: A wildcard value as tokens: literal text, or ``*`` / ``?``.
GlobToken = str | _Wild


def glob_tokens(text: str) -> list[GlobToken]:
    """``*`` and ``?`` as wildcards, everything else literal."""
    out: list[GlobToken] = []
    for ch in text:
        out.append(_Wild.STAR if ch == "*" else _Wild.ONE if ch == "?" else ch)
    return out


def glob_regex(tokens: Sequence[GlobToken]) -> str:
    """The regex source (for ``fullmatch``, with DOTALL) of a wildcard value, built so
    that matching takes linear time whatever the value.

    A plain translation (``*`` to ``.*``) backtracks exponentially on values like
    ``*a*a*a*a*b`` against a long string, and any bucket owner can write one: every
    request would then freeze the event loop. Here each segment between two stars sits
    in an atomic group that takes its *earliest* occurrence, ``(?>.*?seg)``, and never
    gives it back. For segments of fixed length (``?`` is one character) the earliest
    placement is always right, since it leaves the longest rest for the segments after
    it; only the last segment is anchored at the end by a single greedy ``.*``.

    >>> glob_regex(glob_tokens("a*b?.c"))
    'a.*b.\\.c'
    >>> glob_regex(glob_tokens("*x*y*"))
    '(?>.*?x)(?>.*?y).*'
    """
    segments: list[list[str]] = [[]]
    for t in tokens:
        if t is _Wild.STAR:
            segments.append([])
        elif t is _Wild.ONE:
            segments[-1].append(".")
        else:
            assert isinstance(t, str)
            segments[-1].append(re.escape(t))
    joined = ["".join(seg) for seg in segments]
    if len(joined) == 1:
        return joined[0]
    first, middle, last = joined[0], joined[1:-1], joined[-1]
    return first + "".join(f"(?>.*?{m})" for m in middle if m) + ".*" + last


def wildcard_regex(text: str) -> str:
    """The regex source for a wildcard value: ``*`` any run, ``?`` one character
    (linear-time, see ``glob_regex``).

    >>> wildcard_regex("a*b?.c")
    'a.*b.\\.c'
    """
    return glob_regex(glob_tokens(text))


def has_wildcard(text: str) -> bool:
    return "*" in text or "?" in text


@dataclass(frozen=True, slots=True)
class Variable:
    """``${key}`` or ``${key, 'default'}``; ``key`` None means ``literal`` (``${*}``)."""

    key: str | None
    default: str | None = None
    literal: str = ""

    def resolve(self, ctx: NormalContext) -> str | None:
        if self.key is None:
            return self.literal
        value = ctx.single(self.key)
        return self.default if value is None else value


_VAR_BODY = re.compile(r"\s*([A-Za-z0-9:/_.\-]+)\s*(?:,\s*'([^']*)'\s*)?")
_SPECIAL = {"*": "*", "?": "?", "$": "$"}


def _split_variables(text: str) -> tuple[str | Variable, ...]:
    parts: list[str | Variable] = []
    pos = 0
    while True:
        start = text.find("${", pos)
        if start < 0:
            break
        end = text.find("}", start)
        if end < 0:
            raise PolicyError(f"unterminated policy variable in {text!r}")
        if start > pos:
            parts.append(text[pos:start])
        body = text[start + 2 : end]
        if body in _SPECIAL:
            parts.append(Variable(None, literal=_SPECIAL[body]))
        else:
            m = _VAR_BODY.fullmatch(body)
            if m is None:
                raise PolicyError(f"invalid policy variable ${{{body}}} in {text!r}")
            parts.append(Variable(m.group(1).lower(), m.group(2)))
        pos = end + 1
    if pos < len(text):
        parts.append(text[pos:])
    return tuple(parts)


@dataclass(frozen=True, slots=True)
class Pattern:
    """One policy value as a matcher: exact or wildcard, maybe case-insensitive, maybe
    with policy variables (then resolved per request)."""

    text: str
    wildcard: bool
    ignore_case: bool
    #: The value split at its variables (text parts as written; a request turns them
    #: and what it substitutes into one linear-time regex, see ``glob_regex``).
    parts: tuple[str | Variable, ...]
    #: The compiled matcher when the value has no variables (wildcard or not).
    regex: re.Pattern[str] | None = field(compare=False)

    @property
    def has_variables(self) -> bool:
        return self.regex is None

    def regex_source(self) -> str | None:
        """The source (for ``fullmatch``) when static, for combining into one regex."""
        return None if self.regex is None else self.regex.pattern

    def matches(self, value: str, ctx: NormalContext) -> bool:
        if self.regex is not None:
            return self.regex.fullmatch(value) is not None
        if self.wildcard:
            tokens: list[GlobToken] = []
            for p in self.parts:
                if isinstance(p, str):
                    tokens += glob_tokens(p)
                    continue
                resolved = p.resolve(ctx)
                if resolved is None:
                    return False
                tokens.append(resolved)  # substituted text is literal, never a wildcard
            flags = re.DOTALL | (re.IGNORECASE if self.ignore_case else 0)
            return re.fullmatch(glob_regex(tokens), value, flags) is not None
        pieces: list[str] = []
        for p in self.parts:
            if isinstance(p, str):
                pieces.append(p)
                continue
            resolved = p.resolve(ctx)
            if resolved is None:
                return False
            pieces.append(resolved)
        wanted = "".join(pieces)
        if self.ignore_case:
            return wanted.casefold() == value.casefold()
        return wanted == value


def compile_pattern(
    text: str, *, wildcard: bool, ignore_case: bool = False, variables: bool = False
) -> Pattern:
    """Compile one policy value; ``variables``: the policy is Version 2012-10-17."""
    raw: tuple[str | Variable, ...] = (
        _split_variables(text) if variables and "${" in text else (text,)
    )
    if any(isinstance(p, Variable) and p.key is not None for p in raw):
        return Pattern(text, wildcard, ignore_case, raw, None)
    if wildcard:
        tokens: list[GlobToken] = []
        for p in raw:
            tokens += glob_tokens(p) if isinstance(p, str) else [p.literal]
        source = glob_regex(tokens)
    else:
        source = "".join(re.escape(p) if isinstance(p, str) else re.escape(p.literal) for p in raw)
    flags = re.DOTALL | (re.IGNORECASE if ignore_case else 0)
    return Pattern(text, wildcard, ignore_case, raw, re.compile(source, flags))


@dataclass(frozen=True, slots=True)
class PatternSet:
    """Several values, matched as one: static ones through a single combined regex."""

    patterns: tuple[Pattern, ...]
    combined: re.Pattern[str] | None = field(compare=False)
    templated: tuple[Pattern, ...] = field(compare=False)

    @classmethod
    def of(cls, patterns: Sequence[Pattern]) -> PatternSet:
        static = [s for p in patterns if (s := p.regex_source()) is not None]
        ignore_case = any(p.ignore_case for p in patterns)
        combined = None
        if static:
            flags = re.DOTALL | (re.IGNORECASE if ignore_case else 0)
            combined = re.compile("|".join(f"(?:{s})" for s in static), flags)
        templated = tuple(p for p in patterns if p.has_variables)
        return cls(tuple(patterns), combined, templated)

    def matches(self, value: str, ctx: NormalContext) -> bool:
        if self.combined is not None and self.combined.fullmatch(value) is not None:
            return True
        return any(p.matches(value, ctx) for p in self.templated)

    @property
    def texts(self) -> tuple[str, ...]:
        return tuple(p.text for p in self.patterns)


# --- typed values --------------------------------------------------------------------------

_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
_EPOCH = re.compile(r"-?\d+(?:\.\d+)?")


def parse_number(text: str) -> float | None:
    return float(text) if _NUMBER.fullmatch(text.strip()) else None


def parse_date(text: str) -> datetime | None:
    """ISO 8601 (``2024-05-01``, ``2024-05-01T12:00:00Z``, with an offset) or epoch
    seconds; a date without a zone is UTC, as AWS reads it."""
    text = text.strip()
    if _EPOCH.fullmatch(text):
        try:
            return datetime.fromtimestamp(float(text), UTC)
        except (OverflowError, OSError, ValueError):
            return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IpAddr = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_network(text: str) -> IpNetwork | None:
    """A CIDR block or a bare address; host bits may be set (``203.0.113.5/24``), as AWS
    accepts them."""
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        return None


def parse_address(text: str) -> IpAddr | None:
    """A request's address; an IPv4-mapped IPv6 address is read as the IPv4 one."""
    try:
        addr = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


# --- operators -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OperatorSpec:
    family: str  # string, numeric, date, bool, binary, ip, arn, null
    compare: str  # eq, eqi, like, lt, le, gt, ge, in
    negated: bool = False


#: Every condition operator kvbox evaluates (AWS's names, case-sensitive).
OPERATORS: Final[Mapping[str, OperatorSpec]] = {
    "StringEquals": OperatorSpec("string", "eq"),
    "StringNotEquals": OperatorSpec("string", "eq", True),
    "StringEqualsIgnoreCase": OperatorSpec("string", "eqi"),
    "StringNotEqualsIgnoreCase": OperatorSpec("string", "eqi", True),
    "StringLike": OperatorSpec("string", "like"),
    "StringNotLike": OperatorSpec("string", "like", True),
    "NumericEquals": OperatorSpec("numeric", "eq"),
    "NumericNotEquals": OperatorSpec("numeric", "eq", True),
    "NumericLessThan": OperatorSpec("numeric", "lt"),
    "NumericLessThanEquals": OperatorSpec("numeric", "le"),
    "NumericGreaterThan": OperatorSpec("numeric", "gt"),
    "NumericGreaterThanEquals": OperatorSpec("numeric", "ge"),
    "DateEquals": OperatorSpec("date", "eq"),
    "DateNotEquals": OperatorSpec("date", "eq", True),
    "DateLessThan": OperatorSpec("date", "lt"),
    "DateLessThanEquals": OperatorSpec("date", "le"),
    "DateGreaterThan": OperatorSpec("date", "gt"),
    "DateGreaterThanEquals": OperatorSpec("date", "ge"),
    "Bool": OperatorSpec("bool", "eq"),
    "BinaryEquals": OperatorSpec("binary", "eq"),
    "IpAddress": OperatorSpec("ip", "in"),
    "NotIpAddress": OperatorSpec("ip", "in", True),
    # ArnEquals and ArnLike are the same test on AWS: both take wildcards per component.
    "ArnEquals": OperatorSpec("arn", "like"),
    "ArnLike": OperatorSpec("arn", "like"),
    "ArnNotEquals": OperatorSpec("arn", "like", True),
    "ArnNotLike": OperatorSpec("arn", "like", True),
    "Null": OperatorSpec("null", "eq"),
}

QUALIFIERS: Final = ("ForAnyValue", "ForAllValues")
_IF_EXISTS: Final = "IfExists"

_ORDER: Final[Mapping[str, Callable[[Any, Any], bool]]] = {
    "eq": lambda a, b: a == b,
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
}

#: One request value against all of an operator's policy values: True (some policy
#: value matches), False (none does), None (the request value cannot be compared).
ValueTest = Callable[[str, NormalContext], bool | None]


# --- condition keys --------------------------------------------------------------------------

#: Global keys (AWS "global condition context keys") and S3 keys (the Service
#: Authorization Reference for S3) kvbox accepts in a policy. kvbox fills only the
#: ones listed in ``kvbox.policy.access.request_context``; the others are always
#: absent, which is what they are on AWS for a request that lacks the feature.
KNOWN_KEYS: Final = frozenset(
    k.lower()
    for k in (
        "aws:CalledVia",
        "aws:CalledViaFirst",
        "aws:CalledViaLast",
        "aws:CurrentTime",
        "aws:EpochTime",
        "aws:FederatedProvider",
        "aws:MultiFactorAuthAge",
        "aws:MultiFactorAuthPresent",
        "aws:PrincipalAccount",
        "aws:PrincipalArn",
        "aws:PrincipalIsAWSService",
        "aws:PrincipalOrgID",
        "aws:PrincipalOrgPaths",
        "aws:PrincipalServiceName",
        "aws:PrincipalServiceNamesList",
        "aws:PrincipalType",
        "aws:Referer",
        "aws:RequestedRegion",
        "aws:ResourceAccount",
        "aws:ResourceOrgID",
        "aws:ResourceOrgPaths",
        "aws:SecureTransport",
        "aws:SourceAccount",
        "aws:SourceArn",
        "aws:SourceIdentity",
        "aws:SourceIp",
        "aws:SourceOrgID",
        "aws:SourceOrgPaths",
        "aws:SourceOwner",
        "aws:SourceVpc",
        "aws:SourceVpce",
        "aws:SourceVpcArn",
        "aws:TagKeys",
        "aws:TokenIssueTime",
        "aws:UserAgent",
        "aws:userid",
        "aws:username",
        "aws:ViaAWSService",
        "aws:VpcSourceIp",
        "s3:AccessGrantsInstanceArn",
        "s3:AccessPointNetworkOrigin",
        "s3:authType",
        "s3:DataAccessPointAccount",
        "s3:DataAccessPointArn",
        "s3:delimiter",
        "s3:if-match",
        "s3:if-none-match",
        "s3:LocationConstraint",
        "s3:max-keys",
        "s3:object-lock-legal-hold",
        "s3:object-lock-mode",
        "s3:object-lock-remaining-retention-days",
        "s3:object-lock-retain-until-date",
        "s3:ObjectCreationOperation",
        "s3:prefix",
        "s3:RequestObjectTagKeys",
        "s3:ResourceAccount",
        "s3:signatureAge",
        "s3:signatureversion",
        "s3:TlsVersion",
        "s3:VersionId",
        "s3:x-amz-acl",
        "s3:x-amz-content-sha256",
        "s3:x-amz-copy-source",
        "s3:x-amz-grant-full-control",
        "s3:x-amz-grant-read",
        "s3:x-amz-grant-read-acp",
        "s3:x-amz-grant-write",
        "s3:x-amz-grant-write-acp",
        "s3:x-amz-metadata-directive",
        "s3:x-amz-server-side-encryption",
        "s3:x-amz-server-side-encryption-aws-kms-key-id",
        "s3:x-amz-server-side-encryption-customer-algorithm",
        "s3:x-amz-storage-class",
        "s3:x-amz-website-redirect-location",
    )
)
#: Keys that take a tag key after the slash.
TAG_KEY_PREFIXES: Final = (
    "aws:principaltag/",
    "aws:requesttag/",
    "aws:resourcetag/",
    "s3:existingobjecttag/",
    "s3:requestobjecttag/",
)

_CANONICAL_KEYS: Final = {
    k.lower(): k
    for k in (
        "aws:SourceIp",
        "aws:SecureTransport",
        "aws:CurrentTime",
        "aws:EpochTime",
        "aws:username",
        "aws:userid",
        "aws:PrincipalType",
        "aws:Referer",
        "aws:UserAgent",
        "s3:prefix",
        "s3:delimiter",
        "s3:max-keys",
        "s3:x-amz-acl",
        "s3:VersionId",
        "s3:authType",
        "s3:signatureversion",
    )
}


def check_key(key: str) -> str:
    """Validate a condition key; returns it lower-cased (the form lookups use)."""
    low = key.lower()
    if low in KNOWN_KEYS:
        return low
    for prefix in TAG_KEY_PREFIXES:
        if low.startswith(prefix):
            if len(low) == len(prefix):
                raise PolicyError(f"condition key {key!r} needs a tag key after the '/'")
            return low
    near = difflib.get_close_matches(low, [*KNOWN_KEYS, *TAG_KEY_PREFIXES], n=1)
    hint = f" (did you mean {_CANONICAL_KEYS.get(near[0], near[0])}?)" if near else ""
    raise PolicyError(f"Policy has an invalid condition key: {key!r}{hint}")


# --- compiling one condition ---------------------------------------------------------------


def _stringify(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return repr(value) if isinstance(value, float) else str(value)
    raise PolicyError(f"{where}: a condition value must be a string, number or boolean")


def condition_values(raw: Any, where: str) -> tuple[str, ...]:
    """A condition's value(s) as strings: one value or a non-empty list of them."""
    if isinstance(raw, list):
        if not raw:
            raise PolicyError(f"{where}: the list of values is empty")
        return tuple(_stringify(v, where) for v in raw)
    return (_stringify(raw, where),)


def split_operator(operator: str) -> tuple[str | None, str, bool]:
    """``ForAnyValue:StringLikeIfExists`` -> ("ForAnyValue", "StringLike", True)."""
    qualifier: str | None = None
    rest = operator
    if ":" in operator:
        qualifier, _, rest = operator.partition(":")
        if qualifier not in QUALIFIERS:
            raise PolicyError(
                f"Invalid Condition type: {operator!r}: the set qualifier must be "
                "ForAnyValue or ForAllValues"
            )
    if_exists = rest.endswith(_IF_EXISTS) and rest != _IF_EXISTS
    base = rest[: -len(_IF_EXISTS)] if if_exists else rest
    if base not in OPERATORS:
        folded = {name.lower(): name for name in OPERATORS}
        near = folded.get(base.lower()) or next(
            iter(difflib.get_close_matches(base, list(OPERATORS), n=1)), None
        )
        hint = f" (did you mean {near}?)" if near else ""
        raise PolicyError(f"Invalid Condition type: {operator!r}{hint}")
    if base == "Null" and (qualifier is not None or if_exists):
        raise PolicyError(f"Invalid Condition type: {operator!r}: Null takes no qualifier")
    return qualifier, base, if_exists


def _arn_test(values: tuple[str, ...], variables: bool) -> Callable[[str, NormalContext], bool]:
    """ARN matching: each of the six colon-separated parts is matched on its own, so a
    wildcard never crosses a colon before the resource part."""
    compiled: list[tuple[Pattern, ...] | Pattern] = []
    for v in values:
        pieces = v.split(":", 5)
        if len(pieces) == 6:
            compiled.append(
                tuple(compile_pattern(p, wildcard=True, variables=variables) for p in pieces)
            )
        else:
            compiled.append(compile_pattern(v, wildcard=True, variables=variables))

    def test(value: str, ctx: NormalContext) -> bool:
        got = value.split(":", 5)
        for c in compiled:
            if isinstance(c, Pattern):
                if c.matches(value, ctx):
                    return True
            elif len(got) == 6 and all(p.matches(g, ctx) for p, g in zip(c, got, strict=True)):
                return True
        return False

    return test


def _value_test(
    spec: OperatorSpec, values: tuple[str, ...], where: str, variables: bool
) -> ValueTest:
    family, compare = spec.family, spec.compare
    if family == "string":
        pats = PatternSet.of(
            [
                compile_pattern(
                    v,
                    wildcard=compare == "like",
                    ignore_case=compare == "eqi",
                    variables=variables,
                )
                for v in values
            ]
        )
        return pats.matches
    if family == "arn":
        return _arn_test(values, variables)
    if family == "binary":
        exact = frozenset(values)
        return lambda value, ctx: value in exact
    if family == "bool":
        wanted = set()
        for v in values:
            if v.lower() not in ("true", "false"):
                raise PolicyError(f"{where}: Bool takes true or false, not {v!r}")
            wanted.add(v.lower())
        return lambda value, ctx: value.strip().lower() in wanted
    if family == "numeric":
        numbers = []
        for v in values:
            n = parse_number(v)
            if n is None:
                raise PolicyError(f"{where}: {v!r} is not a number")
            numbers.append(n)
        order = _ORDER[compare]

        def numeric(value: str, ctx: NormalContext) -> bool | None:
            got = parse_number(value)
            return None if got is None else any(order(got, n) for n in numbers)

        return numeric
    if family == "date":
        dates = []
        for v in values:
            d = parse_date(v)
            if d is None:
                raise PolicyError(f"{where}: {v!r} is not an ISO 8601 date or epoch seconds")
            dates.append(d)
        order = _ORDER[compare]

        def date(value: str, ctx: NormalContext) -> bool | None:
            got = parse_date(value)
            return None if got is None else any(order(got, d) for d in dates)

        return date
    if family == "ip":
        nets = []
        for v in values:
            net = parse_network(v)
            if net is None:
                raise PolicyError(f"{where}: {v!r} is not an IP address or CIDR block")
            nets.append(net)

        def ip(value: str, ctx: NormalContext) -> bool | None:
            addr = parse_address(value)
            if addr is None:
                return None
            return any(addr.version == n.version and addr in n for n in nets)

        return ip
    raise AssertionError(family)  # pragma: no cover - OPERATORS lists every family


@dataclass(frozen=True, slots=True)
class Condition:
    """One (operator, key, values) test of a statement's Condition block."""

    operator: str  # as written: "ForAnyValue:StringLikeIfExists"
    base: str  # "StringLike"
    key: str  # as written: "aws:SourceIp"
    key_lower: str
    values: tuple[str, ...]
    qualifier: str | None
    if_exists: bool
    negated: bool
    _test: ValueTest | None = field(compare=False, repr=False)
    #: Null: True means "the key must be absent".
    _null_absent: bool = field(default=False, compare=False, repr=False)

    def holds(self, ctx: NormalContext) -> bool:
        got = ctx.values(self.key_lower)
        if self._test is None:  # Null
            return (got is None) == self._null_absent
        if got is None:
            if self.if_exists or self.qualifier == "ForAllValues":
                return True
            if self.qualifier == "ForAnyValue":
                return False
            return self.negated
        test = self._test
        # a request value passes when no policy value matches it (negated operators)
        # or some does (the others); None (not comparable) never passes
        want = not self.negated
        if self.qualifier == "ForAllValues" or (self.negated and self.qualifier is None):
            return all(test(v, ctx) is want for v in got)
        return any(test(v, ctx) is want for v in got)

    def describe(self) -> str:
        shown = self.values[0] if len(self.values) == 1 else list(self.values)
        return f"{self.operator} {self.key} {shown!r}"

    def actual(self, ctx: NormalContext) -> str:
        """What the request had for the key, for explanations."""
        got = ctx.values(self.key_lower)
        if got is None:
            return f"{self.key} absent"
        return f"{self.key}={got[0]!r}" if len(got) == 1 else f"{self.key}={list(got)!r}"


def compile_condition(
    operator: str, key: str, raw: Any, *, variables: bool, where: str
) -> Condition:
    """Validate and compile one condition; ``variables``: the policy is 2012-10-17."""
    qualifier, base, if_exists = split_operator(operator)
    key_lower = check_key(key)
    where = f"{where}: {operator} {key}"
    values = condition_values(raw, where)
    spec = OPERATORS[base]
    if spec.family == "null":
        if len(values) != 1 or values[0].lower() not in ("true", "false"):
            raise PolicyError(f"{where}: Null takes exactly one value, true or false")
        return Condition(
            operator, base, key, key_lower, values, None, False, False, None,
            values[0].lower() == "true",
        )  # fmt: skip
    test = _value_test(spec, values, where, variables)
    return Condition(
        operator, base, key, key_lower, values, qualifier, if_exists, spec.negated, test
    )
