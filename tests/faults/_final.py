"""After a fault: the cluster's final state for the checker, and every acknowledged
write read back from both gateways.

Layer: tests/faults. Rules: reads go through the doors a user has, never to the
nodes or the database behind them. ``final_state`` lists every key the history
touched, newest version first, through S3 on the first gateway (GW-KV keys are the
S3 objects ``kv/<key>``), reading each version's bytes for its digest: that is one
full read-back. ``read_back`` then reads every acknowledged write by its version id
through the other doors: S3 writes by S3 on every other gateway, GW-KV writes by
GW-KV ``GETV`` on every gateway. Together: each acknowledged write intact from either
gateway, over S3 and GW-KV.
"""

from __future__ import annotations

from typing import Any

from kvbox import Client

from ._cluster import Cluster
from .history import History, Key, Version, digest


def final_state(cluster: Cluster, history: History) -> dict[Key, list[Version]]:
    s3 = cluster.gateways[0].s3()
    final: dict[Key, list[Version]] = {}
    for bucket, key in sorted(history.keys()):
        versions: list[Version] = []
        for v in _versions(s3, bucket, key):
            if v["marker"]:
                versions.append(Version(v["id"], None))
                continue
            body = s3.get_object(Bucket=bucket, Key=key, VersionId=v["id"])["Body"].read()
            versions.append(Version(v["id"], digest(body)))
        final[(bucket, key)] = versions
    return final


def _versions(s3: Any, bucket: str, key: str) -> list[dict[str, Any]]:
    """``key``'s versions and delete markers, newest first (ListObjectVersions)."""
    found: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": key}
    while True:
        page = s3.list_object_versions(**kwargs)
        for v in page.get("Versions", []):
            if v["Key"] == key:
                found.append({"id": v["VersionId"], "marker": False, "at": v["LastModified"]})
        for m in page.get("DeleteMarkers", []):
            if m["Key"] == key:
                found.append({"id": m["VersionId"], "marker": True, "at": m["LastModified"]})
        if not page.get("IsTruncated"):
            break
        kwargs["KeyMarker"] = page["NextKeyMarker"]
        kwargs["VersionIdMarker"] = page["NextVersionIdMarker"]
    if not any(v["marker"] for v in found):
        return found  # S3 lists one key's versions newest first
    # Markers come in a list of their own: merge by time, newest first (a tie keeps
    # the versions' own order; the loads here delete nothing, cluster-history's do).
    return sorted(found, key=lambda v: v["at"], reverse=True)


def read_back(cluster: Cluster, history: History) -> list[str]:
    """Every acknowledged write read by its version through the other doors; the
    problems found (empty: each one came back intact)."""
    problems: list[str] = []
    s3s = {gw.name: gw.s3() for gw in cluster.gateways[1:]}
    kvs = {gw.name: Client(gw.host.ip, gw.kv_port, timeout=30) for gw in cluster.gateways}
    try:
        for op in history.acked_writes():
            if op.kind == "delete" or op.version is None:
                continue
            if op.door == "s3":
                for name, s3 in s3s.items():
                    try:
                        got = s3.get_object(Bucket=op.bucket, Key=op.key, VersionId=op.version)
                        seen = digest(got["Body"].read())
                    except Exception as exc:
                        problems.append(f"{op} -> S3 on {name}: {exc!r}")
                        continue
                    if seen != op.digest:
                        problems.append(f"{op} -> S3 on {name}: read {seen[:12]}")
            else:
                for name, kv in kvs.items():
                    try:
                        data = kv.get_version(op.key, op.version)
                    except Exception as exc:
                        problems.append(f"{op} -> GW-KV on {name}: {exc!r}")
                        continue
                    if data is None or digest(data) != op.digest:
                        problems.append(f"{op} -> GW-KV on {name}: read {data and digest(data)}")
    finally:
        for kv in kvs.values():
            kv.close()
    return problems
