"""Answer benchmark on the gold set: latency p50/p95, time to first token, prompt tokens, search latency,
and the serving overhead against the same prompts sent straight to llama-cpp-python.

    .venv/bin/python scripts/bench_answer.py [--limit N]

Pass 1 answers every question through the service (streaming); pass 2 sends the prompts the service built
to llama-cpp-python directly, in the same order, so both passes see the same prompt-cache state.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from rag.config import Settings
from rag.eval import load_gold
from rag.service import build_service
from rag.types import Answer

ROOT = Path(__file__).resolve().parent.parent


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--limit", type=int)
    args = parser.parse_args()
    service = build_service(Settings())
    gold = load_gold(ROOT / "eval" / "gold.jsonl")[: args.limit]
    service.answer([{"role": "user", "content": "阳山县在清远市排名第几？"}])  # warm-up (page cache, prefix)
    totals, firsts, prompts, searches, generated = [], [], [], [], []
    for item in gold:
        messages = item.messages  # follow-ups carry their earlier turns
        t = time.perf_counter()
        service.search(item.search_query, 5)
        searches.append(time.perf_counter() - t)
        t = time.perf_counter()
        first = None
        answer: Answer | None = None
        for part in service.stream(messages):
            if isinstance(part, Answer):
                answer = part
            elif part and first is None:
                first = time.perf_counter() - t
        total = time.perf_counter() - t
        assert answer is not None
        totals.append(total)
        firsts.append(first if first is not None else total)
        if answer.prompt_tokens:
            prompts.append(answer.prompt_tokens)
            generated.append((service.prepare(messages).chat, total))
    direct, served = [], []
    llm = service.generator._llm  # type: ignore[attr-defined]
    for chat, total in generated:
        t = time.perf_counter()
        llm.create_chat_completion(messages=chat, max_tokens=service.settings.max_tokens, temperature=0.0)
        direct.append(time.perf_counter() - t)
        served.append(total)
    overhead = (statistics.mean(served) - statistics.mean(direct)) / statistics.mean(served) if served else 0.0
    print(json.dumps({
        "questions": len(gold), "generated": len(generated),
        "answer_p50_s": round(pct(totals, 0.5), 2), "answer_p95_s": round(pct(totals, 0.95), 2),
        "generated_answer_p50_s": round(pct(served, 0.5), 2),
        "first_token_p50_s": round(pct(firsts, 0.5), 2), "first_token_p95_s": round(pct(firsts, 0.95), 2),
        "prompt_tokens_mean": round(statistics.mean(prompts), 1) if prompts else 0,
        "search_p50_ms": round(pct(searches, 0.5) * 1000, 1),
        "direct_llm_p50_s": round(pct(direct, 0.5), 2), "serving_overhead": round(overhead, 3),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
