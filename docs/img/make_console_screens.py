"""Regenerate the console screenshots in docs/img/ (docs/console.md and README.md show them).

Run from the repository root, with the test extra installed and Debian's Chromium:

    python docs/img/make_console_screens.py

It starts a throw-away ``kvbox serve`` on free ports, fills it with a small S3 lab (a
bucket of pictures and notes with versions, a public-read policy, GW-KV keys), makes
twenty seconds of traffic so the dashboard has something to chart, and photographs the
main screens at 1280 px (light and dark) and 375 px wide with Playwright.
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3  # type: ignore[import-untyped]
from botocore.config import Config  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from e2e._browser import launched, new_page  # noqa: E402
from e2e._png import solid_png  # noqa: E402

ACCESS, SECRET = "KVSCREENSHOTKEY00001", "screenshot-secret-not-a-real-one"
OUT = Path(__file__).resolve().parent


def _wait_ready(port: int, timeout: float = 60.0) -> None:
    """Until the server's HTTP port answers (start-up is slower on a loaded machine)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _free() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    kv_port, http_port = _free(), _free()
    data = Path(tempfile.mkdtemp()) / "data"
    env = {**os.environ, "KVBOX_ROOT_ACCESS_KEY": ACCESS, "KVBOX_ROOT_SECRET_KEY": SECRET}
    argv = [sys.executable, "-m", "kvbox", "serve", "--data", str(data), "--kv-port",
            str(kv_port), "--http-port", str(http_port), "--sync", "normal"]  # fmt: skip
    server = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL)
    try:
        _wait_ready(http_port)
        endpoint = f"http://127.0.0.1:{http_port}"
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id=ACCESS,
            aws_secret_access_key=SECRET,
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}),
        )
        _seed(s3, kv_port)
        _traffic(s3, kv_port, seconds=20)
        _shoot(endpoint)
    finally:
        server.terminate()
        server.wait(20)


def _seed(s3: object, kv_port: int) -> None:
    c = s3  # boto3's client is untyped
    c.create_bucket(Bucket="photos")  # type: ignore[attr-defined]
    c.put_bucket_versioning(  # type: ignore[attr-defined]
        Bucket="photos", VersioningConfiguration={"Status": "Enabled"}
    )
    colours = {"sunset": (240, 120, 40), "sea": (30, 90, 200), "forest": (40, 140, 70)}
    for name, rgb in colours.items():
        c.put_object(  # type: ignore[attr-defined]
            Bucket="photos", Key=f"trip/{name}.png", Body=solid_png(320, 200, rgb),
            ContentType="image/png",
        )  # fmt: skip
    c.put_object(  # type: ignore[attr-defined]
        Bucket="photos", Key="cat.png", Body=solid_png(480, 300, (200, 60, 60)),
        ContentType="image/png", Metadata={"camera": "phone"},
    )  # fmt: skip
    c.put_object(  # type: ignore[attr-defined]
        Bucket="photos", Key="cat.png", Body=solid_png(480, 300, (120, 60, 200)),
        ContentType="image/png", Metadata={"camera": "phone"},
    )  # fmt: skip
    c.put_object(  # type: ignore[attr-defined]
        Bucket="photos", Key="notes/README.md",
        Body=b"# Trip notes\n\nDay one: the *sea*. Day two: the **forest**.\n\n- pack light\n",
        ContentType="text/markdown",
    )  # fmt: skip
    policy = {"Version": "2012-10-17", "Statement": [{"Sid": "PublicRead", "Effect": "Allow",
              "Principal": "*", "Action": "s3:GetObject",
              "Resource": "arn:aws:s3:::photos/trip/*"}]}  # fmt: skip
    c.put_bucket_policy(Bucket="photos", Policy=json.dumps(policy, indent=2))  # type: ignore[attr-defined]
    for name in ("backups", "website"):
        c.create_bucket(Bucket=name)  # type: ignore[attr-defined]
    with socket.create_connection(("127.0.0.1", kv_port)) as sock:
        sock.sendall(b"SET apple red\nSET pear green\nSET plum purple\n")
        time.sleep(0.5)


def _traffic(s3: object, kv_port: int, seconds: float) -> None:
    rng = random.Random(1)
    end = time.monotonic() + seconds
    with socket.create_connection(("127.0.0.1", kv_port)) as sock:
        sock.settimeout(5)
        while time.monotonic() < end:
            for _ in range(20):
                sock.sendall(f"SET k{rng.randrange(100)} v\n".encode())
                sock.recv(100)
            s3.list_objects_v2(Bucket="photos", MaxKeys=5)  # type: ignore[attr-defined]
            time.sleep(0.05)


def _shoot(endpoint: str) -> None:
    screens = [
        ("dashboard", "#/", 1280, "light"),
        ("objects", "#/objects?bucket=photos&prefix=trip/", 1280, "light"),
        ("object", "#/object?bucket=photos&key=cat.png", 1280, "light"),
        ("policy", "#/settings?bucket=photos&tab=permissions", 1280, "dark"),
        ("buckets-dark", "#/buckets", 1280, "dark"),
        ("kv", "#/kv?key=apple", 1280, "light"),
        ("objects-narrow", "#/objects?bucket=photos", 375, "light"),
        ("object-narrow", "#/object?bucket=photos&key=notes/README.md", 375, "dark"),
    ]
    with launched("/usr/bin/chromium") as browser:
        for name, fragment, width, theme in screens:
            page = new_page(browser, width=width, height=900 if width > 400 else 812,
                            color_scheme=theme)  # fmt: skip
            page.goto(f"{endpoint}/console/")
            page.get_by_label("Access key").fill(ACCESS)
            page.get_by_label("Secret key").fill(SECRET)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_selector("#page-title")
            page.goto(f"{endpoint}/console/{fragment}")
            page.wait_for_load_state("networkidle")
            time.sleep(1.0)
            if name == "policy":
                page.get_by_label("Key", exact=True).fill("trip/sea.png")
                page.get_by_role("button", name="Explain").click()
                page.wait_for_selector("#explain-verdict")
            page.evaluate("window.scrollTo(0, 0)")
            full = width < 400 or name == "policy"
            page.screenshot(path=str(OUT / f"console-{name}.png"), full_page=full)
            page.context.close()
            print(f"docs/img/console-{name}.png")


if __name__ == "__main__":
    main()
