"""``tests/_ports.free_port``: numbers below the ephemeral range, bindable, and never
handed out twice while reserved (what keeps the two xdist workers' servers apart)."""

from __future__ import annotations

import socket

from _ports import HIGH, LOW, RESERVATIONS, free_port


def test_numbers_are_below_the_ephemeral_range_free_and_reserved() -> None:
    ports = [free_port() for _ in range(20)]
    assert len(set(ports)) == len(ports)
    for port in ports:
        assert LOW <= port < HIGH
        assert (RESERVATIONS / str(port)).exists()
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            with socket.socket(socket.AF_INET, kind) as s:
                s.bind(("127.0.0.1", port))
