"""Pre-encoded GW-KV requests and a fast reply scanner for the benchmark's hot loop.

Layer: bench (pure). Rules: no I/O, no clocks. A Python load generator saturates long before
the server does, so the benchmark never builds a request or an event object per operation:
requests are encoded once, up front, into a pool of byte strings the hot loop writes as they
are, and replies are scanned line by line (one ``find`` and one prefix test each) instead of
being parsed into events. The scanner still checks every reply: ``OK``/``VALUE`` count as
successes, ``NOTFOUND`` as a miss, anything else as an error (with a few kept as samples).

Values up to the text limit (docs/protocol.md §2, 1,024 bytes) use ``SET``/``GET``; larger
values use the length-prefixed ``BSET``/``BGET`` forms, whose ``VALUE <len> <version>``
reply is followed by a body the scanner skips without buffering it.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass
from typing import Literal

from kvbox.proto.gwkv import MAX_KEY, MAX_TEXT_VALUE

Op = Literal["set", "get", "mix"]
OPS: tuple[Op, ...] = ("set", "get", "mix")

#: Bytes of pre-encoded requests one worker process keeps. Enough distinct requests that
#: keys are spread over the key space; bounded so 50 clients with 1 MiB values stay small.
POOL_BYTES = 32 << 20
#: Error replies kept verbatim per scanner, so a report can show what went wrong.
MAX_ERROR_SAMPLES = 5

_VALUE_ALPHABET = (string.ascii_letters + string.digits).encode()


@dataclass(frozen=True, slots=True)
class Workload:
    """What each operation is: its command mix, keys and value size."""

    op: Op = "set"
    value_size: int = 1024
    keys: int = 10_000
    set_ratio: float = 0.5
    key_prefix: str = "bench"

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise ValueError(f"op must be one of {', '.join(OPS)}")
        if self.value_size < 0:
            raise ValueError("value size must be >= 0")
        if self.keys < 1:
            raise ValueError("keys must be >= 1")
        if not 0.0 <= self.set_ratio <= 1.0:
            raise ValueError("set ratio must be between 0 and 1")
        if not self.key_prefix.isascii() or not (
            self.key_prefix == "" or self.key_prefix.isalnum()
        ):
            raise ValueError("key prefix must be letters and digits")
        if len(key_name(self.key_prefix, self.keys - 1)) > MAX_KEY:
            raise ValueError(f"key prefix too long: keys must be at most {MAX_KEY} bytes")

    @property
    def binary(self) -> bool:
        """Whether values are too large for the text form and need BSET/BGET."""
        return self.value_size > MAX_TEXT_VALUE


def key_name(prefix: str, index: int) -> bytes:
    """The benchmark's key number ``index``: the prefix and a fixed-width decimal."""
    return f"{prefix}{index:08d}".encode("ascii")


def make_value(size: int, seed: int = 0) -> bytes:
    """A printable value of ``size`` bytes (legal as a text value: no CR, LF or NUL)."""
    rng = random.Random(seed)
    return bytes(rng.choice(_VALUE_ALPHABET) for _ in range(size))


def encode_set(key: bytes, value: bytes) -> bytes:
    if len(value) > MAX_TEXT_VALUE:
        return b"BSET %s %d\n%s\n" % (key, len(value), value)
    return b"SET %s %s\n" % (key, value)


def encode_get(key: bytes, binary: bool) -> bytes:
    return (b"BGET %s\n" if binary else b"GET %s\n") % key


def request_pool(
    workload: Workload, count: int, seed: int, value: bytes | None = None
) -> list[bytes]:
    """``count`` single requests (at most what ``POOL_BYTES`` allows) with random keys.

    For ``mix`` each request is a SET with probability ``set_ratio``; the pool is then
    cycled, so its SET share is the run's SET share.
    """
    rng = random.Random(seed)
    if value is None:
        value = make_value(workload.value_size, seed)
    per_request = len(value) + 32
    count = max(1, min(count, POOL_BYTES // per_request))
    pool: list[bytes] = []
    for _ in range(count):
        key = key_name(workload.key_prefix, rng.randrange(workload.keys))
        is_set = workload.op == "set" or (
            workload.op == "mix" and rng.random() < workload.set_ratio
        )
        pool.append(encode_set(key, value) if is_set else encode_get(key, workload.binary))
    return pool


def batch_pool(workload: Workload, batches: int, pipeline: int, seed: int) -> list[bytes]:
    """Up to ``batches`` distinct pipelined batches of ``pipeline`` requests each.

    A batch is written with a single ``write`` call, as redis-benchmark's ``-P`` does.
    """
    if pipeline < 1:
        raise ValueError("pipeline depth must be >= 1")
    value = make_value(workload.value_size, seed)
    per_batch = (len(value) + 32) * pipeline
    batches = max(1, min(batches, POOL_BYTES // per_batch))
    singles = request_pool(workload, batches * pipeline, seed, value)
    # request_pool may have capped the count; rebuild batches from what it returned
    usable = len(singles) // pipeline * pipeline or pipeline
    if len(singles) < usable:
        singles = (singles * pipeline)[:usable]
    return [b"".join(singles[i : i + pipeline]) for i in range(0, usable, pipeline)]


class ReplyScanner:
    """Counts complete GW-KV replies in a byte stream split anywhere.

    ``feed`` returns how many replies the new bytes completed. ``binary``: ``VALUE`` replies
    are the length-prefixed ``BGET`` form. ``expect_len`` (when not None) is the value
    length a ``VALUE`` reply must carry; any other length is an error, which catches a
    server answering with the wrong value.
    """

    __slots__ = (
        "_binary", "_buf", "_expect_len", "_skip", "_text_reply_len",
        "error_samples", "errors", "misses", "ok", "sets",
    )  # fmt: skip

    def __init__(self, binary: bool = False, expect_len: int | None = None) -> None:
        self._binary = binary
        self._expect_len = expect_len
        self._buf = b""
        self._skip = 0  # bytes of a binary VALUE body (+ its LF) still to skip
        self._text_reply_len = None if expect_len is None else 6 + expect_len
        self.ok = 0
        self.misses = 0
        self.errors = 0
        #: SET replies (``OK``) among the completed ones: the plot's SET latencies.
        self.sets = 0
        self.error_samples: list[str] = []

    def reset(self) -> None:
        """Forget a partial reply: the connection it came on is gone. Counts are kept."""
        self._buf = b""
        self._skip = 0

    def clear_counts(self) -> None:
        """Zero the counters (after an unmeasured warm-up)."""
        self.ok = self.misses = self.errors = 0
        self.error_samples = []

    @property
    def pending(self) -> bool:
        """Whether a reply has started but not finished (bytes buffered or body to skip)."""
        return bool(self._buf) or self._skip > 0

    def feed(self, data: bytes) -> int:
        if self._buf:
            data = self._buf + data
            self._buf = b""
        pos = 0
        end = len(data)
        done = 0
        while pos < end:
            if self._skip:
                take = min(self._skip, end - pos)
                pos += take
                self._skip -= take
                if self._skip == 0:
                    done += 1
                continue
            nl = data.find(b"\n", pos)
            if nl < 0:
                self._buf = data[pos:]
                break
            line = data[pos:nl]
            pos = nl + 1
            if line.startswith(b"OK"):
                self.ok += 1
                self.sets += 1
                done += 1
            elif line.startswith(b"VALUE "):
                if self._binary:
                    # VALUE <length> <version>, then <length> bytes and LF
                    parts = line.split(b" ")
                    if len(parts) != 3 or not parts[1].isdigit():
                        self._error(b"malformed binary reply: " + line[:60])
                        done += 1
                        continue
                    length = int(parts[1])
                    if self._expect_len is not None and length != self._expect_len:
                        self._error(b"wrong value length: " + line[:60])
                    else:
                        self.ok += 1
                    self._skip = length + 1
                    continue
                if self._text_reply_len is not None and len(line) != self._text_reply_len:
                    self._error(b"wrong value length: " + line[:60])
                else:
                    self.ok += 1
                done += 1
            elif line == b"NOTFOUND":
                self.misses += 1
                done += 1
            else:
                self._error(line)
                done += 1
        return done

    def _error(self, line: bytes) -> None:
        self.errors += 1
        if len(self.error_samples) < MAX_ERROR_SAMPLES:
            self.error_samples.append(line[:200].decode("ascii", "replace"))
