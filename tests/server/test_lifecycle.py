"""The lifecycle worker's figures in Prometheus's text format (``server/lifecycle.py``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from kvbox.core.lifecycle.worker import LifecycleStats
from kvbox.server.lifecycle import LifecycleCollector


def test_every_figure_is_exported() -> None:
    st = LifecycleStats(
        passes=3,
        versions_scanned=40,
        expired_current=5,
        expired_noncurrent=6,
        delete_markers_removed=7,
        uploads_aborted=8,
        skipped_locked=2,
        errors=1,
        last_pass_end=1_700_000_000.5,
        last_pass_seconds=0.25,
    )
    registry = CollectorRegistry()
    registry.register(LifecycleCollector(st))
    lines = set(generate_latest(registry).decode().splitlines())
    for line in (
        "kvbox_lifecycle_passes_total 3.0",
        "kvbox_lifecycle_versions_scanned_total 40.0",
        'kvbox_lifecycle_actions_total{action="expire_current"} 5.0',
        'kvbox_lifecycle_actions_total{action="expire_noncurrent"} 6.0',
        'kvbox_lifecycle_actions_total{action="remove_delete_marker"} 7.0',
        'kvbox_lifecycle_actions_total{action="abort_upload"} 8.0',
        "kvbox_lifecycle_skipped_locked_total 2.0",
        "kvbox_lifecycle_errors_total 1.0",
        "kvbox_lifecycle_last_pass_seconds 0.25",
        "kvbox_lifecycle_last_pass_end_timestamp_seconds 1.7000000005e+09",
        "kvbox_lifecycle_running 0.0",
    ):
        assert line in lines, line
