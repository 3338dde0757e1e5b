"""Tests for rag.formats: PDF, Word, web page and Markdown readers on real files, detection by content,
bad input, and the proof that each format of the sample documents chunks like its text file."""

from __future__ import annotations

import difflib
import io
import zipfile
from functools import cache
from pathlib import Path

import docx
import pypdfium2 as pdfium
import pytest

from rag.chunk import chunk_document
from rag.errors import DocumentError
from rag.formats import Limits, load_documents, page_span, read_bytes, read_document
from rag.normalize import clean, clean_document
from rag.types import Chunk

REPO = Path(__file__).resolve().parent.parent.parent
FIXTURES = REPO / "tests" / "fixtures" / "formats"
SAMPLES = sorted(p.stem for p in (REPO / "corpus").glob("*.txt"))
FORMATS = [".pdf", ".docx", ".html"]


@cache
def chunks_of(path: Path) -> tuple[list[Chunk], str, tuple[int, ...]]:
    doc = read_document(path, path.name)
    return chunk_document(clean_document(doc)), doc.text, doc.pages


# --- the proof: every format of every sample chunks like the text file -----------------------------------
@pytest.mark.parametrize("ext", FORMATS)
@pytest.mark.parametrize("stem", SAMPLES)
def test_each_format_chunks_like_the_text_file(stem: str, ext: str) -> None:
    expected, _, _ = chunks_of(REPO / "corpus" / f"{stem}.txt")
    got, extracted, _ = chunks_of(FIXTURES / f"{stem}{ext}")

    assert [c.section for c in got] == [c.section for c in expected] or \
        sorted({c.section for c in got}) == sorted({c.section for c in expected})
    a, b = "".join(c.text for c in expected), "".join(c.text for c in got)
    assert difflib.SequenceMatcher(None, a, b, autojunk=False).ratio() >= 0.98
    for c in got:  # offsets index the extracted text
        assert clean(extracted[c.start:c.end]) == c.text


@pytest.mark.parametrize("ext", [".docx", ".html"])
def test_structured_formats_keep_every_character(ext: str) -> None:
    for stem in SAMPLES:
        expected, _, _ = chunks_of(REPO / "corpus" / f"{stem}.txt")
        got, _, _ = chunks_of(FIXTURES / f"{stem}{ext}")
        assert [(c.section, c.text) for c in got] == [(c.section, c.text) for c in expected]


def test_pdf_pages_point_at_the_page_that_holds_the_text() -> None:
    path = FIXTURES / "003_727ffb95bee0db86.pdf"
    chunks, extracted, pages = chunks_of(path)
    pdf = pdfium.PdfDocument(path)
    raw = ["".join(pdf[i].get_textpage().get_text_range().split()) for i in range(len(pdf))]
    assert len(pages) == len(pdf) >= 5 and list(pages) == sorted(pages) and pages[0] == 0
    for c in chunks:
        page, page_end = page_span(pages, c.start, c.end)
        assert page is not None
        head = "".join(extracted[c.start:c.end].split())[:12]
        assert head in raw[page - 1]
        if page_end is not None:
            assert page_end > page
            tail = "".join(extracted[c.start:c.end].split())[-8:]
            assert tail in raw[page_end - 1]
    assert any(page_span(pages, c.start, c.end)[1] for c in chunks)  # some chunk crosses a page


def test_pdf_drops_running_headers_and_page_numbers_and_joins_broken_lines() -> None:
    path = FIXTURES / "003_727ffb95bee0db86.pdf"
    _, extracted, _ = chunks_of(path)
    assert "教育工作简报" not in extracted  # the running header on every page
    assert "- 2 -" not in extracted and "- 10 -" not in extracted
    pdf = pdfium.PdfDocument(path)
    layout_lines = sum(len(pdf[i].get_textpage().get_text_range().splitlines()) for i in range(len(pdf)))
    text_lines = clean_document(read_document(REPO / "corpus" / path.with_suffix(".txt").name, "t.txt")).clean
    # PDFium reports hundreds of visual lines; joined, they are the text file's paragraphs again
    assert layout_lines > 3 * len(text_lines.split("\n"))
    assert abs(len(clean(extracted).split("\n")) - len(text_lines.split("\n"))) <= 3


def test_pdfium_maps_every_character_of_the_fixtures() -> None:
    """PDFium maps the text of these PDFs except the tone-marked pinyin vowels that Chromium draws from
    a fallback Type 3 font (`領(lǐng)` comes out as `領(l ng)`); the normalizer removes both forms."""
    for stem in SAMPLES:
        pdf = pdfium.PdfDocument(FIXTURES / f"{stem}.pdf")
        text = "".join(pdf[i].get_textpage().get_text_range() for i in range(len(pdf)))
        assert "\ufffd" not in text


def test_page_span() -> None:
    pages = (0, 100, 100, 250)  # page 3 is empty
    assert page_span(pages, 0, 10) == (1, None)
    assert page_span(pages, 90, 100) == (1, None)
    assert page_span(pages, 90, 101) == (1, 3)
    assert page_span(pages, 100, 120) == (3, None)
    assert page_span(pages, 240, 260) == (3, 4)
    assert page_span((), 0, 10) == (None, None)


# --- Word ----------------------------------------------------------------------------------------------
def docx_bytes(build: object) -> bytes:
    document = docx.Document()
    build(document)  # type: ignore[operator]
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def test_docx_tables_in_document_order_and_heading_styles() -> None:
    def build(d: docx.document.Document) -> None:
        d.add_paragraph("县教育工作报告", style="Title")
        d.add_paragraph("本报告由县教育局编写。")
        d.add_heading("概况", 1)
        d.add_paragraph("全县共有学校五十所。")
        table = d.add_table(rows=2, cols=3)
        for r, row in enumerate([["学段", "学校", "学生"], ["小学", "32", "1.2万"]]):
            for c, value in enumerate(row):
                table.cell(r, c).text = value
        d.add_heading("师资", 2)
        d.add_paragraph("教师一千二百人。")

    doc = read_bytes(docx_bytes(build), "r.docx")
    assert doc.text == ("县教育工作报告\n本报告由县教育局编写。\n概况\n全县共有学校五十所。\n"
                        "学段 | 学校 | 学生\n小学 | 32 | 1.2万\n师资\n教师一千二百人。")
    chunks = chunk_document(clean_document(doc))
    sections = {c.text.split("\n")[-1]: c.section for c in chunk_document(clean_document(doc), _small())}
    assert sections["小学 | 32 | 1.2万"] == ("概况",)
    assert sections["教师一千二百人。"] == ("概况", "师资")  # Heading 2 nests under Heading 1
    assert all(clean(doc.text[c.start:c.end]) == c.text for c in chunks)


def test_docx_chinese_heading_style_names_count() -> None:
    def build(d: docx.document.Document) -> None:
        d.styles.add_style("标题 1", 1).base_style = d.styles["Normal"]
        d.add_paragraph("一段引言，说明背景。")
        d.add_paragraph("工作成效显著", style="标题 1")
        d.add_paragraph("正文内容写在这里。")

    doc = read_bytes(docx_bytes(build), "r.docx")
    assert doc.headings == ((len("一段引言，说明背景。\n"), 1),)


def _small() -> object:
    from rag.chunk import ChunkerConfig
    return ChunkerConfig(360, 0)


# --- HTML ----------------------------------------------------------------------------------------------
PAGE = """<!DOCTYPE html><html><head><title>站点</title><style>p {color: red}</style>
<script>var x = "不要这段脚本";</script></head><body>
<nav><a href="/">首页</a> | <a href="/n">新闻</a></nav><div class="breadcrumb">当前位置：首页</div>
<article><h1>县教育局年度报告</h1><p>全县共有学校五十所，<b>教师</b>一千二百人。</p>
<h2>招生</h2><p>今年计划招生，<br>共三千人。</p>
<table><tr><th>学段</th><th>人数</th></tr><tr><td>小学</td><td>2000</td></tr></table>
<p style="display:none">隐藏的文字</p></article>
<footer>版权所有</footer><script>track()</script></body></html>"""


def test_html_keeps_the_article_and_drops_page_furniture() -> None:
    doc = read_bytes(PAGE.encode(), "page.html")
    assert doc.text == ("县教育局年度报告\n全县共有学校五十所，教师一千二百人。\n招生\n今年计划招生，\n共三千人。\n"
                        "学段 | 人数\n小学 | 2000")
    assert doc.headings == ((0, 1), (doc.text.index("招生"), 2))
    chunks = chunk_document(clean_document(doc), _small())  # type: ignore[arg-type]
    assert [c.section for c in chunks] == [("县教育局年度报告",), ("招生",)]


def test_html_page_header_goes_but_the_articles_own_header_stays() -> None:
    page = ("<html><body><header>教育新闻网 首页</header><div class='content'><header><h1>招生公告</h1></header>"
            "<p>今年计划招生三千人。</p><footer>责任编辑：张三</footer></div>"
            "<div class='share-bar'>分享到微信</div><footer>版权所有</footer></body></html>")
    assert read_bytes(page.encode(), "p.html").text == "招生公告\n今年计划招生三千人。"
    article = ("<html><body><article><header><h1>招生公告</h1></header><p>今年计划招生三千人。</p></article>"
               "</body></html>")
    doc = read_bytes(article.encode(), "a.html")
    assert doc.text == "招生公告\n今年计划招生三千人。" and doc.headings == ((0, 1),)


def test_html_in_gbk_is_decoded() -> None:
    doc = read_bytes("<html><body><p>阳山县排名第三。</p></body></html>".encode("gbk"), "a.htm")
    assert doc.text == "阳山县排名第三。"


# --- Markdown ------------------------------------------------------------------------------------------
def test_markdown_headings_and_tables() -> None:
    text = "# 年度报告\n\n引言一句。\n\n## 一、招生\n\n| 学段 | 人数 |\n|---|---:|\n| 小学 | 2000 |\n"
    doc = read_bytes(text.encode(), "r.md")
    assert doc.text == text  # the file itself is the extracted text
    cleaned = clean_document(doc)
    assert "学段 | 人数\n小学 | 2000" in cleaned.clean and "---" not in cleaned.clean
    assert cleaned.clean.startswith("年度报告\n引言一句。\n一、招生")
    chunks = chunk_document(cleaned, _small())  # type: ignore[arg-type]
    assert [c.section for c in chunks][-1] == ("一、招生",)
    assert len(doc.headings) == 2
    assert all(clean(text[c.start:c.end]) == c.text for c in chunks)


# --- detection and bad input -----------------------------------------------------------------------------
PDF_BYTES = (FIXTURES / "000_ae0e48cc884afd96.pdf").read_bytes()


def blank_pdf() -> bytes:
    """A PDF of one page with nothing on it: no text layer, and no picture to read."""
    pdf = pdfium.PdfDocument.new()
    pdf.new_page(595, 842)
    out = io.BytesIO()
    pdf.save(out)
    return out.getvalue()
DOCX_BYTES = (FIXTURES / "000_ae0e48cc884afd96.docx").read_bytes()


@pytest.mark.parametrize(("name", "data", "message"), [
    ("a.txt", PDF_BYTES, "a.txt: the name says text but the content is a PDF file"),
    ("a.md", DOCX_BYTES, "a.md: the name says markdown but the content is a DOCX file"),
    ("a.html", PDF_BYTES, "a.html: the name says html but the content is a PDF file"),
    ("a.pdf", "只是文字。".encode(), "a.pdf: the name says PDF but the content is text"),
    ("a.pdf", DOCX_BYTES, "a.pdf: the name says PDF but the content is a DOCX"),
    ("a.docx", PDF_BYTES, "a.docx: the name says DOCX but the content is a PDF"),
    ("a.docx", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(600),
     "a.docx: the name says DOCX but the content is an old Word/Office .doc file (save it as .docx)"),
    ("a.txt", b"\x89PNG\r\n\x1a\n" + bytes(100), "a.txt: the name says text but the content is a PNG image"),
    ("a.doc", b"x", "a.doc: unsupported file type; accepted: .txt, .md, .markdown, .html, .htm, .docx, .pdf, .png, "
     ".jpg, .jpeg, .tif, .tiff"),
])
def test_a_lying_extension_is_an_error(name: str, data: bytes, message: str) -> None:
    with pytest.raises(DocumentError) as info:
        read_bytes(data, name)
    assert str(info.value) == message


@pytest.mark.parametrize(("data", "message"), [
    (PDF_BYTES[: len(PDF_BYTES) // 2], "x.pdf: truncated or corrupt PDF (no end-of-file marker)"),
    (b"%PDF-1.7\n" + bytes(range(256)) * 4 + b"\n%%EOF\n", "x.pdf: corrupt PDF"),
    ((FIXTURES / "bad" / "encrypted.pdf").read_bytes(),
     "x.pdf: the PDF is encrypted (password-protected); remove the password and upload it again"),
    (blank_pdf(), "x.pdf: no text on any of its 1 pages (blank, or images without recognisable text)"),
])
def test_bad_pdfs_are_rejected_with_the_reason(data: bytes, message: str) -> None:
    with pytest.raises(DocumentError) as info:
        read_bytes(data, "x.pdf")
    assert str(info.value).startswith(message)


def test_a_pdf_over_the_page_limit_is_rejected() -> None:
    pdf = pdfium.PdfDocument.new()
    for _ in range(5):
        pdf.new_page(595, 842)
    out = io.BytesIO()
    pdf.save(out)
    with pytest.raises(DocumentError, match=r"^big\.pdf: 5 pages; the limit is 4$"):
        read_bytes(out.getvalue(), "big.pdf", Limits(max_pages=4))


def zip_of(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return out.getvalue()


def test_a_docx_zip_bomb_is_rejected_before_it_is_unpacked() -> None:
    bomb = zip_of({"[Content_Types].xml": b"<x/>", "word/document.xml": b" " * 5_000_000})
    assert len(bomb) < 20_000
    with pytest.raises(DocumentError, match=r"^bomb\.docx: unpacks to 5,000,004 bytes; the limit is 1,000,000$"):
        read_bytes(bomb, "bomb.docx", Limits(max_unpacked_bytes=1_000_000))


def test_a_docx_whose_zip_lies_about_its_size_is_still_capped() -> None:
    data = bytearray(zip_of({"word/document.xml": b" " * 3_000_000}))
    # rewrite the declared uncompressed size (local header and central directory) to 100 bytes
    for sig, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = data.find(sig)
        data[at + offset:at + offset + 4] = (100).to_bytes(4, "little")
    with pytest.raises(DocumentError, match=r"^liar\.docx: (unpacks to more than the limit|corrupt)"):
        read_bytes(bytes(data), "liar.docx", Limits(max_unpacked_bytes=1_000_000))


@pytest.mark.parametrize(("data", "message"), [
    (DOCX_BYTES[: len(DOCX_BYTES) // 2], "x.docx: corrupt or truncated Word file"),
    (zip_of({"readme.txt": b"hi"}), "x.docx: a zip file but not a Word document (no word/document.xml)"),
    (zip_of({"word/document.xml": b"<not-closed"}), "x.docx: corrupt Word file"),
])
def test_bad_docx_files_are_rejected_with_the_reason(data: bytes, message: str) -> None:
    with pytest.raises(DocumentError) as info:
        read_bytes(data, "x.docx")
    assert str(info.value).startswith(message)


def test_a_batch_with_bad_files_still_loads_the_good_ones(tmp_path: Path) -> None:
    for name in ["good.pdf", "good.docx", "good.html"]:
        (tmp_path / name).write_bytes((FIXTURES / f"000_ae0e48cc884afd96{Path(name).suffix}").read_bytes())
    (tmp_path / "encrypted.pdf").write_bytes((FIXTURES / "bad" / "encrypted.pdf").read_bytes())
    (tmp_path / "blank.pdf").write_bytes(blank_pdf())
    (tmp_path / "lying.docx").write_bytes(PDF_BYTES)
    (tmp_path / "cut.pdf").write_bytes(PDF_BYTES[:5000])

    documents, skipped = load_documents([tmp_path])

    assert [d.doc_id for d in documents] == ["good.docx", "good.html", "good.pdf"]
    assert {s.doc_id: s.reason.split(": ", 1)[1] for s in skipped} == {
        "cut.pdf": "truncated or corrupt PDF (no end-of-file marker)",
        "encrypted.pdf": "the PDF is encrypted (password-protected); remove the password and upload it again",
        "lying.docx": "the name says DOCX but the content is a PDF",
        "blank.pdf": "no text on any of its 1 pages (blank, or images without recognisable text)",
    }
