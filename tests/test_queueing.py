"""`measure_queueing`: side by side on the mock, one at a time on a one-slot llama.cpp server.

The real server's tests use the local-llm extra (skipped on a laptop without it, failed under
LAB_REQUIRE_SERVICES=1, as in tests/test_local_llm.py). Timings are compared as ratios with
wide margins, never against absolute values.
"""

from __future__ import annotations

import asyncio

import pytest

from labkit.local_llm import LocalLLM, LocalLLMMissing, find_model, require_engine
from labkit.mock_llm import MockLLM
from labkit.queueing import Queueing, Stream, measure_queueing, plot_queueing, real_server
from tests.conftest import require_service


def _require_local_llm() -> None:
    try:
        require_engine()
        find_model()
    except LocalLLMMissing as exc:
        require_service("the local-llm extra", False, str(exc))


def _reading(ttfts: list[float], after_ttft: float) -> Queueing:
    """Readings drawn by hand: each reply streams for 1 s after its first token."""
    alone = Stream("alone", 0.0, 0.1, 1.1, 16)
    together = tuple(Stream(f"{i}", 0.0, t, t + 1.0, 16) for i, t in enumerate(ttfts))
    left = Stream("left", 0.0, 0.1, 0.1, 1, left=True)
    after = Stream("after", 0.1, after_ttft, after_ttft + 1.0, 16)
    return Queueing("hand-drawn", "m", 16, alone, together, left, after)


def test_a_staircase_is_a_queue_and_an_overlap_is_not():
    queue = _reading([0.1, 1.2, 2.3], after_ttft=0.15)  # each waits for the reply before it
    assert queue.queued and queue.kept_generating is False
    assert "one at a time" in queue.verdict() and "stopped the abandoned reply" in queue.verdict()
    kept = _reading([0.1, 1.2, 2.3], after_ttft=1.1)
    assert kept.kept_generating is True and "kept writing" in kept.verdict()
    side = _reading([0.1, 0.2, 0.3], after_ttft=1.1)
    assert not side.queued and side.kept_generating is None
    assert "side by side" in side.verdict()


def test_the_mock_decodes_side_by_side_and_cancels_a_stream_whose_client_left():
    async def measure(mock: MockLLM) -> Queueing:
        return await measure_queueing(mock.base_url, "any", "mock-gpt", label="mock", n=3,
                                      max_tokens=8)  # fmt: skip

    with MockLLM(preset="fast", connect_delay_s=0) as mock:
        mock.configure(latency_s=1.5)  # long beside a busy machine's stalls
        reading = asyncio.run(measure(mock))
        cancelled = mock.stats()["cancelled_total"]
    assert not reading.queued and reading.kept_generating is None
    assert [s.label for s in reading.together] == ["1 of 3 at once", "2 of 3 at once",
                                                   "3 of 3 at once"]  # fmt: skip
    # Three at once take about as long as one alone: none waited for another's reply.
    assert reading.together[-1].ttft_s < reading.alone.total_s * 0.8
    assert reading.together[-1].total_s < reading.alone.total_s * 1.8
    assert all(s.tokens == 8 for s in [reading.alone, *reading.together, reading.after_leaving])
    assert reading.left.left and reading.left.tokens == 1
    assert reading.left.total_s < reading.alone.total_s * 0.8
    assert cancelled >= 1  # the stream closed after its first token was cancelled at the mock
    assert "| 3 of 3 at once |" in reading._repr_markdown_()
    assert plot_queueing(reading, reading)._repr_png_().startswith(b"\x89PNG")


@pytest.fixture(scope="module")
def one_slot():
    """The real model with one slot: one request decoded at a time, the others queued."""
    _require_local_llm()
    with LocalLLM(max_tokens=32, ctx=1024, parallel=1) as llm:
        yield llm


def test_one_slot_queues_requests_and_stops_a_reply_whose_client_left(one_slot):
    reading = asyncio.run(
        measure_queueing(one_slot.base_url, one_slot.api_key, one_slot.alias, max_tokens=16)
    )
    first, second, third = reading.together
    assert reading.queued, reading._repr_markdown_()
    # The third waited for both replies ahead of it, not only for the first.
    assert third.ttft_s > first.total_s + second.streaming_s * 0.5, reading._repr_markdown_()
    # Measured: llama.cpp's server cancels a task whose client closed the connection, at its
    # next token; the next request then waits far less than the rest of the abandoned reply
    # (which asked for 64 tokens, capped at the server's 32).
    assert reading.kept_generating is False, reading._repr_markdown_()
    assert reading.after_leaving.ttft_s < reading.alone.ttft_s + reading.alone.streaming_s * 0.5


def test_three_slots_decode_side_by_side():
    _require_local_llm()
    with LocalLLM(max_tokens=32, ctx=1024, parallel=3) as llm:
        reading = asyncio.run(measure_queueing(llm.base_url, llm.api_key, llm.alias, max_tokens=16))
    # All three were under way before the first one's reply was over.
    assert not reading.queued, reading._repr_markdown_()


def test_real_server_skips_the_local_model_in_a_checking_run(monkeypatch):
    import labkit.boot as boot_module

    monkeypatch.setattr(boot_module, "_endpoint", None)
    monkeypatch.setenv("LAB_VERIFY", "1")
    with real_server() as real:
        assert not real.available
        assert "LAB_VERIFY" in real.note and "only the mock" in real.note


def test_real_server_prefers_your_endpoint(monkeypatch):
    import labkit.boot as boot_module

    mine = {"LLM_BASE_URL": "http://127.0.0.1:9/v1", "LLM_MODEL": "m", "LLM_API_KEY": "k"}
    monkeypatch.setattr(boot_module, "_endpoint", mine)
    with real_server(max_tokens=8, n=2) as real:
        assert (real.base_url, real.api_key, real.model) == ("http://127.0.0.1:9/v1", "k", "m")
        assert "6 streamed calls of at most 8 tokens" in real.note


def test_real_server_says_how_to_install_the_local_model(monkeypatch):
    import labkit.boot as boot_module
    from labkit.local_llm import engine

    monkeypatch.setattr(boot_module, "_endpoint", None)
    monkeypatch.delenv("LAB_VERIFY", raising=False)
    monkeypatch.delenv("LAB_GRADING", raising=False)
    monkeypatch.setattr(engine, "ENGINE_MODULE", "xllamacpp_not_installed")
    with real_server() as real:
        assert not real.available and "labkit local-llm --install" in real.note
