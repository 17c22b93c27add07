"""Durability under kill -9: every acknowledged write survives, nothing is ever partial.

Layer: tests/e2e. Rules: the load runs in another process (``_crash_writer.py``) that logs
each write's intent before sending it and its acknowledgement after the ``OK``; the server
is SIGKILLed at a random moment, restarted on the same data directory and port, and then:

* every acknowledged key reads back with its logged SHA-256, size and version;
* every key that was sent but not acknowledged is either absent or complete and exact;
* a MULTISET is all-or-nothing: its keys are all present or all absent;
* keys acknowledged in earlier iterations still have their versions.

One more writer connection pipelines plain SETs (16 per send), so the kill also lands
while write-ahead journal frames are in flight and acknowledged SETs exist only in the
journal; the same checks cover them. Every key is written at most once, so each check is
exact. The iterations share one data directory (module scope), so later ones also crash a
store that has crashed before; ``kvbox fsck`` runs between some of them and may find
orphans, never missing chunks.
"""

from __future__ import annotations

import hashlib
import random
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from _cleanup import removed_after

from ._server import KvboxServer, Wire, clean_env, fsck

WRITER = Path(__file__).with_name("_crash_writer.py")
CONNECTIONS = 4
SEEDS = list(range(20))


@dataclass
class Rig:
    server: KvboxServer
    logs: Path
    #: key -> version, for every key verified as acknowledged in an earlier iteration
    history: dict[str, str] = field(default_factory=dict)


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with removed_after(tmp_path_factory.mktemp("crash")) as base:
        srv = KvboxServer(base / "data")
        try:
            srv.start()
            yield Rig(srv, base)
        finally:
            srv.close()
            print(f"--- server log\n{srv.log_text()[-30000:]}")


@dataclass
class Intent:
    group: str
    sha256: str
    size: int
    version: str | None = None


def parse_log(path: Path) -> tuple[dict[str, Intent], list[str]]:
    intents: dict[str, Intent] = {}
    errors: list[str] = []
    for line in path.read_text(encoding="ascii").splitlines():
        parts = line.split(" ")
        if parts[0] == "I" and len(parts) == 5:
            _, group, key, sha, size = parts
            assert key not in intents, f"key {key} written twice"
            intents[key] = Intent(group, sha, int(size))
        elif parts[0] == "A" and len(parts) == 4:
            _, group, key, version = parts
            assert intents[key].group == group
            intents[key].version = version
        elif parts[0] == "E":
            errors.append(line)
        else:
            raise AssertionError(f"bad writer log line {line!r}")
    return intents, errors


def _wait_ready(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if ready else b""
    assert line == b"READY\n", f"writer did not start: {line!r}"


def _bget_many(w: Wire, keys: list[str]) -> Iterator[tuple[str, tuple[bytes, str] | None]]:
    """BGET ``keys`` pipelined in batches; yields (key, reply) in order."""
    for i in range(0, len(keys), 100):
        batch = keys[i : i + 100]
        w.send(b"".join(b"BGET %s\n" % k.encode() for k in batch))
        for k in batch:
            yield k, w.read_bget_reply()


def _versions_many(w: Wire, keys: list[str]) -> Iterator[tuple[str, bytes]]:
    for i in range(0, len(keys), 500):
        batch = keys[i : i + 500]
        w.send(b"".join(b"VERSION %s\n" % k.encode() for k in batch))
        for k in batch:
            yield k, w.readline()


def _missing_reported(output: str) -> bool:
    """True if fsck's report says any chunk is missing (a count above zero or a listing)."""
    for line in output.lower().splitlines():
        if "missing" not in line:
            continue
        counts = [int(n) for n in re.findall(r"(?<![0-9a-f])\d+(?![0-9a-f])", line)]
        if not counts or any(counts):
            return True
    return False


def _check_fsck(data_dir: Path, repair: bool) -> None:
    done = fsck(data_dir)
    out = (done.stdout + done.stderr).decode(errors="replace")
    # kill -9 may leave orphan chunks and temporary files: notes, exit status 0.
    assert done.returncode == 0, out
    assert not _missing_reported(out), f"fsck found missing chunks after kill -9:\n{out}"
    if repair:
        done = fsck(data_dir, "--repair")
        out = (done.stdout + done.stderr).decode(errors="replace")
        assert done.returncode == 0, out
        done = fsck(data_dir)
        assert done.returncode == 0, (done.stdout + done.stderr).decode(errors="replace")


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_kill9_keeps_acknowledged_writes(rig: Rig, seed: int) -> None:
    srv = rig.server
    if not srv.running:
        srv.start()
    rng = random.Random(seed)
    log = rig.logs / f"writer-{seed}.log"
    writer = subprocess.Popen(
        [
            sys.executable,
            str(WRITER),
            srv.host,
            str(srv.port),
            str(log),
            str(seed),
            f"s{seed}",
            str(CONNECTIONS),
            "5",
        ],
        stdout=subprocess.PIPE,
        env=clean_env(),
    )
    try:
        _wait_ready(writer)
        time.sleep(rng.uniform(0.2, 1.5))
        srv.kill(signal.SIGKILL)
        writer.wait(15)
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait(5)
        assert writer.stdout is not None
        writer.stdout.close()
    assert writer.returncode == 0

    if seed % 4 == 3:
        _check_fsck(srv.data_dir, repair=seed % 8 == 7)

    srv.start()
    intents, errors = parse_log(log)
    assert not errors, errors
    acked = {k: i for k, i in intents.items() if i.version is not None}
    assert acked, "the writer got no acknowledgement before the kill: test proves nothing"
    pipelined = f"s{seed}pc"  # _crash_writer.PipelineWriter's keys
    assert any(k.startswith(pipelined) for k in acked), "no pipelined SET was acknowledged"

    present: dict[str, bool] = {}
    with srv.connect(timeout=60) as w:
        for key, got in _bget_many(w, list(intents)):
            want = intents[key]
            if got is None:
                assert want.version is None, f"acknowledged key {key} lost after kill -9"
                present[key] = False
                continue
            value, version = got
            assert len(value) == want.size, f"{key}: partial value {len(value)}/{want.size}"
            assert hashlib.sha256(value).hexdigest() == want.sha256, f"{key}: wrong bytes"
            if want.version is not None:
                assert version == want.version, f"{key}: version {version} != acked"
            present[key] = True

        groups: dict[str, list[bool]] = {}
        for key, intent in intents.items():
            groups.setdefault(intent.group, []).append(present[key])
        for group, flags in groups.items():
            assert all(flags) or not any(flags), f"MULTISET {group} half applied: {flags}"

        for key, reply in _versions_many(w, list(rig.history)):
            assert reply == f"OK {rig.history[key]}\n".encode(), f"earlier key {key}: {reply!r}"

    for key, intent in acked.items():
        assert intent.version is not None
        rig.history[key] = intent.version
