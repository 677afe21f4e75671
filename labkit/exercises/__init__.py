"""Exercises a learner checks from a notebook cell, learntools-style.

A notebook imports a step's exercises in one line and calls them:

    from labkit.steps.step_02 import q1, q2      # or: q1, q2 = exercises("02")

    q1.check()          # Correct / Incorrect / Not attempted yet / Check error, with evidence
    await q2.acheck()   # the same, awaited on the kernel's own event loop
    q1.hint()           # hint 1; q1.hint(2) for the next
    q1.solution()       # the solution cell from solutions/02_*.ipynb (hidden if
                        # LAB_HIDE_SOLUTIONS=1)

A step module declares them (see `Exercise` for the full contract):

    from labkit.exercises import Exercise, Incorrect, NotAttempted, expect_queries

    class FewerQueries(Exercise):
        id = "04.1"
        title = "Summarise a document in at most 2 queries"
        hints = ["`prefetch_related` fetches the chunks in one more query."]
        wrong_answers = {"N+1 loop": "...", "prefetch then filter": "..."}

        async def evaluate(self, summary_context) -> str:
            async with count_queries() as log:
                await summary_context(1)
            return expect_queries(log, at_most=2)

    q1 = FewerQueries()

Every result is shown, written to `.labkit/checks.jsonl` beside the notebook and carried as
an `application/vnd.labkit.check+json` output, so `labkit grade` can score it.
"""

from __future__ import annotations

from labkit.exercises.evidence import Overlap, expect_overlap, expect_queries, overlap
from labkit.exercises.exercise import Exercise
from labkit.exercises.outcomes import (
    MIME_TYPE,
    CheckError,
    Incorrect,
    NotAttempted,
    Outcome,
    Status,
)
from labkit.exercises.registry import ExerciseSet, exercises, find

__all__ = [
    "MIME_TYPE",
    "CheckError",
    "Exercise",
    "ExerciseSet",
    "Incorrect",
    "NotAttempted",
    "Outcome",
    "Overlap",
    "Status",
    "exercises",
    "expect_overlap",
    "expect_queries",
    "find",
    "overlap",
]
