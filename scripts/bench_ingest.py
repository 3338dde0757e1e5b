"""Ingestion benchmark: throughput (chunks/s) and peak memory, on the sample corpus or on a generated one.

    .venv/bin/python scripts/bench_ingest.py                    # the sample corpus
    .venv/bin/python scripts/bench_ingest.py --generated 10000  # >= 10,000 chunks made from the samples

Each run ingests into a temporary index with the configured (real) embedder and prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

from rag.config import Settings
from rag.embed import build_embedder
from rag.formats import load_documents
from rag.ingest import ingest_paths
from rag.normalize import clean

ROOT = Path(__file__).resolve().parent.parent
HEADINGS = ["一、", "二、", "三、", "四、", "五、", "六、"]
SUBHEADINGS = ["（一）", "（二）", "（三）", "（四）"]


def generate_corpus(folder: Path, target_chunks: int, seed: int = 7) -> None:
    """Documents built from shuffled sample paragraphs under fresh headings (about 30 chunks each)."""
    docs, _ = load_documents([ROOT / "corpus"])
    paragraphs = [p for d in docs for p in clean(d.text).split("\n") if len(p) > 40]
    rng = random.Random(seed)
    n_docs = max(1, target_chunks // 28)
    for i in range(n_docs):
        lines = [f"生成文档{i:05d}：教育工作报告"]
        for h in HEADINGS:
            lines.append(f"{h}第{i}号报告的第{h[0]}部分")
            for sub in SUBHEADINGS:
                lines.append(f"{sub}分项{i}-{h[0]}-{sub[1]}")
                lines.extend(rng.sample(paragraphs, 2))
        (folder / f"gen_{i:05d}.txt").write_text("\n".join(lines), "utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--generated", type=int, default=0, help="generate a corpus of about N chunks")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        corpus = ROOT / "corpus"
        if args.generated:
            corpus = Path(tmp) / "corpus"
            corpus.mkdir()
            generate_corpus(corpus, args.generated)
        settings = Settings(index_dir=Path(tmp) / "index", models_dir=ROOT / "models")
        embedder = build_embedder(settings)
        started = time.perf_counter()
        index, report = ingest_paths([corpus], settings, embedder, None)
        index.snapshot(force=True)
        seconds = time.perf_counter() - started
        again = time.perf_counter()
        _, second = ingest_paths([corpus], settings, embedder, index)
        print(json.dumps({
            "corpus": "generated" if args.generated else "sample", "documents": report.documents,
            "chunks": report.chunks, "seconds": round(seconds, 2), "chunks_per_s": round(report.chunks / seconds, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "reingest_unchanged_s": round(time.perf_counter() - again, 2), "reingest_embedded": second.embedded,
        }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
