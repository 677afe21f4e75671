"""Boot the lab inside a notebook kernel: Django, database, corpus and the LLM endpoint."""

from __future__ import annotations

import atexit
import os
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

SETTINGS_MODULE = "labproject.settings"
_mock: Any = None  # the mock LLM this process started, reused when boot() runs again


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

    def rows(self) -> list[tuple[str, str]]:
        llm = "mock LLM (the kit's)" if self.llm_is_mock else "your endpoint"
        return [
            ("Django", self.django_version),
            ("database", self.database),
            ("cache", self.cache),
            ("LLM", f"{llm} at {self.llm_base_url}, model {self.llm_model}"),
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
    """Return the mock LLM that boot() started in this process, or None."""
    return _mock


def _ensure_llm(preset: str | None) -> bool:
    """Point LAB_LLM_BASE_URL at a live LLM; start the mock unless the user chose an endpoint."""
    global _mock
    if os.environ.get("LAB_LLM_BASE_URL") and _mock is None:
        return False  # the user's own endpoint (or a mock started outside this kernel)
    if _mock is not None and _mock.running and preset in (None, _mock.preset):
        return True
    if _mock is not None:
        _mock.stop()
    from labkit.mock_llm import MockLLM

    _mock = MockLLM(preset=preset or "fast").start()
    atexit.register(_mock.stop)
    os.environ["LAB_LLM_BASE_URL"] = _mock.base_url
    return True


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
