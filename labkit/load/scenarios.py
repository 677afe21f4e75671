"""What a load run sends: scenarios as plain data the Locust subprocess can read from JSON."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

# Varied questions a chat view might get. Unless a scenario repeats them on purpose, each
# request gets a unique suffix, so a response cache can't answer any of them.
PROMPTS: tuple[str, ...] = (
    "Explain async views in Django in two sentences.",
    "What does a connection pool do for an HTTP client?",
    "Why would a WSGI worker sit idle while waiting for an API?",
    "Summarise Little's law for a web developer.",
    "When should I cache an LLM response, and for how long?",
    "What is the N+1 query problem?",
    "How does select_related differ from prefetch_related?",
    "Give three signs that a server is queueing requests.",
    "What is the difference between p50 and p95 latency?",
    "Why does a load generator need its own CPU headroom?",
    "What is an event loop, in one paragraph?",
    "How do rate limits on an LLM API show up in my logs?",
)


@dataclass(frozen=True)
class Scenario:
    """One kind of request, repeated for the whole run.

    `path` may hold `{id}`, replaced in turn by each id of `ids` (first and last, inclusive).
    With `prompts`, the body is `{"prompt": ...}`: a share `repeat_share` of requests reuse
    one of the first `hot_prompts` prompts verbatim (cache hits after the first), the rest are
    unique. Otherwise `body`, if given, is sent as JSON.

    >>> Scenario.summary(documents=50).path
    '/api/documents/{id}/summary/'
    """

    name: str
    method: str = "GET"
    path: str = "/"
    body: dict[str, Any] | None = None
    prompts: tuple[str, ...] = ()
    ids: tuple[int, int] | None = None
    repeat_share: float = 0.0
    hot_prompts: int = 5
    label: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.path.startswith("/"):
            raise ValueError(f"Scenario path must start with '/', got {self.path!r}.")
        if not 0.0 <= self.repeat_share <= 1.0:
            raise ValueError(f"repeat_share is a share of requests, 0..1; got {self.repeat_share}.")
        if self.repeat_share and not self.prompts:
            raise ValueError("repeat_share needs prompts to repeat; this scenario sends none.")
        if "{id}" in self.path and self.ids is None:
            raise ValueError(f"Path {self.path!r} has an {{id}} but the scenario gives no ids.")
        if self.ids is not None and not 0 < self.ids[0] <= self.ids[1]:
            raise ValueError(f"ids are (first, last) with 0 < first <= last; got {self.ids}.")

    @classmethod
    def chat(cls, *, repeat_share: float = 0.0, prompts: tuple[str, ...] = PROMPTS) -> Scenario:
        """POST varied prompts to the chat view, optionally repeating a share of them."""
        name = "chat" if not repeat_share else "mix"
        return cls(name, "POST", "/api/chat/", prompts=prompts, repeat_share=repeat_share)

    @classmethod
    def summary(cls, *, documents: int = 20) -> Scenario:
        """GET the summary of documents 1..documents in turn."""
        return cls(
            "summary",
            "GET",
            "/api/documents/{id}/summary/",
            ids=(1, documents),
            label="/api/documents/[id]/summary/",
        )

    @classmethod
    def mix(cls, *, repeat_share: float = 0.5) -> Scenario:
        """Chat where `repeat_share` of prompts repeat a few hot ones (the caching step)."""
        return cls.chat(repeat_share=repeat_share)

    @classmethod
    def custom(
        cls,
        path: str,
        *,
        method: str = "GET",
        body: dict[str, Any] | None = None,
        name: str = "custom",
    ) -> Scenario:
        """Send the same request to any path of the app under test."""
        return cls(name, method.upper(), path, body=body)

    def replace(self, **changes: Any) -> Scenario:
        """Return a copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    @property
    def request_name(self) -> str:
        """The name requests are grouped under: the path, with ids folded together."""
        return self.label or self.path.replace("{id}", "[id]")

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON the locustfile reads."""
        data = dataclasses.asdict(self)
        data["prompts"] = list(self.prompts)
        data["ids"] = list(self.ids) if self.ids else None
        data["name"] = self.request_name
        data["scenario"] = self.name
        return data

    def describe(self) -> str:
        """One line for tables: name, method and path, and the repeated share."""
        text = f"{self.name} ({self.method} {self.path}"
        if self.ids:
            text += f", ids {self.ids[0]}..{self.ids[1]}"
        if self.repeat_share:
            text += f", {self.repeat_share:.0%} repeated prompts"
        return text + ")"


SCENARIOS: dict[str, Scenario] = {
    "chat": Scenario.chat(),
    "summary": Scenario.summary(),
    "mix": Scenario.mix(),
}


def resolve_scenario(scenario: str | Scenario, *, repeat_share: float | None = None) -> Scenario:
    """Turn a preset name or a Scenario into a Scenario, applying `repeat_share` if given."""
    if isinstance(scenario, str):
        try:
            chosen = SCENARIOS[scenario]
        except KeyError:
            names = ", ".join(sorted(SCENARIOS))
            raise ValueError(
                f"Unknown scenario {scenario!r}; presets are {names}, "
                "or pass Scenario.custom(path, method=..., body=...)."
            ) from None
    elif isinstance(scenario, Scenario):
        chosen = scenario
    else:
        raise TypeError(f"scenario must be a preset name or a Scenario, not {type(scenario)!r}.")
    if repeat_share is not None and repeat_share != chosen.repeat_share:
        chosen = chosen.replace(repeat_share=repeat_share)
    return chosen
