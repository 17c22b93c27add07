#!/usr/bin/env python3
"""What the access decision costs per request: ``kvbox.policy.decide`` alone.

Reference tool, never shipped, not collected by pytest. Every S3 request that is not
root's on a bucket without a policy goes through ``decide`` once per action it needs, on
the event loop, so its cost is added to each such request. Each case runs for
``--seconds`` (default 1 s) or 1,000,000 calls, whichever ends first, and prints the
mean and the p99 of one call, in microseconds.

Cases:

* ``owner``       the bucket owner (a user) reading its own object, a 3-statement policy
* ``anon-allow``  anonymous GetObject allowed by the lab's public-read statement
* ``anon-deny``   anonymous GetObject under a Deny on a prefix (the Deny decides)
* ``conditions``  a statement with IpAddress, StringLike on aws:UserAgent and a date
* ``wildcards``   a Resource with 8 ``*`` against a 1,000-character key (the case a
                  backtracking matcher would take seconds on)

    python bench/policy_decide.py
    python bench/policy_decide.py --seconds 3 anon-allow
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime

from kvbox.policy import AccessQuery, decide, parse_policy, request_context

BUCKET = "photos"


def _policy(*statements: dict[str, object]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


LAB = _policy(
    {
        "Sid": "PublicRead",
        "Effect": "Allow",
        "Principal": "*",
        "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{BUCKET}/*",
    },
    {
        "Sid": "PublicList",
        "Effect": "Allow",
        "Principal": "*",
        "Action": "s3:ListBucket",
        "Resource": f"arn:aws:s3:::{BUCKET}",
    },
    {
        "Sid": "NotPrivate",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": f"arn:aws:s3:::{BUCKET}/private/*",
    },
)
CONDITIONS = _policy(
    {
        "Sid": "Office",
        "Effect": "Allow",
        "Principal": "*",
        "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{BUCKET}/*",
        "Condition": {
            "IpAddress": {"aws:SourceIp": ["10.0.0.0/8", "127.0.0.0/8"]},
            "StringLike": {"aws:UserAgent": ["*Mozilla*", "curl/*"]},
            "DateLessThan": {"aws:CurrentTime": "2099-01-01T00:00:00Z"},
        },
    }
)
WILD = _policy(
    {
        "Sid": "Wild",
        "Effect": "Allow",
        "Principal": "*",
        "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{BUCKET}/*a*a*a*a*a*a*a*a*b",
    }
)


def _query(text: str, principal: str | None, key: str, **ctx: str) -> AccessQuery:
    context = request_context(
        principal,
        now=datetime.now(UTC),
        source_ip=ctx.get("ip", "127.0.0.1"),
        secure_transport=False,
        user_agent=ctx.get("ua", "curl/8.0"),
    )
    return AccessQuery(
        principal,
        "s3:GetObject",
        f"arn:aws:s3:::{BUCKET}/{key}",
        BUCKET,
        "alice",
        parse_policy(text, BUCKET),
        context=context,
    )


CASES: dict[str, tuple[AccessQuery, bool]] = {
    "owner": (_query(LAB, "alice", "cat.png"), True),
    "anon-allow": (_query(LAB, None, "cat.png"), True),
    "anon-deny": (_query(LAB, None, "private/secret.txt"), False),
    "conditions": (_query(CONDITIONS, None, "cat.png"), True),
    "wildcards": (_query(WILD, None, "a" * 1000), False),
}


def run(name: str, query: AccessQuery, expected: bool, seconds: float) -> None:
    call: Callable[[AccessQuery], object] = decide
    assert decide(query).allowed is expected, name
    samples: list[float] = []
    deadline = time.perf_counter() + seconds
    for _ in range(1_000_000):
        t0 = time.perf_counter()
        call(query)
        samples.append(time.perf_counter() - t0)
        if len(samples) % 1000 == 0 and time.perf_counter() > deadline:
            break
    samples.sort()
    mean = statistics.fmean(samples) * 1e6
    p99 = samples[int(len(samples) * 0.99)] * 1e6
    print(f"{name:<12} calls {len(samples):>9,}  mean {mean:6.2f} µs  p99 {p99:6.2f} µs")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("cases", nargs="*", metavar="CASE", help=f"some of: {', '.join(CASES)}")
    ap.add_argument("--seconds", type=float, default=1.0)
    args = ap.parse_args()
    for name in args.cases or CASES:
        if name not in CASES:
            ap.error(f"unknown case {name!r}")
        query, expected = CASES[name]
        run(name, query, expected, args.seconds)


if __name__ == "__main__":
    main()
