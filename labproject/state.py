"""Where the lab keeps its per-user state: database file, secret key, logs, service data."""

from __future__ import annotations

import os
from pathlib import Path

ENV_STATE_DIR = "LAB_STATE_DIR"
APP_NAME = "django-ai-lab"


def state_dir() -> Path:
    """Return the per-user state directory, creating it if needed.

    `LAB_STATE_DIR` wins; otherwise `$XDG_STATE_HOME/django-ai-lab`, then
    `~/.local/state/django-ai-lab`. Resolved at run time, never baked in at build time, so a
    JupyterHub user or a Binder session gets a directory of its own.
    """
    explicit = os.environ.get(ENV_STATE_DIR)
    if explicit:
        path = Path(explicit).expanduser()
    else:
        base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
        path = Path(base) / APP_NAME
    path.mkdir(parents=True, exist_ok=True)
    return path
