"""The index, in parts that grow one document at a time: the corpus store (``corpus.py``, SQLite: documents,
chunks, sentences, vectors), the vector index (``vectors/``: FAISS by default, behind a Protocol) and the
lexical index (``lexical.py``: BM25 over character bigrams, whose document frequencies are the one notion of
term rarity). ``store.py`` ties them together with the manifest, crash-safe updates and snapshots."""

from rag.index.corpus import DocRecord, DocumentEntry
from rag.index.lexical import lexical_tokens
from rag.index.store import Index, IndexSpec, index_version, remove_index

__all__ = ["DocRecord", "DocumentEntry", "Index", "IndexSpec", "index_version", "lexical_tokens", "remove_index"]
