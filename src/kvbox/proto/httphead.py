"""Measuring an HTTP/1.1 request head as it arrives: its size and its field count.

Layer: proto (sans-IO: bytes in, a verdict out; no sockets, no asyncio). Rules: the meter
only *counts*; parsing the head is aiohttp's job. It exists because a parser's limits are
per line (aiohttp: 8,190 bytes per field, 128 fields) and those multiply: 128 fields of
8 KiB each let one connection park a megabyte of headers, and a few hundred such
connections took kvbox from 78 to 340 MB (issue 10). The meter bounds the *whole* head,
the way nginx's ``large_client_header_buffers`` and Node's ``--max-http-header-size`` do.

What counts (RFC 9112 §2.2, §3, §5):

* The head is everything up to and including the first CRLF CRLF after the request line.
* Empty lines before the request line are tolerated by servers (a client may send a CRLF
  after a previous request's body) but they are bytes like any others: they count
  against the size, so a stream of bare CRLFs ends like any other oversized head.
* Fields are the lines between the request line and the empty line that ends the head.
  Lines are counted by their LF; a bare-LF head is aiohttp's to refuse.

>>> m = HeadMeter(max_bytes=64, max_fields=2)
>>> m.feed(b"GET / HTTP/1.1\\r\\nHost: a\\r\\n"), m.done
(None, False)
>>> m.feed(b"\\r\\nbody bytes are not counted"), m.done, m.size, m.fields
(None, True, 27, 1)
>>> HeadMeter(max_bytes=64, max_fields=1).feed(b"GET / HTTP/1.1\\r\\nA: 1\\r\\nB: 2\\r\\n")
'fields'
"""

from __future__ import annotations

from typing import Final, Literal

#: What a head broke: too many bytes, or too many fields.
Verdict = Literal["bytes", "fields"]

_END: Final = b"\r\n\r\n"
_BLANK: Final = b"\r\n"


class HeadMeter:
    """Counts one request head; ``reset()`` it for the next request on the connection."""

    __slots__ = ("_lines", "_started", "_tail", "done", "max_bytes", "max_fields", "size")

    def __init__(self, *, max_bytes: int, max_fields: int) -> None:
        self.max_bytes = max_bytes
        self.max_fields = max_fields
        self.reset()

    def reset(self) -> None:
        #: Bytes of the head seen so far (up to and including its final CRLF CRLF).
        self.size = 0
        #: True once the head's end has been seen; later bytes are the body's.
        self.done = False
        self._lines = 0  # LFs seen since the request line started
        self._started = False  # a byte other than CR/LF has arrived
        self._tail = b""  # the last bytes fed, so an end split across feeds is found

    @property
    def fields(self) -> int:
        """Header fields so far (complete lines after the request line)."""
        if self.done:
            return max(0, self._lines - 2)  # minus the request line and the empty line
        return max(0, self._lines - 1)

    def feed(self, data: bytes) -> Verdict | None:
        """Count ``data``; the limit it broke, or None. Bytes after the head's end (a
        body, a pipelined request) are not counted: feed stops at the end."""
        if self.done or not data:
            return None
        if not self._started:
            rest = data.lstrip(_BLANK)
            self.size += len(data) - len(rest)
            if not rest:
                return "bytes" if self.size > self.max_bytes else None
            self._started = True
            data = rest
        tail = self._tail
        joined = tail + data if tail else data
        end = joined.find(_END)
        if end >= 0:
            used = end + len(_END) - len(tail)  # >= 1: the end was not in the tail alone
            self._lines += data.count(b"\n", 0, used)
            self.size += used
            self.done = True
            self._tail = b""
        else:
            self._lines += data.count(b"\n")
            self.size += len(data)
            self._tail = joined[-(len(_END) - 1) :]
        if self.size > self.max_bytes:
            return "bytes"
        if self.fields > self.max_fields:
            return "fields"
        return None
