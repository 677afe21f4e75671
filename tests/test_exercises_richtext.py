"""Learner-facing text: verdicts marked and coloured by meaning, plain text for consoles."""

from __future__ import annotations

from labkit.exercises.outcomes import MIME_TYPE, Outcome, Status
from labkit.exercises.richtext import RichText, _tinted, markdown_to_plain, tint


def outcome(status: Status) -> Outcome:
    return Outcome("02.1", "An async chat view", status, "20 requests took 2.7 s.", points=0)


def test_correct_and_incorrect_never_look_alike() -> None:
    correct = tint(outcome(Status.CORRECT).markdown())
    incorrect = tint(outcome(Status.INCORRECT).markdown())
    assert correct.startswith('<span style="color:#2e7d32">**✔ Correct**</span>')
    assert incorrect.startswith('<span style="color:#c62828">**✘ Incorrect**</span>')
    assert tint(outcome(Status.NOT_ATTEMPTED).markdown()).startswith(
        '<span style="color:#b26a00">**○ Not attempted yet**'
    )
    # Only a leading verdict is tinted: a message that mentions one later is left alone.
    assert tint("**Hint:** Correct is **Correct**") == "**Hint:** Correct is **Correct**"


def test_the_tinted_bundle_keeps_what_the_grader_reads() -> None:
    shown = outcome(Status.INCORRECT)
    bundle = _tinted(shown)
    assert bundle is not None
    assert bundle[MIME_TYPE] == shown.to_json()
    assert bundle["text/plain"] == str(shown)
    assert "✘ Incorrect" in bundle["text/markdown"]
    assert _tinted(RichText("no verdict here", "Hint")) is None


def test_plain_text_drops_the_markdown() -> None:
    assert markdown_to_plain("**Hint:** use `await`\n\n```python\nx = 1\n```") == (
        "Hint: use `await`\n\n    x = 1"
    )
