"""The editor's line for a policy error: the server's own validator, located in the text."""

from __future__ import annotations

import pytest

from kvbox.console.policy_lines import error_line
from kvbox.policy import PolicyError, parse_policy

GOOD_HEAD = """{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Sid": "Read",
      "Effect": "Allow",
      "Principal": "*",
      "Action": "s3:GetObject",
      "Resource": "arn:aws:s3:::photos/*"
    },
"""


def _line_of(text: str) -> int | None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "photos")
    return error_line(text, str(caught.value))


def test_a_json_syntax_error_names_its_own_line() -> None:
    text = '{\n  "Version": "2012-10-17",\n  "Statement": [\n    {"Effect": "Allow",,}\n  ]\n}'
    assert _line_of(text) == 4


def test_an_unknown_action_points_at_the_action_in_its_statement() -> None:
    text = (
        GOOD_HEAD
        + """    {
      "Sid": "Second",
      "Effect": "Allow",
      "Principal": "*",
      "Action": ["s3:GetObject", "s3:GetObjekt"],
      "Resource": "arn:aws:s3:::photos/*"
    }
  ]
}"""
    )
    assert _line_of(text) == 15  # the line with s3:GetObjekt, not the first statement's


def test_a_misspelt_field_points_at_that_key() -> None:
    text = (
        GOOD_HEAD
        + """    {
      "Effect": "Allow",
      "Principal": "*",
      "Actoin": "s3:GetObject",
      "Resource": "arn:aws:s3:::photos/*"
    }
  ]
}"""
    )
    assert _line_of(text) == 14


def test_a_missing_field_points_at_the_statement() -> None:
    text = (
        GOOD_HEAD
        + """    {
      "Principal": "*",
      "Action": "s3:GetObject",
      "Resource": "arn:aws:s3:::photos/*"
    }
  ]
}"""
    )
    assert _line_of(text) == 11  # the statement's opening brace


def test_a_resource_of_another_bucket_points_at_the_resource() -> None:
    text = (
        '{"Version": "2012-10-17",\n"Statement": {"Effect": "Allow", "Principal": "*",\n'
        '"Action": "s3:GetObject",\n"Resource": "arn:aws:s3:::other/*"}}'
    )
    assert _line_of(text) == 4


def test_top_level_and_unlocatable_messages() -> None:
    assert _line_of('{\n  "Version": "2099-01-01",\n  "Statement": []\n}') == 2
    assert error_line("{}", "something with no place") is None
    assert error_line("not json", "statement #0: Effect") is None
