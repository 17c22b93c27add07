"""Fixtures for the client tests: a fake GW-KV server and a port nobody listens on."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from _ports import free_port

from .fakeserver import FakeServer


@pytest.fixture
def fake() -> Iterator[FakeServer]:
    with FakeServer() as server:
        yield server


@pytest.fixture
def closed_port() -> int:
    """A port that was just free: connecting to it is refused (drawn where no other
    process's ``bind(0)`` or outgoing connection can take it meanwhile)."""
    return free_port()


@pytest.fixture
def mute_port() -> Iterator[int]:
    """A listener that never accepts: connections complete (backlog) but nothing answers."""
    with socket.create_server(("127.0.0.1", 0)) as s:
        yield s.getsockname()[1]
