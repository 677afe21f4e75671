"""Background work run by a task worker (`python -m labproject db_worker`), not by a request.

A view enqueues and answers at once; the worker process runs the task and stores its result,
which a client polls:

    result = await summarise_document.aenqueue(document.id)   # a row in the task table
    ...
    result = await summarise_document.aget_result(result.id)  # READY, RUNNING, SUCCESSFUL...

Tasks live in a module (not a notebook cell) because the worker imports them by path.
"""

from __future__ import annotations

import functools
from typing import Any

import openai
from django.conf import settings
from django.tasks import task

from labproject.ai.llm import CallRecord, client_options, messages_for
from labproject.ai.models import AICall, Chunk, Document
from labproject.ai.views import SUMMARY_INSTRUCTION


def summary_prompt(doc_id: int) -> str:
    """The prompt for summarising document `doc_id`: every chunk, in one query."""
    title = Document.objects.values_list("title", flat=True).get(pk=doc_id)
    rows = Chunk.objects.filter(document_id=doc_id).values_list("position", "text")
    lines = [f"[{title} §{position}] {text}" for position, text in rows]
    return f"{SUMMARY_INSTRUCTION}\n\n" + "\n".join(lines)


@functools.lru_cache(maxsize=1)
def worker_client(base_url: str, api_key: str) -> openai.OpenAI:
    """One client per worker process: its pool keeps the connection for the next task."""
    return openai.OpenAI(**{**client_options(), "base_url": base_url, "api_key": api_key})


@task
def summarise_document(doc_id: int) -> dict[str, Any]:
    """Summarise document `doc_id` with the LLM, log the call, and return the summary.

    Runs in the worker, where blocking is fine: the worker does one task at a time and no
    request waits on it. A failure (no such document, the LLM down) raises, and the backend
    stores the task as FAILED with the error.
    """
    prompt = summary_prompt(doc_id)
    record = CallRecord(endpoint="task:summary", prompt=prompt)
    client = worker_client(settings.LLM_BASE_URL, settings.LLM_API_KEY)
    completion = client.chat.completions.create(
        model=settings.LLM_MODEL, messages=messages_for(prompt)
    )
    record.succeeded(completion)
    call = AICall.objects.create(**record.fields())
    usage = {"prompt_tokens": record.prompt_tokens, "completion_tokens": record.completion_tokens}
    return {"document": doc_id, "reply": record.reply, "usage": usage, "call": call.pk}
