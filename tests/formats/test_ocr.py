"""Scanned PDFs and images (rag/formats/ocr.py, image.py, pdf.py): reading order from boxes, mixed PDFs,
page records, titles, and a clear error (or an empty page noted as such) for every kind of bad input.

The scans are made at test time from the PDF fixtures (``tests/fixtures/scans.py``). Tests that run the
recogniser on whole pages take seconds a page and are marked ``slow``; the layout tests use boxes."""

from __future__ import annotations

import difflib
import io
import struct
import unicodedata
import zlib
from pathlib import Path

import numpy as np
import pypdfium2 as pdfium
import pytest

from rag.errors import DocumentError
from rag.formats import Limits, needs_ocr, ocr, read_bytes
from rag.formats.ocr import TextBox, reading_order
from rag.normalize import clean_document, to_simplified
from tests.fixtures.scans import blank_image, fixture_pdf, multipage_tiff, picture_file, scan_pdf

DOC0 = "000_ae0e48cc884afd96"
DOC4 = "004_c849ceb370c41d84"
# 004's two title lines as read from a picture: the wide space inside the first line is read or not, depending
# on the picture (the scan's JPEG or a PNG); the two lines are joined by a space either way.
TITLES_READ = {"实干担当 笃行致远 奋力谱写辽源教育高质量发展新篇章",
               "实干担当笃行致远 奋力谱写辽源教育高质量发展新篇章"}


def box(text: str, left: float, top: float, right: float, height: float = 20) -> TextBox:
    return TextBox(text, left, top, right, top + height)


# --- reading order ---------------------------------------------------------------------------------------
def test_two_columns_under_a_spanning_heading_read_a_column_at_a_time() -> None:
    boxes = [box("左一行文字左一行文字", 100, 100, 480), box("右一行文字右一行文字", 520, 100, 900),
             box("左二行文字左二行文字", 100, 130, 480), box("右二行文字右二行文字", 520, 130, 900),
             box("左三行", 100, 160, 300), box("右三行文字右三行文字", 520, 160, 900),
             box("横跨两栏的标题横跨两栏的标题横跨两栏的标题", 100, 40, 900, 30),
             box("横跨两栏的结尾横跨两栏的结尾横跨两栏的结尾", 100, 220, 900)]
    assert [b.text[:3] for b in reading_order(boxes)] == ["横跨两", "左一行", "左二行", "左三行", "右一行", "右二行",
                                                         "右三行", "横跨两"]


def test_a_centred_heading_between_columns_does_not_merge_them() -> None:
    left = [box(f"左{i}行文字左{i}行文字", 100, 100 + 30 * i, 480) for i in range(3)]
    right = [box(f"右{i}行文字右{i}行文字", 520, 100 + 30 * i, 900) for i in range(3)]
    heading = box("居中小标题", 430, 200, 570)
    lower = [box(f"下左{i}行文字下左{i}文字", 100, 240 + 30 * i, 480) for i in range(2)] + \
        [box(f"下右{i}行文字下右{i}文字", 520, 240 + 30 * i, 900) for i in range(2)]
    assert [b.text[:3] for b in reading_order(left + right + [heading] + lower)] == \
        ["左0行", "左1行", "左2行", "右0行", "右1行", "右2行", "居中小", "下左0", "下左1", "下右0", "下右1"]


def test_table_cells_are_joined_row_by_row() -> None:
    boxes = [box("学段", 100, 100, 160), box("人数", 400, 100, 460), box("学校数", 700, 100, 790),
             box("小学", 100, 130, 160), box("2000", 400, 130, 450), box("12", 700, 130, 730),
             box("初中", 100, 160, 160), box("1200", 400, 160, 450), box("5", 700, 160, 715)]
    assert [b.text for b in reading_order(boxes)] == ["学段 | 人数 | 学校数", "小学 | 2000 | 12", "初中 | 1200 | 5"]


def test_a_line_the_detector_split_at_a_wide_space_is_one_line() -> None:
    boxes = [box("会议强调", 100, 100, 180), box("要坚定信心。", 200, 101, 320), box("第二行。", 100, 130, 180)]
    assert [b.text for b in reading_order(boxes)] == ["会议强调要坚定信心。", "第二行。"]


def test_lines_of_one_column_keep_their_order_top_to_bottom() -> None:
    boxes = [box("甲" * 30, 100, 100, 700), box("乙" * 5, 100, 130, 200), box("丙" * 30, 140, 160, 700),
             box("丁" * 30, 100, 190, 700)]
    assert [b.text[0] for b in reading_order(boxes)] == ["甲", "乙", "丙", "丁"]


def test_pinyin_annotations_are_dropped_from_a_page_that_carries_them() -> None:
    annotated = [TextBox("近日召開領（lng）導（do)小組會議，深入學（xue）習（xi）貫徹(Ing）導（jié）精神", 0, 0, 1, 1),
                 TextBox("应用程序（app）", 0, 2, 1, 3)]
    assert [b.text for b in ocr.without_annotations(annotated)] == \
        ["近日召開領導小組會議，深入學習貫徹導精神", "应用程序"]  # the whole page is annotated
    plain = [TextBox("应用程序（app）和小程序（mini）", 0, 0, 1, 1)]  # a few words in brackets: left alone
    assert ocr.without_annotations(plain) == plain


# --- bad input: refused before the recogniser runs ----------------------------------------------------------
@pytest.fixture
def no_recogniser(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse() -> ocr.Recogniser:
        raise AssertionError("the recogniser must not run")
    monkeypatch.setattr(ocr, "recogniser", refuse)


def png_header(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` × ``height`` pixels: a header, then a few bytes of picture."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


@pytest.mark.parametrize(("name", "data", "message"), [
    ("bomb.png", png_header(10_000, 10_000), "bomb.png: the image is 10,000 × 10,000 pixels; the limit is "
     "50,000,000 pixels"),
    ("huge.png", png_header(100_000, 100_000), "huge.png: the image is larger than the limit of 50,000,000 pixels"),
    ("cut.png", picture_file(fixture_pdf(DOC0))[:3000], "cut.png: corrupt or unreadable image"),
    ("noise.jpg", b"\xff\xd8\xff" + bytes(200), "noise.jpg: corrupt or unreadable image"),
    ("photo.png", b"GIF89a" + bytes(100), "photo.png: the name says an image but the content is a GIF image"),
    ("scan.pdf", picture_file(fixture_pdf(DOC0)), "scan.pdf: the name says PDF but the content is a PNG image"),
    ("note.txt", picture_file(fixture_pdf(DOC0), fmt="JPEG"), "note.txt: the name says text but the content is a "
     "JPEG image"),
])
def test_bad_images_are_refused_with_the_reason(no_recogniser: None, name: str, data: bytes, message: str) -> None:
    with pytest.raises(DocumentError) as caught:
        read_bytes(data, name)
    assert str(caught.value).startswith(message)


def test_more_scanned_pages_than_the_limit_are_refused_before_any_is_read(no_recogniser: None) -> None:
    scan = scan_pdf(fixture_pdf("001_079ce6fb03cbab58"))  # 3 pages
    with pytest.raises(DocumentError, match=r"^s\.pdf: 3 pages without a text layer need OCR; the limit is 2 "
                                            r"\(RAG_MAX_OCR_PAGES\)$"):
        read_bytes(scan, "s.pdf", Limits(max_ocr_pages=2))
    with pytest.raises(DocumentError, match="3 pages without a text layer need OCR; the limit is 0"):
        read_bytes(multipage_tiff(fixture_pdf("001_079ce6fb03cbab58"), dpi=30), "s.tif", Limits(max_ocr_pages=0))


def test_needs_ocr_says_which_uploads_are_read_in_the_job() -> None:
    assert needs_ocr(blank_image(), "a.png") and needs_ocr(scan_pdf(fixture_pdf(DOC0), [1]), "m.pdf")
    assert not needs_ocr(fixture_pdf(DOC0), "t.pdf") and not needs_ocr(b"%PDF-1.4 broken", "b.pdf")
    assert not needs_ocr("文字".encode(), "a.txt")


# --- bad input the recogniser sees: no text ------------------------------------------------------------------
def test_an_image_without_text_is_refused() -> None:
    with pytest.raises(DocumentError, match=r"^blank\.png: no text recognised in the image$"):
        read_bytes(blank_image(), "blank.png")


def test_a_blank_page_is_an_empty_page_noted_as_such() -> None:
    pdf = pdfium.PdfDocument(fixture_pdf(DOC0))
    pdf.new_page(595, 842)  # page 3: nothing on it
    out = io.BytesIO()
    pdf.save(out)
    with_blank, plain = read_bytes(out.getvalue(), "b.pdf"), read_bytes(fixture_pdf(DOC0), "p.pdf")
    assert with_blank.text == plain.text and with_blank.empty_pages == (3,) and with_blank.ocr_pages == ()
    assert len(with_blank.pages) == 3


# --- what is read (the recogniser on whole pages) ---------------------------------------------------------
def similarity(a: str, b: str) -> float:
    """How alike two texts read: the recogniser writes full-width punctuation (，！（) where the samples have
    half-width (,!(), and no space between ideographs; neither counts."""
    fold = lambda text: "".join(unicodedata.normalize("NFKC", text).split())  # noqa: E731
    return difflib.SequenceMatcher(None, fold(a), fold(b), autojunk=False).ratio()


@pytest.mark.slow
def test_a_mixed_pdf_keeps_its_text_layer_pages_byte_identical() -> None:
    source = fixture_pdf(DOC4)
    mixed = read_bytes(scan_pdf(source, pictured=[1]), "m.pdf")  # page 2 is a picture
    text = read_bytes(source, "t.pdf")
    assert mixed.ocr_pages == (2,) and text.ocr_pages == () and mixed.empty_pages == ()
    assert mixed.text[:mixed.pages[1]] == text.text[:text.pages[1]]  # page 1 as its text layer says
    page2_ocr, page2_text = mixed.text[mixed.pages[1]:], text.text[text.pages[1]:]
    assert similarity(to_simplified(clean_document(mixed).clean[-len(page2_ocr):]),
                      to_simplified(page2_text)) > 0.9


@pytest.mark.slow
def test_an_image_only_pdf_reads_like_its_text_with_pages_and_title() -> None:
    source = fixture_pdf(DOC4)
    scan, text = read_bytes(scan_pdf(source), "s.pdf"), read_bytes(source, "t.pdf")
    assert scan.ocr_pages == (1, 2) and len(scan.pages) == 2
    assert "教育工作简报" not in scan.text and "- 1 -" not in scan.text  # running header, page numbers
    clean_scan, clean_text = clean_document(scan), clean_document(text)
    assert similarity(clean_scan.simplified, clean_text.simplified) > 0.95
    assert clean_text.title == "实干担当 笃行致远 奋力谱写辽源教育高质量发展新篇章"
    assert clean_scan.title in TITLES_READ
    # the page boundary sits where the text layer's does: the first words of page 2 start it
    assert similarity(scan.text[scan.pages[1]:][:20], text.text[text.pages[1]:][:20]) > 0.8


@pytest.mark.slow
def test_image_files_are_pages_png_jpeg_and_multipage_tiff() -> None:
    source = fixture_pdf(DOC4)
    png = read_bytes(picture_file(source, 0, "PNG"), "p.png")
    jpeg = read_bytes(picture_file(source, 0, "JPEG"), "p.jpg")
    tiff = read_bytes(multipage_tiff(source), "p.tiff")
    assert png.pages == jpeg.pages == (0,) and png.ocr_pages == (1,)
    assert similarity(png.text, jpeg.text) > 0.95
    # a single picture's running header cannot be told from a heading; across the TIFF's pages it repeats
    assert png.text.startswith("教育工作简报\n实干担当") and tiff.text.startswith(png.text[7:50])
    assert tiff.ocr_pages == (1, 2) and "教育工作简报" not in tiff.text
    assert clean_document(tiff).title in TITLES_READ


def test_the_recogniser_reads_the_small_scanned_fixture() -> None:
    doc = read_bytes((Path(__file__).parents[1] / "fixtures" / "formats" / "bad" / "scanned.pdf").read_bytes(),
                     "scan.pdf")
    assert doc.text == "加密文件\n这份文件设置了打开密码，没有密码读不到任何文字。" and doc.ocr_pages == (1,)
    assert clean_document(doc).title == "加密文件"


def test_recogniser_boxes_become_layout_lines_in_points() -> None:
    line = ocr.line_of(TextBox("二、工作", 200, 100, 400, 150), scale=2.0, image_height=1000)
    assert (line.left, line.right, line.top, line.bottom) == (100, 200, 450, 425)
    assert line.char_width == 25 and line.lead_wide == 2  # 二 with its closing 、


def test_a_page_the_recogniser_reads_as_nothing_is_empty() -> None:
    page = ocr.read_page(np.full((100, 100), 255, np.uint8), 1.0, lambda image: [])
    assert page.lines == () and page.ocr



def test_annotations_as_the_traditional_recogniser_reads_them_are_dropped_too() -> None:
    page = [TextBox("確保黨的領(I ng)導貫穿到學(xué)校治理全過程", 0, 0, 1, 1),
            TextBox("堅持黨建引領(1 ng)，統一領(1ng)導(dǎo)，加強(qiáng)教育", 0, 2, 1, 3)]
    assert [b.text for b in ocr.without_annotations(page)] == \
        ["確保黨的領導貫穿到學校治理全過程", "堅持黨建引領，統一領導，加強教育"]

# --- Traditional characters (the recogniser's dictionary has them) ----------------------------------------------
DOC1 = "001_079ce6fb03cbab58"  # a Traditional sample


def line_picture(stem: str, line: str, dpi: float = 170) -> np.ndarray:
    """One line of a PDF fixture's first page, scanned (``scan_pdf``), as the OCR path renders it (grayscale,
    about 170 dpi), with a margin of half a line around it; the line is found by its text in the text layer."""
    source, scanned = pdfium.PdfDocument(fixture_pdf(stem)), pdfium.PdfDocument(scan_pdf(fixture_pdf(stem), [0]))
    text, page = source[0].get_textpage(), scanned[0]
    start = text.get_text_range().index(line)
    boxes = [text.get_charbox(i) for i in range(start, start + len(line))]
    left, bottom = min(b[0] for b in boxes), min(b[1] for b in boxes)
    right, top = max(b[2] for b in boxes), max(b[3] for b in boxes)
    margin, scale = (top - bottom) / 2, dpi / 72
    image = np.asarray(page.render(scale=scale, grayscale=True).to_pil().convert("L"))
    height = page.get_height()
    return image[int((height - top - margin) * scale):int((height - bottom + margin) * scale),
                 int((left - margin) * scale):int((right + margin) * scale)]


@pytest.mark.parametrize("line", [
    "黨的二十大報告提出,加快建設教育強國、科技強國、人才強國,把教育擺在科技和人才的第一位,",
    "堅持和加強黨對教育工作的全面領導是堅持社會主義辦學方向的根本要求,把基層黨組織建設成",
])
def test_a_traditional_line_is_read_character_for_character(line: str) -> None:
    boxes = ocr.recogniser()(line_picture(DOC1, line))
    read = "".join(b.text for b in boxes)
    assert unicodedata.normalize("NFKC", read) == line  # 黨, 報, 擺, 領, 辦, 組, 織… not look-alikes or gaps


def test_the_models_come_from_the_rapidocr_wheel_and_nothing_is_downloaded(monkeypatch: pytest.MonkeyPatch) -> None:
    from rapidocr.utils.download_file import DownloadFile

    def refuse(cls: type, *args: object, **kwargs: object) -> None:
        raise AssertionError("RapidOCR tried to download a file")
    monkeypatch.setattr(DownloadFile, "run", classmethod(refuse))
    paths = ocr.model_paths()
    assert {p.name for p in paths.values()} == {"PP-OCRv6_det_small.onnx", "PP-OCRv6_rec_small.onnx"}
    assert all(p.parent.parent.name == "rapidocr" and p.stat().st_size > 5_000_000 for p in paths.values())
    line = "為有效實現黨的領導的堅強戰斗堡壘,以高水平黨建引領教育高質量發展。"
    boxes = ocr.RapidRecogniser()(line_picture(DOC1, line))  # a fresh engine: it loads its models now
    assert unicodedata.normalize("NFKC", "".join(b.text for b in boxes)) == line
