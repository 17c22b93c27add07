"""kvbox: a versioned key-value and object store.

The public surface is re-exported here; everything else is internal.
"""

from __future__ import annotations

__version__ = "0.1.0"

# Imported after __version__ so the cli can read it while the client loads.
from kvbox.client import AsyncClient, Client

__all__ = ["AsyncClient", "Client", "__version__"]
