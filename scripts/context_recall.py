"""Prompt-stage view of the gold set without the LLM: per question type, answerable questions refused before
generation, answerable questions whose every ``must`` group is in the sentences sent to the model, unanswerable
ones refused before generation, and the mean passage characters sent. The second count is ``rag eval``'s
``evidence_shown``, measured here in seconds, without answering (the prompt does not depend on the model).

    RAG_MODELS_DIR=models .venv/bin/python scripts/context_recall.py [--split dev] [--show]
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

from rag.config import Settings
from rag.eval import is_correct
from rag.service import build_service


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gold", default="eval/gold.jsonl")
    parser.add_argument("--split", default="dev", choices=["dev", "test"])
    parser.add_argument("--show", action="store_true", help="print the questions that miss or are refused")
    args = parser.parse_args()
    items = [json.loads(line) for line in Path(args.gold).read_text("utf-8").splitlines() if line.strip()]
    service = build_service(Settings(), generate=False)  # what the model is shown; no model is asked
    counts: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for item in (i for i in items if i.get("split") == args.split):
        plan = service.prepare([*item.get("history", []), {"role": "user", "content": item["question"]}])
        c = counts[item.get("type", "?")]
        c["n"] += 1
        c["pre_refused"] += bool(plan.refusal)
        if item["doc"] is None:
            continue
        context = "\n".join(s.simplified for s in plan.chosen)
        found = is_correct(context, [tuple(group) for group in item["must"]])
        c["in_context"] += found
        c["chars"] += len(context)
        if args.show and (plan.refusal or not found):
            print("miss", item["id"], item["question"], plan.refusal)
    for kind, c in sorted(counts.items()):
        print(f"{kind:13} n={c['n']:3} refused_before_generation={c['pre_refused']:3} "
              f"all_musts_in_context={c['in_context']:3} mean_chars={c['chars'] / max(c['n'], 1):.0f}")


if __name__ == "__main__":
    main()
