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
# The user's own LLM endpoint, from LAB_LLM_BASE_URL/_MODEL/_API_KEY at the first boot(): the
# settings `on_endpoint()` points a block at.
_endpoint: dict[str, str] | None = None


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
    endpoint_url: str = ""  # the user's own endpoint (LAB_LLM_BASE_URL), if any

    def rows(self) -> list[tuple[str, str]]:
        if not self.llm_is_mock:
            llm = f"calls go to your endpoint at {self.llm_base_url}, model {self.llm_model}"
            if self.mock_base_url:
                llm += (
                    f"; cells that need the mock's controls use the kit's mock at "
                    f"{self.mock_base_url} (mock_llm())"
                )
        elif self.endpoint_url:
            llm = (
                f"the kit's mock at {self.llm_base_url}: this notebook measures latency, faults "
                f"and load, which need the mock's controls; your endpoint {self.endpoint_url} "
                "is used only where a cell says so (`on_endpoint()`, `try_endpoint()`)"
            )
        else:
            llm = f"mock LLM (the kit's) at {self.llm_base_url}, model {self.llm_model}"
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


def boot(*, llm_preset: str | None = None, quiet: bool = False, use_endpoint: bool = False) -> Lab:
    """Configure Django for this kernel, migrate, seed and make sure an LLM answers.

    With your own endpoint configured (LAB_LLM_BASE_URL and friends), the mock still starts
    beside it. `use_endpoint=True` sends the notebook's LLM calls to your endpoint (notebook 00);
    by default they go to the mock, because the notebooks measure latency, faults and load
    through its controls, and `with on_endpoint():` sends one block's calls to yours.

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
    llm_is_mock = _ensure_llm(llm_preset, use_endpoint)
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
    for name, variable in _LLM_SETTINGS.items():
        if os.environ.get(variable):
            setattr(settings, name, os.environ[variable])
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
        endpoint_url="" if _endpoint is None else _endpoint["LLM_BASE_URL"],
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
    if _mock is None or not _mock.running:
        raise RuntimeError("no mock LLM is running in this kernel: run `lab = boot()` first")
    with _pointed_at(_mock_settings()):
        yield _mock


@contextmanager
def on_endpoint() -> Iterator[dict[str, str]]:
    """Send the block's LLM calls to your own endpoint (LAB_LLM_BASE_URL), then back.

    Yields its settings (LLM_BASE_URL, LLM_MODEL, LLM_API_KEY). Raises RuntimeError when no
    endpoint is configured: check `endpoint()` first.

        if endpoint():
            with on_endpoint():
                ...  # this block's views and servers call your model
    """
    if _endpoint is None:
        raise RuntimeError(
            "no endpoint of your own is configured: set LAB_LLM_BASE_URL, LAB_LLM_MODEL and "
            "LAB_LLM_API_KEY before the kernel starts (see notebook 00, section 6)"
        )
    with _pointed_at(_endpoint):
        yield dict(_endpoint)


def endpoint() -> dict[str, str] | None:
    """Your own endpoint's settings (LLM_BASE_URL, LLM_MODEL, LLM_API_KEY), or None."""
    return None if _endpoint is None else dict(_endpoint)


@contextmanager
def _pointed_at(values: dict[str, str]) -> Iterator[None]:
    """Point Django's LLM settings and the environment (read by servers) at `values`, then back."""
    from django.conf import settings

    saved = {name: getattr(settings, name) for name in _LLM_SETTINGS}
    saved_env = {name: os.environ.get(name) for name in _LLM_SETTINGS.values()}
    for name, value in values.items():
        setattr(settings, name, value)
        os.environ[_LLM_SETTINGS[name]] = value
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(settings, name, value)
        for name, env_value in saved_env.items():
            if env_value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = env_value


def _mock_settings() -> dict[str, str]:
    return {"LLM_BASE_URL": _mock.base_url, "LLM_MODEL": "mock-gpt", "LLM_API_KEY": "sk-lab-mock"}


_LLM_SETTINGS = {
    "LLM_BASE_URL": "LAB_LLM_BASE_URL",
    "LLM_MODEL": "LAB_LLM_MODEL",
    "LLM_API_KEY": "LAB_LLM_API_KEY",
}


def _ensure_llm(preset: str | None, use_endpoint: bool) -> bool:
    """Point LAB_LLM_* at a live LLM; start the mock, beside the user's endpoint if any.

    Returns whether the course's calls go to the mock.
    """
    global _mock, _endpoint
    configured = os.environ.get("LAB_LLM_BASE_URL")
    if configured and (_mock is None or configured != _mock.base_url):
        if _is_kit_mock(configured):
            return True  # a mock started outside this kernel (the grader's, a test's)
        _endpoint = {name: os.environ.get(variable, "") for name, variable in _LLM_SETTINGS.items()}
        if not _endpoint["LLM_API_KEY"]:
            _endpoint["LLM_API_KEY"] = os.environ.get("OPENAI_API_KEY", "")
    if _mock is None or not _mock.running or preset not in (None, _mock.preset):
        if _mock is not None:
            _mock.stop()
        from labkit.mock_llm import MockLLM

        _mock = MockLLM(preset=preset or "fast").start()
        atexit.register(_mock.stop)
    if _endpoint is not None and use_endpoint:
        os.environ.update({_LLM_SETTINGS[k]: v for k, v in _endpoint.items()})
        return False
    if _endpoint is None:
        os.environ["LAB_LLM_BASE_URL"] = _mock.base_url
    else:  # away from the user's endpoint: its model and key mean nothing to the mock
        os.environ.update({_LLM_SETTINGS[k]: v for k, v in _mock_settings().items()})
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
