"""Prompt and generation speed of the llama.cpp build `make` chose for this CPU against an AVX2-only build,
measured in one run, alternating, on the provisioned GGUF.

    .venv/bin/python scripts/bench_llama_build.py [--rounds 3] [--prompt-tokens 512] [--gen-tokens 64]

The AVX2-only wheel is built once (about 6 minutes) into the same flag-keyed folder `make` uses. Each build
runs in its own child process (the wheel unpacked to a temporary folder first on its path). Prints the raw
tokens/s of every run, the medians and the ratio chosen/AVX2.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from rag.config import Settings  # noqa: E402
from rag.models.llama_build import AVX2_SET, Build, build_wheel, probe_cpu, wheel_cache  # noqa: E402
from rag.models.proof import build_record  # noqa: E402

_RUN = """
import json, sys, time
from llama_cpp import Llama
llm = Llama(model_path=sys.argv[1], n_ctx=2048, n_threads=2, n_threads_batch=2, n_batch=512, verbose=False)
text = open(sys.argv[2], encoding="utf-8").read()
tokens = llm.tokenize(text.encode())[: int(sys.argv[3])]
started = time.perf_counter(); llm.eval(tokens); prompt = time.perf_counter() - started
# Generation: the same prompt again (its evaluated prefix is reused), asked to go on for N tokens.
text_prompt = llm.detokenize(tokens).decode("utf-8", "ignore")
llm.create_completion(text_prompt, max_tokens=1, temperature=0.0)
started = time.perf_counter()
out = llm.create_completion(text_prompt, max_tokens=int(sys.argv[4]), temperature=0.0)
gen = time.perf_counter() - started
made = out["usage"]["completion_tokens"]
print(json.dumps({"prompt_tps": len(tokens) / prompt, "gen_tps": made / gen, "tokens": len(tokens)}))
"""


def unpack(wheel: Path, into: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-cache-dir", "--target",
                    str(into), str(wheel)], check=True)
    return into


def run(path: Path, gguf: Path, text: Path, prompt_tokens: int, gen_tokens: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(path)}
    out = subprocess.run([sys.executable, "-c", _RUN, str(gguf), str(text), str(prompt_tokens), str(gen_tokens)],
                         env=env, capture_output=True, text=True, check=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--prompt-tokens", type=int, default=512)
    parser.add_argument("--gen-tokens", type=int, default=64)
    args = parser.parse_args()
    record = build_record()
    if not record:
        print("no llama-build.json in this venv: run `make install` first", file=sys.stderr)
        return 2
    probe = probe_cpu()
    chosen = Build(tuple(record["features"]), probe.machine)
    avx2 = Build(tuple(f for f in probe.usable if f in AVX2_SET), probe.machine)
    gguf = Settings().resolved_llm_path
    text = sorted((REPO / "corpus").glob("*.txt"))[0]
    with tempfile.TemporaryDirectory(prefix="bench-llama-") as tmp:
        paths = {b.label: unpack(build_wheel(sys.executable, b, wheel_cache()), Path(tmp) / b.key)
                 for b in (chosen, avx2)}
        results: dict[str, list[dict[str, float]]] = {label: [] for label in paths}
        for r in range(args.rounds):
            for label, path in paths.items():
                results[label].append(run(path, gguf, text, args.prompt_tokens, args.gen_tokens))
                print(f"round {r + 1} {label}: " + json.dumps({k: round(v, 1) for k, v in results[label][-1].items()}),
                      flush=True)
    med = {label: {k: statistics.median(x[k] for x in rows) for k in ("prompt_tps", "gen_tps")}
           for label, rows in results.items()}
    for label, m in med.items():
        print(f"median {label}: prompt {m['prompt_tps']:.1f} tok/s, generation {m['gen_tps']:.1f} tok/s")
    a, b = med[chosen.label], med[avx2.label]
    print(f"ratio chosen/AVX2-only: prompt {a['prompt_tps'] / b['prompt_tps']:.2f}, "
          f"generation {a['gen_tps'] / b['gen_tps']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
