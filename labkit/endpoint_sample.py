"""A few requests to a notebook's view with its LLM calls on your own endpoint.

The notebooks measure through the mock (latency, faults and load need its controls). When you
configured an endpoint of your own (notebook 00, section 6; `labkit local-llm` serves a small
real model here), one cell per notebook serves the view it built on a fresh in-kernel server
with the LLM settings pointed at that endpoint, and asks it a few questions one after another:
the latency and replies of a real model, beside the mock's.

    sample = await try_endpoint(chat, prompts=["What is an async view?", "And a sync one?"])
    display(sample)   # a table; without an endpoint, one line saying how to configure one
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
    """One request to the view: its prompt, HTTP status, seconds and the start of the reply."""

    prompt: str
    status: int
    seconds: float
    reply: str


@dataclass
class EndpointSample:
    """What a view answered with its LLM calls on your endpoint, or why nothing was sent."""

    model: str = ""
    base_url: str = ""
    budget_s: float = 0.0
    asked: int = 0  # prompts the cell offered; fewer are sent when the first answer is slow
    answers: list[Answer] = field(default_factory=list)
    skipped: str = ""

    def _repr_markdown_(self) -> str:
        if self.skipped:
            return self.skipped
        first = self.answers[0]
        left_out = self.asked - len(self.answers)
        budget = (
            f" The first took {first.seconds:.2f} s, so {left_out} of the {self.asked} prompts "
            f"were left out to stay within this cell's {self.budget_s:g} s."
            if left_out
            else ""
        )
        rows = "\n".join(
            f"| {a.prompt} | {a.status} | {a.seconds:.2f} | {_cell(a.reply)} |"
            for a in self.answers
        )
        return (
            f"Your endpoint ({self.base_url}, model `{self.model}`) through this notebook's view, "
            f"one request after another.{budget}\n\n"
            f"| prompt | status | seconds | reply |\n|---|---|---|---|\n{rows}"
        )

    def __str__(self) -> str:
        return self._repr_markdown_()


async def try_endpoint(
    view: Any,
    *,
    prompts: list[str],
    route: str = "chat",
    path: str = "/api/chat/",
    budget_s: float = 30.0,
) -> EndpointSample:
    """Serve `view` behind `route` with the LLM on your endpoint and POST each prompt to `path`.

    The first answer's time decides how many of the other prompts fit in `budget_s`. Without an
    endpoint configured nothing is sent, and the sample says why.
    """
    import httpx2

    from labkit.boot import endpoint, on_endpoint
    from labkit.servers import ASGIServer
    from labproject import routes
    from labproject.asgi import application

    if endpoint() is None:
        return EndpointSample(skipped=NO_ENDPOINT)
    sample = EndpointSample(budget_s=budget_s, asked=len(prompts))
    with on_endpoint() as settings_now, routes.override(route, view):
        sample.model = settings_now["LLM_MODEL"]
        sample.base_url = _without_credentials(settings_now["LLM_BASE_URL"])
        server = ASGIServer(application, name="endpoint-sample").start()
        try:
            async with httpx2.AsyncClient(base_url=server.url, timeout=budget_s + 30) as http:
                for prompt in prompts:
                    if sample.answers and len(sample.answers) * sample.answers[0].seconds > (
                        budget_s - sample.answers[0].seconds
                    ):
                        break
                    started = time.perf_counter()
                    response = await http.post(path, json={"prompt": prompt})
                    seconds = time.perf_counter() - started
                    sample.answers.append(
                        Answer(prompt, response.status_code, seconds, _reply(response))
                    )
        finally:
            server.stop()
    return sample


def _reply(response: Any) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text
    if isinstance(body, dict):
        return str(body.get("reply") or body.get("error") or body)
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
