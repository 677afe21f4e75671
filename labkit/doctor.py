"""`labkit doctor`: a preflight for learners and instructors.

Each check says what it found; the command exits 0 when the lab can run and 1 with the
reasons when it cannot. Optional parts (Redis, PostgreSQL) are reported, never required. The
LLM check makes one real chat completion: a server that lists models but answers empty replies,
or does not list LAB_LLM_MODEL, fails it; the latency and tokens per second are reported.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REQUIRED_PYTHON = (3, 12)
KEY_PACKAGES = (
    "Django",
    "openai",
    "httpx2",
    "httpx",
    "uvicorn",
    "gunicorn",
    "locust",
    "jupyterlab",
    "ipywidgets",
    "nbclient",
    "psycopg",
    "redis",
)


@dataclass
class Finding:
    name: str
    ok: bool
    detail: str
    required: bool = True

    @property
    def mark(self) -> str:
        if self.ok:
            return "ok"
        return "FAIL" if self.required else "--"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the findings as JSON")
    parser.add_argument(
        "--no-llm", action="store_true", help="skip the check that an LLM endpoint answers"
    )


def run(args: argparse.Namespace) -> int:
    findings = diagnose(check_llm=not args.no_llm)
    failed = [f for f in findings if f.required and not f.ok]
    if args.json:
        print(json.dumps({"ok": not failed, "findings": [asdict(f) for f in findings]}, indent=2))
    else:
        width = max(len(f.name) for f in findings)
        for finding in findings:
            print(f"{finding.mark:>4}  {finding.name:<{width}}  {finding.detail}")
        if failed:
            reasons = "; ".join(f"{f.name}: {f.detail}" for f in failed)
            print(f"\nThe lab cannot run here: {reasons}", file=sys.stderr)
        else:
            print("\nThe lab can run here.")
    return 1 if failed else 0


def diagnose(*, check_llm: bool = True) -> list[Finding]:
    """Run every check and return the findings in report order."""
    findings = [_python(), *_packages(), _state_dir(), _loopback(), _cpus(), _memory()]
    findings += [_binary("Redis", ["redis-server"]), _postgres()]
    if check_llm:
        findings += _llm()
    return findings


def _python() -> Finding:
    version = ".".join(map(str, sys.version_info[:3]))
    ok = sys.version_info[:2] >= REQUIRED_PYTHON
    need = ".".join(map(str, REQUIRED_PYTHON))
    return Finding(
        "python", ok, f"{version} at {sys.executable}" + ("" if ok else f"; need {need}+")
    )


def _packages() -> list[Finding]:
    from importlib.metadata import PackageNotFoundError, version

    locked = _locked_versions()
    findings = []
    for name in KEY_PACKAGES:
        try:
            installed = version(name)
        except PackageNotFoundError:
            findings.append(Finding(name, False, "not installed; run ./run-lab to set up"))
            continue
        want = locked.get(name.lower())
        detail = installed if not want or want == installed else f"{installed} (lock pins {want})"
        findings.append(Finding(name, True, detail))
    return findings


def _locked_versions() -> dict[str, str]:
    lock = Path(__file__).resolve().parent.parent / "requirements.lock"
    if not lock.exists():  # an installed wheel has no lock beside it
        return {}
    pins = {}
    for line in lock.read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, _, pinned = line.partition("==")
            pins[name.strip().lower().replace("_", "-")] = pinned.strip()
    return pins


def _state_dir() -> Finding:
    from labproject.state import state_dir

    try:
        path = state_dir()
        probe = path / ".doctor-probe"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        return Finding(
            "state dir", False, f"not writable: {exc}; set LAB_STATE_DIR to a writable folder"
        )
    return Finding("state dir", True, str(path))


def _loopback() -> Finding:
    try:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            sock.listen()
            port = sock.getsockname()[1]
    except OSError as exc:
        return Finding("loopback", False, f"cannot listen on 127.0.0.1: {exc}")
    return Finding("loopback", True, f"127.0.0.1 accepts listeners (tried port {port})")


def cpu_count() -> float:
    """CPUs this process may use: Binder's CPU_LIMIT, else the affinity mask."""
    limit = os.environ.get("CPU_LIMIT")
    if limit:
        try:
            return float(limit)
        except ValueError:
            pass
    return float(
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    )


def memory_bytes() -> int:
    """Memory this process may use: Binder's MEM_LIMIT, else the machine's total."""
    import psutil

    limit = os.environ.get("MEM_LIMIT")
    if limit and limit.isdigit():
        return int(limit)
    return psutil.virtual_memory().total


def _cpus() -> Finding:
    cpus = cpu_count()
    return Finding(
        "CPUs", cpus >= 1, f"{cpus:g}" + (" (CPU_LIMIT)" if os.environ.get("CPU_LIMIT") else "")
    )


def _memory() -> Finding:
    gib = memory_bytes() / 2**30
    ok = gib >= 1.5
    detail = f"{gib:.1f} GiB" + (" (MEM_LIMIT)" if os.environ.get("MEM_LIMIT") else "")
    return Finding("memory", ok, detail if ok else f"{detail}; the lab needs about 1.5 GiB")


def _binary(name: str, candidates: list[str]) -> Finding:
    for candidate in candidates:
        found = shutil.which(candidate)
        if found:
            return Finding(name, True, found, required=False)
    return Finding(
        name,
        False,
        "not found; its notebook parts fall back to in-process stand-ins",
        required=False,
    )


def _postgres() -> Finding:
    found = shutil.which("pg_ctl") or next(
        iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))), None
    )
    if found:
        return Finding("PostgreSQL", True, str(found), required=False)
    return Finding(
        "PostgreSQL", False, "not found; notebook 04 falls back to SQLite", required=False
    )


def _llm() -> list[Finding]:
    import openai

    base_url = os.environ.get("LAB_LLM_BASE_URL")
    model = os.environ.get("LAB_LLM_MODEL") or "mock-gpt"
    if base_url:
        key = os.environ.get("LAB_LLM_API_KEY") or os.environ.get("OPENAI_API_KEY") or "sk-lab-mock"
        return probe_llm(openai, base_url, key, model, "your endpoint")
    from labkit.mock_llm import MockLLM

    try:
        with MockLLM(preset="instant") as llm:
            return probe_llm(openai, llm.base_url, "sk-lab-mock", model, "the kit's mock")
    except Exception as exc:
        return [Finding("LLM", False, f"the mock LLM did not start: {exc}")]


# One short real call: enough to see empty replies, latency and speed, cheap on a paid API.
PROBE_PROMPT = "In one short sentence: what does an async view let Django do?"
PROBE_MAX_TOKENS = 24
PROBE_TIMEOUT_S = 60.0  # a small model on a busy CPU takes seconds; a queued one, longer


def probe_llm(openai, base_url: str, key: str, model: str, what: str) -> list[Finding]:
    """List the models, then make one chat completion: is the model listed, is the reply
    empty, how long did it take and how fast did tokens come?"""
    try:
        with openai.OpenAI(base_url=base_url, api_key=key, timeout=5, max_retries=0) as client:
            models = [entry.id for entry in client.models.list()]
    except openai.APIError as exc:
        # The message carries no key: the SDK never puts it in error text.
        detail = f"{what} at {base_url} did not answer: {type(exc).__name__}"
        return [Finding("LLM", False, detail)]
    listed = model in models
    shown = ", ".join(models[:5]) + (", ..." if len(models) > 5 else "")
    found = Finding(
        "LLM",
        listed,
        f"{what} at {base_url} answers; {len(models)} models"
        + ("" if listed else f"; LAB_LLM_MODEL={model} is not one it lists ({shown})"),
    )
    reply, tokens_per_s = _reply(openai, base_url, key, model)
    return [found, reply, *([_budget(tokens_per_s)] if tokens_per_s else [])]


def _budget(tokens_per_s: float) -> Finding:
    """Whether a reply of the full budget fits in the SDK's timeout at the measured speed."""
    # Read as labproject/settings.py reads them (importing it would write the secret key).
    budget = int(os.environ.get("LAB_LLM_MAX_TOKENS") or 128)
    timeout_s = float(os.environ.get("LAB_LLM_TIMEOUT_S") or 30)
    needed_s = budget / tokens_per_s
    detail = (
        f"a full {budget}-token reply takes about {needed_s:.0f} s at that speed; "
        f"LAB_LLM_TIMEOUT_S is {timeout_s:g} s"
    )
    if needed_s * 1.5 <= timeout_s:
        return Finding("LLM budget", True, detail, required=False)
    advice = f"; raise it to {needed_s * 2:.0f} s or lower LAB_LLM_MAX_TOKENS"
    return Finding("LLM budget", False, detail + advice, required=False)


def _reply(openai, base_url: str, key: str, model: str) -> tuple[Finding, float]:
    """The reply's finding, and the tokens per second measured (0 when unknown)."""
    started = time.perf_counter()
    try:
        with openai.OpenAI(
            base_url=base_url, api_key=key, timeout=PROBE_TIMEOUT_S, max_retries=0
        ) as client:
            completion = client.chat.completions.create(
                model=model,
                messages=[{"role": "user", "content": PROBE_PROMPT}],
                max_tokens=PROBE_MAX_TOKENS,
            )
    except openai.APIError as exc:
        failed = f"a chat completion failed: {type(exc).__name__}"
        return Finding("LLM reply", False, failed), 0.0
    latency_s = time.perf_counter() - started
    text = (completion.choices[0].message.content or "").strip() if completion.choices else ""
    tokens = completion.usage.completion_tokens if completion.usage else 0
    tokens_per_s = tokens / latency_s
    speed = f"{tokens} tokens in {latency_s:.2f} s ({tokens_per_s:.1f} tokens/s)"
    if not text:
        empty = (
            f"the reply is empty ({speed}): the server answers without the model's chat "
            "template, or the model says nothing; the notebooks need replies"
        )
        return Finding("LLM reply", False, empty), 0.0
    return Finding("LLM reply", True, f"{speed}: {text[:60]!r}"), tokens_per_s
