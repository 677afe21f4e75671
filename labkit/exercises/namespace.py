"""Read the learner's definitions from the notebook: the kernel's user namespace (`__main__`).

Checks never import the notebook; they look names up where the kernel keeps what cells define.
Tests and tools pass a plain dict instead.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from typing import Any

from labkit.exercises.outcomes import Incorrect, NotAttempted
from labkit.exercises.richtext import in_ipython

Namespace = Mapping[str, Any]


def user_namespace() -> dict[str, Any]:
    """The namespace cells run in: IPython's `user_ns`, else the `__main__` module's globals."""
    if in_ipython():
        from IPython import get_ipython

        shell = get_ipython()
        if shell is not None:
            return shell.user_ns
    return vars(sys.modules["__main__"])


def lookup(names: Iterable[str], namespace: Namespace | None = None) -> dict[str, Any]:
    """Return `{name: value}` for `names`, or say which are missing.

    None defined means the exercise was not attempted; some defined means it is incomplete.
    """
    ns = user_namespace() if namespace is None else namespace
    names = list(names)
    missing = [name for name in names if name not in ns]
    if missing and len(missing) == len(names):
        listed = ", ".join(f"`{name}`" for name in missing)
        raise NotAttempted(
            f"{listed} {'is' if len(missing) == 1 else 'are'} not defined yet: write your answer "
            "in the exercise cell and run it, then check again."
        )
    if missing:
        listed = ", ".join(f"`{name}`" for name in missing)
        raise Incorrect(f"You still need to define {listed}.")
    return {name: ns[name] for name in names}


def forget(names: Iterable[str], namespace: dict[str, Any] | None = None) -> None:
    """Remove `names` from the namespace, so the next cell starts from an undefined state."""
    ns = user_namespace() if namespace is None else namespace
    for name in names:
        ns.pop(name, None)


def name_of(obj: object, namespace: Namespace | None = None) -> str | None:
    """The public variable the learner bound `obj` to (`q1`), for messages like `q1.hint(2)`."""
    ns = user_namespace() if namespace is None else namespace
    for name, value in list(ns.items()):
        if value is obj and not name.startswith("_"):
            return name
    return None
