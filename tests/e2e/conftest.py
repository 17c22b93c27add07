"""Fixtures that hand tests a running ``kvbox serve`` process.

Layer: tests/e2e. Rules: every server a test gets is started through ``KvboxServer`` on a
fresh data directory under ``tmp_path`` and killed by PID at teardown, pass or fail; the
server's own output is printed at teardown so a failing test shows it.
"""

from __future__ import annotations

import os
import resource
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from _ports import free_port

from ._console import WEB_DOMAIN
from ._lab import Lab
from ._pages import PageServer
from ._s3 import S3Server, module_server
from ._server import KvboxServer

ServerFactory = Callable[..., KvboxServer]


@pytest.fixture(scope="session", autouse=True)
def _enough_file_descriptors() -> None:
    """Tests open thousands of sockets, and the server inherits this limit from us."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 8192 if hard == resource.RLIM_INFINITY else min(hard, 8192)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[ServerFactory]:
    """``make(*args, data_dir=None, env=None, start=True)`` -> a (started) KvboxServer."""
    made: list[KvboxServer] = []

    def make(
        *args: str,
        data_dir: Path | None = None,
        env: dict[str, str] | None = None,
        start: bool = True,
    ) -> KvboxServer:
        data = data_dir or tmp_path / f"data{len(made)}"
        srv = KvboxServer(data, args=args, env=env)
        made.append(srv)
        if start:
            srv.start()
        return srv

    yield make
    for srv in made:
        srv.close()
        print(f"--- server log {srv.log_path}\n{srv.log_text()[-20000:]}")


@pytest.fixture
def server(server_factory: ServerFactory) -> KvboxServer:
    """A server with default settings on a fresh data directory."""
    return server_factory()


@pytest.fixture(scope="module")
def chromium() -> str:
    """Debian's headless Chromium for the browser tests (CORS, websites); they skip,
    saying how to get it, where it is missing (``.ci/run`` installs it)."""
    exe = "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else shutil.which("chromium")
    if exe is None:
        pytest.skip("chromium not installed: apt-get install chromium")
    return exe


@pytest.fixture(scope="module")
def pages() -> Iterator[PageServer]:
    """A web app on another loopback origin for the browser tests (``_pages.py``)."""
    server = PageServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(10)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """One ``kvbox serve`` per module with the S3 port and ``--web-port`` (``_lab.py``)."""
    web_port = free_port()
    with module_server(tmp_path_factory, "lab", "--web-port", str(web_port)) as s:
        yield Lab(s, web_port)


@pytest.fixture(scope="module")
def lab_s3(lab: Lab) -> Any:
    """boto3 as root on the ``lab`` server."""
    return lab.srv.client()


@pytest.fixture(scope="module")
def mallory(lab: Lab) -> Any:
    """boto3 as a second kvbox user of the ``lab`` server, owner of nothing attacked."""
    return lab.srv.client(*lab.srv.new_user("mallory"))


@pytest.fixture(scope="session")
def console_srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """The one ``kvbox serve`` the console's three modules share (test_console_a11y,
    _browser, _http): starting a server costs seconds, and every test there works on
    buckets, users and sessions of its own names. With ``--web-port`` and
    ``--web-domain WEB_DOMAIN``, for the settings page's link to a website. A test that
    needs another flag (short sessions, TLS, a base path) starts its own."""
    web = ("--web-port", str(free_port()), "--web-domain", WEB_DOMAIN)
    with module_server(tmp_path_factory, "console", *web) as s:
        yield s
