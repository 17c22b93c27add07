"""The access log and the server's error lines, as an operator reads them.

Layer: tests/e2e. Rules: a real ``kvbox serve`` is driven by real clients (raw GW-KV
sockets over TCP and UDP, boto3, presigned URLs through urllib, raw malformed HTTP) and
its own output is read back: one line per request with the documented fields, in plain
and JSON form, nothing when ``--access-log off``, and never a secret or a signature.
"""

from __future__ import annotations

import json
import re
import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from _ports import free_port

from ._s3 import ACCESS_KEY, SECRET_KEY, S3Server
from ._server import KvboxServer, parse_ok_version

#: The plain line: time, level, logger, then the eleven documented fields.
PLAIN = re.compile(
    r"^(?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) INFO kvbox\.access: "
    r"(?P<door>\S+) (?P<remote>\S+) (?P<principal>\S+) (?P<op>\S+) (?P<target>\S+) "
    r"(?P<status>\S+) (?P<bytes_in>\d+|-) (?P<bytes_out>\d+) (?P<us>\d+) (?P<rid>\S+)$",
    re.MULTILINE,
)


def access_lines(srv: KvboxServer, want: int, timeout: float = 10.0) -> list[dict[str, str]]:
    """The plain access lines of the current run, once at least ``want`` are there (the
    writer thread flushes a few times a second), without the PING with which the test
    harness saw the server ready."""
    deadline = time.monotonic() + timeout
    while True:
        found = [m.groupdict() for m in PLAIN.finditer(srv.new_log()) if m["op"] != "PING"]
        if len(found) >= want or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


@pytest.fixture
def kv(tmp_path: Path) -> Iterator[KvboxServer]:
    with KvboxServer(tmp_path / "data") as srv:
        srv.start()
        yield srv


def test_gwkv_lines_one_per_request(kv: KvboxServer) -> None:
    with kv.connect() as w:
        version = parse_ok_version(w.request(b"SET apple red\n"))
        # Pipelined: a GET hit, a miss, a run of SETs sharing one reply slot, a refusal.
        w.send(b"GET apple\nGET pear\nSET a 1\nSET b 22\nNOSUCHCOMMAND x\nMULTIGET a b\n")
        replies = [w.readline() for _ in range(5)]
        replies += [w.readline(), w.readline(), w.readline()]  # MULTIGET: OK 2 + 2 values
        port = w.sock.getsockname()[1]
    assert replies[0] == b"VALUE red\n" and replies[1] == b"NOTFOUND\n", replies
    assert kv.udp(b"GET apple\n") == b"VALUE red\n"

    # (and the PING with which the test harness saw the server ready)
    lines = access_lines(kv, 8)
    assert len(lines) == 8, kv.new_log()
    tcp = [ln for ln in lines if ln["door"] == "gwkv"]
    assert {ln["remote"] for ln in tcp} == {f"127.0.0.1:{port}"}
    assert all(ln["principal"] == "-" for ln in lines)
    by = {(ln["op"], ln["target"]): ln for ln in tcp}
    assert by[("SET", "kv/apple")]["status"] == "OK"
    assert by[("SET", "kv/apple")]["bytes_in"] == str(len(b"SET apple red\n"))
    assert by[("SET", "kv/apple")]["bytes_out"] == str(len(f"OK {version}\n"))
    assert by[("GET", "kv/apple")]["status"] == "VALUE"
    assert by[("GET", "kv/apple")]["bytes_out"] == str(len(b"VALUE red\n"))
    assert by[("GET", "kv/pear")]["status"] == "NOTFOUND"
    assert by[("SET", "kv/a")]["status"] == by[("SET", "kv/b")]["status"] == "OK"
    assert by[("SET", "kv/b")]["bytes_in"] == str(len(b"SET b 22\n"))
    assert by[("-", "-")]["status"] == "ERR:UNKNOWN"  # refused: a line, no traceback
    assert by[("-", "-")]["bytes_in"] == "-"
    assert by[("MULTIGET", "kv/a,b")]["status"] == "OK"
    # One connection's ids: its id and the requests' numbers, each once.
    ids = [ln["rid"] for ln in tcp]
    assert len(set(ids)) == len(ids) and len({i.rsplit("-", 1)[0] for i in ids}) == 1
    udp = [ln for ln in lines if ln["door"] == "gwkv-udp"]
    assert [(u["op"], u["target"], u["status"]) for u in udp] == [("GET", "kv/apple", "VALUE")]
    assert "Traceback" not in kv.new_log()


def test_gwkv_auth_secret_never_logged(kv: KvboxServer) -> None:
    """Whatever AUTH answers (it may not exist yet: then it is refused as unknown), the
    line shows no argument of it."""
    secret = "s3cr3t-Do-Not-Log-Me"
    with kv.connect() as w:
        w.send(f"AUTH alice {secret}\n".encode())
        w.readline()
    lines = access_lines(kv, 1)
    assert len(lines) == 1 and lines[0]["target"] == "-", lines
    assert secret not in kv.new_log() and "alice" not in kv.new_log()


def test_access_log_off_and_json(tmp_path: Path) -> None:
    with KvboxServer(tmp_path / "off", args=["--access-log", "off"]) as srv:
        srv.start()
        with srv.connect() as w:
            for i in range(20):
                w.request(b"SET k%d v\n" % i)
        time.sleep(0.6)  # three flushes of the writer, had there been one
        assert "kvbox.access" not in srv.new_log()
    with KvboxServer(tmp_path / "json", args=["--log-format", "json"]) as srv:
        srv.start()
        with srv.connect() as w:
            w.request(b"SET k v\n")
            w.request(b"GET k\n")
        deadline = time.monotonic() + 10
        records: list[dict[str, object]] = []
        while len(records) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
            records = [
                json.loads(line)
                for line in srv.new_log().splitlines()
                if line.startswith("{") and '"kvbox.access"' in line and '"PING"' not in line
            ]
        assert [(r["op"], r["target"], r["status"]) for r in records] == [
            ("SET", "kv/k", "OK"),
            ("GET", "kv/k", "VALUE"),
        ]
        first = records[0]
        assert set(first) >= {
            "ts", "level", "door", "remote", "principal", "op", "target", "status",
            "bytes_in", "bytes_out", "duration_us", "request_id",
        }  # fmt: skip
        assert first["level"] == "info" and first["door"] == "gwkv"
        assert isinstance(first["bytes_in"], int) and isinstance(first["duration_us"], int)
    # Above INFO, access lines are off too.
    with KvboxServer(tmp_path / "warn", args=["--log-level", "warning"]) as srv:
        srv.start()
        with srv.connect() as w:
            w.request(b"SET k v\n")
        time.sleep(0.6)
        assert "kvbox.access" not in srv.new_log()


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[S3Server]:
    srv = S3Server(tmp_path / "data", "--web-port", str(free_port())).start()
    yield srv
    srv.close()


def test_s3_lines_and_no_secrets(s3: S3Server) -> None:
    client = s3.client()
    client.create_bucket(Bucket="photos")
    client.put_object(Bucket="photos", Key="cat photo.png", Body=b"x" * 1234)
    assert client.get_object(Bucket="photos", Key="cat photo.png")["Body"].read() == b"x" * 1234
    with pytest.raises(client.exceptions.NoSuchKey):
        client.get_object(Bucket="photos", Key="nope")
    url = client.generate_presigned_url(
        "get_object", Params={"Bucket": "photos", "Key": "cat photo.png"}, ExpiresIn=300
    )
    signature = re.search(r"X-Amz-Signature=([0-9a-f]{64})", url)
    assert signature is not None
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.read() == b"x" * 1234
    # A signature in an Authorization header: the one boto3 sent for the last call.
    seen: list[bytes | str] = []
    client.meta.events.register(
        "before-send.s3.HeadObject",
        lambda request, **_: seen.append(request.headers["Authorization"]),
    )
    client.head_object(Bucket="photos", Key="cat photo.png")
    auth = seen[0].decode() if isinstance(seen[0], bytes) else seen[0]
    header_sig = re.search(r"Signature=([0-9a-f]{64})", auth)
    assert header_sig is not None

    lines = access_lines(s3.server, 6)
    s3_lines = [ln for ln in lines if ln["door"] == "s3"]
    ops = [(ln["op"], ln["target"], ln["status"], ln["principal"]) for ln in s3_lines]
    assert ops == [
        ("CreateBucket", "photos", "200", "root"),
        ("PutObject", "photos/cat%20photo.png", "200", "root"),
        ("GetObject", "photos/cat%20photo.png", "200", "root"),
        ("GetObject", "photos/nope", "404:NoSuchKey", "root"),
        ("GetObject", "photos/cat%20photo.png", "200", "root"),  # presigned
        ("HeadObject", "photos/cat%20photo.png", "200", "root"),
    ], ops
    assert s3_lines[1]["bytes_in"] == "1234" and s3_lines[2]["bytes_out"] == "1234"
    assert s3_lines[5]["bytes_out"] == "0"  # HEAD sends no body
    assert all(re.fullmatch(r"[0-9A-F]{16}", ln["rid"]) for ln in s3_lines)
    log = s3.server.new_log()
    for secret in (SECRET_KEY, signature.group(1), header_sig.group(1), "X-Amz-Credential"):
        assert secret not in log, f"{secret!r} appears in the server's output"
    assert ACCESS_KEY in log  # only where start-up names it, never in access lines
    assert all(ACCESS_KEY not in " ".join(ln.values()) for ln in lines)


def test_malformed_http_is_one_info_line_with_kvbox_server_header(s3: S3Server) -> None:
    port = s3.http_port
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.") and b" 400 " in answer.split(b"\r\n")[0], answer
    assert re.search(rb"\r\nServer: kvbox/\d+\.\d+\.\d+\r\n", answer), answer
    lines = access_lines(s3.server, 1)
    assert [(ln["door"], ln["status"]) for ln in lines] == [("s3", "400:BadRequest")], lines
    request_id = lines[0]["rid"]
    assert re.fullmatch(r"[0-9A-F]{16}", request_id) and request_id.encode() in answer
    log = s3.server.new_log()
    assert "Traceback" not in log and "ERROR" not in log, log
    refusals = [ln for ln in log.splitlines() if "refused" in ln and "kvbox.http" in ln]
    assert len(refusals) == 1 and " INFO kvbox.http: " in refusals[0], log
    assert request_id in refusals[0]


def test_server_header_everywhere(s3: S3Server) -> None:
    version = re.compile(r"kvbox/\d+\.\d+\.\d+")
    client = s3.client()
    client.create_bucket(Bucket="site")
    head = client.head_bucket(Bucket="site")
    assert version.fullmatch(head["ResponseMetadata"]["HTTPHeaders"]["server"])
    with urllib.request.urlopen(f"{s3.endpoint}/healthz", timeout=10) as resp:
        assert version.fullmatch(resp.headers["Server"]), resp.headers
    announced = re.search(r"kvbox: web \S+:(\d+)", s3.server.new_log())
    assert announced is not None, s3.server.new_log()
    web_port = int(announced.group(1))
    request = urllib.request.Request(f"http://127.0.0.1:{web_port}/site/index.html")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    refused.value.close()
    assert version.fullmatch(refused.value.headers["Server"]), refused.value.headers
    lines = access_lines(s3.server, 4)
    web = [ln for ln in lines if ln["door"] == "web"]
    assert [(ln["op"], ln["target"]) for ln in web] == [("GET", "site/index.html")], lines
    probes = [ln for ln in lines if ln["door"] == "http"]
    assert [(ln["op"], ln["status"]) for ln in probes] == [("healthz", "200")]
    # The website port refuses malformed requests with one INFO line, in its own form.
    with socket.create_connection(("127.0.0.1", web_port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
        answer = sock.recv(4096)
    assert b" 400 " in answer.split(b"\r\n")[0] and version.pattern.encode()[:6] in answer
    lines = access_lines(s3.server, 5)
    assert [ln["status"] for ln in lines if ln["door"] == "web"] == ["404", "400"], lines
    log = s3.server.new_log()
    assert "Traceback" not in log and "ERROR" not in log, log
    assert "INFO kvbox.http: refused a malformed HTTP request from 127.0.0.1" in log
