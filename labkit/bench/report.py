"""What the bench reports: rows that carry their scenario, sections of rows, plain-text tables.

Every row holds the scenario its figures belong to (users, latency_s, workers, cpus,
duration_s), so a figure copied out of the JSON still says what was measured. A scenario key
that does not apply (no LLM in a cache read) is None, never left out.
"""

from __future__ import annotations

import platform
from typing import Any

SCENARIO_KEYS = ("users", "latency_s", "workers", "cpus", "duration_s")


def machine() -> dict[str, Any]:
    """The machine the figures were measured on."""
    from labkit.doctor import cpu_count, memory_bytes

    return {
        "cpus": cpu_count(),
        "memory_gib": round(memory_bytes() / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
    }


def row(
    name: str,
    *,
    users: int | None,
    latency_s: float | None,
    workers: int | None,
    duration_s: float | None,
    **figures: Any,
) -> dict[str, Any]:
    """One line of figures, led by its scenario."""
    from labkit.doctor import cpu_count

    scenario = {
        "users": users,
        "latency_s": latency_s,
        "workers": workers,
        "cpus": cpu_count(),
        "duration_s": None if duration_s is None else round(duration_s, 2),
    }
    return {"name": name, **scenario, **figures}


def load_row(name: str, server: str, workers: int | None, result: Any, cpu_s: float) -> dict:
    """A row for one load run: throughput beside its Little's-law bound, latency, CPU."""
    data = result.to_dict()
    answered = max(data["requests"], 1)
    return row(
        name,
        users=data["users"],
        latency_s=data["latency_s"],
        workers=workers,
        duration_s=data["duration_s"],
        server=server,
        rps=data["rps"],
        bound_rps=data["bound_rps"],
        efficiency=data["efficiency"],
        p50_ms=data["p50_ms"],
        p95_ms=data["p95_ms"],
        p99_ms=data["p99_ms"],
        requests=data["requests"],
        errors=data["errors"],
        cpu_ms_per_request=round(cpu_s * 1000 / answered, 2),
        warnings=data["warnings"],
    )


def section(
    title: str,
    about: str,
    columns: list[str],
    rows: list[dict[str, Any]],
    *,
    notes: list[str] | None = None,
    skipped: str | None = None,
) -> dict[str, Any]:
    """A titled group of rows; `columns` are the ones the printed table shows."""
    return {
        "title": title,
        "about": about,
        "columns": columns,
        "rows": rows,
        "notes": list(notes or []),
        "skipped": skipped,
    }


def failed(title: str, error: BaseException) -> dict[str, Any]:
    """The section that could not be measured, with the error, so the rest still report."""
    return {**section(title, "", [], []), "error": f"{type(error).__name__}: {error}"}


def render(data: dict[str, Any]) -> str:
    """A section as text: title, what it measures, the table, notes, and what was skipped."""
    lines = [f"== {data['title']} ==", *([data["about"]] if data["about"] else [])]
    if data["rows"]:
        lines.append(grid(data["rows"], data["columns"]))
    lines += [f"note: {note}" for note in data["notes"]]
    if data.get("skipped"):
        lines.append(f"skipped: {data['skipped']}")
    if data.get("error"):
        lines.append(f"failed: {data['error']}")
    return "\n".join(lines)


def grid(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """A plain-text table of `rows`, right-aligned, one column per key."""
    cells = [[_fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value >= 100:
            return f"{value:.0f}"
        return f"{value:.2f}" if value >= 0.1 or value == 0 else f"{value:.3f}"
    return "-" if value is None else str(value)
