"""S3 object versioning end to end: boto3 and the AWS CLI against a real ``kvbox serve``.

Layer: tests/e2e. Rules: one server for the module (and the shared ``lab`` server of
tests/e2e/_lab.py for the paging test at the end), one bucket per test; boto3 with
retries off, so every error is the server's first answer; requests boto3 cannot shape
(a garbage body, kvbox's ``x-kvbox-at``) are SigV4-signed with botocore's own signer and
sent with ``http.client``. Expected behaviour is AWS's, from the S3 API reference
(GetBucketVersioning, PutBucketVersioning, GetObject, HeadObject, DeleteObject,
DeleteObjects, CopyObject, PutObjectTagging, ListObjectVersions) and the user guide's
versioning chapters (delete markers, null versions, suspended buckets); the time-travel
tests at the end are kvbox's own extension and say so. Every loop is bounded.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError  # type: ignore[import-untyped]

from ._lab import (
    Lab,
    versioned,
)
from ._s3 import ACCESS_KEY, SECRET_KEY, Reply, S3Server, module_server, signed
from ._s3clients import AwsCli, S3Target

S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"

#: (key, version id, is a delete marker), the unit of every expected listing.
Entry = tuple[str, str, bool]


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with module_server(tmp_path_factory, "s3ver") as s:
        yield s


@pytest.fixture(scope="module")
def s3(srv: S3Server) -> Any:
    return srv.client()


# --- helpers -------------------------------------------------------------------------------


def code(exc: ClientError) -> str:
    return str(exc.response["Error"]["Code"])


def status(exc: ClientError) -> int:
    return int(exc.response["ResponseMetadata"]["HTTPStatusCode"])


def headers(exc_or_resp: ClientError | dict[str, Any]) -> dict[str, str]:
    resp = exc_or_resp.response if isinstance(exc_or_resp, ClientError) else exc_or_resp
    return dict(resp["ResponseMetadata"]["HTTPHeaders"])


def versioned_bucket(s3: Any, name: str) -> str:
    s3.create_bucket(Bucket=name)
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


def put(s3: Any, bucket: str, key: str, body: bytes) -> str:
    """PUT in a versioning-enabled bucket: the new version's id (it must have one)."""
    vid = s3.put_object(Bucket=bucket, Key=key, Body=body)["VersionId"]
    assert isinstance(vid, str) and vid and vid != "null"
    return vid


def listed(s3: Any, bucket: str, **kw: Any) -> dict[str, Any]:
    out = s3.list_object_versions(Bucket=bucket, **kw)
    assert isinstance(out, dict)
    return out


def entries(page: dict[str, Any]) -> tuple[list[Entry], list[Entry]]:
    """(versions, delete markers) of one ListObjectVersions page, each in answer order."""
    versions = [(v["Key"], v["VersionId"], False) for v in page.get("Versions", [])]
    markers = [(m["Key"], m["VersionId"], True) for m in page.get("DeleteMarkers", [])]
    return versions, markers


def latest(page: dict[str, Any]) -> dict[str, str]:
    """key -> version id flagged IsLatest, over versions and markers."""
    out: dict[str, str] = {}
    for item in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]:
        if item["IsLatest"]:
            assert item["Key"] not in out, f"two latest versions of {item['Key']}"
            out[item["Key"]] = item["VersionId"]
    return out


# --- bucket versioning state ----------------------------------------------------------------


def test_versioning_states(s3: Any) -> None:
    """Never enabled: no Status at all; then Enabled, Suspended, Enabled again."""
    s3.create_bucket(Bucket="ver-states")
    fresh = s3.get_bucket_versioning(Bucket="ver-states")
    assert "Status" not in fresh and "MFADelete" not in fresh
    for state in ("Enabled", "Suspended", "Enabled"):
        s3.put_bucket_versioning(Bucket="ver-states", VersioningConfiguration={"Status": state})
        assert s3.get_bucket_versioning(Bucket="ver-states")["Status"] == state


def test_versioning_garbage_is_malformed_xml(srv: S3Server, s3: Any) -> None:
    s3.create_bucket(Bucket="ver-garbage")
    for body in (
        b"this is not xml",
        b"<VersioningConfiguration><Status>Enabled</Status>",  # unclosed
        b'<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        b"<Status>Sometimes</Status></VersioningConfiguration>",  # not in the schema's enum
    ):
        reply = signed(srv, "PUT", "/ver-garbage", "versioning", body=body)
        assert reply.status == 400, (body, reply)
        assert reply.code == "MalformedXML", (body, reply)
    assert "Status" not in s3.get_bucket_versioning(Bucket="ver-garbage")


def test_versioning_on_missing_bucket(s3: Any) -> None:
    with pytest.raises(ClientError) as info:
        s3.get_bucket_versioning(Bucket="ver-no-such-bucket")
    assert code(info.value) == "NoSuchBucket" and status(info.value) == 404


# --- versions of one key ---------------------------------------------------------------------


def test_each_put_gets_a_new_version_and_every_version_stays_readable(s3: Any) -> None:
    b = versioned_bucket(s3, "ver-puts")
    bodies = [b"first", b"second!", b"third, the longest"]
    vids = [put(s3, b, "doc.txt", body) for body in bodies]
    assert len(set(vids)) == 3
    for vid, body in zip(vids, bodies, strict=True):
        got = s3.get_object(Bucket=b, Key="doc.txt", VersionId=vid)
        assert got["Body"].read() == body
        assert got["VersionId"] == vid
        assert got["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
        head = s3.head_object(Bucket=b, Key="doc.txt", VersionId=vid)
        assert head["VersionId"] == vid and head["ContentLength"] == len(body)
    newest = s3.get_object(Bucket=b, Key="doc.txt")
    assert newest["Body"].read() == bodies[-1] and newest["VersionId"] == vids[-1]
    assert s3.head_object(Bucket=b, Key="doc.txt")["VersionId"] == vids[-1]


def test_absent_version_is_no_such_version(s3: Any) -> None:
    """A well-formed id that names nothing (here: a version deleted for good, and a real
    version of another key) is 404 NoSuchVersion; a malformed one is 400 InvalidArgument."""
    b = versioned_bucket(s3, "ver-absent")
    gone = put(s3, b, "k", b"short-lived")
    put(s3, b, "k", b"stays")
    other = put(s3, b, "other-key", b"elsewhere")
    s3.delete_object(Bucket=b, Key="k", VersionId=gone)
    for vid in (gone, other):
        with pytest.raises(ClientError) as info:
            s3.get_object(Bucket=b, Key="k", VersionId=vid)
        assert status(info.value) == 404 and code(info.value) == "NoSuchVersion"
        assert info.value.response["Error"].get("VersionId") == vid
        with pytest.raises(ClientError) as info:
            s3.head_object(Bucket=b, Key="k", VersionId=vid)
        assert status(info.value) == 404
    with pytest.raises(ClientError) as info:
        s3.get_object(Bucket=b, Key="k", VersionId="not a version id!")
    assert status(info.value) == 400 and code(info.value) == "InvalidArgument"


def test_delete_without_version_id_makes_a_delete_marker(s3: Any) -> None:
    b = versioned_bucket(s3, "ver-marker")
    v1 = put(s3, b, "photo.png", b"pixels")
    gone = s3.delete_object(Bucket=b, Key="photo.png")
    assert gone["DeleteMarker"] is True
    marker = gone["VersionId"]
    assert marker and marker not in (v1, "null")
    assert headers(gone)["x-amz-delete-marker"] == "true"
    assert headers(gone)["x-amz-version-id"] == marker

    # the key now reads as absent, and says why
    with pytest.raises(ClientError) as info:
        s3.get_object(Bucket=b, Key="photo.png")
    assert status(info.value) == 404 and code(info.value) == "NoSuchKey"
    assert headers(info.value)["x-amz-delete-marker"] == "true"
    if "x-amz-version-id" in headers(info.value):
        assert headers(info.value)["x-amz-version-id"] == marker
    with pytest.raises(ClientError) as info:
        s3.head_object(Bucket=b, Key="photo.png")
    assert status(info.value) == 404
    assert headers(info.value)["x-amz-delete-marker"] == "true"
    assert "Contents" not in s3.list_objects_v2(Bucket=b)

    # the marker itself, named by id: 405, and DELETE is the one method allowed on it
    # (RFC 9110 §15.5.6: a 405 carries Allow)
    with pytest.raises(ClientError) as info:
        s3.get_object(Bucket=b, Key="photo.png", VersionId=marker)
    assert status(info.value) == 405 and code(info.value) == "MethodNotAllowed"
    hdrs = headers(info.value)
    assert hdrs["x-amz-delete-marker"] == "true"
    assert "last-modified" in hdrs
    assert "DELETE" in hdrs["allow"].upper()
    with pytest.raises(ClientError) as info:
        s3.head_object(Bucket=b, Key="photo.png", VersionId=marker)
    assert status(info.value) == 405
    assert headers(info.value)["x-amz-delete-marker"] == "true"

    # the old version is still there, by id
    assert s3.get_object(Bucket=b, Key="photo.png", VersionId=v1)["Body"].read() == b"pixels"

    # deleting the marker brings the object back
    undo = s3.delete_object(Bucket=b, Key="photo.png", VersionId=marker)
    assert undo["DeleteMarker"] is True and undo["VersionId"] == marker
    back = s3.get_object(Bucket=b, Key="photo.png")
    assert back["Body"].read() == b"pixels" and back["VersionId"] == v1
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=b)["Contents"]] == ["photo.png"]


def test_a_second_delete_adds_a_second_marker(s3: Any) -> None:
    b = versioned_bucket(s3, "ver-two-markers")
    v1 = put(s3, b, "k", b"data")
    m1 = s3.delete_object(Bucket=b, Key="k")["VersionId"]
    m2 = s3.delete_object(Bucket=b, Key="k")["VersionId"]
    assert m1 != m2
    page = listed(s3, b)
    versions, markers = entries(page)
    assert versions == [("k", v1, False)]
    assert markers == [("k", m2, True), ("k", m1, True)]
    assert latest(page) == {"k": m2}


def test_delete_with_version_id_removes_that_version_for_good(s3: Any) -> None:
    b = versioned_bucket(s3, "ver-purge")
    v1 = put(s3, b, "k", b"one")
    v2 = put(s3, b, "k", b"two")
    gone = s3.delete_object(Bucket=b, Key="k", VersionId=v2)
    assert gone["VersionId"] == v2
    assert not gone.get("DeleteMarker", False)
    assert headers(gone).get("x-amz-delete-marker", "false") == "false"
    assert s3.get_object(Bucket=b, Key="k")["Body"].read() == b"one"
    with pytest.raises(ClientError) as info:
        s3.get_object(Bucket=b, Key="k", VersionId=v2)
    assert code(info.value) == "NoSuchVersion"
    page = listed(s3, b)
    assert entries(page) == ([("k", v1, False)], [])
    assert latest(page) == {"k": v1}

    # the last version gone: the key is gone, with no marker to mention
    s3.delete_object(Bucket=b, Key="k", VersionId=v1)
    with pytest.raises(ClientError) as info:
        s3.get_object(Bucket=b, Key="k")
    assert code(info.value) == "NoSuchKey"
    assert "x-amz-delete-marker" not in headers(info.value)
    assert entries(listed(s3, b)) == ([], [])
    # deleting a version that is already gone succeeds (S3 deletes are idempotent)
    s3.delete_object(Bucket=b, Key="k", VersionId=v1)


def test_null_version_rules(s3: Any) -> None:
    """Objects written before versioning have version "null"; a suspended bucket's PUT
    replaces the null version and keeps the others; its DELETE swaps the null version
    for a null delete marker (user guide: "Deleting objects from versioning-suspended
    buckets")."""
    b = "ver-null"
    s3.create_bucket(Bucket=b)
    before = s3.put_object(Bucket=b, Key="k", Body=b"pre-versioning")
    assert "VersionId" not in before
    assert "x-amz-version-id" not in headers(before)

    s3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})
    got = s3.get_object(Bucket=b, Key="k", VersionId="null")
    assert got["Body"].read() == b"pre-versioning"
    assert entries(listed(s3, b)) == ([("k", "null", False)], [])
    v1 = put(s3, b, "k", b"enabled-1")
    page = listed(s3, b)
    assert entries(page) == ([("k", v1, False), ("k", "null", False)], [])
    assert latest(page) == {"k": v1}

    s3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Suspended"})
    s3.put_object(Bucket=b, Key="k", Body=b"suspended-1")
    page = listed(s3, b)
    assert entries(page) == ([("k", "null", False), ("k", v1, False)], [])
    assert latest(page) == {"k": "null"}
    s3.put_object(Bucket=b, Key="k", Body=b"suspended-2")
    assert entries(listed(s3, b)) == ([("k", "null", False), ("k", v1, False)], [])
    assert s3.get_object(Bucket=b, Key="k")["Body"].read() == b"suspended-2"
    assert s3.get_object(Bucket=b, Key="k", VersionId="null")["Body"].read() == b"suspended-2"
    assert s3.get_object(Bucket=b, Key="k", VersionId=v1)["Body"].read() == b"enabled-1"

    s3.delete_object(Bucket=b, Key="k")
    page = listed(s3, b)
    assert entries(page) == ([("k", v1, False)], [("k", "null", True)])
    assert latest(page) == {"k": "null"}
    with pytest.raises(ClientError) as info:
        s3.get_object(Bucket=b, Key="k")
    assert code(info.value) == "NoSuchKey"


def test_reads_cached_before_a_versioning_change_answer_as_the_new_state(s3: Any) -> None:
    """The read cache keeps each key's newest version and the keys known absent; a
    versioning change changes what the next writes do, never what a read of the cache
    answers: after each change a GET shows the write that followed it, by the right id."""
    b = "ver-cached"
    s3.create_bucket(Bucket=b)
    s3.put_object(Bucket=b, Key="k", Body=b"one")
    assert s3.get_object(Bucket=b, Key="k")["Body"].read() == b"one"  # now cached
    with pytest.raises(ClientError) as info:  # cached as absent
        s3.get_object(Bucket=b, Key="absent")
    assert code(info.value) == "NoSuchKey"

    s3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})
    v2 = put(s3, b, "k", b"two")
    got = s3.get_object(Bucket=b, Key="k")
    assert (got["Body"].read(), got["VersionId"]) == (b"two", v2)
    assert s3.get_object(Bucket=b, Key="k", VersionId="null")["Body"].read() == b"one"
    va = put(s3, b, "absent", b"here now")
    assert s3.get_object(Bucket=b, Key="absent")["VersionId"] == va

    s3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Suspended"})
    s3.put_object(Bucket=b, Key="k", Body=b"three")
    assert s3.get_object(Bucket=b, Key="k")["Body"].read() == b"three"
    assert s3.get_object(Bucket=b, Key="k", VersionId="null")["Body"].read() == b"three"
    assert s3.get_object(Bucket=b, Key="k", VersionId=v2)["Body"].read() == b"two"
    s3.delete_object(Bucket=b, Key="absent")  # a null delete marker over version va
    with pytest.raises(ClientError) as info:
        s3.get_object(Bucket=b, Key="absent")
    assert code(info.value) == "NoSuchKey"
    assert info.value.response["ResponseMetadata"]["HTTPHeaders"]["x-amz-delete-marker"] == "true"


# --- ListObjectVersions -----------------------------------------------------------------------


def test_list_versions_order_latest_prefix_and_delimiter(s3: Any) -> None:
    b = versioned_bucket(s3, "ver-list")
    a1 = put(s3, b, "a.txt", b"a1")
    a2 = put(s3, b, "a.txt", b"a2")
    x1 = put(s3, b, "dir/x", b"x1")
    xm = s3.delete_object(Bucket=b, Key="dir/x")["VersionId"]
    y1 = put(s3, b, "dir/y", b"y1")
    z1 = put(s3, b, "z", b"z1")
    z2 = put(s3, b, "z", b"z2!")

    page = listed(s3, b)
    assert page["IsTruncated"] is False
    assert page["Name"] == b
    versions, markers = entries(page)
    assert versions == [
        ("a.txt", a2, False),
        ("a.txt", a1, False),
        ("dir/x", x1, False),
        ("dir/y", y1, False),
        ("z", z2, False),
        ("z", z1, False),
    ]
    assert markers == [("dir/x", xm, True)]
    assert latest(page) == {"a.txt": a2, "dir/x": xm, "dir/y": y1, "z": z2}
    sizes = {(v["Key"], v["VersionId"]): v["Size"] for v in page["Versions"]}
    assert sizes[("z", z2)] == 3 and sizes[("a.txt", a1)] == 2
    etags = {(v["Key"], v["VersionId"]): v["ETag"] for v in page["Versions"]}
    assert etags[("a.txt", a1)] == f'"{hashlib.md5(b"a1").hexdigest()}"'

    in_dir = listed(s3, b, Prefix="dir/")
    assert in_dir["Prefix"] == "dir/"
    assert entries(in_dir) == (
        [("dir/x", x1, False), ("dir/y", y1, False)],
        [("dir/x", xm, True)],
    )

    rolled = listed(s3, b, Delimiter="/")
    assert rolled["Delimiter"] == "/"
    assert [p["Prefix"] for p in rolled["CommonPrefixes"]] == ["dir/"]
    assert entries(rolled) == (
        [("a.txt", a2, False), ("a.txt", a1, False), ("z", z2, False), ("z", z1, False)],
        [],
    )


def test_list_versions_interleaves_markers_in_order_in_the_xml(srv: S3Server, s3: Any) -> None:
    """boto3 splits Version and DeleteMarker into two lists; the XML itself must keep
    them in one order: key ascending, newest first within a key."""
    b = versioned_bucket(s3, "ver-xml-order")
    v1 = put(s3, b, "k", b"1")
    m1 = s3.delete_object(Bucket=b, Key="k")["VersionId"]
    v2 = put(s3, b, "k", b"2")
    m2 = s3.delete_object(Bucket=b, Key="k")["VersionId"]
    want: list[Entry] = [("k", m2, True), ("k", v2, False), ("k", m1, True), ("k", v1, False)]
    reply = signed(srv, "GET", f"/{b}", "versions=")
    assert reply.status == 200, reply
    root = ET.fromstring(reply.body)
    assert root.tag == f"{S3_NS}ListVersionsResult"
    got: list[Entry] = []
    for el in root:
        if el.tag in (f"{S3_NS}Version", f"{S3_NS}DeleteMarker"):
            got.append(
                (
                    el.findtext(f"{S3_NS}Key") or "",
                    el.findtext(f"{S3_NS}VersionId") or "",
                    el.tag == f"{S3_NS}DeleteMarker",
                )
            )
            latest_flag = el.findtext(f"{S3_NS}IsLatest")
            assert latest_flag == ("true" if len(got) == 1 else "false")
    assert got == want


def _pages(s3: Any, bucket: str, max_keys: int, **kw: Any) -> list[dict[str, Any]]:
    """Every page of a ListObjectVersions walk driven by hand with the Next*Markers."""
    pages: list[dict[str, Any]] = []
    marker: dict[str, str] = {}
    for _ in range(10_000):
        page = listed(s3, bucket, MaxKeys=max_keys, **kw, **marker)
        assert page["MaxKeys"] == max_keys
        # the markers a page was asked for are echoed back
        assert page.get("KeyMarker", "") == marker.get("KeyMarker", "")
        assert page.get("VersionIdMarker", "") == marker.get("VersionIdMarker", "")
        pages.append(page)
        if not page["IsTruncated"]:
            return pages
        assert "NextKeyMarker" in page, "a truncated page must say where to go on"
        marker = {"KeyMarker": page["NextKeyMarker"]}
        if page.get("NextVersionIdMarker"):
            marker["VersionIdMarker"] = page["NextVersionIdMarker"]
    raise AssertionError("listing never ended")


def _check_pages(pages: list[dict[str, Any]], want: list[Entry], max_keys: int) -> None:
    """The pages, concatenated, are exactly ``want``: in order, no duplicate, no gap.

    Each page must be the next contiguous slice of ``want`` (boto3 gives a page's
    versions and markers as two lists; each must be that slice's versions and
    markers, in order), full when it is truncated.
    """
    pos = 0
    for n, page in enumerate(pages):
        versions, markers = entries(page)
        size = len(versions) + len(markers)
        assert 0 < size <= max_keys or (size == 0 and len(want) == 0), (n, size)
        if page["IsTruncated"]:
            assert size == max_keys, f"page {n} truncated with {size} < {max_keys} entries"
        chunk = want[pos : pos + size]
        assert versions == [e for e in chunk if not e[2]], f"page {n} versions"
        assert markers == [e for e in chunk if e[2]], f"page {n} markers"
        pos += size
    assert pos == len(want), f"listed {pos} of {len(want)} entries"


def test_list_versions_pages_through_one_key_with_2500_versions(s3: Any) -> None:
    b = versioned_bucket(s3, "ver-many-versions")
    started = time.monotonic()
    vids = [put(s3, b, "hot-key", b"v%d" % i) for i in range(2500)]
    assert time.monotonic() - started < 60, "2,500 PUTs took over a minute"
    assert len(set(vids)) == 2500
    # a second key, listed first, so every walk crosses a key boundary too
    after_vid = put(s3, b, "after", b"neighbour")
    want: list[Entry] = [("after", after_vid, False)]
    want += [("hot-key", v, False) for v in reversed(vids)]

    for max_keys in (1000, 777):
        pages = _pages(s3, b, max_keys)
        assert len(pages) == -(-len(want) // max_keys)
        _check_pages(pages, want, max_keys)
        # a page that ends inside hot-key's versions must resume with its version marker
        assert pages[0]["NextKeyMarker"] == "hot-key"
        assert pages[0]["NextVersionIdMarker"] == want[max_keys - 1][1]
        assert latest(pages[0]) == {"after": after_vid, "hot-key": vids[-1]}

    paginator = s3.get_paginator("list_object_versions")
    got: list[Entry] = []
    for page in paginator.paginate(Bucket=b, PaginationConfig={"PageSize": 600}):
        versions, markers = entries(page)
        assert markers == []
        got.extend(versions)
    assert got == want

    # MaxKeys bigger than the service maximum is capped at 1,000, not an error
    capped = listed(s3, b, MaxKeys=5000)
    assert len(capped["Versions"]) == 1000 and capped["IsTruncated"] is True


def test_list_versions_pages_across_many_keys_with_markers(s3: Any) -> None:
    b = versioned_bucket(s3, "ver-many-keys")
    per_key: dict[str, list[Entry]] = {}
    for i in range(90):
        key = f"k{i:03d}" if i % 10 else f"sub/k{i:03d}"
        history: list[Entry] = []
        for j in range(1 + i % 3):
            history.append((key, put(s3, b, key, b"%d.%d" % (i, j)), False))
            if i % 7 == 3 and j == 0:
                history.append((key, s3.delete_object(Bucket=b, Key=key)["VersionId"], True))
        if i % 5 == 0:
            history.append((key, s3.delete_object(Bucket=b, Key=key)["VersionId"], True))
        per_key[key] = list(reversed(history))  # newest first
    want = [e for key in sorted(per_key) for e in per_key[key]]
    assert len(want) > 200

    for max_keys in (1, 7, 100, 1000):
        _check_pages(_pages(s3, b, max_keys), want, max_keys)

    # prefix and pagination together
    sub = [e for e in want if e[0].startswith("sub/")]
    _check_pages(_pages(s3, b, 4, Prefix="sub/"), sub, 4)

    # the newest entry of each key, and only it, is IsLatest
    full = listed(s3, b)
    assert latest(full) == {key: hist[0][1] for key, hist in per_key.items()}


def test_list_versions_pages_with_a_delimiter(s3: Any) -> None:
    """Each CommonPrefix counts once against MaxKeys and appears once over all pages."""
    b = versioned_bucket(s3, "ver-delim-pages")
    vids: dict[str, list[str]] = {}
    for key in ("a", "d1/x", "d1/y", "d2/z", "e", "f/g/h"):
        vids[key] = [put(s3, b, key, b"1"), put(s3, b, key, b"2")]
    for max_keys in (1, 2, 3, 1000):
        prefixes: list[str] = []
        got: list[Entry] = []
        for page in _pages(s3, b, max_keys, Delimiter="/"):
            versions, markers = entries(page)
            common = [p["Prefix"] for p in page.get("CommonPrefixes", [])]
            assert len(versions) + len(markers) + len(common) <= max_keys
            prefixes.extend(common)
            got.extend(versions)
        assert prefixes == ["d1/", "d2/", "f/"], max_keys
        assert got == [
            ("a", vids["a"][1], False),
            ("a", vids["a"][0], False),
            ("e", vids["e"][1], False),
            ("e", vids["e"][0], False),
        ], max_keys


# --- operations that name a version -------------------------------------------------------------


def test_copy_object_from_a_version(s3: Any) -> None:
    b = versioned_bucket(s3, "ver-copy")
    v1 = put(s3, b, "src", b"old bytes")
    put(s3, b, "src", b"new bytes")
    done = s3.copy_object(
        Bucket=b, Key="dst", CopySource={"Bucket": b, "Key": "src", "VersionId": v1}
    )
    assert done["CopySourceVersionId"] == v1
    assert headers(done)["x-amz-copy-source-version-id"] == v1
    dst_vid = done["VersionId"]
    assert dst_vid and dst_vid not in (v1, "null")
    got = s3.get_object(Bucket=b, Key="dst")
    assert got["Body"].read() == b"old bytes" and got["VersionId"] == dst_vid
    assert done["CopyObjectResult"]["ETag"] == f'"{hashlib.md5(b"old bytes").hexdigest()}"'

    # a copy without VersionId takes the newest version and says which
    plain = s3.copy_object(Bucket=b, Key="dst2", CopySource={"Bucket": b, "Key": "src"})
    assert plain["CopySourceVersionId"] == latest(listed(s3, b, Prefix="src"))["src"]
    assert s3.get_object(Bucket=b, Key="dst2")["Body"].read() == b"new bytes"

    # a source version that does not exist
    with pytest.raises(ClientError) as info:
        s3.copy_object(
            Bucket=b, Key="dst3", CopySource={"Bucket": b, "Key": "src", "VersionId": dst_vid}
        )
    assert code(info.value) == "NoSuchVersion" and status(info.value) == 404


def test_copying_an_old_version_onto_its_key_restores_it(s3: Any) -> None:
    """The user guide's "Restoring previous versions": copy a previous version into the
    same bucket and key; it becomes the newest, and every version stays."""
    b = versioned_bucket(s3, "ver-restore")
    v1 = put(s3, b, "k", b"old bytes")
    v2 = put(s3, b, "k", b"new bytes")
    done = s3.copy_object(Bucket=b, Key="k", CopySource={"Bucket": b, "Key": "k", "VersionId": v1})
    assert done["CopySourceVersionId"] == v1 and done["VersionId"] not in (v1, v2)
    assert s3.get_object(Bucket=b, Key="k")["Body"].read() == b"old bytes"
    assert len(listed(s3, b, Prefix="k")["Versions"]) == 3
    # the current object onto itself, changing nothing, is still refused
    with pytest.raises(ClientError) as info:
        s3.copy_object(Bucket=b, Key="k", CopySource={"Bucket": b, "Key": "k"})
    assert code(info.value) == "InvalidRequest"


def test_tagging_a_version_does_not_make_a_new_version(s3: Any) -> None:
    b = versioned_bucket(s3, "ver-tags")
    v1 = put(s3, b, "k", b"one")
    v2 = put(s3, b, "k", b"two")
    tagged = s3.put_object_tagging(
        Bucket=b, Key="k", VersionId=v1, Tagging={"TagSet": [{"Key": "state", "Value": "old"}]}
    )
    assert tagged["VersionId"] == v1
    got = s3.get_object_tagging(Bucket=b, Key="k", VersionId=v1)
    assert got["VersionId"] == v1
    assert got["TagSet"] == [{"Key": "state", "Value": "old"}]
    assert s3.get_object_tagging(Bucket=b, Key="k", VersionId=v2)["TagSet"] == []
    assert s3.get_object_tagging(Bucket=b, Key="k")["TagSet"] == []

    # tagging the current version (no VersionId) answers with its id, still no new version
    now = s3.put_object_tagging(
        Bucket=b, Key="k", Tagging={"TagSet": [{"Key": "state", "Value": "new"}]}
    )
    assert now["VersionId"] == v2
    assert s3.get_object(Bucket=b, Key="k", VersionId=v2)["TagCount"] == 1
    page = listed(s3, b)
    assert entries(page) == ([("k", v2, False), ("k", v1, False)], [])
    assert latest(page) == {"k": v2}

    s3.delete_object_tagging(Bucket=b, Key="k", VersionId=v1)
    assert s3.get_object_tagging(Bucket=b, Key="k", VersionId=v1)["TagSet"] == []
    assert len(listed(s3, b)["Versions"]) == 2


def test_delete_objects_with_version_ids(s3: Any) -> None:
    b = versioned_bucket(s3, "ver-batch")
    a1 = put(s3, b, "a", b"a1")
    a2 = put(s3, b, "a", b"a2")
    put(s3, b, "c", b"c1")
    out = s3.delete_objects(
        Bucket=b,
        Delete={"Objects": [{"Key": "a", "VersionId": a1}, {"Key": "c"}]},
    )
    assert out.get("Errors", []) == []
    deleted = {d["Key"]: d for d in out["Deleted"]}
    assert deleted["a"]["VersionId"] == a1
    assert not deleted["a"].get("DeleteMarker", False)
    assert deleted["c"]["DeleteMarker"] is True
    c_marker = deleted["c"]["DeleteMarkerVersionId"]
    assert c_marker

    page = listed(s3, b)
    versions, markers = entries(page)
    assert ("a", a1, False) not in versions and ("a", a2, False) in versions
    assert markers == [("c", c_marker, True)]

    # removing the marker by id brings "c" back
    undo = s3.delete_objects(Bucket=b, Delete={"Objects": [{"Key": "c", "VersionId": c_marker}]})
    (entry,) = undo["Deleted"]
    assert entry["Key"] == "c" and entry["VersionId"] == c_marker
    assert entry["DeleteMarker"] is True and entry["DeleteMarkerVersionId"] == c_marker
    assert s3.get_object(Bucket=b, Key="c")["Body"].read() == b"c1"


# --- the AWS CLI --------------------------------------------------------------------------------


def test_versioning_through_the_aws_cli(srv: S3Server, s3: Any, tmp_path: Path) -> None:
    aws = AwsCli(S3Target("127.0.0.1", srv.http_port, ACCESS_KEY, SECRET_KEY), tmp_path / "aws")
    s3.create_bucket(Bucket="ver-cli")
    assert aws.json("get-bucket-versioning", "--bucket", "ver-cli") == {}
    aws(
        "s3api", "put-bucket-versioning", "--bucket", "ver-cli",
        "--versioning-configuration", "Status=Enabled",
    )  # fmt: skip
    assert aws.json("get-bucket-versioning", "--bucket", "ver-cli") == {"Status": "Enabled"}
    first = tmp_path / "first.txt"
    first.write_bytes(b"first upload\n")
    second = tmp_path / "second.txt"
    second.write_bytes(b"second upload, longer\n")
    v1 = aws.json("put-object", "--bucket", "ver-cli", "--key", "f.txt", "--body", str(first))
    v2 = aws.json("put-object", "--bucket", "ver-cli", "--key", "f.txt", "--body", str(second))
    assert v1["VersionId"] != v2["VersionId"]

    listing = aws.json("list-object-versions", "--bucket", "ver-cli")
    assert [(v["Key"], v["VersionId"], v["IsLatest"], v["Size"]) for v in listing["Versions"]] == [
        ("f.txt", v2["VersionId"], True, len(second.read_bytes())),
        ("f.txt", v1["VersionId"], False, len(first.read_bytes())),
    ]
    out = tmp_path / "out.txt"
    aws(
        "s3api", "get-object", "--bucket", "ver-cli", "--key", "f.txt",
        "--version-id", v1["VersionId"], str(out),
    )  # fmt: skip
    assert out.read_bytes() == b"first upload\n"

    marker = aws.json("delete-object", "--bucket", "ver-cli", "--key", "f.txt")
    assert marker["DeleteMarker"] is True
    listing = aws.json("list-object-versions", "--bucket", "ver-cli")
    assert [(m["VersionId"], m["IsLatest"]) for m in listing["DeleteMarkers"]] == [
        (marker["VersionId"], True)
    ]
    aws(
        "s3api", "put-bucket-versioning", "--bucket", "ver-cli",
        "--versioning-configuration", "Status=Suspended",
    )  # fmt: skip
    assert aws.json("get-bucket-versioning", "--bucket", "ver-cli") == {"Status": "Suspended"}
    # suspending keeps every version and marker
    listing = aws.json("list-object-versions", "--bucket", "ver-cli")
    assert len(listing["Versions"]) == 2 and len(listing["DeleteMarkers"]) == 1


# --- kvbox time travel (not AWS) ----------------------------------------------------------------


def _rfc3339(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def _ms(t: float) -> str:
    return str(int(t * 1000))


@pytest.fixture(scope="module")
def history(srv: S3Server, s3: Any) -> dict[str, Any]:
    """One key with a known past: nothing, then v1, then v2, then a delete marker.

    The timestamps are taken on this machine's clock around each write (the server
    shares it), with 30 ms of slack either side so no instant is ambiguous.
    """
    b = versioned_bucket(s3, "ver-time-travel")
    t_before = time.time()
    time.sleep(0.03)
    v1 = put(s3, b, "story.txt", b"chapter one")
    time.sleep(0.03)
    t_v1 = time.time()
    time.sleep(0.03)
    v2 = put(s3, b, "story.txt", b"chapter two, revised")
    time.sleep(0.03)
    t_v2 = time.time()
    time.sleep(0.03)
    marker = s3.delete_object(Bucket=b, Key="story.txt")["VersionId"]
    time.sleep(0.03)
    t_gone = time.time()
    return {
        "bucket": b,
        "v1": v1,
        "v2": v2,
        "marker": marker,
        "before": t_before,
        "at_v1": t_v1,
        "at_v2": t_v2,
        "gone": t_gone,
    }


def _at_query(srv: S3Server, bucket: str, key: str, when: str) -> Reply:
    from urllib.parse import quote

    return signed(srv, "GET", f"/{bucket}/{key}", f"x-kvbox-at={quote(when, safe='')}")


@pytest.mark.parametrize("form", ["epoch-ms", "rfc3339"])
def test_time_travel_query_parameter(srv: S3Server, history: dict[str, Any], form: str) -> None:
    """kvbox extension, not AWS: ``GET /bucket/key?x-kvbox-at=WHEN`` (RFC 3339 or epoch
    milliseconds) answers the object as it was at WHEN: the version current then, with
    its version id; 404 NoSuchKey before the first write and while a delete marker was
    current."""
    fmt = _ms if form == "epoch-ms" else _rfc3339
    b = history["bucket"]
    then = _at_query(srv, b, "story.txt", fmt(history["at_v1"]))
    assert then.status == 200, then
    assert then.body == b"chapter one"
    assert then.headers["x-amz-version-id"] == history["v1"]
    later = _at_query(srv, b, "story.txt", fmt(history["at_v2"]))
    assert later.status == 200 and later.body == b"chapter two, revised", later
    assert later.headers["x-amz-version-id"] == history["v2"]
    before = _at_query(srv, b, "story.txt", fmt(history["before"]))
    assert before.status == 404 and before.code == "NoSuchKey", before
    gone = _at_query(srv, b, "story.txt", fmt(history["gone"]))
    assert gone.status == 404 and gone.code == "NoSuchKey", gone
    # today the key is deleted, as a plain GET says
    assert signed(srv, "GET", f"/{b}/story.txt").status == 404


def test_time_travel_header(srv: S3Server, history: dict[str, Any]) -> None:
    """kvbox extension, not AWS: the ``x-kvbox-at`` request header works like the query
    parameter."""
    b = history["bucket"]
    for when, want in (
        (_rfc3339(history["at_v1"]), b"chapter one"),
        (_ms(history["at_v2"]), b"chapter two, revised"),
    ):
        reply = signed(srv, "GET", f"/{b}/story.txt", headers={"x-kvbox-at": when})
        assert reply.status == 200 and reply.body == want, (when, reply)
    too_early = signed(
        srv, "GET", f"/{b}/story.txt", headers={"x-kvbox-at": _ms(history["before"])}
    )
    assert too_early.status == 404 and too_early.code == "NoSuchKey"


def test_time_travel_bad_timestamp_is_invalid_argument(
    srv: S3Server, history: dict[str, Any]
) -> None:
    """kvbox extension, not AWS: a WHEN that is neither RFC 3339 nor an integer count of
    milliseconds is a 400 InvalidArgument, never a silent read of the current version."""
    reply = _at_query(srv, history["bucket"], "story.txt", "yesterday-ish")
    assert reply.status == 400 and reply.code == "InvalidArgument", reply


# --- ListObjectVersions pages add up -------------------------------------------------------


def _paged_versions(lab_s3: Any, bucket: str, page: int, **kw: Any) -> tuple[list[Any], list[str]]:
    entries: list[Any] = []
    prefixes: list[str] = []
    markers: dict[str, str] = {}
    for _ in range(500):
        r = lab_s3.list_object_versions(Bucket=bucket, MaxKeys=page, **kw, **markers)
        for v in r.get("Versions", []) + r.get("DeleteMarkers", []):
            entries.append((v["Key"], v["VersionId"], v["IsLatest"]))
        prefixes += [p["Prefix"] for p in r.get("CommonPrefixes", [])]
        if not r["IsTruncated"]:
            return entries, prefixes
        markers = {"KeyMarker": r["NextKeyMarker"]}
        if r.get("NextVersionIdMarker"):
            markers["VersionIdMarker"] = r["NextVersionIdMarker"]
    raise AssertionError("ListObjectVersions did not end within 500 pages")


def test_list_object_versions_pages_add_up(lab: Lab, lab_s3: Any) -> None:
    b = versioned(lab_s3, "rv-lov-pages")
    for k in ("a", "a/1", "a/2", "a0", "b", "b/x/y", "c", "d/"):
        for i in range(3):
            lab_s3.put_object(Bucket=b, Key=k, Body=str(i).encode())
    lab_s3.delete_object(Bucket=b, Key="c")
    lab_s3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Suspended"})
    lab_s3.put_object(Bucket=b, Key="a0", Body=b"null")
    lab_s3.put_object(Bucket=b, Key="e", Body=b"null")
    for kw in ({}, {"Delimiter": "/"}, {"Prefix": "a"}, {"Prefix": "a", "Delimiter": "/"}):
        whole, whole_prefixes = _paged_versions(lab_s3, b, 1000, **kw)
        for page in (1, 2, 3, 5):
            got, got_prefixes = _paged_versions(lab_s3, b, page, **kw)
            assert len(got) == len(set(got)), (kw, page)
            assert sorted(got) == sorted(whole), (kw, page)
            assert sorted(got_prefixes) == sorted(whole_prefixes), (kw, page)
