"""Instants for time-travel reads: RFC 3339 with a zone, or integer epoch milliseconds.

Layer: shared pure helper. Rules: no I/O, no clock, no kvbox imports, so every front door
(GW-KV's ``GETAT``/``BGETAT`` in ``proto.gwkv``, S3's ``x-kvbox-at``) and every client
parses an instant by the same rule and gets the same integer: nanoseconds since the
Unix epoch, the unit of ``ObjectVersion.mtime_ns``.

The accepted forms (docs/protocol.md, ``GETAT``):

* ``2026-11-25T01:02:03Z``, ``2026-11-25T01:02:03.123Z``, ``2026-11-25T02:02:03+01:00``:
  RFC 3339 ``date-time`` (§5.6). A zone (``Z`` or ``±hh:mm``) is required, because a
  time without one names a different instant on every machine. ``T`` and ``Z`` may be
  lower case (RFC 3339 §5.6 note). The fraction may have any number of digits; digits
  past nanoseconds are dropped, which is exact for the comparison ``mtime_ns <= at``
  (an integer is <= t exactly when it is <= floor(t)).
* ``1795568523123``: a decimal count of milliseconds since the epoch (ASCII digits only).

Refused, each with its own message: anything else (ISO 8601 forms that RFC 3339 does not
allow, such as ``20261125T010203Z`` or ``+0100``, a space for ``T``), impossible dates
(``2026-02-30``), a leap second (``:60``: the store's clock, like POSIX time, has none),
and instants outside years 0001-9999 UTC.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Final

#: Longest instant text looked at: RFC 3339 with a 9-digit fraction and an offset is 35
#: characters; the rest of the room is for longer fractions. Bounds the work an
#: untrusted token can cause.
MAX_INSTANT_TEXT: Final = 64

_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()
_NS: Final = 1_000_000_000
_DAY_NS: Final = 86_400 * _NS
#: 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999999999Z: what a calendar date can name.
MIN_INSTANT_NS: Final = (date(1, 1, 1).toordinal() - _EPOCH_ORDINAL) * _DAY_NS
MAX_INSTANT_NS: Final = (date(9999, 12, 31).toordinal() - _EPOCH_ORDINAL + 1) * _DAY_NS - 1
#: The largest epoch-milliseconds count (the last millisecond of year 9999).
MAX_EPOCH_MS: Final = MAX_INSTANT_NS // 1_000_000

_RFC3339: Final = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:[Zz]|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
)
_DIGITS: Final = re.compile(r"\d+", re.ASCII)
#: RFC 3339 but for the zone: refused with a message that says what is missing.
_ZONELESS: Final = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d+)?", re.ASCII)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


class InvalidInstant(ValueError):
    """Not an instant by the rule above; the message says why, in one line, and never
    repeats the input (it may be hostile bytes)."""


_FORMS: Final = "an RFC 3339 time with a zone (2026-11-25T01:02:03.123Z) or epoch milliseconds"


def parse_instant(text: str | bytes) -> int:
    """Nanoseconds since the epoch named by ``text``; ``InvalidInstant`` if it names none.

    >>> parse_instant("1970-01-01T00:00:01.5Z")
    1500000000
    >>> parse_instant("1500")
    1500000000
    >>> parse_instant("1970-01-01T01:00:00+01:00")
    0
    """
    if isinstance(text, bytes | bytearray | memoryview):
        raw = bytes(text)
        if not raw.isascii():
            raise InvalidInstant(f"instant must be {_FORMS}")
        text = raw.decode("ascii")
    if not text or len(text) > MAX_INSTANT_TEXT:
        raise InvalidInstant(f"instant must be {_FORMS}")
    if _DIGITS.fullmatch(text):
        ms = int(text)
        if ms > MAX_EPOCH_MS:
            raise InvalidInstant("instant out of range: years 0001-9999 UTC")
        return ms * 1_000_000
    m = _RFC3339.fullmatch(text)
    if m is None:
        if _ZONELESS.fullmatch(text):
            raise InvalidInstant("instant needs a zone: Z or +hh:mm/-hh:mm")
        raise InvalidInstant(f"instant must be {_FORMS}")
    year, month, day, hour, minute, second = (int(g) for g in m.group(1, 2, 3, 4, 5, 6))
    try:
        ordinal = date(year, month, day).toordinal()
    except ValueError:
        raise InvalidInstant("instant names no calendar date") from None
    if hour > 23 or minute > 59:
        raise InvalidInstant("instant names no time of day")
    if second > 59:
        raise InvalidInstant("instant names a leap second (:60), which has no timestamp")
    fraction = m.group(7) or ""
    frac_ns = int((fraction + "000000000")[:9])
    offset = 0
    if m.group(8) is not None:
        off_h, off_m = int(m.group(9)), int(m.group(10))
        if off_h > 23 or off_m > 59:
            raise InvalidInstant("instant has an impossible zone offset")
        offset = (off_h * 3600 + off_m * 60) * (1 if m.group(8) == "+" else -1)
    seconds = (ordinal - _EPOCH_ORDINAL) * 86_400 + hour * 3600 + minute * 60 + second - offset
    ns = seconds * _NS + frac_ns
    if not MIN_INSTANT_NS <= ns <= MAX_INSTANT_NS:
        raise InvalidInstant("instant out of range: years 0001-9999 UTC")
    return ns


def format_instant(ns: int) -> str:
    """The RFC 3339 UTC text of ``ns`` (the inverse of ``parse_instant``): the fraction
    is as long as needed in steps of 3 digits, and absent when zero.

    >>> format_instant(1_500_000_000)
    '1970-01-01T00:00:01.500Z'
    """
    if not isinstance(ns, int) or isinstance(ns, bool):
        raise TypeError(f"an instant is an int of nanoseconds, not {type(ns).__name__}")
    if not MIN_INSTANT_NS <= ns <= MAX_INSTANT_NS:
        raise InvalidInstant("instant out of range: years 0001-9999 UTC")
    days, rest = divmod(ns, _DAY_NS)
    secs, frac = divmod(rest, _NS)
    day = date.fromordinal(days + _EPOCH_ORDINAL)
    hh, rem = divmod(secs, 3600)
    mm, ss = divmod(rem, 60)
    text = f"{day.isoformat()}T{hh:02d}:{mm:02d}:{ss:02d}"
    if frac:
        digits = f"{frac:09d}"
        while digits.endswith("000"):
            digits = digits[:-3]
        text += "." + digits
    return text + "Z"


def instant_of(when: datetime | int) -> int:
    """Nanoseconds since the epoch of a client's ``when``: an aware ``datetime``, or an
    int of epoch milliseconds (negative: before 1970). A naive ``datetime`` is refused
    for the reason the wire refuses a zone-less time."""
    if isinstance(when, datetime):
        if when.tzinfo is None or when.utcoffset() is None:
            raise InvalidInstant("datetime must be timezone-aware (e.g. tzinfo=UTC)")
        delta = when - _EPOCH
        ns = (delta // timedelta(microseconds=1)) * 1000
    elif isinstance(when, int) and not isinstance(when, bool):
        ns = when * 1_000_000
    else:
        raise TypeError(f"an instant is a datetime or int milliseconds, not {type(when).__name__}")
    if not MIN_INSTANT_NS <= ns <= MAX_INSTANT_NS:
        raise InvalidInstant("instant out of range: years 0001-9999 UTC")
    return ns


__all__ = [
    "MAX_EPOCH_MS",
    "MAX_INSTANT_NS",
    "MAX_INSTANT_TEXT",
    "MIN_INSTANT_NS",
    "InvalidInstant",
    "format_instant",
    "instant_of",
    "parse_instant",
]
