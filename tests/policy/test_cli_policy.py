"""``kvbox policy validate|explain``: offline through ``run()``, the server side
(``kvbox.s3door.explain.explain``) on a real in-memory Store, and the ``--server`` path
against a local HTTP endpoint that verifies the SigV4 signature and answers with
``explain``."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import json
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from kvbox.auth.sigv4 import verify_request
from kvbox.cli import policy as cli
from kvbox.core.blob.memory import MemoryBlobStore
from kvbox.core.meta.memory import MemoryMetaStore
from kvbox.core.model import Versioning
from kvbox.core.store import Store
from kvbox.s3.xml import PublicAccessBlockConfiguration
from kvbox.s3door.explain import EXPLAIN_PATH, explain

POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "PublicRead",
            "Effect": "Allow",
            "Principal": "*",
            "Action": "s3:GetObject",
            "Resource": "arn:aws:s3:::b/public/*",
        },
        {
            "Sid": "TlsOnly",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": ["arn:aws:s3:::b", "arn:aws:s3:::b/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        },
    ],
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kvbox")
    cli.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser


def kvbox(*argv: str) -> int:
    args = _parser().parse_args(list(argv))
    status: int = args.func(args)
    return status


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(POLICY, indent=2))
    return path


# --- validate -------------------------------------------------------------------------------


def test_validate_ok(policy_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert kvbox("policy", "validate", "--policy", str(policy_file), "--bucket", "b") == 0
    assert capsys.readouterr().out == "valid policy for bucket b: 2 statements, public\n"


def test_validate_refuses_with_the_message(
    policy_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert kvbox("policy", "validate", "--policy", str(policy_file), "--bucket", "c") == 1
    err = capsys.readouterr().err
    assert err.startswith('invalid policy: statement #0 (Sid "PublicRead"): Policy has invalid')
    assert "is not in bucket 'c'" in err


def test_validate_from_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    one = {
        "Statement": {
            "Effect": "Deny",
            "Principal": {"AWS": "bob"},
            "Action": "s3:*",
            "Resource": "arn:aws:s3:::b/*",
        }
    }
    fake = io.TextIOWrapper(io.BytesIO(json.dumps(one).encode()))
    monkeypatch.setattr("sys.stdin", fake)
    assert kvbox("policy", "validate", "--policy", "-", "--bucket", "b") == 0
    assert capsys.readouterr().out == "valid policy for bucket b: 1 statement, not public\n"


def test_validate_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert kvbox("policy", "validate", "--policy", str(tmp_path / "nope"), "--bucket", "b") == 2
    assert capsys.readouterr().err.startswith("kvbox policy: cannot read ")


# --- explain, offline -------------------------------------------------------------------------


def _explain(policy_file: Path | None, *extra: str) -> int:
    args = ["policy", "explain"]
    if policy_file is not None:
        args += ["--policy", str(policy_file)]
    return kvbox(*args, *extra)


def test_explain_denied_prints_statement_and_trace(
    policy_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = _explain(
        policy_file,
        "--principal", "anonymous",
        "--action", "s3:GetObject",
        "--resource", "arn:aws:s3:::b/public/cat.png",
        "--context", "aws:SecureTransport=false",
    )  # fmt: skip
    out = capsys.readouterr().out
    assert status == 1
    lines = out.splitlines()
    assert lines[:5] == [
        "DENIED (policy-deny)",
        "  principal: anonymous",
        "  action:    s3:GetObject",
        "  resource:  arn:aws:s3:::b/public/cat.png",
        '  reason:    statement #1 (Sid "TlsOnly") denies s3:GetObject on '
        "arn:aws:s3:::b/public/cat.png by anonymous",
    ]
    assert lines[5] == '  deciding statement: #1 (Sid "TlsOnly")'
    assert '          "aws:SecureTransport": "false"' in lines
    assert "  bucket b: owner root, ACL private, public policy" in lines
    assert '    statement #0 (Sid "PublicRead") Allow: applies' in lines


def test_explain_allowed(policy_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = _explain(
        policy_file,
        "--principal", "alice",
        "--action", "s3:GetObject",
        "--resource", "arn:aws:s3:::b/public/cat.png",
        "--context", "aws:SecureTransport=true",
    )  # fmt: skip
    assert status == 0
    assert capsys.readouterr().out.startswith("ALLOWED (policy-allow)\n")


def test_explain_without_policy_uses_acls_and_flags(capsys: pytest.CaptureFixture[str]) -> None:
    common = [
        "--principal",
        "anonymous",
        "--action",
        "s3:GetObject",
        "--resource",
        "arn:aws:s3:::b/k",
    ]
    assert _explain(None, *common, "--object-acl", "public-read") == 0
    assert capsys.readouterr().out.startswith("ALLOWED (object-acl)")
    status = _explain(
        None, *common, "--object-acl", "public-read", "--public-access-block", "ignore-public-acls"
    )
    assert status == 1
    out = capsys.readouterr().out
    assert out.startswith("DENIED (public-access-block)")
    assert "public access block IgnorePublicAcls" in out and "no bucket policy" in out


def test_explain_owner_and_bucket_option(
    policy_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = _explain(
        None,
        "--principal", "olivia", "--owner", "olivia",
        "--action", "s3:PutObject", "--resource", "arn:aws:s3:::b/k",
    )  # fmt: skip
    assert status == 0
    assert capsys.readouterr().out.startswith("ALLOWED (owner)")


def test_explain_json(policy_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = _explain(
        policy_file,
        "--json",
        "--principal", "root",
        "--action", "s3:DeleteBucketPolicy",
        "--resource", "arn:aws:s3:::b",
        "--context", "aws:SecureTransport=false",
        "--context", "s3:RequestObjectTagKeys=a",
        "--context", "s3:RequestObjectTagKeys=b",
    )  # fmt: skip
    assert status == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["allowed"], data["decided_by"], data["statement"]) == (True, "root", None)
    assert data["context"]["s3:RequestObjectTagKeys"] == ["a", "b"]
    assert data["context"]["aws:PrincipalType"] == "Account"
    assert "aws:CurrentTime" in data["context"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--context", "novalue"], "--context wants KEY=VALUE, not 'novalue'"),
        (["--public-access-block", "BlockEverything"], "unknown public access block flag"),
        (["--server", "http://127.0.0.1:1", "--policy", "x"], "--policy is for offline use"),
    ],
)
def test_explain_usage_errors(
    extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status = kvbox(
        "policy", "explain", "--principal", "a", "--action", "s3:GetObject",
        "--resource", "arn:aws:s3:::b/k", *extra,
    )  # fmt: skip
    assert status == 2
    assert message in capsys.readouterr().err


def test_explain_bad_policy_and_resource(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"Statement": []}')
    common = ["--principal", "a", "--action", "s3:GetObject"]
    assert _explain(bad, *common, "--resource", "arn:aws:s3:::b/k") == 2
    assert "invalid policy: policy: Statement must be" in capsys.readouterr().err
    assert _explain(None, *common, "--resource", "b/k") == 2
    assert "--resource must be arn:aws:s3:::<bucket>" in capsys.readouterr().err


def test_server_mode_needs_root_credentials(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("KVBOX_ROOT_ACCESS_KEY", raising=False)
    monkeypatch.delenv("KVBOX_ROOT_SECRET_KEY", raising=False)
    status = kvbox(
        "policy", "explain", "--server", "http://127.0.0.1:9",
        "--principal", "a", "--action", "s3:GetObject", "--resource", "arn:aws:s3:::b/k",
    )  # fmt: skip
    assert status == 2
    assert "needs KVBOX_ROOT_ACCESS_KEY" in capsys.readouterr().err


def test_registered_in_main_once_the_lead_wires_it() -> None:
    from kvbox.cli import main

    if "policy" not in main.SUBCOMMANDS:
        pytest.skip("kvbox.cli.main does not register the policy subcommand yet")
    args = main.build_parser().parse_args(["policy", "validate", "--policy", "-", "--bucket", "b"])
    assert args.func is cli.run


# --- the server side: explain() on a Store -----------------------------------------------------


async def _seed(store: Store) -> dict[str, str]:
    """Bucket b (owner olivia, versioned) with a policy, a public-read ACL and a PAB; keys
    with several versions. Returns version ids by name."""
    await store.create_bucket("b", owner="olivia", versioning=Versioning.ENABLED)
    pab = PublicAccessBlockConfiguration(restrict_public_buckets=True).to_xml().decode()
    await store.set_bucket_attrs(
        "b", {"policy": json.dumps(POLICY), "acl": "public-read", "pab": pab}
    )
    old = await store.put("b", "doc", b"v1", attrs={"acl": "public-read"})
    await store.put("b", "doc", b"v2", attrs={"acl": "private"})
    await store.put("b", "gone", b"x", attrs={"acl": "public-read"})
    await store.delete("b", "gone")
    await store.create_bucket("broken", owner="root")
    await store.set_bucket_attrs("broken", {"policy": '{"Statement": []}'})
    return {"old": old.version_id}


@pytest.fixture
async def store() -> AsyncIterator[Store]:
    s = Store(MemoryMetaStore(), MemoryBlobStore())
    await s.open()
    yield s
    await s.close()


async def test_explain_reads_bucket_settings(store: Store) -> None:
    ids = await _seed(store)
    ask = {"principal": None, "action": "s3:GetObject", "context": {"aws:SecureTransport": "true"}}

    newest = await explain(store, {**ask, "resource": "arn:aws:s3:::b/doc"})
    assert (newest["allowed"], newest["decided_by"]) == (False, "default-deny")
    assert newest["bucket"]["object_acl"] == "private" and newest["bucket"]["owner"] == "olivia"
    assert newest["bucket"]["public_access_block"]["RestrictPublicBuckets"] is True
    assert newest["context"]["aws:SecureTransport"] == "true"

    old = await explain(store, {**ask, "resource": "arn:aws:s3:::b/doc", "version_id": ids["old"]})
    assert (old["allowed"], old["decided_by"]) == (True, "object-acl")

    gone = await explain(store, {**ask, "resource": "arn:aws:s3:::b/gone"})
    assert gone["bucket"]["object_acl"] is None and not gone["allowed"]

    # the policy's public Allow is cut off for anonymous requests by RestrictPublicBuckets
    public = await explain(store, {**ask, "resource": "arn:aws:s3:::b/public/x"})
    assert (public["allowed"], public["decided_by"]) == (False, "public-access-block")
    user = await explain(
        store, {**ask, "principal": "alice", "resource": "arn:aws:s3:::b/public/x"}
    )
    assert (user["allowed"], user["decided_by"], user["statement"]["sid"]) == (
        True,
        "policy-allow",
        "PublicRead",
    )

    listing = await explain(store, {**ask, "action": "s3:ListBucket", "resource": "arn:aws:s3:::b"})
    assert (listing["allowed"], listing["decided_by"]) == (True, "bucket-acl")

    http = await explain(
        store,
        {**ask, "principal": "anonymous", "action": "s3:ListBucket", "resource": "arn:aws:s3:::b",
         "context": {"aws:SecureTransport": "false"}},
    )  # fmt: skip
    assert (http["decided_by"], http["statement"]["index"]) == ("policy-deny", 1)


@pytest.mark.parametrize(
    ("request_body", "error"),
    [
        ({"action": "s3:GetObject", "resource": "arn:aws:s3:::nope/k"}, "no such bucket: nope"),
        ({"action": "s3:GetObject", "resource": "b/k"}, "resource must be arn:aws:s3:::"),
        ({"action": "s3:GetObject", "resource": "arn:aws:s3:::"}, "names no bucket"),
        ({"resource": "arn:aws:s3:::b/k"}, "action is required"),
        ({"action": "s3:GetObject"}, "resource is required"),
        (
            {"action": "s3:GetObject", "resource": "arn:aws:s3:::b/k", "principal": 5},
            "principal must be",
        ),
        (
            {"action": "s3:GetObject", "resource": "arn:aws:s3:::b/k", "context": []},
            "context must be an object",
        ),
        (
            {"action": "s3:GetObject", "resource": "arn:aws:s3:::b/k", "context": {"k": 1}},
            "context value of 'k'",
        ),
        (
            {"action": "s3:GetObject", "resource": "arn:aws:s3:::b/k", "version_id": 3},
            "version_id must be a string",
        ),
        (
            {"action": "s3:GetObject", "resource": "arn:aws:s3:::broken/k"},
            "the stored bucket policy does not parse",
        ),
    ],
)
async def test_explain_errors_are_json(
    store: Store, request_body: dict[str, Any], error: str
) -> None:
    await _seed(store)
    answer = await explain(store, request_body)
    assert list(answer) == ["error"] and error in answer["error"]


# --- --server against a signed endpoint --------------------------------------------------------

ACCESS, SECRET = "KVTESTROOTACCESSKEY0", "test-secret-key-for-the-policy-cli-tests"


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        headers = [(k.lower(), v) for k, v in self.headers.items()]
        try:
            verify_request(
                "POST", self.path, [], headers, None,
                lambda key: SECRET if key == ACCESS else None, datetime.now(UTC),
            )  # fmt: skip
            assert self.path == EXPLAIN_PATH
            assert hashlib.sha256(body).hexdigest() == self.headers["x-amz-content-sha256"]
        except Exception as exc:  # the test reads the refusal from the CLI's output
            self._send(403, {"refused": str(exc)})
            return
        self._send(200, asyncio.run(_answer(json.loads(body))))

    def _send(self, status: int, data: dict[str, Any]) -> None:
        raw = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, format: str, *args: Any) -> None:
        pass


async def _answer(request: dict[str, Any]) -> dict[str, Any]:
    s = Store(MemoryMetaStore(), MemoryBlobStore())
    await s.open()
    try:
        await _seed(s)
        return await explain(s, request)
    finally:
        await s.close()


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


def test_server_mode(
    server: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KVBOX_ROOT_ACCESS_KEY", ACCESS)
    monkeypatch.setenv("KVBOX_ROOT_SECRET_KEY", SECRET)
    common = [
        "policy",
        "explain",
        "--server",
        server,
        "--principal",
        "alice",
        "--action",
        "s3:GetObject",
    ]
    status = kvbox(
        *common, "--resource", "arn:aws:s3:::b/public/x", "--context", "aws:SecureTransport=true"
    )
    out = capsys.readouterr().out
    assert status == 0, out
    assert out.startswith("ALLOWED (policy-allow)\n")
    assert (
        "  bucket b: owner olivia, ACL public-read, public policy, "
        "public access block RestrictPublicBuckets" in out
    )

    assert kvbox(*common, "--resource", "arn:aws:s3:::nope/x") == 2
    assert capsys.readouterr().err == "kvbox policy: no such bucket: nope\n"

    monkeypatch.setenv("KVBOX_ROOT_SECRET_KEY", "wrong")
    assert kvbox(*common, "--resource", "arn:aws:s3:::b/x") == 2
    err = capsys.readouterr().err
    assert "the server refused: HTTP 403" in err and "refused" in err


def test_server_unreachable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KVBOX_ROOT_ACCESS_KEY", ACCESS)
    monkeypatch.setenv("KVBOX_ROOT_SECRET_KEY", SECRET)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    port = httpd.server_address[1]
    httpd.server_close()  # nothing listens there any more
    status = kvbox(
        "policy", "explain", "--server", f"http://127.0.0.1:{port}",
        "--principal", "a", "--action", "s3:GetObject", "--resource", "arn:aws:s3:::b/k",
    )  # fmt: skip
    assert status == 2
    assert f"cannot reach http://127.0.0.1:{port}" in capsys.readouterr().err


def test_kvbox_command_exit_statuses(policy_file: Path) -> None:
    """The installed entry point: exit 0 allowed, 1 denied, 2 could not run."""
    from kvbox.cli import main

    if "policy" not in main.SUBCOMMANDS:
        pytest.skip("kvbox.cli.main does not register the policy subcommand yet")
    base = [sys.executable, "-m", "kvbox", "policy", "explain", "--policy", str(policy_file)]
    ask = ["--action", "s3:GetObject", "--resource", "arn:aws:s3:::b/public/x"]

    def status(*extra: str) -> tuple[int, str]:
        done = subprocess.run([*base, *ask, *extra], capture_output=True, text=True, timeout=60)
        return done.returncode, done.stdout + done.stderr

    assert status("--principal", "anonymous", "--context", "aws:SecureTransport=true")[0] == 0
    code, out = status("--principal", "anonymous", "--context", "aws:SecureTransport=false")
    assert code == 1 and out.startswith("DENIED (policy-deny)")
    assert status("--principal", "anonymous", "--context", "oops")[0] == 2
