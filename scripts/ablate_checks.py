"""What each refusal check of the answer stage (``rag.refuse``) earns: the same model answers, replayed with
every check and with each one removed.

    RAG_MODELS_DIR=models .venv/bin/python scripts/ablate_checks.py --gold dev --drafts /tmp/ab/dev.jsonl
    RAG_MODELS_DIR=models .venv/bin/python scripts/ablate_checks.py --cmrc tune --limit 60 \\
        --archive eval/runs/cmrc2018/archive --drafts /tmp/ab/cmrc-tune.jsonl
    .venv/bin/python scripts/ablate_checks.py --replay /tmp/ab/dev.jsonl /tmp/ab/cmrc-tune.jsonl --prune

The checks after generation only decide what of the model's text is sent; they never change what the model
writes. So the model answers each question once (``--drafts``: its streamed pieces are kept with a hash of
the prompt they answer, and reused when the file is there and the code still makes that prompt), and the
stage's own streaming verifier (``RagService._verdict`` in a ``StreamVerifier``, the longest passing clause
prefix and a list answer's completion from the source included) is replayed over them with a set of checks
(or the completion, ``list_completion``) left out.
``coverage``, the one check before generation, is not ablated: it also picks the documents the model reads.
A row says, per variant: answerable right, false refusal (answerable refused), unanswerable refused, and
against all checks, how many more replies are right and how many more wrong (an answer to an unanswerable
question is wrong; a refusal of an answerable one is neither). ``--prune`` removes, one at a time, the
check whose removal loses nothing on the files given (the tuning runs), until each one left costs answers.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from rag.answer.verify import StreamVerifier, Verdict  # noqa: E402
from rag.config import Settings  # noqa: E402
from rag.eval import cmrc  # noqa: E402
from rag.eval.backends import Reply  # noqa: E402
from rag.eval.gold import is_right, load_gold, select_items  # noqa: E402
from rag.generate import Completion  # noqa: E402
from rag.refuse import _AFTER_RULES, AFTER, Answered, Refuser  # noqa: E402
from rag.service import Plan, RagService, build_service  # noqa: E402

# The checks of fact or of form stay whatever they measure: the model said it found nothing; a number that
# stands in no source is invented; an answer no sentence supports cannot be cited.
FACTS = ("model_not_found", "invented_numbers", "support")
# Each check is ablated, and the list completion (``rag.listing.complete``, which rewrites a list answer from
# the source before its verdict); only the guesses may be pruned.
CHECKS = (*(c.name for c in AFTER), "list_completion")
GUESSES = tuple(name for name in CHECKS if name not in FACTS)


class Ablated(Refuser):
    """The answer stage's checks without those named in ``skip``."""

    def __init__(self, settings: Settings, skip: Iterable[str] = ()) -> None:
        super().__init__(settings)
        self.skip = frozenset(skip)

    def after(self, answered: Answered, intent: Any) -> str:
        for check in _AFTER_RULES:
            if check.__name__.lstrip("_") not in self.skip and (reason := check(self, answered, intent)):
                return reason
        return ""

    def support(self, citations: Any) -> str:  # type: ignore[override]
        return "" if "support" in self.skip else Refuser.support(citations)


@dataclass(frozen=True)
class Question:
    id: str
    messages: list[dict[str, str]]
    right: Any  # (text, refused, citations) -> bool
    answerable: bool


def gold_questions(split: str, limit: int | None) -> list[Question]:
    items = select_items(load_gold(REPO / "eval" / "gold.jsonl"), limit=limit, split=split)
    return [Question(i.id, i.messages, lambda t, r, c, i=i: is_right(t, r, c, i), i.answerable)
            for i in items]


def cmrc_questions(part: str, limit: int | None) -> list[Question]:
    bench = cmrc.load_cmrc(cmrc.resolve_benchmark("cmrc2018"))
    return [Question(q.id, [{"role": "user", "content": q.question}],
                     lambda t, r, c, q=q: cmrc.is_right(Reply(t, tuple(c), r, None, 0.0, None), q), q.answerable)
            for q in cmrc.select_questions(bench, part, limit=limit)]


def prompt_key(plan: Plan) -> str:
    """What the model was asked (or the refusal before it), hashed: a draft answers this prompt only."""
    return hashlib.sha256(json.dumps([plan.chat, plan.refusal], ensure_ascii=False).encode()).hexdigest()[:16]


def draft(service: RagService, question: Question, plan: Plan | None = None) -> dict[str, Any]:
    """The refusal before generation, or the model's streamed pieces, with the prompt they answer (``plan``:
    the question's, when the caller has made it already)."""
    plan = plan or service.prepare(question.messages)
    pieces: list[str] = []
    if not plan.refusal:
        for item in service.generator.stream(plan.chat, service.settings.max_tokens, service.settings.temperature):
            if not isinstance(item, Completion):
                pieces.append(item)
    return {"id": question.id, "prompt": prompt_key(plan), "refusal": plan.refusal, "pieces": pieces}


def redrafted(service: RagService, questions: Iterable[Question],
              done: dict[str, dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Each question's draft: the one in ``done`` while the code still asks the model the same prompt, else a
    new one (a changed template or rule is drafted again only where it changed a prompt)."""
    for question in questions:
        old, plan = done.get(question.id), service.prepare(question.messages)
        yield old if old is not None and old.get("prompt") == prompt_key(plan) else draft(service, question, plan)


def replay(service: RagService, question: Question, row: dict[str, Any], skip: frozenset[str],
           plans: dict[str, Plan]) -> tuple[bool, bool]:
    """(right, refused) of the stage without the checks in ``skip``, on the model's recorded answer. The
    plan does not depend on the checks after generation: it is made once (``plans``)."""
    if row["refusal"]:
        return question.right("", True, ()), True
    if question.id not in plans:
        plans[question.id] = service.prepare(question.messages)
    verdict, sent = verified(service, plans[question.id], row, skip)
    refused = bool(verdict.reason)
    return question.right("" if refused else sent, refused, verdict.citations), refused


def verified(service: RagService, plan: Plan, row: dict[str, Any], skip: frozenset[str]) -> tuple[Verdict, str]:
    """The verdict of the stage without the checks in ``skip`` on the recorded answer, and the text it sends."""
    service.refuser = Ablated(service.settings, skip)
    completes = plan.intent.kind == "list" and "list_completion" not in skip
    verifier = StreamVerifier(lambda text: service._verdict(text, plan), plan.traditional,
                              service._completer(plan) if completes else None)
    for piece in row["pieces"]:
        verifier.feed(piece)
    verdict, _ = verifier.finish("".join(row["pieces"]))
    return verdict, verifier.sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gold", help="gold split to draft (dev, test)")
    parser.add_argument("--cmrc", help="CMRC 2018 part to draft (tune, report)")
    parser.add_argument("--archive", type=Path, help="the CMRC archive folder (corpus/, index/) of a rag eval run")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--drafts", type=Path, help="the drafts file to write (or reuse)")
    parser.add_argument("--replay", type=Path, nargs="*", default=[], help="drafts files to replay together")
    parser.add_argument("--prune", action="store_true", help="remove checks that lose nothing, one at a time")
    parser.add_argument("--without", default="", help="also a row without these checks (comma-separated)")
    args = parser.parse_args()
    if args.drafts:
        make_drafts(args)
        args.replay = [*args.replay, args.drafts]
    runs = [load_run(path) for path in args.replay]
    report(runs, args.prune, frozenset(filter(None, args.without.split(","))))


def service_for(meta: dict[str, Any], generate: bool) -> RagService:
    settings = Settings()
    if "min_coverage" in meta:  # coverage picks the documents the model reads: the drafts' own threshold
        settings = settings.model_copy(update={"min_coverage": meta["min_coverage"]})
    if meta.get("archive"):
        settings = cmrc.archive_settings(settings, Path(meta["archive"]))
    return build_service(settings, generate=generate)


def questions_for(meta: dict[str, Any]) -> list[Question]:
    return gold_questions(meta["gold"], meta["limit"]) if meta.get("gold") else \
        cmrc_questions(meta["cmrc"], meta["limit"])


def make_drafts(args: argparse.Namespace) -> None:
    meta = {"gold": args.gold, "cmrc": args.cmrc, "limit": args.limit, "min_coverage": Settings().min_coverage,
            "archive": str(args.archive.resolve()) if args.archive else None}
    done = {}
    if args.drafts.is_file():
        lines = args.drafts.read_text("utf-8").splitlines()
        if lines and json.loads(lines[0]) == {"meta": meta}:
            done = {r["id"]: r for r in map(json.loads, lines[1:])}
    service = service_for(meta, generate=True)
    args.drafts.parent.mkdir(parents=True, exist_ok=True)
    with args.drafts.open("w", encoding="utf-8") as out:
        out.write(json.dumps({"meta": meta}) + "\n")
        for n, row in enumerate(redrafted(service, questions_for(meta), done), 1):
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
            out.flush()
            print(f"\r{n} drafted", end="", file=sys.stderr)
    print(file=sys.stderr)


@dataclass
class Run:
    name: str
    service: RagService
    questions: list[Question]
    rows: dict[str, dict[str, Any]]
    plans: dict[str, Plan] = field(default_factory=dict)


def load_run(path: Path, generate: bool = False) -> Run:
    """A drafts file's questions and drafts, with a service that replays them (and drafts, with ``generate``)."""
    lines = path.read_text("utf-8").splitlines()
    meta = json.loads(lines[0])["meta"]
    rows = {r["id"]: r for r in map(json.loads, lines[1:])}
    questions = [q for q in questions_for(meta) if q.id in rows]
    return Run(path.stem, service_for(meta, generate=generate), questions, rows)


Outcome = dict[str, tuple[bool, bool]]  # question id -> (right, refused)


def outcomes(runs: Sequence[Run], skip: frozenset[str]) -> list[Outcome]:
    return [{q.id: replay(r.service, q, r.rows[q.id], skip, r.plans) for q in r.questions} for r in runs]


def wrong(outcome: tuple[bool, bool]) -> bool:
    """An answer that is not right: a wrong answer, or an answer to an unanswerable question."""
    right, refused = outcome
    return not right and not refused


def row_of(name: str, runs: Sequence[Run], result: list[Outcome], base: list[Outcome]) -> str:
    cells = []
    for run, got, ref in zip(runs, result, base, strict=True):
        questions = run.questions
        answerable = [q for q in questions if q.answerable]
        absent = [q for q in questions if not q.answerable]
        right = sum(got[q.id][0] for q in answerable) / max(len(answerable), 1)
        false = sum(got[q.id][1] for q in answerable) / max(len(answerable), 1)
        refused = sum(got[q.id][1] for q in absent) / max(len(absent), 1)
        d_right = sum(got[q.id][0] for q in questions) - sum(ref[q.id][0] for q in questions)
        d_wrong = sum(wrong(got[q.id]) for q in questions) - sum(wrong(ref[q.id]) for q in questions)
        cells.append(f"{right:.3f} / {false:.3f} / {refused:.3f} ({d_right:+d} right, {d_wrong:+d} wrong)")
    return f"| {name} | " + " | ".join(cells) + " |"


def score(result: list[Outcome]) -> int:
    """Right replies less wrong ones (a refusal of an answerable question counts neither way): a check pays
    when it turns more wrong answers into refusals than right answers."""
    return sum(right - wrong((right, refused)) for outcome in result for right, refused in outcome.values())


def report(runs: Sequence[Run], prune: bool, without: frozenset[str] = frozenset()) -> None:
    names = [r.name for r in runs]
    head = "accuracy / false refusal / unanswerable refused (more right, more wrong)"
    print("| variant | " + " | ".join(f"{n}: {head}" for n in names) + " |")
    print("|---|" + "---|" * len(names))
    skip: frozenset[str] = frozenset()
    base = outcomes(runs, skip)
    print(row_of("all checks", runs, base, base))
    for check in CHECKS:
        print(row_of(f"− `{check}`", runs, outcomes(runs, frozenset({check})), base))
    if without:
        print(row_of("without " + ", ".join(f"`{c}`" for c in sorted(without)), runs, outcomes(runs, without), base))
    if not prune:
        return
    while True:
        current = outcomes(runs, skip)
        trials = {c: score(outcomes(runs, skip | {c})) - score(current) for c in GUESSES if c not in skip}
        if not trials or max(trials.values()) < 0:
            break
        best = max(trials, key=lambda c: (trials[c], c))
        skip = skip | {best}
        print(f"pruned `{best}` (right less wrong {trials[best]:+d} on these runs); left: "
              f"{', '.join(c for c in GUESSES if c not in skip)}")
    if not skip:
        print("nothing to prune: removing any one check costs right-minus-wrong replies on these runs")
        return
    print(row_of("without " + ", ".join(f"`{c}`" for c in sorted(skip)), runs, outcomes(runs, skip), base))


if __name__ == "__main__":
    main()
