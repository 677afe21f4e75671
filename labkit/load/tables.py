"""Tables of load runs: HTML and Markdown in Jupyter, plain text in a console."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from labkit.load.results import LoadResult


class Rendered:
    """Shown as a table: HTML and Markdown in Jupyter, plain text in a console."""

    def _table(self) -> Table:
        raise NotImplementedError

    def _repr_html_(self) -> str:
        return self._table().html()

    def _repr_markdown_(self) -> str:
        return self._table().markdown()

    def __str__(self) -> str:
        return self._table().text()


# Colours by meaning, readable on JupyterLab's light and dark themes.
ALERT_COLOUR = "#c62828"  # red: the run failed, its figures are not a result
WARNING_COLOUR = "#b26a00"  # amber: a figure to read with care, and what to do about it
NOTE_COLOUR = "#777777"  # grey: context, e.g. what the machine did meanwhile


@dataclass
class Table:
    """Alerts first, then a title, one table, warnings and notes, for Jupyter or a console."""

    title: str
    header: list[str]
    rows: list[list[str]]
    warnings: list[str]
    alerts: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def html(self) -> str:
        cell = "<td style='text-align:right'>{}</td>"
        head = "".join(f"<th style='text-align:right'>{html.escape(h)}</th>" for h in self.header)
        body = "".join(
            "<tr>" + "".join(cell.format(html.escape(c)) for c in row) + "</tr>"
            for row in self.rows
        )
        out = "<div>" + "".join(
            f"<p class='labkit-alert' style='color:{ALERT_COLOUR};font-weight:bold'>"
            f"✖ {html.escape(a)}</p>"
            for a in self.alerts
        )
        out += (
            f"<p><b>{html.escape(self.title)}</b></p>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        )
        if self.warnings:
            items = "".join(f"<li>{html.escape(w)}</li>" for w in self.warnings)
            out += (
                f"<ul class='labkit-warnings' style='color:{WARNING_COLOUR};"
                f'list-style:"⚠ "\'>{items}</ul>'
            )
        out += "".join(
            f"<p style='color:{NOTE_COLOUR};font-size:90%'>{html.escape(n)}</p>" for n in self.notes
        )
        return out + "</div>"

    def markdown(self) -> str:
        lines = [*(f"**✖ {a}**\n" for a in self.alerts)]
        lines += [
            f"**{self.title}**",
            "",
            "| " + " | ".join(self.header) + " |",
            "|" + "|".join("---:" for _ in self.header) + "|",
        ]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        lines += ["", *(f"- ⚠ {w}" for w in self.warnings)] if self.warnings else []
        lines += ["", *(f"*{n}*" for n in self.notes)] if self.notes else []
        return "\n".join(lines)

    def text(self) -> str:
        widths = [
            max(len(r[i]) for r in [self.header, *self.rows]) for i in range(len(self.header))
        ]
        lines = [f"FAILED: {a}" for a in self.alerts]
        lines.append(self.title)
        lines += [
            "  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True))
            for r in [self.header, *self.rows]
        ]
        lines += [f"warning: {w}" for w in self.warnings]
        lines += self.notes
        return "\n".join(lines)


def num(value: float | None) -> str:
    if value is None:
        return "—"
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


def ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f}" if value >= 10 else f"{value:.1f}"


def pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}" if value < 0.1 else f"{value:.0%}"


def times(value: float | None, sign: str) -> str:
    return "—" if value is None else f"{sign}{value:.2f}" if value < 10 else f"{sign}{value:.0f}"


def errors_text(result: LoadResult) -> str:
    if not result.errors:
        return "0"
    kinds = ", ".join(f"{k} {n}" for k, n in result.errors_by_kind.items())
    return f"{result.errors} ({kinds})"
