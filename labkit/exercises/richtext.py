"""Text for learners: Markdown in Jupyter, plain text in a console or a log.

Every message object has both forms, so the same `show(x)` reads well in JupyterLab, in
`ipython` and in `python -c`: Jupyter picks `_repr_markdown_`, a console gets `str(x)`.
"""

from __future__ import annotations

import re
import sys
from typing import Any

_FENCE = re.compile(r"^```[\w-]*\n(.*?)^```\n?", re.MULTILINE | re.DOTALL)
_BOLD = re.compile(r"\*\*(.+?)\*\*")
# A check's verdict, by meaning: a mark and a colour, so Correct and Incorrect never look alike
# (the mark stays where a renderer drops colours).
VERDICTS = {
    "Correct": ("✔", "#2e7d32"),  # green
    "Incorrect": ("✘", "#c62828"),  # red
    "Not attempted yet": ("○", "#b26a00"),  # amber
    "Check error": ("!", "#c62828"),
    "Timed out": ("⏱", "#c62828"),
}
_VERDICT = re.compile(r"\A\*\*(" + "|".join(map(re.escape, VERDICTS)) + r")\*\*")


class RichText:
    """A Markdown message with a plain-text twin; `label` is shown in bold before it."""

    def __init__(self, text: str, label: str = "") -> None:
        self.text = text
        self.label = label

    def markdown(self) -> str:
        if not self.label:
            return self.text
        return f"**{self.label}:** {self.text}" if self.text else f"**{self.label}**"

    def _repr_markdown_(self) -> str:
        return self.markdown()

    def __str__(self) -> str:
        return markdown_to_plain(self.markdown())

    def __repr__(self) -> str:
        return str(self)


class Hint(RichText):
    """Hint `n` of `total`; names the call that shows the next one."""

    def __init__(self, text: str, n: int, total: int, call: str = "hint") -> None:
        label = "Hint" if total == 1 else f"Hint {n} of {total}"
        if n < total:
            text += f"\n\n(For another hint, run `{call}({n + 1})`.)"
        super().__init__(text, label)


class Code(RichText):
    """A code block under a label, e.g. a solution."""

    def __init__(self, code: str, label: str, note: str = "") -> None:
        text = f"{note}\n\n" if note else ""
        super().__init__(f"{text}```python\n{code.rstrip()}\n```", label)

    def markdown(self) -> str:
        return f"**{self.label}:**\n\n{self.text}"


def markdown_to_plain(text: str) -> str:
    """Strip the Markdown a console would show literally: fences become indented blocks."""

    def indent(match: re.Match[str]) -> str:
        return "".join(f"    {line}\n" for line in match.group(1).splitlines())

    text = _FENCE.sub(indent, text)
    return _BOLD.sub(r"\1", text).rstrip()


def tint(markdown: str) -> str:
    """Mark and colour a leading bold verdict ("**Correct**", "**Incorrect**", ...)."""

    def badge(match: re.Match[str]) -> str:
        mark, colour = VERDICTS[match.group(1)]
        return f'<span style="color:{colour}">**{mark} {match.group(1)}**</span>'

    return _VERDICT.sub(badge, markdown, count=1)


def _tinted(obj: Any) -> dict[str, Any] | None:
    """The object's display bundle with its verdict tinted, or None if it has no verdict."""
    bundle_of = getattr(obj, "_repr_mimebundle_", None)
    if bundle_of is None:
        return None
    bundle = dict(bundle_of())
    markdown = bundle.get("text/markdown")
    if not isinstance(markdown, str) or not _VERDICT.match(markdown):
        return None
    bundle["text/markdown"] = tint(markdown)
    return bundle


def in_ipython() -> bool:
    """True inside IPython (a Jupyter kernel or the terminal shell), where `display` works."""
    if "IPython" not in sys.modules:  # not loaded means not running: skip a slow import
        return False
    from IPython import get_ipython

    return get_ipython() is not None


def show(obj: Any) -> None:
    """Display `obj` richly in IPython, print its plain text anywhere else."""
    if in_ipython():
        from IPython.display import display

        bundle = _tinted(obj)
        if bundle is not None:
            display(bundle, raw=True)  # every other entry (the grader's JSON) passes through
        else:
            display(obj)
    else:
        print(str(obj))
