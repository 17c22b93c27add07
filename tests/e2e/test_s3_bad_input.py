"""Bad input on the S3 port: configuration documents that are not UTF-8, malformed list
markers and version ids. Each is a clean S3 XML 400, never a 500 or a stored value.

Layer: tests/e2e. Rules: the ``lab`` server (tests/e2e/_lab.py); bodies boto3 would never
send go out root-signed through ``signed``. GW-KV's bad input is in
test_gwkv_bad_input.py.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from ._lab import (
    Lab,
    signed,
    versioned,
)

# --- bad input on the S3 port --------------------------------------------------------------


def test_non_utf8_config_documents_are_a_400(lab: Lab, lab_s3: Any) -> None:
    b = "rv-latin1"
    lab_s3.create_bucket(Bucket=b)
    decl = '<?xml version="1.0" encoding="ISO-8859-1"?>'
    web = (
        f"{decl}<WebsiteConfiguration><IndexDocument><Suffix>ind\xe9x.html</Suffix>"
        "</IndexDocument></WebsiteConfiguration>"
    ).encode("latin-1")
    cors = (
        f"{decl}<CORSConfiguration><CORSRule><AllowedOrigin>http://\xe9.example</AllowedOrigin>"
        "<AllowedMethod>GET</AllowedMethod></CORSRule></CORSConfiguration>"
    ).encode("latin-1")
    for sub, body in (("website", web), ("cors", cors)):
        got = signed(lab.srv, "PUT", f"/{b}?{sub}", body)
        assert got.status in (200, 400), (sub, got)  # stored faithfully, or refused
        assert got.code != "InternalError", (sub, got)


def test_malformed_markers_and_ids(lab: Lab, lab_s3: Any) -> None:
    b = versioned(lab_s3, "rv-bad-markers")
    lab_s3.put_object(Bucket=b, Key="k", Body=b"x")
    srv = lab.srv
    for query in (
        "versions&version-id-marker=ABC",
        "versions&max-keys=-1",
        "versions&max-keys=99999999999999999999999999999",
        "versions&encoding-type=base64",
    ):
        got = signed(srv, "GET", f"/{b}?{query}")
        assert got.status in (200, 400), (query, got)
        assert got.code != "InternalError", (query, got)
    got = signed(srv, "GET", f"/{b}?versions&max-keys=99999999999999")
    assert got.status == 200 and b"<MaxKeys>1000</MaxKeys>" in got.body, got
    for vid in ("../../etc", "'; DROP TABLE versions;--", "A" * 5000, "%00", "null%00"):
        got = signed(srv, "GET", f"/{b}/k?versionId={quote(vid, safe='')}")
        assert got.status in (400, 404), (vid, got)
    for marker in ("\U0010ffff" * 3, "\ud7ff\ue000", "z" * 1100):
        query = f"versions&key-marker={quote(marker, safe='')}&version-id-marker=null"
        got = signed(srv, "GET", f"/{b}?{query}")
        assert got.status in (200, 400), (marker, got)
