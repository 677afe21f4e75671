"""Scenarios are plain data the Locust subprocess reads from JSON."""

from __future__ import annotations

import json

import pytest

from labkit.load import SCENARIOS, Scenario
from labkit.load.scenarios import resolve_scenario


def test_presets() -> None:
    assert set(SCENARIOS) == {"chat", "summary", "mix"}
    chat = SCENARIOS["chat"]
    assert (chat.method, chat.path, chat.repeat_share) == ("POST", "/api/chat/", 0.0)
    assert len(set(chat.prompts)) >= 10
    summary = SCENARIOS["summary"]
    assert (summary.method, summary.ids) == ("GET", (1, 20))
    assert summary.request_name == "/api/documents/[id]/summary/"
    assert SCENARIOS["mix"].repeat_share == 0.5


def test_summary_ids_are_configurable() -> None:
    assert Scenario.summary(documents=50).ids == (1, 50)


def test_resolve_applies_repeat_share_and_explains_unknown_names() -> None:
    assert resolve_scenario("chat", repeat_share=0.25).repeat_share == 0.25
    assert resolve_scenario("mix").repeat_share == 0.5
    with pytest.raises(ValueError, match="presets are chat, mix, summary"):
        resolve_scenario("chats")
    with pytest.raises(ValueError, match="needs prompts"):
        resolve_scenario("summary", repeat_share=0.5)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"path": "api/"}, "must start with '/'"),
        ({"path": "/d/{id}/"}, "gives no ids"),
        ({"path": "/d/{id}/", "ids": (0, 3)}, "0 < first"),
        ({"prompts": ("a",), "repeat_share": 1.5}, "0..1"),
    ],
)
def test_invalid_scenarios_say_why(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Scenario("bad", **options)


def test_to_dict_is_what_the_locustfile_reads() -> None:
    data = json.loads(json.dumps(Scenario.summary(documents=3).to_dict()))
    assert data["path"] == "/api/documents/{id}/summary/"
    assert data["ids"] == [1, 3]
    assert data["name"] == "/api/documents/[id]/summary/"
    custom = Scenario.custom("/api/x/", method="post", body={"a": 1}).to_dict()
    assert (custom["method"], custom["body"], custom["prompts"]) == ("POST", {"a": 1}, [])


def test_describe_names_the_request() -> None:
    assert Scenario.mix().describe() == "mix (POST /api/chat/, 50% repeated prompts)"
    assert "ids 1..20" in Scenario.summary().describe()
