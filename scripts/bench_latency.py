"""Answer latency of two checkouts in the same run: the same questions, the same model, alternating rounds.

    RAG_MODELS_DIR=models .venv/bin/python scripts/bench_latency.py --repo ../old-checkout --repo . [--n 20]

Absolute seconds differ by a factor of three between days on this kind of machine, so only a ratio measured
in one run means anything. Each checkout (with its own built ``index/``) answers the first ``--n``
single-turn dev questions of this checkout's gold set in a child process of its own (its own ``rag``
package); the checkouts take turns for ``--rounds`` rounds, so a slow spell of the machine falls on both.
Prints, per checkout, answer p50/p95 and first-token p50 (streamed, as a client sees it), and the ratio of
each p50 to the first checkout's, plus the raw llama.cpp prompt speed seen in the run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Runs inside each checkout: answer the questions, streaming, and print one JSON line of timings.
CHILD = r"""
import json, sys, time
from rag.config import Settings
from rag.service import build_service
from rag.types import Answer
questions = json.loads(sys.argv[1])
service = build_service(Settings())
service.answer([{"role": "user", "content": "阳山县在清远市排名第几？"}])  # warm-up: page cache, prompt prefix
rows = []
for q in questions:
    started, first, answer = time.perf_counter(), None, None
    for part in service.stream([{"role": "user", "content": q}]):
        if isinstance(part, Answer):
            answer = part
        elif part and first is None:
            first = time.perf_counter() - started
    total = time.perf_counter() - started
    rows.append({"total": total, "first": total if first is None else first, "refused": answer.refused,
                 "prompt_tokens": answer.prompt_tokens})
llm = getattr(service.generator, "_llm", None)
speed = None
if llm is not None:  # raw prompt evaluation speed: one fresh prompt straight to llama.cpp
    prompt = "阳山县教育工作领导小组会议。" * 30
    llm.reset()
    started = time.perf_counter()
    llm.create_completion(prompt, max_tokens=1, temperature=0.0)
    speed = len(llm.tokenize(prompt.encode())) / (time.perf_counter() - started)
print("ROWS " + json.dumps({"rows": rows, "prompt_tokens_per_s": speed}))
"""


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def questions(n: int) -> list[str]:
    items = [json.loads(line) for line in (ROOT / "eval" / "gold.jsonl").read_text("utf-8").splitlines() if line]
    return [i["question"] for i in items if i.get("split") == "dev" and not i.get("history")][:n]


def run(repo: Path, asked: list[str]) -> dict:
    env = {**os.environ, "PYTHONPATH": str(repo)}
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(asked, ensure_ascii=False)], cwd=repo, env=env,
                          capture_output=True, text=True, check=True)
    line = next(x for x in done.stdout.splitlines() if x.startswith("ROWS "))
    return json.loads(line[5:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", action="append", required=True, help="a checkout with a built index (twice)")
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    repos = [Path(r).resolve() for r in args.repo]
    asked = questions(args.n)
    rows: dict[Path, list[dict]] = {r: [] for r in repos}
    speeds: list[float] = []
    for _ in range(args.rounds):
        for repo in repos:
            result = run(repo, asked)
            rows[repo] += result["rows"]
            speeds += [result["prompt_tokens_per_s"]] if result["prompt_tokens_per_s"] else []
            print(f"{repo.name}: round done", file=sys.stderr, flush=True)
    base = None
    print(f"questions {len(asked)} x {args.rounds} rounds; raw llama.cpp prompt speed in this run: "
          f"{min(speeds):.0f}-{max(speeds):.0f} tokens/s")
    print("| checkout | answer p50 / p95 | first text p50 | refused | prompt tokens mean | p50 ratio |")
    print("|---|---|---|---|---|---|")
    for repo in repos:
        r = rows[repo]
        p50 = pct([x["total"] for x in r], 0.5)
        base = base or p50
        tokens = [x["prompt_tokens"] for x in r if x["prompt_tokens"]]
        print(f"| {repo.name} | {p50:.2f} / {pct([x['total'] for x in r], 0.95):.2f} s | "
              f"{pct([x['first'] for x in r], 0.5):.2f} s | {sum(x['refused'] for x in r)}/{len(r)} | "
              f"{statistics.mean(tokens) if tokens else 0:.0f} | {p50 / base:.2f} |")


if __name__ == "__main__":
    main()
