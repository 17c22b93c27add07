"""The console's own endpoints: what the S3 API has no call for, asked of it first.

Layer: console (async, over the S3 door through the door's ``S3Call`` and over the
Store for counters). Rules: each endpoint first asks the S3 door, as the principal,
whatever the API would ask before showing the same thing -- HeadBucket (s3:ListBucket)
before a bucket's object count and bytes, HeadObject before a presigned link or the
public check -- and only then reads what the answer allows. The policy validator is the
one PutBucketPolicy runs. The dashboard shows the host (data directory, free space) to
root only: the API shows no one else anything of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import quote, urlsplit

from defusedxml import ElementTree

from kvbox import __version__
from kvbox.auth import sigv4
from kvbox.console.gateway import REGION
from kvbox.console.policy_lines import error_line
from kvbox.console.replies import Refused, error_reply, json_reply, read_json
from kvbox.console.samples import MetricsRing
from kvbox.console.session import Session
from kvbox.console.settings import ConsoleSettings
from kvbox.core.meta.users import ROOT
from kvbox.core.store import Store
from kvbox.errors import KvboxError
from kvbox.policy import PolicyError, is_public, parse_policy
from kvbox.s3door.types import S3Request, S3Response

#: Names one statistics request may ask about.
_MAX_STAT_NAMES: Final = 1000
#: Seconds the data directory's measured size is reused (walking it costs a stat per file).
_DISK_CACHE_SECONDS: Final = 30.0
#: Seconds a principal's dashboard totals are reused: they cost a HeadBucket per bucket,
#: and an open dashboard asks every few seconds.
_TOTALS_CACHE_SECONDS: Final = 15.0

#: One bodiless S3 request as a session's principal (anonymous with None): the door's
#: response and its S3 error code ("" on success). ``ConsoleDoor`` provides it.
S3Call = Callable[[S3Request, Session | None, str, str, str], Awaitable[tuple[S3Response, str]]]
Handler = Callable[[S3Request, Session], Awaitable[S3Response]]


class ConsoleApi:
    """The endpoints under ``/console/api/`` that are not the S3 relay or the session."""

    def __init__(
        self,
        s3: S3Call,
        s3_url: Callable[[S3Request], str],
        store: Store,
        settings: ConsoleSettings,
        ring: MetricsRing,
        *,
        clock: Callable[[], float],
        wall: Callable[[], float],
    ) -> None:
        self._s3_call = s3
        self._s3_url = s3_url
        self.store = store
        self.settings = settings
        self.ring = ring
        self._clock = clock
        self._wall = wall
        self._started = wall()
        self._disk: tuple[float, dict[str, int]] | None = None
        self._totals: dict[str, tuple[float, dict[str, int]]] = {}

    def routes(self) -> dict[tuple[str, str], Handler]:
        return {
            ("GET", "stats"): self.stats,
            ("POST", "presign"): self.presign,
            ("GET", "public"): self.public,
            ("POST", "policy/validate"): self.validate_policy,
            ("GET", "dashboard"): self.dashboard,
        }

    def _s3(
        self, req: S3Request, s: Session | None, method: str, raw_path: str, raw_query: str = ""
    ) -> Awaitable[tuple[S3Response, str]]:
        return self._s3_call(req, s, method, raw_path, raw_query)

    async def bucket_stats(self, req: S3Request, s: Session, name: str) -> dict[str, int] | None:
        """Object count and bytes of a bucket the principal may list (HeadBucket needs
        s3:ListBucket, as listing every key would); None if it may not."""
        head, _ = await self._s3(req, s, "HEAD", "/" + quote(name, safe=""))
        if head.status != 200:
            return None
        try:
            st = await self.store.stats(name)
        except KvboxError:
            return None
        return {"objects": st.objects, "bytes": st.bytes}

    async def stats(self, req: S3Request, s: Session) -> S3Response:
        names = [v for k, v in req.query if k == "bucket"][:_MAX_STAT_NAMES]
        out = {name: await self.bucket_stats(req, s, name) for name in names}
        return json_reply(200, {"buckets": out})

    async def _object_head(
        self, req: S3Request, s: Session | None, bucket: str, key: str, version: str | None
    ) -> tuple[S3Response, str]:
        path = "/" + quote(bucket, safe="") + "/" + quote(key, safe="/")
        query = f"versionId={quote(version, safe='')}" if version else ""
        return await self._s3(req, s, "HEAD", path, query)

    @staticmethod
    def _object_args(doc: Mapping[str, Any]) -> tuple[str, str, str | None]:
        bucket, key, version = doc.get("bucket"), doc.get("key"), doc.get("version_id")
        if not isinstance(bucket, str) or not bucket or not isinstance(key, str) or not key:
            raise Refused(400, "BadRequest", "bucket and key are required")
        if version is not None and (not isinstance(version, str) or not version):
            raise Refused(400, "BadRequest", "version_id must be a version id")
        return bucket, key, version

    @staticmethod
    def _refused_by_s3(status: int, code: str, what: str) -> S3Response:
        """The S3 door's refusal of a HEAD (which has no body) as a console error."""
        messages = {
            404: "no such bucket, object or version",
            403: "you may not read this object",
        }
        return error_reply(status, code or "Error", f"{what}: {messages.get(status, code)}")

    async def presign(self, req: S3Request, s: Session) -> S3Response:
        """A presigned GET for an object the principal can read, valid ``expires`` seconds
        (1 s to 7 days, SigV4's range). Signed with the session's own key, so the link
        can do exactly what the principal can, and stops when the key does."""
        doc = await read_json(req)
        bucket, key, version = self._object_args(doc)
        expires = doc.get("expires", 3600)
        if (
            not isinstance(expires, int)
            or isinstance(expires, bool)
            or not 1 <= expires <= sigv4.MAX_PRESIGNED_EXPIRES
        ):
            raise Refused(
                400,
                "BadRequest",
                f"expires must be 1 to {sigv4.MAX_PRESIGNED_EXPIRES} seconds (7 days)",
            )
        head, code = await self._object_head(req, s, bucket, key, version)
        if head.status != 200:
            return self._refused_by_s3(head.status, code, "no link made")
        base = urlsplit(self._s3_url(req))
        # What is signed is the path kvbox will see; a reverse proxy's prefix (in the URL
        # only) is stripped by the proxy before kvbox checks the signature.
        path = "/" + quote(bucket, safe="") + "/" + quote(key, safe="/~")
        query = [("versionId", quote(version, safe=""))] if version else []
        url = sigv4.presign_url(
            "GET",
            base.scheme,
            base.netloc,
            path,
            query,
            access_key=s.access_key,
            secret_key=s.secret_key,
            now=datetime.now(UTC),
            expires=expires,
            region=REGION,
        )
        if base.path:
            origin = f"{base.scheme}://{base.netloc}"
            url = origin + base.path + url[len(origin) :]
        return json_reply(200, {"url": url, "expires": expires})

    async def public(self, req: S3Request, s: Session) -> S3Response:
        """Whether an anonymous request from this browser's address could read the object
        -- asked of the S3 door itself, with no credentials, after the principal showed
        it may read the object."""
        bucket, key, version = self._object_args(
            {k: v for k, v in req.query if k in ("bucket", "key", "version_id")}
        )
        head, code = await self._object_head(req, s, bucket, key, version)
        if head.status != 200:
            return self._refused_by_s3(head.status, code, "cannot tell")
        anon, _ = await self._object_head(req, None, bucket, key, version)
        url = self._s3_url(req) + "/" + quote(bucket, safe="") + "/" + quote(key, safe="/~")
        if version:
            url += "?versionId=" + quote(version, safe="")
        return json_reply(200, {"public": anon.status == 200, "url": url})

    async def validate_policy(self, req: S3Request, s: Session) -> S3Response:
        """The server's own policy validator (what PutBucketPolicy runs), with the line
        its message is about; nothing is stored."""
        doc = await read_json(req)
        bucket, text = doc.get("bucket"), doc.get("policy")
        if not isinstance(bucket, str) or not bucket or not isinstance(text, str):
            raise Refused(400, "BadRequest", "bucket and policy (text) are required")
        try:
            policy = parse_policy(text, bucket)
        except PolicyError as exc:
            message = str(exc)
            return json_reply(
                200, {"ok": False, "message": message, "line": error_line(text, message)}
            )
        return json_reply(
            200, {"ok": True, "public": is_public(policy), "statements": len(policy.statements)}
        )

    async def _visible_buckets(self, req: S3Request, s: Session) -> list[str]:
        listing, _ = await self._s3(req, s, "GET", "/")
        if listing.status != 200 or not isinstance(listing.body, bytes):
            return []
        root = ElementTree.fromstring(listing.body)
        ns = root.tag.partition("}")[0] + "}" if root.tag.startswith("{") else ""
        return [el.text or "" for el in root.iter(f"{ns}Name")]

    def _disk_usage(self) -> dict[str, int] | None:
        data = self.settings.data_dir
        if data is None:
            return None
        now = self._clock()
        if self._disk is not None and now - self._disk[0] < _DISK_CACHE_SECONDS:
            return self._disk[1]
        used = 0
        for dirpath, _dirs, files in os.walk(data):
            for f in files:
                with contextlib.suppress(OSError):
                    used += os.lstat(os.path.join(dirpath, f)).st_blocks * 512
        du = shutil.disk_usage(data)
        out = {"used": used, "free": du.free, "total": du.total}
        self._disk = (now, out)
        return out

    async def _stored_totals(self, req: S3Request, s: Session) -> dict[str, int]:
        """Objects and bytes over the buckets ``s`` may list, reused for a few seconds."""
        now = self._clock()
        hit = self._totals.get(s.access_key)
        if hit is not None and now - hit[0] < _TOTALS_CACHE_SECONDS:
            return hit[1]
        totals = {"objects": 0, "bytes": 0, "buckets": 0}
        for name in await self._visible_buckets(req, s):
            st = await self.bucket_stats(req, s, name)
            if st is not None:
                totals["buckets"] += 1
                totals["objects"] += st["objects"]
                totals["bytes"] += st["bytes"]
        if len(self._totals) > 1000:  # one entry per key that opened a dashboard lately
            self._totals.clear()
        self._totals[s.access_key] = (now, totals)
        return totals

    async def dashboard(self, req: S3Request, s: Session) -> S3Response:
        """Charts from the ring; stored objects and bytes over the buckets this principal
        may list; the data directory's size and free space for root only (the API shows
        no one else anything of the host)."""
        out: dict[str, Any] = {
            "version": __version__,
            "started": self._started,
            "uptime": self._wall() - self._started,
            "now": self._wall(),
            "stored": await self._stored_totals(req, s),
            "metrics": self.ring.series(self._wall(), self._clock()),
        }
        if s.principal == ROOT:
            out["disk"] = await asyncio.to_thread(self._disk_usage)
            out["data_dir"] = str(self.settings.data_dir) if self.settings.data_dir else None
        return json_reply(200, out)
