"""Security review of the policy layer (issue 4): matching cost of policy wildcards.

Layer: tests/policy (pure ``kvbox.policy``). Rules: a request must be decided in time
linear-ish in the sizes of the policy value and the request value, whatever either
holds, because ``decide`` runs on the server's event loop. The slow case is run in a
child process with a hard time limit, so a regression fails the test instead of hanging
the suite. (The review found exponential backtracking here; the tests pin its fix.)
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from kvbox.policy import evaluate, parse_policy

#: Seconds one decision may take in the child (a linear matcher needs microseconds).
LIMIT = 5.0

_CHILD = textwrap.dedent(
    """
    import json, sys
    from kvbox.policy import evaluate, parse_policy
    where, value = sys.argv[1], sys.argv[2]
    stmt = {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
            "Resource": "arn:aws:s3:::b/*"}
    pattern = "*a" * 12 + "*b"
    if where == "resource":
        stmt["Resource"] = "arn:aws:s3:::b/" + pattern
        resource, ctx = "arn:aws:s3:::b/" + value, {}
    else:
        stmt["Condition"] = {"StringLike": {"aws:UserAgent": pattern}}
        resource, ctx = "arn:aws:s3:::b/k", {"aws:UserAgent": value}
    policy = parse_policy(json.dumps({"Version": "2012-10-17", "Statement": [stmt]}), "b")
    print(evaluate(policy, None, "s3:GetObject", resource, ctx).outcome)
    """
)


def _decide_in_child(where: str, value: str) -> str:
    try:
        done = subprocess.run(
            [sys.executable, "-c", _CHILD, where, value],
            capture_output=True,
            timeout=LIMIT,  # the child is killed (by its own PID) when this runs out
            check=True,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"one policy decision took over {LIMIT} s ({where}, {len(value)} chars)")
    return done.stdout.decode().strip()


def test_wildcards_still_match_what_they_should() -> None:
    """The behaviour a faster matcher must keep."""
    doc = (
        '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*",'
        ' "Action": "s3:Get*", "Resource": "arn:aws:s3:::b/a*b?c*"}]}'
    )
    policy = parse_policy(doc, "b")
    for key, allowed in (("abxc", True), ("a-b-c-d", True), ("abc", False), ("ab\ncx", True)):
        ev = evaluate(policy, None, "s3:GetObject", f"arn:aws:s3:::b/{key}", {})
        assert ev.allowed is allowed, key


def test_a_short_value_is_decided_in_a_child() -> None:
    assert _decide_in_child("resource", "a" * 12 + "b") == "allow"


@pytest.mark.parametrize("where", ["resource", "condition"])
def test_many_wildcards_against_a_long_value_are_fast(where: str) -> None:
    assert _decide_in_child(where, "a" * 200) == "no-match"
