"""Where in a policy document the server's validator found its error: a line number.

Layer: console (pure). Rules: the validator is ``kvbox.policy.parse_policy``, the same
one PutBucketPolicy runs, so the console never judges a policy differently from the API;
this module only points at the line the message is about, for the editor's gutter:

* a JSON syntax error names its line itself ("... at line 3 column 9");
* otherwise the message names a statement (``statement #N``) and usually a field
  (``Action``, ``unknown field 'Actoin'``) or quotes the offending value; the line is the
  first of: the quoted value inside that statement, the named field's key inside it, the
  statement's opening brace;
* a top-level message (``Version``, ``Statement`` missing) points at that key, else at no
  line (None): a wrong line is worse than none.

The scanner walks a document that ``json.loads`` already accepted (semantic errors come
only after a successful parse), so it need not report JSON errors of its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

_JSON_LINE: Final = re.compile(r"at line (\d+) column \d+")
_STATEMENT: Final = re.compile(r"statement #(\d+)")
_SID: Final = re.compile(r'\(Sid "(?:[^"\\]|\\.)*"\)')
_QUOTED: Final = re.compile(r"'([^']*)'|\"([^\"]*)\"")
_FIELDS: Final = (
    "NotPrincipal",
    "NotAction",
    "NotResource",
    "Principal",
    "Action",
    "Resource",
    "Condition",
    "Effect",
    "Sid",
    "Version",
    "Statement",
    "Id",
)


@dataclass(slots=True)
class _Span:
    """A JSON value's start and end offsets, and for an object its keys' offsets."""

    start: int
    end: int = 0
    keys: dict[str, int] = field(default_factory=dict)
    items: list[_Span] = field(default_factory=list)
    members: dict[str, _Span] = field(default_factory=dict)


class _Scanner:
    def __init__(self, text: str) -> None:
        self.t = text
        self.i = 0

    def _ws(self) -> None:
        while self.i < len(self.t) and self.t[self.i] in " \t\r\n":
            self.i += 1

    def _string(self) -> str:
        start = self.i + 1
        self.i += 1
        while self.t[self.i] != '"':
            self.i += 2 if self.t[self.i] == "\\" else 1
        self.i += 1
        return self.t[start : self.i - 1]

    def value(self) -> _Span:
        self._ws()
        span = _Span(self.i)
        c = self.t[self.i]
        if c == "{":
            self.i += 1
            self._ws()
            while self.t[self.i] != "}":
                self._ws()
                key_at = self.i
                key = self._string()
                self._ws()
                self.i += 1  # ':'
                span.keys[key] = key_at
                span.members[key] = self.value()
                self._ws()
                if self.t[self.i] == ",":
                    self.i += 1
                    self._ws()
            self.i += 1
        elif c == "[":
            self.i += 1
            self._ws()
            while self.t[self.i] != "]":
                span.items.append(self.value())
                self._ws()
                if self.t[self.i] == ",":
                    self.i += 1
                    self._ws()
            self.i += 1
        elif c == '"':
            self._string()
        else:
            while self.i < len(self.t) and self.t[self.i] not in ",}] \t\r\n":
                self.i += 1
        span.end = self.i
        return span


def _line(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def error_line(text: str, message: str) -> int | None:
    """The 1-based line ``message`` (a ``PolicyError``'s text) is about, or None."""
    m = _JSON_LINE.search(message)
    if m:
        return int(m.group(1))
    try:
        root = _Scanner(text).value()
    except IndexError:  # not a document json.loads accepted: no position to give
        return None
    message = _SID.sub("", message)  # the statement's name is not what is wrong
    fields = [f for f in _FIELDS if re.search(rf"\b{f}\b", message)]
    quoted = [a or b for a, b in _QUOTED.findall(message)]
    m = _STATEMENT.search(message)
    if m is None:
        for name in fields:
            if name in root.keys:
                return _line(text, root.keys[name])
        return None
    stmts = root.members.get("Statement")
    if stmts is None:
        return None
    index = int(m.group(1))
    items = stmts.items if stmts.items else [stmts]
    if index >= len(items):
        return None
    stmt = items[index]
    for q in quoted:
        if not q:
            continue
        if q in stmt.keys:  # an unknown field's name
            return _line(text, stmt.keys[q])
        at = text.find(q, stmt.start, stmt.end)
        if at >= 0:
            return _line(text, at)
    for name in fields:
        if name in stmt.keys:
            return _line(text, stmt.keys[name])
    return _line(text, stmt.start)
