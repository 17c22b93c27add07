"""A throw-away TLS certificate for 127.0.0.1, made with the openssl command.

Layer: tests/e2e. Rules: one day of validity, a subjectAltName for 127.0.0.1 (what
clients check), written under the test's own temporary directory.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def make_cert(where: Path) -> tuple[Path, Path]:
    """(certificate, private key) PEM files for 127.0.0.1."""
    openssl = shutil.which("openssl")
    assert openssl, "the openssl command is needed to make a test certificate"
    key, crt = where / "key.pem", where / "cert.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(crt)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return crt, key
