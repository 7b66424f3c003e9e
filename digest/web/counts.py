"""The manage page's "would have matched N papers in the last 7 days", fast.

The counts come from :class:`~digest.match.backtest.Backtest` (what ``digest topics
test`` uses), which indexes the week's papers once and then counts any query in
microseconds. Indexing is the expensive part: about 2 ms per paper on an idle core
of this machine, 9 ms under load, so a week of 5,000 papers takes 10 to 45 seconds,
far too long for a page (and past gunicorn's timeout). So one index per database is
kept per process and built in a background thread:

* a page waits for a build at most :data:`WAIT` seconds (a small installation's week
  is indexed well within it, so its counts show at once); past that it is shown
  without counts and says to reload;
* an index older than :data:`FRESH` is rebuilt in the background while the old one
  keeps answering: "would have matched" is an estimate, a quarter of an hour behind
  at worst.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from digest.config import Settings
from digest.core import caches
from digest.match.backtest import Backtest
from digest.store import db

log = logging.getLogger(__name__)

DAYS = 7
#: Seconds a page waits for an index being built.
WAIT = 3.0
#: Seconds an index is used before it is rebuilt (in the background).
FRESH = 15 * 60


@dataclass
class _Entry:
    backtest: Backtest | None = None
    built: float = 0.0  # time.monotonic() of the build
    building: threading.Thread | None = None


class WeekIndexes:
    """Per database URL: the week's Backtest, built once, refreshed in the background."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        caches.register(self.clear)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def get(self, settings: Settings, wait: float | None = None) -> Backtest | None:
        """The week's Backtest, or None if it is still being built after ``wait`` s
        (default :data:`WAIT`)."""
        url = settings.database_url
        with self._lock:
            entry = self._entries.setdefault(url, _Entry())
            stale = entry.backtest is None or time.monotonic() - entry.built > FRESH
            if stale and entry.building is None:
                entry.building = threading.Thread(
                    target=self._build, args=(settings, entry), name="week-index", daemon=True
                )
                entry.building.start()
            building = entry.building
        if entry.backtest is None and building is not None:
            building.join(WAIT if wait is None else wait)
        return entry.backtest

    @staticmethod
    def _build(settings: Settings, entry: _Entry) -> None:
        started = time.monotonic()
        try:
            # Read-only: a page's own writing transaction must not keep it waiting.
            with db.session_scope(settings, read_only=True) as session:
                backtest = Backtest(session, DAYS)
                backtest.count("trending")  # any query: it builds the index, once
            entry.backtest, entry.built = backtest, time.monotonic()
            log.info(
                "indexed %d papers of the last %d days in %.1f s",
                len(backtest.papers),
                DAYS,
                time.monotonic() - started,
            )
        except Exception:
            log.exception("the week's papers could not be indexed for the counts")
        finally:
            entry.building = None


WEEK = WeekIndexes()


__all__ = ["DAYS", "FRESH", "WAIT", "WEEK", "WeekIndexes"]
