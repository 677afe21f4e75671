"""The model server's own process: `python -m labkit.local_llm.engine --model PATH --port N`.

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
import signal
import sys

from labkit.local_llm.model import DEFAULT_ALIAS, LocalLLMMissing, require_engine


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
