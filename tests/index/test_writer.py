"""Tests for rag.index.writer: transactions over the corpus folder and the index, and their crash recovery.

A child process is killed (SIGKILL) at an exact point of a write; the next writer must settle it: undone
when the index had not committed it, completed when it had. The corpus folder and the index then agree.
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rag.config import Settings
from rag.errors import InvalidRequest
from rag.index import Index
from rag.index.writer import IndexWriter, LocalIndex, sanitize_name
from rag.ingest import ingest_paths
from tests.fakes import FakeEmbedder

REPO = Path(__file__).resolve().parents[2]
OLD = "旧文件\n旧文件说青松县有学校三十所。\n".encode()
NEW = "新文件\n新文件说青松县有学校四十所。\n".encode()

CHILD = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from rag.index import writer as w
    from rag.config import Settings
    from tests.fakes import FakeEmbedder
    from rag.index import Index
    root, op, point = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    settings = Settings(corpus_dir=root / "corpus",
                        index_dir=root / "index")
    die = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
    if point == "before-commit":
        Index.write = die
    else:
        w._finish = die
    writer = w.IndexWriter(settings, FakeEmbedder(), w.LocalIndex())
    writer.refresh()
    if op == "delete":
        writer.delete("x.txt")
    else:
        data = sys.argv[4].encode()
        writer.add(writer.prepare("x.txt", data), data)
""")


def setup(root: Path, with_x: bool) -> Settings:
    corpus = root / "corpus"
    corpus.mkdir(parents=True)
    shutil.copy(REPO / "corpus" / "000_ae0e48cc884afd96.txt", corpus)
    if with_x:
        (corpus / "x.txt").write_bytes(OLD)
    settings = Settings(corpus_dir=corpus, index_dir=root / "index")
    ingest_paths([corpus], settings, FakeEmbedder(), None)
    return settings


def killed_during(root: Path, op: str, point: str) -> None:
    child = subprocess.run([sys.executable, "-c", CHILD, str(root), op, point, NEW.decode()],
                           env={"PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=120)
    assert child.returncode == -9, child.stderr


def settled(settings: Settings) -> dict[str, str]:
    """What a new writer leaves after recovery: {doc_id: sha256}, checked against the corpus folder."""
    holder = LocalIndex()
    writer = IndexWriter(settings, FakeEmbedder(), holder)
    writer.refresh()
    assert not writer.journal.exists()
    assert [p.name for p in settings.corpus_dir.iterdir() if p.name.startswith(".")] == []
    index = Index.open(settings.index_path)
    files = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in settings.corpus_dir.iterdir()}
    assert {d: r.sha256 for d, r in index.documents.items()} == files
    assert holder.loaded_index is not None and set(holder.loaded_index.documents) == set(files)
    return files


@pytest.mark.parametrize(("op", "point", "expected"), [
    ("add", "before-commit", None),
    ("add", "after-commit", NEW),
    ("replace", "before-commit", OLD),
    ("replace", "after-commit", NEW),
    ("delete", "before-commit", OLD),
    ("delete", "after-commit", None),
])
def test_a_write_killed_at_any_point_is_settled_by_the_next_writer(tmp_path: Path, op: str, point: str,
                                                                   expected: bytes | None) -> None:
    settings = setup(tmp_path, with_x=op != "add")
    killed_during(tmp_path, op, point)
    assert (settings.index_path.parent / ".default.journal").exists()  # the kill left a change in flight
    files = settled(settings)
    if expected is None:
        assert "x.txt" not in files
    else:
        assert (settings.corpus_dir / "x.txt").read_bytes() == expected


def test_sanitize_name_refuses_names_longer_than_a_file_system_stores() -> None:
    assert sanitize_name("长" * 83 + ".txt") == "长" * 83 + ".txt"  # 253 bytes
    with pytest.raises(InvalidRequest, match="is 256 bytes long .UTF-8.; the limit is 255"):
        sanitize_name("长" * 84 + ".txt")


# --- rag ingest --rebuild ---------------------------------------------------------------------------------
REBUILD_CHILD = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from tests.fakes import embed
    from rag.index import writer as w
    from rag.config import Settings
    root, folder, point = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    settings = Settings(corpus_dir=root / "corpus",
                        index_dir=root / "index")
    die = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
    rename = os.rename
    def cut(src, dst):
        if point == "swap" and Path(src).name == ".default.rebuild":
            die()  # the previous index is aside, the new one not yet in
        rename(src, dst)
        if point == "cleanup" and Path(dst) == settings.index_path:
            die()  # the new index is in, the previous one not yet deleted
    os.rename = cut
    if point == "build":
        embed.FakeEmbedder.embed_documents = die
    w.IndexWriter(settings, embed.FakeEmbedder(), w.LocalIndex()).ingest([folder], rebuild=True)
""")


def rebuild_setup(root: Path) -> tuple[Settings, Path]:
    """An index of the sample document and x.txt, and another folder holding only y.txt to rebuild from."""
    settings = setup(root, with_x=True)
    other = root / "other"
    other.mkdir()
    (other / "y.txt").write_bytes(NEW)
    return settings, other


@pytest.mark.parametrize(("point", "kept"), [("build", "previous"), ("swap", "previous"), ("cleanup", "new")])
def test_a_rebuild_killed_at_any_point_leaves_a_whole_index(tmp_path: Path, point: str, kept: str) -> None:
    settings, other = rebuild_setup(tmp_path)
    previous = Index.open(settings.index_path)
    before = {d: r.sha256 for d, r in previous.documents.items()}
    searched = previous.lexical_search("青松县学校", 5)[0]
    previous.close()
    child = subprocess.run([sys.executable, "-c", REBUILD_CHILD, str(tmp_path), str(other), point],
                           env={"PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=120)
    assert child.returncode == -9, child.stderr
    assert (settings.index_path.exists(), point) != (True, "swap")  # the kill did cut between the renames

    index = Index.open(settings.index_path)  # a reader settles what the kill left (it takes the free lock)
    documents = {d: r.sha256 for d, r in index.documents.items()}
    if kept == "previous":
        assert documents == before and index.lexical_search("青松县学校", 5)[0] == searched
    else:
        assert documents == {"y.txt": hashlib.sha256(NEW).hexdigest()}
    assert index.chunk_count() == index.vectors.count() == index.lexical.count() > 0
    IndexWriter(settings, FakeEmbedder(), LocalIndex()).refresh()  # the next writer drops the leftovers
    assert sorted(p.name for p in settings.index_dir.iterdir()) == [".default.lock", "default"]


def test_a_failed_rebuild_keeps_the_previous_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings, other = rebuild_setup(tmp_path)
    before = set(Index.open(settings.index_path).documents)
    monkeypatch.setattr(FakeEmbedder, "embed_documents", lambda *a: (_ for _ in ()).throw(OSError("disk full")))
    holder = LocalIndex()
    with pytest.raises(OSError, match="disk full"):
        IndexWriter(settings, FakeEmbedder(), holder).ingest([other], rebuild=True)
    assert set(Index.open(settings.index_path).documents) == before
    assert sorted(p.name for p in settings.index_dir.iterdir()) == [".default.lock", "default"]
    monkeypatch.undo()
    IndexWriter(settings, FakeEmbedder(), holder).ingest([other], rebuild=True)
    assert set(holder.loaded_index.documents) == set(Index.open(settings.index_path).documents) == {"y.txt"}


def test_the_cli_says_rebuild_in_one_line_and_rebuild_replaces_an_older_index(tmp_path: Path) -> None:
    settings, other = rebuild_setup(tmp_path)
    with sqlite3.connect(settings.index_path / "corpus.sqlite") as db:
        db.execute("PRAGMA user_version = 1")
    env = {"PYTHONPATH": str(REPO),
           "RAG_INDEX_DIR": str(settings.index_dir), "RAG_CORPUS_DIR": str(settings.corpus_dir)}
    rag = lambda *args: subprocess.run([sys.executable, "-m", "tests.fakes", *args], env=env,  # noqa: E731
                                       capture_output=True, text=True, timeout=120)
    message = (f"error: the index at {settings.index_path} has an older format (schema 1; this version of rag "
               "reads schema 2); rebuild it with `rag ingest --rebuild`\n")
    for args in (["search", "青松县"], ["ingest", str(other)]):
        done = rag(*args)
        assert (done.returncode, done.stderr) == (2, message)
    done = rag("ingest", "--rebuild", str(other))
    assert done.returncode == 0, done.stderr
    assert "1 documents" in done.stdout
    assert set(Index.open(settings.index_path).documents) == {"y.txt"}
    assert "y.txt" in rag("search", "青松县").stdout
