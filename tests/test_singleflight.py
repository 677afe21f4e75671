"""SingleFlight: identical concurrent calls share one run; cancellation is per caller."""

from __future__ import annotations

import asyncio

import pytest

from labkit.singleflight import SingleFlight


def test_concurrent_callers_share_one_call():
    async def main():
        flights, runs = SingleFlight(), []

        async def ask():
            runs.append(1)
            await asyncio.sleep(0.05)
            return len(runs)

        replies = await asyncio.gather(*(flights.do("same prompt", ask) for _ in range(20)))
        other = await flights.do("another prompt", ask)
        return replies, other, flights

    replies, other, flights = asyncio.run(main())
    assert replies == [1] * 20
    assert other == 2  # a different key runs its own call
    assert (flights.calls, flights.shared, len(flights)) == (2, 19, 0)


def test_an_error_reaches_every_caller_and_the_next_call_runs_again():
    async def main():
        flights, runs = SingleFlight(), []

        async def fail():
            runs.append(1)
            await asyncio.sleep(0.01)
            raise ValueError("upstream 503")

        results = await asyncio.gather(
            *(flights.do("k", fail) for _ in range(3)), return_exceptions=True
        )
        with pytest.raises(ValueError):
            await flights.do("k", fail)
        return results, runs

    results, runs = asyncio.run(main())
    assert [type(r) for r in results] == [ValueError] * 3
    assert len(runs) == 2  # errors are not remembered: the next caller tries again


def test_one_caller_leaving_does_not_cancel_the_others_call():
    async def main():
        flights, cancelled = SingleFlight(), []

        async def ask():
            try:
                await asyncio.sleep(0.2)
            except asyncio.CancelledError:
                cancelled.append(1)
                raise
            return "reply"

        leaving = asyncio.ensure_future(flights.do("k", ask))
        staying = asyncio.ensure_future(flights.do("k", ask))
        await asyncio.sleep(0.05)
        leaving.cancel()
        return await staying, cancelled, leaving.cancelled()

    reply, cancelled, left = asyncio.run(main())
    assert (reply, cancelled, left) == ("reply", [], True)


def test_the_call_is_cancelled_when_its_last_caller_leaves():
    async def main():
        flights, cancelled = SingleFlight(), []

        async def ask():
            try:
                await asyncio.sleep(5)
            except asyncio.CancelledError:
                cancelled.append(1)
                raise

        caller = asyncio.ensure_future(flights.do("k", ask))
        await asyncio.sleep(0.05)
        caller.cancel()
        await asyncio.sleep(0.05)
        return cancelled, len(flights)

    assert asyncio.run(main()) == ([1], 0)
