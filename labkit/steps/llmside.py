"""What the mock LLM saw during a check, and what it answers: evidence the learner cannot forge.

The mock's counters (`lab_mock().stats()`) are kept by the mock's own process, which is the
grader's when grading; its replies are salted there, so a check learns the reply to a prompt
by asking the mock itself, after the measured block:

    before = llm.stats()
    ...                                               # the learner's code runs
    seen = Seen(before, llm.stats())                  # seen.calls, seen.sync_sdk, seen.peak
    want = await mock_replies(llm, ["prompt one", "prompt two"])
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

# The SDK's X-Stainless-Async header values, as the mock counts them (labkit.mock_llm.stats).
ASYNC_SDK, SYNC_SDK = "async:asyncio", "false"


@dataclass
class Seen:
    """The mock's counters between two `stats()` snapshots."""

    before: dict[str, Any]
    after: dict[str, Any]

    def delta(self, key: str) -> int:
        return int(self.after.get(key, 0)) - int(self.before.get(key, 0))

    @property
    def calls(self) -> int:
        return self.delta("requests_total")

    @property
    def connections(self) -> int:
        return self.delta("connections_total")

    @property
    def cancelled(self) -> int:
        return self.delta("cancelled_total")

    @property
    def errors(self) -> int:
        return self.delta("errors_total")

    @property
    def peak(self) -> int:
        """Calls in flight at once at most (meaningful when `before` came from a reset)."""
        return int(self.after.get("in_flight_peak", 0))

    def sdk(self, value: str) -> int:
        """Calls whose X-Stainless-Async header was `value` ("absent" for none)."""
        then = self.before.get("sdk_async", {}).get(value, 0)
        return int(self.after.get("sdk_async", {}).get(value, 0)) - int(then)

    @property
    def sync_sdk(self) -> int:
        return self.sdk(SYNC_SDK)

    def models(self) -> dict[str, int]:
        """Calls per model name."""
        counts = {}
        for name, row in self.after.get("models", {}).items():
            n = row["requests"] - self.before.get("models", {}).get(name, {}).get("requests", 0)
            if n:
                counts[name] = n
        return counts


async def mock_replies(
    llm: Any, prompts: list[str], *, model: str | None = None, system: str | None = None
) -> list[str]:
    """The mock's reply text to each prompt sent as `messages_for(prompt)` (it counts the calls)."""
    import httpx2
    from django.conf import settings

    from labproject.ai.llm import messages_for

    url = f"{llm.base_url.rstrip('/')}/chat/completions"
    # The mock's own key: settings may hold the learner's real key (their endpoint configured).
    headers = {"authorization": "Bearer sk-lab-mock"}
    async with httpx2.AsyncClient(timeout=60.0) as http:
        answers = await asyncio.gather(
            *(
                http.post(
                    url,
                    headers=headers,
                    json={
                        "model": model or settings.LLM_MODEL,
                        "messages": messages_for(prompt, system),
                    },
                )
                for prompt in prompts
            )
        )
    replies = []
    for answer in answers:
        answer.raise_for_status()
        replies.append(str(answer.json()["choices"][0]["message"]["content"]))
    return replies


def shorten(text: object, limit: int = 90) -> str:
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"
