"""Step 01, the problem measured: predict a blocked server's throughput, count waste, size it.

Master: solutions/01_the_problem.ipynb. Notebook: `from labkit.steps.step_01 import q1, q2, q3`.
The checks compare the learner's formulas with fixed cases (so every mistake is caught the same
way on any machine) and with the runs the notebook measured (`sync_run`, `async_preview`,
`timeout_timings`), read from the notebook when they exist.
"""

from __future__ import annotations

import math
from typing import Any

from labkit.exercises import Exercise, Incorrect
from labkit.exercises.namespace import user_namespace

# A measured run may fall short of its bound (the view's own CPU, a busy machine), never
# beat it by more than the noise of timing a short window.
BEAT_BOUND = 1.15
FALL_SHORT = 4.0


def _measured(name: str) -> Any:
    """A value the notebook measured (e.g. `sync_run`), or None if that cell has not run."""
    try:
        return user_namespace().get(name)
    except Exception:  # noqa: BLE001 - outside a kernel there is simply nothing measured
        return None


def _close(got: object, want: float) -> bool:
    return (
        isinstance(got, int | float)
        and not isinstance(got, bool)
        and math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-9)
    )


class PredictedRps(Exercise):
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
    }
    # (threads, latency_s, users) -> requests per second
    cases = [((4, 1.0, 50), 4.0), ((4, 0.5, 50), 8.0), ((8, 2.0, 3), 1.5), ((1, 0.25, 10), 4.0)]

    def evaluate(self, predicted_rps) -> str:
        for (threads, latency_s, users), want in self.cases:
            got = predicted_rps(threads, latency_s, users)
            if not _close(got, want):
                raise Incorrect(
                    f"`predicted_rps({threads}, {latency_s}, {users})` returned {got!r}; "
                    f"expected {want:g} req/s ({threads} threads, {users} users, each request "
                    f"holding its thread {latency_s:g} s).",
                    evidence=_case_table(predicted_rps, self.cases),
                )
        run = _measured("sync_run")
        if not getattr(run, "rps", 0) or not run.workers or not run.latency_s or not run.users:
            return (
                f"All {len(self.cases)} cases are right. Run the load cell (`sync_run`) and "
                "check again to compare with a measurement."
            )
        predicted = predicted_rps(run.workers, run.latency_s, run.users)
        evidence = (
            f"scenario: {run.workers} threads, {run.users} users, LLM latency {run.latency_s:g} s\n"
            f"predicted: {predicted:.2f} req/s\nmeasured:  {run.rps:.2f} req/s "
            f"({run.rps / predicted:.0%} of the prediction)"
        )
        if run.rps > BEAT_BOUND * predicted:
            raise Incorrect(
                "Your formula predicts less than the server measurably did: it cannot be the "
                "ceiling.",
                evidence=evidence,
            )
        if run.rps * FALL_SHORT < predicted:
            raise Incorrect(
                "Your formula predicts far more than the server ever got near.", evidence=evidence
            )
        return (
            f"All {len(self.cases)} cases are right, and the measured run stayed under your "
            f"ceiling: {run.rps:.2f} of {predicted:.2f} req/s ({run.rps / predicted:.0%})."
        )


def _case_table(fn: Any, cases: list) -> str:
    rows = ["threads  latency_s  users  expected  yours"]
    for (threads, latency_s, users), want in cases:
        try:
            got = fn(threads, latency_s, users)
        except Exception as exc:  # noqa: BLE001 - shown, not raised
            got = f"raised {type(exc).__name__}"
        mark = "" if _close(got, want) else "   <- differs"
        rows.append(f"{threads:>7}  {latency_s:>9g}  {users:>5}  {want:>8g}  {got!s:>5}{mark}")
    return "\n".join(rows)


class ThreadsNeeded(Exercise):
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
    }
    # (target_rps, latency_s) -> threads
    cases = [((4, 1.0), 4), ((20, 0.5), 10), ((7, 0.3), 3), ((3, 2.5), 8), ((100, 0.25), 25)]

    def evaluate(self, threads_needed) -> str:
        for (target, latency_s), want in self.cases:
            got = threads_needed(target, latency_s)
            whole = isinstance(got, int) or (isinstance(got, float) and got.is_integer())
            if isinstance(got, bool) or not whole or got != want:
                raise Incorrect(
                    f"`threads_needed({target}, {latency_s})` returned {got!r}; expected {want} "
                    f"threads: {target} req/s × {latency_s:g} s = {target * latency_s:g} "
                    "requests in progress at any moment, each holding a thread.",
                    evidence="\n".join(
                        f"threads_needed({t}, {lat}) -> expected {w}, "
                        f"yours {_safe(threads_needed, t, lat)}"
                        for (t, lat), w in self.cases
                    ),
                )
        preview = _measured("async_preview")
        if not getattr(preview, "rps", 0) or not preview.latency_s:
            return f"All {len(self.cases)} cases are right."
        need = threads_needed(preview.rps, preview.latency_s)
        want = math.ceil(preview.rps * preview.latency_s)
        if need != want:
            raise Incorrect(
                f"For the async preview's measured {preview.rps:.1f} req/s at "
                f"{preview.latency_s:g} s, your function says {need!r} threads; expected {want}."
            )
        return (
            f"All {len(self.cases)} cases are right. To match the async preview's measured "
            f"{preview.rps:.1f} req/s with the sync view, a WSGI server would need {need} "
            f"threads, each blocked {preview.latency_s:g} s per request."
        )


def _safe(fn: Any, *args: Any) -> str:
    try:
        return repr(fn(*args))
    except Exception as exc:  # noqa: BLE001 - shown, not raised
        return f"raised {type(exc).__name__}"


class WastedCalls(Exercise):
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
    }

    def evaluate(self, wasted_calls) -> str:
        from labkit.servers.timing import RequestTiming

        timeout_s = 3.0
        spans = [(0.0, 0.0, 1.0), (0.0, 2.0, 3.5), (0.0, 4.0, 5.0), (1.0, 1.0, 4.5), (0, 0.5, 2.9)]
        made = [
            RequestTiming("/api/chat/", "POST", 200, accepted, started, finished, "worker")
            for accepted, started, finished in spans
        ]
        want = _wasted(made, timeout_s)
        got = wasted_calls(made, timeout_s)
        if got != want:
            rows = "\n".join(
                f"waited {t.waiting_s:.1f} s, served {t.served_s:.1f} s, total {t.total_s:.1f} s"
                f"{'  <- answered after the client left' if t.total_s > timeout_s else ''}"
                for t in made
            )
            raise Incorrect(
                f"For these {len(made)} requests and a {timeout_s:g} s client timeout, "
                f"`wasted_calls` returned {got!r}; {want} were answered after their client "
                "had given up:",
                evidence=rows,
            )
        timings = _measured("timeout_timings")
        limit = _measured("client_timeout_s")
        if not timings or not isinstance(limit, int | float):
            return (
                f"Right on the {len(made)} sample requests. Run the timeout cell "
                "(`timeout_timings`) and check again to count your run's waste."
            )
        got = wasted_calls(timings, limit)
        want = _wasted(timings, limit)
        if got != want:
            raise Incorrect(
                f"On your measured run (client timeout {limit:g} s), `wasted_calls` returned "
                f"{got!r}; counting requests answered more than {limit:g} s after they arrived "
                f"gives {want}."
            )
        return (
            f"Right on the sample, and on your run: the server answered {want} of "
            f"{len(timings)} requests after their client had given up at {limit:g} s; each "
            "was a full LLM call nobody read."
        )


def _wasted(timings: Any, timeout_s: float) -> int:
    return sum(1 for t in timings if t.total_s > timeout_s)


q1 = PredictedRps()
q2 = WastedCalls()
q3 = ThreadsNeeded()
