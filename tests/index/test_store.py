"""Tests for rag.index.store: round trips, incremental updates that touch only their rows, snapshots and
replay, the manifest, injected failures and a real SIGKILL at each stage of an update."""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from rag.config import Settings
from rag.errors import IndexMismatch, IndexOutdated, NotReady
from rag.index import Index, IndexSpec, index_version
from rag.index import store as store_module
from rag.index.corpus import CorpusStore
from rag.ingest import chunker_config, document_entry, ingest_paths
from rag.types import Document
from tests.fakes import FakeEmbedder

REPO = Path(__file__).resolve().parents[2]
DOCS = {
    "a.txt": "阳山县教育工作\n一、基本情况\n阳山县在清远市八个县(市、区)中排名第三,获优秀等次。\n"
             "二、下一步工作\n要聚焦内涵发展,在提升办学质量和水平上持续发力。",
    "b.txt": "山丹县教育工作\n山丹县立足县情实际,持续深化教育改革,全面推进教育提速增质。",
}
NEW = {"c.txt": "东莞教育高质量发展重点工作。东莞市计划新增公办学位。"}


def doc(doc_id: str, text: str) -> Document:
    return Document(doc_id, text, hashlib.sha256(text.encode()).hexdigest())


def entries(docs: dict[str, str]) -> list:
    return [document_entry(doc(d, t), chunker_config(Settings()), FakeEmbedder()) for d, t in docs.items()]


def make_index(root: Path, docs: dict[str, str] = DOCS, vectors: str = "faiss-flat", every: int = 2000) -> Index:
    index = Index.create(root, IndexSpec("fake-64", 64, vectors), snapshot_every=every)
    index.write(entries(docs))
    return index


def state(index: Index) -> dict:
    """Everything a reader sees: records, chunks, vectors, sentences, texts, and search results of both parts."""
    chunks = index.all_chunks()
    ids = [c.chunk_id for c in chunks]
    query = FakeEmbedder().embed_query("阳山县排名")
    return {"records": dict(index.documents), "chunks": chunks, "vectors": index.chunk_vectors(ids).tolist(),
            "sentences": index.sentences(ids), "sources": dict(index.sources),
            "dense": index.dense_search(query, 10), "lexical": index.lexical_search("阳山县教育排名", 10)[0],
            "counts": (index.chunk_count(), index.vectors.count(), index.lexical.count()),
            "weights": [index.word_weight(w) for w in ("阳山县", "教育", "东莞")]}


# --- round trips ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("vectors", ["faiss-flat", "faiss-hnsw", "fake"])
def test_open_sees_what_was_written(tmp_path: Path, vectors: str) -> None:
    index = make_index(tmp_path, vectors=vectors)
    assert state(Index.open(tmp_path)) == state(index)
    index.snapshot(force=True)
    assert state(Index.open(tmp_path)) == state(index)
    assert index.manifest["parts"] == {"corpus": "sqlite", "vectors": vectors, "lexical": "bm25-char-bigram"}
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("corpus.sqlite")) == \
        ["CURRENT", (tmp_path / "CURRENT").read_text()]


def test_stored_forms_are_the_ingest_results(tmp_path: Path) -> None:
    index = make_index(tmp_path)
    a = index.chunks_of("a.txt")
    assert index.document_text("a.txt", "original") == DOCS["a.txt"] == index.sources["a.txt"]
    assert "阳山县在清远市八个县(市、区)中排名第三" in index.document_text("a.txt")
    sentences = [s for group in index.sentences([c.chunk_id for c in a]) for s in group]
    assert [s.text for s in sentences][:3] == ["阳山县教育工作", "一、基本情况",
                                               "阳山县在清远市八个县(市、区)中排名第三,获优秀等次。"]
    for s in sentences:
        assert DOCS["a.txt"][s.start:s.end] == s.text
    assert index.chunks([a[0].chunk_id, "ffffffffffffff00"]) == [a[0], None]


def test_replay_after_updates_without_a_snapshot(tmp_path: Path) -> None:
    index = make_index(tmp_path)
    index.snapshot(force=True)
    index.write(entries(NEW))
    index.write(remove=["b.txt"])
    index.write(entries({"a.txt": DOCS["a.txt"] + "\n三、新增\n新增一句。"}))
    reopened = Index.open(tmp_path)
    assert reopened.version == index.version == 5
    assert state(reopened) == state(index)
    assert sorted(reopened.documents) == ["a.txt", "c.txt"]


def test_snapshot_is_written_after_snapshot_every_changes(tmp_path: Path) -> None:
    index = make_index(tmp_path, every=2)
    assert not (tmp_path / "CURRENT").exists() and index.snapshot_version == 0
    assert index.snapshot() is True  # 2 chunks changed
    first = (tmp_path / "CURRENT").read_text()
    index.write(entries(NEW))
    assert index.snapshot() is False  # 1 chunk changed
    index.write(remove=["b.txt"])
    index.write(remove=["c.txt"])
    assert index.snapshot() is True
    assert (tmp_path / "CURRENT").read_text() != first and not (tmp_path / first).exists()
    assert state(Index.open(tmp_path)) == state(index)


# --- only the document's rows change ----------------------------------------------------------------------------
def test_an_update_touches_only_its_documents_rows(tmp_path: Path) -> None:
    index = make_index(tmp_path, {**DOCS, **NEW})
    index.snapshot(force=True)
    snapshot = tmp_path / (tmp_path / "CURRENT").read_text()
    mtimes = {p.name: p.stat().st_mtime_ns for p in snapshot.iterdir()}
    db = sqlite3.connect(tmp_path / "corpus.sqlite")
    rows = lambda d: db.execute("SELECT * FROM chunks WHERE doc_id = ?", (d,)).fetchall()  # noqa: E731
    docs = lambda d: db.execute("SELECT * FROM documents WHERE doc_id = ?", (d,)).fetchall()  # noqa: E731
    before = {d: (rows(d), docs(d)) for d in ("a.txt", "c.txt")}
    index.write(entries({"b.txt": DOCS["b.txt"] + "修订。"}))
    index.write(remove=["c.txt"])
    assert (rows("a.txt"), docs("a.txt")) == before["a.txt"]
    assert rows("c.txt") == [] and docs("c.txt") == []
    assert {p.name: p.stat().st_mtime_ns for p in snapshot.iterdir()} == mtimes  # the snapshot is not rewritten
    assert index.snapshot_version < index.version


# --- the manifest -----------------------------------------------------------------------------------------------
def test_another_vector_backend_is_refused_clearly(tmp_path: Path) -> None:
    make_index(tmp_path)
    with pytest.raises(IndexMismatch) as info:
        Index.open(tmp_path, vectors="faiss-hnsw")
    assert str(info.value) == (f"the index at {tmp_path} was built with the 'faiss-flat' vector backend but the "
                               "settings select 'faiss-hnsw'; set RAG_VECTOR_BACKEND=faiss-flat or re-ingest with "
                               "`rag ingest --rebuild`")
    assert Index.open(tmp_path, vectors="faiss-flat").chunk_count() == 2


def test_check_embedder(tmp_path: Path) -> None:
    index = make_index(tmp_path)
    index.check_embedder("fake-64", 64)
    with pytest.raises(IndexMismatch) as info:
        index.check_embedder("multilingual-e5-small", 384)
    assert str(info.value) == ("the index was built with embedder 'fake-64' (dim 64) but the current embedder is "
                               "'multilingual-e5-small' (dim 384); re-ingest with `rag ingest --rebuild`")


def test_no_index_and_older_format(tmp_path: Path) -> None:
    with pytest.raises(NotReady, match="no index at .*; build one with `rag ingest`"):
        Index.open(tmp_path)
    (tmp_path / "gen-20240101").mkdir()
    (tmp_path / "CURRENT").write_text("gen-20240101")
    with pytest.raises(IndexOutdated, match="older format .snapshot generations, no corpus store.; rebuild it "
                                            "with `rag ingest --rebuild`"):
        Index.open(tmp_path)
    make_index(tmp_path)  # create replaces it
    assert not (tmp_path / "gen-20240101").exists() and Index.open(tmp_path).chunk_count() == 2


def _older_schema(path: Path) -> None:
    """A corpus store as an earlier version wrote it: other tables, no recorded version."""
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE chunks (id TEXT PRIMARY KEY, doc_id TEXT, text TEXT, vector BLOB)")
    db.execute("INSERT INTO chunks VALUES ('0011223344556677', 'a.txt', '阳山县', x'00')")
    db.commit()
    db.close()


def _user_version(version: int) -> Callable[[Path], None]:
    def set_version(path: Path) -> None:
        make_index(path.parent).close()
        with contextlib.closing(sqlite3.connect(path)) as db:
            db.execute(f"PRAGMA user_version = {version}")
    return set_version


@pytest.mark.parametrize(("write", "problem"), [
    (_older_schema, "has an older format (schema 0; this version of rag reads schema 2)"),
    (_user_version(1), "has an older format (schema 1; this version of rag reads schema 2)"),
    (_user_version(3), "has a newer format (schema 3; this version of rag reads schema 2)"),
    (lambda path: path.write_bytes(b"not a database, truncated" * 100),
     "cannot be read (corpus.sqlite: file is not a database)"),
])
def test_a_store_of_another_schema_fails_to_open_with_a_typed_error(tmp_path: Path, write: Callable[[Path], None],
                                                                   problem: str) -> None:
    write(tmp_path / "corpus.sqlite")
    before = (tmp_path / "corpus.sqlite").read_bytes()
    with pytest.raises(IndexOutdated) as info:
        Index.open(tmp_path)
    assert str(info.value) == f"the index at {tmp_path} {problem}; rebuild it with `rag ingest --rebuild`"
    assert info.value.status_code == 503 and info.value.type == "index_outdated"
    assert (tmp_path / "corpus.sqlite").read_bytes() == before  # opening wrote nothing into it
    assert index_version(tmp_path) != ""


def test_a_store_written_before_the_schema_version_was_recorded_opens(tmp_path: Path) -> None:
    """user_version 0 with the manifest's format 2: the same schema, written by the previous release."""
    index = make_index(tmp_path)
    expected = state(index)
    index.close()
    with contextlib.closing(sqlite3.connect(tmp_path / "corpus.sqlite")) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 2
        db.execute("PRAGMA user_version = 0")
    assert state(Index.open(tmp_path)) == expected


def test_index_version_changes_with_every_commit_and_every_build(tmp_path: Path) -> None:
    assert index_version(tmp_path) == ""
    index = make_index(tmp_path)
    first = index_version(tmp_path)
    index.write(entries(NEW))
    second = index_version(tmp_path)
    assert second != first and second.startswith(f"{index.version}-")
    rebuilt = make_index(tmp_path)
    rebuilt.write(entries(NEW))  # the same version number as before the rebuild, another build
    assert rebuilt.version == index.version and index_version(tmp_path) != second


def test_refresh_catches_up_with_another_writer(tmp_path: Path) -> None:
    reader = make_index(tmp_path, every=3)
    writer = Index.open(tmp_path, snapshot_every=3)
    writer.write(entries(NEW))
    assert reader.refresh() is True and state(reader) == state(writer)
    writer.write(remove=["a.txt", "b.txt"])
    writer.snapshot()  # tombstones before the snapshot are gone: the reader reloads it
    assert reader.refresh() is True and state(reader) == state(writer)
    assert reader.refresh() is False


# --- failures ---------------------------------------------------------------------------------------------------
def test_failure_inside_the_transaction_keeps_the_previous_state(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    index = make_index(tmp_path)
    before = state(index)

    def fail(*args: object) -> None:
        raise OSError("No space left on device")

    monkeypatch.setattr(CorpusStore, "_insert", staticmethod(fail))
    with pytest.raises(OSError, match="No space left on device"):
        index.write(entries({"a.txt": DOCS["a.txt"] + "改", **NEW}))
    monkeypatch.undo()
    assert state(index) == before  # in memory: the vectors upserted before the commit were taken back
    assert state(Index.open(tmp_path)) == before


@pytest.mark.parametrize("where", ["save", "replace"])
def test_failure_while_snapshotting_keeps_the_previous_snapshot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                where: str) -> None:
    index = make_index(tmp_path)
    index.snapshot(force=True)
    pointer = (tmp_path / "CURRENT").read_text()
    index.write(entries(NEW))

    def fail(*args: object) -> None:
        raise OSError("power cut")

    if where == "save":
        monkeypatch.setattr(type(index.lexical), "save", fail)
    else:
        monkeypatch.setattr(store_module.os, "replace", fail)
    with pytest.raises(OSError, match="power cut"):
        index.snapshot(force=True)
    monkeypatch.undo()
    assert (tmp_path / "CURRENT").read_text() == pointer
    assert state(Index.open(tmp_path)) == state(index)  # the old snapshot plus the replayed commit


def test_open_removes_what_dead_writers_left(tmp_path: Path) -> None:
    make_index(tmp_path).snapshot(force=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    leftover = tmp_path / f".tmp-{dead.stdout.strip()}-abcd1234"
    leftover.mkdir()
    (leftover / "vectors.faiss").write_bytes(b"partial")
    mine = tmp_path / f".tmp-{os.getpid()}-abcd1234"  # a live writer's (this process): kept
    mine.mkdir()
    (tmp_path / "snap-00000000-old").mkdir()
    Index.open(tmp_path)
    assert not leftover.exists() and mine.exists() and not (tmp_path / "snap-00000000-old").exists()


# A child process that ingests `corpus` into the index at `root`, pausing (and writing a marker) while
# embedding, inside the SQLite transaction before its commit, or in the middle of writing a snapshot.
_KILLED_INGEST = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from rag.config import Settings
    from tests.fakes import FakeEmbedder
    from rag.index import corpus, lexical
    from rag.ingest import ingest_paths, open_index

    root, corpus_dir, marker, phase = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]

    def pause(where):
        partial = marker.with_suffix(".partial")
        partial.write_text(where)
        partial.rename(marker)  # the parent sees the whole marker or none
        time.sleep(60)

    class SlowEmbedder(FakeEmbedder):
        def embed_documents(self, texts):
            if phase == "embed":
                pause("embedding")
            return super().embed_documents(texts)

    if phase == "commit":
        insert = corpus.CorpusStore._insert
        def slow_insert(db, entry, version):
            insert(db, entry, version)
            pause("inserted")
        corpus.CorpusStore._insert = staticmethod(slow_insert)
    if phase == "snapshot":
        save = lexical.LexicalIndex.save
        def slow_save(self, folder):
            save(self, folder)
            pause(str(folder))
        lexical.LexicalIndex.save = slow_save

    settings = Settings(index_dir=root.parent, corpus_dir=corpus_dir,
                        snapshot_every=1)
    ingest_paths([corpus_dir], settings, SlowEmbedder(), open_index(settings))
""")


@pytest.mark.parametrize("phase", ["embed", "commit", "snapshot"])
def test_sigkill_during_ingestion_keeps_the_previous_index(tmp_path: Path, phase: str,
                                                          fake_settings: Settings) -> None:
    corpus, root, marker = tmp_path / "corpus", fake_settings.index_path, tmp_path / "marker"
    corpus.mkdir()
    for doc_id, text in DOCS.items():
        (corpus / doc_id).write_text(text, "utf-8")
    old, _ = ingest_paths([corpus], fake_settings, FakeEmbedder(), None)
    old.snapshot(force=True)
    before, version = state(old), index_version(root)
    (corpus / "a.txt").write_text(DOCS["a.txt"] + "\n三、新增内容\n新增一段需要重新嵌入的文字。", "utf-8")

    child = subprocess.Popen([sys.executable, "-c", _KILLED_INGEST, str(root), str(corpus), str(marker), phase],
                             cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             env={**os.environ, "PYTHONPATH": str(REPO)})  # the fakes live beside the tests
    try:
        deadline = time.monotonic() + 60
        while not marker.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), child.stderr.read().decode() if child.poll() is not None else "timeout"
    finally:
        child.kill()  # SIGKILL
        child.wait()
        child.stderr.close()  # type: ignore[union-attr]
    assert child.returncode == -9

    tmp = [p for p in root.iterdir() if p.name.startswith(".tmp-")]
    reopened = Index.open(root)
    if phase == "snapshot":  # the update was committed; its snapshot was not
        assert len(tmp) == 1 and marker.read_text() == str(tmp[0])
        assert index_version(root) != version and "新增一段" in reopened.sources["a.txt"]
        assert reopened.snapshot_version < reopened.version
        fresh = Index.create(tmp_path / "fresh", IndexSpec("fake-64", 64))
        fresh.write(entries({"a.txt": (corpus / "a.txt").read_text("utf-8"), "b.txt": DOCS["b.txt"]}))
        assert state(reopened)["dense"] == state(fresh)["dense"]
        assert state(reopened)["lexical"] == state(fresh)["lexical"]
    else:
        assert tmp == [] and marker.read_text() == ("embedding" if phase == "embed" else "inserted")
        assert index_version(root) == version
        assert state(reopened) == before
    assert not [p for p in root.iterdir() if p.name.startswith(".tmp-")]  # removed at open


def test_vectors_of_a_committed_chunk_are_never_missing(tmp_path: Path) -> None:
    """Every chunk the corpus store holds is in both in-memory parts after opening, whatever the history."""
    index = make_index(tmp_path, every=2)
    for i in range(5):
        index.write(entries({f"n{i}.txt": f"第{i}份文件讲东莞教育。"}))
        if i % 2:
            index.write(remove=[f"n{i - 1}.txt"])
        index.snapshot()
    reopened = Index.open(tmp_path)
    ids = {c.chunk_id for c in reopened.all_chunks()}
    assert reopened.vectors.count() == reopened.lexical.count() == len(ids) == 5
    found = {i for i, _ in reopened.dense_search(FakeEmbedder().embed_query("东莞"), 100)}
    assert found == ids
    assert np.all(np.isfinite(reopened.chunk_vectors(sorted(ids))))
