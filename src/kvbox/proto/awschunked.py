"""aws-chunked body codec (``Content-Encoding: aws-chunked``): bytes in, events out. No I/O.

Layer: proto. Rules: no asyncio, no sockets, no storage imports; signatures come from
``kvbox.auth.sigv4.ChunkSigner`` (pure), checksums are the S3 layer's job (trailers are
handed over as strings). The decoder is fed whatever split of the body the transport
produced and returns events; memory stays bounded by one framing line, because chunk
data is passed on as it arrives, never gathered.

Wire forms, by the request's x-amz-content-sha256 (AWS S3 API Reference,
sigv4-streaming.html and sigv4-streaming-trailers.html)::

    STREAMING-AWS4-HMAC-SHA256-PAYLOAD            10000;chunk-signature=<sig>\\r\\n <data> \\r\\n
                                                  ...
                                                  0;chunk-signature=<sig>\\r\\n \\r\\n
    STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER    ... 0;chunk-signature=<sig>\\r\\n
                                                  x-amz-checksum-crc32c:<b64>\\r\\n
                                                  x-amz-trailer-signature:<sig>\\r\\n \\r\\n
    STREAMING-UNSIGNED-PAYLOAD-TRAILER            10000\\r\\n <data> \\r\\n ... 0\\r\\n
                                                  x-amz-checksum-crc32:<b64>\\r\\n \\r\\n

Chunk n's signature covers chunk n-1's, starting from the request's seed signature, so
chunks cannot be dropped, reordered or spliced; the trailer signature chains from the
final (empty) chunk's.

Events are ``Data(bytes)``, then ``Trailer(name, value)`` for each trailer, then one
``End``. **Data is provisional until End**: a chunk's signature can only be checked once
all its bytes went by, so a consumer writes Data somewhere it can throw away (the S3
layer's pending blob) and commits only on End. Any error means: discard the body.

Strict where it guards framing (size lines, the CRLF after data, sizes, lengths), lenient
only where real clients differ harmlessly: trailer lines may end in LF instead of CRLF,
blank lines may stand before a trailer signature, and at the very end stray CR/LF bytes
and a missing final blank line are accepted (``finish``).

Errors are the ``AwsChunkedError`` branch of ``kvbox.errors`` (re-exported here); their
S3 codes are their rows in ``kvbox.errors.WIRE``.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final

from kvbox.auth.sigv4 import EMPTY_SHA256, AuthResult, ChunkSigner, PayloadMode
from kvbox.errors import (
    AwsChunkedError,
    ChunkSignatureMismatch,
    DecodedLengthMismatch,
    IncompleteBody,
    InvalidChunkSize,
    MalformedTrailer,
    TrailingData,
)

__all__ = [
    "MAX_CHUNK_LINE",
    "MAX_CHUNK_SIZE",
    "MAX_TRAILERS",
    "MAX_TRAILER_LINE",
    "AwsChunkedDecoder",
    "AwsChunkedError",
    "ChunkSignatureMismatch",
    "Data",
    "DecodedLengthMismatch",
    "End",
    "Event",
    "IncompleteBody",
    "InvalidChunkSize",
    "MalformedTrailer",
    "Trailer",
    "TrailingData",
    "encode_aws_chunked",
    "parse_trailer_header",
]

# --- limits ---------------------------------------------------------------------------

#: Longest chunk-size line, without its CRLF. The longest valid one is 16 hex digits +
#: ";chunk-signature=" (17) + 64 hex = 97 bytes; 256 leaves room and no more.
MAX_CHUNK_LINE: Final = 256
#: Largest chunk accepted. SDKs use 64 KiB (AWS's recommendation, the Java/Kotlin/Go
#: SDKs) to 1 MiB (botocore's AwsChunkedWrapper). Data streams through, so this bounds
#: no buffer; it refuses absurd size fields early, with S3's InvalidChunkSizeError.
MAX_CHUNK_SIZE: Final = 64 << 20
#: Longest trailer line. A checksum trailer is under 100 bytes (x-amz-checksum-sha256
#: plus 44 base64 characters); 4 KiB tolerates padding and whitespace around the colon.
MAX_TRAILER_LINE: Final = 4096
#: Most trailers per body. S3 clients send one checksum; the bound keeps memory flat.
MAX_TRAILERS: Final = 16
#: Most bytes a pending line or CRLF can still need: the longest line plus its CRLF.
_LOOKAHEAD: Final = max(MAX_CHUNK_LINE, MAX_TRAILER_LINE) + 2
#: A size field has at most this many hex digits (2**64 - 1); keeps int() cheap.
_MAX_SIZE_DIGITS: Final = 16

_TRAILER_SIGNATURE: Final = "x-amz-trailer-signature"
_SIGNATURE_EXT: Final = b";chunk-signature="
_HEX_RE: Final = re.compile(rb"[0-9a-fA-F]+")
_SIG_RE: Final = re.compile(rb"[0-9a-f]{64}")
_TOKEN_RE: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9a-z]+")
_VALUE_RE: Final = re.compile(r"[\x20-\x7e]*")


# --- events ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Data:
    """Decoded body bytes; provisional until ``End`` (see the module docstring)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Trailer:
    name: str  # lowercase
    value: str  # stripped


@dataclass(frozen=True, slots=True)
class End:
    decoded_length: int


Event = Data | Trailer | End


class _State(enum.Enum):
    SIZE_LINE = enum.auto()
    DATA = enum.auto()
    DATA_CRLF = enum.auto()
    TRAILERS = enum.auto()
    AFTER_TRAILER_SIGNATURE = enum.auto()
    DONE = enum.auto()


def parse_trailer_header(value: str) -> tuple[str, ...]:
    """The trailer names an ``x-amz-trailer`` header declares (comma-separated)."""
    return tuple(name.strip().lower() for name in value.split(",") if name.strip())


# --- decoder --------------------------------------------------------------------------


class AwsChunkedDecoder:
    """Sans-IO decoder for one aws-chunked body.

    ``feed(bytes)`` returns the events those bytes complete; ``finish()`` is called at the
    end of the HTTP body and either completes the message or raises. Any error is
    final: the decoder refuses further input.
    """

    def __init__(
        self,
        mode: PayloadMode,
        *,
        signer: ChunkSigner | None = None,
        seed_signature: str | None = None,
        decoded_length: int | None = None,
        declared_trailers: Sequence[str] | None = None,
        max_chunk_size: int = MAX_CHUNK_SIZE,
        min_chunk_size: int = 0,
    ) -> None:
        """``min_chunk_size`` (0 = off) enforces AWS's "every chunk but the last is at
        least 8 KiB" rule for signed bodies, which bounds the HMACs per byte."""
        if not mode.streaming:
            raise ValueError(f"{mode} is not an aws-chunked payload mode")
        self._signed = mode in (PayloadMode.STREAMING_SIGNED, PayloadMode.STREAMING_SIGNED_TRAILER)
        self._trailer_signed = mode is PayloadMode.STREAMING_SIGNED_TRAILER
        self._trailers_allowed = mode is not PayloadMode.STREAMING_SIGNED
        if self._signed and (signer is None or seed_signature is None):
            raise ValueError("signed aws-chunked bodies need a signer and the seed signature")
        self._signer = signer
        self._previous = seed_signature or ""
        self._decoded_length = decoded_length
        self._declared = (
            None if declared_trailers is None else tuple(n.lower() for n in declared_trailers)
        )
        self._max_chunk = max_chunk_size
        self._min_chunk = min_chunk_size

        self._state = _State.SIZE_LINE
        self._buf = bytearray()
        self._remaining = 0  # data bytes left in the current chunk
        self._chunk_size = 0
        self._previous_size: int | None = None
        self._expected_signature = b""
        self._hasher = hashlib.sha256()
        self._total = 0
        self._trailers: list[tuple[str, str]] = []
        self._unused = bytearray()
        self._failed = False

    @classmethod
    def for_request(
        cls,
        auth: AuthResult,
        *,
        decoded_length: int | None,
        declared_trailers: Sequence[str] | None = None,
        max_chunk_size: int = MAX_CHUNK_SIZE,
        min_chunk_size: int = 0,
    ) -> AwsChunkedDecoder:
        """The decoder for the body of a verified request with a streaming payload mode."""
        return cls(
            auth.payload_mode,
            signer=auth.chunk_signer(),
            seed_signature=auth.signature,
            decoded_length=decoded_length,
            declared_trailers=declared_trailers,
            max_chunk_size=max_chunk_size,
            min_chunk_size=min_chunk_size,
        )

    @property
    def done(self) -> bool:
        return self._state is _State.DONE

    @property
    def unused_data(self) -> bytes:
        """Bytes that arrived after the final chunk (besides stray CR/LF)."""
        return bytes(self._unused)

    # -- input ------------------------------------------------------------------------

    def feed(self, data: bytes) -> list[Event]:
        if self._failed:
            raise AwsChunkedError("the decoder already failed")
        if self._state is _State.DONE:
            self._keep_unused(data)
            return []
        try:
            return self._feed(data)
        except AwsChunkedError:
            self._failed = True
            raise

    def finish(self) -> list[Event]:
        """The HTTP body ended: complete the message or raise why it cannot be."""
        if self._failed:
            raise AwsChunkedError("the decoder already failed")
        try:
            return self._finish()
        except AwsChunkedError:
            self._failed = True
            raise

    def _finish(self) -> list[Event]:
        if self._state is _State.DONE:
            if self._unused:
                raise TrailingData(f"{len(self._unused)} bytes after the final chunk")
            return []
        if self._buf:
            raise IncompleteBody("the body ended inside a chunk")
        if self._state is _State.AFTER_TRAILER_SIGNATURE or (
            self._state is _State.TRAILERS and not self._trailer_signed
        ):
            # The final blank line is missing; every line before it was complete.
            return self._complete()
        if self._state is _State.TRAILERS:
            raise MalformedTrailer("the body ended before x-amz-trailer-signature")
        raise IncompleteBody("the body ended before the final chunk")

    def _keep_unused(self, data: bytes) -> None:
        if not self._unused:
            data = data.lstrip(b"\r\n")
        self._unused += data

    def _feed(self, data: bytes) -> list[Event]:
        events: list[Event] = []
        offset = 0
        while self._buf and offset < len(data):
            # Finish the pending line (or CRLF) with a bounded slice of the new bytes, so
            # a line split across reads never makes us copy a large read whole.
            take = data[offset : offset + _LOOKAHEAD]
            offset += len(take)
            head = bytes(self._buf) + take
            self._buf = bytearray()
            pos = self._run(head, events)
            if self._state is _State.DONE:
                self._keep_unused(head[pos:] + data[offset:])
                return events
            if pos < len(head):
                self._buf = bytearray(head[pos:])
        if offset < len(data):
            rest = data[offset:] if offset else data
            pos = self._run(rest, events)
            if self._state is _State.DONE:
                self._keep_unused(rest[pos:])
            elif pos < len(rest):
                self._buf = bytearray(rest[pos:])
        return events

    def _run(self, src: bytes, events: list[Event]) -> int:
        """Consume what ``src`` completes; returns how far it got."""
        pos = 0
        end = len(src)
        while pos < end:
            state = self._state
            if state is _State.DATA:
                n = min(self._remaining, end - pos)
                # A whole read that is all data passes through without a copy.
                piece = src if n == end else src[pos : pos + n]
                pos += n
                self._take_data(piece)
                events.append(Data(piece))
            elif state is _State.DATA_CRLF:
                if end - pos < 2:
                    break
                if src[pos : pos + 2] != b"\r\n":
                    raise IncompleteBody("chunk data is not followed by CRLF (size field lies)")
                pos += 2
                self._end_chunk()
                self._state = _State.SIZE_LINE
            elif state is _State.DONE:
                break
            else:
                limit = MAX_CHUNK_LINE if state is _State.SIZE_LINE else MAX_TRAILER_LINE
                newline = src.find(b"\n", pos, pos + limit + 2)
                if newline < 0:
                    if end - pos > limit + 1:
                        self._line_too_long()
                    break
                line = src[pos:newline]
                pos = newline + 1
                if state is _State.SIZE_LINE:
                    self._size_line(line)
                elif self._trailer_line(line):
                    events.extend(self._complete())
        return pos

    def _line_too_long(self) -> None:
        if self._state is _State.SIZE_LINE:
            raise InvalidChunkSize(f"chunk size line longer than {MAX_CHUNK_LINE} bytes")
        raise MalformedTrailer(f"trailer line longer than {MAX_TRAILER_LINE} bytes")

    # -- chunks -----------------------------------------------------------------------

    def _size_line(self, line: bytes) -> None:
        if not line.endswith(b"\r"):
            raise InvalidChunkSize("chunk size line does not end with CRLF")
        line = line[:-1]
        if self._signed:
            size_field, sep, sig = line.partition(_SIGNATURE_EXT)
            if not sep or not _SIG_RE.fullmatch(sig):
                raise InvalidChunkSize("chunk size line lacks a valid chunk-signature")
            self._expected_signature = sig
        else:
            # Unsigned chunks carry nothing in extensions; any are ignored.
            size_field = line.partition(b";")[0]
        if len(size_field) > _MAX_SIZE_DIGITS or not _HEX_RE.fullmatch(size_field):
            raise InvalidChunkSize(f"invalid chunk size {size_field[:_MAX_SIZE_DIGITS]!r}")
        size = int(size_field, 16)
        if size > self._max_chunk:
            raise InvalidChunkSize(f"chunk of {size} bytes exceeds {self._max_chunk}")
        if size and self._previous_size is not None and self._previous_size < self._min_chunk:
            raise InvalidChunkSize(
                f"Only the last chunk is allowed to have a size less than {self._min_chunk} bytes"
            )
        self._chunk_size = size
        self._remaining = size
        self._hasher = hashlib.sha256()
        if size:
            self._previous_size = size
            self._state = _State.DATA
        else:
            self._end_chunk()
            if self._decoded_length is not None and self._total != self._decoded_length:
                raise DecodedLengthMismatch(self._decoded_length, self._total)
            self._state = _State.TRAILERS

    def _take_data(self, piece: bytes) -> None:
        self._total += len(piece)
        if self._decoded_length is not None and self._total > self._decoded_length:
            raise DecodedLengthMismatch(self._decoded_length, self._total)
        if self._signed:
            self._hasher.update(piece)
        self._remaining -= len(piece)
        if not self._remaining:
            self._state = _State.DATA_CRLF

    def _end_chunk(self) -> None:
        if not self._signed:
            return
        assert self._signer is not None
        digest = self._hasher.hexdigest() if self._chunk_size else EMPTY_SHA256
        expected = self._signer.chunk_signature(self._previous, digest)
        if not hmac.compare_digest(expected.encode("ascii"), self._expected_signature):
            raise ChunkSignatureMismatch(
                f"chunk signature mismatch after {self._total} decoded bytes"
            )
        self._previous = expected

    # -- trailers ---------------------------------------------------------------------

    def _trailer_line(self, raw: bytes) -> bool:
        """Handle one trailer-section line; True when the message is complete."""
        line = raw[:-1] if raw.endswith(b"\r") else raw
        if not line.strip(b" \t"):
            # A blank line ends the section, except before a trailer signature, where
            # some clients put one (the signature is what completes a signed block).
            return self._state is _State.AFTER_TRAILER_SIGNATURE or not self._trailer_signed
        if self._state is _State.AFTER_TRAILER_SIGNATURE:
            raise MalformedTrailer("data after x-amz-trailer-signature")
        if not self._trailers_allowed:
            raise MalformedTrailer(
                "trailers are not allowed with STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
            )
        try:
            text = line.decode("ascii")
        except UnicodeDecodeError:
            raise MalformedTrailer("trailer line is not ASCII") from None
        name, sep, value = text.partition(":")
        name = name.strip().lower()
        value = value.strip()
        if not sep or not _TOKEN_RE.fullmatch(name) or not _VALUE_RE.fullmatch(value):
            raise MalformedTrailer("trailer line is not name:value")
        if name == _TRAILER_SIGNATURE:
            if not self._trailer_signed:
                raise MalformedTrailer("x-amz-trailer-signature in an unsigned body")
            self._check_trailer_signature(value)
            self._state = _State.AFTER_TRAILER_SIGNATURE
            return False
        if self._declared is not None and name not in self._declared:
            raise MalformedTrailer(f"trailer {name!r} was not declared in x-amz-trailer")
        if any(name == seen for seen, _ in self._trailers):
            raise MalformedTrailer(f"trailer {name!r} repeated")
        if len(self._trailers) >= MAX_TRAILERS:
            raise MalformedTrailer(f"more than {MAX_TRAILERS} trailers")
        self._trailers.append((name, value))
        return False

    def _check_trailer_signature(self, provided: str) -> None:
        assert self._signer is not None
        expected = self._signer.trailer_signature(self._previous, self._trailers)
        if not hmac.compare_digest(expected.encode("ascii"), provided.encode("ascii")):
            raise ChunkSignatureMismatch("trailer signature mismatch")

    def _complete(self) -> list[Event]:
        if self._trailer_signed and self._state is not _State.AFTER_TRAILER_SIGNATURE:
            raise MalformedTrailer("x-amz-trailer-signature is missing")
        if self._declared is not None:
            missing = [n for n in self._declared if all(n != seen for seen, _ in self._trailers)]
            if missing:
                raise MalformedTrailer(f"declared trailer {missing[0]!r} is missing")
        self._state = _State.DONE
        events: list[Event] = [Trailer(name, value) for name, value in self._trailers]
        events.append(End(self._total))
        return events


# --- encoder (our clients and tests) --------------------------------------------------


def encode_aws_chunked(
    chunks: Iterable[bytes],
    *,
    signer: ChunkSigner | None = None,
    seed_signature: str | None = None,
    trailers: Sequence[tuple[str, str]] = (),
    sign_trailers: bool | None = None,
) -> Iterator[bytes]:
    """Encode data chunks as an aws-chunked body, one wire piece per chunk.

    With a ``signer`` (and the request's seed signature) the chunks are signed, and
    trailers are signed too (STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]); without one
    this is the STREAMING-UNSIGNED-PAYLOAD-TRAILER form. Empty chunks are skipped: a
    zero size marks the end. ``sign_trailers`` (default: when there are trailers) writes
    the x-amz-trailer-signature line, which the -TRAILER form needs even with no trailers.
    """
    previous = seed_signature or ""
    if signer is not None and seed_signature is None:
        raise ValueError("a signed body needs the seed signature")
    for chunk in chunks:
        if not chunk:
            continue
        if signer is None:
            yield b"%x\r\n%s\r\n" % (len(chunk), chunk)
        else:
            previous = signer.chunk_signature(previous, hashlib.sha256(chunk).hexdigest())
            yield b"%x;chunk-signature=%s\r\n%s\r\n" % (len(chunk), previous.encode(), chunk)
    tail = b"".join(f"{name}:{value}\r\n".encode("ascii") for name, value in trailers)
    if signer is None:
        yield b"0\r\n" + tail + b"\r\n"
        return
    previous = signer.chunk_signature(previous, EMPTY_SHA256)
    final = b"0;chunk-signature=%s\r\n" % previous.encode()
    if sign_trailers if sign_trailers is not None else bool(trailers):
        trailer_sig = signer.trailer_signature(previous, trailers)
        yield final + tail + f"{_TRAILER_SIGNATURE}:{trailer_sig}\r\n\r\n".encode()
    else:
        yield final + b"\r\n"
