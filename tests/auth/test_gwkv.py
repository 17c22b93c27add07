"""kvbox.auth.gwkv: AUTH's proof, checked against OpenSSL's HMAC as the oracle."""

from __future__ import annotations

import doctest
import re
import shutil
import subprocess

import pytest

from kvbox.auth import gwkv
from kvbox.auth.gwkv import new_nonce, prove, same, verify


@pytest.mark.parametrize(
    ("secret", "access_key"),
    [("secret", "AK"), ("kvbox-test-secret-key/not+a+real+one", "KVTESTACCESSKEY00001")],
)
def test_proof_is_openssl_hmac_sha256(secret: str, access_key: str) -> None:
    openssl = shutil.which("openssl")
    assert openssl, "the openssl command is the oracle here"
    nonce = new_nonce()
    message = f"kvbox-gwkv-auth-1\n{access_key}\n{nonce}".encode()
    done = subprocess.run(
        [openssl, "dgst", "-sha256", "-hmac", secret, "-hex"],
        input=message,
        capture_output=True,
        check=True,
    )
    expected = done.stdout.decode().split("= ")[-1].strip()
    assert prove(secret, access_key, nonce) == expected


def test_verify_and_nonces() -> None:
    nonce = new_nonce()
    assert re.fullmatch(r"[0-9a-f]{32}", nonce) and nonce != new_nonce()
    good = prove("s", "ak", nonce)
    assert verify("s", "ak", nonce, good) and verify("s", "ak", nonce, good.upper())
    assert not verify("t", "ak", nonce, good)
    assert not verify("s", "other", nonce, good)
    assert not verify("s", "ak", new_nonce(), good)
    assert same("abc", "abc") and not same("abc", "abd")


def test_doctests() -> None:
    assert doctest.testmod(gwkv).failed == 0
