"""The recorded history of a fault test's load, and the checker that judges it.

Layer: tests (tests/faults). Rules: pure -- no I/O, no clock, no asyncio; the load
generator measures times and calls ``History.record``, the test reads the final state
back from the gateways and calls ``check``. Nothing here knows a door's wire form.

What is recorded: one ``Op`` per client operation -- who (client, gateway, door), what
(``kind``, bucket and key, the digest of the value written or read, the version id when
the door said it, the expectation of a conditional write), when (``start``/``end``,
``time.monotonic()`` taken just before sending and just after the answer) and how it
ended (``outcome``):

* ``ok``: acknowledged -- the server answered success (a read answered a value or "not
  found"; a CAS/If-Match write answered its new version).
* ``fail``: refused with an answer that promises nothing was written (a CAS ``CONFLICT``,
  412 PreconditionFailed, 503 with fewer than W blob nodes before any commit). A refused
  write must never be seen.
* ``unknown``: no answer or one that cannot say (timeout, connection lost after sending,
  a 500 while PostgreSQL restarts): the write may have landed at any moment after
  ``start`` -- even after ``end`` -- or never. A load generator that is unsure records
  ``unknown``: it only loosens the checks, never fakes an anomaly.

What the load must do for the checker to be exact: write a value unique per write
(a client id and a counter in it), so a digest names one write; record every write to
the keys it checks (an unrecorded writer is a "phantom"); keep a counter key's writes
to CAS increments (``count`` = the number written); read the final state of every key
it touched, newest version first (``Version``), with the bucket's versioning known.

The rules (each function's docstring says why it holds in kvbox's design): durability
(``lost-write``), read-after-ack across gateways (``stale-read``), version order =
real-time order (``version-order``), no lost update on CAS chains (``lost-update``), no
value nobody wrote (``phantom``), and MULTISET's all-or-nothing (``atomicity``).
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

Door = Literal["s3", "kv"]
Kind = Literal["put", "cas", "delete", "get", "list_versions"]
Outcome = Literal["ok", "fail", "unknown"]
Key = tuple[str, str]
"""(bucket, key): GW-KV's default bucket is ``kv``, so a GW-KV key and the S3 object
``kv/<key>`` are one key to the checker."""

ABSENT = "-"
"""``Op.expected`` of a write conditioned on the key having no live value (GW-KV ``CAS k -``,
S3 ``If-None-Match: *``)."""

WRITES: frozenset[Kind] = frozenset({"put", "cas", "delete"})


def digest(value: bytes) -> str:
    """The digest the history keeps of a value (SHA-256, hex): values are compared by it."""
    return hashlib.sha256(value).hexdigest()


@dataclass(frozen=True)
class Version:
    """One version of a key as listed at the end (S3 ListObjectVersions, GW-KV VERSIONS).

    ``digest`` is None for a delete marker; ``version`` None where the door names none
    (S3 in a bucket without versioning).
    """

    version: str | None
    digest: str | None


@dataclass(frozen=True)
class Op:
    """One client operation as the load generator saw it (module docstring).

    ``digest``: for a write, the value written (None for a delete); for a read, the value
    read (None: not found). ``version``: the version id the answer named (a write's new
    version, a read's version), None when it named none. ``expected``: for a conditional
    write, the DIGEST of the value it was conditioned on (the client read it together with
    its version id or ETag; values are unique, so the digest names that version whatever
    the door's token), ``ABSENT`` for "no live value", None for an unconditional write.
    ``count``: a counter increment's new number (a read of a counter: the number read).
    ``group``: writes made by one atomic request (a MULTISET) share it. ``listed``: a
    ``list_versions`` answer, newest first. ``result``: the answer as text, for the report.
    """

    index: int
    client: str
    gateway: str
    door: Door
    kind: Kind
    bucket: str
    key: str
    start: float
    end: float
    outcome: Outcome
    digest: str | None = None
    version: str | None = None
    expected: str | None = None
    count: int | None = None
    group: str | None = None
    listed: tuple[Version, ...] = ()
    result: str = ""

    @property
    def ident(self) -> Key:
        return (self.bucket, self.key)

    @property
    def acked(self) -> bool:
        return self.outcome == "ok"

    @property
    def is_write(self) -> bool:
        return self.kind in WRITES

    @property
    def effect_end(self) -> float:
        """The latest moment the operation can take effect: its answer for ``ok`` and
        ``fail``, never bounded for ``unknown`` (PostgreSQL may commit a transaction whose
        client has long given up)."""
        return math.inf if self.outcome == "unknown" else self.end

    def __str__(self) -> str:
        parts = [
            f"#{self.index} {self.client}@{self.gateway}/{self.door} {self.kind}",
            f"{self.bucket}/{self.key}",
            f"[{self.start:.3f}..{self.end:.3f}] {self.outcome}",
        ]
        if self.digest is not None:
            parts.append(f"digest={self.digest[:12]}")
        if self.version is not None:
            parts.append(f"version={self.version}")
        if self.expected is not None:
            parts.append(f"expected={self.expected[:12]}")
        if self.count is not None:
            parts.append(f"count={self.count}")
        if self.group is not None:
            parts.append(f"group={self.group}")
        if self.result:
            parts.append(repr(self.result[:80]))
        return " ".join(parts)


class History:
    """The operations of one load run, in the order they were recorded.

    ``record`` may be called from several threads (boto3 clients are synchronous and run
    in a pool); it only appends under a lock.
    """

    def __init__(self) -> None:
        self._ops: list[Op] = []
        self._lock = threading.Lock()

    def record(
        self,
        *,
        client: str,
        gateway: str,
        door: Door,
        kind: Kind,
        bucket: str,
        key: str,
        start: float,
        end: float,
        outcome: Outcome,
        digest: str | None = None,
        version: str | None = None,
        expected: str | None = None,
        count: int | None = None,
        group: str | None = None,
        listed: Sequence[Version] = (),
        result: str = "",
    ) -> Op:
        if end < start:
            raise ValueError(f"operation ends before it starts: {start} > {end}")
        with self._lock:
            op = Op(
                index=len(self._ops),
                client=client,
                gateway=gateway,
                door=door,
                kind=kind,
                bucket=bucket,
                key=key,
                start=start,
                end=end,
                outcome=outcome,
                digest=digest,
                version=version,
                expected=expected,
                count=count,
                group=group,
                listed=tuple(listed),
                result=result,
            )
            self._ops.append(op)
            return op

    @property
    def ops(self) -> tuple[Op, ...]:
        with self._lock:
            return tuple(self._ops)

    def __iter__(self) -> Iterator[Op]:
        return iter(self.ops)

    def __len__(self) -> int:
        with self._lock:
            return len(self._ops)

    def keys(self) -> set[Key]:
        """Every (bucket, key) an operation touched: the final state must list them all."""
        return {op.ident for op in self.ops}

    def acked_writes(self) -> list[Op]:
        """The acknowledged writes, for a read-back of every one from either gateway."""
        return [op for op in self.ops if op.is_write and op.acked]


@dataclass(frozen=True)
class Anomaly:
    """One broken rule: its name, the key, the operations involved and what was seen."""

    rule: str
    key: Key
    ops: tuple[Op, ...]
    detail: str

    def __str__(self) -> str:
        lines = [f"{self.rule} on {self.key[0]}/{self.key[1]}: {self.detail}"]
        lines += [f"    {op}" for op in self.ops]
        return "\n".join(lines)


def report(anomalies: Sequence[Anomaly], limit: int = 20) -> str:
    """The anomalies as a failing test prints them (the first ``limit``, then a count)."""
    shown = [str(a) for a in anomalies[:limit]]
    if len(anomalies) > limit:
        shown.append(f"... and {len(anomalies) - limit} more")
    return "\n".join(shown)


@dataclass
class _KeyView:
    """One key's operations and final versions, indexed the ways the rules ask."""

    ident: Key
    versioned: bool
    final: tuple[Version, ...]  # newest first
    writes: list[Op] = field(default_factory=list)
    reads: list[Op] = field(default_factory=list)
    lists: list[Op] = field(default_factory=list)

    def writers_of(self, value: str) -> list[Op]:
        return [w for w in self.writes if w.digest == value]

    def final_position(self, w: Op) -> int | None:
        """Where write ``w`` sits in the final list, 0 = oldest (by version id when both
        sides have one, else by digest), None if it is not there."""
        oldest_first = list(reversed(self.final))
        for i, v in enumerate(oldest_first):
            if w.version is not None and v.version is not None:
                if w.version == v.version:
                    return i
            elif w.kind != "delete" and v.digest is not None and v.digest == w.digest:
                return i
        return None


def check(
    history: History | Iterable[Op],
    final: Mapping[Key, Sequence[Version]],
    *,
    versioned: Collection[str] = (),
) -> list[Anomaly]:
    """Every anomaly of ``history`` against the ``final`` state (empty: none found).

    ``final`` maps each (bucket, key) the history touched to its versions newest first
    (an empty list: the key has none); ``versioned`` names the buckets with versioning on
    (the others keep only a key's newest version). A key missing from ``final`` is an
    error in the test, not an anomaly.
    """
    ops = history.ops if isinstance(history, History) else tuple(history)
    views: dict[Key, _KeyView] = {}
    missing = sorted({op.ident for op in ops} - set(final))
    if missing:
        raise ValueError(f"the final state lacks keys the history touched: {missing[:5]}")
    for ident, versions in final.items():
        views[ident] = _KeyView(ident, ident[0] in versioned, tuple(versions))
    for op in ops:
        view = views[op.ident]
        if op.is_write:
            view.writes.append(op)
        elif op.kind == "get":
            view.reads.append(op)
        else:
            view.lists.append(op)
    anomalies: list[Anomaly] = []
    for view in views.values():
        anomalies += durability(view)
        anomalies += stale_reads(view)
        anomalies += version_order(view)
        anomalies += lost_updates(view)
        anomalies += phantoms(view)
    anomalies += atomicity(ops, views)
    return anomalies


def durability(view: _KeyView) -> list[Anomaly]:
    """Every acknowledged write is in the final state, unless a later write replaced it.

    Why it holds: a gateway acknowledges only after PostgreSQL's COMMIT returned (and, for
    chunks, after W blob nodes fsynced them), so no crash of a gateway, a blob node or
    PostgreSQL itself (its WAL is fsynced at COMMIT) can take it back. In a versioned
    bucket nothing the load does removes a version, so the write's version must be listed
    with the bytes written; without versioning the key's final value must come from this
    write or from one that may have committed after it (started before this one was
    acknowledged, or is unknown).
    """
    found: list[Anomaly] = []
    for w in view.writes:
        if not w.acked:
            continue
        if view.versioned:
            if w.kind == "delete" and w.version is None:
                continue  # a GW-KV DELETE names no marker: nothing to look for
            pos = view.final_position(w)
            if pos is None:
                found.append(
                    Anomaly(
                        "lost-write", view.ident, (w,), "acknowledged, not in the final versions"
                    )
                )
                continue
            listed = list(reversed(view.final))[pos]
            if listed.digest != w.digest:
                found.append(
                    Anomaly(
                        "lost-write",
                        view.ident,
                        (w,),
                        f"listed with other bytes: {_short(listed.digest)} != {_short(w.digest)}",
                    )
                )
            continue
        current = view.final[0].digest if view.final else None
        if current == w.digest:
            continue  # its value is the final one (for a delete: the key is absent)
        # The final value (or its absence) must come from a write that may have taken
        # effect after w did: one that had not been acknowledged when w started.
        if current is None:
            replacers = [d for d in view.writes if d.kind == "delete"]
        else:
            replacers = view.writers_of(current)
        later = [
            r for r in replacers if r is not w and r.outcome != "fail" and r.effect_end > w.start
        ]
        if not later:
            found.append(
                Anomaly(
                    "lost-write",
                    view.ident,
                    (w, *replacers),
                    f"acknowledged, but the final value ({_short(current)}) is older",
                )
            )
    return found


def stale_reads(view: _KeyView) -> list[Anomaly]:
    """A read that started after a write's acknowledgement returns it or a newer value.

    Why it holds: a write is acknowledged after its COMMIT, reads take no lock and see
    every committed transaction, and a gateway on shared metadata keeps no read cache of
    versions (docs/ARCHITECTURE.md, "Metadata shared by gateways"), so whichever gateway
    serves the read sees it. "Newer" is judged by real time for every write, and in a
    versioned bucket also by the final version order (= commit order): a read may return
    an older value only while a newer one was not yet acknowledged.
    """
    found: list[Anomaly] = []
    acked = [w for w in view.writes if w.acked]
    oldest_first = list(reversed(view.final))
    for r in view.reads:
        if not r.acked:
            continue
        before = [w for w in acked if w.end < r.start]
        if r.digest is None:
            # Not found: some delete (or the key's initial absence) must be newest.
            deletes = [d for d in view.writes if d.kind == "delete" and d.outcome != "fail"]
            for w in before:
                if w.kind == "delete":
                    continue
                if not any(d.effect_end > w.start and d.start < r.end for d in deletes):
                    found.append(
                        Anomaly("stale-read", view.ident, (r, w), "not found after an acked write")
                    )
                    break
            continue
        sources = [x for x in view.writers_of(r.digest) if x.outcome != "fail"]
        if not sources:
            continue  # a phantom: phantoms() reports it
        for w in before:
            if w.digest == r.digest:
                continue
            if all(x.effect_end < w.start for x in sources):
                found.append(
                    Anomaly("stale-read", view.ident, (r, w, *sources), "read an older value")
                )
                break
            if view.versioned and _newer_in_final(view, w, sources, oldest_first):
                found.append(
                    Anomaly(
                        "stale-read",
                        view.ident,
                        (r, w, *sources),
                        "read a version older (in the final order) than one acked before",
                    )
                )
                break
        future = [x for x in sources if x.start > r.end]
        if len(future) == len(sources):
            found.append(
                Anomaly(
                    "stale-read", view.ident, (r, *sources), "read a value before it was written"
                )
            )
    return found


def _newer_in_final(view: _KeyView, w: Op, sources: list[Op], oldest_first: list[Version]) -> bool:
    """True if write ``w`` is listed after every source of the read (so the read is older)."""
    pos_w = view.final_position(w)
    if pos_w is None:
        return False
    positions = [view.final_position(x) for x in sources]
    known = [p for p in positions if p is not None]
    return bool(known) and len(known) == len(positions) and all(p < pos_w for p in known)


def version_order(view: _KeyView) -> list[Anomaly]:
    """Version order = real-time order, and every version id is unique.

    Why it holds: a version's ``seq`` is taken from a PostgreSQL sequence after the key's
    row lock is held, inside the transaction that commits it, so a key's versions are
    numbered in commit order; a write acknowledged before another started committed
    first. Version ids are ULIDs made by the gateway; two equal ids would make one version
    unreachable. Every listing seen during the run lists versions in the same order as
    the final listing (an order once shown never changes).
    """
    found: list[Anomaly] = []
    ids = [v.version for v in view.final if v.version is not None]
    dup = {i for i in ids if ids.count(i) > 1}
    if dup:
        found.append(
            Anomaly("version-order", view.ident, (), f"version ids listed twice: {sorted(dup)}")
        )
    by_version: dict[str, list[Op]] = defaultdict(list)
    for w in view.writes:
        if w.acked and w.version is not None:
            by_version[w.version].append(w)
    for vid, same in by_version.items():
        if len(same) > 1:
            found.append(
                Anomaly("version-order", view.ident, tuple(same), f"one version id {vid} twice")
            )
    if not view.versioned:
        return found
    placed = [(w, view.final_position(w)) for w in view.writes if w.acked]
    for a, pa in placed:
        for b, pb in placed:
            if pa is None or pb is None or a is b:
                continue
            if a.end < b.start and pa > pb:
                found.append(
                    Anomaly(
                        "version-order",
                        view.ident,
                        (a, b),
                        "acked before the other started, but listed as newer",
                    )
                )
    final_ids = [v.version for v in reversed(view.final) if v.version is not None]
    rank = {vid: i for i, vid in enumerate(final_ids)}
    for lst in view.lists:
        if not lst.acked:
            continue
        seen = [rank[v.version] for v in reversed(lst.listed) if v.version in rank]
        if seen != sorted(seen):
            found.append(
                Anomaly("version-order", view.ident, (lst,), "a listing ordered versions otherwise")
            )
    return found


def lost_updates(view: _KeyView) -> list[Anomaly]:
    """Acknowledged conditional writes form one line; a counter counts every increment.

    Why it holds: a CAS / If-Match / If-None-Match write is decided inside its PostgreSQL
    transaction with the key's row locked (``core/meta/rules.py``), so its expectation is
    compared with the newest version at its commit: two writes conditioned on the same
    version cannot both commit. So no two acknowledged conditional writes share an
    expectation; in a versioned bucket each conditional version's expectation is the
    version listed just before it; and a counter's final number lies between the
    acknowledged increments and those plus the unknown ones (which may or may not have
    landed).
    """
    found: list[Anomaly] = []
    conditional = [w for w in view.writes if w.expected is not None]
    by_expected: dict[str, list[Op]] = defaultdict(list)
    for w in conditional:
        if w.acked:
            by_expected[w.expected or ""].append(w)
    for expected, same in by_expected.items():
        if len(same) > 1:
            found.append(
                Anomaly(
                    "lost-update",
                    view.ident,
                    tuple(same),
                    f"{len(same)} acknowledged writes conditioned on {_short(expected)}",
                )
            )
    if view.versioned:
        oldest_first = list(reversed(view.final))
        for i, v in enumerate(oldest_first):
            if v.digest is None:
                continue
            makers = [w for w in conditional if w.digest == v.digest and w.outcome != "fail"]
            if not makers:
                continue
            previous = oldest_first[i - 1].digest if i > 0 else None
            wanted = ABSENT if previous is None else previous
            if all(w.expected != wanted for w in makers):
                found.append(
                    Anomaly(
                        "lost-update",
                        view.ident,
                        tuple(makers),
                        f"committed over {_short(wanted)}, conditioned on another version",
                    )
                )
    counted = [w for w in view.writes if w.count is not None]
    if counted:
        current = view.final[0] if view.final else None
        final_count = 0
        if current is not None and current.digest is not None:
            makers = view.writers_of(current.digest)
            final_count = next((w.count for w in makers if w.count is not None), -1)
        acked = sum(1 for w in counted if w.acked)
        unknown = sum(1 for w in counted if w.outcome == "unknown")
        if not acked <= final_count <= acked + unknown:
            found.append(
                Anomaly(
                    "lost-update",
                    view.ident,
                    (),
                    f"counter is {final_count}; {acked} increments acknowledged, {unknown} unknown",
                )
            )
    return found


def phantoms(view: _KeyView) -> list[Anomaly]:
    """No read returns, and no final version holds, a value nobody wrote.

    Why it holds: a version's bytes are immutable content-addressed chunks (or an inline
    value) checked against their SHA-256 / CRC-32C on every read, and a version row is
    committed whole with its chunk list, so a read returns exactly one committed write's
    bytes -- never a torn or mixed value, never a refused write's (a refused write
    commits nothing). A read that names a version must name the one whose bytes it gave.
    """
    found: list[Anomaly] = []
    written = {w.digest for w in view.writes if w.outcome != "fail" and w.digest is not None}
    refused = {w.digest for w in view.writes if w.outcome == "fail" and w.digest is not None}
    by_version = {w.version: w for w in view.writes if w.version is not None and w.acked}
    for r in view.reads:
        if not r.acked or r.digest is None:
            continue
        if r.digest not in written:
            what = "a refused write's value" if r.digest in refused else "a value nobody wrote"
            found.append(
                Anomaly("phantom", view.ident, (r, *view.writers_of(r.digest)), f"read {what}")
            )
            continue
        maker = by_version.get(r.version) if r.version is not None else None
        if maker is not None and maker.digest != r.digest:
            found.append(
                Anomaly("phantom", view.ident, (r, maker), "version id and bytes disagree")
            )
    for v in view.final:
        if v.digest is not None and v.digest not in written:
            what = "a refused write's value" if v.digest in refused else "a value nobody wrote"
            found.append(
                Anomaly(
                    "phantom",
                    view.ident,
                    tuple(view.writers_of(v.digest)),
                    f"final version {v.version} holds {what}",
                )
            )
    return found


def atomicity(ops: Sequence[Op], views: Mapping[Key, _KeyView]) -> list[Anomaly]:
    """A MULTISET's writes are all in the final state or none is.

    Why it holds: MULTISET is one MetaStore commit -- one PostgreSQL transaction -- so a
    gateway killed mid-request leaves all of its pairs or none. Checked where it can be
    told: for a group with an unknown outcome, a member missing at the end is a
    half-applied group unless another write to its key may have replaced it.
    """
    found: list[Anomaly] = []
    groups: dict[str, list[Op]] = defaultdict(list)
    for op in ops:
        if op.group is not None and op.is_write:
            groups[op.group].append(op)
    for members in groups.values():
        present: list[Op] = []
        missing: list[Op] = []
        for m in members:
            view = views[m.ident]
            if any(v.digest == m.digest for v in view.final):
                present.append(m)
            elif view.versioned or not any(
                w.group != m.group and w.outcome != "fail" and w.effect_end > m.start
                for w in view.writes
            ):
                missing.append(m)
        if present and missing:
            found.append(
                Anomaly(
                    "atomicity",
                    members[0].ident,
                    tuple(members),
                    f"{len(present)} of {len(members)} writes of one atomic request landed",
                )
            )
    return found


def _short(value: str | None) -> str:
    return "absent" if value is None else value[:12]
