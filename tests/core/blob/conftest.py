"""A blob cluster for the BlobStore conformance suite: three real ``kvbox blobnode``
processes on one database of the session's PostgreSQL, started once per session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from _cleanup import removed_after
from _postgres import PostgresServer
from cluster._nodes import BlobNodeProcess, blob_nodes


@pytest.fixture(scope="session")
def blob_cluster(
    postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, list[BlobNodeProcess]]]:
    """(database URL, nodes)."""
    url = postgres.new_database(migrated=True)
    with (
        removed_after(tmp_path_factory.mktemp("blob-cluster")) as base,
        blob_nodes(base, url, 3) as nodes,
    ):
        yield url, nodes
