"""``kvbox serve``: flags (each also ``KVBOX_<FLAG>``) -> Settings -> the server.

Layer: cli. Rules: parsing and validation only; the composition root is
``kvbox.server.app``.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path
from typing import Any

from kvbox.config import Settings, parse_size
from kvbox.core.space import MinFree

_D = Settings()


def env_default(flag: str, default: Any) -> Any:
    """The default of ``--flag``: ``KVBOX_FLAG`` if set, else ``default``."""
    return os.environ.get("KVBOX_" + flag.upper().replace("-", "_"), default)


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


#: An S3 region name as a SigV4 credential scope can carry it (``us-east-1``, ``garage``).
_REGION = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")


def _region(text: str) -> str:
    if _REGION.fullmatch(text) is None:
        raise argparse.ArgumentTypeError(
            f"not a region name: {text!r} (lower-case letters, digits and '-', e.g. us-east-1)"
        )
    return text


def _min_free(text: str) -> str:
    try:
        MinFree.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    return text


def _bool(text: str | bool) -> bool:
    if isinstance(text, bool):
        return text
    low = text.strip().lower()
    if low in {"1", "true", "yes", "on", "enabled"}:
        return True
    if low in {"0", "false", "no", "off", "disabled", ""}:
        return False
    raise argparse.ArgumentTypeError(f"not a boolean: {text!r}")


class _BothTimeouts(argparse.Action):
    """``--request-timeout S``: the header and the body timeout at once (its meaning
    before they were separate flags); a later ``--header-timeout`` still wins."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        namespace.header_timeout = namespace.body_timeout = values


def add_parser(sub: Any) -> None:
    ap: argparse.ArgumentParser = sub.add_parser(
        "serve",
        help="run the server: GW-KV on TCP and UDP, the S3 API, health and metrics on HTTP",
        description="Run kvbox. Every flag can also be set as KVBOX_<FLAG>, "
        "e.g. KVBOX_DATA=/srv/kvbox or KVBOX_KV_PORT=7070.",
    )

    def opt(flag: str, default: Any, **kw: Any) -> None:
        env = "KVBOX_" + flag.upper().replace("-", "_")
        kw.setdefault("help", "")
        kw["help"] += f" (env {env}; default %(default)s)"
        ap.add_argument("--" + flag, default=env_default(flag, default), **kw)

    opt("data", str(_D.data), metavar="DIR", help="data directory")
    opt("host", _D.host, help="address to listen on (0.0.0.0 or :: for all)")
    opt(
        "kv-host",
        None,
        metavar="ADDR",
        help="address GW-KV listens on, if not --host's (e.g. 127.0.0.1 beside --host 0.0.0.0: "
        "S3 on the network, GW-KV on loopback only)",
    )
    opt("kv-port", _D.kv_port, type=int, metavar="PORT", help="GW-KV TCP and UDP port")
    opt(
        "kv-auth",
        None,
        choices=["off", "optional", "required"],
        help="GW-KV authentication (AUTH, docs/protocol.md §5): off (anyone may do anything), "
        "optional (unauthenticated connections act as anonymous under the kv bucket's policy), "
        "required (AUTH first); default: off while GW-KV listens on loopback only, else required",
    )
    opt(
        "kv-udp",
        "auto",
        choices=["auto", "on", "off"],
        help="GW-KV over UDP; auto: on only while --kv-auth is off (a datagram cannot "
        "authenticate: with auth on, UDP requests act as anonymous)",
    )
    opt("kv-bucket", _D.kv_bucket, metavar="NAME", help="bucket holding GW-KV keys")
    opt(
        "kv-versioning",
        _D.kv_versioning,
        type=_bool,
        metavar="BOOL",
        help="keep every version of GW-KV keys",
    )
    opt(
        "http-port",
        env_default("s3-port", _D.http_port),
        type=int,
        metavar="PORT",
        help="HTTP port: the S3 API, /healthz, /readyz, /metrics (0: off; alias --s3-port, "
        "env KVBOX_S3_PORT)",
    )
    ap.add_argument("--s3-port", dest="http_port", type=int, metavar="PORT", help=argparse.SUPPRESS)
    opt(
        "domain",
        None,
        metavar="DOMAIN",
        help="S3 virtual-host addressing: BUCKET.DOMAIN names the bucket (path style always works)",
    )
    opt(
        "region",
        _D.region,
        type=_region,
        metavar="REGION",
        help="the S3 region kvbox is: SigV4 requests signed for another region are refused "
        "(AuthorizationHeaderMalformed), and every bucket is located there",
    )
    opt(
        "sigv2",
        "on" if _D.sigv2 else "off",
        choices=["on", "off"],
        help="accept legacy AWS Signature Version 2 (the default presigned URLs of boto3 and "
        "the AWS CLI v1); off refuses it, as SigV4-only S3 regions do",
    )
    opt(
        "web-port",
        0,
        type=int,
        metavar="PORT",
        help="serve buckets' static websites on this port (0: off); anonymous, GET/HEAD",
    )
    opt(
        "web-domain",
        None,
        metavar="DOMAIN",
        help="website hosts: BUCKET.DOMAIN names the bucket (else the whole Host does)",
    )
    opt(
        "console",
        "on",
        type=_bool,
        metavar="on|off",
        help="the web console at /console/ (on the HTTP port, or on --console-port)",
    )
    opt(
        "console-port",
        _D.console_port,
        type=int,
        metavar="PORT",
        help="serve the console on this port instead of the HTTP port (0: the HTTP port)",
    )
    opt(
        "console-base-path",
        _D.console_base_path,
        metavar="PATH",
        help="public path prefix of a reverse proxy in front of the console, e.g. /kvbox "
        "(else the request's X-Forwarded-Prefix)",
    )
    opt(
        "console-s3-url",
        None,
        metavar="URL",
        help="the S3 endpoint as browsers reach it, for the console's presigned and "
        "public links (default: derived from the console's own address)",
    )
    opt(
        "console-idle-timeout",
        _D.console_idle_timeout,
        type=float,
        metavar="S",
        help="sign a console session out after this long without a request",
    )
    opt(
        "console-session-lifetime",
        _D.console_session_lifetime,
        type=float,
        metavar="S",
        help="sign a console session out this long after sign-in, active or not",
    )
    opt("tls-cert", None, metavar="FILE", help="serve HTTP over TLS with this PEM certificate")
    opt("tls-key", None, metavar="FILE", help="the PEM private key for --tls-cert")
    opt(
        "max-memory",
        None,
        type=_size,
        metavar="SIZE",
        help="cache mode: keep data in memory only, evicting least recently used keys "
        "beyond SIZE (e.g. 256MiB); nothing is durable",
    )
    opt(
        "max-value-size",
        _D.max_value_size,
        type=_size,
        metavar="SIZE",
        help="largest value accepted",
    )
    opt(
        "cache-size",
        _D.cache_size,
        type=_size,
        metavar="SIZE",
        help="read cache of newest versions",
    )
    opt(
        "idle-timeout",
        _D.idle_timeout,
        type=float,
        metavar="S",
        help="close a connection (any port) with no request in progress after this long",
    )
    opt(
        "header-timeout",
        env_default("request-timeout", _D.header_timeout),
        type=float,
        metavar="S",
        help="a request head (HTTP headers and TLS handshake, a GW-KV request line) must "
        "arrive whole within this long of its first byte",
    )
    opt(
        "body-timeout",
        env_default("request-timeout", _D.body_timeout),
        type=float,
        metavar="S",
        help="a body, request or reply, that makes no progress this long is cut off "
        "(S3 answers 400 RequestTimeout, GW-KV ERR TIMEOUT)",
    )
    ap.add_argument(
        "--request-timeout",
        action=_BothTimeouts,
        type=float,
        metavar="S",
        help="shorthand for --header-timeout S --body-timeout S (env KVBOX_REQUEST_TIMEOUT)",
    )
    opt(
        "max-connections",
        _D.max_connections,
        type=int,
        metavar="N",
        help="connections open at once on all ports together (at the limit the longest-idle "
        "one is closed, else the new one refused); capped by the file descriptor limit",
    )
    opt(
        "max-connections-per-ip",
        _D.max_connections_per_ip,
        type=int,
        metavar="N",
        help="connections open at once from one client address (IPv6: one /64); 0: no limit",
    )
    opt(
        "max-header-bytes",
        _D.max_header_bytes,
        type=_size,
        metavar="SIZE",
        help="largest HTTP request head (request line and all header fields)",
    )
    opt(
        "max-headers",
        _D.max_headers,
        type=int,
        metavar="N",
        help="most header fields in one HTTP request",
    )
    opt(
        "max-inflight-bytes",
        _D.max_inflight_bytes,
        type=_size,
        metavar="SIZE",
        help="memory all request and reply bodies in flight may hold together; beyond it "
        "uploads and downloads wait (up to 10 s), then S3 answers 503 SlowDown and GW-KV "
        "ERR BUSY",
    )
    opt(
        "shutdown-grace",
        _D.shutdown_grace,
        type=float,
        metavar="S",
        help="on SIGTERM, time to finish requests in flight",
    )
    opt(
        "lifecycle-interval",
        _D.lifecycle_interval,
        type=float,
        metavar="S",
        help="seconds between passes that apply buckets' lifecycle rules (0: no passes)",
    )
    # Test only: lets the e2e tests move lifecycle time forward on a real server.
    ap.add_argument(
        "--lifecycle-test-clock",
        action="store_true",
        default=_bool(os.environ.get("KVBOX_LIFECYCLE_TEST_CLOCK", "")),
        help=argparse.SUPPRESS,
    )
    opt(
        "leftover-delay",
        _D.leftover_delay,
        type=float,
        metavar="S",
        help="remove orphan chunks a crash left (interrupted writes) once they are this "
        "old; a sweep runs this long after start and then as often (0: never)",
    )
    opt(
        "show-root-secret",
        _D.show_root_secret,
        type=_bool,
        metavar="BOOL",
        help="print a newly generated root secret key at start-up (off: only say where it "
        "is stored; the container image turns it off, as container logs are kept)",
    )
    opt(
        "scrub-interval",
        _D.scrub_interval,
        type=float,
        metavar="S",
        help="seconds between background scrub passes, which check what `kvbox fsck "
        "--verify` checks (every chunk, inline value and counter, SQLite's integrity) "
        "while serving, rate-limited, and log what is damaged; 0: none",
    )
    opt(
        "min-free",
        _D.min_free,
        type=_min_free,
        metavar="SIZE|PCT%",
        help="free space kept in reserve on the data directory's file system: below it new "
        "writes are refused (S3 507 XKvboxStorageFull, GW-KV ERR STORAGE full) while "
        "deletes and reads work, and /readyz says not ready; bytes (512MiB) or a "
        "percentage (1%%); 0: no reserve",
    )
    opt("log-format", _D.log_format, choices=["plain", "json"], help="log line format")
    opt("log-level", _D.log_level, choices=["debug", "info", "warning", "error"], help="log level")
    opt(
        "access-log",
        "on" if _D.access_log else "off",
        type=_bool,
        metavar="on|off",
        help="one line per request of every front door, at INFO (docs/operations.md)",
    )
    opt(
        "sync",
        _D.sync,
        choices=["full", "normal", "off"],
        help="durability of metadata commits; only 'full' keeps the kill -9 promise",
    )
    opt(
        "meta",
        None,
        metavar="URL",
        help="metadata in PostgreSQL, postgresql://USER:PASS@HOST:PORT/DB, shared by every "
        "gateway of a cluster (the password is never logged; PGPASSWORD or ~/.pgpass work "
        "too); unset: the embedded SQLite file in --data",
    )
    opt(
        "migrate",
        False,
        type=_bool,
        nargs="?",
        const=True,
        metavar="BOOL",
        help="apply the PostgreSQL schema migrations before serving (else a schema that "
        "is not this kvbox's own is refused: see `kvbox migrate`)",
    )
    opt(
        "blobs",
        _D.blobs,
        choices=["local", "cluster"],
        help="where object bytes live: local (chunks in --data) or cluster (on the blob "
        "nodes registered in --meta's database; needs --meta and --cluster-secret-file)",
    )
    opt(
        "cluster-secret-file",
        None,
        metavar="FILE",
        help="with --blobs cluster: the secret shared by every gateway and blob node",
    )
    opt(
        "replicas",
        _D.replicas,
        type=int,
        metavar="R",
        help="with --blobs cluster: copies of each chunk, on R different blob nodes",
    )
    opt(
        "write-quorum",
        "all",
        metavar="all|majority|N",
        help="with --blobs cluster: blob nodes that must fsync a chunk before a write is "
        "acknowledged (all: R; majority: the repair worker makes the rest)",
    )
    opt(
        "repair-interval",
        _D.repair_interval,
        type=float,
        metavar="S",
        help="with --blobs cluster: seconds between repair passes (re-replication, drain, "
        "rebalance, garbage); one gateway of the cluster runs them at a time",
    )
    opt(
        "cluster-gc-delay",
        _D.cluster_gc_delay,
        type=float,
        metavar="S",
        help="with --blobs cluster: seconds an unreferenced chunk is kept after its last "
        "write before it is collected (longer than any write takes)",
    )
    opt(
        "cluster-recount-interval",
        _D.cluster_recount_interval,
        type=float,
        metavar="S",
        help="with --blobs cluster: seconds between recounts of every chunk's wanted copies "
        "(the highest R of the buckets referencing it; reads every chunk list)",
    )
    ap.set_defaults(func=run)


def settings_from_args(args: argparse.Namespace) -> Settings:
    return Settings(
        data=Path(args.data),
        host=args.host,
        kv_host=args.kv_host or None,
        kv_auth=args.kv_auth or None,
        kv_udp=args.kv_udp,
        kv_port=int(args.kv_port),
        kv_bucket=args.kv_bucket,
        kv_versioning=_bool(args.kv_versioning),
        http_port=int(args.http_port),
        domain=args.domain or None,
        region=args.region,
        sigv2=args.sigv2 == "on",
        web_port=int(args.web_port),
        web_domain=args.web_domain or None,
        tls_cert=Path(args.tls_cert) if args.tls_cert else None,
        tls_key=Path(args.tls_key) if args.tls_key else None,
        max_memory=_size(args.max_memory) if isinstance(args.max_memory, str) else args.max_memory,
        max_value_size=_size(str(args.max_value_size)),
        cache_size=_size(str(args.cache_size)),
        idle_timeout=float(args.idle_timeout),
        header_timeout=float(args.header_timeout),
        body_timeout=float(args.body_timeout),
        max_connections=int(args.max_connections),
        max_connections_per_ip=int(args.max_connections_per_ip),
        max_header_bytes=_size(str(args.max_header_bytes)),
        max_headers=int(args.max_headers),
        max_inflight_bytes=_size(str(args.max_inflight_bytes)),
        shutdown_grace=float(args.shutdown_grace),
        leftover_delay=float(args.leftover_delay),
        show_root_secret=_bool(args.show_root_secret),
        min_free=str(args.min_free),
        scrub_interval=float(args.scrub_interval),
        log_format=args.log_format,
        log_level=args.log_level,
        access_log=_bool(args.access_log),
        sync=args.sync,
        meta=_meta_url(args.meta),
        migrate=_bool(args.migrate),
        blobs=args.blobs,
        cluster_secret_file=Path(args.cluster_secret_file) if args.cluster_secret_file else None,
        replicas=_replicas(args.replicas),
        write_quorum=_quorum(args.write_quorum, _replicas(args.replicas)),
        repair_interval=_positive(args.repair_interval, "--repair-interval"),
        cluster_gc_delay=float(args.cluster_gc_delay),
        cluster_recount_interval=_positive(
            args.cluster_recount_interval, "--cluster-recount-interval"
        ),
        lifecycle_interval=float(args.lifecycle_interval),
        lifecycle_test_clock=bool(args.lifecycle_test_clock),
        console=_bool(args.console),
        console_port=int(args.console_port),
        console_base_path=_base_path(args.console_base_path),
        console_s3_url=args.console_s3_url or None,
        console_idle_timeout=_positive(args.console_idle_timeout, "--console-idle-timeout"),
        console_session_lifetime=_positive(
            args.console_session_lifetime, "--console-session-lifetime"
        ),
    )


def _meta_url(text: str | None) -> str | None:
    """The --meta URL, checked now so that a bad one is one line (without the
    password) before anything starts."""
    if not text:
        return None
    from kvbox.core.pg import PgUrl
    from kvbox.errors import InvalidArgument

    try:
        PgUrl.parse(text)
    except InvalidArgument as exc:
        raise SystemExit(f"kvbox serve: {exc}") from None
    return text


def _base_path(text: str) -> str:
    from kvbox.console.settings import normalize_base_path

    try:
        return normalize_base_path(text)
    except ValueError as exc:
        raise SystemExit(f"kvbox serve: --console-base-path: {exc}") from None


def _positive(value: str | float, flag: str) -> float:
    try:
        out = float(value)
    except ValueError:
        raise SystemExit(f"kvbox serve: {flag}: not a number: {value!r}") from None
    if not out > 0:
        raise SystemExit(f"kvbox serve: {flag} must be more than 0")
    return out


def _replicas(value: object) -> int:
    r = int(str(value))
    if not 1 <= r <= 16:
        raise SystemExit(f"kvbox serve: --replicas must be within 1..16, not {r}")
    return r


def _quorum(text: str, replicas: int) -> int | None:
    """``--write-quorum``: None for all R, else a number of nodes within 1..R."""
    word = str(text).strip().lower()
    if word == "all":
        return None
    if word == "majority":
        return replicas // 2 + 1
    if word.isdigit() and 1 <= int(word) <= replicas:
        return int(word)
    raise SystemExit(
        f"kvbox serve: --write-quorum {text!r}: expected all, majority or 1..{replicas}"
    )


def run(args: argparse.Namespace) -> int:
    from kvbox.server.app import serve

    return serve(settings_from_args(args))
