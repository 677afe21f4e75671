"""The grading sandbox's side of the checker channel: the learner's definitions, served.

After the learner's cells have run, the sandbox's runner adds one cell that awaits
`serve(path)`: an HTTP server on a Unix socket, on the kernel's own event loop, that answers the
checker (outside the sandbox) until it says it is done. It does nothing but what the checker
asks, on data the checker chooses:

    POST /__labkit__/hello       {}                          which episode this servant serves
    POST /__labkit__/info        {"names": [...]}            what each name is, and its source
    POST /__labkit__/call        {"name", "args", "kwargs"}   call a definition, JSON in and out
    POST /__labkit__/experiment  {"name", "target", "params"} run a registered experiment on it
    POST /__labkit__/serve       {"route", "name", "settings"} a view behind a route, on a fresh
                                                              server; answers its socket's name
    POST /__labkit__/unserve     {"route"}
    GET  /__labkit__/log                                      what Django logged since the last read
    POST /__labkit__/done                                     stop serving; the cell ends
    anything else                                             the project's ASGI application

Nothing here is trusted by the checker: the learner's code runs in this process and may change
any of it. The checker judges only evidence the sandbox cannot forge (its own HTTP answers, the
grader's mock LLM, the database as the grader sees it).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import socket
import textwrap
from typing import Any

from labkit.exercises.namespace import user_namespace

PREFIX = "/__labkit__/"
# Settings a check may change for the view it serves (never the LLM's address or key).
FORWARDED_SETTINGS = frozenset({"LLM_TIMEOUT_S", "LLM_MAX_RETRIES", "LLM_MODEL"})
MAX_BODY = 1_000_000  # a request from the checker is small; anything bigger is refused
MAX_TEXT = 4_000  # error texts and sources sent back are cut to this


def describe(value: Any) -> dict[str, Any]:
    """What the checker may know of a definition: its kind, its source, a JSON value."""
    if inspect.iscoroutinefunction(value):
        kind = "async function"
    elif inspect.isasyncgenfunction(value):
        kind = "async generator function"
    elif inspect.isclass(value):
        kind = "class"
    elif callable(value):
        kind = "function"
    else:
        kind = "value"
    try:
        source = textwrap.dedent(inspect.getsource(value)) if kind != "value" else None
    except (OSError, TypeError):
        source = None
    described: dict[str, Any] = {"kind": kind, "type": type(value).__name__, "source": source}
    if kind == "value":
        described["value"] = jsonable(value)
    return described


def jsonable(value: Any) -> Any:
    """`value` as JSON data; what JSON cannot hold becomes {"__type__": name, "repr": ...}."""
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError, RecursionError):
        pass
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    return {"__type__": type(value).__name__, "repr": _cut(repr(value))}


def _close_connections() -> None:
    import sys

    if "django.db" in sys.modules:
        from django.apps import apps

        if apps.ready:
            from django.db import connections

            connections.close_all()


def error_of(exc: BaseException) -> dict[str, str]:
    """The learner's exception as data: type, message, and where in their code it was raised."""
    import traceback

    from labkit.exercises.outcomes import _LIBRARY_DIRS

    where = ""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if not frame.filename.startswith(_LIBRARY_DIRS):
            where = f"in `{frame.name}`, line {frame.lineno} of its cell"
            break
    return {"type": type(exc).__name__, "message": _cut(str(exc)), "where": where}


async def invoke(fn: Any, args: list[Any], kwargs: dict[str, Any]) -> Any:
    """Call `fn` as the kernel would: await a coroutine function, run a sync one in a thread
    that gives its database connections back afterwards (a pooled connection left open by
    every call would exhaust the pool)."""
    if inspect.iscoroutinefunction(fn):
        return await fn(*args, **kwargs)

    def closing() -> Any:
        try:
            return fn(*args, **kwargs)
        finally:
            _close_connections()

    result = await asyncio.to_thread(closing)
    if inspect.isawaitable(result):
        return await result
    return result


class Servant:
    """The ASGI app behind the socket: the control endpoints, then the project."""

    def __init__(self, namespace: dict[str, Any], path: str, episode: str = "grade") -> None:
        from labkit.steps.probes import django_log
        from labproject.asgi import application

        self.namespace = namespace
        self.path = path
        self.episode = episode
        self._served = 0
        self._check_loop: asyncio.AbstractEventLoop | None = None
        self.application = application
        self.done = asyncio.Event()
        self._log_context = django_log()
        self.log = self._log_context.__enter__()
        self._log_read = 0
        self._overrides: dict[str, Any] = {}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith(PREFIX):
            body = await _read_body(receive)
            status, answer = await self.control(scope["path"][len(PREFIX) :], body)
            data = json.dumps(answer).encode()
            headers = [(b"content-type", b"application/json")]
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": data})
            return
        await self.application(scope, receive, send)

    async def control(self, action: str, body: bytes | None) -> tuple[int, Any]:
        if body is None:
            return 413, {"error": "request too large"}
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            return 400, {"error": "not JSON"}
        handler = getattr(self, f"_{action}", None)
        if handler is None:
            return 404, {"error": f"no action {action!r}"}
        try:
            return 200, await handler(request)
        except Exception as exc:  # noqa: BLE001 - reported to the checker, which decides
            return 200, {"ok": False, "error": error_of(exc)}

    async def _hello(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "episode": self.episode}

    async def _info(self, request: dict[str, Any]) -> dict[str, Any]:
        names = [str(name) for name in request.get("names", [])]
        return {
            name: {"defined": True, **describe(self.namespace[name])}
            if name in self.namespace
            else {"defined": False}
            for name in names
        }

    async def _call(self, request: dict[str, Any]) -> dict[str, Any]:
        fn = self.namespace[str(request["name"])]
        args, kwargs = list(request.get("args", [])), dict(request.get("kwargs", {}))
        return await self._run(invoke(fn, args, kwargs), request)

    async def _experiment(self, request: dict[str, Any]) -> dict[str, Any]:
        from labkit.steps.subject import find_experiment

        run = find_experiment(str(request["name"]))
        target = self.namespace[str(request["target"])]
        return await self._run(run(target, **dict(request.get("params", {}))), request)

    async def _run(self, work: Any, request: dict[str, Any]) -> dict[str, Any]:
        """Await `work` where a kernel check would: on the kernel's loop for `kernel_loop`
        exercises, else on one loop of the check's own, made after the LLM settings changed
        (as `q.check()` runs `evaluate` on a fresh loop), so per-loop clients are made anew."""
        try:
            if request.get("kernel_loop"):
                value = await work
            else:
                value = await asyncio.wrap_future(
                    asyncio.run_coroutine_threadsafe(work, self.check_loop())
                )
        except Exception as exc:  # noqa: BLE001 - the learner's exception, reported
            return {"ok": False, "error": error_of(exc)}
        return {"ok": True, "value": jsonable(value)}

    def check_loop(self) -> asyncio.AbstractEventLoop:
        if self._check_loop is None:
            import threading

            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, daemon=True, name="labkit-check")
            thread.start()
            self._check_loop = loop
        return self._check_loop

    async def _serve(self, request: dict[str, Any]) -> dict[str, Any]:
        """Put a view behind a route on a fresh server, with its own event loop and socket.

        As `ServedView` does in a kernel: the view's per-loop clients are made anew, and take
        the settings the check asked for (e.g. a short LLM timeout).
        """
        from contextlib import ExitStack

        from django.test import override_settings

        from labproject import routes

        route, view = str(request["route"]), self.namespace[str(request["name"])]
        await self._unserve({"route": route})
        changes = {
            key: value
            for key, value in dict(request.get("settings", {})).items()
            if key in FORWARDED_SETTINGS
        }
        stack = ExitStack()
        stack.enter_context(routes.override(route, view))
        stack.enter_context(override_settings(**changes))
        self._served += 1
        name = f"served-{self._served}.sock"
        path = os.path.join(os.path.dirname(self.path), name)
        server = _ThreadServer(self.application, path)
        stack.callback(server.stop)
        self._overrides[route] = stack
        await asyncio.to_thread(server.start)
        return {"ok": True, "value": {"socket": name}}

    async def _unserve(self, request: dict[str, Any]) -> dict[str, Any]:
        stack = self._overrides.pop(str(request["route"]), None)
        if stack is not None:
            await asyncio.to_thread(stack.close)
        return {"ok": True}

    async def _log(self, request: dict[str, Any]) -> dict[str, Any]:
        lines, self._log_read = self.log[self._log_read :], len(self.log)
        return {"ok": True, "lines": [_cut(line, 300) for line in lines[-50:]]}

    async def _done(self, request: dict[str, Any]) -> dict[str, Any]:
        self.done.set()
        return {"ok": True}

    def close(self) -> None:
        for stack in self._overrides.values():
            stack.close()
        if self._check_loop is not None:
            self._check_loop.call_soon_threadsafe(self._check_loop.stop)
        self._log_context.__exit__(None, None, None)


class _ThreadServer:
    """uvicorn on a Unix socket, on its own loop in a thread (the kernel-side ASGIServer's way)."""

    def __init__(self, app: Any, path: str) -> None:
        import uvicorn

        self.path = path
        # Idle connections stay open for the whole check: a server closing one while the
        # checker reuses it (through the relay, which passes the close on late) would be read
        # as "server disconnected" by the checker.
        config = uvicorn.Config(
            app, lifespan="off", interface="asgi3", log_config=None, log_level="warning",
            access_log=False, timeout_graceful_shutdown=2, timeout_keep_alive=600,
        )  # fmt: skip
        self.server = uvicorn.Server(config)
        self.thread: Any = None

    def start(self, timeout_s: float = 10.0) -> None:
        import threading
        import time

        if os.path.exists(self.path):
            os.unlink(self.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(self.path)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [sock]}, daemon=True,
            name="labkit-served",
        )  # fmt: skip
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(5)
            if self.thread.is_alive():
                self.server.force_exit = True
                self.thread.join(1)
        if os.path.exists(self.path):
            os.unlink(self.path)


ENV_SOCKET = "LAB_SERVANT_SOCKET"
ENV_LLM_URL = "LAB_GRADER_LLM_URL"


def cell_source(episode: str) -> str:
    """The cell the grader adds where the checker should take over (awaited in the kernel)."""
    return (
        "import labkit.grading.servant as __labkit_servant__\n"
        f"await __labkit_servant__.serve(episode={episode!r})"
    )


async def serve(
    path: str | None = None,
    *,
    episode: str = "grade",
    llm_base_url: str | None = None,
    llm_api_key: str | None = "graded",
    timeout_s: float = 6 * 3600.0,
) -> None:
    """Answer the checker on the Unix socket `path` until it is done (await it in a cell).

    The socket and the grader's LLM (reached through the sandbox's relay) come from the
    runner's environment unless given.
    """
    import uvicorn

    from labkit.boot import boot

    path = path or os.environ[ENV_SOCKET]
    llm_base_url = llm_base_url or os.environ.get(ENV_LLM_URL)

    # A notebook that lost its setup cell still gets a configured, migrated project.
    await asyncio.to_thread(boot, quiet=True)
    from django.conf import settings

    saved = (settings.LLM_BASE_URL, settings.LLM_API_KEY)
    if llm_base_url:
        # The learner's code reads the LLM's address from settings at call time: point it at
        # the grader's mock (through the sandbox's relay), whose counters the checker reads.
        # Put back afterwards: the notebook's own cells (and q.check()) use the kernel's mock.
        settings.LLM_BASE_URL = llm_base_url
    if llm_api_key:
        settings.LLM_API_KEY = llm_api_key
    servant = Servant(user_namespace(), path, episode)
    if os.path.exists(path):
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    config = uvicorn.Config(
        servant,
        lifespan="off",
        interface="asgi3",
        log_config=None,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    try:
        await asyncio.wait_for(servant.done.wait(), timeout_s)
    finally:
        settings.LLM_BASE_URL, settings.LLM_API_KEY = saved
        server.should_exit = True
        await asyncio.wait([task], timeout=5)
        servant.close()


async def _read_body(receive: Any) -> bytes | None:
    chunks, size = [], 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


def _cut(text: str, limit: int = MAX_TEXT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
