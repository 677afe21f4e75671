#!/usr/bin/env bash
# Create or update .venv from requirements.lock with Python 3.12+. Sourced by run-lab and
# run-tests; safe to run again (it reinstalls only when the lock or pyproject changed).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"

python_ok() {
    "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1
}

find_python() {
    local candidate
    # An explicit choice wins, then what is on PATH, then pyenv's versions folder (this is
    # how a machine with 3.12 installed but not on PATH is found). 3.12 first: the lock,
    # environment.yml and Binder are all resolved for it.
    for candidate in "${LAB_PYTHON:-}" python3.12 python3.13 python3.14 python3; do
        [ -n "$candidate" ] || continue
        if command -v "$candidate" >/dev/null 2>&1 && python_ok "$(command -v "$candidate")"; then
            command -v "$candidate"
            return 0
        fi
    done
    local versions="${PYENV_ROOT:-$HOME/.pyenv}/versions"
    for candidate in $(ls -d "$versions"/3.12*/bin/python3 2>/dev/null | sort -rV) \
                     $(ls -d "$versions"/3.1[3-9]*/bin/python3 2>/dev/null | sort -V); do
        if python_ok "$candidate"; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

if [ -x "$venv/bin/python" ] && ! python_ok "$venv/bin/python"; then
    echo "setup: $venv uses Python < 3.12; recreating it" >&2
    rm -rf "$venv"
fi

if [ ! -x "$venv/bin/python" ]; then
    if ! python="$(find_python)"; then
        cat >&2 <<'MSG'
setup: this lab needs Python 3.12 or newer (Django 6 requires it), and none was found
on PATH (python3.12, python3.13, python3.14, python3) or under ~/.pyenv/versions.
Install one, then run this command again. For example:
  Debian/Ubuntu:  sudo apt install python3.12 python3.12-venv
  macOS:          brew install python@3.12
  pyenv:          pyenv install 3.12
  conda:          conda env create -f environment.yml && conda activate django-ai-lab
Or point LAB_PYTHON at an interpreter: LAB_PYTHON=/path/to/python3.12 ./run-lab
MSG
        exit 3
    fi
    echo "setup: creating .venv with $python ($("$python" --version 2>&1))" >&2
    "$python" -m venv "$venv"
fi

stamp="$venv/.lab-installed"
want="$(cat "$root/requirements.lock" "$root/pyproject.toml" | cksum)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "setup: installing the locked dependencies into .venv (first time takes about a minute)" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$root/requirements.lock"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -e "$root"
    echo "$want" > "$stamp"
fi
