"""Spawn and drive a real ``kvbox serve`` process for end-to-end tests.

Layer: tests/e2e. Rules: everything here talks to the server the way a user would — a
child process started with ``python -m kvbox``, real TCP and UDP sockets on 127.0.0.1, and
the CLI — so nothing in it imports kvbox. Every process it starts is tracked by PID and
killed by PID on cleanup; every socket operation has a timeout, so a hung server fails a
test instead of hanging it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType

from _cleanup import dies_with_us
from _ports import free_port

#: Seconds a fresh server may take to print ``kvbox: ready`` and accept a connection.
STARTUP_TIMEOUT = 30.0
#: Seconds a server may take to exit after SIGTERM/SIGINT.
SHUTDOWN_TIMEOUT = 20.0
#: Seconds any single socket call may block.
IO_TIMEOUT = 10.0

#: A GW-KV version id: 26 characters of Crockford base 32 (docs/protocol.md §4).
VERSION_RE = re.compile(rb"[0-9A-HJKMNP-TV-Z]{26}")
OK_VERSION_RE = re.compile(rb"OK ([0-9A-HJKMNP-TV-Z]{26})\n")
_LISTEN_RE = re.compile(r"^kvbox: gwkv (tcp|udp) (\S+):(\d+)(?: \(auth \w+\))?\s*$", re.MULTILINE)


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The parent environment minus any ``KVBOX_*`` settings, so tests are deterministic."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KVBOX_")}
    env["PYTHONUNBUFFERED"] = "1"
    if extra:
        env.update(extra)
    return env


def kvbox_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "kvbox", *args]


def run_kvbox(
    *args: str,
    input: bytes | None = None,
    timeout: float = 60.0,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run one ``kvbox`` command to completion (CLI client, fsck) and capture its output."""
    return subprocess.run(
        kvbox_argv(*args),
        input=input,
        capture_output=True,
        timeout=timeout,
        env=clean_env(env),
        check=False,
    )


def rss_kib(pid: int) -> int:
    """Resident set size of ``pid`` in KiB, from /proc/PID/status (VmRSS)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


# --- raw sockets ------------------------------------------------------------------------


class Wire:
    """One TCP connection with a read buffer: exact bytes out, exact bytes in."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()

    @classmethod
    def connect(cls, host: str, port: int, timeout: float = IO_TIMEOUT) -> Wire:
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(sock)

    def __enter__(self) -> Wire:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        data = self.sock.recv(1 << 16)
        if not data:
            return False
        self.buf += data
        return True

    def readline(self) -> bytes:
        """One reply line including its ``\\n``; EOFError if the server closed first."""
        while True:
            nl = self.buf.find(b"\n")
            if nl >= 0:
                line = bytes(self.buf[: nl + 1])
                del self.buf[: nl + 1]
                return line
            if not self._fill():
                raise EOFError(f"connection closed; partial line {bytes(self.buf[:200])!r}")

    def readexact(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise EOFError(f"connection closed after {len(self.buf)} of {n} bytes")
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_to_close(self, limit: int = 1 << 24) -> bytes:
        """Everything until the server closes (bounded by ``limit``)."""
        try:
            while len(self.buf) < limit and self._fill():
                pass
        except ConnectionResetError:
            pass
        out = bytes(self.buf)
        self.buf.clear()
        return out

    def request(self, line: bytes) -> bytes:
        """Send one line-only request and return its one-line reply."""
        self.send(line)
        return self.readline()

    def closed_by_peer(self, within: float) -> bool:
        """True if the server closes the connection (EOF or reset) within ``within`` s.

        Bytes that arrive meanwhile are kept in the buffer.
        """
        deadline = time.monotonic() + within
        old = self.sock.gettimeout()
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.sock.settimeout(left)
                try:
                    if not self._fill():
                        return True
                except TimeoutError:
                    return False
                except (ConnectionResetError, BrokenPipeError):
                    return True
        finally:
            self.sock.settimeout(old)

    def bget(self, key: str) -> tuple[bytes, str] | None:
        """BGET ``key``: (value, version) or None on NOTFOUND."""
        self.send(b"BGET " + key.encode() + b"\n")
        return self.read_bget_reply()

    def read_bget_reply(self) -> tuple[bytes, str] | None:
        head = self.readline()
        if head == b"NOTFOUND\n":
            return None
        m = re.fullmatch(rb"VALUE (\d+) (\S+)\n", head)
        assert m, f"bad BGET reply {head!r}"
        body = self.readexact(int(m.group(1)) + 1)
        assert body[-1:] == b"\n", "BGET payload not followed by newline"
        return body[:-1], m.group(2).decode()

    def bset(self, key: str, value: bytes) -> bytes:
        self.send(b"BSET %s %d\n" % (key.encode(), len(value)) + value + b"\n")
        return self.readline()


def oneshot(host: str, port: int, data: bytes, timeout: float = IO_TIMEOUT) -> bytes:
    """The course's mode: connect, send, half-close, read everything until the server closes."""
    with Wire.connect(host, port, timeout) as w:
        w.send(data)
        w.sock.shutdown(socket.SHUT_WR)
        return w.read_to_close()


def udp_exchange(host: str, port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """One datagram out, one datagram back (retried: UDP may drop on a busy box)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout / 3)
        s.connect((host, port))
        for _ in range(3):
            s.send(data)
            try:
                return s.recv(1 << 17)
            except TimeoutError:
                continue
    raise TimeoutError("no UDP reply")


def parse_ok_version(reply: bytes) -> str:
    m = OK_VERSION_RE.fullmatch(reply)
    assert m, f"expected 'OK <version>', got {reply!r}"
    return m.group(1).decode()


# --- deterministic data -------------------------------------------------------------------


def pseudo_random_chunks(seed: int, size: int, chunk: int = 1 << 20) -> Iterator[bytes]:
    """``size`` deterministic pseudo-random bytes, ``chunk`` at a time (never held whole)."""
    import random

    rng = random.Random(seed)
    left = size
    while left > 0:
        n = min(chunk, left)
        yield rng.randbytes(n)
        left -= n


def sha256_of_chunks(chunks: Iterator[bytes]) -> str:
    h = hashlib.sha256()
    for c in chunks:
        h.update(c)
    return h.hexdigest()


# --- the server process -------------------------------------------------------------------


class KvboxServer:
    """A ``kvbox serve`` child process on its own data directory and port.

    The port is chosen once and kept across ``restart()`` so clients and on-disk state
    line up with what a real restart looks like. ``close()`` (also run by the fixtures)
    always kills the process by PID if it is still alive.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        http_port: int | None = 0,
        log_path: Path | None = None,
        prefix: Sequence[str] = (),
    ) -> None:
        self.data_dir = Path(data_dir)
        #: A command the server runs under, e.g. ``prlimit --nofile=1024:1024``.
        self.prefix = list(prefix)
        self.extra_args = list(args)
        self.env = env
        self.host = host
        self._fixed_port = port is not None
        self.port = port if port is not None else free_port(host)
        self.http_port = http_port
        self.log_path = log_path or self.data_dir.parent / f"{self.data_dir.name}.server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._log_offset = 0
        self.exit_codes: list[int] = []

    # -- lifecycle --

    def argv(self) -> list[str]:
        argv = kvbox_argv(
            "serve", "--data", str(self.data_dir), "--host", self.host, "--kv-port", str(self.port)
        )
        if self.http_port is not None:
            argv += ["--http-port", str(self.http_port)]
        return self.prefix + argv + self.extra_args

    def start(self, timeout: float = STARTUP_TIMEOUT) -> KvboxServer:
        assert not self.running, "server already running"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for attempt in range(3):
            self._spawn()
            try:
                self._wait_ready(timeout)
                return self
            except _PortTaken:
                # Something bound the port between free_port() and the server: pick another.
                self._reap()
                if self._fixed_port or attempt == 2:
                    raise
                self.port = free_port(self.host)
        return self

    def _spawn(self) -> None:
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== start #{self.starts}: {' '.join(self.argv())}\n".encode())
            log.flush()
            self._log_offset = log.tell()
            self.proc = subprocess.Popen(
                self.argv(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=clean_env(self.env),
                preexec_fn=dies_with_us(),
            )

    def _wait_ready(self, timeout: float) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while True:
            text = self.new_log()
            if "kvbox: ready" in text:
                break
            if self.proc.poll() is not None:
                if "in use" in text.lower():
                    raise _PortTaken(text)
                raise AssertionError(
                    f"kvbox serve exited with {self.proc.returncode} before ready:\n{text}"
                )
            if time.monotonic() > deadline:
                self.close()
                raise AssertionError(f"kvbox serve not ready after {timeout} s:\n{text}")
            time.sleep(0.02)
        listens = {(m.group(1), m.group(2), int(m.group(3))) for m in _LISTEN_RE.finditer(text)}
        assert ("tcp", self.host, self.port) in listens, f"no tcp listen line in:\n{text}"
        if "kvbox: gwkv udp off" not in text:
            assert ("udp", self.host, self.port) in listens, f"no udp listen line in:\n{text}"
        # "ready" must mean ready: the first connection right after it must work.
        with Wire.connect(self.host, self.port) as w:
            assert w.request(b"PING\n") == b"OK PONG\n"

    def new_log(self) -> str:
        """Output of the current run (since the last start)."""
        with open(self.log_path, "rb") as fh:
            fh.seek(self._log_offset)
            return fh.read().decode(errors="replace")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def _reap(self, timeout: float = SHUTDOWN_TIMEOUT) -> int:
        assert self.proc is not None
        code = self.proc.wait(timeout)
        self.exit_codes.append(code)
        self.proc = None
        return code

    def kill(self, sig: int = signal.SIGKILL, timeout: float = SHUTDOWN_TIMEOUT) -> int:
        """Send ``sig`` to the server's PID and wait for it to exit; its exit code."""
        assert self.proc is not None and self.proc.poll() is None, "server not running"
        os.kill(self.proc.pid, sig)
        try:
            return self._reap(timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self._reap()
            raise AssertionError(
                f"server did not exit within {timeout} s of signal {sig}:\n{self.new_log()}"
            ) from None

    def terminate(self, timeout: float = SHUTDOWN_TIMEOUT) -> int:
        return self.kill(signal.SIGTERM, timeout)

    def restart(self, sig: int = signal.SIGTERM) -> KvboxServer:
        """Stop (gracefully unless ``sig`` says otherwise) and start on the same port."""
        if self.running:
            code = self.kill(sig)
            if sig in (signal.SIGTERM, signal.SIGINT):
                assert code == 0, f"graceful stop exited {code}:\n{self.new_log()}"
        return self.start()

    def close(self) -> None:
        """Kill the process by PID if it is still alive. Safe to call any number of times."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)
        self._reap()

    def __enter__(self) -> KvboxServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- talking to it --

    def rss_kib(self) -> int:
        return rss_kib(self.pid)

    @property
    def addr(self) -> str:
        return f"{self.host}:{self.port}"

    def connect(self, timeout: float = IO_TIMEOUT) -> Wire:
        return Wire.connect(self.host, self.port, timeout)

    def oneshot(self, data: bytes, timeout: float = IO_TIMEOUT) -> bytes:
        return oneshot(self.host, self.port, data, timeout)

    def udp(self, data: bytes, timeout: float = 5.0) -> bytes:
        return udp_exchange(self.host, self.port, data, timeout)

    def cli(
        self,
        *args: str,
        opts: Sequence[str] = (),
        input: bytes | None = None,
        timeout: float = 60.0,
    ) -> subprocess.CompletedProcess[bytes]:
        """``kvbox client <opts> HOST:PORT <args>``.

        Options go before the positionals: argparse cannot always place an option that
        follows an optional positional (``OP [KEY] [VALUE...]``).
        """
        return run_kvbox("client", *opts, self.addr, *args, input=input, timeout=timeout)

    def info(self) -> dict[str, str]:
        with self.connect() as w:
            head = w.request(b"INFO\n")
            m = re.fullmatch(rb"OK (\d+)\n", head)
            assert m, f"bad INFO reply {head!r}"
            out: dict[str, str] = {}
            for _ in range(int(m.group(1))):
                name, _, value = w.readline().decode().rstrip("\n").partition(" ")
                out[name] = value
            return out

    def stats(self) -> int:
        with self.connect() as w:
            reply = w.request(b"STATS\n")
        m = re.fullmatch(rb"OK (\d+)\n", reply)
        assert m, f"bad STATS reply {reply!r}"
        return int(m.group(1))


class _PortTaken(AssertionError):
    pass


def fsck(data_dir: Path, *flags: str, timeout: float = 120.0) -> subprocess.CompletedProcess[bytes]:
    return run_kvbox("fsck", "--data", str(data_dir), *flags, timeout=timeout)
