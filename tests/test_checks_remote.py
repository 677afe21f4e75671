"""The ported checks where the grader runs them: learner names are `Remote`s of a sandbox.

A servant (labkit.grading.servant) serves the answer's namespace on a Unix socket from a thread
with its own event loop, standing in for the sandboxed kernel; the check runs as the checker,
holding only the channel and the mock. The verdicts must match the kernel's.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from labkit.exercises import Status
from labkit.exercises.remote import Channel, RemoteNamespace
from tests.fixtures.answers import lab, namespace_of  # noqa: F401 - lab is a fixture

pytestmark = [
    pytest.mark.usefixtures("lab"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


@contextmanager
def sandbox(namespace: dict, path: str) -> Iterator[Channel]:
    import uvicorn

    from labkit.grading.servant import Servant

    ready, box = threading.Event(), {}

    async def main() -> None:
        servant = Servant(namespace, path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
        config = uvicorn.Config(
            servant, lifespan="off", log_config=None, log_level="warning", access_log=False
        )
        box["server"] = server = uvicorn.Server(config)
        serving = asyncio.ensure_future(server.serve(sockets=[sock]))
        ready.set()
        try:
            await serving
        finally:
            servant.close()

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(10)
    for _ in range(500):  # until uvicorn listens on the socket
        if box["server"].started:
            break
        threading.Event().wait(0.01)
    try:
        yield Channel(path)
    finally:
        box["server"].should_exit = True
        thread.join(10)


def graded(exercise, code: str | None, tmp_path, mock) -> object:
    from labkit.steps.subject import Checker, use_checker

    with sandbox(namespace_of(exercise, code), str(tmp_path / "servant.sock")) as channel:
        use_checker(Checker(channel=channel, mock=mock))
        try:
            return exercise.outcome(RemoteNamespace(channel), log=False)
        finally:
            use_checker(None)


def cases():
    from labkit.steps import step_00, step_01, step_02, step_03, step_06

    return [
        (step_00.q1, None, Status.CORRECT),
        (step_00.q1, "imitates the mock's reply without calling it", Status.INCORRECT),
        (step_01.q2, None, Status.CORRECT),
        (step_01.q2, "an answer right at the timeout counted", Status.INCORRECT),
        (step_02.q1, None, Status.CORRECT),
        (step_02.q1, "the whole old sync body in sync_to_async", Status.INCORRECT),
        (step_02.q1, "shields the LLM call from a hang-up", Status.INCORRECT),
        (step_03.q1, None, Status.CORRECT),
        (step_03.q1, "one client per task", Status.INCORRECT),
        (step_03.q2, None, Status.CORRECT),
        (step_03.q2, "a pool of 5", Status.INCORRECT),
        (step_06.q1, None, Status.CORRECT),
        (step_06.q1, "the median instead of the mean", Status.INCORRECT),
    ]


@pytest.mark.parametrize("case", range(13))
def test_the_checker_reaches_the_same_verdict_through_the_channel(case, tmp_path, mock_llm):
    exercise, name, status = cases()[case]
    code = None if name is None else exercise.wrong_answers[name]
    outcome = graded(exercise, code, tmp_path, mock_llm)
    assert outcome.status is status, outcome.text
