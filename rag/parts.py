"""The models a service runs on, as constructors from settings: the ones the settings name by default;
tests hand in their fakes here (``tests/fakes``), the app factory and the commands build from it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rag.config import Settings
from rag.embed import Embedder, build_embedder
from rag.generate import Generator, build_generator


@dataclass(frozen=True)
class Parts:
    """How to build the embedder and the generator; each is built only when a command needs it."""

    embedder: Callable[[Settings], Embedder] = build_embedder
    generator: Callable[[Settings], Generator] = build_generator

    @property
    def builds_generator(self) -> bool:
        """True when the generator is the one the settings name (not one handed in)."""
        return self.generator is build_generator
