"""Vector indexes behind one seam (``base.VectorIndex``): FAISS (the embedded default) and a fake."""

from rag.index.vectors.base import BACKENDS, VectorIndex, VectorSpec, open_vectors, register

__all__ = ["BACKENDS", "VectorIndex", "VectorSpec", "open_vectors", "register"]
