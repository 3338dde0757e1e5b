"""Growth benchmark: how the cost of updates, search, chat and start-up grows with the index.

    .venv/bin/python scripts/bench_growth.py                        # 1k, 10k, 100k chunks, this checkout
    .venv/bin/python scripts/bench_growth.py --sizes 1000 --repo ../old-checkout --label before
    .venv/bin/python scripts/bench_growth.py --sizes 100000 --keep /tmp/rag-bench-built   # build once, reuse

For each size it generates a corpus from the sample documents (shuffled paragraphs under fresh headings,
the same corpus for every checkout), builds the index with ``rag ingest`` and the fake embedder, starts
``rag serve`` (fake embedder, fake generator) and measures everything through the public HTTP API, so any
checkout of this repository can be measured the same way:

- add one 18-chunk document (POST /v1/documents, until it is indexed) and delete it (DELETE), 3 times;
- search p50/p95 (POST /v1/search, top_k 5; the query embedding is the fake embedder's);
- chat non-model p50/p95 (POST /v1/chat/completions with the fake generator, every question new: its
  numbers and names were never asked before; the evidence thresholds are set to 0 so every question takes
  the whole path: retrieval, evidence, sentence selection, prompt, citation);
- server ready: from starting ``rag serve`` to the first ready ``GET /health``;
- peak RSS of the server during an upload (the kernel's high-water mark, reset just before it).

Prints one markdown row per size and a JSON line with the raw numbers. Run big sizes under
``flock /tmp/cpu.lock``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
HEADINGS = ["一、", "二、", "三、", "四、", "五、", "六、"]
SUBHEADINGS = ["（一）", "（二）", "（三）", "（四）"]
PLACES = "东西南北中上下新安平永宁和兴华龙凤山河江湖海川石林泉阳明清远"


def sample_paragraphs() -> list[str]:
    """Clean paragraphs (over 40 characters) of the five sample documents."""
    out = []
    for path in sorted((ROOT / "corpus").iterdir()):
        for line in path.read_text("utf-8").split("\n"):
            line = line.strip()
            if len(line) > 40 and "(" not in line:
                out.append(line)
    return out


def place(rng: random.Random) -> str:
    return "".join(rng.sample(PLACES, 2)) + rng.choice("县市区镇")


def document(i: int, paragraphs: list[str], rng: random.Random, sections: int = 6) -> str:
    """A report about a made-up place: numbered sections of shuffled sample paragraphs."""
    where = place(rng)
    lines = [f"{where}第{i}号教育工作报告"]
    for h in HEADINGS[:sections]:
        lines.append(f"{h}{where}第{i}号报告的第{h[0]}部分")
        for sub in SUBHEADINGS:
            lines.append(f"{sub}{where}分项{i}-{h[0]}-{sub[1]}")
            lines.append(f"{where}在{2000 + i % 25}年新增学位{i % 997 + 3}个。" + rng.choice(paragraphs))
    return "\n".join(lines)


def generate_corpus(folder: Path, target_chunks: int, seed: int = 7) -> None:
    """About ``target_chunks`` chunks in documents of about 28 chunks each (kept between runs)."""
    if (folder / "done").exists():
        return
    folder.mkdir(parents=True, exist_ok=True)
    paragraphs, rng = sample_paragraphs(), random.Random(seed)
    for i in range(max(1, target_chunks // 28)):
        (folder / f"gen_{i:06d}.txt").write_text(document(i, paragraphs, rng), "utf-8")
    (folder / "done").write_text("")


def upload_document(paragraphs: list[str], n: int) -> bytes:
    """A new document of exactly 18 chunks with the default chunker."""
    from rag.chunk import chunk_document
    from rag.normalize import clean_document
    from rag.types import Document

    for seed in range(1000):
        text = document(900_000 + n, paragraphs, random.Random(n * 1000 + seed), sections=4)
        if len(chunk_document(clean_document(Document("u.txt", text, "")))) == 18:
            return text.encode()
    raise RuntimeError("no 18-chunk document found")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


class Server:
    """``rag serve`` of one checkout in a child process."""

    def __init__(self, repo: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        started = time.perf_counter()
        self.process = subprocess.Popen([*fake_rag(repo), "serve", "--port", str(self.port)],
                                        cwd=repo, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.client = httpx.Client(base_url=self.url, timeout=600)
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(self.process.stderr.read().decode()[-3000:])  # type: ignore[union-attr]
            try:
                health = self.client.get("/health")
                if health.status_code == 200 and health.json().get("status") == "ready":
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.ready_s = time.perf_counter() - started
        self.chunks = int(health.json()["index"]["chunks"])

    def rss_peak_reset(self) -> None:
        Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")

    def rss_peak_gb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024 / 1024
        return float("nan")

    def settle(self, response: httpx.Response) -> None:
        """Wait for an accepted (202) upload or delete job to finish."""
        if response.status_code == 202:
            job = response.json()["id"]
            while (state := self.client.get(f"/v1/jobs/{job}").json())["status"] not in ("done", "failed"):
                time.sleep(0.02)
            if state["status"] == "failed":
                raise RuntimeError(state)
        elif response.status_code >= 300:
            raise RuntimeError(response.text)

    def stop(self) -> None:
        self.client.close()
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def fake_rag(repo: Path) -> list[str]:
    """The ``rag`` command of ``repo`` on the fake embedder and generator: ``tests/fakes`` hands them in; a
    checkout from before the fakes left the settings selects them with ``fake_env``."""
    fakes = (repo / "tests" / "fakes" / "__main__.py").exists()
    return [sys.executable, "-m", "tests.fakes" if fakes else "rag.cli"]


def fake_env(repo: Path) -> dict[str, str]:
    if (repo / "tests" / "fakes" / "__main__.py").exists():
        return {}
    return {"RAG_EMBED_BACKEND": "fake", "RAG_LLM_BACKEND": "fake"}


def measure(repo: Path, corpus: Path, work: Path, queries: int, rounds: int,
            built: Path | None = None) -> dict[str, Any]:
    """The numbers of one size. With ``built`` (a folder), the index is built there once and copied for each
    run instead of ingested again (its ``build_s`` is then the copy's)."""
    env = {**os.environ, "PYTHONPATH": str(repo), **fake_env(repo),
           "RAG_INDEX_DIR": str(work / "index"), "RAG_CORPUS_DIR": str(work / "uploads"),
           "RAG_MODELS_DIR": str(work / "models"), "RAG_MIN_DENSE_SCORE": "0", "RAG_MIN_COVERAGE": "0",
           "RAG_UPLOAD_WAIT_SECONDS": "600"}
    started = time.perf_counter()
    if built is not None and not (built / "default" / "corpus.sqlite").exists():
        shutil.rmtree(built, ignore_errors=True)
        subprocess.run([*fake_rag(repo), "ingest", str(corpus)], cwd=repo, check=True,
                       env={**env, "RAG_INDEX_DIR": str(built)}, stdout=subprocess.DEVNULL)
    if built is not None:
        shutil.copytree(built / "default", work / "index" / "default")
    else:
        subprocess.run([*fake_rag(repo), "ingest", str(corpus)], cwd=repo, env=env, check=True,
                       stdout=subprocess.DEVNULL)
    build_s = time.perf_counter() - started
    paragraphs, rng = sample_paragraphs(), random.Random(11)
    server = Server(repo, env)
    try:
        server.client.post("/v1/search", json={"query": "热身", "top_k": 5}).raise_for_status()
        server.client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "热身一下？"}]})
        search_ms, chat_ms = [], []  # after one warm-up of each (imports, word lists loaded on first use)
        for _ in range(queries):
            where = place(rng)
            query = f"{where}第{rng.randrange(10_000)}号报告的第三部分"
            t = time.perf_counter()
            server.client.post("/v1/search", json={"query": query, "top_k": 5}).raise_for_status()
            search_ms.append((time.perf_counter() - t) * 1000)
            question = f"{place(rng)}在{rng.randrange(1990, 2030)}年新增了多少个学位{rng.randrange(10_000)}？"
            t = time.perf_counter()
            server.client.post("/v1/chat/completions",
                               json={"messages": [{"role": "user", "content": question}]}).raise_for_status()
            chat_ms.append((time.perf_counter() - t) * 1000)
        add_s, delete_s, rss = [], [], []
        for n in range(rounds):
            name = f"upload_{n}.txt"
            server.rss_peak_reset()
            t = time.perf_counter()
            server.settle(server.client.post("/v1/documents", files={"file": (name, upload_document(paragraphs, n),
                                                                              "text/plain")}))
            add_s.append(time.perf_counter() - t)
            rss.append(server.rss_peak_gb())
            t = time.perf_counter()
            server.settle(server.client.delete(f"/v1/documents/{name}"))
            delete_s.append(time.perf_counter() - t)
        return {"chunks": server.chunks, "build_s": round(build_s, 1), "add_s": add_s, "delete_s": delete_s,
                "search_p50_ms": percentile(search_ms, 50), "search_p95_ms": percentile(search_ms, 95),
                "chat_p50_ms": percentile(chat_ms, 50), "chat_p95_ms": percentile(chat_ms, 95),
                "ready_s": server.ready_s, "peak_rss_upload_gb": max(rss, default=float("nan"))}
    finally:
        server.stop()


def row(r: dict[str, Any], label: str) -> str:
    span = lambda xs: f"{min(xs):.2f}–{max(xs):.2f} s" if xs else "–"  # noqa: E731
    return (f"| {label} | {r['chunks']:,} | {span(r['add_s'])} | {span(r['delete_s'])} | "
            f"{r['search_p50_ms']:.0f} / {r['search_p95_ms']:.0f} ms | "
            f"{r['chat_p50_ms']:.0f} / {r['chat_p95_ms']:.0f} ms | {r['ready_s']:.1f} s | "
            f"{r['peak_rss_upload_gb']:.2f} GB |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,100000", help="target chunk counts, comma-separated")
    parser.add_argument("--repo", type=Path, default=ROOT, help="checkout to measure (its rag/ is imported)")
    parser.add_argument("--label", default="this checkout")
    parser.add_argument("--queries", type=int, default=40, help="searches and chat questions per size")
    parser.add_argument("--rounds", type=int, default=3, help="uploads and deletes per size")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "rag-bench-growth")
    parser.add_argument("--keep", type=Path, help="build each size's index once into KEEP/index-<size> and reuse "
                        "it in later runs (copied for each run; delete the folder after changing the index format)")
    parser.add_argument("--skip-updates", action="store_true", help="search, chat and start-up only (no uploads)")
    args = parser.parse_args()
    print("| code | chunks | add one 18-chunk doc | delete it | search p50 / p95 | chat non-model p50 / p95 "
          "| server ready | peak RSS during an upload |")
    print("|---|---|---|---|---|---|---|---|")
    for size in (int(s) for s in args.sizes.split(",")):
        corpus = args.work / f"corpus-{size}"
        generate_corpus(corpus, size)
        with tempfile.TemporaryDirectory(dir=args.work) as tmp:
            built = args.keep.resolve() / f"index-{size}" if args.keep else None
            result = measure(args.repo.resolve(), corpus, Path(tmp), args.queries,
                             0 if args.skip_updates else args.rounds, built)
        print(row(result, args.label), flush=True)
        print(json.dumps({"label": args.label, "size": size, **result}), file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
