"""Embed: turn passages and queries into L2-normalized vectors.

``Embedder`` is the seam; ``SentenceTransformerEmbedder`` is the real one (multilingual-e5-small with its
``passage: ``/``query: `` prompts); the tests' deterministic stand-in is ``tests/fakes/embed.py``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from rag.config import Settings
from rag.errors import ModelProvisionError
from rag.normalize import to_simplified
from rag.types import Chunk

log = logging.getLogger(__name__)


class Embedder(Protocol):
    name: str
    dim: int

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors (float32, ``len(texts) x dim``, unit length) for passages."""
        ...

    def embed_query(self, text: str) -> np.ndarray:
        """Vector (float32, ``dim``, unit length) for a search query."""
        ...


def passage_text(chunk: Chunk) -> str:
    """What is embedded for a chunk: its document title and section path give it context."""
    section = chunk.section[1:] if chunk.section[:1] == (chunk.title,) else chunk.section  # title once
    head = " > ".join(x for x in (chunk.title, *section) if x)
    return to_simplified(head) + "\n" + chunk.simplified if head else chunk.simplified


class SentenceTransformerEmbedder:
    """A sentence-transformers model directory loaded from disk, never from a hub."""

    def __init__(self, path: Path, batch_size: int = 16) -> None:
        if not (path / "modules.json").exists():
            raise ModelProvisionError(f"no sentence-transformers model at {path}; run `rag models`")
        # Never reach for a model hub: the model is a local directory, and this machine may have no network.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer  # heavy: import only when used

        started = time.perf_counter()
        self._model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        self._prompts = set(self._model.prompts or {})
        self._batch_size = batch_size
        self.name = path.name
        self.dim = int(self._model.get_embedding_dimension() or 0)
        log.info("loaded embedder %s (dim %d) in %.1fs", self.name, self.dim, time.perf_counter() - started)

    def _encode(self, texts: Sequence[str], prompt: str) -> np.ndarray:
        vectors = self._model.encode(list(texts), batch_size=self._batch_size, normalize_embeddings=True,
                                     prompt_name=prompt if prompt in self._prompts else None,
                                     convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), self.dim)

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, "passage")

    def embed_query(self, text: str) -> np.ndarray:
        return self._encode([text], "query")[0]


class CachedEmbedder:
    """Remembers passage vectors by text: answers keep ranking the sentences of the same popular chunks."""

    def __init__(self, inner: Embedder, size: int = 20_000) -> None:
        self._inner = inner
        self._size = size
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.name, self.dim = inner.name, inner.dim

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            fresh = self._inner.embed_documents(missing)
            with self._lock:
                for text, vector in zip(missing, fresh, strict=True):
                    self._cache[text] = vector
                while len(self._cache) > self._size:
                    self._cache.popitem(last=False)
        with self._lock:
            vectors = [self._cache.get(t) for t in texts]
        if any(v is None for v in vectors):  # evicted meanwhile by another thread: embed directly
            return self._inner.embed_documents(texts)
        return np.stack(vectors) if vectors else np.zeros((0, self.dim), np.float32)  # type: ignore[arg-type]

    def embed_query(self, text: str) -> np.ndarray:
        return self._inner.embed_query(text)


_BACKENDS: dict[str, Callable[[Settings], Embedder]] = {
    "sentence-transformers": lambda s: SentenceTransformerEmbedder(s.resolved_embedder_path,
                                                                   s.embed_batch_size),
}


def build_embedder(settings: Settings) -> Embedder:
    """The embedder the settings name."""
    return _BACKENDS[settings.embed_backend](settings)
