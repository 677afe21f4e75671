"""Find exercises by id or by step, in the step modules that declare them.

Step NN's exercises live in `labkit.steps.step_NN` as module-level Exercise instances
(`q1 = AsyncView()`). Modules named in `LABKIT_EXTRA_STEPS` (comma-separated dotted names,
e.g. `tests.fixtures.steps.step_90`) are searched too: that is how tests, or a course adding
its own steps, register exercises without touching the kit.
"""

from __future__ import annotations

import importlib
import os
import re
from pathlib import Path
from types import ModuleType

from labkit.exercises.exercise import Exercise

ENV_EXTRA = "LABKIT_EXTRA_STEPS"
STEP_PACKAGE = "labkit.steps"
_STEP_MODULE = re.compile(r"^step_(\d{2})\.py$")


class RegistryError(LookupError):
    """No such exercise, or two different exercises claiming one id."""


class ExerciseSet(tuple[Exercise, ...]):
    """A step's exercises in id order; unpack it (`q1, q2 = exercises("02")`) or index by id."""

    def __getitem__(self, key):  # type: ignore[override]
        if isinstance(key, str):
            for exercise in self:
                if exercise.id == key:
                    return exercise
            raise RegistryError(f"no exercise {key!r}; this step has {self.ids}")
        return super().__getitem__(key)

    @property
    def ids(self) -> list[str]:
        return [exercise.id for exercise in self]


def extra_modules() -> list[str]:
    return [name.strip() for name in os.environ.get(ENV_EXTRA, "").split(",") if name.strip()]


def step_modules(step: str) -> list[ModuleType]:
    """The modules that may declare step `step`'s exercises (those that exist)."""
    modules = []
    name = f"{STEP_PACKAGE}.step_{step}"
    try:
        modules.append(importlib.import_module(name))
    except ModuleNotFoundError as exc:
        if exc.name != name:
            raise  # the step module exists but imports something missing: say so
    modules.extend(importlib.import_module(extra) for extra in extra_modules())
    return modules


def exercises(step: str | int) -> ExerciseSet:
    """Step `step`'s exercises, in id order.

    q1, q2 = exercises("02")
    """
    if not str(step).isdigit():
        raise RegistryError(f"steps are numbered like '02', not {step!r}")
    step = f"{int(step):02d}"
    found: dict[str, Exercise] = {}
    for module in step_modules(step):
        for value in vars(module).values():
            if not isinstance(value, Exercise) or not value.id.startswith(f"{step}."):
                continue
            known = found.setdefault(value.id, value)
            if known is not value:
                raise RegistryError(
                    f"two exercises claim id {value.id}: {known!r} and {value!r} "
                    f"(in {module.__name__})"
                )
    return ExerciseSet(sorted(found.values(), key=lambda e: int(e.id.split(".")[1])))


def find(exercise_id: str) -> Exercise:
    """The exercise with id `exercise_id` ("02.1")."""
    step = exercise_id.split(".")[0]
    if not step.isdigit():
        raise RegistryError(f"exercise ids look like '02.1', not {exercise_id!r}")
    return exercises(step)[exercise_id]


def steps() -> list[str]:
    """Every step that has a module: `labkit/steps/step_NN.py` files and the extra modules."""
    package = Path(importlib.import_module(STEP_PACKAGE).__file__ or "").parent
    found = {m.group(1) for p in package.glob("step_*.py") if (m := _STEP_MODULE.match(p.name))}
    for extra in extra_modules():
        module = importlib.import_module(extra)
        found.update(v.id.split(".")[0] for v in vars(module).values() if isinstance(v, Exercise))
    return sorted(found)
