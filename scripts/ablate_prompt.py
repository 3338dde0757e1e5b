"""What each rule of the prompt stage earns: the same questions, with one rule switched off.

    RAG_MODELS_DIR=models .venv/bin/python scripts/ablate_prompt.py /tmp/ab/dev.jsonl /tmp/ab/cmrc-tune.jsonl
    RAG_MODELS_DIR=models .venv/bin/python scripts/ablate_prompt.py /tmp/ab/test.jsonl --rules body,semicolon_run
    RAG_MODELS_DIR=models .venv/bin/python scripts/ablate_prompt.py /tmp/ab/test.jsonl --rules body+semicolon_run

The drafts files are those of ``scripts/ablate_checks.py`` (the model's answer to each question with every
rule). A rule of the prompt stage decides what the model is shown, so switching it off changes the prompt of
some questions: those are drafted again by the model, the rest keep their draft, and all are replayed with
every check (``ablate_checks.replay``). A row says, per file: answerable right, false refusal, unanswerable
refused, and against every rule, how many more replies are right and how many more wrong; then how many
prompts the rule changed (a rule that changes none is never used on that file).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

import ablate_checks  # noqa: E402

from rag import prompt as prompting  # noqa: E402
from rag.service import Plan  # noqa: E402


def _nothing(*_: Any) -> list[Any]:
    return []


def _no_heading(index: Any, ranked: Sequence[Any], count: int) -> tuple[Any, list[Any]]:
    return ranked[0], []


# Each rule, and what stands in its place when it is off: the stage as if the rule found nothing.
RULES: dict[str, tuple[tuple[Any, str, Callable[..., Any]], ...]] = {
    "enumerating": ((prompting, "enumerating", lambda *_: None),),
    "counted_heading": ((prompting, "counted_heading", _no_heading),),
    "child_headings": ((prompting, "_child_headings", _nothing),),
    "body": ((prompting, "_body", _nothing),),
    "semicolon_run": ((prompting, "_semicolon_run", _nothing),),
}
RULES["list_structure"] = (*RULES["enumerating"], *RULES["counted_heading"], (prompting, "list_items", _nothing))


@contextmanager
def switched_off(rules: str) -> Iterator[None]:
    """The rules named, joined by + (``body+semicolon_run``), off together."""
    with ExitStack() as stack:
        for rule in rules.split("+"):
            for module, name, stand_in in RULES[rule]:
                stack.enter_context(mock.patch.object(module, name, stand_in))
        yield


def without(run: ablate_checks.Run, rule: str) -> tuple[ablate_checks.Outcome, int]:
    """The outcomes of ``run`` with ``rule`` off, and how many prompts it changed. ``run.plans`` keeps the
    plans with every rule, a refusal before the model included."""
    for question in run.questions:
        if question.id not in run.plans:
            run.plans[question.id] = run.service.prepare(question.messages)
    outcome: ablate_checks.Outcome = {}
    changed = 0
    plans: dict[str, Plan] = {}
    with switched_off(rule):
        for question in run.questions:
            plan = plans[question.id] = run.service.prepare(question.messages)
            row = run.rows[question.id]
            before = run.plans[question.id]
            if (plan.chat, plan.refusal) != (before.chat, before.refusal):
                changed += 1
                row = ablate_checks.draft(run.service, question, plan)
            outcome[question.id] = ablate_checks.replay(run.service, question, row, frozenset(), plans)
    return outcome, changed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("drafts", type=Path, nargs="+", help="drafts files of scripts/ablate_checks.py")
    parser.add_argument("--rules", default=",".join(RULES),
                        help="the rules to switch off, one at a time (comma-separated; a+b: a and b together)")
    args = parser.parse_args()
    runs = [ablate_checks.load_run(path, generate=True) for path in args.drafts]
    base = ablate_checks.outcomes(runs, frozenset())
    head = "accuracy / false refusal / unanswerable refused (more right, more wrong)"
    print("| switched off | " + " | ".join(f"{r.name}: {head}" for r in runs) + " | prompts changed |")
    print("|---|" + "---|" * (len(runs) + 1))
    for rule in args.rules.split(","):
        results = [without(run, rule) for run in runs]
        row = ablate_checks.row_of(f"`{rule}`", runs, [r[0] for r in results], base)
        print(row + " " + " / ".join(str(r[1]) for r in results) + " |", flush=True)


if __name__ == "__main__":
    main()
