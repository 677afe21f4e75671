"""When a load run's figures can't be taken at face value: failures first, then warnings.

A run whose requests mostly failed measured the failures: `failure()` says so in one line that
tables, comparisons and plots show before anything else, and no ratio is drawn from it.
`trust_warnings()` lists what a learner can act on: too few requests, a saturated or late load
generator, a queue that grew, a bound the run beat, or a busy machine far below the bound.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from labkit.load.results import LoadResult

# Below 20 completed requests not one sample lies beyond the p95: it is the slowest request.
# Every size's shortest demo run completes more (quick: 4 s x 6 arrivals/s), so the warning
# only shows on runs a learner made too short, and says how to lengthen them.
MIN_REQUESTS = 20
# Above this share of failures the latency figures describe the errors, not the view.
MAX_ERROR_RATE = 0.5
# A Locust process using this much of a core on average is the bottleneck, not the server:
# it is a mean over the run, so the busy moments were at 100% and their timings stretched.
SATURATED_CPU = 85.0
# Tolerated share of open-loop arrivals leaving late before we distrust the clock.
MAX_LATE_SHARE = 0.01
# An open-loop arrival leaving later than this after its slot counts as late.
LATE_MS = 100.0
# A run under this share of its Little's-law bound is far below it: say why, if we know.
FAR_BELOW_BOUND = 0.5


def failed(result: LoadResult) -> bool:
    """Nothing answered, or most requests failed: the figures describe the failures."""
    return result.requests == 0 or result.error_rate > MAX_ERROR_RATE


def failure(result: LoadResult) -> str | None:
    """One line saying the run failed and how, or None for a run that measured the view."""
    if result.requests == 0:
        return "This run failed: no request completed, so there is nothing to measure."
    if not failed(result):
        return None
    kinds = ", ".join(f"{k} {n}" for k, n in result.errors_by_kind.items())
    hint = ""
    top = next(iter(result.errors_by_kind), "")
    if top.startswith("http_4"):
        hint = " The view refused the requests: fix it (is its exercise done?), then run again."
    elif top.startswith("http_5"):
        hint = " The view raised: its traceback is in the server's log."
    return (
        f"This run failed: {result.errors} of {result.requests} requests "
        f"({result.error_rate:.0%}) were errors ({kinds}). Its latency and throughput "
        f"describe the failures, not the view.{hint}"
    )


def trust_warnings(result: LoadResult) -> list[str]:
    """Say why the figures of a run may not mean what they seem to."""
    found = []
    if failed(result):  # the headline says it all; nothing else about this run is a result
        return found
    if result.requests < MIN_REQUESTS:
        found.append(
            f"Only {result.requests} requests completed: too few for a stable p95 (aim for "
            f"at least {MIN_REQUESTS}: a longer duration_s, or more users)."
        )
    if result.generator_cpu is not None and result.generator_cpu >= SATURATED_CPU:
        found.append(
            f"The load generator was saturated (Locust used {result.generator_cpu:.0f}% of a "
            "core): the limit measured may be the client's, not the server's."
        )
    if result.efficiency is not None and result.efficiency > 1.1 and result.mode == "closed":
        found.append(
            f"rps is {result.efficiency:.0%} of the Little's-law bound: the latency_s or "
            "workers given don't describe this server."
        )
    arrivals = result.arrivals or {}
    if arrivals.get("dropped"):
        found.append(
            f"{arrivals['dropped']} of {arrivals['scheduled']} arrivals were dropped: "
            f"max_in_flight ({arrivals.get('max_in_flight', '?')}) requests were already "
            "waiting for answers."
        )
    sent = arrivals.get("sent", 0)
    if sent and arrivals.get("late", 0) / sent > MAX_LATE_SHARE:
        found.append(
            f"{arrivals['late']} of {sent} arrivals left more than {LATE_MS:.0f} ms late: the "
            "load generator could not keep its clock, so fewer arrived than asked."
        )
    offered = arrivals.get("scheduled", 0) / result.window_s
    # A server that keeps up still has about offered x latency requests in flight when the run
    # stops (Little's law); on a 4 s run those alone put rps near 0.9 x offered. A queue grew
    # only if arrivals were dropped or more than twice that many were left waiting. The
    # scenario's latency_s, when given, is the service time; a growing queue inflates the mean.
    service_s = result.latency_s or (result.mean_ms or 0) / 1000
    left = arrivals.get("unfinished", 0)
    grew = arrivals.get("dropped", 0) > 0 or left > 2 * offered * service_s
    if result.mode == "open" and offered and result.rps < 0.9 * offered and grew:
        found.append(
            f"The server answered {result.rps:.1f} req/s of {offered:.1f} arriving: a queue "
            f"grew all run ({arrivals.get('unfinished', 0)} requests still waiting at the "
            "end), so latency keeps rising the longer the run."
        )
    if (
        result.machine is not None
        and result.efficiency is not None
        and result.efficiency < FAR_BELOW_BOUND
        and result.machine.busy
    ):
        found.append(f"rps is {result.efficiency:.0%} of its bound. {result.machine.finding()}")
    return found
