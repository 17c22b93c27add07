"""Anonymous HTTP with curl, as a browser-less user of a public bucket would send it.

Layer: tests/e2e. Rules: no credentials, no proxy, bounded in time; the answer comes
back parsed (status, lower-cased headers, body) with the S3 error code at hand.
"""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Reply:
    """One HTTP answer as curl saw it; header names lower-cased."""

    status: int
    headers: dict[str, str]
    body: bytes

    def _xml(self, tag: str) -> str | None:
        if not self.body.startswith(b"<"):
            return None
        found: str | None = ET.fromstring(self.body).findtext(tag)
        return found

    @property
    def code(self) -> str | None:
        """The ``<Code>`` of an S3 error body, if there is one."""
        return self._xml("Code")

    @property
    def message(self) -> str | None:
        return self._xml("Message")


def curl(url: str, *args: str) -> Reply:
    """One anonymous request with curl: no credentials, no proxy, a 30 s limit."""
    exe = shutil.which("curl")
    assert exe, "curl is needed for these tests (apt-get install curl)"
    proc = subprocess.run(
        [exe, "-sS", "-i", "--noproxy", "*", "--max-time", "30", *args, url],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, f"curl {args} {url} failed: {proc.stderr!r}"
    raw = proc.stdout
    while True:  # skip any 1xx interim answer (100 Continue on a PUT)
        head, sep, rest = raw.partition(b"\r\n\r\n")
        assert sep, f"no header block in {raw[:300]!r}"
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        if not 100 <= status < 200:
            break
        raw = rest
    hdrs: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        hdrs[name.strip().lower()] = value.strip()
    return Reply(status, hdrs, rest)


def code(exc: Any) -> str:
    """The S3 error code of a botocore ``ClientError``."""
    return str(exc.response["Error"]["Code"])


def status(exc: Any) -> int:
    """The HTTP status of a botocore ``ClientError``."""
    return int(exc.response["ResponseMetadata"]["HTTPStatusCode"])
