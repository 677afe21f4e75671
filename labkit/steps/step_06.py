"""Step 06, load testing: Little's law for a closed loop, and a take-home locustfile.

Master: solutions/06_load_testing.ipynb. In the notebook:

    from labkit.steps.step_06 import q1, q2
"""

from __future__ import annotations

import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from labkit.exercises import CheckError, Exercise, Incorrect, NotAttempted
from labkit.steps.locust_probe import (
    LOCUSTFILE,
    RUN_S,
    SERVE_S,
    USERS,
    judge,
    locust_counts,
    static_checks,
)
from labkit.steps.subject import experiment

# 06.1: (users, wait_s, mean response s, p95 s, LLM latency s) of the runs the check builds.
# The first is the tutorial's table: 50 users pausing 1-3 s, p95 3.2 s.
SCENARIOS = [(50, 2.0, 1.6, 3.2, 1.0), (20, 0.0, 0.8, 2.4, 0.5), (8, 0.5, 0.35, 0.9, 0.3)]
TOLERANCE = 0.03  # relative: rounding, or a mean computed from the timings by hand


def _synthetic_run(users: int, wait_s: float, mean_s: float, p95_s: float, latency_s: float):
    """A closed-loop LoadResult whose raw timings have this mean and p95."""
    from labkit.load import LoadResult
    from labkit.load.results import Timing

    # 100 requests: 90 fast ones and a slow tail of 10, solved for the mean and the p95.
    tail_s = p95_s
    fast_s = (100 * mean_s - 10 * tail_s) / 90
    spread = [fast_s * (0.9 + 0.2 * i / 89) for i in range(90)]
    spread = [v + (fast_s - statistics.fmean(spread)) for v in spread]
    values = spread + [tail_s] * 10
    timings = [
        Timing(1000.0 + i * 0.05, v * 1000, 200, None, 100, "/api/chat/")
        for i, v in enumerate(values)
    ]
    return LoadResult.from_timings(
        timings,
        scenario="chat (POST /api/chat/)",
        users=users,
        duration_s=20,
        wait_s=wait_s,
        latency_s=latency_s,
    )


@experiment("step_06.expected_rps")
async def expected_rps_of(expected_rps: Any, *, scenarios: list) -> list[Any]:
    """`expected_rps(run)` for the synthetic run of each scenario, built beside the learner."""
    from labkit.grading.servant import error_of, invoke, jsonable

    answers = []
    for scenario in scenarios:
        try:
            answers.append(jsonable(await invoke(expected_rps, [_synthetic_run(*scenario)], {})))
        except Exception as exc:  # noqa: BLE001 - reported as data, judged by the checker
            answers.append({"raised": error_of(exc)})
    return answers


class ExpectedRps(Exercise):
    """`expected_rps(run)`: Little's law for a closed loop, users / (mean response + pause).

    Judged on synthetic runs whose mean, p50, p95 and LLM latency all differ (the tutorial's
    table, runs without pauses, and runs drawn at check time), so using any other time than
    the mean response plus the mean pause, or mixing units, misses at least one.
    """

    id = "06.1"
    title = "Little's law for a closed loop"
    hints = [
        "In a closed loop each user is always either waiting for an answer or pausing before "
        "the next request. Little's law, rate = users / time per round, with one round = one "
        "response plus one pause.",
        "Use the run's mean response time (`run.mean_ms`, in milliseconds) and its mean pause "
        "(`run.wait_s`, in seconds): the mean, because throughput counts every request, the "
        "fast ones as well as the tail.",
        "`return run.users / (run.mean_ms / 1000 + run.wait_s)`",
    ]
    wrong_answers = {
        "forgets the think time": """
return run.users / (run.mean_ms / 1000)
""",
        "p95 instead of the mean": """
return run.users / (run.p95_ms / 1000 + run.wait_s)
""",
        "the median instead of the mean": """
return run.users / (run.p50_ms / 1000 + run.wait_s)
""",
        "the LLM's latency instead of the response time": """
return run.users / (run.latency_s + run.wait_s)
""",
        "milliseconds added to seconds": """
return run.users / (run.mean_ms + run.wait_s)
""",
    }

    async def evaluate(self, expected_rps) -> str:
        from labkit.steps.subject import run_experiment

        rng = random.Random()
        scenarios = list(SCENARIOS)
        for _ in range(2):
            mean_s = round(rng.uniform(0.3, 2.0), 2)
            scenarios.append(
                (
                    rng.randint(5, 80),
                    round(rng.uniform(0.5, 3.0), 1),
                    mean_s,
                    round(mean_s * rng.uniform(1.8, 2.5), 2),
                    round(mean_s * rng.uniform(0.3, 0.6), 2),
                )
            )
        answers = await run_experiment(
            "step_06.expected_rps", expected_rps, scenarios=[list(s) for s in scenarios]
        )
        lines = []
        for scenario, got in zip(scenarios, answers, strict=True):
            users, wait_s, _, _, latency_s = scenario
            run = _synthetic_run(*scenario)
            mean_s = run.mean_ms / 1000
            right = users / (mean_s + wait_s)
            described = (
                f"{users} users pausing {wait_s:g} s between requests, mean response "
                f"{mean_s:.2f} s (p50 {run.p50_ms / 1000:.2f} s, p95 {run.p95_ms / 1000:.2f} s, "
                f"LLM latency {latency_s:g} s)"
            )
            if isinstance(got, dict) and "raised" in got:
                raise Incorrect(
                    f"For {described}, `expected_rps(run)` raised {got['raised']['type']}.",
                    evidence=str(got["raised"]["message"])[:300],
                )
            if not isinstance(got, int | float) or isinstance(got, bool):
                kind = got.get("__type__") if isinstance(got, dict) else type(got).__name__
                raise Incorrect(
                    f"`expected_rps(run)` returned {kind}, expected a number of requests per "
                    "second."
                )
            if abs(got - right) > TOLERANCE * right:
                raise Incorrect(
                    f"For {described} you predicted {got:.3g} req/s; Little's law gives "
                    f"{users} ÷ ({mean_s:.2f} + {wait_s:g}) = {right:.3g} req/s."
                    + _diagnose(got, run),
                )
            lines.append(f"{described}: {got:.1f} req/s")
        return "Little's law, right for every run:\n" + "\n".join(f"- {line}" for line in lines)


def _diagnose(got: float, run: Any) -> str:
    """Name the slip that produces `got`, if it is a known one."""
    users, wait_s = run.users, run.wait_s
    slips = {
        " It matches users ÷ mean response: the users' pauses are missing, and a paused user "
        "sends nothing.": users / (run.mean_ms / 1000),
        " It matches users ÷ (p95 + pause): throughput counts every request, so it takes "
        "the mean, not the slow tail.": users / (run.p95_ms / 1000 + wait_s),
        " It matches users ÷ (median + pause): the slow tail counts too, so it takes the "
        "mean, not the median.": users / (run.p50_ms / 1000 + wait_s),
        " It matches users ÷ (LLM latency + pause): the users wait for the whole response, "
        "queueing and the view's own work included, not only the LLM.": users
        / (run.latency_s + wait_s),
        " It matches a mean in milliseconds added to a pause in seconds: convert `mean_ms` to "
        "seconds first.": users / (run.mean_ms + wait_s),
    }
    for text, value in slips.items():
        if value and abs(got - value) <= TOLERANCE * value:
            return text
    return ""


class TakeHomeLocustfile(Exercise):
    id = "06.2"
    title = "A take-home locustfile"
    feedback_only = (
        "it runs the learner's locustfile with Locust, and a verdict must not come from a "
        "process that runs learner code"
    )
    hints = [
        "One class derived from `FastHttpUser`, with a `wait_time` and one `@task` method "
        'that sends `self.client.post("/api/chat/", json={"prompt": ...})`.',
        "`wait_time = between(1, 3)` makes each user pause 1-3 s after every answer, like "
        "a person reading it. Leave `host` out of the file: `--host` on the command line says "
        "where the load goes, so the same file tests your laptop and your staging server.",
        "Vary the prompt (a counter in `on_start`, or `random.choice` plus a request number): "
        "the same prompt every time lets a response cache answer all but the first request.",
    ]
    wrong_answers = {
        "no wait_time": '''
"""Chat load: locust -f locustfile.py --host http://127.0.0.1:8000 --headless -u 5 -t 30s"""
import itertools

from locust import task
from locust.contrib.fasthttp import FastHttpUser


class ChatUser(FastHttpUser):
    def on_start(self):
        self.count = itertools.count()

    @task
    def chat(self):
        self.client.post("/api/chat/", json={"prompt": f"Hello {id(self)} {next(self.count)}"})
''',
        "the wrong path": '''
"""Chat load: locust -f locustfile.py --host http://127.0.0.1:8000 --headless -u 5 -t 30s"""
import itertools

from locust import between, task
from locust.contrib.fasthttp import FastHttpUser


class ChatUser(FastHttpUser):
    wait_time = between(1, 3)

    def on_start(self):
        self.count = itertools.count()

    @task
    def chat(self):
        self.client.post("/chat/", json={"prompt": f"Hello {id(self)} {next(self.count)}"})
''',
        "a GET with the prompt in the query string": '''
"""Chat load: locust -f locustfile.py --host http://127.0.0.1:8000 --headless -u 5 -t 30s"""
import itertools

from locust import between, task
from locust.contrib.fasthttp import FastHttpUser


class ChatUser(FastHttpUser):
    wait_time = between(1, 3)

    def on_start(self):
        self.count = itertools.count()

    @task
    def chat(self):
        self.client.get(f"/api/chat/?prompt=Hello+{next(self.count)}")
''',
        "a hard-coded remote host": '''
"""Chat load: locust -f locustfile.py --headless -u 5 -t 30s"""
import itertools

from locust import between, task
from locust.contrib.fasthttp import FastHttpUser


class ChatUser(FastHttpUser):
    host = "https://api.example.com"
    wait_time = between(1, 3)

    def on_start(self):
        self.count = itertools.count()

    @task
    def chat(self):
        self.client.post("/api/chat/", json={"prompt": f"Hello {id(self)} {next(self.count)}"})
''',
        "the tutorial's one fixed prompt": """
from locust import HttpUser, between, task


class AIUser(HttpUser):
    wait_time = between(1, 3)

    @task
    def chat_request(self):
        self.client.post("/api/chat/", json={"prompt": "Explain async Django"})
""",
    }

    def prepare(self) -> None:
        from labkit.steps.probes import require_django

        require_django()

    async def evaluate(self) -> str:
        from labkit.steps.subject import grading

        if grading():
            # The file lives in the sandbox, and running it is running the learner's code:
            # the checker may do neither. Checked in the learner's kernel (`q2.check()`).
            raise CheckError(
                f"06.2 runs your {LOCUSTFILE} with Locust, which the grader does not do outside "
                "your notebook's sandbox: it is checked in the notebook with `q2.check()`."
            )
        path = Path.cwd() / LOCUSTFILE
        if not path.exists():
            raise NotAttempted(
                f"There is no {LOCUSTFILE} in {Path.cwd()}: run the exercise cell (its first "
                "line, `%%writefile locustfile.py`, writes the file), then check again."
            )
        source = path.read_text(encoding="utf-8")
        static_checks(source)
        seen, statuses, stderr = await self._run(path)
        return judge(seen, statuses, stderr)

    async def _run(self, path: Path) -> tuple[list[dict[str, Any]], Counter, str]:
        """Run the learner's locustfile for RUN_S s against a probe chat view; return what came."""
        import asyncio

        from labkit.steps.probes import ServedView

        seen: list[dict[str, Any]] = []

        async def probe(request):
            import json

            from django.http import JsonResponse

            try:
                data = json.loads(request.body or b"null")
            except ValueError:
                data = None
            prompt = data.get("prompt") if isinstance(data, dict) else None
            seen.append(
                {
                    "t": time.monotonic(),
                    "method": request.method,
                    "port": request.META.get("REMOTE_PORT"),
                    "prompt": prompt if isinstance(prompt, str) else None,
                }
            )
            await asyncio.sleep(SERVE_S)
            if request.method != "POST" or not isinstance(prompt, str) or not prompt.strip():
                return JsonResponse({"error": 'expected a POST of {"prompt": ...}'}, status=400)
            return JsonResponse({"reply": "ok"})

        from django.views.decorators.csrf import csrf_exempt

        async with ServedView(csrf_exempt(probe), route="chat") as served:
            workdir = tempfile.mkdtemp(prefix="labkit-06-")
            command = [
                sys.executable, "-m", "locust", "-f", str(path), "--headless",
                "--host", served.server.url, "-u", str(USERS), "-r", str(USERS),
                "-t", f"{RUN_S}s", "--only-summary", "--stop-timeout", "0",
                "--exit-code-on-error", "0", "--loglevel", "WARNING",
                "--json-file", str(Path(workdir) / "stats"),
            ]  # fmt: skip
            env = {k: v for k, v in os.environ.items() if k != "LABKIT_LOAD"}
            try:
                # Out of the notebook's folder, so Locust reads no locust.conf or pyproject.
                done = await asyncio.to_thread(
                    subprocess.run,
                    command,
                    cwd=workdir,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    timeout=RUN_S + 30,
                )
            except subprocess.TimeoutExpired:
                raise CheckError(
                    f"Locust ran over {RUN_S + 30} s with your {LOCUSTFILE} and was stopped."
                ) from None
        stderr = done.stderr.decode(errors="replace")
        return seen, locust_counts(Path(workdir) / "stats.json"), stderr


q1 = ExpectedRps()
q2 = TakeHomeLocustfile()
