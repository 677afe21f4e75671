"""The starter views: correct, but slow in the ways the course measures and fixes.

- `chat` calls the LLM synchronously with a new client per request, so a worker thread is
  blocked for the whole call and a TCP (and TLS) connection is opened every time.
- `document_summary` builds its context with one query per chunk (N+1), then calls the LLM.
"""

from __future__ import annotations

import openai
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from labproject.ai.api import ApiError, read_prompt, require_method
from labproject.ai.llm import (
    CallRecord,
    chat_options,
    client_options,
    failure_from,
    messages_for,
)
from labproject.ai.models import AICall, Chunk, Document

SUMMARY_INSTRUCTION = "Summarise this document in three sentences. Cite sections as [§n]."


# A JSON API authenticated by something other than cookies has no CSRF exposure; the course's
# step 02 shows the 403 a real server gives without this decorator.
@csrf_exempt
def chat(request: HttpRequest) -> JsonResponse:
    """Answer {"prompt": ...} with the LLM's reply."""
    try:
        prompt = read_prompt(request)
    except ApiError as error:
        return error.response()
    record = CallRecord(endpoint="chat", prompt=prompt)
    return _complete(record, messages_for(prompt))


@csrf_exempt
def document_summary(request: HttpRequest, doc_id: int) -> JsonResponse:
    """Summarise document `doc_id` from its chunks."""
    try:
        require_method(request, "GET")
        document = _get_document(doc_id)
    except ApiError as error:
        return error.response()
    lines = []
    for chunk in Chunk.objects.filter(document=document):
        # chunk.document is not loaded with the chunk: one more query per chunk.
        lines.append(f"[{chunk.document.title} §{chunk.position}] {chunk.text}")
    prompt = f"{SUMMARY_INSTRUCTION}\n\n" + "\n".join(lines)
    record = CallRecord(endpoint="summary", prompt=prompt)
    return _complete(record, messages_for(prompt), document=doc_id)


def _get_document(doc_id: int) -> Document:
    try:
        return Document.objects.get(pk=doc_id)
    except Document.DoesNotExist:
        raise ApiError(404, "document_not_found", f"there is no document {doc_id}.") from None


def _complete(record: CallRecord, messages: list[dict[str, str]], **extra) -> JsonResponse:
    # A new client per request: no connection is ever reused (step 03 measures the cost).
    with openai.OpenAI(**client_options()) as client:
        try:
            completion = client.chat.completions.create(**chat_options(), messages=messages)
        except Exception as exc:  # every LLM fault becomes a logged failure and a mapped status
            failure = failure_from(exc)
            AICall.objects.create(**record.failed(failure).fields())
            return failure.response()
    record.succeeded(completion)
    AICall.objects.create(**record.fields())
    return record.response(**extra)
