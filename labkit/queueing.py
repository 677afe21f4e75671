"""How a model's server queues: a request alone, n at once, and a client that leaves early.

A provider's API (and the kit's mock) decodes many requests side by side; a small model's own
server decodes as many as it has slots for and queues the rest, so a queued request's first
token waits for the replies ahead of it. `measure_queueing` measures that through the official
SDK, streaming, against any OpenAI-compatible endpoint. Defined in notebook 07, section 10:

    reading = await measure_queueing(base_url, api_key, model, label="my server")
    reading            # a table: each request's time to first token, total time and tokens
    reading.verdict()  # what the timings say: side by side or one at a time, and the leaver
    plot_queueing(reading)
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import httpx2
import openai

from labkit.timeline import SERVED_COLOUR, WAITING_COLOUR

if TYPE_CHECKING:
    from labkit.load.plots import LabFigure

__all__ = ["Queueing", "RealServer", "Stream", "measure_queueing", "plot_queueing", "real_server"]

# A prompt whose reply runs to the budget, so every reply is about as long as the others.
PROMPT = "Tell a long story about a web server that answers every request."
# The client that leaves asks for this many times the budget: were its reply written on after it
# left, the next request in a queue would wait for several replies' worth of tokens, not one.
LEAVER_BUDGET = 4
# The request sent as a client left, waiting more than this share of a typical reply's streaming
# for its first token, waited for the abandoned reply: wide, because on a busy machine one token
# can take ten times as long as the next.
WAIT_SHARE = 0.5


@dataclass(frozen=True)
class Stream:
    """One streamed request: when it was sent, its first token and its end, in seconds."""

    label: str
    began_s: float  # after the first request of its group was sent
    ttft_s: float  # time to first token; the total when no token came
    total_s: float
    tokens: int
    left: bool = False  # the client closed the stream after the first token

    @property
    def streaming_s(self) -> float:
        """Seconds from the first token to the end of the reply."""
        return self.total_s - self.ttft_s

    @property
    def tokens_per_s(self) -> float:
        """How fast the reply was written once it had begun."""
        return (self.tokens - 1) / self.streaming_s if self.tokens > 1 and self.streaming_s else 0.0


@dataclass(frozen=True)
class Queueing:
    """What `measure_queueing` saw: alone, n at once, a client that left and the next request."""

    label: str
    model: str
    max_tokens: int
    alone: Stream
    together: tuple[Stream, ...]  # sorted by time to first token
    left: Stream
    after_leaving: Stream

    @property
    def queued(self) -> bool:
        """Whether the last of the requests sent together got its first token only once the
        first one's reply was over: the server decoded them one at a time, not side by side."""
        return self.together[-1].ttft_s > self.together[0].total_s

    @property
    def kept_generating(self) -> bool | None:
        """Whether the server went on writing the reply of the client that left. None when the
        timing cannot tell: a server that decodes side by side never makes the next one wait."""
        if not self.queued:
            return None
        waited = self.after_leaving.ttft_s - self.first_token_s
        return waited > WAIT_SHARE * (self.reply_s - self.first_token_s)

    # Typical values over the requests served whole, not one of them: on a busy machine any
    # single request can stall for seconds.
    @property
    def first_token_s(self) -> float:
        """The quickest time to first token: a request that waited for nobody."""
        return min(s.ttft_s for s in (self.alone, *self.together))

    @property
    def reply_s(self) -> float:
        """A typical reply's time once the server is on it: the quickest first token, then the
        median time to stream the rest."""
        streaming = statistics.median(s.streaming_s for s in (self.alone, *self.together))
        return self.first_token_s + streaming

    def verdict(self) -> str:
        """Two sentences on what the timings show."""
        n, last, alone = len(self.together), self.together[-1], self.alone
        shape = (
            f"{n} at once were decoded {'one at a time' if self.queued else 'side by side'}: the "
            f"last one's first token came after {last.ttft_s * 1000:.0f} ms, against "
            f"{alone.ttft_s * 1000:.0f} ms alone."
        )
        after = f"{self.after_leaving.ttft_s * 1000:.0f} ms"
        if self.kept_generating is None:
            leaver = f"The request sent as a client left got its first token after {after}."
        else:
            leaver = (
                f"The request sent as a client left got its first token after {after} (a whole "
                f"reply takes about {self.reply_s * 1000:.0f} ms): the server "
                + ("kept writing the abandoned reply first." if self.kept_generating
                   else "stopped the abandoned reply.")
            )  # fmt: skip
        return f"{shape} {leaver}"

    def rows(self) -> list[Stream]:
        return [self.alone, *self.together, self.left, self.after_leaving]

    def _repr_markdown_(self) -> str:
        lines = [
            f"**{self.label}** ({self.model}, max_tokens={self.max_tokens}): {self.verdict()}\n",
            "| request | sent at (ms) | first token (ms) | total (ms) | tokens |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {s.label} | {s.began_s * 1000:.0f} | {s.ttft_s * 1000:.0f} "
            f"| {s.total_s * 1000:.0f} | {s.tokens} |"
            for s in self.rows()
        ]
        return "\n".join(lines)

    def plot(self) -> LabFigure:
        return plot_queueing(self)


async def measure_queueing(
    base_url: str,
    api_key: str,
    model: str,
    *,
    label: str = "server",
    n: int = 3,
    max_tokens: int = 32,
    timeout_s: float = 120.0,
) -> Queueing:
    """Stream one request alone, then `n` at once, then one whose client leaves after the first
    token followed at once by another; 4 + n short calls of at most `max_tokens` tokens (the one
    that leaves asks for 4 times as many, and reads one).

        reading = await measure_queueing(mock.base_url, "any", "mock-gpt", label="the mock")
    """
    # A new connection for every request: with no retries (they would skew the timings), a call
    # on a kept-alive connection the server has just closed fails. One did, against llama.cpp's
    # server, with "Connection error"; none has since.
    fresh = openai.DefaultAsyncHttpxClient(limits=httpx2.Limits(max_keepalive_connections=0))
    async with openai.AsyncOpenAI(
        base_url=base_url, api_key=api_key, timeout=timeout_s, max_retries=0, http_client=fresh
    ) as client:

        async def stream(
            name: str, origin: float, *, leave: bool = False, budget: int = max_tokens
        ) -> Stream:
            began = time.perf_counter()
            first: float | None = None
            tokens = usage = 0
            response = await client.chat.completions.create(
                model=model,
                messages=[{"role": "user", "content": PROMPT}],
                max_tokens=budget,
                stream=True,
                stream_options={"include_usage": True},
            )
            async with response:  # leaving the block closes the connection, ending the read
                async for chunk in response:
                    if chunk.usage is not None:
                        usage = chunk.usage.completion_tokens
                    if chunk.choices and chunk.choices[0].delta.content:
                        first = first or time.perf_counter()
                        tokens += 1
                        if leave:
                            break
            ended = time.perf_counter()
            return Stream(
                name, began - origin, (first or ended) - began, ended - began,
                usage or tokens, left=leave,
            )  # fmt: skip

        # A first call pays for what is done once (the SDK's imports, the server's caches).
        await stream("warm-up", time.perf_counter(), budget=1)
        alone = await stream("alone", time.perf_counter())
        origin = time.perf_counter()
        together = await asyncio.gather(*(stream("", origin) for _ in range(n)))
        origin = time.perf_counter()
        left = await stream(
            "left after its first token", origin, leave=True, budget=LEAVER_BUDGET * max_tokens
        )
        after = await stream("sent as that client left", origin)
    # Named in the order their first tokens came: a queue shows as a staircase.
    ranked = [
        replace(s, label=f"{rank} of {n} at once")
        for rank, s in enumerate(sorted(together, key=lambda s: s.ttft_s), 1)
    ]
    return Queueing(label, model, max_tokens, alone, tuple(ranked), left, after)


def plot_queueing(*readings: Queueing) -> LabFigure:
    """One panel per reading, one bar per request: waiting for the first token, then streaming.

    For example:

        plot_queueing(mock_reading, real_reading)
    """
    import textwrap

    from labkit.load.plots import new_figure

    figure = new_figure(figsize=(5.5 * len(readings), 3.6))
    axes = figure.subplots(1, len(readings), squeeze=False)[0]
    for ax, reading in zip(axes, readings, strict=True):
        rows = reading.rows()
        positions = range(len(rows))
        ax.barh(positions, [s.ttft_s for s in rows], left=[s.began_s for s in rows],
                color=WAITING_COLOUR, height=0.7, label="waiting for the first token")  # fmt: skip
        ax.barh(positions, [s.streaming_s for s in rows],
                left=[s.began_s + s.ttft_s for s in rows],
                color=SERVED_COLOUR, height=0.7, label="streaming the reply")  # fmt: skip
        ax.set_yticks(list(positions), [s.label for s in rows], fontsize=8)
        ax.set_ylim(len(rows) - 0.5, -0.5)
        for edge in (0.5, len(reading.together) + 0.5):  # alone | at once | a client leaves
            ax.axhline(edge, color="#999999", linewidth=0.8)
        ax.set_xlim(left=0)
        ax.set_xlabel("seconds after the group's first request was sent")
        title = f"{reading.label}: " + ("one at a time" if reading.queued else "side by side")
        ax.set_title("\n".join(textwrap.wrap(title, 60)), fontsize=10, loc="left")
        ax.grid(axis="x", alpha=0.3)
    figure.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=2,
                  fontsize=8)  # fmt: skip
    return figure


@dataclass(frozen=True)
class RealServer:
    """The real model `real_server()` found: where it answers, or (unavailable) why not."""

    note: str  # one line for the learner: which server, what it costs, or why there is none
    label: str = ""
    base_url: str = ""
    api_key: str = ""
    model: str = ""
    max_tokens: int = 16

    @property
    def available(self) -> bool:
        return bool(self.base_url)


@contextmanager
def real_server(*, max_tokens: int = 16, n: int = 3) -> Iterator[RealServer]:
    """Your own endpoint if one is configured; else the local model, started for the block and
    stopped after it; else none, with a note saying how to get one. Never raises for lack of one.

        with real_server() as real:
            print(real.note)
            if real.available:
                reading = await measure_queueing(real.base_url, real.api_key, real.model)
    """
    from labkit.boot import endpoint

    calls = f"{n + 4} streamed calls of at most {max_tokens} tokens"
    mine = endpoint()
    if mine is not None:
        yield RealServer(
            f"Your endpoint at {mine['LLM_BASE_URL']}, model {mine['LLM_MODEL']}: {calls} (on a "
            "paid API these cost a little; n and max_tokens are kept small for that).",
            f"your endpoint ({mine['LLM_MODEL']})", mine["LLM_BASE_URL"], mine["LLM_API_KEY"],
            mine["LLM_MODEL"], max_tokens,
        )  # fmt: skip
        return
    from labkit.sizing import checking

    if checking():
        yield RealServer(
            "A checking run (LAB_VERIFY/LAB_GRADING) with no endpoint configured: the real "
            "server is skipped, and only the mock is measured."
        )
        return
    from labkit.local_llm import LocalLLM, LocalLLMMissing
    from labkit.servers.process import ServerProcessError

    started = time.perf_counter()
    try:
        # One slot, as `labkit local-llm` runs it; a context as small as these calls need.
        local = LocalLLM(max_tokens=32, ctx=1024).start()
    except LocalLLMMissing:
        yield RealServer(
            "No real server here: configure your own endpoint (notebook 00, section 6), or "
            "install a small local model with `labkit local-llm --install` and run this again."
        )
        return
    except ServerProcessError as error:
        yield RealServer(f"The local model did not start: {str(error).splitlines()[0]}")
        return
    try:
        yield RealServer(
            f"SmolLM2-135M-Instruct on this machine (llama.cpp's server, {local.parallel} "
            f"slot, {local.threads} threads), loaded in {time.perf_counter() - started:.1f} s "
            f"for this section and stopped after it: {calls}.",
            f"SmolLM2-135M, llama.cpp, {local.parallel} slot",
            local.base_url, local.api_key, local.alias, max_tokens,
        )  # fmt: skip
    finally:
        local.stop()
