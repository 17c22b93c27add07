"""A tiny web app for the browser tests: it serves HTML pages from another origin.

Layer: tests/e2e. Rules: ``PageServer`` listens on a loopback port of its own (so a page
it serves is a different origin from kvbox's), serves the pages a test registers by
path (``/name``; any query is ignored) and records what a page reports back with
``POST /report/<name>`` (JSON, same origin, no CORS involved). Nothing here imports kvbox.
"""

from __future__ import annotations

import http.server
import json
import threading
from typing import Any
from urllib.parse import urlsplit


class PageServer(http.server.ThreadingHTTPServer):
    """Serves registered HTML pages; ``POST /report/<name>`` records a page's result."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _PageHandler)
        self.pages: dict[str, bytes] = {}
        self.reports: dict[str, Any] = {}
        self.arrived = threading.Condition()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _PageHandler(http.server.BaseHTTPRequestHandler):
    server: PageServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        body = self.server.pages.get(urlsplit(self.path).path.lstrip("/"))
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        name = self.path.removeprefix("/report/")
        data = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with self.server.arrived:
            self.server.reports[name] = json.loads(data)
            self.server.arrived.notify_all()
        self.send_response(204)
        self.end_headers()
