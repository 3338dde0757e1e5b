"""Tests for rag.formats.text and folder loading: decoding (UTF-8, BOM, GB18030/GBK), rejection of bad files."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from rag.errors import DocumentError
from rag.formats import Skipped, find_files, load_documents, read_document
from rag.formats.text import decode
from rag.types import Document

TEXT = "阳山县在清远市排名第三。\n陽山縣獲優秀等次。"


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# --- decode ---------------------------------------------------------------------------------------------
def test_decode_utf8() -> None:
    assert decode(TEXT.encode("utf-8"), "a.txt") == TEXT


def test_decode_utf8_with_bom_drops_the_bom() -> None:
    assert decode(b"\xef\xbb\xbf" + TEXT.encode("utf-8"), "a.txt") == TEXT


@pytest.mark.parametrize("encoding", ["gbk", "gb18030"])
def test_decode_gbk_and_gb18030(encoding: str) -> None:
    text = "阳山县在清远市八个县（市、区）中排名第三。"
    data = text.encode(encoding)
    assert data != text.encode("utf-8")
    assert decode(data, "a.txt") == text


def test_decode_gb18030_traditional() -> None:
    assert decode("陽山縣獲優秀等次。".encode("gb18030"), "a.txt") == "陽山縣獲優秀等次。"


@pytest.mark.parametrize(("data", "expected"), [
    (b"one\r\ntwo\r\n", "one\ntwo\n"),
    (b"one\rtwo", "one\ntwo"),
    ("甲\r\n乙\r丙\n".encode(), "甲\n乙\n丙\n"),
])
def test_decode_normalizes_line_ends(data: bytes, expected: str) -> None:
    assert decode(data, "a.txt") == expected


@pytest.mark.parametrize(("data", "reason"), [
    (b"", "bad.txt: the file is empty"),
    (b"  \r\n\t\n ", "bad.txt: the file is empty"),
    (b"PK\x03\x04\x00\x00abc", "bad.txt: looks like a binary file (contains NUL bytes)"),
    (b"abc\x80\x80\xff", "bad.txt: cannot decode as UTF-8 or GB18030/GBK"),
    ("中文".encode("gbk") + b"\xff", "bad.txt: cannot decode as UTF-8 or GB18030/GBK"),
    (b"abc\x01\x02\x03def", "bad.txt: looks like a binary file (3 control characters)"),
])
def test_decode_rejects_bad_files_naming_them(data: bytes, reason: str) -> None:
    with pytest.raises(DocumentError) as info:
        decode(data, "bad.txt")
    assert str(info.value) == reason


@pytest.mark.parametrize("data", [
    b"\xef\xbb\xbf",  # a BOM and nothing else
    b"\xef\xbb\xbf\r\n  \n",  # a BOM and blank lines
    "\u3000\u3000\n\u3000\n".encode(),  # full-width spaces only
], ids=["bom-only", "bom-and-blank-lines", "full-width-spaces"])
def test_decode_rejects_files_that_are_empty_once_decoded(data: bytes) -> None:
    # Emptiness is judged on the decoded text (``decode`` in rag/formats/text.py), after the BOM is dropped,
    # so these files are refused rather than loaded as documents without any content.
    with pytest.raises(DocumentError, match=r"^empty\.txt: the file is empty$"):
        decode(data, "empty.txt")


# --- read_document / find_files / load_documents -------------------------------------------------------------
def test_read_document_records_text_and_sha256_of_the_bytes(tmp_path: Path) -> None:
    data = TEXT.replace("\n", "\r\n").encode("gbk")
    path = write(tmp_path / "a.txt", data)
    assert read_document(path, "a.txt") == Document("a.txt", TEXT, hashlib.sha256(data).hexdigest())


def test_read_document_error_names_the_doc_id(tmp_path: Path) -> None:
    path = write(tmp_path / "sub" / "x.txt", b"\x00\x01")
    with pytest.raises(DocumentError, match=r"^sub/x\.txt: looks like a binary file"):
        read_document(path, "sub/x.txt")


def test_find_files_keeps_known_formats_with_relative_posix_ids(tmp_path: Path) -> None:
    for name in ["a.txt", "b.md", "C.TXT", "sub/x.txt", "sub/deeper/y.md", "c.pdf", "d.docx", "e.txt.bak",
                 ".hidden.txt", "notes", "f.HTM", "g.doc"]:
        write(tmp_path / name, "内容。".encode())
    found = [(path.relative_to(tmp_path).as_posix(), doc_id) for path, doc_id in find_files(tmp_path)]
    assert found == [("C.TXT", "C.TXT"), ("a.txt", "a.txt"), ("b.md", "b.md"), ("c.pdf", "c.pdf"),
                     ("d.docx", "d.docx"), ("f.HTM", "f.HTM"), ("sub/deeper/y.md", "sub/deeper/y.md"),
                     ("sub/x.txt", "sub/x.txt")]


def test_find_files_on_a_file_uses_its_name(tmp_path: Path) -> None:
    path = write(tmp_path / "sub" / "x.txt", b"text")
    assert list(find_files(path)) == [(path, "x.txt")]


def test_load_documents_skips_a_bad_file_and_loads_the_rest(tmp_path: Path) -> None:
    write(tmp_path / "a.txt", "第一篇。".encode())
    write(tmp_path / "b.txt", b"\xff\xfe\x80\x80")
    write(tmp_path / "sub" / "x.txt", "第三篇。".encode("gbk"))
    write(tmp_path / "sub" / "empty.md", b"")
    write(tmp_path / "image.png", b"\x89PNG\x00")
    documents, skipped = load_documents([tmp_path])
    assert [(d.doc_id, d.text) for d in documents] == [("a.txt", "第一篇。"), ("sub/x.txt", "第三篇。")]
    assert skipped == [Skipped("b.txt", "b.txt: cannot decode as UTF-8 or GB18030/GBK"),
                       Skipped("image.png", "image.png: corrupt or unreadable image (not a PNG, JPEG or TIFF image "
                               "Pillow can read)"),
                       Skipped("sub/empty.md", "sub/empty.md: the file is empty")]


def test_load_documents_over_several_roots(tmp_path: Path) -> None:
    write(tmp_path / "one" / "a.txt", "甲。".encode())
    single = write(tmp_path / "two" / "nested" / "b.md", "乙。".encode())
    documents, skipped = load_documents([tmp_path / "one", single])
    assert [(d.doc_id, d.text) for d in documents] == [("a.txt", "甲。"), ("b.md", "乙。")]
    assert skipped == []


def test_load_documents_missing_root_raises(tmp_path: Path) -> None:
    with pytest.raises(DocumentError, match="no such file or folder"):
        load_documents([tmp_path / "missing"])


def test_load_documents_on_the_sample_corpus(corpus_dir: Path) -> None:
    documents, skipped = load_documents([corpus_dir])
    assert skipped == []
    assert [d.doc_id for d in documents] == [
        "000_ae0e48cc884afd96.txt", "001_079ce6fb03cbab58.txt", "002_9f3d902dfed96728.txt",
        "003_727ffb95bee0db86.txt", "004_c849ceb370c41d84.txt"]
    assert [len(d.text) for d in documents] == [2068, 2520, 2590, 11374, 2169]
    assert all("\r" not in d.text for d in documents)
