"""How `digest run` hands a run to the workers when a broker is configured."""

from __future__ import annotations

from datetime import datetime

from digest.config import Settings
from workers.tasks import run


def dispatch_run(
    settings: Settings, now: datetime | None, fetch: bool, wait_for_plan: bool, timeout: float
) -> list[int] | None:
    """Enqueue one run; with ``wait_for_plan``, return the ids of the digests it covers."""
    result = run.apply_async(args=[now.isoformat() if now else None, fetch])
    if not wait_for_plan:
        return None
    return [int(i) for i in result.get(timeout=timeout)]
