"""S3 front door, steps 5-6: ListObjects v1/v2 and the GW-KV bucket seen over S3.

Listings are checked against a model computed in the test from the keys it wrote.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError  # type: ignore[import-untyped]

from ._s3 import ACCESS_KEY, REGION, SECRET_KEY, S3Server, module_server
from ._s3clients import AwsCli, S3Target
from ._server import clean_env

BUCKET = "listing"
#: Keys chosen to cover ordering (UTF-8 bytes), nesting and delimiter edge cases.
KEYS = sorted(
    [
        *(f"photos/2023/{i:03d}.jpg" for i in range(40)),
        *(f"photos/2024/{i:03d}.jpg" for i in range(30)),
        "photos/readme",
        "photos-old/x",
        *(f"docs/{c}" for c in "abcdefghij"),
        "top-a",
        "top-b",
        "ünïcode/key",
        "with space/k",
        "plus+sign",
        "z",
    ],
    key=lambda k: k.encode(),
)


@pytest.fixture(scope="module")
def s3srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with module_server(tmp_path_factory, "s3list") as srv:
        s3 = srv.client()
        s3.create_bucket(Bucket=BUCKET)
        for k in KEYS:
            s3.put_object(Bucket=BUCKET, Key=k, Body=k.encode())
        yield srv


@pytest.fixture(scope="module")
def s3(s3srv: S3Server) -> Any:
    return s3srv.client()


def _model(prefix: str, delimiter: str | None, after: str = "") -> list[tuple[str, bool]]:
    """Every (name, is_prefix) a full listing returns, in order."""
    out: list[tuple[str, bool]] = []
    seen: set[str] = set()
    for k in KEYS:
        if not k.startswith(prefix) or k.encode() <= after.encode():
            continue
        if delimiter:
            i = k.find(delimiter, len(prefix))
            if i >= 0:
                cp = k[: i + len(delimiter)]
                if cp not in seen:
                    seen.add(cp)
                    out.append((cp, True))
                continue
        out.append((k, False))
    return out


def _pages_v2(s3: Any, **kw: Any) -> tuple[list[tuple[str, bool]], int]:
    items: list[tuple[str, bool]] = []
    pages = 0
    token = None
    while True:
        args = dict(kw)
        if token:
            args["ContinuationToken"] = token
        page = s3.list_objects_v2(Bucket=BUCKET, **args)
        pages += 1
        names = [(o["Key"], False) for o in page.get("Contents", [])]
        names += [(p["Prefix"], True) for p in page.get("CommonPrefixes", [])]
        assert page["KeyCount"] == len(names)
        items += sorted(names, key=lambda x: x[0].encode())
        if not page["IsTruncated"]:
            return items, pages
        token = page["NextContinuationToken"]
        assert pages < 200


def test_v2_full_listing_in_byte_order(s3: Any) -> None:
    page = s3.list_objects_v2(Bucket=BUCKET)
    assert [o["Key"] for o in page["Contents"]] == KEYS
    assert page["IsTruncated"] is False
    obj = page["Contents"][0]
    assert obj["Size"] == len(obj["Key"].encode()) and obj["ETag"].startswith('"')
    assert "Owner" not in obj
    owned = s3.list_objects_v2(Bucket=BUCKET, FetchOwner=True, MaxKeys=1)
    assert owned["Contents"][0]["Owner"]["ID"] == "root"


@pytest.mark.parametrize("max_keys", [1, 3, 7, 1000])
@pytest.mark.parametrize(
    ("prefix", "delimiter"),
    [("", None), ("", "/"), ("photos/", "/"), ("photos", "/"), ("photos/2023/", None), ("d", "/")],
)
def test_v2_pages_match_model(s3: Any, prefix: str, delimiter: str | None, max_keys: int) -> None:
    kw: dict[str, Any] = {"Prefix": prefix, "MaxKeys": max_keys}
    if delimiter:
        kw["Delimiter"] = delimiter
    items, pages = _pages_v2(s3, **kw)
    want = _model(prefix, delimiter)
    assert items == want
    # A page is truncated only when another item exists: never an empty last page.
    assert pages == max(1, -(-len(want) // max_keys))


def test_v2_start_after(s3: Any) -> None:
    items, _ = _pages_v2(s3, StartAfter="photos/2024/010.jpg", MaxKeys=5)
    assert items == _model("", None, "photos/2024/010.jpg")


def test_v2_delimiter_groups(s3: Any) -> None:
    page = s3.list_objects_v2(Bucket=BUCKET, Delimiter="/")
    prefixes = [p["Prefix"] for p in page["CommonPrefixes"]]
    assert prefixes == ["docs/", "photos-old/", "photos/", "with space/", "ünïcode/"]
    assert [o["Key"] for o in page["Contents"]] == ["plus+sign", "top-a", "top-b", "z"]
    sub = s3.list_objects_v2(Bucket=BUCKET, Prefix="photos/", Delimiter="/")
    assert [p["Prefix"] for p in sub["CommonPrefixes"]] == ["photos/2023/", "photos/2024/"]
    assert [o["Key"] for o in sub["Contents"]] == ["photos/readme"]


def test_v2_encoding_type_url(s3srv: S3Server) -> None:
    raw = s3srv.client()
    seen: list[str] = []

    def grab(response_dict: Any, **_: Any) -> None:
        seen.append(response_dict["body"].decode())

    raw.meta.events.register("before-parse.s3.ListObjectsV2", grab)
    page = raw.list_objects_v2(Bucket=BUCKET, Prefix="with space/", EncodingType="url")
    # botocore decodes only when it chose the encoding itself; here the caller did.
    assert [o["Key"] for o in page["Contents"]] == ["with%20space/k"]
    assert page["Prefix"] == "with%20space/"
    assert "<Key>with%20space/k</Key>" in seen[0]


def test_v2_bad_arguments(s3srv: S3Server) -> None:
    s3 = s3srv.client(parameter_validation=False)
    with pytest.raises(ClientError) as info:
        s3.list_objects_v2(Bucket=BUCKET, MaxKeys=-1)
    assert info.value.response["Error"]["Code"] == "InvalidArgument"
    with pytest.raises(ClientError) as info:
        s3.list_objects_v2(Bucket=BUCKET, ContinuationToken="!!!not-base64")
    assert info.value.response["Error"]["Code"] == "InvalidArgument"


def test_v1_marker_paging(s3: Any) -> None:
    items: list[tuple[str, bool]] = []
    marker = ""
    for _ in range(100):
        page = s3.list_objects(Bucket=BUCKET, Marker=marker, MaxKeys=4, Delimiter="/")
        names = [(o["Key"], False) for o in page.get("Contents", [])]
        names += [(p["Prefix"], True) for p in page.get("CommonPrefixes", [])]
        items += sorted(names, key=lambda x: x[0].encode())
        if not page["IsTruncated"]:
            break
        marker = page["NextMarker"]
    assert items == _model("", "/")
    plain = s3.list_objects(Bucket=BUCKET, Prefix="docs/", MaxKeys=3)
    assert [o["Key"] for o in plain["Contents"]] == ["docs/a", "docs/b", "docs/c"]
    assert plain["IsTruncated"] is True
    rest = s3.list_objects(Bucket=BUCKET, Prefix="docs/", Marker="docs/c")
    assert [o["Key"] for o in rest["Contents"]] == [f"docs/{c}" for c in "defghij"]
    assert rest["Contents"][0]["Owner"]["ID"] == "root"


def test_big_common_prefix_costs_one_page(s3: Any) -> None:
    """Thousands of keys under one prefix still list as a single CommonPrefix."""
    s3.create_bucket(Bucket="wide")
    for i in range(1200):
        s3.put_object(Bucket="wide", Key=f"deep/{i:05d}", Body=b"")
    s3.put_object(Bucket="wide", Key="after", Body=b"")
    page = s3.list_objects_v2(Bucket="wide", Delimiter="/", MaxKeys=10)
    assert [p["Prefix"] for p in page["CommonPrefixes"]] == ["deep/"]
    assert [o["Key"] for o in page["Contents"]] == ["after"]
    assert page["IsTruncated"] is False
    every = s3.list_objects_v2(Bucket="wide", Prefix="deep/", MaxKeys=1000)
    assert every["KeyCount"] == 1000 and every["IsTruncated"] is True
    rest = s3.list_objects_v2(
        Bucket="wide", Prefix="deep/", ContinuationToken=every["NextContinuationToken"]
    )
    assert rest["KeyCount"] == 200 and rest["IsTruncated"] is False


# --- step 6: GW-KV and S3 share the kv bucket ---------------------------------------


def test_gwkv_and_s3_see_the_same_kv_bucket(s3srv: S3Server, s3: Any) -> None:
    with s3srv.server.connect() as w:
        assert w.request(b"SET fromgwkv hello\n").startswith(b"OK ")
    got = s3.get_object(Bucket="kv", Key="fromgwkv")
    assert got["Body"].read() == b"hello"
    s3.put_object(Bucket="kv", Key="froms3", Body=b"world")
    with s3srv.server.connect() as w:
        value = w.bget("froms3")
    assert value is not None and value[0] == b"world"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="kv")["Contents"]]
    assert {"fromgwkv", "froms3"} <= set(keys)
    s3.delete_object(Bucket="kv", Key="fromgwkv")
    with s3srv.server.connect() as w:
        assert w.bget("fromgwkv") is None


# --- the AWS CLI ---------------------------------------------------------------------


def _aws(srv: S3Server, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = clean_env(
        {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        }
    )
    aws = shutil.which("aws", path=str(Path(sys.executable).parent))
    if aws is None:
        pytest.skip("the AWS CLI is not installed (pip install awscli)")
    return subprocess.run(
        [aws, "--endpoint-url", srv.endpoint, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=cwd,
        check=False,
    )


def test_aws_cli(s3srv: S3Server, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_bytes(b"alpha")
    (src / "sub" / "b.bin").write_bytes(bytes(range(256)) * 100)
    r = _aws(s3srv, "s3", "mb", "s3://cli-bucket")
    assert r.returncode == 0, r.stderr
    r = _aws(s3srv, "s3", "sync", str(src), "s3://cli-bucket/tree")
    assert r.returncode == 0, r.stderr
    r = _aws(s3srv, "s3", "ls", "s3://cli-bucket/tree/", "--recursive")
    assert r.returncode == 0, r.stderr
    assert "tree/a.txt" in r.stdout and "tree/sub/b.bin" in r.stdout
    dst = tmp_path / "dst"
    r = _aws(s3srv, "s3", "sync", "s3://cli-bucket/tree", str(dst))
    assert r.returncode == 0, r.stderr
    assert (dst / "a.txt").read_bytes() == b"alpha"
    assert (dst / "sub" / "b.bin").read_bytes() == bytes(range(256)) * 100
    r = _aws(s3srv, "s3api", "head-object", "--bucket", "cli-bucket", "--key", "tree/a.txt")
    assert r.returncode == 0 and '"ContentLength": 5' in r.stdout, r.stderr
    r = _aws(s3srv, "s3", "rb", "s3://cli-bucket", "--force")
    assert r.returncode == 0, r.stderr
    r = _aws(s3srv, "s3api", "head-bucket", "--bucket", "cli-bucket")
    assert r.returncode != 0


def test_max_keys_zero_is_an_empty_page_that_is_not_truncated(
    s3srv: S3Server, s3: Any, tmp_path: Path
) -> None:
    """max-keys=0 asks for nothing: AWS answers an empty page with IsTruncated false
    (and no continuation token), for every listing."""
    v2 = s3.list_objects_v2(Bucket=BUCKET, MaxKeys=0)
    assert (v2["IsTruncated"], v2["KeyCount"], v2.get("Contents")) == (False, 0, None)
    assert "NextContinuationToken" not in v2
    v1 = s3.list_objects(Bucket=BUCKET, MaxKeys=0)
    assert v1["IsTruncated"] is False and "Contents" not in v1
    versions = s3.list_object_versions(Bucket=BUCKET, MaxKeys=0)
    assert versions["IsTruncated"] is False and "Versions" not in versions
    up = s3.create_multipart_upload(Bucket=BUCKET, Key="mk0")["UploadId"]
    s3.upload_part(Bucket=BUCKET, Key="mk0", UploadId=up, PartNumber=1, Body=b"x")
    uploads = s3.list_multipart_uploads(Bucket=BUCKET, MaxUploads=0)
    assert uploads["IsTruncated"] is False and "Uploads" not in uploads
    parts = s3.list_parts(Bucket=BUCKET, Key="mk0", UploadId=up, MaxParts=0)
    assert parts["IsTruncated"] is False and "Parts" not in parts
    s3.abort_multipart_upload(Bucket=BUCKET, Key="mk0", UploadId=up)
    # The AWS CLI's s3api, which pages on IsTruncated, stops at once.
    cli = AwsCli(S3Target("127.0.0.1", s3srv.http_port, ACCESS_KEY, SECRET_KEY), tmp_path)
    out = cli.json("list-objects-v2", "--bucket", BUCKET, "--max-keys", "0", "--no-paginate")
    assert out.get("IsTruncated") is False and out.get("KeyCount") == 0
