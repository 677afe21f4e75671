"""count_hops(): sync_to_async / async_to_sync calls counted by wrapped function, then unpatched."""

from __future__ import annotations

import asyncio
import threading

from asgiref.sync import AsyncToSync, SyncToAsync, async_to_sync, sync_to_async

from labkit.hops import count_hops


def blocking_work() -> str:
    return threading.current_thread().name


async def awaited_work() -> int:
    await asyncio.sleep(0)
    return 1


def test_counts_hops_to_a_thread_by_function():
    async def main() -> list[str]:
        return [await sync_to_async(blocking_work)() for _ in range(3)]

    with count_hops() as hops:
        names = asyncio.run(main())
    assert hops.by_function == {"sync_to_async blocking_work": 3}
    assert hops.total == hops.to_thread == 3
    assert hops.to_loop == 0
    assert hops.per(3) == 1.0
    assert all(name != threading.current_thread().name for name in names)


def test_counts_hops_back_to_the_loop():
    with count_hops() as hops:
        assert async_to_sync(awaited_work)() == 1
    assert hops.by_function == {"async_to_sync awaited_work": 1}
    assert hops.to_loop == 1
    assert "| async_to_sync awaited_work | 1 |" in hops.table()


def test_restores_asgiref_and_nests():
    s2a, a2s = SyncToAsync.__call__, AsyncToSync.__call__
    with count_hops() as outer:
        with count_hops() as inner:
            async_to_sync(awaited_work)()
        async_to_sync(awaited_work)()
        assert SyncToAsync.__call__ is not s2a
    assert (outer.total, inner.total) == (2, 1)
    assert SyncToAsync.__call__ is s2a and AsyncToSync.__call__ is a2s


def test_nothing_counted_outside_the_block():
    with count_hops() as hops:
        pass
    async_to_sync(awaited_work)()
    assert hops.total == 0
    assert hops.per(0) == 0.0
