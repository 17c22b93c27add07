"""The console's own answers: JSON replies, refusals, and reading a JSON request body.

Layer: console (async only to read a body). Rules: every answer of the console's own
endpoints is JSON; a failure is ``{"error": code, "message": text}`` with its HTTP status,
raised anywhere as ``Refused`` and turned into that reply once, by the door.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from kvbox.errors import KvboxError
from kvbox.s3door.handlers.common import read_small
from kvbox.s3door.types import S3Request, S3Response

#: Largest JSON body the console's own endpoints read (a 20 KB policy with room to spare).
MAX_JSON: Final = 64 * 1024


def json_reply(status: int, payload: Any, headers: Mapping[str, str] | None = None) -> S3Response:
    h = {"Content-Type": "application/json", "Cache-Control": "no-store", **(headers or {})}
    return S3Response(status, h, json.dumps(payload).encode())


def error_reply(status: int, code: str, message: str, **extra: str) -> S3Response:
    return json_reply(status, {"error": code, "message": message}, extra)


class Refused(Exception):
    """A console request refused before any S3 call: becomes ``error_reply``."""

    def __init__(self, status: int, code: str, message: str, **headers: str) -> None:
        super().__init__(message)
        self.code = code
        self.response = error_reply(status, code, message, **headers)


async def read_json(req: S3Request) -> dict[str, Any]:
    ctype = (req.header("content-type") or "").split(";")[0].strip().lower()
    if ctype != "application/json":
        raise Refused(415, "UnsupportedMediaType", "send the body as application/json")
    try:
        raw = await read_small(req, MAX_JSON)
        doc = json.loads(raw)
    except (ValueError, KvboxError) as exc:
        raise Refused(400, "BadRequest", f"the body is not a JSON object: {exc}") from None
    except Exception as exc:  # S3Error from read_small: too large
        raise Refused(413, "TooLarge", str(exc) or "the body is too large") from None
    if not isinstance(doc, dict):
        raise Refused(400, "BadRequest", "the body must be a JSON object")
    return doc


def pop_header(headers: dict[str, str], name: str) -> str | None:
    """Remove ``name`` (any case) from a response's headers; its last value, if any."""
    found = None
    for k in [k for k in headers if k.lower() == name]:
        found = headers.pop(k)
    return found
