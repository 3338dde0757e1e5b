"""Tests for rag.chunk: the golden chunks of the sample corpus, headings, section paths, sizing, merging."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag.chunk import ChunkerConfig, chunk_document, hard_split, heading, sentence_bounds
from rag.formats import load_documents
from rag.normalize import clean, clean_document
from rag.types import Chunk, CleanDocument, Document

GOLDEN = Path(__file__).resolve().parent / "golden" / "chunks.json"
DOC_003 = "003_727ffb95bee0db86.txt"
# 16 characters, one sentence.
BODY = "这是一句测试内容，用来凑足长度。"
DEFAULTS = ChunkerConfig()


def chunks_of(text: str, config: ChunkerConfig = DEFAULTS) -> list[Chunk]:
    return chunk_document(clean_document(Document("t.txt", text, "sha")), config)


def spans(chunks: list[Chunk]) -> list[tuple[int, int, tuple[str, ...]]]:
    return [(c.start, c.end, c.section) for c in chunks]


@pytest.fixture(scope="module")
def sample_docs() -> dict[str, CleanDocument]:
    documents, _ = load_documents([Path(__file__).resolve().parent.parent / "corpus"])
    return {d.doc_id: clean_document(d) for d in documents}


# --- golden ----------------------------------------------------------------------------------------------
def test_sample_corpus_chunks_match_the_golden_file(sample_docs: dict[str, CleanDocument]) -> None:
    """Regenerate with `python scripts/make_golden.py` after an intended chunker change."""
    golden = json.loads(GOLDEN.read_text("utf-8"))
    actual = {doc_id: [{"start": c.start, "end": c.end, "section": list(c.section), "text_head": c.text[:20]}
                       for c in chunk_document(doc, ChunkerConfig(360, 80))]
              for doc_id, doc in sample_docs.items()}
    assert list(actual) == list(golden)
    for doc_id in golden:
        assert actual[doc_id] == golden[doc_id], doc_id
    assert sum(len(v) for v in golden.values()) == 84


def test_sample_chunks_are_ordered_sized_and_uniquely_identified(sample_docs: dict[str, CleanDocument]) -> None:
    config = ChunkerConfig()
    for doc_id, doc in sample_docs.items():
        chunks = chunk_document(doc, config)
        assert [c.start for c in chunks] == sorted(c.start for c in chunks)
        assert all(a.end <= b.start for a, b in zip(chunks, chunks[1:], strict=False)), doc_id
        assert all(0 < len(c.text) <= config.max_chars + config.min_chars for c in chunks), doc_id
        assert all(c.text == c.text.strip() and c.doc_id == doc_id and c.title == doc.title for c in chunks)
        assert len({c.chunk_id for c in chunks}) == len(chunks)
        assert all(len(c.chunk_id) == 16 and int(c.chunk_id, 16) >= 0 for c in chunks)


def test_chunk_ids_are_derived_from_content(sample_docs: dict[str, CleanDocument]) -> None:
    doc = sample_docs[DOC_003]
    first = [c.chunk_id for c in chunk_document(doc)]
    assert first == [c.chunk_id for c in chunk_document(doc)]
    renamed = CleanDocument("other.txt", doc.original, doc.clean, doc.simplified, doc.offsets, doc.title)
    assert not set(first) & {c.chunk_id for c in chunk_document(renamed)}


# --- pinned chunks of 003 -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("start", "end", "section", "head", "tail"), [
    (212, 332, ("一、回顾2022年工作",), "一、回顾2022年工作\n2022年,面对严峻", "好于预期的答卷。"),
    (818, 1215, ("一、回顾2022年工作", "(二)教育教学质量实现新提升", "1.优质均衡有进展"),
     "(二)教育教学质量实现新提升\n1.优质均衡有进展。继续巩固", "共计28万元。"),
    (3814, 4175, ("二、面向未来,把握教育“发展大势”乘势而为", "(一)聚焦“党建”,推进品牌建设"),
     "(一)聚焦“党建”,推进品牌建设\n要以学习贯彻", "二是规范学校基层党建。"),
    (4175, 4518, ("二、面向未来,把握教育“发展大势”乘势而为", "(一)聚焦“党建”,推进品牌建设"),
     "加快推进基层学校党支部规范化建设", None),
    (11154, 11344, ("二、面向未来,把握教育“发展大势”乘势而为", "(十)聚焦“财务”,严格落实相关政策"),
     "四月底前整改到位。", "教育更加美好的未来!"),
])
def test_pinned_chunks_of_003(sample_docs: dict[str, CleanDocument], start: int, end: int,
                              section: tuple[str, ...], head: str, tail: str | None) -> None:
    doc = sample_docs[DOC_003]
    by_start = {c.start: c for c in chunk_document(doc)}
    chunk = by_start[start]
    assert (chunk.start, chunk.end, chunk.section) == (start, end, section)
    assert chunk.text.startswith(head)
    if tail is not None:
        assert chunk.text.endswith(tail)
    assert clean(doc.original[start:end]) == chunk.text


def test_chunk_003_first_and_count(sample_docs: dict[str, CleanDocument]) -> None:
    chunks = chunk_document(sample_docs[DOC_003])
    assert len(chunks) == 47
    # text before the first heading sits under the document's title
    assert (chunks[0].start, chunks[0].end, chunks[0].section) == (0, 210, ("2023年度教育局教育局工作会议上讲话",))
    assert chunks[0].text.startswith("2023年度教育局教育局工作会议上讲话\n2023年度教育局教育局工作会议上讲话\n同志们:")
    assert chunks[4].section_path == "一、回顾2022年工作 > (二)教育教学质量实现新提升 > 1.优质均衡有进展"
    assert chunks[4].chunk_id == "1c5680e0de09902e"


# --- headings ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("line", "expected"), [
    ("一、总体要求", (4, "一、总体要求")),
    ("十二、其他事项", (4, "十二、其他事项")),
    ("（一）加强党的建设", (5, "（一）加强党的建设")),
    ("(一)加强党的建设", (5, "(一)加强党的建设")),
    ("（十）聚焦财务", (5, "（十）聚焦财务")),
    ("1.优质均衡有进展", (6, "1.优质均衡有进展")),
    ("1、优质均衡有进展", (6, "1、优质均衡有进展")),
    ("1．优质均衡有进展", (6, "1．优质均衡有进展")),
    ("12.规范校外服务", (6, "12.规范校外服务")),
    ("（1）具体做法", (7, "（1）具体做法")),
    ("(1)具体做法", (7, "(1)具体做法")),
    ("第一章 总则", (1, "第一章 总则")),
    ("第十二编 附则", (1, "第十二编 附则")),
    ("第二节 教学管理", (2, "第二节 教学管理")),
    ("第二節 教學管理", (2, "第二節 教學管理")),
    ("第三条 学校应当建立安全制度。", (8, "第三条 学校应当建立安全制度")),
    ("第3条", (8, "第3条")),
    # The title of a numbered heading ends at its first sentence or colon.
    ("1.优质均衡有进展。继续巩固提高基础教育发展水平。", (6, "1.优质均衡有进展")),
    ("一、总体要求：坚持立德树人", (4, "一、总体要求")),
    # Short lines without sentence punctuation are section titles.
    ("突出一条主线", (3, "突出一条主线")),
    ("全面加快推进基础教育高质量发展", (3, "全面加快推进基础教育高质量发展")),
])
def test_heading_styles(line: str, expected: tuple[float, str]) -> None:
    assert heading(line) == expected


@pytest.mark.parametrize("line", [
    "2022年,面对严峻的疫情防控形势和教育发展稳定的艰巨任务。",
    "2022年全县高考成绩比上年有大幅提升。",
    "2020、2021年度截留资金一定要按照要求及时支出。",
    "1.5万人参加了培训。",
    "1.5万人参加了培训,比上年增加两成",
    "同志们:",
    "要锚定目标,多措并举,高质量办好人民满意的教育",
    "这" * 41,
    "",
])
def test_not_headings(line: str) -> None:
    assert heading(line) is None


@pytest.mark.parametrize("line", ["2022年工作回顾", "2020、2021年度", "1.5万人"])
def test_year_and_decimal_lines_are_not_numbered_headings(line: str) -> None:
    """Short enough to be a title line, but never a numbered level (6: `1.`, `1、`)."""
    assert heading(line) == (3, line)


def test_document_title_lines_are_not_section_titles() -> None:
    assert heading("学校工作报告", frozenset({"学校工作报告"})) is None
    assert heading("学校工作报告", frozenset({"别的标题"})) == (3, "学校工作报告")


# --- section paths -----------------------------------------------------------------------------------------------
NESTED = "\n".join([
    "学校工作报告",  # 0..6, the document title
    "一、总体情况",  # 7
    BODY * 6,  # 14..110
    "（一）组织领导",  # 111
    BODY * 6,  # 119..215
    "（二）工作安排",  # 216
    "1.前期准备",  # 224
    BODY * 6,  # 231..327
    "2.组织实施",  # 328
    BODY * 6,  # 335..431
    "二、下一步计划",  # 432
    BODY * 6,  # 440..536
])


def test_section_paths_nest_without_merging() -> None:
    assert spans(chunks_of(NESTED, ChunkerConfig(360, 0))) == [
        (0, 6, ("学校工作报告 一、总体情况",)),  # before the first heading: under the document's title
        (7, 110, ("一、总体情况",)),
        (111, 215, ("一、总体情况", "（一）组织领导")),
        (216, 223, ("一、总体情况", "（二）工作安排")),
        (224, 327, ("一、总体情况", "（二）工作安排", "1.前期准备")),
        (328, 431, ("一、总体情况", "（二）工作安排", "2.组织实施")),
        (432, 536, ("二、下一步计划",)),
    ]


def test_section_paths_with_default_merging() -> None:
    chunks = chunks_of(NESTED)
    assert spans(chunks) == [
        (0, 110, ("一、总体情况",)),  # the title line joins the first section
        (111, 215, ("一、总体情况", "（一）组织领导")),
        (216, 327, ("一、总体情况", "（二）工作安排", "1.前期准备")),  # a bare heading joins its first child
        (328, 431, ("一、总体情况", "（二）工作安排", "2.组织实施")),
        (432, 536, ("二、下一步计划",)),
    ]
    assert chunks[2].section_path == "一、总体情况 > （二）工作安排 > 1.前期准备"
    assert chunks[2].text.startswith("（二）工作安排\n1.前期准备\n这是一句")


def test_title_line_closes_numbered_sections_and_subtitle_nests() -> None:
    text = "\n".join(["报告", "一、总体情况", BODY * 6, "突出一条主线", "深入学习贯彻精神", BODY * 6])
    assert [c.section for c in chunks_of(text, ChunkerConfig(360, 0))] == [
        ("报告 一、总体情况",), ("一、总体情况",), ("突出一条主线",), ("突出一条主线", "深入学习贯彻精神")]


# --- sizing -----------------------------------------------------------------------------------------------------
LONG = "\n".join(["一、长章节", "".join(f"第{i}句话的内容写在这里。" for i in range(10, 50))])  # 6 + 40 * 13


def test_long_section_splits_at_sentence_ends() -> None:
    chunks = chunks_of(LONG, ChunkerConfig(100, 0))
    assert spans(chunks) == [(0, 97, ("一、长章节",)), (97, 188, ("一、长章节",)), (188, 279, ("一、长章节",)),
                             (279, 370, ("一、长章节",)), (370, 461, ("一、长章节",)), (461, 526, ("一、长章节",))]
    assert all(len(c.text) <= 100 and c.text.endswith("这里。") for c in chunks)
    assert [c.text[:4] for c in chunks[1:]] == ["第17句", "第24句", "第31句", "第38句", "第45句"]


def test_small_tail_of_a_split_section_merges_back_within_tolerance() -> None:
    chunks = chunks_of(LONG, ChunkerConfig(100, 70))
    assert spans(chunks)[-2:] == [(279, 370, ("一、长章节",)), (370, 526, ("一、长章节",))]
    assert all(len(c.text) <= 100 + 70 for c in chunks)


@pytest.mark.parametrize("mark", ["。", "！", "？", "；"])
def test_split_points_are_sentence_marks(mark: str) -> None:
    text = "一、章\n" + "".join(f"第{i}句话的内容写在这里{mark}" for i in range(10, 30))
    chunks = chunks_of(text, ChunkerConfig(60, 0))
    assert len(chunks) == 5
    assert all(c.text.endswith(mark) and len(c.text) <= 60 for c in chunks)


def test_over_long_sentence_is_cut_at_clause_marks() -> None:
    sentence = "，".join(["这是一个很长的分句"] * 30) + "。"  # 300 characters, one sentence
    chunks = chunks_of("一、章\n" + sentence, ChunkerConfig(95, 0))
    assert [(c.clean_start, c.clean_end) for c in chunks] == [(0, 94), (94, 184), (184, 274), (274, 304)]
    assert all(c.text.endswith("分句，") for c in chunks[:-1])
    assert chunks[-1].text.endswith("分句。")


def test_sentence_bounds_and_hard_split() -> None:
    assert sentence_bounds("甲。乙！丙？丁；戊\n己", 0, 11) == [(0, 2), (2, 4), (4, 6), (6, 8), (8, 9), (10, 11)]
    assert sentence_bounds("甲。\n\n  \n乙", 0, 8) == [(0, 2), (7, 8)]
    assert hard_split("一二三，四五六七，八九十", 0, 12, 5) == [(0, 4), (4, 9), (9, 12)]
    assert hard_split("一二三四五六七八九十", 0, 10, 4) == [(0, 4), (4, 8), (8, 10)]


# --- merging -----------------------------------------------------------------------------------------------------
def test_tiny_section_merges_with_the_next_sibling() -> None:
    text = "\n".join(["标题行", "一、大章", "（一）小节甲", BODY * 6, "（二）小节乙", "很短的一句。",
                      "（三）小节丙", BODY * 6, "二、另一章", BODY * 6])
    chunks = chunks_of(text)
    assert spans(chunks) == [(0, 112, ("一、大章", "（一）小节甲")), (113, 230, ("一、大章",)),
                             (231, 333, ("二、另一章",))]
    assert chunks[1].text.startswith("（二）小节乙\n很短的一句。\n（三）小节丙\n")


def test_tiny_last_subsection_merges_with_its_previous_sibling() -> None:
    # `（二）小节乙` (under 一、大章) does not share a parent with `二、另一章` (the root; ``_same_parent`` in
    # rag/chunk.py compares whole parent paths), so it merges back into its sibling, never forward into a
    # chunk that would straddle two top-level sections with an empty section path.
    text = "\n".join(["标题行", "一、大章", "（一）小节甲", BODY * 6, "（二）小节乙", "很短的一句。",
                      "二、另一章", BODY * 6])
    chunks = chunks_of(text)
    assert [c.section for c in chunks] == [("一、大章",), ("二、另一章",)]
    assert chunks[0].text.endswith("（二）小节乙\n很短的一句。")
    assert chunks[1].text.startswith("二、另一章\n")


def test_sections_of_at_least_min_chars_stay_separate() -> None:
    text = "\n".join(["一、甲", BODY * 5, "二、乙", BODY * 5])  # 84 clean characters each
    assert spans(chunks_of(text)) == [(0, 84, ("一、甲",)), (85, 169, ("二、乙",))]


def test_a_single_small_document_is_one_chunk() -> None:
    chunks = chunks_of("\u3000\u3000只有一句话。\n")
    assert [(c.start, c.end, c.section, c.text, c.clean_start, c.clean_end) for c in chunks] == \
        [(2, 8, ("t",), "只有一句话。", 0, 6)]  # no headings: under the title (no title line: the file's name)


def test_an_empty_clean_document_has_no_chunks() -> None:
    assert chunks_of("扫码关注官方公众号\n移动门户\n") == []
