"""``POST /_kvbox/lifecycle``: run a lifecycle pass now, and (tests only) move its clock.

Layer: s3 door (root only, SigV4-signed like every kvbox admin call; ``S3Frontend``
authenticates and passes the JSON body here). Not S3: the path starts with ``_``, which
no bucket name may. The body is a JSON object:

* ``{"run": true}``: one pass over every bucket with a lifecycle configuration, now;
  the answer is what it did (``kvbox.core.lifecycle.worker.PassReport``). Useful to an
  operator after changing rules, and it never moves time.
* ``{"offset_seconds": N}``: TEST ONLY. Adds N seconds to the lifecycle clock, so an
  end-to-end test sees objects expire without waiting days. Refused (AccessDenied)
  unless the server was started with the hidden ``--lifecycle-test-clock``: on a real
  server, moving the clock would expire data early. The lock rule sees the same moved
  clock for lifecycle's removals (``worker.py``), never for S3 or GW-KV requests.

Both may be given together (the offset first).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Final

from kvbox.core.lifecycle.worker import LifecycleWorker
from kvbox.s3.errors import S3Error

LIFECYCLE_PATH: Final = "/_kvbox/lifecycle"


async def lifecycle_command(
    worker: LifecycleWorker, doc: Any, *, test_clock: bool
) -> dict[str, Any]:
    if not isinstance(doc, dict) or set(doc) - {"run", "offset_seconds"}:
        raise S3Error(
            "InvalidArgument", 'expected a JSON object with "run" and/or "offset_seconds"'
        )
    offset = doc.get("offset_seconds")
    if offset is not None:
        if not test_clock:
            raise S3Error(
                "AccessDenied",
                "the lifecycle clock moves only on a server started with "
                "--lifecycle-test-clock (for tests)",
                resource=LIFECYCLE_PATH,
            )
        if isinstance(offset, bool) or not isinstance(offset, int | float):
            raise S3Error("InvalidArgument", "offset_seconds must be a number")
        worker.offset_ns = int(offset * 1e9)
    out: dict[str, Any] = {"now_ns": worker.now_ns(), "offset_seconds": worker.offset_ns / 1e9}
    if doc.get("run") is True:
        out.update(dataclasses.asdict(await worker.run_pass()))
    return out
