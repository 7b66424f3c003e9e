"""The registry of process-wide caches, so one call empties them all.

A cache that outlives a request or a batch must be either owned by an object or
registered here: :func:`clear_all` is called by the test suite before every test
(so no test sees another's state) and is safe to call in production at any time
(every cache here only saves work, none holds state that matters).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

_CLEARERS: list[Callable[[], None]] = []


def register(clear: Callable[[], None]) -> Callable[[], None]:
    """Remember ``clear`` (e.g. ``some_dict.clear``) for :func:`clear_all`; returns it."""
    _CLEARERS.append(clear)
    return clear


def memoize(maxsize: int | None = 128) -> Callable[[F], F]:
    """``functools.lru_cache(maxsize)``, registered for :func:`clear_all`."""

    def decorate(fn: F) -> F:
        cached = functools.lru_cache(maxsize=maxsize)(fn)
        register(cached.cache_clear)
        return cached  # type: ignore[return-value]  # lru_cache keeps the signature

    return decorate


def clear_all() -> None:
    """Empty every registered cache."""
    for clear in _CLEARERS:
        clear()


__all__ = ["clear_all", "memoize", "register"]
