"""`try_endpoint`: a notebook's view, its LLM calls on the learner's endpoint, a few requests.

The endpoint is a tiny OpenAI-compatible server in this process (not the kit's mock, so boot()
treats it as the learner's own); the view runs in a real kernel, served by a fresh uvicorn.
"""

from __future__ import annotations

import pytest

from labkit.servers.kernel import ASGIServer
from tests.fixtures.fake_llm import MODEL, fake_llm
from tests.notebook_runner import run_cells, text_of

VIEW = """
import json
import openai
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from labproject.ai.llm import chat_options, client_options, messages_for
from labkit.endpoint_sample import try_endpoint

@csrf_exempt
async def chat(request):
    prompt = json.loads(request.body)["prompt"]
    async with openai.AsyncOpenAI(**client_options()) as client:
        completion = await client.chat.completions.create(
            messages=messages_for(prompt), **chat_options()
        )
    return JsonResponse({"reply": completion.choices[0].message.content})
"""


@pytest.fixture(scope="module")
def endpoint():
    with ASGIServer(fake_llm("an answer | from the endpoint")) as server:
        yield {
            "LAB_LLM_BASE_URL": f"{server.url}/v1",
            "LAB_LLM_MODEL": MODEL,
            "LAB_LLM_API_KEY": "sk-test-secret",
        }


def test_the_view_answers_from_the_endpoint_and_the_mock_comes_back(endpoint, tmp_path):
    cells = [
        "from labkit import boot, mock_llm\nlab = boot(quiet=True)",
        VIEW,
        "sample = await try_endpoint(chat, prompts=['one?', 'two?'])\nprint(sample)",
        "from django.conf import settings\nprint(settings.LLM_BASE_URL == mock_llm().base_url)",
        "async def summary(request, doc_id):\n"
        "    async with openai.AsyncOpenAI(**client_options()) as client:\n"
        "        completion = await client.chat.completions.create(\n"
        "            messages=messages_for(f'summarise {doc_id}'), **chat_options()\n"
        "        )\n"
        "    reply = completion.choices[0].message.content\n"
        "    return JsonResponse({'summary': f'doc {doc_id}: {reply}'})\n",
        "got = await try_endpoint(summary, route='summary', paths=['/api/documents/7/summary/'])\n"
        "print(got)",
        "try:\n    await try_endpoint(chat, prompts=['a'], paths=['/'])\n"
        "except TypeError as exc:\n    print(exc)",
    ]
    nb = run_cells(cells, tmp_path=tmp_path, env=endpoint)
    shown = text_of(nb.cells[2])
    assert f"model `{MODEL}`" in shown and endpoint["LAB_LLM_BASE_URL"] in shown
    assert shown.count("| 200 |") == 2
    assert "an answer \\| from the endpoint" in shown  # a pipe in a reply cannot break the table
    assert "left out" not in shown and "sk-test-secret" not in shown
    assert text_of(nb.cells[3]) == "True\n"
    assert "| /api/documents/7/summary/ | 200 |" in text_of(nb.cells[5])
    assert "doc 7: an answer" in text_of(nb.cells[5])
    assert "takes prompts (POSTed to path) or paths (GET), not both" in text_of(nb.cells[6])


def test_a_slow_first_answer_leaves_the_other_prompts_out(endpoint, tmp_path):
    cells = [
        "from labkit import boot\nlab = boot(quiet=True)",
        VIEW,
        "sample = await try_endpoint(chat, prompts=['a', 'b', 'c'], budget_s=0.001)\n"
        "print(len(sample.answers), sample)",
    ]
    nb = run_cells(cells, tmp_path=tmp_path, env=endpoint)
    shown = text_of(nb.cells[2])
    assert shown.startswith("1 ")
    assert "2 of the 3 requests were left out to stay within this cell's 0.001 s" in shown


def test_without_an_endpoint_nothing_is_sent_and_the_cell_says_why(tmp_path):
    cells = [
        "from labkit import boot\nlab = boot(quiet=True)",
        VIEW,
        "sample = await try_endpoint(chat, prompts=['a'])\nprint(sample.answers, sample)",
    ]
    nb = run_cells(cells, tmp_path=tmp_path, env={"LAB_LLM_BASE_URL": ""})
    shown = text_of(nb.cells[2])
    assert shown.startswith("[] No endpoint of your own is configured")
    assert "labkit local-llm" in shown
