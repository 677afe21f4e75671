"""A few requests to a notebook's view with its LLM calls on your own endpoint.

The notebooks measure through the mock (latency, faults and load need its controls). When you
configured an endpoint of your own (notebook 00, section 6; `labkit local-llm` serves a small
real model here), one cell per notebook serves the view it built on a fresh in-kernel server
with the LLM settings pointed at that endpoint, and asks it a few questions one after another:
the latency and replies of a real model, beside the mock's.

    sample = await try_endpoint(chat, prompts=["What is an async view?", "And a sync one?"])
    display(sample)   # a table; without an endpoint, one line saying how to configure one
    await try_endpoint(summary, route="summary", paths=["/api/documents/1/summary/"])  # GETs
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

NO_ENDPOINT = (
    "No endpoint of your own is configured, so this cell sends nothing to a real model: set "
    "LAB_LLM_BASE_URL, LAB_LLM_MODEL and LAB_LLM_API_KEY before the kernel starts (notebook 00, "
    "section 6); `labkit local-llm` serves a small real model on this machine."
)
EXCERPT_CHARS = 80


@dataclass
class Answer:
    """One request to the view: its prompt (or path), HTTP status, seconds, the reply's start."""

    request: str
    status: int
    seconds: float
    reply: str


@dataclass
class EndpointSample:
    """What a view answered with its LLM calls on your endpoint, or why nothing was sent."""

    model: str = ""
    base_url: str = ""
    budget_s: float = 0.0
    asked: int = 0  # requests the cell offered; fewer are sent when the first answer is slow
    answers: list[Answer] = field(default_factory=list)
    skipped: str = ""

    def _repr_markdown_(self) -> str:
        if self.skipped:
            return self.skipped
        first = self.answers[0]
        left_out = self.asked - len(self.answers)
        budget = (
            f" The first took {first.seconds:.2f} s, so {left_out} of the {self.asked} requests "
            f"were left out to stay within this cell's {self.budget_s:g} s."
            if left_out
            else ""
        )
        rows = "\n".join(
            f"| {a.request} | {a.status} | {a.seconds:.2f} | {_cell(a.reply)} |"
            for a in self.answers
        )
        return (
            f"Your endpoint ({self.base_url}, model `{self.model}`) through this notebook's view, "
            f"one request after another.{budget}\n\n"
            f"| request | status | seconds | reply |\n|---|---|---|---|\n{rows}"
        )

    def __str__(self) -> str:
        return self._repr_markdown_()


async def try_endpoint(
    view: Any,
    *,
    prompts: list[str] | None = None,
    paths: list[str] | None = None,
    route: str = "chat",
    path: str = "/api/chat/",
    budget_s: float = 30.0,
) -> EndpointSample:
    """Serve `view` behind `route` with the LLM on your endpoint, then ask it, one at a time.

    Either POST each of `prompts` as `{"prompt": ...}` to `path`, or GET each of `paths`. The
    first answer's time decides how many of the others fit in `budget_s`. Without an endpoint
    configured nothing is sent, and the sample says why.
    """
    if (prompts is None) == (paths is None):
        raise TypeError("try_endpoint() takes prompts (POSTed to path) or paths (GET), not both")
    requests = list(prompts if prompts is not None else paths or [])
    import httpx2

    from labkit.boot import endpoint, on_endpoint
    from labkit.servers import ASGIServer
    from labproject import routes
    from labproject.asgi import application

    if endpoint() is None:
        return EndpointSample(skipped=NO_ENDPOINT)
    sample = EndpointSample(budget_s=budget_s, asked=len(requests))
    with on_endpoint() as settings_now, routes.override(route, view):
        sample.model = settings_now["LLM_MODEL"]
        sample.base_url = _without_credentials(settings_now["LLM_BASE_URL"])
        server = ASGIServer(application, name="endpoint-sample").start()
        try:
            async with httpx2.AsyncClient(base_url=server.url, timeout=budget_s + 30) as http:
                for request in requests:
                    answered = len(sample.answers)
                    if answered and (answered + 1) * sample.answers[0].seconds > budget_s:
                        break
                    started = time.perf_counter()
                    if prompts is not None:
                        response = await http.post(path, json={"prompt": request})
                    else:
                        response = await http.get(request)
                    seconds = time.perf_counter() - started
                    reply = _reply(response)
                    sample.answers.append(Answer(request, response.status_code, seconds, reply))
        finally:
            server.stop()
    return sample


def _reply(response: Any) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text
    if isinstance(body, dict):  # the course's views answer {"reply": ...}, {"summary": ...}
        for name in ("reply", "summary", "error"):
            if body.get(name):
                return str(body[name])
    return str(body)


def _cell(text: str) -> str:
    """`text` shortened to one table cell: one line, no pipes."""
    flat = " ".join(text.split()).replace("|", "\\|")
    return flat if len(flat) <= EXCERPT_CHARS else flat[: EXCERPT_CHARS - 1] + "…"


def _without_credentials(url: str) -> str:
    """The URL with any user:password@ removed, so it can be shown."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    return parts._replace(netloc=parts.hostname or "").geturl()
