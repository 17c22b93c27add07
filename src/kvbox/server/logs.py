"""The server's log output: one handler on stdout, plain or JSON, and the access log on it.

Layer: server. Rules: every line -- start-up facts aside (``app.announce``), log records
and access lines alike -- goes through the one handler ``configure_logging`` installs, in
one of two formats (``--log-format``), with UTC timestamps; the access log writes under
that handler's lock so the two never interleave mid-line. Access lines are INFO: a
``--log-level`` above INFO, or ``--access-log off``, turns them off.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from kvbox.server.accesslog import AccessLog


def _utc(created: float, msecs: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(msecs):03d}Z"


class _PlainFormatter(logging.Formatter):
    """``2026-12-06T03:01:02.123Z INFO kvbox.gwkv: message``, as access lines start."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _utc(record.created, record.msecs)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": _utc(record.created, record.msecs),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out)


def configure_logging(fmt: str, level: str) -> logging.StreamHandler[Any]:
    """Send every log record to stdout in ``fmt`` ("plain" or "json") from ``level`` up."""
    handler: logging.StreamHandler[Any] = logging.StreamHandler(sys.stdout)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(_PlainFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    return handler


def open_access_log(
    enabled: bool, fmt: str, level: str, handler: logging.StreamHandler[Any]
) -> AccessLog | None:
    """The started access log on ``handler``'s stream, or None when it is off."""
    if not enabled or logging.getLevelName(level.upper()) > logging.INFO:
        return None
    stream = handler.stream

    def write(text: str) -> None:
        stream.write(text)
        stream.flush()

    assert handler.lock is not None  # created by Handler.__init__
    access = AccessLog(write, fmt, lock=handler.lock)
    access.start()
    return access
