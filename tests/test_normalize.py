"""Tests for rag.normalize: pinyin and junk removal, whitespace, the offset map, Simplified form, titles."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.chunk import ChunkerConfig, chunk_document
from rag.formats import load_documents
from rag.normalize import (
    clean,
    clean_document,
    clean_with_offsets,
    document_title,
    is_title_line,
    is_traditional,
    simplified_aligned,
    title_lines_of,
    to_simplified,
    to_traditional,
)
from rag.types import CleanDocument, Document


@pytest.fixture(scope="module")
def sample_docs() -> list[CleanDocument]:
    documents, _ = load_documents([Path(__file__).resolve().parent.parent / "corpus"])
    return [clean_document(d) for d in documents]


# --- pinyin annotations ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "expected"), [
    ("領(lǐng)導(dǎo)", "領導"),
    ("縣委教育工作領(lǐng)導(dǎo)小組會議", "縣委教育工作領導小組會議"),
    ("學(xué)習(xí)貫徹", "學習貫徹"),
    ("綠(lǜ)色", "綠色"),
    ("八個縣(市、區(qū))中排名第三", "八個縣(市、區)中排名第三"),
    ("工程(ppp项目)项目验收", "工程(ppp项目)项目验收"),
    ("人工智能(AI)教育", "人工智能(AI)教育"),
    ("办学(办园)标准", "办学(办园)标准"),
    ("单位(dān)", "单位"),
    ("abc(lǐng)", "abc(lǐng)"),  # not after a Han character: not an annotation
    ("中(ling)", "中(ling)"),  # no tone mark: not pinyin
])
def test_pinyin_annotations_removed(text: str, expected: str) -> None:
    assert clean(text) == expected


def test_pinyin_removal_offsets_skip_the_annotation() -> None:
    assert clean_with_offsets("領(lǐng)導(dǎo)") == ("領導", [0, 7])
    assert clean_with_offsets("縣(市、區(qū))中") == ("縣(市、區)中", [0, 1, 2, 3, 4, 9, 10])


# --- junk lines --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("line", [
    "掃碼關注官方公眾號",
    "掃碼關(guān)注官方公眾號",
    "扫码关注官方公众号",
    "移動門戶",
    "手机版",
    "下面是小编为大家整理的2023年度教育局教育局工作会议上讲话，供大家参考。",
    "下面是小编为大家整理的2023年度教育局教育局工作会议上讲话,供大家参考。",
    "时间:2023-11-29 14:13:01 来源:网友投稿",
    "推荐访问:教育局 讲话 工作 教育局教育局工作会议上讲话",
    "相關文章:",
    "相关阅读：",
    "上一篇：关于开展某项工作的通知",
    "打印本页",
    "  返回顶部  ",
])
def test_junk_lines_removed(line: str) -> None:
    assert clean(f"正文第一段。\n{line}\n正文第二段。") == "正文第一段。\n正文第二段。"


@pytest.mark.parametrize("line", [
    "请扫码关注后再报名参加本次活动。",
    "时间:2023年我们完成了三项工作。",
    "全县相关文章汇编工作已经完成。",
])
def test_sentences_that_mention_junk_words_are_kept(line: str) -> None:
    assert clean(line) == line


# --- whitespace ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "expected", "offsets"), [
    ("  a \u3000\u3000b  c\n\n\n d\t\te \n", "a b c\nd e", [2, 3, 6, 7, 9, 10, 14, 15, 17]),
    ("\u3000\u3000正文一。\u3000\n", "正文一。", [2, 3, 4, 5]),
    ("甲\n \n\u3000\n\t\n乙", "甲\n乙", [0, 1, 8]),
    ("第一句。 \u3000 第二句。", "第一句。 第二句。", [0, 1, 2, 3, 4, 7, 8, 9, 10]),
    ("", "", []),
    (" \n\u3000\n", "", []),
])
def test_whitespace_tidying(text: str, expected: str, offsets: list[int]) -> None:
    assert clean_with_offsets(text) == (expected, offsets)


# --- the offset map and the Simplified form, on the sample corpus -------------------------------------------------
def test_offsets_point_at_the_same_characters(sample_docs: list[CleanDocument]) -> None:
    for doc in sample_docs:
        assert len(doc.offsets) == len(doc.clean)
        assert list(doc.offsets) == sorted(set(doc.offsets)), doc.doc_id  # strictly increasing
        for char, offset in zip(doc.clean, doc.offsets, strict=True):
            if char == "\n":
                continue  # inserted between kept lines
            if char == " ":
                assert doc.original[offset].isspace(), (doc.doc_id, offset)
            else:
                assert doc.original[offset] == char, (doc.doc_id, offset)


def test_span_maps_clean_slices_to_original_slices(sample_docs: list[CleanDocument]) -> None:
    doc = sample_docs[0]
    a = doc.clean.index("陽山縣在清遠市")
    b = doc.clean.index("排名第三") + len("排名第三")
    start, end = doc.span(a, b)
    assert (start, end) == (506, 530)
    assert doc.original[start:end] == "陽山縣在清遠市八個縣(市、區(qū))中排名第三"
    assert clean(doc.original[start:end]) == doc.clean[a:b] == "陽山縣在清遠市八個縣(市、區)中排名第三"


def test_simplified_is_aligned_with_clean(sample_docs: list[CleanDocument]) -> None:
    for doc in sample_docs:
        assert len(doc.simplified) == len(doc.clean), doc.doc_id
        assert [i for i, c in enumerate(doc.clean) if c == "\n"] == \
            [i for i, c in enumerate(doc.simplified) if c == "\n"]
    doc = sample_docs[0]
    i = doc.clean.index("陽山縣在清遠市八個縣")
    assert doc.simplified[i:i + 21] == "阳山县在清远市八个县(市、区)中排名第三,"
    assert not is_traditional(doc.simplified)


def test_simplified_aligned_keeps_length_line_by_line() -> None:
    text = "陽山縣教育發展\n頭髮與發展\n乾隆皇帝"
    simplified = simplified_aligned(text)
    assert len(simplified) == len(text)
    assert simplified.split("\n")[0] == "阳山县教育发展"


def test_script_conversion() -> None:
    assert to_simplified("陽山縣在清遠市排名第三") == "阳山县在清远市排名第三"
    assert to_traditional("阳山县在清远市排名第三") == "陽山縣在清遠市排名第三"
    assert is_traditional("陽山縣") is True
    assert is_traditional("阳山县") is False
    assert is_traditional("2023年") is False


def test_clean_of_every_chunk_span_is_the_chunk_text(sample_docs: list[CleanDocument]) -> None:
    config = ChunkerConfig()
    assert (config.max_chars, config.min_chars) == (360, 80)
    total = 0
    for doc in sample_docs:
        chunks = chunk_document(doc, config)
        assert chunks, doc.doc_id
        for chunk in chunks:
            assert clean(doc.original[chunk.start:chunk.end]) == chunk.text, (doc.doc_id, chunk.start)
            assert doc.clean[chunk.clean_start:chunk.clean_end] == chunk.text
            assert doc.simplified[chunk.clean_start:chunk.clean_end] == chunk.simplified
            total += 1
    assert total == 84


# --- titles -------------------------------------------------------------------------------------------------------
def test_titles_of_the_sample_documents(sample_docs: list[CleanDocument]) -> None:
    assert {d.doc_id: d.title for d in sample_docs} == {
        # no title line, no title declared by the format: the file's name, never a sentence cut short
        "000_ae0e48cc884afd96.txt": "000_ae0e48cc884afd96",
        "001_079ce6fb03cbab58.txt": "001_079ce6fb03cbab58",
        "002_9f3d902dfed96728.txt": "2023年廣東東莞教育高質量發展重點工作",
        "003_727ffb95bee0db86.txt": "2023年度教育局教育局工作会议上讲话",
        "004_c849ceb370c41d84.txt": "实干担当 笃行致远 奋力谱写辽源教育高质量发展新篇章",
    }


def test_junk_is_gone_from_the_sample_documents(sample_docs: list[CleanDocument]) -> None:
    by_id = {d.doc_id: d for d in sample_docs}
    assert "掃碼" not in by_id["000_ae0e48cc884afd96.txt"].clean
    assert not by_id["000_ae0e48cc884afd96.txt"].clean.endswith("移動門戶")
    assert not by_id["002_9f3d902dfed96728.txt"].clean.endswith("相關文章:")
    head = by_id["003_727ffb95bee0db86.txt"].clean.split("\n")[:3]
    assert head == ["2023年度教育局教育局工作会议上讲话", "2023年度教育局教育局工作会议上讲话", "同志们:"]
    assert "推荐访问" not in by_id["003_727ffb95bee0db86.txt"].clean
    assert "(ppp项目)" in by_id["003_727ffb95bee0db86.txt"].clean
    assert all("(lǐng)" not in d.clean and "\u0301" not in d.clean for d in sample_docs)


def test_document_title_prefers_the_declared_title_then_title_lines_then_the_file_name() -> None:
    assert document_title("正文第一句。", "县教育局年度报告", "a/b.html") == "县教育局年度报告"
    assert document_title("主标题\n副标题\n正文。", "主标题", "x.pdf") == "主标题 副标题"  # declared = first line
    assert document_title("主标题\n正文。", "", "x.pdf") == "主标题"
    assert document_title("近日，某县召开会议，" * 5, "", "reports/2023年工作报告.pdf") == "2023年工作报告"
    assert document_title("正文。", "近日，某县召开会议，" * 5, "r.html") == "r"  # a sentence is no title
    assert document_title("正文。", "領(lǐng)導講話", "r.docx") == "領導講話"  # cleaned like the text


def test_title_lines() -> None:
    assert title_lines_of("标题\n标题\n正文。") == ["标题"]
    assert title_lines_of("主标题\n副标题\n正文。") == ["主标题", "副标题"]
    assert title_lines_of("第一句就是正文。\n标题") == []
    assert is_title_line("突出一条主线") is True
    assert is_title_line("同志们:") is False
    assert is_title_line("长" * 41) is False


def test_clean_document_fields() -> None:
    doc = clean_document(Document("t.txt", "標題\n\n領(lǐng)導講話。\n", "sha"))
    assert doc == CleanDocument(doc_id="t.txt", original="標題\n\n領(lǐng)導講話。\n", clean="標題\n領導講話。",
                                simplified="标题\n领导讲话。", offsets=(0, 1, 2, 4, 11, 12, 13, 14), title="標題")
