"""Boot the lab inside a notebook kernel: Django, database, corpus and the LLM endpoint."""

from __future__ import annotations

import atexit
import os
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

SETTINGS_MODULE = "labproject.settings"
_mock: Any = None  # the mock LLM this process started, reused when boot() runs again
_endpoint: str | None = None  # the user's own LLM endpoint (LAB_LLM_BASE_URL), if any


@dataclass
class Lab:
    """What `boot()` set up, shown as a short status in the notebook."""

    django_version: str
    database: str
    cache: str
    llm_base_url: str
    llm_model: str
    llm_is_mock: bool
    state_dir: str
    boot_s: float
    first_boot: bool
    mock_base_url: str = ""  # the mock started beside the user's endpoint, if any

    def rows(self) -> list[tuple[str, str]]:
        if self.llm_is_mock:
            llm = f"mock LLM (the kit's) at {self.llm_base_url}, model {self.llm_model}"
        else:
            llm = f"calls go to your endpoint at {self.llm_base_url}, model {self.llm_model}"
            if self.mock_base_url:
                llm += (
                    f"; cells that need the mock's controls use the kit's mock at "
                    f"{self.mock_base_url} (mock_llm())"
                )
        return [
            ("Django", self.django_version),
            ("database", self.database),
            ("cache", self.cache),
            ("LLM", llm),
            ("state dir", self.state_dir),
            ("boot", f"{self.boot_s:.2f} s ({'first' if self.first_boot else 'repeat'})"),
        ]

    def __str__(self) -> str:
        return "\n".join(f"{key:>9}: {value}" for key, value in self.rows())

    def _repr_markdown_(self) -> str:
        lines = ["| lab | |", "|---|---|"]
        lines += [f"| {key} | {value} |" for key, value in self.rows()]
        return "\n".join(lines)


def boot(*, llm_preset: str | None = None, quiet: bool = False) -> Lab:
    """Configure Django for this kernel, migrate, seed and make sure an LLM answers.

    Safe to run again (after a kernel restart or a Binder cull it just redoes what is missing).
    It never sets DJANGO_ALLOW_ASYNC_UNSAFE: in a cell, `await Document.objects.acount()`
    works and a sync ORM call raises SynchronousOnlyOperation, as in an async view.

        lab = boot()
    """
    started = time.perf_counter()
    if os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE"):
        warnings.warn(
            "DJANGO_ALLOW_ASYNC_UNSAFE is set: Django will not stop sync ORM calls in async code, "
            "so this lab's notebooks will not behave like production. Unset it and restart.",
            stacklevel=2,
        )
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", SETTINGS_MODULE)
    llm_is_mock = _ensure_llm(llm_preset)
    from labkit.services import apply_environment

    # Redis/PostgreSQL started by `labkit services up` -> LAB_CACHE_URL/LAB_DATABASE_URL,
    # unless the user set them (or LAB_USE_SERVICES=0).
    apply_environment()

    import django
    from django.apps import apps
    from django.conf import settings

    if not apps.ready:
        django.setup()
    from labkit.queries import install

    install()  # hook database connections before the first one opens
    # A mock restarted after settings were read (a crashed mock, a new preset) has a new URL.
    settings.LLM_BASE_URL = os.environ["LAB_LLM_BASE_URL"]
    first = in_worker_thread(_migrate_and_seed)

    from labproject.state import state_dir

    db = settings.DATABASES["default"]
    lab = Lab(
        django_version=django.get_version(),
        database=f"{db['ENGINE'].rsplit('.', 1)[-1]} {db['NAME']}",
        cache=settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1],
        llm_base_url=settings.LLM_BASE_URL,
        llm_model=settings.LLM_MODEL,
        llm_is_mock=llm_is_mock,
        state_dir=str(state_dir()),
        boot_s=time.perf_counter() - started,
        first_boot=first,
        mock_base_url="" if llm_is_mock or _mock is None else _mock.base_url,
    )
    if not quiet:
        print(lab)
    return lab


def in_worker_thread(fn, *args, **kwargs):
    """Run sync Django code from a cell (the kernel's loop is running) and return its result.

    The thread closes its database connections before it ends, so nothing leaks.
    """

    def call():
        from django.db import connections

        try:
            return fn(*args, **kwargs)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="lab-sync") as pool:
        return pool.submit(call).result()


def mock_llm():
    """Return the mock LLM that boot() started in this process, or None.

    With LAB_LLM_BASE_URL set to a real endpoint, boot() still starts the mock beside it, so
    the cells that configure the mock or read its counters keep working (see `on_mock`).
    """
    return _mock


@contextmanager
def on_mock() -> Iterator[Any]:
    """Send the block's LLM calls to boot()'s mock, even when a real endpoint is configured.

    For cells that set the mock's latency, faults or limits and measure what follows: a real
    endpoint has no such controls. Django's settings and the environment (read by servers the
    block starts) point at the mock, then back.

        with on_mock() as mock:
            mock.configure(latency_s=0.5)
            ...
    """
    from django.conf import settings

    if _mock is None or not _mock.running:
        raise RuntimeError("no mock LLM is running in this kernel: run `lab = boot()` first")
    saved = {name: getattr(settings, name) for name in _MOCK_SETTINGS}
    saved_env = {name: os.environ.get(name) for name in _MOCK_SETTINGS.values()}
    values = {"LLM_BASE_URL": _mock.base_url, "LLM_MODEL": "mock-gpt", "LLM_API_KEY": "sk-lab-mock"}
    for name, value in values.items():
        setattr(settings, name, value)
        os.environ[_MOCK_SETTINGS[name]] = value
    try:
        yield _mock
    finally:
        for name, value in saved.items():
            setattr(settings, name, value)
        for name, env_value in saved_env.items():
            if env_value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = env_value


_MOCK_SETTINGS = {
    "LLM_BASE_URL": "LAB_LLM_BASE_URL",
    "LLM_MODEL": "LAB_LLM_MODEL",
    "LLM_API_KEY": "LAB_LLM_API_KEY",
}


def _ensure_llm(preset: str | None) -> bool:
    """Point LAB_LLM_BASE_URL at a live LLM; start the mock, beside the user's endpoint if any.

    Returns whether the course's calls go to the mock.
    """
    global _mock, _endpoint
    configured = os.environ.get("LAB_LLM_BASE_URL")
    if configured and (_mock is None or configured != _mock.base_url):
        if _is_kit_mock(configured):
            return True  # a mock started outside this kernel (the grader's, a test's)
        _endpoint = configured
    if _mock is None or not _mock.running or preset not in (None, _mock.preset):
        if _mock is not None:
            _mock.stop()
        from labkit.mock_llm import MockLLM

        _mock = MockLLM(preset=preset or "fast").start()
        atexit.register(_mock.stop)
    if _endpoint is not None:
        return False
    os.environ["LAB_LLM_BASE_URL"] = _mock.base_url
    return True


def _is_kit_mock(base_url: str) -> bool:
    """Whether `base_url` is one of the kit's mocks (its health path answers)."""
    import urllib.request

    health = base_url.rstrip("/").removesuffix("/v1") + "/_mock/health"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(health, timeout=2) as response:
            return response.status == 200
    except (OSError, ValueError):
        return False


def _migrate_and_seed() -> bool:
    import fcntl

    from django.core.management import call_command

    from labproject.ai.models import Document
    from labproject.state import state_dir

    # Two kernels booting on one state dir (a grader, a second notebook) must not migrate the
    # same SQLite file at once ("table ... already exists"): the second waits for the first.
    with open(state_dir() / "boot.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        call_command("migrate", verbosity=0, interactive=False)
        first = not Document.objects.exists()
        call_command("seed", verbosity=0)
    return first
