"""The CMRC 2018 trial set (``../shared/benchmarks/cmrc2018/``) as a retrieval-augmented QA test: its
paragraphs become an archive of documents, its questions are asked with no hint of their paragraph.

Two stable splits, both by the SHA-1 of an id, so they never depend on results and never change:

- the **part** of a question (``tune`` or ``report``), by its question id: half and half (``TUNE_SHARE``);
- the **left-out** paragraphs, by the paragraph id (``LEFT_OUT_SHARE`` of them by default): they are not
  in the archive, so their questions are unanswerable and the right reply is a refusal.

The benchmark is read where it lies and never copied into the repository; the archive (one ``.txt`` per
kept paragraph, title first) and its index live under the run's output folder.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rag.config import Settings
from rag.embed import Embedder
from rag.eval.backends import Reply
from rag.eval.gold import EvalError, group_found, normalize
from rag.ingest import IngestReport

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
BENCHMARKS = {"cmrc2018": REPO.parent / "shared" / "benchmarks" / "cmrc2018" / "cmrc2018_trial.json"}
"""Benchmarks by name, outside the repository (``../shared/benchmarks/``, relative to its root)."""
PARTS = ("tune", "report")  # tune on ``tune``; numbers are reported on ``report``, which nothing is chosen on
TUNE_SHARE = 0.5
LEFT_OUT_SHARE = 0.15


@dataclass(frozen=True)
class Paragraph:
    """One Wikipedia paragraph; ``left_out``: not in the archive (its questions are unanswerable)."""

    id: str
    title: str
    context: str
    left_out: bool = False

    @property
    def doc_id(self) -> str:
        return f"{self.id}.txt"

    @property
    def text(self) -> str:
        """The document: the title as its first line (so the index's title is the article's), then the text."""
        return f"{self.title}\n\n{self.context}\n"


@dataclass(frozen=True)
class BenchQuestion:
    """One question with its gold answer texts (any one, contained in a reply, is right)."""

    id: str
    question: str
    answers: tuple[str, ...]
    paragraph: str
    part: str
    left_out: bool

    @property
    def answerable(self) -> bool:
        return not self.left_out


@dataclass(frozen=True)
class Benchmark:
    path: Path
    sha256: str
    left_out_share: float
    paragraphs: tuple[Paragraph, ...]
    questions: tuple[BenchQuestion, ...]

    @property
    def kept(self) -> list[Paragraph]:
        return [p for p in self.paragraphs if not p.left_out]


def unit_hash(salt: str, key: str) -> float:
    """A stable number in [0, 1) for ``key``: the first 48 bits of SHA-1(``salt:key``)."""
    return int(hashlib.sha1(f"{salt}:{key}".encode()).hexdigest()[:12], 16) / 16 ** 12


def part_of(question_id: str) -> str:
    """``tune`` for half of the question ids (by hash), ``report`` for the other half."""
    return "tune" if unit_hash("cmrc-part", question_id) < TUNE_SHARE else "report"


def is_left_out(paragraph_id: str, share: float) -> bool:
    """True for about ``share`` of the paragraph ids (by hash); a larger share keeps every smaller one's."""
    return unit_hash("cmrc-left-out", paragraph_id) < share


def resolve_benchmark(name_or_path: str | Path) -> Path:
    """The file a benchmark name (``cmrc2018``) or path names; it must exist."""
    path = BENCHMARKS.get(str(name_or_path), Path(name_or_path))
    if not path.is_file():
        known = ", ".join(BENCHMARKS)
        raise EvalError(f"no benchmark file at {path} (a name is one of: {known}; else give the path of a "
                        "CMRC 2018 / SQuAD-style JSON file)")
    return path


def load_cmrc(path: Path | str, left_out_share: float = LEFT_OUT_SHARE) -> Benchmark:
    """Read a CMRC 2018 (SQuAD-style) JSON file; mark the left-out paragraphs and each question's part."""
    if not 0 <= left_out_share < 1:
        raise EvalError(f"left_out_share must be in [0, 1). Currently, left_out_share is {left_out_share}")
    path = Path(path)
    try:
        raw = path.read_bytes()
        data = json.loads(raw)["data"]
        paragraphs, questions = [], []
        for article in data:
            for p in article["paragraphs"]:
                left_out = is_left_out(p["id"], left_out_share)
                paragraphs.append(Paragraph(p["id"], article["title"].strip(), p["context"].strip(), left_out))
                questions += [BenchQuestion(q["id"], q["question"].strip(),
                                            tuple(dict.fromkeys(a["text"].strip() for a in q["answers"])),
                                            p["id"], part_of(q["id"]), left_out) for q in p["qas"]]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise EvalError(f"{path}: not a CMRC 2018 / SQuAD-style file: {exc!r}") from exc
    if not questions:
        raise EvalError(f"{path}: the benchmark has no questions")
    return Benchmark(path, hashlib.sha256(raw).hexdigest(), left_out_share, tuple(paragraphs), tuple(questions))


def select_questions(benchmark: Benchmark, part: str, ids: Sequence[str] | None = None,
                     limit: int | None = None) -> list[BenchQuestion]:
    """The questions of ``part`` (file order), only ``ids`` when given (unknown ids raise), then the first
    ``limit``."""
    if part not in PARTS:
        raise EvalError(f"part must be one of {', '.join(PARTS)}. Currently, part is {part!r}")
    chosen = [q for q in benchmark.questions if q.part == part]
    if ids is not None:
        unknown = sorted(set(ids) - {q.id for q in benchmark.questions})
        if unknown:
            raise EvalError(f"ids not in the benchmark: {', '.join(unknown)}")
        chosen = [q for q in chosen if q.id in set(ids)]
    return chosen if limit is None else chosen[:limit]


def is_right(reply: Reply, question: BenchQuestion) -> bool:
    """An answerable question is answered right by a reply that is no refusal and contains one of the
    gold texts (both in Simplified script, whitespace removed); a left-out paragraph's, by a refusal."""
    if not question.answerable:
        return reply.refused
    return not reply.refused and group_found(reply.text, question.answers)


def char_f1(text: str, answers: Sequence[str]) -> float:
    """CMRC 2018's own measure: the best character-level F1 of the reply against a gold text (Simplified,
    whitespace and punctuation removed). Unlike containment it credits a short right answer (8公斤 for
    约只有8公斤重) and docks a reply padded with other text."""
    said = _chars(text)
    best = 0.0
    for answer in answers:
        gold = _chars(answer)
        common = sum(min(said.count(c), gold.count(c)) for c in set(said) & set(gold))
        if common:
            precision, recall = common / len(said), common / len(gold)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


def _chars(text: str) -> str:
    return "".join(c for c in normalize(text) if c.isalnum())


# --- the archive ----------------------------------------------------------------------------------------


def archive_settings(settings: Settings, folder: Path) -> Settings:
    """Settings whose corpus and index are the archive's own (``folder/corpus``, ``folder/index``)."""
    return settings.model_copy(update={"corpus_dir": folder / "corpus", "index_dir": folder / "index"})


def write_corpus(paragraphs: Sequence[Paragraph], corpus: Path) -> int:
    """Write each paragraph as ``corpus/<id>.txt`` (only those whose text changed) and remove the ``.txt``
    files of paragraphs no longer given; return how many files were written."""
    corpus.mkdir(parents=True, exist_ok=True)
    wanted = {p.doc_id: p.text for p in paragraphs}
    for stale in corpus.glob("*.txt"):
        if stale.name not in wanted:
            stale.unlink()
    written = 0
    for doc_id, text in wanted.items():
        path = corpus / doc_id
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            written += 1
    return written


def build_archive(settings: Settings, benchmark: Benchmark, folder: Path, embedder: Embedder) -> IngestReport:
    """Write the kept paragraphs under ``folder/corpus`` and index them into ``folder/index`` as ``rag
    ingest`` does: incrementally, so a second run over the same paragraphs embeds nothing."""
    from rag.index.writer import IndexWriter, LocalIndex

    archive = archive_settings(settings, folder)
    written = write_corpus(benchmark.kept, archive.corpus_dir)
    report = IndexWriter(archive, embedder, LocalIndex()).ingest([archive.corpus_dir])
    log.info("benchmark archive: %d paragraph files written; %s", written, report.summary())
    return report
