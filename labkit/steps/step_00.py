"""Step 00, welcome: ask the LLM through the official SDK, and count with the async ORM.

Master: solutions/00_welcome.ipynb. Notebook: `from labkit.steps.step_00 import q1, q2`.
"""

from __future__ import annotations

import inspect
import uuid
from typing import Any

from labkit.exercises import CheckError, Exercise, Incorrect, expect_queries

# A document id the seed never creates: its chunk count is 0, whatever the corpus holds.
MISSING_DOCUMENT = 999_999


def _django_ready() -> None:
    from django.apps import apps

    if not apps.ready:
        raise CheckError("Run the setup cell (`lab = boot()`) first: Django is not configured.")


def _signature(prompt: str) -> str:
    """How the mock's reply to `prompt` begins (see labkit.mock_llm.content.reply_for)."""
    excerpt = " ".join(prompt.split()[:8])
    if len(excerpt) > 60:
        excerpt = excerpt[:59] + "…"
    return f"Mock reply to “{excerpt}”."


def _shorten(text: str, limit: int = 90) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class AskTheLLM(Exercise):
    id = "00.1"
    title = "Ask the LLM through the SDK"
    hints = [
        "Build the client with `openai.AsyncOpenAI(**client_options())`, then "
        "`await client.chat.completions.create(model=..., messages=...)`.",
        "The model name is `settings.LLM_MODEL`, the messages `messages_for(prompt)`. The text "
        "is in `completion.choices[0].message.content`: return that string, not the completion.",
    ]
    wrong_answers = {
        "returns the whole completion": (
            "async with openai.AsyncOpenAI(**client_options()) as client:\n"
            "    return await client.chat.completions.create(\n"
            "        model=settings.LLM_MODEL, messages=messages_for(prompt)\n"
            "    )"
        ),
        "hard-codes a reply": f'return "{_signature("Hello")} The view awaits the reply."',
        "uses another model name": (
            "async with openai.AsyncOpenAI(**client_options()) as client:\n"
            "    completion = await client.chat.completions.create(\n"
            '        model="gpt-4", messages=messages_for(prompt)\n'
            "    )\n"
            "return completion.choices[0].message.content"
        ),
        "returns the message object": (
            "async with openai.AsyncOpenAI(**client_options()) as client:\n"
            "    completion = await client.chat.completions.create(\n"
            "        model=settings.LLM_MODEL, messages=messages_for(prompt)\n"
            "    )\n"
            "return completion.choices[0].message"
        ),
    }
    # `ask` may hold a client made in a cell, bound to the kernel's event loop.
    kernel_loop = True

    async def evaluate(self, ask) -> str:
        _django_ready()
        if not inspect.iscoroutinefunction(ask):
            raise Incorrect(
                "`ask` is a plain `def`: declare it `async def ask(prompt)` and `await` the "
                "AsyncOpenAI call inside it."
            )
        from django.conf import settings

        from labkit.boot import mock_llm

        mock = mock_llm()
        if mock is None or not mock.running or settings.LLM_BASE_URL != mock.base_url:
            return await self._against_real_endpoint(ask)
        prompt = f"Warm-up check {uuid.uuid4().hex[:8]}: what does an event loop do?"
        before = mock.stats()
        reply = await ask(prompt)
        after = mock.stats()
        calls = after["requests_total"] - before["requests_total"]
        if not isinstance(reply, str):
            kind = type(reply).__name__
            raise Incorrect(
                f"`ask(...)` returned a {kind}, not the reply's text. The text is "
                "`completion.choices[0].message.content`.",
                evidence=_shorten(repr(reply), 300),
            )
        if calls == 0:
            raise Incorrect(
                "The mock LLM received no request while `ask(...)` ran (requests_total stayed "
                f"at {after['requests_total']}): `ask` must call the LLM, not return a "
                "fixed text.",
                evidence=f"ask returned: {_shorten(reply)!r}",
            )
        models = _model_calls(before, after)
        wrong = {name: n for name, n in models.items() if name != settings.LLM_MODEL}
        if wrong:
            listed = ", ".join(f"{name} ({n})" for name, n in wrong.items())
            raise Incorrect(
                f"`ask` called the model {listed}; the lab's model is "
                f"`settings.LLM_MODEL` = {settings.LLM_MODEL!r}. A hard-coded name breaks "
                "when the course switches endpoints.",
                evidence=f"mock requests by model during the check: {models}",
            )
        expected = _expected_reply(mock, settings.LLM_MODEL, prompt)
        if reply == expected:
            how = "exactly the mock's deterministic reply"
        elif reply.startswith(_signature(prompt)):
            how = "the mock's reply to your messages (you sent more than the prompt)"
        else:
            raise Incorrect(
                "`ask(...)` returned a text that is not the mock's reply to that prompt.",
                evidence=f"prompt:   {prompt!r}\nexpected: {_shorten(expected)!r}\n"
                f"got:      {_shorten(reply)!r}",
            )
        return (
            f"`ask` made {calls} call to {settings.LLM_MODEL!r} and returned {how}: "
            f"{_shorten(reply, 70)!r}"
        )

    async def _against_real_endpoint(self, ask) -> str:
        # A learner on their own endpoint: no deterministic reply to compare with.
        first = await ask("Say 'one' and nothing else.")
        second = await ask("Say 'two' and nothing else.")
        for reply in (first, second):
            if not isinstance(reply, str) or not reply.strip():
                raise Incorrect(
                    f"`ask(...)` returned {_shorten(repr(reply))}, expected the reply's text "
                    "(`completion.choices[0].message.content`)."
                )
        if first == second:
            raise Incorrect(
                "Two different prompts got the same answer: is the reply hard-coded?",
                evidence=f"both returned {_shorten(first)!r}",
            )
        return (
            f"Your endpoint answered two prompts with {_shorten(first, 40)!r} and "
            f"{_shorten(second, 40)!r}. (Against the mock this check also compares the exact text.)"
        )


def _model_calls(before: dict[str, Any], after: dict[str, Any]) -> dict[str, int]:
    counts = {}
    for name, row in after.get("models", {}).items():
        n = row["requests"] - before.get("models", {}).get(name, {}).get("requests", 0)
        if n:
            counts[name] = n
    return counts


def _expected_reply(mock: Any, model: str, prompt: str) -> str:
    from labkit.mock_llm import reply_for
    from labproject.ai.llm import messages_for

    config = mock.config()
    length = tuple(config["reply_tokens"])
    return reply_for(model, messages_for(prompt), config.get("seed"), length=length).text


class CountChunks(Exercise):
    id = "00.2"
    title = "Count a document's chunks with the async ORM"
    hints = [
        "In async code the ORM's methods start with an `a`: `acount()`, `aget()`, `afirst()`.",
        "`await Chunk.objects.filter(document_id=doc_id).acount()` is one `SELECT COUNT(*)`.",
    ]
    wrong_answers = {
        "sync ORM in async code": "return Chunk.objects.filter(document_id=doc_id).count()",
        "counts every chunk": "return await Chunk.objects.acount()",
        "hard-codes the seed's 20": "return 20",
    }

    async def evaluate(self, chunk_count) -> str:
        _django_ready()
        if not inspect.iscoroutinefunction(chunk_count):
            raise Incorrect(
                "`chunk_count` is a plain `def`: declare it `async def` and `await` the ORM."
            )
        from django.core.exceptions import SynchronousOnlyOperation

        from labkit.queries import count_queries
        from labproject.ai.models import Chunk, Document

        first = await Document.objects.order_by("id").afirst()
        if first is None:
            raise CheckError("The database holds no documents: run the setup cell again.")
        cases = [(first.id, await Chunk.objects.filter(document=first).acount())]
        cases.append((MISSING_DOCUMENT, 0))
        results = []
        for doc_id, want in cases:
            try:
                async with count_queries() as log:
                    got = await chunk_count(doc_id)
            except SynchronousOnlyOperation:
                raise Incorrect(
                    f"`chunk_count({doc_id})` raised SynchronousOnlyOperation: a sync ORM call "
                    "(`.count()`, a plain `for` over a queryset) inside async code. Use the "
                    "`a`-methods: `await ....acount()`."
                ) from None
            if got != want:
                raise Incorrect(
                    f"`chunk_count({doc_id})` returned {got!r}; document {doc_id} has {want} "
                    f"chunks.",
                    evidence=f"SQL it ran:\n{log.numbered()}"
                    if log.n_queries
                    else "No query ran: the function never asked the database.",
                )
            if log.n_queries == 0:
                raise Incorrect(
                    f"`chunk_count({doc_id})` ran no query: the answer must come from the database."
                )
            results.append(f"chunk_count({doc_id}) = {got}")
            counted = expect_queries(log, at_most=1)
        return f"{', '.join(results)}; {counted}"


q1 = AskTheLLM()
q2 = CountChunks()
