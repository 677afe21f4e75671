"""What the database saw while a check ran: queries and open connections, in both places.

In a learner's kernel the kit counts in-process (labkit.queries, labkit.databases). In the
grader's checker nothing of the sandbox's process can be trusted, so the same calls ask the
grader's PostgreSQL, which the sandbox uses under a role of its own: its statement log and
`pg_stat_activity` (a `Witness`, labkit.grading.witness). Both count everything the learner's
code ran during the block, in any thread, so a check reads the same numbers either way:

    async with queries_seen("load_context(7)") as log:
        await call(load_context, 7)
    log.n_queries, log.numbered()

    with connections_seen() as held:
        ...; held.now(); held.peak
"""

from __future__ import annotations

from typing import Any

from labkit.exercises import CheckError
from labkit.steps.subject import checker


def _witness() -> Any:
    found = checker()
    assert found is not None
    if found.database is None:
        raise CheckError(
            "This exercise is judged by what the database saw (queries, connections), which "
            "the grader reads from its own PostgreSQL; none is available to this grader. "
            "Install PostgreSQL's server programs (see the README's Tests section)."
        )
    return found.database


def queries_seen(label: str = "") -> Any:
    """A context manager (`with` or `async with`) giving the queries run inside it."""
    if checker() is None:
        from labkit.queries import count_all_queries

        return count_all_queries(label)
    return _witness().queries(label)


def connections_seen() -> Any:
    """A context manager whose `now()` and `peak` count database connections opened inside it."""
    if checker() is None:
        from labkit.databases import connection_peak

        return connection_peak()
    return _witness().connections()
