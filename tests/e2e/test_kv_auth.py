"""GW-KV authentication (``--kv-auth``) against a real ``kvbox serve``.

Layer: tests/e2e. Raw sockets for the protocol's own lines (what nc sends), the
``kvbox.Client`` and ``kvbox client`` for the challenge-response, users and keys made
with ``kvbox admin``, and boto3 to check that a GW-KV request is allowed exactly when
the same S3 request is (one access decision: docs/protocol.md §5).
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError  # type: ignore[import-untyped]

from kvbox.client import AsyncClient, Client
from kvbox.errors import RemoteError

from ._s3 import ACCESS_KEY, SECRET_KEY, S3Server, module_server
from ._server import KvboxServer, parse_ok_version, run_kvbox, udp_exchange

ROOT_ENV = {"KVBOX_ROOT_ACCESS_KEY": ACCESS_KEY, "KVBOX_ROOT_SECRET_KEY": SECRET_KEY}
FIRST = b"ERR DENIED authenticate first: AUTH <access key>\n"
DENIED = b"ERR DENIED access denied\n"


def talk(port: int, data: bytes, wait: float = 0.5) -> bytes:
    """Send ``data`` on a new connection; everything the server says within ``wait`` s
    of silence, or until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        s.settimeout(wait)
        out = bytearray()
        try:
            while chunk := s.recv(65536):
                out += chunk
        except TimeoutError:
            pass
        return bytes(out)


def admin(srv: S3Server, *args: str) -> str:
    done = run_kvbox("admin", "--server", srv.endpoint, *args, env=ROOT_ENV)
    assert done.returncode == 0, done.stderr
    return done.stdout.decode()


def new_key(srv: S3Server, user: str) -> tuple[str, str]:
    out = admin(srv, "key", "add", user)
    access = re.search(r"access key: (\S+)", out)
    secret = re.search(r"secret key: (\S+)", out)
    assert access and secret, out
    return access.group(1), secret.group(1)


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with module_server(tmp_path_factory, "kvauth", "--kv-auth", "required") as s:
        yield s


def test_required_refuses_everything_but_auth_ping_and_quit(srv: S3Server) -> None:
    port = srv.server.port
    reply = talk(port, b"PING\nGET a\nSET a 1\nSTATS\nINFO\nBSET b 3\nxyz\nQUIT\n")
    assert reply == b"OK PONG\n" + FIRST * 5 + b"OK BYE\n"
    assert "kvbox: gwkv udp off (--kv-udp)" in srv.server.log_text()


def test_plain_auth_from_loopback_and_challenge_response(srv: S3Server) -> None:
    port = srv.server.port
    reply = talk(port, f"AUTH {ACCESS_KEY} {SECRET_KEY}\nSET k v\nGET k\n".encode())
    lines = reply.splitlines(keepends=True)
    assert lines[0] == b"OK root\n"
    parse_ok_version(lines[1])
    assert lines[2] == b"VALUE v\n"
    with Client("127.0.0.1", port, access_key=ACCESS_KEY, secret_key=SECRET_KEY) as kv:
        assert kv.principal == "root"
        assert kv.get("k") == b"v"


async def test_async_client_authenticates(srv: S3Server) -> None:
    async with AsyncClient(
        "127.0.0.1", srv.server.port, access_key=ACCESS_KEY, secret_key=SECRET_KEY
    ) as kv:
        assert kv.principal == "root"
        await kv.set("async", "yes")
        assert await kv.get("async") == b"yes"


def test_wrong_credentials_and_replayed_proofs_are_refused(srv: S3Server) -> None:
    port = srv.server.port
    with pytest.raises(RemoteError) as exc:
        Client("127.0.0.1", port, access_key=ACCESS_KEY, secret_key="not-the-secret")
    assert exc.value.code == "DENIED"
    # A proof answers the nonce of its own connection only, once.
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"AUTH {ACCESS_KEY}\n".encode())
        nonce = s.recv(100).decode().split()[1]
    from kvbox.auth.gwkv import prove

    proof = prove(SECRET_KEY, ACCESS_KEY, nonce)
    replay = f"AUTH {ACCESS_KEY} {nonce} {proof}\n".encode()
    assert talk(port, replay) == (
        b"ERR DENIED no such challenge on this connection: send AUTH <access key>\n"
    )
    # Three failures close the connection.
    bad = f"AUTH {ACCESS_KEY} wrong\n".encode() * 3
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(bad)
        s.settimeout(5)
        got = bytearray()
        while chunk := s.recv(65536):
            got += chunk
    assert bytes(got) == b"ERR DENIED invalid credentials\n" * 3


def test_a_user_gets_the_same_decision_as_over_s3(srv: S3Server) -> None:
    """alice may read kv/shared* and write kv/alice*: over GW-KV exactly what boto3 with
    her key may do; a key she may read but that does not exist is DENIED (not NOTFOUND),
    as S3 answers 403 to who may not list; STATS needs s3:ListBucket, INFO root."""
    root = srv.client()
    root.put_object(Bucket="kv", Key="shared1", Body=b"for alice")
    root.put_object(Bucket="kv", Key="secret", Body=b"not for alice")
    admin(srv, "user", "add", "alice")
    access, secret = new_key(srv, "alice")
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": "alice"},
                "Action": "s3:GetObject",
                "Resource": "arn:aws:s3:::kv/shared*",
            },
            {
                "Effect": "Allow",
                "Principal": {"AWS": "alice"},
                "Action": "s3:PutObject",
                "Resource": "arn:aws:s3:::kv/alice*",
            },
        ],
    }
    root.put_bucket_policy(Bucket="kv", Policy=json.dumps(policy))
    s3 = srv.client(access_key=access, secret_key=secret)
    with Client("127.0.0.1", srv.server.port, access_key=access, secret_key=secret) as kv:
        assert kv.principal == "alice"
        assert kv.get("shared1") == b"for alice"
        assert s3.get_object(Bucket="kv", Key="shared1")["Body"].read() == b"for alice"
        with pytest.raises(RemoteError, match="DENIED"):
            kv.get("secret")
        with pytest.raises(ClientError):
            s3.get_object(Bucket="kv", Key="secret")
        kv.set("alice1", "mine")
        with pytest.raises(RemoteError, match="DENIED"):
            kv.set("bob1", "not mine")
        with pytest.raises(RemoteError, match="DENIED"):
            kv.get("sharedmissing")  # may read, may not list: absence is not told
        with pytest.raises(RemoteError, match="DENIED"):
            kv.stats()
        with pytest.raises(RemoteError, match="DENIED"):
            kv.info()
        with pytest.raises(RemoteError, match="DENIED"):
            kv.mget(["shared1", "secret"])
    assert root.get_object(Bucket="kv", Key="alice1")["Body"].read() == b"mine"
    assert "Contents" not in root.list_objects_v2(Bucket="kv", Prefix="bob")
    # Root is not refused by a policy that names only alice.
    with Client("127.0.0.1", srv.server.port, access_key=ACCESS_KEY, secret_key=SECRET_KEY) as kv:
        assert kv.get("secret") == b"not for alice"
    root.delete_bucket_policy(Bucket="kv")


def test_kvbox_client_authenticates_from_the_environment(srv: S3Server, tmp_path: Path) -> None:
    addr = srv.server.addr
    refused = run_kvbox("client", addr, "get", "k")
    assert refused.returncode != 0 and b"DENIED" in refused.stderr
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET_KEY + "\n")
    done = run_kvbox(
        "client", "--access-key", ACCESS_KEY, "--secret-key-file", str(secret_file), addr,
        "set", "fromcli", "hello",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    done = run_kvbox(
        "client", addr, "get", "fromcli",
        env={"KVBOX_ACCESS_KEY": ACCESS_KEY, "KVBOX_SECRET_KEY": SECRET_KEY},
    )  # fmt: skip
    assert done.returncode == 0 and done.stdout == b"hello\n", done


def test_optional_lets_the_public_do_what_the_policy_says(tmp_path: Path) -> None:
    """--kv-auth optional with --kv-udp on: an unauthenticated connection (and every
    datagram) is anonymous -- it may read kv/pub* (a public-read policy), nothing else."""
    srv = S3Server(tmp_path / "data", "--kv-auth", "optional", "--kv-udp", "on").start()
    try:
        root = srv.client()
        root.put_object(Bucket="kv", Key="pub1", Body=b"public")
        root.put_object(Bucket="kv", Key="priv", Body=b"private")
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": "s3:GetObject",
                    "Resource": "arn:aws:s3:::kv/pub*",
                }
            ],
        }
        root.put_bucket_policy(Bucket="kv", Policy=json.dumps(policy))
        port = srv.server.port
        reply = talk(port, b"GET pub1\nGET priv\nSET pub2 x\nGET pubmissing\n")
        assert reply == b"VALUE public\n" + DENIED * 3
        assert udp_exchange("127.0.0.1", port, b"GET pub1\n") == b"VALUE public\n"
        assert udp_exchange("127.0.0.1", port, b"SET pub3 x\n") == DENIED
        with Client("127.0.0.1", port, access_key=ACCESS_KEY, secret_key=SECRET_KEY) as kv:
            assert kv.get("priv") == b"private"
            kv.set("pub2", "by root")
    finally:
        srv.close()


def test_default_is_off_on_loopback_and_required_beyond(tmp_path: Path) -> None:
    """Without --kv-auth: the course's open protocol while GW-KV listens on loopback
    only (AUTH still answers, checking the keys), required once it listens beyond."""
    local = S3Server(tmp_path / "local").start()
    try:
        assert "(auth off)" in local.server.log_text()
        reply = talk(local.server.port, f"SET a 1\nAUTH {ACCESS_KEY} {SECRET_KEY}\n".encode())
        assert reply.endswith(b"OK root\n") and reply.startswith(b"OK ")
    finally:
        local.close()
    wide = KvboxServer(tmp_path / "wide", host="0.0.0.0", args=["--kv-udp", "on"], env=ROOT_ENV)
    try:
        wide.start()
        assert "(auth required)" in wide.log_text()
        assert talk(wide.port, b"GET a\n") == FIRST
    finally:
        wide.close()
