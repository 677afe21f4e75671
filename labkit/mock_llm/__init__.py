"""An OpenAI-compatible mock LLM: real TCP, a latency model, rate limits, faults and stats.

    from labkit.mock_llm import MockLLM

    with MockLLM(preset="fast") as llm:
        client = openai.OpenAI(base_url=llm.base_url, api_key="any")
        client.chat.completions.create(model="mock-gpt", messages=[...])
        client.responses.create(model="mock-gpt", input="...")  # the Responses API
        llm.stats()["connections_total"]

`labkit mock-llm --help` lists the settings. Names are imported on first use, so that
`labkit`'s command line (which imports `labkit.mock_llm.cli`) stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from labkit.mock_llm.app import MockLLMApp, create_app
    from labkit.mock_llm.content import count_tokens, reply_for
    from labkit.mock_llm.errors import ApiError
    from labkit.mock_llm.faults import FAULT_KINDS
    from labkit.mock_llm.latency import PRESETS, Distribution, LatencyModel
    from labkit.mock_llm.server import MockLLM, MockLLMError
    from labkit.mock_llm.service import MockService
    from labkit.mock_llm.settings import DEFAULT_MODELS, Settings, SettingsError
    from labkit.mock_llm.transport import MockLLMTransport

_EXPORTS = {
    "ApiError": "errors",
    "DEFAULT_MODELS": "settings",
    "Distribution": "latency",
    "FAULT_KINDS": "faults",
    "LatencyModel": "latency",
    "MockLLM": "server",
    "MockLLMApp": "app",
    "MockLLMError": "server",
    "MockLLMTransport": "transport",
    "MockService": "service",
    "PRESETS": "latency",
    "Settings": "settings",
    "SettingsError": "settings",
    "count_tokens": "content",
    "create_app": "app",
    "reply_for": "content",
}

__all__ = [
    "ApiError",
    "DEFAULT_MODELS",
    "Distribution",
    "FAULT_KINDS",
    "LatencyModel",
    "MockLLM",
    "MockLLMApp",
    "MockLLMError",
    "MockLLMTransport",
    "MockService",
    "PRESETS",
    "Settings",
    "SettingsError",
    "count_tokens",
    "create_app",
    "reply_for",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'labkit.mock_llm' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"labkit.mock_llm.{module}"), name)
    globals()[name] = value  # the next lookup skips this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
