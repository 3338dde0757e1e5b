"""Would one calibrated score refuse better than the answer stage's guess checks? Issue #23 asked for refusal
by a score fitted on data of more than one domain instead of a stack of vetoes; this measures it on the
stage's own answers.

    .venv/bin/python scripts/calibrate_checks.py --tune /tmp/ab/dev.jsonl /tmp/ab/cmrc-tune.jsonl \\
        --report /tmp/ab/test.jsonl /tmp/ab/cmrc-report.jsonl

The files are drafts of ``scripts/ablate_checks.py`` (the model's streamed pieces per question). Each answer
is replayed with the checks of fact only (``ablate_checks.FACTS``; the guesses are left out) and described by
what the guesses read, as numbers: the best document's coverage and the best passage's similarity, the
answer's own words (log), whether it is of the kind asked (``answer_type``), whether a figure counts something
else (``miscounted``), the best sentence's support, the answer's length (log) and whether it is a list. A
logistic regression (L2, Newton's method) is fitted on the tuning drafts; it answers at or above the highest
threshold that refuses at most ``--max-lost`` of the right answers out of fold (five folds by a hash of the
question id). Printed per run: accuracy / false refusal / unanswerable refused, and right less wrong replies
(a refusal of an answerable question counts neither way), for the checks as they are and for the score: out
of fold on the tuning runs, fitted on all tuning rows for the reporting runs. (Round 6 measured it with two
more signals, the answer's grounding and the cited sentences' share of the question; round 9 deleted the
checks that read them.)
"""

from __future__ import annotations

import argparse
import hashlib
import math
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ablate_checks as ab  # noqa: E402

from rag import cite  # noqa: E402
from rag.lang import CHOICE_QUESTION  # noqa: E402
from rag.normalize import to_simplified  # noqa: E402

GUESSES = frozenset(ab.GUESSES) - {"list_completion"}
NAMES = ("coverage", "best_dense", "own_words", "answer_type", "miscounted", "support", "chars", "is_list")
FOLDS = 5


@dataclass(frozen=True)
class Row:
    """One question: how the checks replied (right, refused), and, when only the guesses would refuse the
    answer, its signals and whether it is right."""

    id: str
    answerable: bool
    checks: tuple[bool, bool]
    signals: tuple[float, ...] | None = None
    right: bool = False


def rows_of(run: ab.Run) -> list[Row]:
    service, rows = run.service, []
    for q in run.questions:
        draft = run.rows[q.id]
        checks = ab.replay(service, q, draft, frozenset(), run.plans)
        row = Row(q.id, q.answerable, checks)
        if not draft["refusal"]:
            plan = run.plans[q.id]
            verdict, sent = ab.verified(service, plan, draft, GUESSES)
            if not verdict.reason:
                row = replace(row, signals=signals(service, plan, sent),
                              right=q.right(sent, False, verdict.citations))
        rows.append(row)
    return rows


def signals(service: ab.RagService, plan: ab.Plan, sent: str) -> tuple[float, ...]:
    text, asked, message = to_simplified(sent), plan.asked_simplified, to_simplified(plan.question)
    assert plan.analysis is not None
    evidence = service._judge(plan.index).assess(plan.hits, plan.analysis.words)
    own = 5 if CHOICE_QUESTION.search(message) else len(cite.own_words(text, message))
    kind = ab.Refuser(service.settings)._answer_type(ab.Answered(text, asked, plan.evidence, message),
                                                      plan.intent)
    return (evidence.coverage, evidence.best_dense, math.log1p(own), float(not kind),
            float(bool(cite.miscounted(text, plan.evidence, asked))),
            max((cite.support(text, s, asked) for s in plan.evidence), default=0.0), math.log1p(len(text)),
            float(plan.intent.kind == "list"))


def fit(x: np.ndarray, y: np.ndarray, l2: float = 1.0) -> np.ndarray:
    """Logistic regression by Newton's method on [1, x]; the bias is not penalised."""
    x = np.hstack([np.ones((len(x), 1)), x])
    w, penalty = np.zeros(x.shape[1]), np.eye(x.shape[1]) * l2
    penalty[0, 0] = 0.0
    for _ in range(50):
        p = 1 / (1 + np.exp(-x @ w))
        step = np.linalg.solve((x.T * (p * (1 - p))) @ x + penalty, x.T @ (p - y) + penalty @ w)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w


def probability(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-(w[0] + x @ w[1:])))


def out_of_fold(x: np.ndarray, y: np.ndarray, ids: list[str]) -> np.ndarray:
    fold = np.array([int(hashlib.sha1(i.encode()).hexdigest(), 16) % FOLDS for i in ids])
    p = np.zeros(len(y))
    for k in range(FOLDS):
        p[fold == k] = probability(fit(x[fold != k], y[fold != k]), x[fold == k])
    return p


def threshold(p: np.ndarray, y: np.ndarray, max_lost: float) -> float:
    """The highest threshold that refuses at most ``max_lost`` of the right answers."""
    return max(t for t in np.round(np.arange(0, 1, 0.01), 2) if (y & (p < t)).sum() <= max_lost * y.sum())


def line(name: str, rows: list[Row], replies: dict[str, tuple[bool, bool]]) -> str:
    answerable = [r for r in rows if r.answerable]
    absent = [r for r in rows if not r.answerable]
    right = sum(replies[r.id][0] for r in answerable) / max(len(answerable), 1)
    false = sum(replies[r.id][1] for r in answerable) / max(len(answerable), 1)
    refused = sum(replies[r.id][1] for r in absent) / max(len(absent), 1)
    return f"{name}: {right:.3f} / {false:.3f} / {refused:.3f}, right less wrong {ab.score([replies])}"


def scored(rows: list[Row], p: dict[str, float], at: float) -> dict[str, tuple[bool, bool]]:
    """(right, refused) of each question when the score decides what the checks of fact let through."""
    replies = {}
    for r in rows:
        refused = bool(r.signals is None or p[r.id] < at)
        replies[r.id] = (refused if not r.answerable else not refused and r.right, refused)
    return replies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tune", type=Path, nargs="+", required=True, help="drafts the score is fitted on")
    parser.add_argument("--report", type=Path, nargs="*", default=[], help="drafts it is reported on")
    parser.add_argument("--max-lost", type=float, default=0.03, help="share of right answers it may refuse")
    args = parser.parse_args()
    tune = {p.stem: rows_of(ab.load_run(p)) for p in args.tune}
    report = {p.stem: rows_of(ab.load_run(p)) for p in args.report}
    fitted = [(name, r) for name, rows in tune.items() for r in rows if r.signals is not None]
    x = np.array([r.signals for _, r in fitted])
    means, scales = x.mean(0), x.std(0) + 1e-9
    x = (x - means) / scales
    y = np.array([r.right for _, r in fitted])
    ids = [f"{name}/{r.id}" for name, r in fitted]
    oof = out_of_fold(x, y.astype(float), ids)
    at = threshold(oof, y, args.max_lost)
    w = fit(x, y.astype(float))
    print(f"{len(fitted)} tuning answers, {int(y.sum())} right; threshold {at:.2f} (at most {args.max_lost:.0%} of "
          "the right answers refused out of fold); weights: " +
          ", ".join(f"{n} {v:+.2f}" for n, v in zip(("bias", *NAMES), w, strict=True)))
    p_oof = {i: float(v) for i, v in zip(ids, oof, strict=True)}
    for name, rows in tune.items():
        p = {r.id: p_oof.get(f"{name}/{r.id}", 0.0) for r in rows}
        print(line(f"{name} (tuning), checks", rows, {r.id: r.checks for r in rows}))
        print(line(f"{name} (tuning), score out of fold", rows, scored(rows, p, at)))
    for name, rows in report.items():
        p = {r.id: float(probability(w, (np.array([r.signals]) - means) / scales)[0]) for r in rows if r.signals}
        print(line(f"{name}, checks", rows, {r.id: r.checks for r in rows}))
        print(line(f"{name}, score", rows, scored(rows, p, at)))


if __name__ == "__main__":
    main()
