"""Generate: chat models behind the ``Generator`` seam — the local GGUF model (``llama``) and any
OpenAI-compatible server (``openai``); ``build_generator`` picks by settings."""

from __future__ import annotations

from collections.abc import Callable

from rag.config import Settings
from rag.generate.base import Completion, GenerationSlots, Generator, Message
from rag.generate.llama import LlamaGenerator
from rag.generate.openai import OpenAIGenerator

__all__ = ["BACKENDS", "Completion", "GenerationSlots", "Generator", "LlamaGenerator", "Message",
           "OpenAIGenerator", "build_generator"]

BACKENDS: dict[str, Callable[[Settings], Generator]] = {
    "llama-cpp": lambda s: LlamaGenerator(s.resolved_llm_path, s.n_ctx, s.n_threads),
    "openai": lambda s: OpenAIGenerator(s.llm_base_url, s.resolved_llm_model, s.llm_api_key, s.llm_timeout,
                                        s.llm_connect_timeout),
}


def build_generator(settings: Settings) -> Generator:
    """The generator the settings name."""
    return BACKENDS[settings.llm_backend](settings)
