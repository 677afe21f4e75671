"""Coalesce identical concurrent calls: the first caller for a key runs, the others await it.

Twenty users asking the same uncached prompt at once would otherwise make twenty upstream LLM
calls before the first reply reaches the cache (a stampede). Hand-written rather than a
dependency: it is a dozen lines over `asyncio.Future`, and the course teaches it in step 05.

    flights = SingleFlight()
    reply = await flights.do(cache_key, lambda: ask_llm(prompt))

Per event loop, like the pooled client: a future belongs to the loop that created it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any


class SingleFlight:
    """Run one call per key at a time; concurrent callers with that key share its outcome.

    A caller that is cancelled (its client went away) stops waiting; the call goes on for the
    others, and is cancelled only when no caller is left waiting for it.
    """

    def __init__(self) -> None:
        self._flights: dict[tuple[int, str], _Flight] = {}
        self.calls = 0  # how many times a `fn` actually ran
        self.shared = 0  # how many callers got another caller's outcome

    async def do(self, key: str, fn: Callable[[], Awaitable[Any]]) -> Any:
        """Await `fn()` for the first caller of `key`; later callers await the same outcome."""
        loop = asyncio.get_running_loop()
        slot = (id(loop), key)
        flight = self._flights.get(slot)
        if flight is None:
            task = loop.create_task(_call(fn))
            flight = self._flights[slot] = _Flight(task)
            task.add_done_callback(lambda _: self._flights.pop(slot, None))
            self.calls += 1
        else:
            self.shared += 1
        flight.waiters += 1
        try:
            return await asyncio.shield(flight.task)
        except asyncio.CancelledError:
            if flight.waiters == 1 and not flight.task.done():
                flight.task.cancel()
            raise
        finally:
            flight.waiters -= 1

    def __len__(self) -> int:
        """Calls in flight now."""
        return len(self._flights)


class _Flight:
    __slots__ = ("task", "waiters")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.waiters = 0


async def _call(fn: Callable[[], Awaitable[Any]]) -> Any:
    return await fn()
