"""What the kit promises about exposure: loopback only, no DEBUG, no committed or leaked secrets,
and a grader that a hostile submission cannot stall or fool.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.fixtures.api import REFERENCE_APP, REPO, subprocess_env
from tests.services import postgres_service, redis_service, services_state  # noqa: F401

LOOPBACK = {"127.0.0.1", "::1"}
SENTINEL = "sk-lab-SENTINEL-4f9b2c7e1d"


def listening(pid: int, *, tree: bool = True) -> list[tuple[str, int]]:
    """(ip, port) of every TCP socket listening in process `pid` (and its children)."""
    process = psutil.Process(pid)
    processes = [process, *process.children(recursive=True)] if tree else [process]
    found = []
    for p in processes:
        try:
            sockets = p.net_connections(kind="inet")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        found += [(c.laddr.ip, c.laddr.port) for c in sockets if c.status == psutil.CONN_LISTEN]
    return found


def assert_loopback_only(what: str, sockets: list[tuple[str, int]]) -> None:
    assert sockets, f"{what}: no listening socket found, so nothing was checked"
    exposed = [s for s in sockets if s[0] not in LOOPBACK]
    assert exposed == [], f"{what} listens beyond loopback: {exposed}"


def test_in_kernel_servers_and_the_mock_bind_loopback(mock_llm):
    from django.core.wsgi import get_wsgi_application

    from labkit import reference
    from labkit.servers import ASGIServer, WSGIServer

    with ASGIServer(reference.asgi_application()) as asgi, WSGIServer(get_wsgi_application()):
        ours = listening(os.getpid(), tree=False)
        assert asgi.port in {port for _, port in ours}
        assert_loopback_only("the in-kernel servers", ours)
    assert_loopback_only("the mock LLM", listening(mock_llm.pid))


@pytest.mark.slow
def test_subprocess_servers_bind_loopback(mock_llm, tmp_path):
    from labkit.servers import GunicornProcess, UvicornProcess

    env = subprocess_env(mock_llm.base_url, LAB_STATE_DIR=str(tmp_path))
    uvicorn = UvicornProcess(REFERENCE_APP, env=env, cwd=REPO, extra_args=["--factory"])
    with uvicorn, GunicornProcess(workers=1, env=env, cwd=REPO) as gunicorn:
        assert_loopback_only("uvicorn", listening(uvicorn.pid))
        assert_loopback_only("gunicorn", listening(gunicorn.pid))


@pytest.mark.service("redis")
@pytest.mark.service("postgres")
def test_services_bind_loopback(redis_service, postgres_service):  # noqa: F811 (fixtures)
    for service in (redis_service, postgres_service):
        assert service.host in LOOPBACK, service.masked_url
        assert_loopback_only(service.name, listening(service.pid))


def _setting(name: str, **env: str) -> str:
    """A setting as a fresh process without the test run's environment reads it."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("LAB_", "DJANGO_"))}
    code = (
        "import django; from django.conf import settings; django.setup(); "
        f"print(repr(settings.{name}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**clean, "DJANGO_SETTINGS_MODULE": "labproject.settings", **env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout.strip()


def test_debug_is_off_unless_the_lab_asks(tmp_path):
    assert _setting("DEBUG", LAB_STATE_DIR=str(tmp_path)) == "False"
    assert _setting("DEBUG", LAB_STATE_DIR=str(tmp_path), LAB_DEBUG="1") == "True"
    hosts = _setting("ALLOWED_HOSTS", LAB_STATE_DIR=str(tmp_path))
    assert "'*'" not in hosts


def test_the_secret_key_is_made_per_install_and_never_committed(tmp_path):
    one = _setting("SECRET_KEY", LAB_STATE_DIR=str(tmp_path / "one"))
    two = _setting("SECRET_KEY", LAB_STATE_DIR=str(tmp_path / "two"))
    again = _setting("SECRET_KEY", LAB_STATE_DIR=str(tmp_path / "one"))
    assert one != two and one == again and len(one) > 40
    mode = stat.S_IMODE((tmp_path / "one" / "secret_key").stat().st_mode)
    assert mode == 0o600, oct(mode)
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    assert not [name for name in tracked if Path(name).name == "secret_key"]
    from django.conf import settings

    for key in (one.strip("'"), two.strip("'"), settings.SECRET_KEY):
        found = subprocess.run(["git", "grep", "-l", "-F", key], cwd=REPO, capture_output=True)
        assert found.returncode == 1, found.stdout  # 1: no tracked file holds it
    # No hard-coded key in the settings, whatever its name.
    assert "SECRET_KEY = secret_key()" in (REPO / "labproject" / "settings.py").read_text()


API_KEY_CELLS = [
    "from labkit import boot, mock_llm, serve_asgi\nlab = boot()\nlab",
    # What a learner might print while exploring: settings, the client, the mock's state.
    "import os\n"
    "from django.conf import settings\n"
    "from labkit import reference\n"
    "assert reference.async_client().api_key == os.environ['LAB_LLM_API_KEY'], 'key not in use'\n"
    "from labproject.ai.llm import client_options\n"
    "print(settings.LLM_BASE_URL, settings.LLM_MODEL)\n"
    "print({k: v for k, v in client_options().items() if k != 'api_key'})\n"
    "client = await reference.async_client().chat.completions.create(\n"
    "    model=settings.LLM_MODEL, messages=[{'role': 'user', 'content': 'hi'}])\n"
    "print(client)\n"
    "print(reference.async_client())\n"
    "print(mock_llm().stats())\nprint(mock_llm().config())",
    # Errors a learner meets: a refused model, a fault mapped by the view, a server log.
    "import httpx\n"
    "try:\n"
    "    await reference.async_client().chat.completions.create(\n"
    "        model='no-such-model', messages=[{'role': 'user', 'content': 'hi'}])\n"
    "except Exception as exc:\n"
    "    print(repr(exc), exc.__dict__)\n"
    "from labproject import routes\n"
    "routes.use('chat', reference.chat)\n"
    "server = serve_asgi(reference.asgi_application(), name='leak')\n"
    "mock_llm().configure(fault='503')\n"
    "async with httpx.AsyncClient() as c:\n"
    "    r = await c.post(server.url + '/api/chat/', json={'prompt': 'hi'})\n"
    "print(r.status_code, r.text)\n"
    "mock_llm().configure(fault=None)\n"
    "print(mock_llm().stderr_text())",
    "from labkit import stop_all\nstop_all()",
]


@pytest.mark.slow
def test_an_api_key_never_reaches_outputs_or_logs(tmp_path):
    from tests.notebook_runner import run_cells

    state = tmp_path / "state"
    # An empty base URL: boot() starts its own mock, as on a learner's first run.
    env = {"LAB_STATE_DIR": str(state), "LAB_LLM_API_KEY": SENTINEL, "LAB_LLM_BASE_URL": ""}
    nb = run_cells(API_KEY_CELLS, tmp_path=tmp_path, timeout=120, env=env)
    outputs = json.dumps([cell.get("outputs", []) for cell in nb.cells])
    assert "503" in outputs and "mock-gpt" in outputs  # the cells really ran
    assert SENTINEL not in outputs
    assert SENTINEL[-10:] not in outputs  # nor a tail of it ("...1d")
    for path in state.rglob("*"):
        if path.is_file():
            assert SENTINEL.encode() not in path.read_bytes(), path


HOSTILE = (
    "import subprocess, sys, threading, time\n"
    "# A detached process in a session of its own, which the kernel's shutdown never reaches.\n"
    "FORGER = 'import sys, time\\nwhile True:\\n'\n"
    'FORGER += \'    open(sys.argv[1], "w").write("later")\\n    time.sleep(0.05)\'\n'
    "subprocess.Popen([sys.executable, '-c', FORGER, {report!r}], start_new_session=True)\n"
    "def forge():\n"
    "    while True:\n"
    "        open({report!r}, 'w').write('forged by the submission')\n"
    "        time.sleep(0.05)\n"
    "threading.Thread(target=forge, daemon=True).start()\n"
    "open({report!r}, 'w').write('forged by the submission')\n"
    "def double(x):\n"
    "    return 2 * x\n"
    "while True:\n"
    "    pass\n"
)


@pytest.mark.slow
def test_a_hostile_submission_can_neither_stall_the_grader_nor_forge_the_report(tmp_path):
    from labkit.authoring import learner_notebook, render
    from labkit.exercises.masters import parse_master
    from tests.fixtures.commands import run_command
    from tests.fixtures.labenv import DEMO_MASTER, use_fixture_steps

    folder = tmp_path / "submissions"
    folder.mkdir()
    report = folder / "report.json"
    nb = json.loads(render(learner_notebook(parse_master(DEMO_MASTER))))
    cell = next(c for c in nb["cells"] if c["metadata"].get("labkit", {}).get("exercise"))
    cell["source"] = HOSTILE.format(report=str(report))
    submission = folder / "90_hostile.ipynb"
    submission.write_text(json.dumps(nb))
    original = submission.read_bytes()
    with pytest.MonkeyPatch.context() as monkeypatch:
        use_fixture_steps(monkeypatch)
        code = run_command("grade", [str(folder), "--cell-timeout", "3", "--json", str(report)])
    assert code == 0
    data = json.loads(report.read_text())  # the grader's report, not the forgery
    [graded] = data["notebooks"]
    statuses = {ex["id"]: ex["status"] for ex in graded["exercises"]}
    # In the sandbox the report's path does not exist, so the cell fails before its loop.
    assert statuses[cell["metadata"]["labkit"]["exercise"]] in {"timeout", "not_attempted"}
    assert graded["score"] == 0
    assert submission.read_bytes() == original  # it ran on a copy
    time.sleep(0.5)  # the detached forger would have struck by now
    assert json.loads(report.read_text()) == data
