"""Count thread hops: every `sync_to_async` and `async_to_sync` call, by the function it wraps.

Django runs sync code an async request meets (a sync middleware hook, a sync signal receiver)
through asgiref's `sync_to_async`, a hop to a worker thread and back; a sync middleware in front
of an async view adds an `async_to_sync` hop back to the event loop. Counting them shows what a
middleware stack costs per request, in numbers that do not depend on how busy the machine is.

    with count_hops() as hops:
        ...                                   # serve 20 requests
    hops.per(20)                              # e.g. 11.0 hops per request
    hops.table()                              # Markdown: wrapped function -> count
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

_lock = threading.Lock()
_active: list[Hops] = []
_originals: dict[str, Any] = {}


@dataclass(eq=False)  # identity: nested blocks with equal counts are still two blocks
class Hops:
    """The hops counted while a `count_hops()` block ran, keyed by "kind function"."""

    by_function: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return sum(self.by_function.values())

    @property
    def to_thread(self) -> int:
        """Hops from the event loop to a worker thread (`sync_to_async`)."""
        return sum(n for key, n in self.by_function.items() if key.startswith("sync_to_async"))

    @property
    def to_loop(self) -> int:
        """Hops from a thread back to the event loop (`async_to_sync`)."""
        return self.total - self.to_thread

    def per(self, requests: int) -> float:
        """Hops per request, for `requests` requests served inside the block."""
        return self.total / requests if requests else 0.0

    def table(self, requests: int = 1) -> str:
        """A Markdown table of the hops, per request when `requests` is given."""
        rows = [f"| {key} | {n / requests:g} |" for key, n in self.by_function.most_common()]
        return "| hop | per request |\n|---|---|\n" + "\n".join(rows)

    def _add(self, kind: str, target: object) -> None:
        name = getattr(target, "__qualname__", None) or type(target).__qualname__
        self.by_function[f"{kind} {name}"] += 1


@contextmanager
def count_hops() -> Iterator[Hops]:
    """Count `sync_to_async` / `async_to_sync` calls made in this process inside the block.

    All threads count (the in-kernel server's too): run nothing else meanwhile.
    """
    hops = Hops()
    with _lock:
        if not _active:
            _install()
        _active.append(hops)
    try:
        yield hops
    finally:
        with _lock:
            _active.remove(hops)
            if not _active:
                _uninstall()


def _record(kind: str, target: object) -> None:
    with _lock:
        for hops in _active:
            hops._add(kind, target)


def _install() -> None:
    from asgiref.sync import AsyncToSync, SyncToAsync

    s2a_call, a2s_call = SyncToAsync.__call__, AsyncToSync.__call__
    _originals.update(s2a=s2a_call, a2s=a2s_call)

    # Wrapping the class methods, not the decorators: Django builds its adapters at import
    # time and at middleware loading, and calls them later.
    async def counted_s2a(self: Any, *args: Any, **kwargs: Any) -> Any:
        _record("sync_to_async", self.func)
        return await s2a_call(self, *args, **kwargs)

    def counted_a2s(self: Any, *args: Any, **kwargs: Any) -> Any:
        _record("async_to_sync", self.awaitable)
        return a2s_call(self, *args, **kwargs)

    SyncToAsync.__call__ = counted_s2a  # type: ignore[method-assign]
    AsyncToSync.__call__ = counted_a2s  # type: ignore[method-assign]


def _uninstall() -> None:
    from asgiref.sync import AsyncToSync, SyncToAsync

    SyncToAsync.__call__ = _originals.pop("s2a")  # type: ignore[method-assign]
    AsyncToSync.__call__ = _originals.pop("a2s")  # type: ignore[method-assign]
