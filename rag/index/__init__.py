"""The index, in parts: the corpus store, the vector index (``vectors/``) and the lexical index."""
