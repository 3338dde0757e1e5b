"""OCR: the text of a page image, as lines with boxes in reading order, ready for ``layout.assemble``.

RapidOCR (``rapidocr``) runs PaddleOCR's PP-OCRv6 small detection and recognition models on onnxruntime;
the two model files (31 MB) ship inside its wheel and are loaded from there by path, so nothing is
downloaded, ever. The recogniser's dictionary holds 18,708 characters, Simplified and Traditional (黨, 領,
議…) and the tone-marked pinyin vowels. It finds text boxes; this module puts them in reading order (rows
top to bottom; side-by-side text columns one after the other; a table's cells joined row by row like
every other format's tables) and converts them to the layout's ``Line`` in points, so a scanned page is
joined into paragraphs, and loses its running header and page number, exactly like a text-layer page.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import re
import statistics
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from rag.errors import ModelProvisionError
from rag.formats.layout import Line, Page, lead

log = logging.getLogger(__name__)

# The recogniser works on images of at most 2000 px on their long side (it shrinks larger ones first), so
# pages are rendered to about that: 170 dpi for A4, where body text is 25 px high.
MAX_SIDE = 2000
_ROW_OVERLAP = 0.5  # boxes whose vertical extents overlap by this share of the smaller one sit on one row
_JOIN_GAP = 1.5  # boxes on one row closer than this many line heights are one line (the detector split it)
_SPANNING = 0.6  # a line wider than this share of the text block crosses any column gutter
_GUTTER_SHARE = 0.1  # a column gutter is crossed by at most this share of the narrower lines
_ALIGNED = 0.6  # in a text column, at least this share of the lines end at its right edge (justified)
# A pinyin syllable in brackets of either width right after an ideograph, as OCR reads it (tone-marked vowels
# lost or kept, an l read as I or 1, a gap where the fallback font's vowel was: 領(I ng), 領(1ng)); a page with
# at least _ANNOTATED_PAGE of them is annotated throughout.
_ANNOTATION = re.compile(r"(?<=[\u3400-\u9fff])[(（][A-Za-zü1](?: ?[a-zü\u00e0-\u00fc\u0101-\u01dc]){0,5}[)）]")
_ANNOTATED_PAGE = 5


@dataclass(frozen=True)
class TextBox:
    """A run of text the recogniser found, with its box in image pixels (y grows downwards)."""

    text: str
    left: float
    top: float
    right: float
    bottom: float

    @property
    def height(self) -> float:
        return self.bottom - self.top


class Recogniser(Protocol):
    """Finds and reads the text of a grayscale page image (2-D ``uint8`` array)."""

    def __call__(self, image: np.ndarray) -> list[TextBox]: ...


# The models of the ``rapidocr`` wheel that the recogniser loads, by path: detection and recognition. The
# recognition model carries its dictionary in its metadata. Named here, no file is ever fetched: RapidOCR
# downloads a model only when it is given none.
MODEL_FILES = {"det": "PP-OCRv6_det_small.onnx", "rec": "PP-OCRv6_rec_small.onnx"}


def model_paths() -> dict[str, Path]:
    """The model files inside the installed ``rapidocr`` package; a clear error when one is missing."""
    import rapidocr

    folder = Path(rapidocr.__file__).parent / "models"
    paths = {task: folder / name for task, name in MODEL_FILES.items()}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise ModelProvisionError(f"the OCR models are missing ({', '.join(missing)}): reinstall with `make install`")
    return paths


class RapidRecogniser:
    """RapidOCR with the models of its wheel. One page at a time: the engine keeps per-call state."""

    def __init__(self) -> None:
        from rapidocr import RapidOCR  # loaded on the first scanned page, not at import

        started = time.perf_counter()
        paths = model_paths()
        # No direction classifier: on the fixtures' upright scans it turned 3 of 41 lines of a page upside
        # down, which then read as nothing; a page scanned upside down is rarer than that.
        self._engine = RapidOCR(params={"Global.use_cls": False, "Global.log_level": "warning",
                                        "Det.model_path": str(paths["det"]), "Rec.model_path": str(paths["rec"])})
        self._lock = threading.Lock()
        log.info("ocr: RapidOCR loaded in %.1f s", time.perf_counter() - started)

    def __call__(self, image: np.ndarray) -> list[TextBox]:
        with self._lock:
            result: Any = self._engine(image, use_cls=False)
        # boxes and their texts; with no text found, an empty output (or the detector's alone) without them
        boxes, texts = getattr(result, "boxes", None), getattr(result, "txts", None)
        if boxes is None or texts is None:
            return []
        return [box_of(points, text) for points, text in zip(boxes, texts, strict=True)]


@functools.cache
def recogniser() -> Recogniser:
    """The process's recogniser, loaded once (about a second) when the first page needs it."""
    return RapidRecogniser()


def box_of(points: Any, text: str) -> TextBox:
    """A ``TextBox`` from the recogniser's four corner points."""
    xs = [float(p[0]) for p in points]
    ys = [float(p[1]) for p in points]
    return TextBox(" ".join(text.split()), min(xs), min(ys), max(xs), max(ys))


def read_page(image: np.ndarray, scale: float, recognise: Recogniser) -> Page:
    """One OCR'd page; ``scale`` is pixels per point, so its lines are measured in points like a PDF's."""
    started = time.perf_counter()
    boxes = without_annotations([b for b in recognise(image) if b.text])
    lines = [line_of(b, scale, image.shape[0]) for b in reading_order(boxes)]
    log.debug("ocr: page of %dx%d px, %d lines in %.1f s", image.shape[1], image.shape[0], len(lines),
              time.perf_counter() - started)
    return Page(tuple(lines), image.shape[0] / scale, chars=sum(len(x.text.replace(" ", "")) for x in lines),
                ocr=True)


def without_annotations(boxes: list[TextBox]) -> list[TextBox]:
    """The boxes without pinyin annotations, when the page carries them (``領(lǐng)導(dǎo)``, as scraped
    pages print their ruby): at least ``_ANNOTATED_PAGE`` parenthesised syllables right after ideographs. The
    vowels come from a fallback font, and the recogniser reads ``領(I ng)導(dǎo)`` or ``領（1ng）``, which no text
    rule can tell from a word in brackets; the page can, and its text is what the reader returns."""
    if sum(len(_ANNOTATION.findall(b.text)) for b in boxes) < _ANNOTATED_PAGE:
        return boxes
    stripped = [dataclasses.replace(b, text=_ANNOTATION.sub("", b.text)) for b in boxes]
    return [b for b in stripped if b.text]


# --- reading order ------------------------------------------------------------------------------------------
def reading_order(boxes: Sequence[TextBox]) -> list[TextBox]:
    """Lines top to bottom. Between lines that span the text block (a heading over two columns), lines that
    stand side by side in columns (justified, with a gutter between) are read a column at a time; rows of
    cells that are not text columns (a table) become one line per row, cells joined by `` | ``."""
    lines = _join_rows(boxes)
    if not lines:
        return []
    width = max(b.right for b in lines) - min(b.left for b in lines)
    gutters = _gutters([b for b in lines if b.right - b.left <= _SPANNING * width])
    out: list[TextBox] = []
    block: list[TextBox] = []
    for line in sorted(lines, key=lambda b: (b.top, b.left)):
        if line.right - line.left > _SPANNING * width or any(line.left < g0 and line.right > g1 for g0, g1 in gutters):
            out += _block_order(block)
            block = []
            out.append(line)
        else:
            block.append(line)
    return out + _block_order(block)


def _gutters(narrow: list[TextBox]) -> list[tuple[float, float]]:
    """Vertical strips that (almost) no line narrower than the text block crosses, with text on both sides:
    the gaps between columns. A narrow line that crosses one anyway (a centred heading) spans the columns."""
    if len(narrow) < 4:
        return []
    left, step = min(b.left for b in narrow), max(statistics.median(b.height for b in narrow) / 2, 1.0)
    cover = [0] * (int((max(b.right for b in narrow) - left) / step) + 1)
    for b in narrow:
        for i in range(int((b.left - left) / step), int((b.right - left) / step) + 1):
            cover[i] += 1
    open_ = [c <= _GUTTER_SHARE * len(narrow) for c in cover]
    gutters: list[tuple[float, float]] = []
    start = None
    for i, free in enumerate([*open_, False]):
        if free and start is None:
            start = i
        elif not free and start is not None:
            if start > 0 and i < len(cover):  # inside the text, not its margins
                gutters.append((left + (start + 1) * step, left + i * step))
            start = None
    return gutters


def _join_rows(boxes: Sequence[TextBox]) -> list[TextBox]:
    """Boxes on one row with a small gap between them (the detector split a line at a wide space) joined."""
    out: list[TextBox] = []
    for box in sorted(boxes, key=lambda b: (b.left, b.top)):
        near = next((i for i, o in enumerate(out) if _same_row(o, box)
                     and 0 <= box.left - o.right < _JOIN_GAP * min(o.height, box.height)), None)
        if near is None:
            out.append(box)
        else:
            o = out[near]
            out[near] = TextBox(o.text + _space(o.text, box.text) + box.text, o.left, min(o.top, box.top),
                                box.right, max(o.bottom, box.bottom))
    return out


def _same_row(a: TextBox, b: TextBox) -> bool:
    overlap = min(a.bottom, b.bottom) - max(a.top, b.top)
    return overlap > _ROW_OVERLAP * min(a.height, b.height)


def _space(left: str, right: str) -> str:
    return " " if left[-1:].isascii() and left[-1:].isalnum() and right[:1].isascii() and right[:1].isalnum() \
        else ""


def _block_order(block: list[TextBox]) -> list[TextBox]:
    groups = _x_groups(block)
    if len(groups) < 2 or not _side_by_side(groups):
        return sorted(block, key=lambda b: (b.top, b.left))
    if all(_text_column(g) for g in groups):
        return [line for g in groups for line in sorted(g, key=lambda b: b.top)]
    return _table_rows(block)


def _x_groups(block: list[TextBox]) -> list[list[TextBox]]:
    """Lines grouped by horizontal overlap, left to right: each group is a column of the block."""
    groups: list[list[TextBox]] = []
    right = float("-inf")
    for line in sorted(block, key=lambda b: b.left):
        if groups and line.left < right:
            groups[-1].append(line)
        else:
            groups.append([line])
        right = max(right, line.right) if len(groups[-1]) > 1 else line.right
    return groups


def _side_by_side(groups: list[list[TextBox]]) -> bool:
    """Every group has two lines or more and shares rows with the next group."""
    spans = [(min(b.top for b in g), max(b.bottom for b in g)) for g in groups]
    return all(len(g) > 1 for g in groups) and all(
        min(a[1], b[1]) > max(a[0], b[0]) for a, b in zip(spans, spans[1:], strict=False))


def _text_column(group: list[TextBox]) -> bool:
    """Most of the column's lines end at its right edge: justified running text, not table cells."""
    edge = max(b.right for b in group)
    height = statistics.median(b.height for b in group)
    return sum(edge - b.right < height for b in group) >= _ALIGNED * len(group)


def _table_rows(block: list[TextBox]) -> list[TextBox]:
    rows: list[list[TextBox]] = []
    for box in sorted(block, key=lambda b: (b.top, b.left)):
        if rows and _same_row(rows[-1][0], box):
            rows[-1].append(box)
        else:
            rows.append([box])
    return [TextBox(" | ".join(b.text for b in sorted(row, key=lambda b: b.left)), min(b.left for b in row),
                    min(b.top for b in row), max(b.right for b in row), max(b.bottom for b in row)) for row in rows]


# --- to the layout's lines ----------------------------------------------------------------------------------
def _units(char: str) -> float:
    """Advance of a character in full-width units: CJK and full-width marks 1, Latin and digits about half."""
    return 1.0 if ord(char) > 0x2000 else 0.55


def line_of(box: TextBox, scale: float, image_height: float) -> Line:
    """The layout's ``Line`` (points, y upwards) of a box, its characters' advances spread evenly over it."""
    left, right = box.left / scale, box.right / scale
    top, bottom = (image_height - box.top) / scale, (image_height - box.bottom) / scale
    units = sum(_units(c) for c in box.text) or 1.0
    width = (right - left) / units
    chars: list[tuple[str, tuple[float, float, float, float]]] = []
    x = left
    for c in box.text:
        advance = _units(c) * width
        chars.append((c, (x, bottom, x + advance, top)))
        x += advance
    return Line(box.text, left, right, top, bottom, width, *lead(chars))

