"""A static website on kvbox, as a browser sees it: headless Chromium on ``--web-port``.

Layer: tests/e2e. Rules: one ``kvbox serve --web-port P --web-domain kvbox.test``; the
site is uploaded with boto3 and opened to the public with the user guide's website
policy. Chromium resolves ``*.kvbox.test`` (and nothing else) to 127.0.0.1, so it sends
``Host: site.kvbox.test:P`` as it would to a real website endpoint. The index page's own
script checks what a visitor gets (the image decodes, a folder path serves its index
document, a missing page serves the error document with 404, a private object is
refused) and writes the outcome into the DOM, which ``--dump-dom`` prints once the
page's virtual time budget has run out. Chromium runs in its own process group and is
ended by that group's id.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from _ports import free_port

from ._png import RED_PNG
from ._s3 import S3Server

DOMAIN = "kvbox.test"

#: The index page: every check it makes, then one JSON line in <pre id="out">.
INDEX = """<!doctype html>
<html><head><title>kvbox site</title></head>
<body>
<img id="cat" src="cat.png" alt="cat">
<pre id="out">pending</pre>
<script>
async function status(path) {
  const r = await fetch(path, {cache: "no-store"});
  return {status: r.status, text: await r.text(), type: r.headers.get("Content-Type")};
}
async function main() {
  const img = document.getElementById("cat");
  if (!img.complete) {
    await new Promise(ok => { img.onload = ok; img.onerror = ok; });
  }
  const out = {
    image: [img.naturalWidth, img.naturalHeight],
    folder: await status("docs/"),
    missing: await status("no/such/page.html"),
    secret: await status("private/secret.txt"),
  };
  document.getElementById("out").textContent = JSON.stringify(out);
}
main().catch(e => { document.getElementById("out").textContent = "error " + e; });
</script>
</body></html>
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[S3Server, int]]:
    web_port = free_port()
    data = tmp_path_factory.mktemp("website-browser") / "data"
    srv = S3Server(data, "--web-port", str(web_port), "--web-domain", DOMAIN).start()
    s3 = srv.client()
    b = "site"
    s3.create_bucket(Bucket=b)
    files = {
        "index.html": (INDEX.encode(), "text/html"),
        "cat.png": (RED_PNG, "image/png"),
        "docs/index.html": (b"<h1>the docs</h1>", "text/html"),
        "404.html": (b"<h1>no such page</h1>", "text/html"),
        "private/secret.txt": (b"do not show", "text/plain"),
    }
    for key, (body, ctype) in files.items():
        s3.put_object(Bucket=b, Key=key, Body=body, ContentType=ctype)
    s3.put_bucket_website(
        Bucket=b,
        WebsiteConfiguration={
            "IndexDocument": {"Suffix": "index.html"},
            "ErrorDocument": {"Key": "404.html"},
        },
    )
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "PublicReadGetObject",
                "Effect": "Allow",
                "Principal": "*",
                "Action": ["s3:GetObject"],
                "Resource": f"arn:aws:s3:::{b}/*",
            },
            {
                "Sid": "PublicList",
                "Effect": "Allow",
                "Principal": "*",
                "Action": ["s3:ListBucket"],
                "Resource": f"arn:aws:s3:::{b}",
            },
            {
                "Sid": "NotThePrivateFolder",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{b}/private/*",
            },
        ],
    }
    s3.put_bucket_policy(Bucket=b, Policy=json.dumps(policy))
    yield srv, web_port
    print(f"--- server log\n{srv.server.log_text()[-20000:]}")
    srv.close()


def dump_dom(exe: str, url: str, tmp: Path) -> str:
    """Chromium's DOM of ``url`` after the page's scripts had 10 s of virtual time."""
    argv = [
        exe,
        "--headless",
        "--no-sandbox",  # the tests may run as root, where the sandbox cannot start
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-extensions",
        f"--host-resolver-rules=MAP *.{DOMAIN} 127.0.0.1, MAP * ~NOTFOUND",
        f"--user-data-dir={tmp / 'chromium-profile'}",
        "--virtual-time-budget=10000",
        "--dump-dom",
        url,
    ]
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=90)
    finally:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
    assert proc.returncode == 0, err.decode(errors="replace")[-3000:]
    return out.decode()


def test_a_browser_visits_the_website(
    chromium: str, site: tuple[S3Server, int], tmp_path: Path
) -> None:
    _srv, port = site
    dom = dump_dom(chromium, f"http://site.{DOMAIN}:{port}/", tmp_path)
    found = re.search(r'<pre id="out">(.*?)</pre>', dom, re.S)
    assert found is not None, dom[-3000:]
    text = found.group(1).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    assert text.startswith("{"), text
    seen: dict[str, Any] = json.loads(text)
    # the index document was served for "/", and its image decoded: RED_PNG is 16x16
    assert seen["image"] == [16, 16]
    assert seen["folder"] == {
        "status": 200,
        "text": "<h1>the docs</h1>",
        "type": "text/html",
    }
    assert seen["missing"]["status"] == 404
    assert seen["missing"]["text"] == "<h1>no such page</h1>"
    assert seen["secret"]["status"] == 403 and "do not show" not in seen["secret"]["text"]
