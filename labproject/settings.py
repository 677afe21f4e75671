"""Settings of the lab's Django project, read from environment variables with safe defaults.

| variable            | default                                  |
|---------------------|------------------------------------------|
| LAB_DATABASE_URL    | SQLite file `db.sqlite3` in the state dir |
| LAB_DB_POOL_MAX     | 10 (PostgreSQL pool size)                |
| LAB_DB_POOL         | 1; 0: no pool, a connection per request  |
| LAB_CACHE_URL       | LocMem; `redis://…` → Django's RedisCache |
| LAB_LLM_BASE_URL    | http://127.0.0.1:8400/v1 (the mock LLM)  |
| LAB_LLM_API_KEY     | OPENAI_API_KEY, else a placeholder       |
| LAB_LLM_MODEL       | `mock-gpt`                               |
| LAB_LLM_TIMEOUT_S   | 30                                       |
| LAB_LLM_MAX_RETRIES | 2                                        |
| LAB_LLM_MAX_TOKENS  | 128 (the reply budget of every LLM call) |
| LAB_ALLOWED_HOSTS   | none beyond loopback (comma-separated)   |
| LAB_DEBUG           | off                                      |
"""

from __future__ import annotations

import os

import dj_database_url

from labproject.state import secret_key, state_dir

STATE_DIR = state_dir()
SECRET_KEY = secret_key()
DEBUG = os.environ.get("LAB_DEBUG", "").lower() in {"1", "true", "yes", "on"}
# Loopback names only; behind jupyter-server-proxy on a hub, add the hub's host name(s).
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]", "testserver"] + [
    host.strip() for host in os.environ.get("LAB_ALLOWED_HOSTS", "").split(",") if host.strip()
]

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django_tasks_db",
    "labproject.ai",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
]
ROOT_URLCONF = "labproject.urls"
WSGI_APPLICATION = "labproject.wsgi.application"
ASGI_APPLICATION = "labproject.asgi.application"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"
TEMPLATES: list[dict] = []


def _database() -> dict:
    url = os.environ.get("LAB_DATABASE_URL")
    if not url:
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": STATE_DIR / "db.sqlite3",
            "OPTIONS": {
                # WAL lets readers run beside one writer; IMMEDIATE takes the write lock at
                # BEGIN so two writers queue on the busy timeout instead of failing with
                # "database is locked" when a read transaction tries to upgrade.
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 30,
            },
        }
    config = dj_database_url.parse(url, conn_max_age=0)
    # LAB_DB_POOL=0: a connection per request, no pool (the grader's witness counts
    # connections at the server, where a pool's idle connections would hide a held one).
    pooled = os.environ.get("LAB_DB_POOL", "1") != "0"
    if config["ENGINE"] == "django.db.backends.postgresql" and pooled:
        # psycopg's pool requires CONN_MAX_AGE=0 (Django raises ImproperlyConfigured otherwise).
        config["CONN_MAX_AGE"] = 0
        config.setdefault("OPTIONS", {})["pool"] = {
            "min_size": 1,
            "max_size": int(os.environ.get("LAB_DB_POOL_MAX", "10")),
            "timeout": float(os.environ.get("LAB_DB_POOL_TIMEOUT_S", "10")),
        }
    return config


def _cache() -> dict:
    url = os.environ.get("LAB_CACHE_URL")
    if not url or url.startswith("locmem"):
        return {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "lab"}
    if url.startswith(("redis://", "rediss://", "unix://")):
        # Only options Django's own RedisCache accepts: anything else is passed to redis-py's
        # ConnectionPool, which is where max_connections belongs (not django-redis' names).
        return {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": url,
            "OPTIONS": {"max_connections": int(os.environ.get("LAB_CACHE_POOL_MAX", "50"))},
        }
    raise ValueError(f"LAB_CACHE_URL={url!r}: expected redis://host:port/db or locmem://")


DATABASES = {"default": _database()}
CACHES = {"default": _cache()}
# Django's Tasks API with a real queue: task rows in the project's database, run by
# `python -m labproject db_worker` (django-tasks-db). Django itself ships no worker.
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}


# The lab's boot starts the mock LLM on a free port and sets LAB_LLM_BASE_URL for this process
# and the servers it starts; run standalone, the project expects `labkit mock-llm --port 8400`.
LLM_BASE_URL = os.environ.get("LAB_LLM_BASE_URL", "http://127.0.0.1:8400/v1")
LLM_API_KEY = os.environ.get("LAB_LLM_API_KEY") or os.environ.get("OPENAI_API_KEY") or "sk-lab-mock"
LLM_MODEL = os.environ.get("LAB_LLM_MODEL", "mock-gpt")
LLM_TIMEOUT_S = float(os.environ.get("LAB_LLM_TIMEOUT_S", "30"))
LLM_MAX_RETRIES = int(os.environ.get("LAB_LLM_MAX_RETRIES", "2"))
# Every LLM call the project and the kit make sends this reply budget (`max_tokens`, or the
# Responses API's `max_output_tokens`). Unbounded, a small local model writes until its context
# is full (2,000 tokens, minutes on a CPU) and the next call times out behind it. The mock's
# replies (20-60 tokens) stay under it.
LLM_MAX_TOKENS = int(os.environ.get("LAB_LLM_MAX_TOKENS", "128"))
# Longest prompt the API views accept, in characters; longer ones get 413.
MAX_PROMPT_CHARS = int(os.environ.get("LAB_MAX_PROMPT_CHARS", "8000"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django.request": {"handlers": ["console"], "level": "ERROR"}},
}
