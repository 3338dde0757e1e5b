"""Fit the answerability model (``rag.answer.answerability``) on tuning runs of two domains and write
``eval/answerability.json``: the parameters, the threshold, the data they came from and this command.

    RAG_ANSWER_STAGE=choose RAG_MIN_CONFIDENCE=0 .venv/bin/rag eval --split dev --out eval/runs/tune-gold-dev
    RAG_ANSWER_STAGE=choose RAG_MIN_CONFIDENCE=0 .venv/bin/rag eval --benchmark cmrc2018 --part tune --limit 60 \\
        --no-baseline
    .venv/bin/python scripts/fit_answerability.py --gold eval/runs/tune-gold-dev/results.jsonl \\
        --cmrc eval/runs/cmrc2018/tune/results.jsonl --max-lost 0.03 --write

With ``RAG_MIN_CONFIDENCE=0`` the service answers whenever the model chose a sentence, so every row shows
whether its answer was right. A row is positive when the question is answerable and the answer right; an
unanswerable question answered, or a wrong answer, is negative (a refusal is better than either). The model is
a logistic regression over the standardised signals with an L2 penalty; its threshold is the highest at which
it refuses at most ``--max-lost`` of the right answers, out of fold over both domains (the false-refusal
budget: refusing more costs right answers faster than it saves wrong ones).
Prints the out-of-fold curve: threshold, answered share, accuracy among answered, answerable accuracy.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from rag.answer.answerability import FITTED, Signals  # noqa: E402

L2 = 1.0
FOLDS = 5


def _signals(raw: dict[str, float]) -> dict[str, float]:
    return Signals(**{k: raw[k] for k in Signals.__dataclass_fields__ if k in raw}).features()


def gold_rows(path: Path) -> list[tuple[str, dict[str, float], bool, bool]]:
    """(id, features, answerable, right) of each gold question the model chose a sentence for."""
    rows = []
    for line in path.read_text("utf-8").splitlines():
        r = json.loads(line)
        reply = (r.get("answer") or {}).get("reply") or {}
        signals = reply.get("signals")
        if not signals or not signals.get("chosen") or reply.get("refused"):  # refused by a check of facts
            continue
        answerable = r["item"]["doc"] is not None
        rows.append((r["item"]["id"], _signals(signals), answerable, answerable and bool(r["answer"]["correct"])))
    return rows


def cmrc_rows(path: Path) -> list[tuple[str, dict[str, float], bool, bool]]:
    rows = []
    for line in path.read_text("utf-8").splitlines():
        r = json.loads(line)
        signals = r["service"].get("signals")
        if not signals or not signals.get("chosen") or r["service"].get("refused"):
            continue
        answerable = not r["left_out"]
        rows.append((r["id"], _signals(signals), answerable, answerable and bool(r["service"]["right"])))
    return rows


def standardised(raw: np.ndarray, means: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """A bias column and the standardised features; a signal the backend did not report counts as its mean,
    as in ``Answerability.probability``."""
    return np.hstack([np.ones((len(raw), 1)), np.nan_to_num((raw - means) / scales, nan=0.0)])


def fit(x: np.ndarray, y: np.ndarray, l2: float = L2) -> np.ndarray:
    """Logistic regression by Newton's method; the bias (column 0) is not penalised."""
    w = np.zeros(x.shape[1])
    penalty = np.eye(x.shape[1]) * l2
    penalty[0, 0] = 0.0
    for _ in range(50):
        p = 1 / (1 + np.exp(-x @ w))
        gradient = x.T @ (p - y) + penalty @ w
        hessian = (x.T * (p * (1 - p))) @ x + penalty
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w


def out_of_fold(x: np.ndarray, y: np.ndarray, ids: list[str]) -> np.ndarray:
    """Each row's probability from a model fitted without its fold (folds by a hash of the id)."""
    fold = np.array([int(hashlib.sha1(i.encode()).hexdigest(), 16) % FOLDS for i in ids])
    p = np.zeros(len(y))
    for k in range(FOLDS):
        w = fit(x[fold != k], y[fold != k])
        p[fold == k] = 1 / (1 + np.exp(-x[fold == k] @ w))
    return p


def curve(p: np.ndarray, y: np.ndarray, answerable: np.ndarray, total_answerable: int,
          step: float = 0.05) -> list[dict[str, float]]:
    rows = []
    for t in np.round(np.arange(0.0, 1.0, step), 2):
        answered = p >= t
        rows.append({"threshold": float(t), "answered": float(answered.mean()),
                     "right_refused": float((y & ~answered).sum() / max(y.sum(), 1)),
                     "precision": float(y[answered].mean()) if answered.any() else 1.0,
                     "answerable_accuracy": float((y & answered).sum() / max(total_answerable, 1)),
                     "unanswerable_refused": float((~answered & ~answerable).sum() / max((~answerable).sum(), 1))})
    return rows


def pick(table: list[dict[str, float]], max_lost: float) -> dict[str, float]:
    """The row of the highest threshold that refuses at most ``max_lost`` of the right answers."""
    return [r for r in table if r["right_refused"] <= max_lost][-1]


def select(raw: np.ndarray, names: list[str], y: np.ndarray, answerable: np.ndarray, ids: list[str],
           max_lost: float) -> list[str]:
    """Backward elimination: while leaving out some signal refuses as many unanswerable questions out of fold
    at the same lost share (and answers no fewer), leave out the one that does best without it."""
    means, scales = np.nanmean(raw, 0), np.nanstd(raw, 0) + 1e-9

    def score(keep: list[int]) -> tuple[float, float]:
        x = standardised(raw[:, keep], means[keep], scales[keep])
        row = pick(curve(out_of_fold(x, y.astype(float), ids), y, answerable, int(answerable.sum()), step=0.01),
                   max_lost)
        return row["unanswerable_refused"], -row["answered"]

    keep = list(range(len(names)))
    best = score(keep)
    while len(keep) > 1:
        trials = [(score([k for k in keep if k != d]), d) for d in keep]
        without, dropped = max(trials)
        if without[0] < best[0]:
            break
        print(f"left out {names[dropped]}: unanswerable refused {without[0]:.3f} (was {best[0]:.3f})")
        keep, best = [k for k in keep if k != dropped], without
    return [names[k] for k in keep]


def signed(raw: np.ndarray, names: list[str], y: np.ndarray) -> list[str]:
    """The signals whose fitted weight keeps the sign of their own relation to a right answer: while some
    weight points against it (two overlapping coverages, one pushed negative to cancel the other), the most
    negative such signal is left out and the rest refitted. A signal then only ever raises the probability in
    the direction its meaning gives it."""
    keep = list(range(len(names)))
    while True:
        means, scales = np.nanmean(raw[:, keep], 0), np.nanstd(raw[:, keep], 0) + 1e-9
        w = fit(standardised(raw[:, keep], means, scales), y.astype(float))[1:]
        own = np.array([np.sign(np.corrcoef(np.nan_to_num(raw[:, k], nan=float(np.nanmean(raw[:, k]))), y)[0, 1])
                        for k in keep])
        wrong = w * own
        if wrong.min() >= 0 or len(keep) == 1:
            return [names[k] for k in keep]
        dropped = keep[int(wrong.argmin())]
        print(f"left out {names[dropped]}: its weight {w[int(wrong.argmin())]:+.2f} points against its own "
              f"relation to a right answer")
        keep.remove(dropped)


def report_rows(path: Path, kind: str) -> list[dict[str, object]]:
    """Every question of a reporting run made with ``RAG_MIN_CONFIDENCE=0``: its signals (``None`` when the
    model chose nothing or the service refused before choosing), whether it is answerable, whether its reply
    was right, whether the service refused it anyway, and by which check."""
    rows: list[dict[str, object]] = []
    for line in path.read_text("utf-8").splitlines():
        r = json.loads(line)
        if kind == "gold":
            reply = (r.get("answer") or {}).get("reply") or {}
            answerable, right = r["item"]["doc"] is not None, bool((r.get("answer") or {}).get("correct"))
        else:
            reply = r["service"]
            answerable, right = not r["left_out"], bool(reply.get("right"))
        signals = reply.get("signals")
        rows.append({"signals": _signals(signals) if signals and signals.get("chosen") else None,
                     "answerable": answerable, "right": right and answerable, "refused": bool(reply.get("refused")),
                     "reason": str(reply.get("reason") or "").split(":")[0].split(" ")[0]})
    return rows


def apply(rows: list[dict[str, object]], probability: object, threshold: float) -> dict[str, float]:
    """Answer accuracy, false refusal and refusal on unanswerable questions when the service refuses below
    ``threshold`` (``probability``: features → P(right); ``None`` refuses nothing more)."""
    def refused(r: dict[str, object]) -> bool:
        if r["refused"] or r["signals"] is None:
            return bool(r["refused"])
        return probability is not None and probability(r["signals"]) < threshold  # type: ignore[operator]

    answerable = [r for r in rows if r["answerable"]]
    unanswerable = [r for r in rows if not r["answerable"]]
    return {"answer_accuracy": sum(bool(r["right"]) and not refused(r) for r in answerable) / max(len(answerable), 1),
            "false_refusal": sum(refused(r) for r in answerable) / max(len(answerable), 1),
            "refusal_on_unanswerable": sum(refused(r) for r in unanswerable) / max(len(unanswerable), 1)}


def ablate(raw: np.ndarray, names: list[str], means: np.ndarray, scales: np.ndarray, y: np.ndarray,
           answerable: np.ndarray, ids: list[str], max_lost: float) -> dict[str, dict[str, float]]:
    """Each signal left out in turn (and all of them: the model's choice alone), refitted and scored out of fold
    at the highest threshold losing at most ``max_lost`` of the right answers."""
    out = {}
    for left_out in ["(none)", *names, "(all)"]:
        keep = [i for i, n in enumerate(names) if n != left_out and left_out != "(all)"]
        x = standardised(raw[:, keep], means[keep], scales[keep])
        out[left_out] = pick(curve(out_of_fold(x, y.astype(float), ids), y, answerable, int(answerable.sum()),
                                   step=0.01), max_lost)
    return out


def score_reports(args: argparse.Namespace, raw: np.ndarray, names: list[str], means: np.ndarray,
                  scales: np.ndarray, y: np.ndarray, answerable: np.ndarray, ids: list[str],
                  ablation: dict[str, dict[str, float]]) -> None:
    """The reporting runs scored as the service would answer them with each variant of the model (fitted on
    the tuning rows only, thresholds from the ablation), and the refusals each check made there."""
    reports = {k: report_rows(p, k) for k, p in (("gold", args.report_gold), ("cmrc", args.report_cmrc)) if p}
    print("reporting parts: variant | " + " | ".join(f"{k}: accuracy false_refusal refusal_unanswerable"
                                                    for k in reports))
    for left_out in ["(no answerability)", *ablation]:
        if left_out == "(no answerability)":
            probability, threshold = None, 0.0
        else:
            keep = [i for i, n in enumerate(names) if n != left_out and left_out != "(all)"]
            x = standardised(raw[:, keep], means[keep], scales[keep])
            w = fit(x, y.astype(float))
            kept = [names[i] for i in keep]

            def probability(f: dict[str, float], w: np.ndarray = w, kept: list[str] = kept) -> float:
                z = w[0] + sum(w[j + 1] * (f[n] - means[names.index(n)]) / scales[names.index(n)]
                               for j, n in enumerate(kept) if not np.isnan(f[n]))
                return float(1 / (1 + np.exp(-z)))
            threshold = ablation[left_out]["threshold"]
        cells = []
        for rows in reports.values():
            m = apply(rows, probability, threshold)
            cells.append(f"{m['answer_accuracy']:.3f} {m['false_refusal']:.3f} {m['refusal_on_unanswerable']:.3f}")
        print(f"without {left_out:18s} | " + " | ".join(cells))
    for kind, rows in reports.items():
        reasons: dict[str, list[int]] = {}
        for r in rows:
            if r["refused"]:
                reasons.setdefault(str(r["reason"]), [0, 0])[0 if r["answerable"] else 1] += 1
        print(f"{kind}: refusals by check (answerable, unanswerable): {reasons}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gold", type=Path, required=True)
    parser.add_argument("--cmrc", type=Path, required=True)
    parser.add_argument("--max-lost", type=float, default=0.03,
                        help="the share of right answers the threshold may refuse (out of fold)")
    parser.add_argument("--write", action="store_true", help=f"write {FITTED.relative_to(REPO)}")
    parser.add_argument("--report-gold", type=Path, help="results.jsonl of `rag eval --split test` with "
                        "RAG_MIN_CONFIDENCE=0: score each variant on it")
    parser.add_argument("--report-cmrc", type=Path, help="results.jsonl of the CMRC reporting part with "
                        "RAG_MIN_CONFIDENCE=0: score each variant on it")
    args = parser.parse_args()
    rows = gold_rows(args.gold) + cmrc_rows(args.cmrc)
    names = list(rows[0][1])
    raw = np.array([[f[n] for n in names] for _, f, _, _ in rows])
    y = np.array([right for *_, right in rows], dtype=bool)
    answerable = np.array([a for _, _, a, _ in rows], dtype=bool)
    ids = [i for i, *_ in rows]
    kept = select(raw, names, y, answerable, ids, args.max_lost)
    raw, names = raw[:, [names.index(n) for n in kept]], kept
    kept = signed(raw, names, y)
    raw, names = raw[:, [names.index(n) for n in kept]], kept
    means, scales = np.nanmean(raw, 0), np.nanstd(raw, 0) + 1e-9
    x = standardised(raw, means, scales)
    p = out_of_fold(x, y.astype(float), ids)
    table = curve(p, y, answerable, int(answerable.sum()))
    print(f"{len(rows)} rows ({len(gold_rows(args.gold))} gold dev, {len(cmrc_rows(args.cmrc))} CMRC tune); "
          f"{int(y.sum())} right answers, {int((~answerable).sum())} unanswerable")
    print("threshold answered right_refused precision answerable_acc unanswerable_refused (out of fold)")
    for row in table:
        print(f"{row['threshold']:9.2f} {row['answered']:8.3f} {row['right_refused']:13.3f} {row['precision']:9.3f} "
              f"{row['answerable_accuracy']:14.3f} {row['unanswerable_refused']:20.3f}")
    threshold = pick(curve(p, y, answerable, int(answerable.sum()), step=0.01), args.max_lost)["threshold"]
    ablation = ablate(raw, names, means, scales, y, answerable, ids, args.max_lost)
    print("ablation (out of fold, each at its own threshold for the same lost share): without | threshold "
          "answered precision answerable_acc unanswerable_refused")
    for name, row in ablation.items():
        print(f"{name:16s} {row['threshold']:5.2f} {row['answered']:8.3f} {row['precision']:9.3f} "
              f"{row['answerable_accuracy']:14.3f} {row['unanswerable_refused']:20.3f}")
    w = fit(x, y.astype(float))
    if args.report_gold or args.report_cmrc:
        score_reports(args, raw, names, means, scales, y, answerable, ids, ablation)
    print(f"threshold refusing at most {args.max_lost} of the right answers (out of fold): {threshold}")
    print("weights (standardised): " + ", ".join(f"{n} {v:+.2f}" for n, v in zip(["bias", *names], w, strict=True)))
    if args.write:
        fitted = {
            "_comment": "Fitted by scripts/fit_answerability.py (its docstring has the commands); never edit by hand.",
            "threshold": threshold, "max_lost": args.max_lost,
            "model": {"bias": float(w[0]), "weights": dict(zip(names, map(float, w[1:]), strict=True)),
                      "means": dict(zip(names, map(float, means), strict=True)),
                      "scales": dict(zip(names, map(float, scales), strict=True))},
            "data": {str(path): hashlib.sha256(path.read_bytes()).hexdigest() for path in (args.gold, args.cmrc)},
            "rows": len(rows), "l2": L2, "folds": FOLDS, "out_of_fold_curve": table, "ablation": ablation,
        }
        FITTED.write_text(json.dumps(fitted, ensure_ascii=False, indent=1) + "\n", "utf-8")
        print(f"written {FITTED}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
