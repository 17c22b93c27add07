"""A PostgreSQL connection URL that never shows its password.

Layer: core (pure). Rules: ``kvbox serve --meta postgresql://USER:PASS@HOST:PORT/DB``
takes the password in the URL (or from ``PGPASSWORD`` / a ``.pgpass`` file, which
asyncpg reads), and that password must never reach a log line, ``/metrics``, an error
message or a ``repr``: everything kvbox prints about the URL is ``redacted`` (the
password as ``***``), and ``scrub`` removes it from any text that came back from a
lower layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final
from urllib.parse import unquote, urlsplit

from kvbox.errors import InvalidArgument

SCHEMES: Final = ("postgresql", "postgres")
DEFAULT_PORT: Final = 5432


@dataclass(frozen=True, slots=True)
class PgUrl:
    """A parsed ``postgresql://`` URL; ``dsn`` is what the driver gets."""

    dsn: str = field(repr=False)
    user: str
    host: str
    port: int
    database: str
    password: str | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, text: str) -> PgUrl:
        """Raises ``InvalidArgument`` (whose message holds no password) for anything
        that is not a ``postgresql://`` URL naming a host and a database."""
        try:
            parts = urlsplit(text.strip())
            port = parts.port
        except ValueError:
            raise InvalidArgument(
                "--meta: not a valid postgresql:// URL (expected "
                "postgresql://USER:PASS@HOST:PORT/DB)"
            ) from None
        if parts.scheme not in SCHEMES:
            raise InvalidArgument(
                f"--meta: {parts.scheme or 'no'} scheme: expected postgresql://USER:PASS@HOST:PORT/DB"
            )
        database = unquote(parts.path.lstrip("/"))
        if not parts.hostname or not database:
            raise InvalidArgument("--meta: the URL must name a host and a database")
        password = unquote(parts.password) if parts.password is not None else None
        return cls(
            dsn=text.strip(),
            user=unquote(parts.username or ""),
            host=parts.hostname,
            port=port or DEFAULT_PORT,
            database=database,
            password=password,
        )

    @property
    def redacted(self) -> str:
        """The URL as kvbox shows it: the password replaced by ``***``."""
        auth = self.user + (":***" if self.password is not None else "")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"postgresql://{auth}{'@' if auth else ''}{host}:{self.port}/{self.database}"

    def scrub(self, text: str) -> str:
        """``text`` with the password (and the raw URL) replaced, for messages that
        came from the driver or the server."""
        text = text.replace(self.dsn, self.redacted)
        if self.password:
            text = text.replace(self.password, "***")
        return text

    def __str__(self) -> str:
        return self.redacted


def is_postgres_url(text: str) -> bool:
    """Whether ``--meta`` names PostgreSQL (rather than the embedded SQLite default)."""
    return text.strip().split("://", 1)[0] in SCHEMES
