"""``kvbox fsck`` against data directories a real server wrote, then damaged by hand.

Layer: tests/e2e. Rules: chunk files are found on disk the way an operator would find
them — files named by the 64-hex SHA-256 of their bytes somewhere under the data
directory — never through kvbox's own code. After ``--repair`` the server must answer
NOTFOUND for a damaged key: never partial or wrong bytes.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import subprocess
from pathlib import Path

from ._server import KvboxServer, fsck, parse_ok_version
from .conftest import ServerFactory

HEX64 = re.compile(r"[0-9a-f]{64}")
MIB = 1 << 20


def chunk_files(data_dir: Path) -> dict[str, Path]:
    """Chunk id -> file, for every file under ``data_dir`` named like a chunk."""
    found: dict[str, Path] = {}
    for root, _dirs, files in os.walk(data_dir):
        for name in files:
            stem = name.split(".", 1)[0]
            if HEX64.fullmatch(stem):
                found[stem] = Path(root) / name
    return found


def text(done: subprocess.CompletedProcess[bytes]) -> str:
    return (done.stdout + done.stderr).decode(errors="replace")


class Store:
    """A server with some small values and one large value stored as several chunks."""

    def __init__(self, server: KvboxServer) -> None:
        self.server = server
        self.small = {f"small{i}": f"value {i}" for i in range(5)}
        self.big = random.Random(3).randbytes(6 * MIB + 12345)
        self.other = random.Random(4).randbytes(3 * MIB)
        before = set(chunk_files(server.data_dir))
        with server.connect(timeout=60) as w:
            for k, v in self.small.items():
                parse_ok_version(w.request(f"SET {k} {v}\n".encode()))
            self.other_version = parse_ok_version(w.bset("other", self.other))
            mid = set(chunk_files(server.data_dir))
            parse_ok_version(w.bset("big", self.big))
        after = chunk_files(server.data_dir)
        self.other_chunks = mid - before
        self.big_chunks = {c: p for c, p in after.items() if c not in mid}
        assert self.other_chunks, "a 3 MiB value left no chunk file under the data dir"
        assert self.big_chunks, "a 6 MiB value left no chunk file under the data dir"
        for cid, path in self.big_chunks.items():
            assert hashlib.sha256(path.read_bytes()).hexdigest() == cid

    def assert_others_intact(self) -> None:
        with self.server.connect(timeout=60) as w:
            for k, v in self.small.items():
                assert w.request(f"GET {k}\n".encode()) == f"VALUE {v}\n".encode()
            assert w.bget("other") == (self.other, self.other_version)


def test_clean_after_clean_shutdown(server: KvboxServer) -> None:
    Store(server)
    assert server.terminate() == 0
    done = fsck(server.data_dir)
    assert done.returncode == 0, text(done)
    done = fsck(server.data_dir, "--verify")
    assert done.returncode == 0, text(done)


def test_fsck_of_empty_store(server: KvboxServer) -> None:
    assert server.terminate() == 0
    done = fsck(server.data_dir)
    assert done.returncode == 0, text(done)


def test_missing_chunk_reported_and_repaired(server: KvboxServer) -> None:
    store = Store(server)
    assert server.terminate() == 0
    victim_id, victim = sorted(store.big_chunks.items())[len(store.big_chunks) // 2]
    victim.unlink()

    done = fsck(server.data_dir)
    assert done.returncode == 1, text(done)
    assert "missing" in text(done).lower()
    assert victim_id[:12] in text(done) or "big" in text(done), text(done)

    done = fsck(server.data_dir, "--repair")
    assert done.returncode == 0, text(done)
    done = fsck(server.data_dir)
    assert done.returncode == 0, text(done)

    server.start()
    with server.connect(timeout=60) as w:
        assert w.request(b"BGET big\n") == b"NOTFOUND\n"
        assert w.request(b"GET big\n") == b"NOTFOUND\n"
        assert w.request(b"VERSION big\n") == b"NOTFOUND\n"
        assert w.request(b"STATS\n") == b"OK %d\n" % (len(store.small) + 1)
    store.assert_others_intact()
    # the key can be written again afterwards
    with server.connect(timeout=60) as w:
        version = parse_ok_version(w.bset("big", store.big))
        assert w.bget("big") == (store.big, version)


def test_missing_chunk_read_by_live_server_is_never_partial(server: KvboxServer) -> None:
    """Without fsck: a BGET of a value whose chunk vanished fails, it does not truncate."""
    store = Store(server)
    assert server.terminate() == 0
    sorted(store.big_chunks.values())[-1].unlink()
    server.start()
    with server.connect(timeout=15) as w:
        w.send(b"BGET big\n")
        try:
            head = w.readline()
        except (EOFError, ConnectionResetError):
            head = b""
        if head.startswith(b"VALUE "):
            # the header went out before the gap was found: the body must not complete
            size = int(head.split()[1])
            assert size == len(store.big)
            body = w.read_to_close(limit=size + 1)
            assert len(body) < size + 1, "a value with a missing chunk was served whole"
        else:
            assert head in (b"", b"NOTFOUND\n") or head.startswith(b"ERR STORAGE"), head
    store.assert_others_intact()


def _orphan_path(store_chunk: Path, chunk_id: str) -> tuple[Path, bytes]:
    """A new file beside ``store_chunk`` that looks like a chunk nobody references.

    If chunk files are sharded by id prefix, the orphan's id has to match the directories
    it sits in, or it would not look like a chunk at all: search contents for one whose
    hash fits (at most 2 hex levels of 2 digits: 65,536 tries on average).
    """
    shards = []
    parent = store_chunk.parent
    while re.fullmatch(r"[0-9a-f]{1,4}", parent.name) and chunk_id.find(parent.name) >= 0:
        shards.append((chunk_id.find(parent.name), parent.name))
        parent = parent.parent
    suffix = store_chunk.name[64:]
    for n in range(1 << 22):
        content = b"orphan %d" % n
        cid = hashlib.sha256(content).hexdigest()
        if all(cid[pos : pos + len(name)] == name for pos, name in shards):
            return store_chunk.parent / (cid + suffix), content
    raise AssertionError("could not make an orphan id for this shard layout")


def test_orphan_chunk_reported_and_removed(server: KvboxServer) -> None:
    store = Store(server)
    assert server.terminate() == 0
    some_id, some = sorted(store.big_chunks.items())[0]
    orphan, content = _orphan_path(some, some_id)
    orphan.write_bytes(content)

    done = fsck(server.data_dir)
    assert done.returncode == 0, text(done)  # a leftover a crash may leave: a note
    assert "note: orphan chunks: 1" in text(done)
    assert orphan.name[:12] in text(done), text(done)

    done = fsck(server.data_dir, "--repair")
    assert done.returncode == 0, text(done)
    assert not orphan.exists()
    assert some.exists()
    done = fsck(server.data_dir)
    assert done.returncode == 0, text(done)

    server.start()
    with server.connect(timeout=60) as w:
        got = w.bget("big")
    assert got is not None and got[0] == store.big
    store.assert_others_intact()


def test_verify_finds_corrupt_chunk(server: KvboxServer) -> None:
    store = Store(server)
    assert server.terminate() == 0
    cid, path = sorted(store.big_chunks.items())[0]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.chmod(0o644)
    path.write_bytes(bytes(data))

    done = fsck(server.data_dir, "--verify")
    assert done.returncode == 1, text(done)
    assert cid[:12] in text(done) or "corrupt" in text(done).lower(), text(done)

    done = fsck(server.data_dir, "--verify", "--repair")
    assert done.returncode == 0, text(done)
    done = fsck(server.data_dir, "--verify")
    assert done.returncode == 0, text(done)
    server.start()
    assert server.oneshot(b"BGET big\n") == b"NOTFOUND\n"
    store.assert_others_intact()


def test_fsck_refuses_while_server_runs(server_factory: ServerFactory) -> None:
    server = server_factory()
    store = Store(server)
    for flags in ((), ("--repair",)):
        done = fsck(server.data_dir, *flags)
        assert done.returncode != 0, text(done)
        assert text(done).strip(), "fsck refused without saying why"
    assert server.running
    store.assert_others_intact()
    with server.connect(timeout=60) as w:
        got = w.bget("big")
    assert got is not None and got[0] == store.big
