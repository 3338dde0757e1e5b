"""Tests for scripts/calibrate_checks.py: the logistic fit, its threshold and how a score decides replies."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import calibrate_checks as cc  # noqa: E402


def test_the_fit_weighs_a_signal_by_how_it_predicts_a_right_answer() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 2))
    y = (x[:, 0] + 0.3 * rng.normal(size=400) > 0).astype(float)  # the first signal predicts; the second is noise
    w = cc.fit(x, y)
    assert w[1] > 2.0 and abs(w[2]) < 0.5
    p = cc.probability(w, x)
    assert ((p > 0.5) == (y > 0.5)).mean() > 0.9


def test_the_threshold_refuses_at_most_the_share_of_right_answers_allowed() -> None:
    p = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95])
    y = np.array([False, True, False, True, True, True, True, True, True, True])
    assert cc.threshold(p, y, 0.0) == 0.2  # refuses only the 0.1 answer, which is wrong
    assert cc.threshold(p, y, 0.125) == 0.4  # one right answer of eight may go: 0.2
    assert (y & (p < cc.threshold(p, y, 0.125))).sum() <= 1


def test_a_score_decides_only_what_the_checks_of_fact_let_through() -> None:
    rows = [cc.Row("a", True, (True, False), (0.9,), right=True),   # right, scored high: answered
            cc.Row("b", True, (False, False), (0.1,), right=False),  # wrong, scored low: refused
            cc.Row("c", False, (False, False), (0.8,)),              # unanswerable, scored high: answered, wrong
            cc.Row("d", False, (True, True))]                        # refused by a fact: stays refused
    replies = cc.scored(rows, {"a": 0.9, "b": 0.1, "c": 0.8}, 0.5)
    assert replies == {"a": (True, False), "b": (False, True), "c": (False, False), "d": (True, True)}
    assert cc.line("run", rows, replies) == "run: 0.500 / 0.500 / 0.500, right less wrong 1"
