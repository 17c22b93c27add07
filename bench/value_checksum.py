"""Candidates for the checksum stored with every inline value, timed on one core.

Run: ``python bench/value_checksum.py`` (the optional candidates -- xxhash, crc32c,
google-crc32c -- are timed when installed; awscrt and zlib always are). Each figure is
the best of ``--repeat`` runs of ``--number`` calls, per call, in nanoseconds, at the
sizes a GW-KV SET carries (1 KiB typical, 64 KiB the inline maximum).

Why this exists: the checksum is computed on every SET (the GW-KV hot path) and checked
on every value read back from SQLite, so its cost per call at small sizes -- where the
Python call overhead dominates -- decides, not its throughput on megabytes
(docs/benchmarks.md, "The inline value checksum").
"""

from __future__ import annotations

import argparse
import hashlib
import os
import timeit
import zlib
from collections.abc import Callable

Candidate = tuple[str, Callable[[bytes], object]]


def candidates() -> list[Candidate]:
    out: list[Candidate] = [("zlib.crc32", zlib.crc32), ("zlib.adler32", zlib.adler32)]
    try:
        from awscrt import checksums

        out += [
            ("awscrt crc32", checksums.crc32),
            ("awscrt crc32c", checksums.crc32c),
        ]
    except ImportError:
        pass
    try:
        import xxhash

        out += [
            ("xxhash xxh32_intdigest", xxhash.xxh32_intdigest),
            ("xxhash xxh3_64_intdigest", xxhash.xxh3_64_intdigest),
        ]
    except ImportError:
        pass
    try:
        import crc32c

        out.append(("crc32c.crc32c", crc32c.crc32c))
    except ImportError:
        pass
    try:
        import google_crc32c

        out.append(("google_crc32c.value", google_crc32c.value))
    except ImportError:
        pass

    def md5(data: bytes) -> str:
        return hashlib.md5(data, usedforsecurity=False).hexdigest()

    out.append(("hashlib md5 (the ETag)", md5))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1024,65536", help="comma-separated value sizes")
    ap.add_argument("--number", type=int, default=200_000, help="calls per timed run")
    ap.add_argument("--repeat", type=int, default=7, help="timed runs; the best is kept")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"{'candidate':28}" + "".join(f"{f'{s} B (ns)':>14}" for s in sizes))
    for name, fn in candidates():
        row = f"{name:28}"
        for size in sizes:
            data = os.urandom(size)
            number = max(1000, args.number * 1024 // max(size, 1024))
            timer = timeit.Timer(lambda fn=fn, data=data: fn(data))  # type: ignore[misc]
            best = min(timer.repeat(number=number, repeat=args.repeat))
            row += f"{best / number * 1e9:14.0f}"
        print(row)


if __name__ == "__main__":
    main()
