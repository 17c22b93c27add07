"""The lifecycle worker: applies every bucket's lifecycle configuration in the background.

Layer: core (async, over ``Store`` only; knows no protocol). Rules:

* One pass walks each bucket that has a configuration: the key ranges its enabled rules
  cover (``rules.scan_prefixes``), a page of versions at a time, each key's versions
  gathered across pages and judged whole by ``rules.key_actions``; then the bucket's
  multipart uploads. Passes run every ``interval`` seconds and never overlap; a pass can
  also be asked for at once (``run_pass``).
* Every removal goes through ``Store.delete``, which asks ``kvbox.core.lock``: a version
  under a retention or legal hold is skipped (``skipped_locked``) and is looked at again
  on later passes, so it goes once its retention has passed -- never before. Lifecycle
  never bypasses governance mode.
* An expiry of a current version is conditional on it still being the current version
  (``IF_VERSION``): a PUT that lands between the listing and the delete is never expired
  in its place.
* The clock is injected (``clock``, ns since the epoch) and ``offset_ns`` is added to it,
  so tests can move a real server's lifecycle time forward without waiting days or
  patching anything (the test-only switch that allows it is ``kvbox serve
  --lifecycle-test-clock``; see docs/operations.md). The offset is also the "now" the
  lock rule sees for lifecycle's own removals, so a test can watch a retention end.
* A failure in one bucket is logged and counted and does not stop the pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from kvbox.core.lifecycle import rules
from kvbox.core.lifecycle.rules import ActionKind, LifecycleConfig
from kvbox.core.model import Condition, CondKind, ObjectVersion
from kvbox.core.periodic import Periodic
from kvbox.core.store import Store
from kvbox.errors import KvboxError, NotFound, ObjectLocked

log = logging.getLogger(__name__)

#: Versions (or uploads) listed per page: the metadata store's own page size.
PAGE: int = 1000
#: Default seconds between passes. AWS applies lifecycle rules about once a day; an hour
#: keeps kvbox within an hour of a rule's midnight while a pass over a quiet bucket costs
#: one listing.
DEFAULT_INTERVAL: float = 3600.0


@dataclass(slots=True)
class LifecycleStats:
    """What the worker has done since start, for ``/metrics`` (plain counters; the event
    loop is the only writer)."""

    passes: int = 0
    versions_scanned: int = 0
    expired_current: int = 0
    expired_noncurrent: int = 0
    delete_markers_removed: int = 0
    uploads_aborted: int = 0
    skipped_locked: int = 0
    errors: int = 0
    #: Wall-clock seconds (the lifecycle clock, offset included) when the last pass ended.
    last_pass_end: float = 0.0
    last_pass_seconds: float = 0.0
    running: bool = False
    by_rule: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PassReport:
    """What one pass did (the admin endpoint answers it)."""

    now_ns: int
    buckets: int
    versions_scanned: int
    expired_current: int
    expired_noncurrent: int
    delete_markers_removed: int
    uploads_aborted: int
    skipped_locked: int
    errors: int


class LifecycleWorker:
    def __init__(
        self,
        store: Store,
        *,
        interval: float = DEFAULT_INTERVAL,
        clock: Callable[[], int] = time.time_ns,
        page: int = PAGE,
    ) -> None:
        self.store = store
        self.interval = interval
        self._clock = clock
        self.offset_ns = 0
        self.page = page
        self.stats = LifecycleStats()
        self._pass_lock = asyncio.Lock()
        self._periodic = Periodic("kvbox-lifecycle", self.run_pass, interval, on_error=self._failed)

    def now_ns(self) -> int:
        return self._clock() + self.offset_ns

    # --- running ----------------------------------------------------------------------

    def start(self) -> None:
        """Run passes every ``interval`` seconds (0 or less: never on its own)."""
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()

    @staticmethod
    def _failed(exc: Exception) -> None:
        # A bug (a bucket's own failures are counted inside the pass): keep the schedule.
        log.error("lifecycle: the pass failed", exc_info=exc)

    async def run_pass(self) -> PassReport:
        """One pass over every bucket with a lifecycle configuration, now."""
        async with self._pass_lock:
            st = self.stats
            before = _counts(st)
            now = self.now_ns()
            t0 = time.monotonic()
            st.running = True
            buckets = 0
            try:
                for b in await self.store.list_buckets():
                    config = rules.config_of(await self.store.get_bucket(b.name))
                    if config is None or not config.enabled_rules:
                        continue
                    buckets += 1
                    try:
                        await self._bucket_pass(b.name, config, now)
                    except NotFound:
                        pass  # deleted during the pass
                    except KvboxError:
                        st.errors += 1
                        log.exception("lifecycle: bucket %s failed this pass", b.name)
            finally:
                st.running = False
                st.passes += 1
                st.last_pass_seconds = time.monotonic() - t0
                st.last_pass_end = self.now_ns() / 1e9
            after = _counts(st)
            return PassReport(now, buckets, *(a - b for a, b in zip(after, before, strict=True)))

    # --- one bucket -------------------------------------------------------------------

    async def _bucket_pass(self, bucket: str, config: LifecycleConfig, now: int) -> None:
        if any(r.noncurrent_days or r.expiration_days or r.expiration_date_ns
               or r.expired_object_delete_marker for r in config.enabled_rules):  # fmt: skip
            for prefix in rules.scan_prefixes(config):
                await self._scan(bucket, prefix, config, now)
        if any(r.abort_days for r in config.enabled_rules):
            await self._uploads(bucket, config, now)

    async def _scan(self, bucket: str, prefix: str, config: LifecycleConfig, now: int) -> None:
        key_marker = version_marker = ""
        pending: list[ObjectVersion] = []  # the versions of the key being gathered
        while True:
            page = await self.store.list_bucket_versions(
                bucket, prefix, key_marker, version_marker, self.page
            )
            for v in page:
                self.stats.versions_scanned += 1
                if pending and pending[0].key != v.key:
                    await self._apply(bucket, config, pending, now)
                    pending = []
                pending.append(v)
            if len(page) < self.page:
                break
            key_marker, version_marker = page[-1].key, page[-1].s3_version_id
        if pending:
            await self._apply(bucket, config, pending, now)

    async def _apply(
        self, bucket: str, config: LifecycleConfig, versions: list[ObjectVersion], now: int
    ) -> None:
        st = self.stats
        for action in rules.key_actions(config, versions, now):
            v = action.version
            try:
                if action.kind is ActionKind.EXPIRE_CURRENT:
                    result = await self.store.delete(
                        bucket, v.key, condition=Condition(CondKind.IF_VERSION, v.version_id)
                    )
                    if not result.ok:
                        continue  # overwritten since the listing: the new version stays
                    st.expired_current += 1
                elif action.kind is ActionKind.REMOVE_DELETE_MARKER:
                    await self.store.delete(bucket, v.key, v.version_id, now_ns=now)
                    st.delete_markers_removed += 1
                else:
                    # Decided in the transaction: if the versions above it were deleted
                    # since the listing, this one is current again and stays.
                    result = await self.store.delete(
                        bucket,
                        v.key,
                        v.version_id,
                        now_ns=now,
                        condition=Condition(CondKind.IF_NOT_NEWEST, v.version_id),
                    )
                    if not result.ok:
                        continue
                    st.expired_noncurrent += 1
            except ObjectLocked:
                st.skipped_locked += 1
                continue
            st.by_rule[action.rule_id] = st.by_rule.get(action.rule_id, 0) + 1

    async def _uploads(self, bucket: str, config: LifecycleConfig, now: int) -> None:
        key_marker = upload_marker = ""
        while True:
            page = await self.store.list_uploads(bucket, "", key_marker, upload_marker, self.page)
            for up in page:
                rule_id = rules.upload_due(config, up.key, up.initiated_ns, now)
                if rule_id is None:
                    continue
                with contextlib.suppress(NotFound):  # completed or aborted meanwhile
                    await self.store.abort_multipart(bucket, up.key, up.upload_id)
                    self.stats.uploads_aborted += 1
                    self.stats.by_rule[rule_id] = self.stats.by_rule.get(rule_id, 0) + 1
            if len(page) < self.page:
                break
            key_marker, upload_marker = page[-1].key, page[-1].upload_id


def _counts(st: LifecycleStats) -> tuple[int, ...]:
    return (
        st.versions_scanned,
        st.expired_current,
        st.expired_noncurrent,
        st.delete_markers_removed,
        st.uploads_aborted,
        st.skipped_locked,
        st.errors,
    )
