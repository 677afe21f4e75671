"""The grader's checker: a process that judges one submission and never runs its code.

    python -I -m labkit.grading.checker < spec.json > outcomes.json

Started by the grader outside the sandbox, once the sandbox's servant answers. It configures
Django on the submission's database (as the grader sees it), takes the grader's locked mock LLM
and, when there is one, the PostgreSQL witness, then runs each exercise's `evaluate` against
`Remote` names. Whatever the sandbox answers is data: no pickle, no import, no eval of it.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from typing import Any


def configure(spec: dict[str, Any]) -> None:
    """Django for the submission's database; the LLM settings point at the grader's mock."""
    os.environ["DJANGO_SETTINGS_MODULE"] = "labproject.settings"
    os.environ["LAB_STATE_DIR"] = spec["state_dir"]
    os.environ["LAB_LLM_BASE_URL"] = spec["mock"]["base_url"]
    os.environ["LAB_LLM_API_KEY"] = "graded"
    os.environ["LAB_USE_SERVICES"] = "0"
    os.environ.pop("LAB_CACHE_URL", None)
    if spec.get("database_url"):
        os.environ["LAB_DATABASE_URL"] = spec["database_url"]
    else:
        os.environ.pop("LAB_DATABASE_URL", None)
    import django

    django.setup()
    from labkit.queries import install

    install()


def check(spec: dict[str, Any], out: Any) -> None:
    """Judge every episode of the spec in turn, writing one JSON line per episode to `out`.

    An episode is a moment the sandbox's notebook hands over (a servant cell with that label):
    the graded notebook has one; `labkit verify` has one per variant of every exercise.
    """
    from labkit.exercises.registry import find
    from labkit.exercises.remote import Channel, RemoteNamespace
    from labkit.steps.subject import Checker, use_checker

    configure(spec)
    channel = Channel(spec["servant"], timeout_s=float(spec.get("call_timeout_s", 120)))
    database = None
    if spec.get("witness"):
        from labkit.grading.witness import Witness

        database = Witness(spec["witness"])
    from labkit.mock_llm import MockLLM

    mock = MockLLM.attach(spec["mock"]["base_url"], admin_token=spec["mock"]["admin_token"])
    judge = Checker(channel=channel, mock=mock, database=database)
    use_checker(judge)
    deadline = time.monotonic() + float(spec.get("budget_s", 3600))
    for episode in spec["episodes"]:
        label = episode["label"]
        if not _wait_for(channel, label, deadline):
            _emit(out, {"label": label, "error": "the notebook never reached this point"})
            return
        outcomes = []
        for exercise_id in episode["exercises"]:
            exercise = find(exercise_id)
            judge.kernel_loop = exercise.kernel_loop
            outcome = exercise.outcome(RemoteNamespace(channel), log=False)
            outcomes.append(outcome.to_json())
        _emit(out, {"label": label, "outcomes": outcomes})
        with contextlib.suppress(Exception):
            channel.post("done", {}, 5)
    if database is not None:
        database.close()


def _wait_for(channel: Any, label: str, deadline: float) -> bool:
    """Wait until the sandbox's servant serves episode `label`."""
    from labkit.exercises.remote import ChannelError

    while time.monotonic() < deadline:
        if os.path.exists(channel.path) and not os.path.islink(channel.path):
            try:
                answer = channel.post("hello", {}, 5)
                if isinstance(answer, dict) and answer.get("episode") == label:
                    return True
            except ChannelError:
                pass
        time.sleep(0.2)
    return False


def _emit(out: Any, item: dict[str, Any]) -> None:
    out.write(json.dumps(item) + "\n")
    out.flush()


def _exit_with_parent() -> None:
    """A checker whose grader is gone has no one to report to: end with it."""
    import threading

    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="labkit-parent").start()


def main() -> int:
    _exit_with_parent()
    spec = json.loads(sys.stdin.read())
    # A file of the grader's, not stdout: a check's stray print must not garble the answer.
    with open(spec["out"], "a") as out:
        try:
            check(spec, out)
        except Exception as exc:  # noqa: BLE001 - the grader reports it per exercise
            _emit(out, {"error": f"{type(exc).__name__}: {exc}"[:1000]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
