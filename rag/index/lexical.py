"""The lexical index: Okapi BM25 over character bigrams of Simplified text, updated in place.

Postings map each term to the chunks (slots) that hold it and how often. Adding or deleting one document
touches only the postings of that document's terms. The document frequencies kept here are the one notion
of term rarity: BM25's idf, the refusal evidence's word weights and sentence ranking all read them.

On disk a snapshot is the postings in column form (term offsets, slots, counts) as ``.npy`` files that open
memory-mapped; a term changed after opening gets its own arrays (copy on write), so opening at any size
reads no postings at all.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from rag.index.keys import chunk_id_of, chunk_key, keys_of

NAME = "bm25-char-bigram"
_TOKEN = re.compile(r"[\u3400-\u9fff]+|[A-Za-z]+|\d+(?:\.\d+)?")
_FILES = ("indptr", "slots", "counts", "keys", "lengths")
DENSE_SHARE = 16  # a term in at least 1/16 of the chunks keeps its contribution to every chunk once searched,
DENSE_BYTES = 32 << 20  # while they fit in this (85 terms at 100k chunks, 8 at 1M)


def lexical_tokens(simplified: str) -> list[str]:
    """Character bigrams of Han runs (a lone character stands alone), Latin words, and numbers."""
    tokens: list[str] = []
    for run in _TOKEN.findall(simplified):
        if "\u3400" <= run[0] <= "\u9fff":
            tokens.extend([run] if len(run) == 1 else [run[i:i + 2] for i in range(len(run) - 1)])
        else:
            tokens.append(run.lower())
    return tokens


class LexicalIndex:
    """BM25 over chunks keyed by chunk id; ``add``/``delete`` change only the rows named."""

    name = NAME

    def __init__(self, k1: float = 1.2, b: float = 0.75) -> None:
        self.k1, self.b = k1, b
        self._terms: dict[str, int] = {}
        # Base postings (column form, possibly memory-mapped, never written) and per-term replacements.
        self._indptr = np.zeros(1, np.int64)
        self._slots = np.zeros(0, np.int32)
        self._counts = np.zeros(0, np.float32)
        self._changed: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        # One slot per chunk ever added since the last snapshot; a deleted chunk's slot stays empty.
        self._keys = np.zeros(0, np.int64)
        self._lengths = np.zeros(0, np.float32)
        self._slot_of: dict[int, int] = {}
        self._total_length = 0.0
        self._norm: np.ndarray | None = None  # per-slot length normalisation, recomputed after an update
        # Each searched common term's BM25 contribution to every slot, until the next update changes n, df or
        # the lengths: a term in most chunks then costs one vector add instead of a gather and a scatter.
        self._dense: dict[int, np.ndarray] = {}

    # --- sizes and rarity --------------------------------------------------------------------------
    def count(self) -> int:
        """Number of chunks."""
        return len(self._slot_of)

    def has(self, chunk_id: str) -> bool:
        return chunk_key(chunk_id) in self._slot_of

    def df(self, term: str) -> int:
        """Number of chunks holding ``term`` (one lexical token)."""
        tid = self._terms.get(term)
        return 0 if tid is None else len(self._postings(tid)[0])

    def idf(self, term: str) -> float:
        """BM25 rarity of a term across chunks; a term the index never saw counts as rarest."""
        n, df = self.count(), self.df(term)
        return float(np.log1p((n - df + 0.5) / (df + 0.5)))

    def doc_freq(self, word: str) -> int:
        """Number of chunks holding every token of ``word`` (Simplified): how common a word is."""
        tokens = list(dict.fromkeys(lexical_tokens(word)))
        if not tokens or any(t not in self._terms for t in tokens):
            return 0
        lists = sorted((self._postings(self._terms[t])[0] for t in tokens), key=len)
        common = lists[0]
        mask = np.zeros(len(self._keys), bool)
        for other in lists[1:]:
            if not len(common):
                break
            mask[other] = True
            common = common[mask[common]]
            mask[other] = False
        return len(common)

    def weight(self, word: str) -> float:
        """Rarity of a word across chunks, ``log(1 + n / (1 + df))``; a word no chunk holds weighs most."""
        return math.log1p(self.count() / (1 + self.doc_freq(word)))

    # --- updates -----------------------------------------------------------------------------------
    def add(self, ids: Sequence[str], texts: Sequence[str]) -> None:
        """Index new chunks (Simplified ``texts``); an id already present is an error (delete it first)."""
        present = [i for i, k in zip(ids, keys_of(ids).tolist(), strict=True) if k in self._slot_of]
        if present:
            raise ValueError(f"chunks already in the lexical index: {present[:3]}; delete them first")
        first = len(self._keys)
        tids: list[int] = []
        slots: list[int] = []
        counts: list[int] = []
        lengths = np.zeros(len(ids), np.float32)
        for i, text in enumerate(texts):
            tokens = lexical_tokens(text)
            lengths[i] = len(tokens)
            for term, tf in Counter(tokens).items():
                tids.append(self._terms.setdefault(term, len(self._terms)))
                slots.append(first + i)
                counts.append(tf)
        keys = keys_of(ids)
        self._keys = np.concatenate([self._keys, keys])
        self._lengths = np.concatenate([self._lengths, lengths])
        self._slot_of.update((int(k), first + i) for i, k in enumerate(keys.tolist()))
        self._total_length += float(lengths.sum())
        self._norm = None
        self._dense.clear()
        if not tids:
            return
        order = np.argsort(np.asarray(tids), kind="stable")
        tid_sorted = np.asarray(tids)[order]
        slot_sorted = np.asarray(slots, np.int32)[order]
        count_sorted = np.asarray(counts, np.float32)[order]
        bounds = np.flatnonzero(np.diff(tid_sorted)) + 1
        for tid, a, b in zip(tid_sorted[np.r_[0, bounds]].tolist(), np.r_[0, bounds].tolist(),
                             np.r_[bounds, len(tid_sorted)].tolist(), strict=True):
            old_slots, old_counts = self._postings(tid)
            self._changed[tid] = (np.concatenate([old_slots, slot_sorted[a:b]]),
                                  np.concatenate([old_counts, count_sorted[a:b]]))

    def delete(self, ids: Sequence[str], texts: Sequence[str]) -> None:
        """Remove chunks; ``texts`` are their Simplified texts (they name the postings to touch)."""
        dead = np.zeros(len(self._keys), bool)
        touched: set[int] = set()
        for key, text in zip(keys_of(ids).tolist(), texts, strict=True):
            slot = self._slot_of.pop(key, None)
            if slot is None:
                continue
            dead[slot] = True
            self._total_length -= float(self._lengths[slot])
            self._norm = None
            self._dense.clear()
            self._lengths[slot] = 0.0
            touched.update(self._terms[t] for t in set(lexical_tokens(text)) if t in self._terms)
        for tid in touched:
            slots, counts = self._postings(tid)
            keep = ~dead[slots]
            self._changed[tid] = (slots[keep], counts[keep])

    def _postings(self, tid: int) -> tuple[np.ndarray, np.ndarray]:
        if tid in self._changed:
            return self._changed[tid]
        if tid + 1 < len(self._indptr):
            a, b = int(self._indptr[tid]), int(self._indptr[tid + 1])
            return self._slots[a:b], self._counts[a:b]
        return np.zeros(0, np.int32), np.zeros(0, np.float32)

    # --- search ------------------------------------------------------------------------------------
    def _scores(self, query: str) -> np.ndarray:
        """BM25 score of every slot for ``query`` (Simplified); each distinct query term counts once."""
        scores = np.zeros(len(self._keys), np.float32)
        n = self.count()
        if n == 0:
            return scores
        if self._norm is None or len(self._norm) != len(self._keys):
            avgdl = max(self._total_length / n, 1.0)
            self._norm = (self.k1 * (1 - self.b + self.b * self._lengths / avgdl)).astype(np.float32)
            self._dense.clear()
        for term in dict.fromkeys(lexical_tokens(query)):
            tid = self._terms.get(term)
            if tid is None:
                continue
            if tid in self._dense:
                scores += self._dense[tid]  # + 0.0 where the term is absent: the same sums as the scatter
                continue
            slots, tf = self._postings(tid)
            if not len(slots):
                continue
            idf = np.float32(math.log1p((n - len(slots) + 0.5) / (len(slots) + 0.5)))
            part = idf * tf * np.float32(self.k1 + 1) / (tf + self._norm[slots])
            scores[slots] += part
            if len(slots) * DENSE_SHARE >= len(scores) and (len(self._dense) + 1) * scores.nbytes <= DENSE_BYTES:
                self._dense[tid] = np.zeros(len(scores), np.float32)
                self._dense[tid][slots] = part
        return scores

    def search(self, query: str, k: int, within: Iterable[str] | None = None,
               also: Sequence[str] = ()) -> tuple[list[tuple[str, float]], np.ndarray]:
        """Up to ``k`` ``(chunk_id, score)`` with a positive score, best first (ties in insertion order),
        only chunks of ``within`` when given; and the scores of the chunks ``also`` (0 for unknown ones)."""
        scores = self._scores(query)
        slots = [self._slot_of.get(key, -1) for key in keys_of(also).tolist()]
        extra = np.array([scores[s] if s >= 0 else 0.0 for s in slots], np.float32)
        if within is not None:
            allowed = [self._slot_of[key] for key in keys_of(within).tolist() if key in self._slot_of]
            mask = np.zeros(len(scores), bool)
            mask[allowed] = True
            scores = np.where(mask, scores, 0.0)
        candidates = np.flatnonzero(scores > 0)
        if len(candidates) > k > 0:  # only the best k need sorting (ties at the cut: the earlier slots)
            cut = np.partition(-scores[candidates], k - 1)[k - 1]
            candidates = candidates[-scores[candidates] <= cut]
        order = candidates[np.argsort(-scores[candidates], kind="stable")[:k]]
        return [(chunk_id_of(int(self._keys[s])), float(scores[s])) for s in order], extra

    def score(self, query: str, ids: Sequence[str]) -> np.ndarray:
        """BM25 scores of the chunks ``ids`` (0 for an unknown id)."""
        return self.search(query, 0, also=ids)[1]

    # --- persistence -------------------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        """Write a compact snapshot (deleted slots dropped, slots renumbered in insertion order). Postings
        stream into memory-mapped files, so saving never holds a second copy of them."""
        folder.mkdir(parents=True, exist_ok=True)
        live = np.full(len(self._keys), -1, np.int64)
        alive = sorted(self._slot_of.values())
        live[alive] = np.arange(len(alive))
        indptr = np.zeros(len(self._terms) + 1, np.int64)
        for tid in range(len(self._terms)):
            indptr[tid + 1] = indptr[tid] + len(self._postings(tid)[0])
        total = int(indptr[-1])
        slots_out = np.lib.format.open_memmap(folder / "lexical_slots.npy", "w+", np.int32, (total,))
        counts_out = np.lib.format.open_memmap(folder / "lexical_counts.npy", "w+", np.float32, (total,))
        for tid in range(len(self._terms)):
            slots, counts = self._postings(tid)
            a, b = int(indptr[tid]), int(indptr[tid + 1])
            slots_out[a:b] = live[slots]
            counts_out[a:b] = counts
        slots_out.flush()
        counts_out.flush()
        del slots_out, counts_out
        np.save(folder / "lexical_indptr.npy", indptr)
        np.save(folder / "lexical_keys.npy", self._keys[alive])
        np.save(folder / "lexical_lengths.npy", self._lengths[alive])
        terms = sorted(self._terms, key=self._terms.__getitem__)
        (folder / "lexical_terms.json").write_text(
            json.dumps({"name": NAME, "k1": self.k1, "b": self.b, "terms": terms}, ensure_ascii=False), "utf-8")

    @classmethod
    def load(cls, folder: Path) -> LexicalIndex:
        meta = json.loads((folder / "lexical_terms.json").read_text("utf-8"))
        index = cls(meta["k1"], meta["b"])
        arrays = {name: np.load(folder / f"lexical_{name}.npy", mmap_mode="r") for name in _FILES}
        index._terms = {t: i for i, t in enumerate(meta["terms"])}
        # plain arrays over the mapped files: slicing a np.memmap costs far more than slicing an ndarray
        index._indptr = np.asarray(arrays["indptr"]).view(np.ndarray)
        index._slots = arrays["slots"].view(np.ndarray)
        index._counts = arrays["counts"].view(np.ndarray)
        index._keys = np.array(arrays["keys"])
        index._lengths = np.array(arrays["lengths"])
        index._slot_of = {int(k): i for i, k in enumerate(index._keys.tolist())}
        index._total_length = float(index._lengths.sum())
        return index

    @classmethod
    def open(cls, folder: Path | None) -> LexicalIndex:
        """The snapshot in ``folder``, or an empty index."""
        if folder is not None and (folder / "lexical_terms.json").exists():
            return cls.load(folder)
        return cls()
