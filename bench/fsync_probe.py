#!/usr/bin/env python3
"""How long a small durable write takes on this disk: 4 KiB pwrite + fdatasync, 200 times.

A durable SET cannot be acknowledged faster than one flush, so this bounds the latency of an
unbatched write and shows how much group commit has to amortize.

    python bench/fsync_probe.py [DIR]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time


def main() -> None:
    directory = sys.argv[1] if len(sys.argv) > 1 else tempfile.gettempdir()
    fd, path = tempfile.mkstemp(dir=directory, prefix="fsync-probe.")
    buf = b"x" * 4096
    times: list[float] = []
    try:
        for i in range(200):
            t = time.perf_counter()
            os.pwrite(fd, buf, (i % 16) * 4096)
            os.fdatasync(fd)
            times.append(time.perf_counter() - t)
    finally:
        os.close(fd)
        os.unlink(path)
    times.sort()
    print(
        f"4 KiB pwrite+fdatasync in {directory}: p50 {times[100] * 1e3:.3f} ms, "
        f"p90 {times[180] * 1e3:.3f} ms, max {times[-1] * 1e3:.3f} ms (200 writes)"
    )


if __name__ == "__main__":
    main()
