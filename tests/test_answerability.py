"""Tests for rag.answer.answerability and its fitting script: the signals, the model, the fitted file."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np

from rag.answer.answerability import FITTED, Answerability, Signals

REPO = Path(__file__).resolve().parent.parent
SURE = Signals(p_none=0.001, coverage=1.0, best_dense=0.92, top_score=0.85, chosen_coverage=0.9, chosen=1,
               sources_coverage=0.9, answer_logprob=-0.05, support=1.0, alignment=0.9)
UNSURE = Signals(p_none=0.6, coverage=0.3, best_dense=0.80, top_score=0.40, chosen_coverage=0.1, chosen=3,
                 sources_coverage=0.2, answer_logprob=-1.5, support=0.3, alignment=0.1)


def _fit_script():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("fit_answerability", REPO / "scripts" / "fit_answerability.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_features_take_p_none_as_log_odds_and_cap_the_count() -> None:
    features = Signals(0.5, 1.0, 0.9, 0.8, 0.7, 9).features()
    assert features["none_logit"] == 0.0 and features["chosen"] == 5.0
    assert Signals(0.0, 0, 0, 0, 0, 0).features()["none_logit"] == math.log(1e-4 / (1 - 1e-4))


def test_a_signal_the_backend_did_not_report_counts_as_its_mean() -> None:
    model = Answerability(bias=0.5, weights={"answer_logprob": 2.0}, means={"answer_logprob": -0.5},
                          scales={"answer_logprob": 0.25}, threshold=0.5)
    assert math.isnan(Signals(0.5, 1.0, 0.9, 0.8, 0.7, 1).features()["answer_logprob"])
    assert math.isclose(model.probability(Signals(0.5, 1.0, 0.9, 0.8, 0.7, 1)), 1 / (1 + math.exp(-0.5)))


def test_probability_is_the_logistic_of_the_standardised_features() -> None:
    model = Answerability(bias=0.5, weights={"coverage": 2.0}, means={"coverage": 0.5}, scales={"coverage": 0.25},
                          threshold=0.5)
    assert math.isclose(model.probability(SURE), 1 / (1 + math.exp(-(0.5 + 2.0 * 2))))
    assert model.probability(SURE) > model.probability(UNSURE)


def test_the_fitted_file_loads_and_tells_a_sure_case_from_an_unsure_one() -> None:
    model = Answerability.load(FITTED)
    assert 0.0 <= model.threshold < 1.0
    if model.weights:  # fitted (the provisional file has none)
        assert model.probability(SURE) > model.threshold > model.probability(UNSURE)


def test_the_fit_separates_what_the_signals_separate() -> None:
    fit = _fit_script()
    rng = np.random.default_rng(0)
    x = np.hstack([np.ones((200, 1)), rng.normal(size=(200, 2))])
    y = (x[:, 1] - 0.5 * x[:, 2] + rng.normal(scale=0.3, size=200) > 0).astype(float)
    w = fit.fit(x, y)
    assert w[1] > 0 > w[2]
    p = fit.out_of_fold(x, y, [f"q{i}" for i in range(200)])
    assert ((p >= 0.5) == (y == 1)).mean() > 0.85


def test_selection_leaves_out_a_signal_that_does_not_pay_and_the_threshold_keeps_the_budget() -> None:
    fit = _fit_script()
    rng = np.random.default_rng(1)
    answerable = rng.random(300) < 0.7
    signal, noise = rng.normal(size=300) + 1.5 * answerable, rng.normal(size=300)
    right = answerable & (signal + rng.normal(scale=0.5, size=300) > 1.0)
    ids = [f"q{i}" for i in range(300)]
    kept = fit.select(np.column_stack([signal, noise]), ["signal", "noise"], right, answerable, ids, 0.03)
    assert kept == ["signal"]
    table = fit.curve(fit.out_of_fold(np.column_stack([np.ones(300), signal]), right.astype(float), ids), right,
                      answerable, int(answerable.sum()), step=0.01)
    chosen = fit.pick(table, 0.03)
    assert chosen["right_refused"] <= 0.03 and chosen["unanswerable_refused"] > 0.3
    assert all(r["right_refused"] > 0.03 for r in table if r["threshold"] > chosen["threshold"])
