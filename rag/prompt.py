"""Prompt: pick the few sentences of the retrieved chunks that best match the question and render the
chat messages from the templates in ``prompts/``. Prompt size is the main cost on a CPU, so only the most
relevant sentences are sent, and the system prompt stays fixed so its evaluated state is reused."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from rag.embed import Embedder
from rag.index import Index, lexical_tokens
from rag.normalize import to_simplified
from rag.types import Hit, Sentence

_TITLE_CHARS = 20
# Sentence score = DENSE_SHARE * similarity + the rest * rarity-weighted term overlap (measured on the gold
# set: recall of the answer in the chosen sentences 0.924 unweighted, 0.939 weighted).
DENSE_SHARE = 0.5
# Words that ask rather than inform: they say nothing about where the answer is.
_QUESTION_WORDS = re.compile(
    r"什么|多少|哪些|哪个|哪里|哪儿|哪|几个|几所|几名|几项|几|是否|如何|怎样|怎么|为什么|谁|请问|分别|一共|共有|是|吗|呢|的|了|？|\?")


@dataclass(frozen=True)
class Templates:
    system: str
    user: str
    refusal: str

    @classmethod
    def load(cls, folder: Path) -> Templates:
        read = lambda name: (folder / name).read_text("utf-8").strip()  # noqa: E731
        return cls(read("system.txt"), read("user.txt"), read("refusal.txt"))


def content_terms(question_simplified: str) -> list[str]:
    """The question's lexical terms with the question words taken out."""
    return list(dict.fromkeys(lexical_tokens(_QUESTION_WORDS.sub(" ", question_simplified))))


def candidate_sentences(index: Index, hits: Sequence[Hit]) -> list[Sentence]:
    """Every sentence of the hit chunks (split once at ingest), with its span in the original file."""
    out = [s for group in index.sentences([h.chunk.chunk_id for h in hits]) for s in group]
    return list({(s.doc_id, s.text): s for s in out}.values())  # scraped pages repeat lines


def overlap(terms: Sequence[str], text_simplified: str, weights: Sequence[float] | None = None) -> float:
    """Share of ``terms`` (by weight, if given) that occur in the text."""
    if not terms:
        return 0.0
    weights = weights or [1.0] * len(terms)
    return sum(w for t, w in zip(terms, weights, strict=True) if t in text_simplified) / sum(weights)


def rank_sentences(sentences: Sequence[Sentence], question_simplified: str, query_vector: np.ndarray,
                   embedder: Embedder, titles: dict[str, str] | None = None,
                   idf: Callable[[str], float] | None = None, ignore: set[str] | None = None) -> list[Sentence]:
    """Score sentences by meaning (dense) and shared terms (lexical); best first.

    Terms of the document's title do not count: a question names its source ("…讲话中，…") to pick the
    document, and the title line itself answers nothing.
    """
    titles = {d: to_simplified(t) for d, t in (titles or {}).items()}
    sentences = [s for s in sentences if s.simplified.replace(" ", "") not in titles.get(s.doc_id, "")]
    if not sentences:
        return []
    skip = {t for word in (ignore or set()) for t in lexical_tokens(word)}
    terms = [t for t in content_terms(question_simplified) if t not in skip] or content_terms(question_simplified)
    dense = embedder.embed_documents([s.simplified for s in sentences]) @ query_vector
    scored = []
    for s, d in zip(sentences, dense, strict=True):
        own = [t for t in terms if t not in titles.get(s.doc_id, "")] or terms
        weights = [idf(t) for t in own] if idf else None
        lexical = overlap(own, s.simplified, weights)
        scored.append(replace(s, score=float(DENSE_SHARE * d + (1 - DENSE_SHARE) * lexical)))
    return sorted(scored, key=lambda s: -s.score)


def select(ranked: Sequence[Sentence], budget_chars: int, max_sentences: int = 4,
           min_relative: float = 0.6) -> list[Sentence]:
    """The best sentences that fit in the character budget (at least one), skipping weak ones."""
    chosen: list[Sentence] = []
    used = 0
    for s in ranked:
        if len(chosen) >= max_sentences or (chosen and s.score < min_relative * chosen[0].score):
            break
        if chosen and used + len(s.text) > budget_chars:
            continue
        chosen.append(s)
        used += len(s.text)
    return chosen


def render(templates: Templates, sentences: Sequence[Sentence], question: str,
           titles: dict[str, str]) -> list[dict[str, str]]:
    """Chat messages: the fixed system prompt, then numbered passages grouped by source, and the question."""
    lines: list[str] = []
    for doc_id in dict.fromkeys(s.doc_id for s in sentences):
        if titles.get(doc_id):
            lines.append(f"《{titles[doc_id][:_TITLE_CHARS]}》")
        lines.extend(f"[{i}] {s.text}" for i, s in enumerate(sentences, 1) if s.doc_id == doc_id)
    user = templates.user.format(passages="\n".join(lines), question=question)
    return [{"role": "system", "content": templates.system}, {"role": "user", "content": user}]
