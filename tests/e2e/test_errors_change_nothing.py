"""An error means nothing changed, on every door (issue 10: a UDP datagram answered
``ERR TOOBIG use TCP`` had still applied its SET).

Layer: tests/e2e. Each case sends a request that is refused -- over UDP, GW-KV TCP and
S3 -- and then reads the key through another door to see that the refused write left
no trace (the old value, the old version id, or nothing).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator

import pytest
from botocore.exceptions import ClientError  # type: ignore[import-untyped]

from ._s3 import S3Server, module_server
from ._server import OK_VERSION_RE, parse_ok_version

TOOBIG = b"ERR TOOBIG use TCP\n"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with module_server(tmp_path_factory, "unchanged") as s:
        yield s


def _version(srv: S3Server, key: str) -> bytes:
    with srv.server.connect() as w:
        return w.request(f"VERSION {key}\n".encode())


# --- UDP ---------------------------------------------------------------------------------


def test_udp_read_too_big_for_its_datagram_leaves_the_writes_before_it_answered(
    srv: S3Server,
) -> None:
    """The issue's datagram: a SET, then reads whose replies don't all fit. The SET is
    applied and says so; the read that doesn't fit gets its own TOOBIG."""
    big = b"b" * 1024
    parse_ok_version(srv.server.udp(b"SET big " + big + b"\n"))
    reply = srv.server.udp(b"SET fresh 1\nGET big\nGET big\n")
    lines = reply.split(b"\n")
    version = parse_ok_version(lines[0] + b"\n")
    assert lines[1] == b"VALUE " + big
    assert lines[2] + b"\n" == TOOBIG
    assert _version(srv, "fresh") == f"OK {version}\n".encode()


def test_udp_writes_whose_replies_cannot_fit_are_not_run(srv: S3Server) -> None:
    """2,500 CAS in one datagram: their replies (up to 36 bytes each) could never
    fit a reply datagram, so the datagram is refused whole before any of them runs."""
    keys = [f"c{i}" for i in range(2500)]
    datagram = b"".join(f"CAS {k} - v\n".encode() for k in keys)
    assert len(datagram) < 65_507
    assert srv.server.udp(datagram) == TOOBIG
    for k in (keys[0], keys[1250], keys[-1]):
        assert _version(srv, k) == b"NOTFOUND\n"


def test_udp_write_after_a_read_that_does_not_fit_still_runs(srv: S3Server) -> None:
    big = b"x" * 1000
    parse_ok_version(srv.server.udp(b"SET bigger " + big + b"\n"))
    reply = srv.server.udp(b"GET bigger\nGET bigger\nSET after 1\n")
    lines = reply.split(b"\n")
    assert lines[0] == b"VALUE " + big
    assert lines[1] + b"\n" == TOOBIG
    version = parse_ok_version(lines[2] + b"\n")
    assert _version(srv, "after") == f"OK {version}\n".encode()


def test_udp_streamed_bset_is_refused_whole(srv: S3Server) -> None:
    reply = srv.server.udp(b"SET before x\nBSET blob 2000000\n" + b"z" * 30_000)
    assert reply == TOOBIG
    assert _version(srv, "before") == b"NOTFOUND\n"
    assert _version(srv, "blob") == b"NOTFOUND\n"


# --- GW-KV over TCP -------------------------------------------------------------------------


def test_gwkv_refused_writes_keep_the_old_value(srv: S3Server) -> None:
    with srv.server.connect() as w:
        old = parse_ok_version(w.request(b"SET keep old\n"))
        # a MULTISET with one bad pair writes none of its pairs
        w.send(b"MULTISET 2\nkeep new\nbad-key x\n")
        assert w.readline().startswith(b"ERR BADKEY")
        # a CAS that lost
        reply = w.request(b"CAS keep - new\n")
        assert reply == f"CONFLICT {old}\n".encode()
        # a text value over 1 KB
        assert w.request(b"SET keep " + b"t" * 1025 + b"\n").startswith(b"ERR TOOLARGE")
        assert w.request(b"GET keep\n") == b"VALUE old\n"
        assert w.request(b"VERSION keep\n") == f"OK {old}\n".encode()
    # a BSET whose payload is cut off by the client
    with srv.server.connect() as w:
        w.send(b"BSET keep 100000\n" + b"n" * 5000)
    assert _version(srv, "keep") == f"OK {old}\n".encode()


# --- S3 ------------------------------------------------------------------------------------------


def test_s3_refused_puts_keep_the_old_object(srv: S3Server) -> None:
    s3 = srv.client()
    old = s3.put_object(Bucket="kv", Key="obj", Body=b"old")["ETag"]
    wrong = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket="kv", Key="obj", Body=b"new", ContentMD5=wrong)
    assert exc.value.response["Error"]["Code"] == "BadDigest"
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket="kv", Key="obj", Body=b"new", IfNoneMatch="*")
    assert exc.value.response["Error"]["Code"] == "PreconditionFailed"
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket="kv", Key="obj", Body=b"new", ChecksumSHA256="A" * 43 + "=")
    assert exc.value.response["Error"]["Code"] in ("BadDigest", "InvalidRequest")
    got = s3.get_object(Bucket="kv", Key="obj")
    assert (got["Body"].read(), got["ETag"]) == (b"old", old)
    with srv.server.connect() as w:
        assert w.request(b"GET obj\n") == b"VALUE old\n"
    assert OK_VERSION_RE.fullmatch(_version(srv, "obj"))
