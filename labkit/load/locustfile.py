"""The locustfile `labkit.load` hands to a Locust subprocess; never import it in the kernel.

Importing Locust patches the standard library with gevent, which hangs a Jupyter kernel, so
this file is passed to `python -m locust -f` by path and talks to the kernel through files:
its settings arrive as JSON in the `LABKIT_LOAD` environment variable, and every request is
written as one JSON line to `<timings_dir>/timings-<pid>.jsonl`, which the runner tails.

Record fields: `t` start (epoch s), `ms` response time, `status`, `kind` (None when it
succeeded, else "timeout", "refused", "connection", "http_500", ...), `bytes`, `name`, and
`rep` (1 when the prompt was drawn from the repeated set) and `lag_ms` (open loop: how late
the request left compared with its scheduled arrival). Event lines carry `e` instead:
`start`, `stop`, `drop` (open loop: an arrival not sent because the in-flight cap was full),
`arrivals` (open loop: counts when a generator stops) and `flight` (`n` requests of process
`p` sent and not yet answered, written with every flush, for the live chart).
"""

from __future__ import annotations

import itertools
import json
import os
import random
import socket
import time
from typing import Any

import gevent
import gevent.pool
from gevent.timeout import Timeout
from locust import between, constant, events, task
from locust.contrib.fasthttp import FastHttpUser

CONFIG: dict[str, Any] = json.loads(os.environ.get("LABKIT_LOAD", "{}"))
SCENARIO: dict[str, Any] = CONFIG.get("scenario", {"method": "GET", "path": "/", "name": "/"})
TIMEOUT_S = float(CONFIG.get("timeout_s", 30))
# An arrival that leaves later than this after its slot means the generator lost its clock.
LATE_MS = float(CONFIG.get("late_ms", 100))
# Buffered writes flushed on a timer: a flush per request would cost the generator CPU.
FLUSH_EVERY_S = 0.25
JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}


class _Flight:
    """Requests this process has sent and not yet seen answered."""

    def __init__(self) -> None:
        self.n = 0

    def __enter__(self) -> None:
        self.n += 1

    def __exit__(self, *exc: object) -> None:
        self.n -= 1


FLIGHT = _Flight()


class _Sink:
    """Append JSON lines to this process's timings file, flushed a few times a second."""

    def __init__(self) -> None:
        self.file: Any = None

    def write(self, record: dict[str, Any]) -> None:
        if self.file is None:
            directory = CONFIG.get("timings_dir")
            if not directory:
                return
            path = os.path.join(directory, f"timings-{os.getpid()}.jsonl")
            self.file = open(path, "a", encoding="utf-8", buffering=1 << 16)  # noqa: SIM115
            gevent.spawn(self._flush_forever)
        self.file.write(json.dumps(record, separators=(",", ":")) + "\n")

    def flush(self) -> None:
        if self.file is not None:
            self.file.flush()

    def _flush_forever(self) -> None:
        while True:
            gevent.sleep(FLUSH_EVERY_S)
            self.write({"e": "flight", "t": time.time(), "p": os.getpid(), "n": FLIGHT.n})
            self.flush()


SINK = _Sink()


def error_kind(exception: BaseException | None, status: int) -> str | None:
    """Name a failure the way results group them: by status, else by what broke."""
    if exception is None:
        return None
    if status >= 400:
        return f"http_{status}"
    text = str(exception).lower()
    if isinstance(exception, Timeout | TimeoutError | socket.timeout) or "timed out" in text:
        return "timeout"
    if isinstance(exception, ConnectionRefusedError) or "refused" in text:
        return "refused"
    if isinstance(exception, ConnectionError | OSError):
        return "connection"
    return type(exception).__name__


@events.request.add_listener
def _record(
    request_type,
    name,
    response_time,
    response_length,
    response=None,
    context=None,
    exception=None,
    start_time=None,
    **kwargs,
) -> None:
    status = int(getattr(response, "status_code", 0) or 0)
    context = context or {}
    record: dict[str, Any] = {
        "t": round(start_time or time.time() - response_time / 1000, 6),
        "ms": round(float(response_time), 3),
        "status": status,
        "kind": error_kind(exception, status),
        "bytes": int(response_length or 0),
        "name": name,
    }
    if context.get("rep"):
        record["rep"] = 1
    if "due" in context:
        record["lag_ms"] = round(max(0.0, (record["t"] - context["due"]) * 1000), 3)
    SINK.write(record)


@events.test_start.add_listener
def _on_start(environment, **kwargs) -> None:
    SINK.write({"e": "start", "t": time.time()})


@events.test_stop.add_listener
def _on_stop(environment, **kwargs) -> None:
    SINK.write({"e": "stop", "t": time.time()})
    SINK.flush()


@events.quitting.add_listener
def _on_quit(environment, **kwargs) -> None:
    SINK.flush()


class _Requests:
    """Build each request of the scenario: path ids in turn, prompts varied or repeated."""

    def __init__(self) -> None:
        self.counter = itertools.count()
        self.random = random.Random(f"{os.getpid()}-{id(self)}")
        ids = SCENARIO.get("ids")
        self.ids = itertools.cycle(range(ids[0], ids[1] + 1)) if ids else None
        self.offset = self.random.randrange(1_000_000)

    def next(self) -> tuple[str, dict[str, Any], bool]:
        """Return (path, request kwargs, repeated) for the next request."""
        n = next(self.counter)
        path = SCENARIO["path"]
        if self.ids is not None:
            path = path.replace("{id}", str(next(self.ids)))
        kwargs: dict[str, Any] = {"name": SCENARIO.get("name") or SCENARIO["path"]}
        repeated = False
        prompts = SCENARIO.get("prompts")
        if prompts:
            hot = max(1, int(SCENARIO.get("hot_prompts", 5)))
            if self.random.random() < float(SCENARIO.get("repeat_share", 0.0)):
                repeated = True
                prompt = prompts[self.random.randrange(min(hot, len(prompts)))]
            else:
                # A suffix no other request shares, so a cache can never answer it.
                base = prompts[(self.offset + n) % len(prompts)]
                prompt = f"{base} (request {os.getpid()}-{self.offset}-{n})"
            body: Any = {"prompt": prompt}
        else:
            body = SCENARIO.get("body")
        if body is not None:
            # Bytes, not json=: geventhttpclient then sends headers and body in one write,
            # where two small writes would stall ~40 ms on Nagle's algorithm and delayed ACKs.
            kwargs["data"] = json.dumps(body).encode()
            kwargs["headers"] = JSON_HEADERS
        return path, kwargs, repeated


def _wait_time():
    wait = CONFIG.get("wait_s", 0)
    if isinstance(wait, list | tuple):
        return between(float(wait[0]), float(wait[1]))
    return constant(float(wait or 0))


class ClosedUser(FastHttpUser):
    """A closed-loop user: send, wait for the answer, pause, send again."""

    wait_time = _wait_time()
    network_timeout = TIMEOUT_S
    connection_timeout = TIMEOUT_S

    def on_start(self) -> None:
        self.requests = _Requests()

    @task
    def send(self) -> None:
        path, kwargs, repeated = self.requests.next()
        with FLIGHT:
            self.client.request(SCENARIO["method"], path, context={"rep": repeated}, **kwargs)


class OpenUser(FastHttpUser):
    """An open-loop generator: requests leave on a fixed clock whether or not answers came back.

    Each process runs one of these. Generator `i` of `n` owns arrival slots i, i+n, i+2n...
    of a clock ticking `arrival_rate` times a second, and sends each from a gevent pool capped
    at `max_in_flight`; an arrival finding the pool full is dropped and recorded, never queued
    inside the generator, because a queue there would hide the server's queue.
    """

    wait_time = constant(0)
    network_timeout = TIMEOUT_S
    connection_timeout = TIMEOUT_S
    # One connection per in-flight request, so the client pool never becomes the queue.
    concurrency = int(CONFIG.get("max_in_flight", 1000))

    def on_start(self) -> None:
        self.requests = _Requests()

    @task
    def run_clock(self) -> None:
        rate = float(CONFIG["arrival_rate"])
        generators = max(1, int(CONFIG.get("generators", 1)))
        index = max(0, int(getattr(self.environment.runner, "worker_index", 0) or 0))
        pool = gevent.pool.Pool(int(CONFIG.get("max_in_flight", 1000)))
        counts = {"scheduled": 0, "sent": 0, "dropped": 0, "late": 0, "unfinished": 0}
        origin = time.time()
        try:
            for k in itertools.count():
                due = origin + (k * generators + index % generators) / rate
                delay = due - time.time()
                if delay > 0:
                    gevent.sleep(delay)
                counts["scheduled"] += 1
                if pool.full():
                    counts["dropped"] += 1
                    SINK.write({"e": "drop", "t": round(due, 6)})
                    continue
                if (time.time() - due) * 1000 > LATE_MS:
                    counts["late"] += 1
                counts["sent"] += 1
                pool.spawn(self._send, due)
        finally:
            # Locust kills this greenlet when the run ends; whatever is still in flight is
            # an arrival the server never answered in time.
            counts["unfinished"] = len(pool)
            SINK.write({"e": "arrivals", "t": time.time(), **counts})
            SINK.flush()
            pool.kill(block=False)

    def _send(self, due: float) -> None:
        path, kwargs, repeated = self.requests.next()
        with FLIGHT:
            self.client.request(
                SCENARIO["method"], path, context={"rep": repeated, "due": due}, **kwargs
            )
