"""Opt-in support for `asyncio.run(...)` in a notebook cell, through nest-asyncio2.

The kernel already runs an event loop, so a cell can simply `await` a coroutine: that is what
the notebooks do, and what boot() expects. Learners arriving from scripts often type
`asyncio.run(main())` instead, which fails with "cannot be called from a running event loop".
`allow_asyncio_run()` makes that habit work by patching asyncio with nest-asyncio2 (the
maintained fork; nest_asyncio 1.6 is archived and breaks uvicorn when applied before uvicorn is
imported). It is never applied by boot(): re-entrant loops hide exactly the blocking this
course teaches learners to see, and they do not lift Django's async guards anyway.
"""

from __future__ import annotations

_applied = False


def allow_asyncio_run() -> None:
    """Let `asyncio.run(...)` work inside this kernel's cells (idempotent).

    allow_asyncio_run()
    asyncio.run(Document.objects.acount())
    """
    global _applied
    if _applied:
        return
    import nest_asyncio2

    nest_asyncio2.apply()
    _applied = True
