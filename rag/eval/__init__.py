"""Evaluate: run the gold set (``eval/gold.jsonl``) against the service, in process or over HTTP, and
measure retrieval, answers, refusals, citations and latency. Behind ``rag eval``.

``gold`` reads the questions and matches answers; ``backends`` reaches the service; ``spans`` re-checks
cited spans; ``metrics`` turns per-question outcomes into numbers; ``report`` writes the run's files;
``run`` drives a run (``run_eval``, and ``run_adversarial`` on its own temporary index); ``gate`` checks a
run against ``eval/thresholds.json``.
"""

from rag.eval.backends import HttpBackend, InProcessBackend, Passage, QuestionFailed, Reply, parse_sse
from rag.eval.gate import check_thresholds, load_thresholds
from rag.eval.gold import (
    SPLITS,
    TYPES,
    EvalError,
    GoldFormatError,
    GoldItem,
    is_correct,
    load_gold,
    normalize,
    says_any,
    select_items,
)
from rag.eval.metrics import QuestionResult, compute_metrics, percentile
from rag.eval.run import run_eval
from rag.eval.spans import SpanChecker, default_span_functions

__all__ = [
    "SPLITS", "TYPES", "EvalError", "GoldFormatError", "GoldItem", "HttpBackend", "InProcessBackend", "Passage",
    "QuestionFailed", "QuestionResult", "Reply", "SpanChecker", "check_thresholds", "compute_metrics",
    "default_span_functions", "is_correct", "load_gold", "load_thresholds", "normalize", "parse_sse", "percentile",
    "run_eval", "says_any", "select_items",
]
