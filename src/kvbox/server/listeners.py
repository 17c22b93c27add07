"""Every listening socket of ``kvbox serve``, bound before anything else happens.

Layer: server. Rules: ``bind_all`` runs first in start-up, before the data directory is
opened, before root keys are read or generated, so a port that is taken ends start-up with
one line that names the port and its flag -- and a freshly generated secret is never
printed by a start that then fails (the next start would not show it again). Sockets are
only bound here; they start listening when the front doors are created on them.
"""

from __future__ import annotations

import contextlib
import errno
import socket
from dataclasses import dataclass, field

from kvbox.errors import ListenError as ListenError  # defined in the one tree


@dataclass
class Listeners:
    """The bound sockets, by front door; ``close`` releases whatever is still owned."""

    kv_tcp: list[socket.socket] = field(default_factory=list)
    kv_udp: list[socket.socket] = field(default_factory=list)
    http: list[socket.socket] = field(default_factory=list)
    web: list[socket.socket] = field(default_factory=list)
    console: list[socket.socket] = field(default_factory=list)

    def take(self, door: str) -> list[socket.socket]:
        """Hand a door's sockets to the server that will listen on them: from here on
        that server closes them, and ``close`` no longer does."""
        group: list[socket.socket] = getattr(self, door)
        taken = list(group)
        group.clear()
        return taken

    @property
    def kv_port(self) -> int:
        return int(self.kv_tcp[0].getsockname()[1])

    @property
    def web_port(self) -> int:
        """The website port (0 when off); read before ``take("web")`` hands it over."""
        return int(self.web[0].getsockname()[1]) if self.web else 0

    def close(self) -> None:
        for group in (self.kv_tcp, self.kv_udp, self.http, self.web, self.console):
            for sock in group:
                sock.close()
            group.clear()


def bind_all(
    host: str,
    kv_port: int,
    http_port: int,
    web_port: int,
    console_port: int = 0,
    kv_host: str | None = None,
) -> Listeners:
    """Bind GW-KV TCP and UDP (one port number for both), HTTP, website and console sockets.
    GW-KV binds ``kv_host`` when given (``--kv-host``), else ``host`` like the rest.

    A port of 0 for HTTP, the website or the console means that door is off; a GW-KV port of 0 takes
    any free TCP port and binds UDP on the same number.
    """
    out = Listeners()
    try:
        kv = kv_host or host
        out.kv_tcp = _bind(kv, kv_port, socket.SOCK_STREAM, "--kv-port")
        out.kv_udp = _bind(kv, out.kv_port, socket.SOCK_DGRAM, "--kv-port", what="UDP")
        if http_port:
            out.http = _bind(host, http_port, socket.SOCK_STREAM, "--http-port")
        if web_port:
            out.web = _bind(host, web_port, socket.SOCK_STREAM, "--web-port")
        if console_port:
            out.console = _bind(host, console_port, socket.SOCK_STREAM, "--console-port")
    except BaseException:
        out.close()
        raise
    return out


def _bind(
    host: str, port: int, kind: socket.SocketKind, flag: str, what: str = "TCP"
) -> list[socket.socket]:
    """One socket per address ``host`` resolves to (``localhost`` may give two), bound as
    asyncio's ``create_server`` would bind them (SO_REUSEADDR, IPv6 sockets v6-only)."""
    try:
        infos = socket.getaddrinfo(host, port, type=kind, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ListenError(f"cannot listen on {host!r} (--host): {exc.strerror}") from None
    seen: set[tuple[int, object]] = set()
    socks: list[socket.socket] = []
    try:
        for family, socktype, proto, _, addr in infos:
            if (family, addr) in seen:
                continue
            seen.add((family, addr))
            sock = socket.socket(family, socktype, proto)
            socks.append(sock)
            if kind == socket.SOCK_STREAM:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(addr)
            except OSError as exc:
                raise ListenError(_explain(exc, host, port, flag, what)) from None
            sock.setblocking(False)
            if port == 0:  # every address of this door gets the number the first got
                port = sock.getsockname()[1]
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks


def _explain(exc: OSError, host: str, port: int, flag: str, what: str) -> str:
    shown = f"[{host}]" if ":" in host else host
    if exc.errno == errno.EADDRINUSE:
        return (
            f"port {port} ({flag}) is already in use on {shown} ({what}): another kvbox or "
            f"another server listens there; stop it or choose another port with {flag}"
        )
    if exc.errno == errno.EACCES:
        return (
            f"no permission to listen on port {port} ({flag}) on {shown}: ports below 1024 "
            f"need root or CAP_NET_BIND_SERVICE; choose another with {flag}"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {shown} (--host): not an address of this machine"
    return f"cannot listen on {shown} port {port} ({flag}, {what}): {exc.strerror}"
