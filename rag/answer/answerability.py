"""Answerability: one calibrated score instead of a stack of vetoes.

A handful of general signals, read before the answer is written, go into a logistic model fitted on tuning
data of two domains (the gold set's ``dev`` part and the CMRC 2018 tuning part: ``scripts/fit_answerability.py``);
the service answers when the model's probability that the answer will be right reaches the fitted threshold.
The parameters, the data they were fitted on and the command that fitted them live in one file,
``eval/answerability.json``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

FITTED = Path(__file__).resolve().parents[2] / "eval" / "answerability.json"
_CLIP = 1e-4


@dataclass(frozen=True)
class Signals:
    """What is known once the model has chosen and written its answer, before anything is sent.

    ``p_none``: the model's probability of choosing no sentence (its first step, against the numbers);
    ``coverage``: the best retrieved document's share of the question's content weight (``rag.evidence``);
    ``best_dense``: the best passage's similarity to the question; ``top_score``: the best candidate
    sentence's score (meaning and shared rare words); ``chosen_coverage``: the chosen sentences' share of the
    question's content weight; ``chosen``: how many sentences were chosen; ``sources_coverage``: that share
    for the sentences the answer is written from (``answer_sources``); ``answer_logprob``: the mean
    log-probability of the answer's tokens (``None`` from a backend that reports none); ``support``: how much
    of the answer's own content its best-supporting shown sentence holds (``rag.cite.support``);
    ``alignment``: that sentence's share of the question's content weight (an answer copied from a sentence
    about something else holds the answer's words but not the question's)."""

    p_none: float
    coverage: float
    best_dense: float
    top_score: float
    chosen_coverage: float
    chosen: int
    sources_coverage: float = 0.0
    answer_logprob: float | None = None
    support: float = 0.0
    alignment: float = 0.0

    def features(self) -> dict[str, float]:
        """The model's inputs: P(none) as log-odds (it spans orders of magnitude), the rest as they are; a
        signal the backend did not report is NaN, and counts as its mean."""
        p = min(max(self.p_none, _CLIP), 1 - _CLIP)
        return {"none_logit": math.log(p / (1 - p)), "coverage": self.coverage, "best_dense": self.best_dense,
                "top_score": self.top_score, "chosen_coverage": self.chosen_coverage,
                "chosen": float(min(self.chosen, 5)), "sources_coverage": self.sources_coverage,
                "answer_logprob": math.nan if self.answer_logprob is None else self.answer_logprob,
                "support": self.support, "alignment": self.alignment}

    def as_dict(self) -> dict[str, float]:
        return {k: round(float(v), 4) for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class Answerability:
    """A logistic model over standardised ``Signals.features``; ``threshold`` is the probability above which
    the service answers."""

    bias: float
    weights: dict[str, float]
    means: dict[str, float]
    scales: dict[str, float]
    threshold: float

    @classmethod
    def load(cls, path: Path = FITTED) -> Answerability:
        data = json.loads(path.read_text("utf-8"))
        model = data["model"]
        return cls(float(model["bias"]), model["weights"], model["means"], model["scales"],
                   float(data["threshold"]))

    def probability(self, signals: Signals) -> float:
        features = signals.features()
        z = self.bias + sum(w * (features[k] - self.means[k]) / self.scales[k] for k, w in self.weights.items()
                            if not math.isnan(features[k]))
        return 1 / (1 + math.exp(-max(min(z, 30.0), -30.0)))
