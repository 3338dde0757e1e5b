"""The naive baseline the service is measured against: the same model, the same retrieval (the service's
hybrid search, its ``TOP_K`` best chunks), the chunks stuffed in a plain prompt (``prompts/baseline.txt``),
and no checks at all. It refuses only when its reply says so (``REFUSAL_PHRASES``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rag.config import Settings
from rag.eval.backends import Passage, Reply, Service, drain
from rag.eval.gold import SPLITS, normalize
from rag.eval.metrics import QuestionResult, compute_metrics
from rag.eval.report import write_outputs
from rag.generate import Completion, Generator, Message
from rag.parts import Parts
from rag.types import Hit

TOP_K = 5
TEMPLATE_FILE = "baseline.txt"

REFUSAL_PHRASES = ("不知道", "没有找到", "找不到", "无法回答", "无法确定", "未提及", "没有提及", "没有提到")
"""The general Chinese ways of saying "I do not know / it is not there", fixed before any reply was read
(not chosen on any question): a baseline reply that contains one, after Traditional→Simplified, or says
nothing at all, is a refusal."""
BASELINE = (f"the same model (its own instance), the service's search (top {TOP_K} chunks), prompts/{TEMPLATE_FILE}, "
            f"no checks; a refusal when the reply is empty or says one of {'、'.join(REFUSAL_PHRASES)}")

Search = Callable[[str, int], list[Hit]]


def refusal_phrase(text: str) -> str:
    """The refusal phrase ``text`` says ("(empty)" for no text), or "" when it says none."""
    said = normalize(text)
    if not said:
        return "(empty)"
    return next((phrase for phrase in REFUSAL_PHRASES if phrase in said), "")


def load_template(prompts_dir: Path) -> str:
    """``prompts_dir/baseline.txt``, which must hold ``{passages}`` and ``{question}``."""
    path = prompts_dir / TEMPLATE_FILE
    template = path.read_text(encoding="utf-8").strip()
    for field in ("{passages}", "{question}"):
        if field not in template:
            raise ValueError(f"{path}: the baseline template needs {field}")
    return template


def render(template: str, hits: Sequence[Hit], question: str) -> str:
    """The user turn: the chunks numbered ``[1]``…, each led by its document's title, then the question."""
    return template.format(passages="\n".join(f"[{i}] {_passage(h)}" for i, h in enumerate(hits, 1)),
                           question=question)


def _passage(hit: Hit) -> str:
    text, title = hit.chunk.text.strip(), hit.chunk.title.strip()
    return f"《{title}》{text}" if title and not text.startswith(title) else text


class Baseline:
    """Answers a question from the ``top_k`` chunks ``search`` finds for it, in one plain prompt. A follow-up
    is searched with the earlier user turn and sent after the earlier turns, nothing more. Implements the
    evaluator's ``Backend`` (``search``, ``ask``), so the gold runner can ask it too."""

    def __init__(self, search: Search, generator: Generator, template: str, *, max_tokens: int,
                 temperature: float, top_k: int = TOP_K) -> None:
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1. Currently, top_k is {top_k}")
        self._search = search
        self.generator = generator
        self.template = template
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.top_k = top_k

    def search(self, query: str, k: int) -> list[Passage]:
        return [Passage(h.chunk.doc_id, h.chunk.start, h.chunk.end, h.chunk.simplified, h.score)
                for h in self._search(query, k)]

    def prompt(self, messages: Sequence[Message]) -> tuple[list[Message], list[Hit]]:
        """The chat messages for the model and the chunks they show."""
        question = messages[-1]["content"].strip()
        earlier = [m["content"] for m in messages[:-1] if m["role"] == "user"]
        hits = self._search(f"{earlier[-1]} {question}" if earlier else question, self.top_k)
        turn = {"role": "user", "content": render(self.template, hits, question)}
        return [*({"role": m["role"], "content": m["content"]} for m in messages[:-1]), turn], hits

    def ask(self, messages: list[dict[str, str]]) -> Reply:
        """The model's reply as it wrote it; ``ttft_s`` from the call to the model's first text."""
        started = time.perf_counter()
        chat, hits = self.prompt(messages)
        searched = time.perf_counter() - started
        completion, generated, to_text = drain(self.generator.stream(chat, self.max_tokens, self.temperature),
                                               Completion)
        elapsed, ttft = searched + generated, searched + to_text
        text = completion.text.strip()
        phrase = refusal_phrase(text)
        return Reply(text, (), bool(phrase), completion.prompt_tokens, elapsed,
                     ttft, f"says {phrase}" if phrase else None,
                     tuple(h.chunk.simplified for h in hits))


def beside(service: Service, settings: Settings, parts: Parts) -> Baseline:
    """The baseline of ``service``: its search, and its own instance of the model ``parts`` build (llama.cpp
    keeps one evaluated prompt per instance; sharing one, each system would re-evaluate its fixed prefix)."""
    return Baseline(service.search, parts.generator(settings), load_template(settings.prompts_dir),
                    max_tokens=settings.max_tokens, temperature=settings.temperature)


def write_peer(out_dir: Path, summary: dict[str, Any], peers: Sequence[QuestionResult]) -> dict[str, Any]:
    """Write the baseline's gold results as a run of their own (``out_dir``: the same files, the same
    question ids, row for row); return what the service's summary records of them."""
    by_split = {name: compute_metrics([r for r in peers if r.item.split == name])
                for name in SPLITS if any(r.item.split == name for r in peers)}
    own = {**summary, "mode": "baseline (in-process)", "metrics": compute_metrics(peers), "by_split": by_split,
           "baseline": BASELINE}
    write_outputs(out_dir, own, peers)
    return {"out": str(out_dir), "what": BASELINE, "metrics": own["metrics"], "by_split": by_split}
