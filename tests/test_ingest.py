"""Tests for rag.ingest: incremental ingestion of a folder (unchanged, changed, deleted, bad files)."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from rag.chunk import chunk_document
from rag.config import Settings
from rag.embed import passage_text
from rag.errors import IndexMismatch
from rag.formats import Skipped, read_document
from rag.index import Index
from rag.ingest import IngestReport, ingest_paths
from rag.normalize import clean_document
from tests.fakes import FakeEmbedder

DOC_IDS = ["000_ae0e48cc884afd96.txt", "001_079ce6fb03cbab58.txt", "002_9f3d902dfed96728.txt",
           "003_727ffb95bee0db86.txt", "004_c849ceb370c41d84.txt"]
CHANGED = "001_079ce6fb03cbab58.txt"


class CountingEmbedder(FakeEmbedder):
    """The fake embedder, remembering every passage it embedded."""

    def __init__(self, dim: int = 64) -> None:
        super().__init__(dim)
        self.texts: list[str] = []

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        self.texts.extend(texts)
        return super().embed_documents(texts)


@pytest.fixture
def corpus(tmp_path: Path, corpus_dir: Path) -> Path:
    return Path(shutil.copytree(corpus_dir, tmp_path / "corpus"))


def ids_of(index: Index, doc_id: str | None = None) -> list[str]:
    return [c.chunk_id for c in index.all_chunks() if doc_id is None or c.doc_id == doc_id]


def reload(index: Index, settings: Settings) -> Index:
    return Index.open(settings.index_path)


def test_first_ingest_embeds_every_chunk(corpus: Path, fake_settings: Settings) -> None:
    embedder = CountingEmbedder()
    index, report = ingest_paths([corpus], fake_settings, embedder, None)
    assert (report.documents, report.chunks, report.embedded) == (5, 84, 84)
    assert (report.skipped, report.removed, report.added) == ((), (), tuple(DOC_IDS))
    assert len(embedder.texts) == 84
    assert embedder.texts == [passage_text(c) for c in index.all_chunks()]
    assert sorted(index.documents) == DOC_IDS
    assert {d.root for d in index.documents.values()} == {str(corpus.resolve())}
    assert [index.documents[d].chunks for d in DOC_IDS] == [4, 17, 7, 47, 9]
    assert index.vectors.count() == 84 and index.chunk_vectors(ids_of(index)).shape == (84, 64)
    assert index.manifest["chunker"] == {"max_chars": 360, "min_chars": 80}
    assert index.manifest["embedder"]["name"] == "fake-64"


def test_reingest_unchanged_embeds_nothing(corpus: Path, fake_settings: Settings) -> None:
    first, _ = ingest_paths([corpus], fake_settings, CountingEmbedder(), None)
    ids, vectors, records = ids_of(first), first.chunk_vectors(ids_of(first)), dict(first.documents)
    embedder = CountingEmbedder()
    again, report = ingest_paths([corpus], fake_settings, embedder, reload(first, fake_settings))
    assert (report.embedded, report.added, report.removed, report.chunks) == (0, (), (), 84)
    assert embedder.texts == []
    assert ids_of(again) == ids
    assert np.array_equal(again.chunk_vectors(ids), vectors)
    assert dict(again.documents) == records
    assert again.version == first.version  # nothing was written


def test_changed_file_only_re_embeds_its_chunks(corpus: Path, fake_settings: Settings) -> None:
    first, _ = ingest_paths([corpus], fake_settings, CountingEmbedder(), None)
    before = {d: ids_of(first, d) for d in DOC_IDS}
    old_sha = first.documents[CHANGED].sha256
    path = corpus / CHANGED
    path.write_text("前言:本文有修订。\n" + path.read_text("utf-8"), "utf-8")  # every span shifts
    expected = chunk_document(clean_document(read_document(path, CHANGED)))
    embedder = CountingEmbedder()
    index, report = ingest_paths([corpus], fake_settings, embedder, reload(first, fake_settings))

    assert (report.embedded, report.added, report.removed) == (len(expected), (CHANGED,), ())
    assert embedder.texts == [passage_text(c) for c in expected]
    assert ids_of(index, CHANGED) == [c.chunk_id for c in expected]
    assert not set(before[CHANGED]) & set(ids_of(index))
    for doc_id in DOC_IDS:
        if doc_id != CHANGED:
            assert ids_of(index, doc_id) == before[doc_id]
    assert index.sources[CHANGED].startswith("前言:本文有修订。\n")
    assert index.documents[CHANGED].sha256 != old_sha
    assert np.allclose(index.chunk_vectors(ids_of(index, CHANGED)),
                       FakeEmbedder().embed_documents([passage_text(c) for c in expected]))
    assert index.vectors.count() == index.lexical.count() == index.chunk_count()


def test_deleted_file_leaves_the_index(corpus: Path, fake_settings: Settings) -> None:
    first, _ = ingest_paths([corpus], fake_settings, CountingEmbedder(), None)
    before, before_gone = ids_of(first), set(ids_of(first, "002_9f3d902dfed96728.txt"))
    gone = "002_9f3d902dfed96728.txt"
    (corpus / gone).unlink()
    index, report = ingest_paths([corpus], fake_settings, CountingEmbedder(), reload(first, fake_settings))
    assert (report.removed, report.embedded, report.documents, report.chunks) == ((gone,), 0, 4, 77)
    assert gone not in index.documents and gone not in index.sources and index.chunks_of(gone) == []
    assert [c for c in index.all_chunks() if c.doc_id == gone] == []
    assert ids_of(index) == [i for i in before if i not in before_gone]
    assert (len(index.documents), index.chunk_count(), index.vectors.count(), index.lexical.count()) == (4, 77, 77, 77)


def test_without_prune_a_deleted_file_stays(corpus: Path, fake_settings: Settings) -> None:
    first, _ = ingest_paths([corpus], fake_settings, CountingEmbedder(), None)
    before = ids_of(first)
    (corpus / "002_9f3d902dfed96728.txt").unlink()
    index, report = ingest_paths([corpus], fake_settings, CountingEmbedder(), first, prune=False)
    assert (report.removed, report.documents, report.chunks) == ((), 5, 84)
    assert sorted(ids_of(index)) == sorted(before)
    assert "002_9f3d902dfed96728.txt" in index.sources


def test_ingesting_another_folder_keeps_the_first(corpus: Path, tmp_path: Path, fake_settings: Settings) -> None:
    first, _ = ingest_paths([corpus], fake_settings, CountingEmbedder(), None)
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "note.md").write_text("阳山县教育补充说明。", "utf-8")
    before = ids_of(first)
    index, report = ingest_paths([extra], fake_settings, CountingEmbedder(), first)
    assert (report.documents, report.embedded, report.removed, report.added) == (6, 1, (), ("note.md",))
    assert ids_of(index)[:84] == before
    assert index.documents["note.md"].root == str(extra.resolve())
    (extra / "note.md").unlink()
    index, report = ingest_paths([extra], fake_settings, CountingEmbedder(), index)
    assert (report.removed, report.documents) == (("note.md",), 5)


def test_undecodable_file_is_skipped_and_the_rest_ingest(corpus: Path, fake_settings: Settings) -> None:
    (corpus / "bad.txt").write_bytes(b"\x80\x80\xff\xfe")
    (corpus / "sub").mkdir()
    (corpus / "sub" / "empty.md").write_bytes(b"")
    index, report = ingest_paths([corpus], fake_settings, CountingEmbedder(), None)
    assert report.skipped == (Skipped("bad.txt", "bad.txt: cannot decode as UTF-8 or GB18030/GBK"),
                              Skipped("sub/empty.md", "sub/empty.md: the file is empty"))
    assert (report.documents, report.chunks, report.embedded) == (5, 84, 84)
    assert sorted(index.documents) == DOC_IDS
    assert "1 skipped" not in report.summary() and "2 skipped" in report.summary()


def test_changed_chunker_settings_re_embed_everything(corpus: Path, fake_settings: Settings) -> None:
    first, _ = ingest_paths([corpus], fake_settings, CountingEmbedder(), None)
    smaller = fake_settings.model_copy(update={"chunk_max_chars": 200})
    embedder = CountingEmbedder()
    index, report = ingest_paths([corpus], smaller, embedder, first)
    assert report.embedded == index.chunk_count() == len(embedder.texts) > 84
    assert index.manifest["chunker"] == {"max_chars": 200, "min_chars": 80}


def test_another_embedder_is_refused(corpus: Path, fake_settings: Settings) -> None:
    first, _ = ingest_paths([corpus], fake_settings, CountingEmbedder(), None)
    with pytest.raises(IndexMismatch, match=r"built with embedder 'fake-64' \(dim 64\).*'fake-32' \(dim 32\)"):
        ingest_paths([corpus], fake_settings, CountingEmbedder(32), first)


def test_report_summary() -> None:
    report = IngestReport(documents=5, chunks=84, embedded=42, skipped=(Skipped("b.txt", "bad"),),
                          removed=("x.txt",), seconds=2.0)
    assert report.chunks_per_second == 21.0
    assert report.summary() == "5 documents, 84 chunks (42 embedded), 1 skipped, 1 removed, 2.0 s, 21.0 chunks/s"
    assert IngestReport(0, 0, 0, (), (), 0.0).summary().endswith(", 0.0 s, 0.0 chunks/s")


def test_real_report_summary_mentions_throughput(corpus: Path, fake_settings: Settings) -> None:
    _, report = ingest_paths([corpus], fake_settings, CountingEmbedder(), None)
    assert report.summary().startswith("5 documents, 84 chunks (84 embedded), 0 skipped, 0 removed, ")
    assert report.summary().endswith(" chunks/s")
    assert report.seconds > 0
