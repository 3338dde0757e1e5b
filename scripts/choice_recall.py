"""How often the choose stage's candidates, the model's choice, and a yes/no probe find the answer, over a
part of the gold set: the step-by-step view behind ``rag.answer.select.answer_sources``.

    RAG_ANSWER_STAGE=choose .venv/bin/python scripts/choice_recall.py [--split dev] [--limit N]

For each question that reaches the model: the numbers the model chose (under the grammar), whether its chosen
sentences hold the gold answer, whether the ranker's first candidate does, whether any candidate does; and the
log-odds of 是 against 否 after «资料是否回答了这个问题？（是/否）：» on the same prompt (the probe #23 proposed).
Prints the counts (list questions left out: their answer spans several sentences) and the probe's AUC for
answerable against unanswerable questions. Run it with nothing else on the machine.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from rag.answer.select import CHOOSE  # noqa: E402
from rag.answer.stage import ChooseStage  # noqa: E402
from rag.config import Settings  # noqa: E402
from rag.eval.gold import is_correct, load_gold  # noqa: E402
from rag.service import build_service  # noqa: E402

PROBE = ("资料是否回答了这个问题？（是/否）：", "是", "否")


def probe(generator: object, chat: list[dict[str, str]]) -> float:
    """Log-odds of 是 against 否 as the next token after the probe, on the cached prefix (llama.cpp only)."""
    from llama_cpp import LogitsProcessorList

    lead, yes, no = PROBE
    ids = [generator._token(yes), generator._token(no)]  # type: ignore[attr-defined]
    seen: list[np.ndarray] = []

    def capture(_ids: object, logits: np.ndarray) -> np.ndarray:
        if not seen:
            seen.append(np.asarray(logits[ids], dtype=np.float64))
        return logits

    generator._llm.create_completion(generator._prompt(chat, lead), max_tokens=1, temperature=0.0,  # type: ignore
                                     logits_processor=LogitsProcessorList([capture]))
    return float(seen[0][0] - seen[0][1])


def auc(positive: list[float], negative: list[float]) -> float:
    pos, neg = np.array(positive)[:, None], np.array(negative)[None, :]
    return float(((pos > neg).sum() + 0.5 * (pos == neg).sum()) / max(pos.size * neg.size, 1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", choices=("dev", "test"), default="dev")
    parser.add_argument("--limit", type=int)
    args = parser.parse_args()
    settings = Settings(answer_stage="choose")
    service, stage = build_service(settings), ChooseStage(settings)
    items = [g for g in load_gold(REPO / "eval" / "gold.jsonl") if g.split == args.split][: args.limit]
    counts = {"answerable": 0, "chosen holds it": 0, "first holds it": 0, "a candidate holds it": 0}
    probes: dict[bool, list[float]] = {True: [], False: []}
    for item in items:
        turn = stage.prepare(service, item.messages)
        if turn.refusal:
            continue
        choice = service.generator.choose(turn.chat, CHOOSE, len(turn.candidates))
        probes[item.answerable].append(probe(service.generator, turn.chat))
        if not item.answerable or item.type == "list":
            continue
        texts = [c.simplified for c in turn.candidates]
        counts["answerable"] += 1
        counts["chosen holds it"] += bool(choice.picked) and is_correct(
            "\n".join(texts[i - 1] for i in choice.picked), item.must)
        counts["first holds it"] += is_correct(texts[0], item.must)
        counts["a candidate holds it"] += is_correct("\n".join(texts), item.must)
    print(f"gold {args.split}, non-list answerable questions that reached the model: {counts}")
    print(f"probe {PROBE[0]!r}: AUC answerable vs unanswerable {auc(probes[True], probes[False]):.3f} "
          f"({len(probes[True])} answerable, {len(probes[False])} unanswerable)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
