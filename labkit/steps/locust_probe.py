"""06.2's judging of a locustfile: what it may name, and what a short run of it showed.

`static_checks(source)` refuses a file that does not parse or aims at another machine;
`judge(seen, counts, stderr)` reads what the check's probe view saw and what Locust counted.
"""

from __future__ import annotations

import ast
import ipaddress
import re
import statistics
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from labkit.exercises import Incorrect, NotAttempted

LOCUSTFILE = "locustfile.py"
USERS, RUN_S, SERVE_S = 5, 4, 0.1
# A user that thinks for at least a second between requests is never this quick again.
MIN_GAP_S = 0.8
URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s\"'/]+")


def locust_counts(path: Path) -> Counter:
    """What Locust counted, per request: (method, name, "answered" or "failed") -> n."""
    import json

    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return Counter()
    counts: Counter = Counter()
    for entry in entries if isinstance(entries, list) else []:
        failed = int(entry.get("num_failures", 0))
        key = (str(entry.get("method")), str(entry.get("name")))
        counts[(*key, "answered")] += int(entry.get("num_requests", 0)) - failed
        counts[(*key, "failed")] += failed
    return +counts


def static_checks(source: str) -> None:
    """Refuse a file that does not parse or that would send load to another machine."""
    try:
        tree = ast.parse(source)
    except SyntaxError as error:
        raise Incorrect(
            f"{LOCUSTFILE} is not valid Python: {error.msg} (line {error.lineno}).",
            evidence=(error.text or "").rstrip(),
        ) from None
    if any(_raises_not_implemented(node) for node in ast.walk(tree)):
        raise NotAttempted(
            f"{LOCUSTFILE} still raises NotImplementedError: write the task, run the cell, "
            "then check again."
        )
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
            continue
        for found in URL.findall(node.value):
            host = urlsplit(found).hostname or ""
            if not _is_loopback(host):
                raise Incorrect(
                    f"{LOCUSTFILE} names the host {host!r} (line {node.lineno}): a load test "
                    "aimed at a machine you do not own is an attack, and the lab never sends "
                    "one, so this file was not run. Leave the host out of the file and give "
                    "it with `--host http://127.0.0.1:8000` on the command line.",
                    evidence=f"line {node.lineno}: {found}",
                )


def _raises_not_implemented(node: ast.AST) -> bool:
    """True for `raise NotImplementedError` or `raise NotImplementedError(...)` (the starter's)."""
    if not isinstance(node, ast.Raise) or node.exc is None:
        return False
    exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
    return isinstance(exc, ast.Name) and exc.id == "NotImplementedError"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def judge(seen: list[dict[str, Any]], statuses: Counter, stderr: str) -> str:
    """Say what the short run shows: the right requests, paced like people, varied prompts."""
    total = sum(statuses.values())
    tail = "\n".join(stderr.strip().splitlines()[-12:])
    if not total:
        raise Incorrect(
            f"Locust ran your {LOCUSTFILE} for {RUN_S} s with {USERS} users, and no request "
            "reached the server. Its output ends:",
            evidence=tail or "(nothing)",
        )
    listed = ", ".join(f"{n} × {m} {p} → {s}" for (m, p, s), n in statuses.most_common(4))
    good = [r for r in seen if r["method"] == "POST" and r["prompt"] and r["prompt"].strip()]
    if len(good) < total / 2:
        raise Incorrect(
            f"{total} requests reached the server in {RUN_S} s, {len(good)} of them a POST "
            'to /api/chat/ with a JSON body {"prompt": ...}: the chat endpoint takes JSON, '
            "posted. The server saw:",
            evidence=listed,
        )
    gaps = []
    for port in {r["port"] for r in good}:
        times = sorted(r["t"] for r in good if r["port"] == port)
        gaps += [b - a for a, b in zip(times, times[1:], strict=False)]
    gap_s = statistics.median(gaps) if gaps else None
    if gap_s is not None and gap_s < MIN_GAP_S:
        raise Incorrect(
            f"{len(good)} chat requests from {USERS} users in {RUN_S} s: each user sent its "
            f"next request {gap_s:.2f} s after the previous one (median), as soon as the "
            f"{SERVE_S:g} s answer came. Nobody types that fast: without a `wait_time` a user "
            "never pauses, and the test measures a flood, not visitors. Add "
            "`wait_time = between(1, 3)`.",
            evidence=listed,
        )
    prompts = Counter(r["prompt"] for r in good)
    if len(good) > 2 and len(prompts) == 1:
        raise Incorrect(
            f"All {len(good)} chat requests sent the same prompt, {next(iter(prompts))!r}: "
            "a response cache answers every one after the first, and the test measures the "
            "cache, not the LLM path. Vary the prompt per request.",
            evidence=listed,
        )
    gap = "" if gap_s is None else f", each user pausing {gap_s:.1f} s between requests (median)"
    return (
        f"{len(good)} POSTs of JSON prompts to /api/chat/ from {USERS} users in {RUN_S} s"
        f"{gap}, {len(prompts)} different prompts. Take the file home: point `--host` at "
        "your own server."
    )
