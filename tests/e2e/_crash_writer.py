"""Write load for the kill -9 test, run as a separate process.

Layer: tests/e2e (a script, not a test module). Usage:
    python _crash_writer.py HOST PORT LOG SEED PREFIX CONNECTIONS SECONDS

Each of CONNECTIONS threads writes fresh keys (every key at most once, so what a key should
hold is never ambiguous) with SET, BSET and MULTISET over its own connection, one request
at a time. One more thread, on a connection of its own, pipelines: it sends
``PIPELINE_DEPTH`` SETs of fresh keys in one ``sendall`` and only then reads their replies,
so the server acknowledges them through its write-ahead journal (batched SETs) and a kill
finds journal frames in flight. Before a request goes out, an intent line
``I <group> <key> <sha256> <size>`` is logged; after its ``OK`` arrives, an ack line
``A <group> <key> <version>`` is logged. Both are flushed at once, so the log on disk is a
superset of what the server acknowledged. The script prints ``READY`` when its connections
are open and stops when the server goes away or after SECONDS. It speaks raw GW-KV so it
depends on nothing but the protocol.
"""

from __future__ import annotations

import hashlib
import random
import socket
import sys
import threading
import time

MIB = 1 << 20
#: SETs the pipelining thread sends before it reads any reply: deep enough that the
#: server batches them (one journal frame for many), small enough to stay in socket
#: buffers without a reader.
PIPELINE_DEPTH = 16
#: Seconds the pipelining thread rests after each round: unpaced it writes several times
#: as many keys as the other threads together, and every key is read back after each
#: kill and again after every later one, which made the crash suite a third slower.
PIPELINE_PAUSE = 0.02


class Log:
    def __init__(self, path: str) -> None:
        self._fh = open(path, "a", encoding="ascii")  # noqa: SIM115 - lives for the process
        self._lock = threading.Lock()

    def write(self, line: str) -> None:
        with self._lock:
            self._fh.write(line + "\n")
            self._fh.flush()


def _value_size(rng: random.Random) -> int:
    roll = rng.random()
    if roll < 0.70:
        return rng.randint(0, 16 * 1024)
    if roll < 0.95:
        return rng.randint(16 * 1024, 512 * 1024)
    return rng.randint(1 * MIB, 3 * MIB)  # past the server's streaming threshold


def _text(rng: random.Random, n: int) -> bytes:
    return bytes(rng.randint(0x20, 0x7E) for _ in range(n))


class Writer(threading.Thread):
    def __init__(self, n: int, sock: socket.socket, log: Log, seed: int, prefix: str) -> None:
        super().__init__(daemon=True)
        self.sock = sock
        self.log = log
        self.rng = random.Random(f"{seed}-{n}")
        self.prefix = f"{prefix}c{n}"
        self.buf = b""
        self.count = 0
        self.deadline = 0.0

    def _key(self) -> str:
        self.count += 1
        return f"{self.prefix}n{self.count}"

    def _readline(self) -> bytes:
        while b"\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed")
            self.buf += data
        line, _, self.buf = self.buf.partition(b"\n")
        return line

    def _intent(self, group: str, key: str, value: bytes) -> None:
        self.log.write(f"I {group} {key} {hashlib.sha256(value).hexdigest()} {len(value)}")

    def one(self) -> None:
        rng = self.rng
        roll = rng.random()
        if roll < 0.40:
            key = self._key()
            value = _text(rng, rng.randint(0, 1024))
            self._intent(key, key, value)
            self.sock.sendall(b"SET %s %s\n" % (key.encode(), value))
            pairs = [(key, key)]
        elif roll < 0.85:
            key = self._key()
            value = rng.randbytes(_value_size(rng))
            self._intent(key, key, value)
            self.sock.sendall(b"BSET %s %d\n" % (key.encode(), len(value)) + value + b"\n")
            pairs = [(key, key)]
        else:
            keys = [self._key() for _ in range(rng.randint(2, 6))]
            group = f"g{keys[0]}"
            lines = []
            for key in keys:
                value = _text(rng, rng.randint(0, 1024))
                self._intent(group, key, value)
                lines.append(b"%s %s\n" % (key.encode(), value))
            self.sock.sendall(b"MULTISET %d\n" % len(keys) + b"".join(lines))
            pairs = [(group, k) for k in keys]
        reply = self._readline().decode()
        words = reply.split()
        if words[:1] != ["OK"] or len(words) != len(pairs) + 1:
            self.log.write(f"E {pairs[0][0]} {reply!r}")
            return
        for (group, key), version in zip(pairs, words[1:], strict=True):
            self.log.write(f"A {group} {key} {version}")

    def run(self) -> None:
        try:
            while time.monotonic() < self.deadline:
                self.one()
        except OSError:
            pass  # the server was killed: that is the point
        finally:
            self.sock.close()


class PipelineWriter(Writer):
    """Plain SETs of fresh keys, ``PIPELINE_DEPTH`` at a time in one send; each SET is
    its own group (pipelined SETs are independent, not all-or-nothing)."""

    def one(self) -> None:
        rng = self.rng
        keys: list[str] = []
        lines: list[bytes] = []
        for _ in range(PIPELINE_DEPTH):
            key = self._key()
            value = _text(rng, rng.randint(0, 512))
            self._intent(key, key, value)
            keys.append(key)
            lines.append(b"SET %s %s\n" % (key.encode(), value))
        self.sock.sendall(b"".join(lines))
        for key in keys:
            reply = self._readline().decode()
            words = reply.split()
            if words[:1] != ["OK"] or len(words) != 2:
                self.log.write(f"E {key} {reply!r}")
                continue
            self.log.write(f"A {key} {key} {words[1]}")
        time.sleep(PIPELINE_PAUSE)


def main(argv: list[str]) -> int:
    host, port, log_path, seed, prefix, conns, seconds = argv
    log = Log(log_path)
    writers = []
    for n in range(int(conns)):
        sock = socket.create_connection((host, int(port)), timeout=10)
        writers.append(Writer(n, sock, log, int(seed), prefix))
    sock = socket.create_connection((host, int(port)), timeout=10)
    writers.append(PipelineWriter(int(conns), sock, log, int(seed), f"{prefix}p"))
    deadline = time.monotonic() + float(seconds)
    print("READY", flush=True)
    for w in writers:
        w.deadline = deadline
        w.start()
    for w in writers:
        w.join()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
