"""Step 00, welcome: ask the LLM through the official SDK, and count with the async ORM.

Master: solutions/00_welcome.ipynb. Notebook: `from labkit.steps.step_00 import q1, q2`.
"""

from __future__ import annotations

import contextlib
import random
import uuid

from labkit.exercises import CheckError, Exercise, Incorrect, expect_queries


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


class AskTheLLM(Exercise):
    """`ask(prompt)` returns the text the LLM answered to that prompt.

    A correct answer, judged at the lab's mock LLM with prompts chosen at check time:
    - is `async def` and makes one call per prompt to `settings.LLM_MODEL` (the mock counts);
    - returns the reply's text, a `str`, exactly what the mock answered to that prompt;
    - answers two prompts asked at once each with its own reply (nothing shared or cached).
    Where `settings.LLM_BASE_URL` points elsewhere (your own endpoint), the check points the
    settings at the mock for its calls (`on_mock()`) and says so: it measures there, and an
    `ask` the mock never heard from is not accepted.
    """

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
        "imitates the mock's reply without calling it": (
            'excerpt = " ".join(prompt.split()[:8])\n'
            'return f"Mock reply to “{excerpt}”. The view awaits the reply."'
        ),
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
        "answers every prompt with the first reply": (
            "global _first_reply\n"
            "if globals().get('_first_reply'):\n"
            "    return _first_reply\n"
            "async with openai.AsyncOpenAI(**client_options()) as client:\n"
            "    completion = await client.chat.completions.create(\n"
            "        model=settings.LLM_MODEL, messages=messages_for(prompt)\n"
            "    )\n"
            "_first_reply = completion.choices[0].message.content\n"
            "return _first_reply"
        ),
    }
    # `ask` may hold a client made in a cell, bound to the kernel's event loop.
    kernel_loop = True

    def prepare(self) -> None:
        _django_ready()

    async def evaluate(self, ask) -> str:
        from django.conf import settings

        from labkit.steps.llmside import Seen, mock_replies, shorten
        from labkit.steps.probes import lab_mock
        from labkit.steps.subject import Raised, call, grading, is_async

        if not is_async(ask):
            raise Incorrect(
                "`ask` is a plain `def`: declare it `async def ask(prompt)` and `await` the "
                "AsyncOpenAI call inside it."
            )
        mock = lab_mock()
        nonce = uuid.uuid4().hex[:8]
        prompts = [
            f"Warm-up check {nonce}: what does an event loop do?",
            f"Second question {nonce}: why await a network call?",
        ]
        elsewhere, redirect = "", contextlib.nullcontext()
        if not grading() and settings.LLM_BASE_URL.rstrip("/") != mock.base_url.rstrip("/"):
            from labkit.boot import on_mock

            elsewhere = (
                f" (Your settings point the SDK at {settings.LLM_BASE_URL}; this check measures "
                f"calls at the lab's mock, so it pointed them at {mock.base_url} while it ran.)"
            )
            redirect = on_mock()
        before = mock.stats()
        replies = []
        try:
            with redirect:
                model = settings.LLM_MODEL
                for prompt in prompts:
                    replies.append(await call(ask, prompt))
        except Raised as error:
            raise Incorrect(
                f"`ask(...)` raised {error.type_name}; it should return the LLM's reply."
                + elsewhere,
                evidence=shorten(str(error), 300),
            ) from None
        seen = Seen(before, mock.stats())
        for reply in replies:
            if not isinstance(reply, str):
                kind = reply.get("__type__") if isinstance(reply, dict) else None
                shown = reply.get("repr") if isinstance(reply, dict) else reply
                raise Incorrect(
                    f"`ask(...)` returned a {kind or type(reply).__name__}, not the reply's "
                    "text. The text is `completion.choices[0].message.content`.",
                    evidence=shorten(shown, 300),
                )
        if seen.calls == 0:
            raise Incorrect(
                f"`ask` answered {len(prompts)} prompts and the lab's mock LLM received no "
                f"request (requests_total stayed at {seen.after['requests_total']}): `ask` must "
                "call the LLM, not make up a text." + elsewhere,
                evidence=f"ask returned: {shorten(replies[0])!r}",
            )
        models = seen.models()
        wrong = {name: n for name, n in models.items() if name != model}
        if wrong:
            listed = ", ".join(f"{name} ({n})" for name, n in wrong.items())
            raise Incorrect(
                f"`ask` called the model {listed}; the lab's model is "
                f"`settings.LLM_MODEL` = {model!r}. A hard-coded name breaks "
                "when the course switches endpoints.",
                evidence=f"mock requests by model during the check: {models}",
            )
        expected = await mock_replies(mock, prompts, model=model)
        for prompt, reply, want in zip(prompts, replies, expected, strict=True):
            if reply == want:
                continue
            if replies[0] == replies[1]:
                cause = (
                    f"Two different prompts got the same text, and the mock saw {seen.calls} "
                    f"call(s) for {len(prompts)} prompts: `ask` reuses an earlier reply "
                    "instead of asking the LLM each time."
                )
            else:
                cause = "`ask(...)` returned a text that is not the mock's reply to that prompt."
            raise Incorrect(
                cause,
                evidence=f"prompt:   {prompt!r}\nexpected: {shorten(want)!r}\n"
                f"got:      {shorten(reply)!r}",
            )
        return (
            f"`ask` made {seen.calls} calls to {model!r} for {len(prompts)} prompts and "
            f"returned exactly the mock's reply to each: {shorten(replies[0], 70)!r}.{elsewhere}"
        )


class CountChunks(Exercise):
    """`chunk_count(doc_id)` counts document `doc_id`'s chunks in the database, in one query.

    A correct answer, judged on a document the check inserts with a random number of chunks at
    random positions (and deletes afterwards):
    - is `async def` and uses the async ORM (a sync call raises SynchronousOnlyOperation);
    - counts that document's rows, not every chunk, nor the highest position;
    - runs one query per call, and asks again each time: a chunk added between two calls
      shows in the second count (no remembered answer);
    - answers 0 for a document that does not exist, instead of raising.
    """

    id = "00.2"
    database_evidence = True
    title = "Count a document's chunks with the async ORM"
    hints = [
        "In async code the ORM's methods start with an `a`: `acount()`, `aget()`, `afirst()`.",
        "`await Chunk.objects.filter(document_id=doc_id).acount()` is one `SELECT COUNT(*)`.",
    ]
    wrong_answers = {
        "sync ORM in async code": "return Chunk.objects.filter(document_id=doc_id).count()",
        "counts every chunk": "return await Chunk.objects.acount()",
        "hard-codes the seed's 20": "return 20",
        "the last position plus one": (
            'last = await Chunk.objects.filter(document_id=doc_id).order_by("-position").afirst()\n'
            "return 0 if last is None else last.position + 1"
        ),
        "remembers each document's count": (
            "counts = globals().setdefault('_counts', {})\n"
            "if doc_id not in counts:\n"
            "    counts[doc_id] = await Chunk.objects.filter(document_id=doc_id).acount()\n"
            "return counts[doc_id]"
        ),
    }

    def prepare(self) -> None:
        _django_ready()

    async def evaluate(self, chunk_count) -> str:
        from django.db.models import Max

        from labkit.steps.subject import is_async
        from labproject.ai.models import Chunk, Document

        if not is_async(chunk_count):
            raise Incorrect(
                "`chunk_count` is a plain `def`: declare it `async def` and `await` the ORM."
            )
        if not await Document.objects.aexists():
            raise CheckError("The database holds no documents: run the setup cell again.")
        rng = random.Random()
        n = rng.randint(3, 9)
        positions = rng.sample(range(4, 60), n)  # gaps, inserted out of order
        fresh = await Document.objects.acreate(title=f"check 00.2 {uuid.uuid4().hex[:8]}")
        try:
            for position in positions:
                await Chunk.objects.acreate(document=fresh, position=position, text="check")
            top = (await Document.objects.aaggregate(top=Max("id")))["top"]
            missing = top + rng.randint(1000, 9000)
            results = [await self._case(chunk_count, fresh.id, n, "a document made just now")]
            await Chunk.objects.acreate(document=fresh, position=2, text="one more")
            results.append(
                await self._case(chunk_count, fresh.id, n + 1, "the same one, a chunk added")
            )
            results.append(await self._case(chunk_count, missing, 0, "a document that is not"))
        finally:
            await fresh.adelete()
        counted = ", ".join(text for text, _ in results)
        return f"{counted}; {results[0][1]}"

    @staticmethod
    async def _case(chunk_count, doc_id: int, want: int, what: str) -> tuple[str, str]:
        from labkit.steps.dbside import queries_seen
        from labkit.steps.subject import Raised, call

        try:
            async with queries_seen(f"chunk_count({doc_id})") as log:
                got = await call(chunk_count, doc_id)
        except Raised as error:
            if error.type_name == "SynchronousOnlyOperation":
                raise Incorrect(
                    f"`chunk_count({doc_id})` raised SynchronousOnlyOperation: a sync ORM call "
                    "(`.count()`, a plain `for` over a queryset) inside async code. Use the "
                    "`a`-methods: `await ....acount()`."
                ) from None
            raise Incorrect(
                f"`chunk_count({doc_id})` ({what}) raised {error.type_name}; expected {want}.",
                evidence=str(error)[:300],
            ) from None
        if got != want or isinstance(got, bool):
            cause = ""
            if log.n_queries == 0:
                cause = (
                    " It ran no query: the count must come from the database each time, not "
                    "from a remembered or fixed value."
                )
            raise Incorrect(
                f"`chunk_count({doc_id})` ({what}) returned {got!r}; the check counted {want} "
                "chunk rows for it in the database." + cause,
                evidence=f"SQL it ran:\n{log.numbered()}"
                if log.n_queries
                else "No query ran: the function never asked the database.",
            )
        if log.n_queries == 0:
            raise Incorrect(
                f"`chunk_count({doc_id})` ran no query: the answer must come from the database."
            )
        return f"chunk_count({what}) = {got}", expect_queries(log, at_most=1)


q1 = AskTheLLM()
q2 = CountChunks()
