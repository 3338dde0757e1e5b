"""`rag eval` on the whole gold set with the sample corpus ingested as ``.txt``, PDF, Word and HTML.

For each format, the five sample documents in that format (``corpus/*.txt``, or the fixtures in
``tests/fixtures/formats/`` made by ``scripts/make_format_fixtures.py``) go into a corpus folder and an index
of their own, and the gold set is evaluated in process with the real models. ``scan`` is the PDF fixtures as
scans (each page a picture, no text layer; ``tests/fixtures/scans.py``), read by OCR: its row also reports
the seconds the recogniser took per page. Every row reports the character accuracy of the extracted text
against the ``.txt`` (both after the normalizer, Simplified, whitespace removed, punctuation widths folded:
the share of the source's characters found in order, by ``difflib``). Gold ``doc`` ids name the ``.txt``
files; for another format they are rewritten to the same file name with that format's extension
(``000_ae0e48cc884afd96.txt`` → ``000_ae0e48cc884afd96.pdf``; ``scan`` files are ``.pdf`` too), so document
hits and citation checks look for the right file. Citation spans are checked against the text each
format's reader extracts from the file.

    flock /tmp/llm.lock .venv/bin/python scripts/eval_formats.py [--formats txt,pdf,scan] [--split test]
        [--limit N] [--no-llm]

Prints a Markdown table (the whole set and its test split) and writes each run under ``--out``.
"""

from __future__ import annotations

import argparse
import difflib
import json
import shutil
import sys
import tempfile
import time
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rag.config import Settings
from rag.embed import build_embedder
from rag.eval import run_eval
from rag.formats import ocr, read_document
from rag.index.store import Index
from rag.index.writer import IndexWriter, LocalIndex
from rag.normalize import clean_document
from rag.service import build_service

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures" / "formats"
METRICS = ("answer_accuracy", "evidence@k", "citation_span_valid")
EXTENSION = {"scan": "pdf"}  # a format whose files carry another format's extension
sys.path.insert(0, str(REPO))  # tests.fixtures.scans makes the scans


def corpus_of(fmt: str, folder: Path) -> Path:
    """A folder holding the five sample documents as ``fmt`` files."""
    folder.mkdir(parents=True)
    for txt in sorted((REPO / "corpus").glob("*.txt")):
        if fmt == "scan":
            from tests.fixtures.scans import fixture_pdf, scan_pdf

            (folder / f"{txt.stem}.pdf").write_bytes(scan_pdf(fixture_pdf(txt.stem)))
            continue
        source = txt if fmt == "txt" else FIXTURES / f"{txt.stem}.{fmt}"
        shutil.copyfile(source, folder / f"{txt.stem}.{fmt}")
    return folder


@contextmanager
def ocr_timer() -> Iterator[list[float]]:
    """Seconds the recogniser spends on each page read while inside."""
    spent: list[float] = []
    read_page = ocr.read_page

    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        page = read_page(*args, **kwargs)
        spent.append(time.perf_counter() - started)
        return page
    ocr.read_page = timed  # type: ignore[assignment]
    try:
        yield spent
    finally:
        ocr.read_page = read_page  # type: ignore[assignment]


def folded(text: str) -> str:
    """Text without whitespace, punctuation in one width: the recogniser writes full-width marks (，！（)
    where the samples have half-width (,!(), and no space between ideographs."""
    return "".join(unicodedata.normalize("NFKC", text).split())


def char_accuracy(index: Index, ext: str) -> float:
    """Share of the ``.txt`` sources' characters that the extracted text has, in order (after the
    normalizer, Simplified, whitespace removed), over the five samples."""
    found = total = 0
    for txt in sorted((REPO / "corpus").glob("*.txt")):
        source = folded(clean_document(read_document(txt, txt.name)).simplified)
        read = folded(index.document_text(f"{txt.stem}.{ext}"))
        found += sum(b.size for b in difflib.SequenceMatcher(None, source, read, autojunk=False).get_matching_blocks())
        total += len(source)
    return round(found / total, 4)


def gold_for(fmt: str, gold: Path, out: Path) -> Path:
    """The gold set with its ``doc`` ids naming the ``fmt`` files."""
    lines = []
    for line in gold.read_text("utf-8").splitlines():
        if line.strip():
            item = json.loads(line)
            if item.get("doc"):
                item["doc"] = str(Path(item["doc"]).with_suffix(f".{EXTENSION.get(fmt, fmt)}"))
            lines.append(json.dumps(item, ensure_ascii=False))
    out.write_text("\n".join(lines) + "\n", "utf-8")
    return out


def split_metrics(results: Path, split: str) -> dict[str, float | None]:
    """The three metrics over the questions of one split, from a run's ``results.jsonl``."""
    rows = [json.loads(line) for line in results.read_text("utf-8").splitlines() if line.strip()]
    rows = [r for r in rows if r["item"]["split"] == split]
    answerable = [r for r in rows if r["item"]["doc"] is not None]
    checked = [c for r in rows if r["answer"] for c in r["answer"]["citations"] if c["span_valid"] is not None]
    share = lambda n, d: round(n / d, 4) if d else None  # noqa: E731
    asked = any(r["answer"] for r in rows)  # a --no-llm run has no answers: no answer metrics
    return {"answer_accuracy": share(sum(bool(r["answer"] and r["answer"]["correct"]) for r in answerable),
                                     len(answerable)) if asked else None,
            "evidence@k": share(sum(bool(r["retrieval"] and r["retrieval"]["evidence"]) for r in answerable),
                                len(answerable)),
            "citation_span_valid": share(sum(bool(c["span_valid"]) for c in checked), len(checked)),
            "questions": len(rows)}


def run(fmt: str, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    corpus = corpus_of(fmt, tmp / fmt / "corpus")
    settings = Settings(corpus_dir=corpus, index_dir=tmp / fmt / "index")
    holder = LocalIndex()
    with ocr_timer() as spent:
        report = IndexWriter(settings, build_embedder(settings), holder).ingest([corpus])
    if report.skipped:
        raise SystemExit(f"{fmt}: skipped {report.skipped}")
    assert holder.loaded_index is not None
    reading = {"char_accuracy": char_accuracy(holder.loaded_index, EXTENSION.get(fmt, fmt))}
    if spent:
        reading |= {"ocr_pages": len(spent), "ocr_seconds_per_page": round(sum(spent) / len(spent), 2)}
    print(f".{fmt}: ingested in {report.seconds:.1f} s; {json.dumps(reading)}", flush=True)
    gold = gold_for(fmt, Path(args.gold), tmp / fmt / "gold.jsonl")
    out = Path(args.out) / fmt
    service = None if args.no_llm else build_service(settings)
    summary = run_eval(settings, gold, out, service=service, no_llm=args.no_llm, limit=args.limit, progress=False,
                       split=args.split)
    return {"all": {**{m: summary["metrics"][m] for m in METRICS}, "questions": summary["metrics"]["questions"],
                    "chunks": report.chunks, **reading},
            "test": split_metrics(out / "results.jsonl", "test")}


def table(rows: dict[str, dict[str, Any]]) -> str:
    head = "| corpus as | chunks | char accuracy | questions | answer_accuracy | evidence@5 | citation_span_valid | " \
           "test split: answer_accuracy | evidence@5 | citation_span_valid |\n|---|---|---|---|---|---|---|---|---|---|"
    fmt = lambda v: "—" if v is None else f"{v:.3f}"  # noqa: E731
    lines = [head]
    for name, row in rows.items():
        a, t = row["all"], row["test"]
        lines.append(f"| {name} | {a['chunks']} | {fmt(a['char_accuracy'])} | {a['questions']} | "
                     + " | ".join(fmt(a[m]) for m in METRICS)
                     + f" | {' | '.join(fmt(t[m]) for m in METRICS)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--formats", default="txt,pdf,docx,html")
    parser.add_argument("--gold", default=str(REPO / "eval" / "gold.jsonl"))
    parser.add_argument("--out", default=str(REPO / "eval" / "runs" / "formats"))
    parser.add_argument("--limit", type=int)
    parser.add_argument("--split", choices=["dev", "test"], help="only the gold set's dev or test part")
    parser.add_argument("--no-llm", action="store_true", help="retrieval metrics only (no LLM: no answers)")
    args = parser.parse_args()
    rows: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in args.formats.split(","):
            rows[f".{fmt}"] = run(fmt, args, Path(tmp))
            print(f".{fmt}: {json.dumps(rows[f'.{fmt}'], ensure_ascii=False)}", flush=True)
    print(table(rows))


if __name__ == "__main__":
    main()
