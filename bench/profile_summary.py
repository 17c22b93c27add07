#!/usr/bin/env python3
"""Summarize a py-spy profile in collapsed-stack form (``py-spy record --format raw``).

With ``--native`` py-spy samples every thread, busy or not, so the samples are first
split by thread (event loop, SQLite writer, thread pool) and by state: running, waiting
for the GIL or a lock, idle in epoll, or blocked in a disk flush. Then, over the running
samples only, it prints the functions where the samples *are* (self time: the leaf frame)
and the functions they are *under* (inclusive time), so docs/benchmarks.md can say where
the server's CPU goes in a table rather than a flame graph.

    python bench/profile_summary.py /tmp/profile.txt [--top 25] [--filter kvbox]
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

# py-spy frames look like "function (path/to/file.py:123)"; the line number is dropped so
# that all samples of one function add up.
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _name(frame: str) -> str:
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    path = m.group("file")
    for marker in ("site-packages/", "/src/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{m.group('func')} ({path})"


# (substring of a frame, state) in priority order: the first match names the state
_STATES = (
    ("fdatasync", "disk flush (fdatasync/fsync)"),
    ("fsync", "disk flush (fdatasync/fsync)"),
    ("epoll_pwait", "idle in epoll"),
    ("epoll_wait", "idle in epoll"),
    ("take_gil", "waiting for the GIL"),
    ("pthread_cond_timedwait", "waiting for the GIL"),
    ("PyThread_acquire_lock", "waiting on a lock / queue"),
    ("pthread_cond_wait", "waiting on a lock / queue"),
)
# (substring of a frame, thread) in priority order: each thread by the function it runs
_THREADS = (
    ("Writer._main", "SQLite writer thread"),
    ("AccessLog._run", "access-log writer"),
    ("Journal._write", "journal flush"),  # a thread-pool worker writing a frame
    ("concurrent/futures/thread.py", "thread pool"),
    ("run_forever", "event loop thread"),
    ("Runner.run", "event loop thread"),
)


def _classify(frames: list[str]) -> tuple[str, str]:
    thread = next((t for key, t in _THREADS if any(key in f for f in frames)), "other thread")
    for key, state in _STATES:
        if any(key in f for f in frames):
            return thread, state
    return thread, "running"


def summarize(
    text: str, only: str = ""
) -> tuple[int, Counter[tuple[str, str]], Counter[str], Counter[str]]:
    """Samples in all; by (thread, state); and self and inclusive counts over the running
    samples (of the thread named ``only``, when given)."""
    total = 0
    states: Counter[tuple[str, str]] = Counter()
    own: Counter[str] = Counter()
    under: Counter[str] = Counter()
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_name(f) for f in stack.split(";") if f]
        if not frames:
            continue
        total += count
        thread, state = _classify(frames)
        states[thread, state] += count
        if state != "running" or (only and thread != only):
            continue
        own[frames[-1]] += count
        for name in set(frames):
            under[name] += count
    return total, states, own, under


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("profile", type=Path)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--filter", default="", help="inclusive table: only names containing this")
    ap.add_argument(
        "--thread", default="", help='self/inclusive tables of one thread, e.g. "event loop thread"'
    )
    args = ap.parse_args()
    total, states, own, under = summarize(args.profile.read_text(errors="replace"), args.thread)
    if not total:
        raise SystemExit("no samples")
    running = sum(own.values())
    where = f" on the {args.thread}" if args.thread else ""
    print(f"{total} samples, {running} of them running{where}")
    print("\nthreads and states (share of all samples):")
    for (thread, state), n in sorted(states.items(), key=lambda kv: -kv[1]):
        print(f"  {n / total:6.1%}  {thread:22}  {state}")
    if not running:
        return
    print("\nself time (share of running samples):")
    for name, n in own.most_common(args.top):
        print(f"  {n / running:6.1%}  {name}")
    print("\ninclusive time (share of running samples):")
    shown = 0
    for name, n in under.most_common():
        if args.filter and args.filter not in name:
            continue
        print(f"  {n / running:6.1%}  {name}")
        shown += 1
        if shown >= args.top:
            break


if __name__ == "__main__":
    main()
