"""The log-probabilities ``LlamaGenerator.stream_on`` reports: its logits processor on logits whose
softmax is known (the real model's are checked end to end in ``tests/test_e2e.py``)."""

from __future__ import annotations

import math

import numpy as np

from rag.generate.llama import _TokenScores


def test_each_written_token_is_scored_by_the_logits_it_was_drawn_from() -> None:
    steps = [np.log(np.array([0.7, 0.2, 0.1], dtype=np.float32)) + 3.0,  # any shift: the softmax is the same
             np.log(np.array([0.1, 0.1, 0.8], dtype=np.float32)),
             np.log(np.array([0.25, 0.5, 0.25], dtype=np.float32))]  # the step that writes the stop token
    scores, ids = _TokenScores(), [5, 9]
    for written, logits in zip([0, 2, 1], steps, strict=True):
        assert scores(np.array(ids), logits) is logits  # the logits pass unchanged
        ids.append(written)
    assert np.allclose(scores.logprobs, [math.log(0.7), math.log(0.8)], atol=1e-6)
    assert math.isclose(scores.mean() or 0.0, (math.log(0.7) + math.log(0.8)) / 2, abs_tol=1e-6)


def test_nothing_written_has_no_score() -> None:
    assert _TokenScores().mean() is None
