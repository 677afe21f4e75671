"""Step 01, the problem measured: predict a blocked server's throughput, count waste, size it.

Master: solutions/01_the_problem.ipynb. Notebook: `from labkit.steps.step_01 import q1, q2, q3`.
The checks compare the learner's formulas with fixed cases and with cases drawn at check time
(so no table of answers matches them); in a learner's kernel they also compare the formulas
with the runs the notebook measured (`sync_run`, `async_preview`, `timeout_timings`), as
feedback: the grader never reads a notebook's variables.
"""

from __future__ import annotations

import math
import random
from typing import Any

from labkit.exercises import Exercise, Incorrect
from labkit.steps.subject import experiment

LATENCIES = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)


def _measured(name: str) -> Any:
    """A value the notebook measured (e.g. `sync_run`) in this kernel, else None."""
    from labkit.steps.subject import grading

    if grading():
        return None
    try:
        from labkit.exercises.namespace import user_namespace

        return user_namespace().get(name)
    except Exception:  # noqa: BLE001 - outside a kernel there is simply nothing measured
        return None


def _close(got: object, want: float) -> bool:
    return (
        isinstance(got, int | float)
        and not isinstance(got, bool)
        and math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-9)
    )


async def _answers(fn: Any, cases: list[tuple[tuple, Any]]) -> list[Any]:
    """The learner's answer to each case's arguments; "raised X" where it raised."""
    from labkit.steps.subject import Raised, call

    answers = []
    for args, _ in cases:
        try:
            answers.append(await call(fn, *args))
        except Raised as error:
            answers.append(f"raised {error.type_name}")
    return answers


def _table(header: str, cases: list[tuple[tuple, Any]], answers: list[Any], same: Any) -> str:
    rows = [header]
    for (args, want), got in zip(cases, answers, strict=True):
        mark = "" if same(got, want) else "   <- differs"
        shown = "  ".join(f"{a:g}" if isinstance(a, float) else str(a) for a in args)
        rows.append(f"{shown}  ->  expected {want:g}, yours {got!s}{mark}")
    return "\n".join(rows)


class PredictedRps(Exercise):
    """`predicted_rps(threads, latency_s, users)`: the blocked server's ceiling, min(u, t) / L.

    Judged on fixed cases (fewer users than threads among them) and cases drawn at check
    time; in a kernel, also against the measured `sync_run` (feedback only).
    """

    id = "01.1"
    title = "Predict a blocked server's throughput"
    hints = [
        "Each worker thread finishes one request per `latency_s` seconds while it waits on the "
        "LLM. How many threads can be busy at once if there are fewer users than threads?",
        "`min(users, threads) / latency_s`: the busy threads, each finishing 1/latency_s "
        "requests per second.",
    ]
    wrong_answers = {
        "users / latency": "return users / latency_s",
        "threads × latency": "return threads * latency_s",
        "ignores the users": "return threads / latency_s",
        "the larger of users and threads": "return max(users, threads) / latency_s",
    }
    # (threads, latency_s, users) -> requests per second
    cases = [((4, 1.0, 50), 4.0), ((4, 0.5, 50), 8.0), ((8, 2.0, 3), 1.5), ((1, 0.25, 10), 4.0)]

    async def evaluate(self, predicted_rps) -> str:
        from labkit.steps.subject import call

        rng = random.Random()
        drawn = []
        for _ in range(4):
            threads, users = rng.randint(1, 16), rng.randint(1, 60)
            latency_s = rng.choice(LATENCIES)
            drawn.append(((threads, latency_s, users), min(users, threads) / latency_s))
        cases = self.cases + drawn
        answers = await _answers(predicted_rps, cases)
        for ((threads, latency_s, users), want), got in zip(cases, answers, strict=True):
            if not _close(got, want):
                raise Incorrect(
                    f"`predicted_rps({threads}, {latency_s}, {users})` returned {got!r}; "
                    f"expected {want:g} req/s ({threads} threads, {users} users, each request "
                    f"holding its thread {latency_s:g} s).",
                    evidence=_table("threads  latency_s  users", cases, answers, _close),
                )
        run = _measured("sync_run")
        if not getattr(run, "rps", 0) or not run.workers or not run.latency_s or not run.users:
            return f"All {len(cases)} cases are right."
        predicted = await call(predicted_rps, run.workers, run.latency_s, run.users)
        return (
            f"All {len(cases)} cases are right. Your run: {run.workers} threads, {run.users} "
            f"users, LLM latency {run.latency_s:g} s; your ceiling {predicted:.2f} req/s, "
            f"measured {run.rps:.2f} req/s ({run.rps / predicted:.0%} of it)."
        )


class ThreadsNeeded(Exercise):
    """`threads_needed(target_rps, latency_s)`: Little's law rounded up, ceil(rps × L).

    Judged on fixed cases (some exact, some that must round up) and cases drawn at check time.
    """

    id = "01.3"
    title = "Size a thread pool for a target throughput"
    hints = [
        "Little's law: requests in progress = arrival rate × time each one takes. Each request "
        "in progress holds one thread.",
        "`math.ceil(target_rps * latency_s)`: threads come in whole numbers, and rounding down "
        "leaves the pool short of the target.",
    ]
    wrong_answers = {
        "divides by the latency": "return math.ceil(target_rps / latency_s)",
        "rounds down": "return int(target_rps * latency_s)",
        "rounds to nearest": "return round(target_rps * latency_s)",
        "one spare thread": "return math.ceil(target_rps * latency_s) + 1",
    }
    # (target_rps, latency_s) -> threads
    cases = [((4, 1.0), 4), ((20, 0.5), 10), ((7, 0.3), 3), ((3, 2.5), 8), ((100, 0.25), 25)]

    async def evaluate(self, threads_needed) -> str:
        from labkit.steps.subject import call

        rng = random.Random()
        drawn = []
        for _ in range(4):
            target, latency_s = rng.randint(1, 120), rng.choice(LATENCIES)
            drawn.append(((target, latency_s), math.ceil(target * latency_s)))
        cases = self.cases + drawn
        answers = await _answers(threads_needed, cases)
        for ((target, latency_s), want), got in zip(cases, answers, strict=True):
            if not _whole(got, want):
                raise Incorrect(
                    f"`threads_needed({target}, {latency_s})` returned {got!r}; expected {want} "
                    f"threads: {target} req/s × {latency_s:g} s = {target * latency_s:g} "
                    "requests in progress at any moment, each holding a thread.",
                    evidence=_table("target_rps  latency_s", cases, answers, _whole),
                )
        preview = _measured("async_preview")
        if not getattr(preview, "rps", 0) or not preview.latency_s:
            return f"All {len(cases)} cases are right."
        need = await call(threads_needed, preview.rps, preview.latency_s)
        return (
            f"All {len(cases)} cases are right. To match the async preview's measured "
            f"{preview.rps:.1f} req/s with the sync view, a WSGI server would need {need} "
            f"threads, each blocked {preview.latency_s:g} s per request."
        )


def _whole(got: object, want: int) -> bool:
    whole = isinstance(got, int) or (isinstance(got, float) and got.is_integer())
    return not isinstance(got, bool) and whole and got == want


@experiment("step_01.wasted_calls")
async def wasted_calls_of(wasted_calls: Any, *, spans: list, client_timeout_s: float) -> Any:
    """`wasted_calls` on RequestTimings built from (accepted, started, finished) spans."""
    from labkit.grading.servant import invoke
    from labkit.servers.timing import RequestTiming

    made = [RequestTiming("/api/chat/", "POST", 200, a, s, f, "worker") for a, s, f in spans]
    return await invoke(wasted_calls, [made, client_timeout_s], {})


class WastedCalls(Exercise):
    """`wasted_calls(timings, timeout_s)`: requests answered after their client gave up.

    Judged on spans with each kind of slow request (long queue, long service, both, one
    answered exactly at the timeout, which the client still read) and spans drawn at check
    time; in a kernel, also on the notebook's measured `timeout_timings`.
    """

    id = "01.2"
    title = "Count the answers nobody waited for"
    hints = [
        "A client with a timeout of `timeout_s` gives up `timeout_s` after it sent the request. "
        "Which of a request's times (`waiting_s`, `served_s`, `total_s`) is that clock?",
        "`sum(1 for t in timings if t.total_s > timeout_s)`: accepted to answered, longer "
        "than the client waited.",
    ]
    wrong_answers = {
        "only the queue wait": "return sum(1 for t in timings if t.waiting_s > timeout_s)",
        "only the LLM call": "return sum(1 for t in timings if t.served_s > timeout_s)",
        "every request served": "return len(timings)",
        "an answer right at the timeout counted": (
            "return sum(1 for t in timings if t.total_s >= timeout_s)"
        ),
    }
    spans = [(0.0, 0.0, 1.0), (0.0, 2.0, 3.5), (0.0, 4.0, 5.0), (1.0, 1.0, 4.5), (0, 0.5, 2.9)]
    spans += [(0.0, 1.0, 3.0)]

    async def evaluate(self, wasted_calls) -> str:
        from labkit.steps.subject import Raised, run_experiment

        timeout_s = 3.0
        rng = random.Random()
        drawn = []
        for _ in range(rng.randint(3, 8)):
            accepted = round(rng.uniform(0, 5), 2)
            started = round(accepted + rng.uniform(0, 3), 2)
            drawn.append((accepted, started, round(started + rng.uniform(0.1, 3), 2)))
        for spans in (self.spans, self.spans + drawn):
            want = sum(1 for a, _, f in spans if f - a > timeout_s)
            try:
                got = await run_experiment(
                    "step_01.wasted_calls",
                    wasted_calls,
                    spans=[list(span) for span in spans],
                    client_timeout_s=timeout_s,
                )
            except Raised as error:
                got = f"an error, {error.type_name}: {error.message}"[:200]
            if got != want or isinstance(got, bool):
                rows = "\n".join(
                    f"waited {s - a:.2f} s, served {f - s:.2f} s, total {f - a:.2f} s"
                    f"{'  <- answered after the client left' if f - a > timeout_s else ''}"
                    for a, s, f in spans
                )
                raise Incorrect(
                    f"For these {len(spans)} requests and a {timeout_s:g} s client timeout, "
                    f"`wasted_calls` returned {got!r}; {want} were answered after their client "
                    "had given up (an answer at exactly the timeout was still read):",
                    evidence=rows,
                )
        return f"Right on {len(self.spans) + len(drawn)} sample requests. " + self._run_note(
            wasted_calls
        )

    @staticmethod
    def _run_note(wasted_calls: Any) -> str:
        timings = _measured("timeout_timings")
        limit = _measured("client_timeout_s")
        if not timings or not isinstance(limit, int | float):
            return "Run the timeout cell (`timeout_timings`) to count your run's waste."
        want = sum(1 for t in timings if t.total_s > limit)
        return (
            f"On your run the server answered {want} of {len(timings)} requests after their "
            f"client had given up at {limit:g} s; each was a full LLM call nobody read."
        )


q1 = PredictedRps()
q2 = WastedCalls()
q3 = ThreadsNeeded()
