"""What the select-then-copy answer stage (#23) would cost with Qwen's 151k-token vocabulary, measured before
building on it: one numbered-sentence prompt, answered five ways in the same run.

    .venv/bin/python scripts/bench_select.py [--sentences 12] [--rounds 3]

1. ``free``: the model writes up to 8 tokens, unconstrained (the reference);
2. ``grammar``: the same under a ``LlamaGrammar`` that allows only sentence numbers or 无;
3. ``yes_no``: the prompt plus «资料是否包含答案？», one forward pass, P(是) against P(否) from the last logits;
4. ``continue``: a second request whose prompt extends the first (llama.cpp reuses the evaluated prefix);
5. ``logits_all``: the prompt evaluated by a model opened with ``logits_all=True``, which per-token
   log-probabilities of a candidate span need (every position's 151k logits kept).

Prints the raw prompt speed seen (tokens/s of the cold prompt) and each way's median seconds and its ratio to
``free``. Run it with nothing else on the machine.
"""

from __future__ import annotations

import argparse
import ctypes
import math
import re
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from rag.config import Settings  # noqa: E402

GRAMMAR = 'root ::= "无" | num ("," num)*\nnum ::= [1-9] | [1-9] [0-9]\n'
QUESTION = "阳山县在清远市八个县（市、区）中排名第几？"


def numbered(sentences: int) -> str:
    text = (REPO / "corpus" / "000_ae0e48cc884afd96.txt").read_text("utf-8")
    parts = [p.strip() for p in re.split(r"(?<=[。！？])", text) if len(p.strip()) > 8][:sentences]
    return "\n".join(f"[{i}] {p}" for i, p in enumerate(parts, 1))


def chat(llm: object, body: str) -> str:
    return (f"<|im_start|>system\n只根据资料回答。<|im_end|>\n<|im_start|>user\n资料：\n{body}\n问题：{QUESTION}\n"
            "哪些句子回答了问题？只写句子编号，用逗号分隔；没有就写“无”。<|im_end|>\n<|im_start|>assistant\n")


def timed(fn: object) -> float:
    started = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - started


def yes_no(llm: object, prompt: str) -> float:
    """P(是) / (P(是) + P(否)) from the logits after the appended question (one forward pass)."""
    import llama_cpp

    tokens = llm.tokenize((prompt + "资料是否包含答案？只答是或否。").encode(), special=True)  # type: ignore[attr-defined]
    llm.reset()  # type: ignore[attr-defined]
    llm.eval(tokens)  # type: ignore[attr-defined]
    n_vocab = llm.n_vocab()  # type: ignore[attr-defined]
    ptr = llama_cpp.llama_get_logits_ith(llm.ctx, -1)  # type: ignore[attr-defined]
    logits = np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)), shape=(n_vocab,))
    yes, no = (llm.tokenize(w.encode(), add_bos=False)[0] for w in ("是", "否"))  # type: ignore[attr-defined]
    return 1 / (1 + math.exp(float(logits[no] - logits[yes])))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sentences", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from llama_cpp import Llama, LlamaGrammar

    gguf = str(Settings().resolved_llm_path)
    llm = Llama(model_path=gguf, n_ctx=2048, n_threads=2, n_threads_batch=2, verbose=False)
    grammar = LlamaGrammar.from_string(GRAMMAR, verbose=False)
    prompt = chat(llm, numbered(args.sentences))
    n_prompt = len(llm.tokenize(prompt.encode(), special=True))

    def cold(**kw: object) -> str:
        llm.reset()
        out = llm.create_completion(prompt, max_tokens=8, temperature=0.0, **kw)  # type: ignore[arg-type]
        return str(out["choices"][0]["text"])  # type: ignore[index]

    results: dict[str, list[float]] = {k: [] for k in ("free", "grammar", "yes_no", "continue", "logits_all")}
    said: dict[str, str] = {}
    for _ in range(args.rounds):
        results["free"].append(timed(lambda: said.__setitem__("free", cold())))
        results["grammar"].append(timed(lambda: said.__setitem__("grammar", cold(grammar=grammar))))
        results["yes_no"].append(timed(lambda: said.__setitem__("yes_no", f"{yes_no(llm, prompt):.3f}")))
        cold()
        follow = prompt + said["free"] + "<|im_end|>\n<|im_start|>user\n只用这些句子里的原话回答问题。<|im_end|>\n" \
            "<|im_start|>assistant\n"
        results["continue"].append(timed(lambda follow=follow: said.__setitem__(
            "continue", llm.create_completion(follow, max_tokens=16, temperature=0.0)["choices"][0]["text"])))
    full = Llama(model_path=gguf, n_ctx=2048, n_threads=2, n_threads_batch=2, logits_all=True, verbose=False)
    tokens = full.tokenize(prompt.encode(), special=True)
    for _ in range(args.rounds):
        full.reset()
        results["logits_all"].append(timed(lambda: full.eval(tokens)))
    free = statistics.median(results["free"])
    print(f"prompt: {n_prompt} tokens ({args.sentences} numbered sentences); raw prompt speed about "
          f"{n_prompt / min(results['logits_all'] + results['yes_no']):.1f} tokens/s")
    for name, times in results.items():
        m = statistics.median(times)
        print(f"{name:10s} median {m:6.2f} s  ratio to free {m / free:5.2f}  said {said.get(name, '')!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
