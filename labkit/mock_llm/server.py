"""`MockLLM`: the mock as its own process on a real TCP port, driven from Python.

    with MockLLM(preset="fast") as llm:
        client = openai.OpenAI(base_url=llm.base_url, api_key="any")
        ...
        print(llm.stats()["connections_total"])

It runs `python -m labkit mock-llm` as a subprocess, reads the base URL from the first line of its
stdout, and waits until it answers. Admin calls go through urllib (standard library only), each on
its own short connection; the server leaves those out of its connection counts.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Any

from labkit.mock_llm.service import ADMIN_TOKEN_HEADER, ENV_ADMIN_TOKEN, ENV_REPLY_SALT

# urllib would route even 127.0.0.1 through $http_proxy if one is set; the mock is local.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


class MockLLMError(RuntimeError):
    """The mock could not start, or refused an admin call; the message says why."""


class MockLLM:
    """Start, query and stop a mock LLM server process.

    Settings are those of `POST /_mock/config` (see `labkit mock-llm --help`), e.g.
    `MockLLM(preset="fast", rpm=60, faults={"503": 0.1})`.

    >>> with MockLLM(preset="instant") as llm:
    ...     llm.base_url  # doctest: +SKIP
    'http://127.0.0.1:41023/v1'
    """

    def __init__(
        self,
        preset: str = "fast",
        *,
        port: int = 0,
        log_level: str = "warning",
        startup_timeout_s: float = 30.0,
        admin_token: str | None = None,
        reply_salt: str | None = None,
        **settings: Any,
    ) -> None:
        self.preset = preset
        self.port = port
        self.log_level = log_level
        self.startup_timeout_s = startup_timeout_s
        self.settings = settings
        # Set both to lock the server (see MockService): the grader's mock, out of reach.
        self.admin_token = admin_token
        self.reply_salt = reply_salt
        self.url = ""
        self.base_url = ""
        self._process: subprocess.Popen[str] | None = None
        self._attached = False
        self._stderr: IO[bytes] | None = None
        self._reader: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def running(self) -> bool:
        if self._attached:
            return True
        return self._process is not None and self._process.poll() is None

    @classmethod
    def attach(cls, base_url: str, *, admin_token: str | None = None) -> MockLLM:
        """A handle on a mock that another process runs (the grader's, from its checker):
        the admin calls work, `start()` and `stop()` do nothing."""
        llm = cls(admin_token=admin_token)
        llm.base_url = base_url
        llm.url = base_url.removesuffix("/v1")
        llm.port = int(llm.url.rsplit(":", 1)[1])
        llm._attached = True
        return llm

    def __repr__(self) -> str:
        state = f"{self.base_url} running" if self.running else "stopped"
        return f"<MockLLM preset={self.preset!r} {state}>"

    def __enter__(self) -> MockLLM:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> MockLLM:
        """Launch the server and wait until it answers; raise MockLLMError if it cannot."""
        if self.running:
            return self
        command = [sys.executable, "-m", "labkit", "mock-llm", "--port", str(self.port)]
        command += ["--preset", self.preset, "--log-level", self.log_level]
        command += ["--exit-with-parent", str(os.getpid())]
        if self.settings:
            command += ["--settings", json.dumps(self.settings)]
        env = dict(os.environ)
        # The child must import this very labkit, even from a clone that is not installed.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_PACKAGE_ROOT, env.get("PYTHONPATH")]))
        env["PYTHONUNBUFFERED"] = "1"
        for key, value in ((ENV_ADMIN_TOKEN, self.admin_token), (ENV_REPLY_SALT, self.reply_salt)):
            env.pop(key, None)
            if value:
                env[key] = value
        # Append mode: the child's writes land at the end even after we seek back to read.
        self._stderr = tempfile.TemporaryFile(mode="a+b")
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
            text=True,
        )
        try:
            first = self._first_line(self._process)
            if not first.startswith("http://"):
                raise MockLLMError(self._startup_failure(first))
            self.base_url = first
            self.url = first.removesuffix("/v1")
            self.port = int(self.url.rsplit(":", 1)[1])
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def _first_line(self, process: subprocess.Popen[str]) -> str:
        lines: queue.Queue[str] = queue.Queue()

        def read() -> None:
            assert process.stdout is not None
            try:
                lines.put(process.stdout.readline().strip())
                # Keep draining so the server can never block on a full pipe.
                for _ in process.stdout:
                    pass
            except (OSError, ValueError):  # the pipe was closed by stop()
                lines.put("")

        self._reader = threading.Thread(target=read, name="mock-llm-stdout", daemon=True)
        self._reader.start()
        try:
            return lines.get(timeout=self.startup_timeout_s)
        except queue.Empty:
            raise MockLLMError(
                f"the mock LLM printed no URL within {self.startup_timeout_s:g} s"
                f"{self._stderr_tail()}"
            ) from None

    def _startup_failure(self, first_line: str) -> str:
        assert self._process is not None
        try:
            code = self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        tail = self._stderr_tail()
        if tail:
            return f"the mock LLM did not start (exit code {code}){tail}"
        return f"the mock LLM did not start (exit code {code}); its first line was {first_line!r}"

    def stderr_text(self) -> str:
        """Return what the server has logged so far (warnings and errors only, by default)."""
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def _stderr_tail(self) -> str:
        lines = self.stderr_text().strip().splitlines()
        return (": " + " / ".join(lines[-5:])) if lines else ""

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while True:
            try:
                self._call("GET", "/_mock/health", timeout=1.0)
                return
            except (MockLLMError, OSError):
                if not self.running or time.monotonic() > deadline:
                    raise MockLLMError(
                        f"the mock LLM at {self.base_url} did not become healthy"
                        f"{self._stderr_tail()}"
                    ) from None
                time.sleep(0.05)

    def stop(self) -> None:
        """Terminate the server and wait for it; safe to call twice."""
        process, self._process = self._process, None
        if process is not None:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            if self._reader is not None:
                self._reader.join(timeout=2)  # it ends at EOF, now that the process is gone
                self._reader = None
            if process.stdout is not None:
                process.stdout.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    # Admin calls
    def stats(self) -> dict[str, Any]:
        """Return the server's counters (GET /_mock/stats)."""
        return self._call("GET", "/_mock/stats")

    def reset(self, config: bool = False) -> dict[str, Any]:
        """Zero the counters and refill rate limits; `config=True` also restores start settings."""
        return self._call("POST", "/_mock/reset", {"config": config})

    def configure(self, **settings: Any) -> dict[str, Any]:
        """Change settings while the server runs, e.g. `configure(preset="slow", rpm=30)`."""
        config = self._call("POST", "/_mock/config", settings)
        self.preset = config["preset"]
        return config

    def config(self) -> dict[str, Any]:
        """Return the settings in force (GET /_mock/config)."""
        return self._call("GET", "/_mock/config")

    def _call(
        self, method: str, path: str, body: Any = None, timeout: float = 10.0
    ) -> dict[str, Any]:
        if not self.running:
            raise MockLLMError("the mock LLM is not running; call start() or use `with MockLLM()`")
        data = None if body is None else json.dumps(body).encode()
        headers = {"content-type": "application/json"}
        if self.admin_token:
            headers[ADMIN_TOKEN_HEADER] = self.admin_token
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with _opener.open(request, timeout=timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            with error:
                detail = json.loads(error.read() or b"{}").get("error", {}).get("message", "")
            raise MockLLMError(f"{method} {path} failed ({error.code}): {detail}") from None
