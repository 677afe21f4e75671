"""Where the lab keeps its per-user state: database file, secret key, logs, service data."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

ENV_STATE_DIR = "LAB_STATE_DIR"
APP_NAME = "django-ai-lab"


def state_dir() -> Path:
    """Return the per-user state directory, creating it if needed.

    `LAB_STATE_DIR` wins; otherwise `$XDG_STATE_HOME/django-ai-lab`, then
    `~/.local/state/django-ai-lab`. It is resolved at run time, never baked in at build time,
    so each JupyterHub user or Binder session gets a directory of its own.
    """
    explicit = os.environ.get(ENV_STATE_DIR)
    if explicit:
        path = Path(explicit).expanduser()
    else:
        base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
        path = Path(base) / APP_NAME
    path.mkdir(parents=True, exist_ok=True)
    return path


def secret_key() -> str:
    """Return this install's secret key, generating it on first use (never committed)."""
    from_env = os.environ.get("DJANGO_SECRET_KEY")
    if from_env:
        return from_env
    return secret_file(state_dir() / "secret_key", secrets.token_urlsafe(50))


def secret_file(path: Path, new_value: str) -> str:
    """Return the secret stored at `path`, writing `new_value` there (mode 600) if none is."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    # O_EXCL: if two processes race on first start, the loser reads the winner's value.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        f.write(new_value)
    return new_value
