"""Typed server settings: parsed once from flags and ``KVBOX_*`` variables, then passed down.

Layer: config. Rules: no I/O beyond reading the environment; every field has a default that
gives the embedded single-machine server, so ``kvbox serve`` with no flags just works.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from kvbox import __version__
from kvbox.proto.gwkv import DEFAULT_MAX_VALUE

#: The ``Server`` header of every HTTP answer (S3, probes, websites, aiohttp's own
#: refusals): what kvbox is and which version, never the HTTP library's name.
SERVER: Final = f"kvbox/{__version__}"

# The console's session expiry defaults live here, not in kvbox.console, so that settings
# stay a leaf every package may import (the layering test forbids cycles).
#: Default idle expiry: OWASP's session guidance suggests 15-30 minutes for
#: administrative applications; a console left open over lunch should sign out.
DEFAULT_IDLE_SECONDS: Final = 30 * 60.0
#: Default absolute expiry: a working day; after it the secret must be typed again.
DEFAULT_LIFETIME_SECONDS: Final = 12 * 3600.0

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)
_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "m": 1000**2,
    "g": 1000**3,
    "t": 1000**4,
    "ki": 1024,
    "mi": 1024**2,
    "gi": 1024**3,
    "ti": 1024**4,
}


def parse_size(text: str) -> int:
    """``"64MiB"`` -> 67108864; ``"1G"`` -> 10**9; plain numbers are bytes."""
    m = _SIZE.match(text)
    if not m:
        raise ValueError(f"not a size: {text!r} (examples: 1048576, 512KiB, 64MiB, 1GB)")
    unit = (m.group(2) or "").lower().removesuffix("b")
    if unit not in _UNITS:
        raise ValueError(f"unknown size unit in {text!r}")
    return int(float(m.group(1)) * _UNITS[unit])


@dataclass(frozen=True, slots=True)
class Settings:
    data: Path = Path("kvbox-data")
    host: str = "127.0.0.1"
    #: GW-KV's own address (None: ``host``), so that S3 can face a network while GW-KV,
    #: unauthenticated unless --kv-auth says so, stays on loopback.
    kv_host: str | None = None
    kv_port: int = 7070
    #: GW-KV authentication: "off", "optional", "required"; None: off while GW-KV listens
    #: on loopback only, else required (docs/protocol.md §5).
    kv_auth: Literal["off", "optional", "required"] | None = None
    #: GW-KV over UDP: "on", "off", or "auto" (on only while kv_auth is off: a datagram
    #: cannot authenticate).
    kv_udp: Literal["auto", "on", "off"] = "auto"
    kv_bucket: str = "kv"
    kv_versioning: bool = False
    http_port: int = 9000
    domain: str | None = None  # S3 virtual-host addressing: BUCKET.DOMAIN
    #: The S3 region kvbox is: SigV4 requests must be signed for it, and it is the
    #: location of every bucket. us-east-1, AWS's default, is what clients assume.
    region: str = "us-east-1"
    #: Accept legacy SigV2 signatures (boto3's and the AWS CLI v1's default presigned
    #: URLs use them); off refuses them as SigV4-only S3 regions do.
    sigv2: bool = True
    web_port: int = 0  # the static-website endpoint; 0: off
    web_domain: str | None = None  # website hosts: BUCKET.WEB_DOMAIN
    tls_cert: Path | None = None
    tls_key: Path | None = None
    max_memory: int | None = None
    max_value_size: int = DEFAULT_MAX_VALUE
    cache_size: int = 64 * 1024 * 1024
    # Connection limits of every door (kvbox.server.governor.Limits; reasons in
    # docs/operations.md "Faults and limits").
    idle_timeout: float = 300.0
    header_timeout: float = 20.0
    body_timeout: float = 30.0
    max_connections: int = 10_000
    max_connections_per_ip: int = 1_000
    max_header_bytes: int = 16 * 1024
    max_headers: int = 100
    max_inflight_bytes: int = 256 * 1024 * 1024
    shutdown_grace: float = 10.0
    log_format: str = "plain"
    log_level: str = "info"
    #: One line per request at INFO (``kvbox.server.accesslog``); off with --access-log off.
    access_log: bool = True
    #: Seconds between lifecycle passes (0: none). Hourly by default: AWS applies rules
    #: about once a day, and a pass over a bucket without due objects is one listing.
    lifecycle_interval: float = 3600.0
    #: TEST ONLY (hidden flag): lets root move the lifecycle clock through
    #: ``POST /_kvbox/lifecycle`` (docs/operations.md). Never on in production.
    lifecycle_test_clock: bool = False
    #: Seconds before the server removes orphan chunks a crash left (``core/leftovers.py``).
    leftover_delay: float = 3600.0
    #: Free space kept in reserve: below it new writes are refused (``core/space.py``);
    #: bytes ("512MiB") or a percentage of the file system ("1%"); "0": no reserve.
    min_free: str = "1%"
    #: Seconds between background scrub passes (``core/scrub.py``); 0: none (default).
    scrub_interval: float = 0.0
    console: bool = True  # the web console at /console/
    console_port: int = 0  # 0: on the HTTP port; else only on this port
    #: Print a generated root secret key at start-up (off in containers: their logs are
    #: collected and kept; the key is in the data directory either way).
    show_root_secret: bool = True
    console_base_path: str = ""  # a reverse proxy's public prefix, e.g. /kvbox
    console_s3_url: str | None = None  # the S3 endpoint as browsers reach it
    console_idle_timeout: float = DEFAULT_IDLE_SECONDS
    console_session_lifetime: float = DEFAULT_LIFETIME_SECONDS
    sync: str = "full"  # SQLite synchronous: "full" (durable) or "normal"/"off" for tests
    #: Metadata in PostgreSQL (``postgresql://USER:PASS@HOST:PORT/DB``), shared by every
    #: gateway of a cluster; None: the embedded SQLite file in ``data``. Never logged as
    #: is: ``kvbox.core.pg.PgUrl.redacted``.
    meta: str | None = field(default=None, repr=False)
    #: Apply the PostgreSQL schema migrations at start-up (``kvbox serve --migrate``).
    migrate: bool = False
    #: Where chunks live: "local" (``data``/chunks) or "cluster" (blob nodes registered
    #: in ``meta``'s database; ``kvbox.cluster``).
    blobs: str = "local"
    #: The secret every gateway and blob node shares (``--cluster-secret-file``).
    cluster_secret_file: Path | None = None
    #: Copies of each chunk, and how many must be fsync'd before a write is
    #: acknowledged (None: all of them).
    replicas: int = 3
    write_quorum: int | None = None
    #: Seconds between repair passes (the one worker holding the cluster's lock).
    repair_interval: float = 30.0
    #: Seconds an unreferenced chunk is kept after its last write (``kvbox.cluster.repair``).
    cluster_gc_delay: float = 3600.0
    #: Seconds between recounts of every chunk's wanted copies (per-bucket R).
    cluster_recount_interval: float = 600.0
