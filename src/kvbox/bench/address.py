"""``HOST:PORT`` parsing shared by ``kvbox bench`` and ``kvbox loadgen``.

Layer: bench (pure). Rules: no resolution here (the runner resolves once); IPv6 literals are
written in brackets (``[::1]:7070``) as in URLs; a bare host gets the GW-KV default port.
"""

from __future__ import annotations

#: GW-KV's default port (docs/protocol.md, ``kvbox serve --kv-port``).
DEFAULT_PORT = 7070


def parse_server(text: str, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """``"host:port"``, ``"[v6]:port"``, ``"host"`` -> (host, port); ValueError if malformed."""
    text = text.strip()
    if not text:
        raise ValueError("empty server address")
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not host:
            raise ValueError(f"bad server address {text!r}: unclosed '['")
        if rest and not rest.startswith(":"):
            raise ValueError(f"bad server address {text!r}")
        port_text = rest[1:]
        has_port = bool(rest)
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        has_port = True
    elif ":" in text:
        raise ValueError(f"bad server address {text!r}: write IPv6 as [addr]:port")
    else:
        host, port_text, has_port = text, "", False
    if not host:
        raise ValueError(f"bad server address {text!r}: no host")
    if not has_port:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"bad port in {text!r}")
    return host, int(port_text)
