"""Chunk ids as 64-bit integer keys, for engines that key points by integer (FAISS, SQLite rowids).

A chunk id is 16 hex digits (64 bits of a content hash); its key is the same 64 bits read as a signed
integer, so the mapping is exact both ways and needs no table.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


def chunk_key(chunk_id: str) -> int:
    """The signed 64-bit key of a 16-hex-digit chunk id."""
    if len(chunk_id) != 16:
        raise ValueError(f"chunk id must be 16 hex digits; got {chunk_id!r}")
    return int.from_bytes(bytes.fromhex(chunk_id), "big", signed=True)


def chunk_id_of(key: int) -> str:
    """The chunk id of a key (inverse of ``chunk_key``)."""
    return int(key).to_bytes(8, "big", signed=True).hex()


def keys_of(chunk_ids: Iterable[str]) -> np.ndarray:
    """Keys of many chunk ids, as an int64 array."""
    return np.fromiter((chunk_key(c) for c in chunk_ids), dtype=np.int64)


def ids_of(keys: Sequence[int] | np.ndarray) -> list[str]:
    """Chunk ids of many keys."""
    return [chunk_id_of(int(k)) for k in keys]
