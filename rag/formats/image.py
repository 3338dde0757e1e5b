"""Images (``.png``, ``.jpg``/``.jpeg``, ``.tif``/``.tiff``): each frame is a page, read by OCR.

A photographed or scanned page has no text but what the recogniser reads (``ocr``). The pixel count is
read from each frame's header and bounded before the frame is decoded, so a small file that claims a
huge image (a decompression bomb) is refused without allocating it; a frame is decoded at reduced size
when it is larger than the recogniser reads anyway. A multi-page TIFF is a document of pages; a frame
without recognisable text is an empty page, and a file without any is refused.
"""

from __future__ import annotations

import io
import logging
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from rag.errors import DocumentError
from rag.formats import ocr
from rag.formats.base import Extracted, Limits
from rag.formats.layout import Page, assemble
from rag.formats.pdf import Progress, check_ocr_pages

log = logging.getLogger(__name__)

# 50 megapixels: an A3 page scanned at 300 dpi is 35. Decoding one frame takes up to 4 bytes a pixel.
MAX_PIXELS = 50_000_000
_UNREADABLE = (OSError, SyntaxError, ValueError, EOFError)


def read_image(data: bytes, name: str, limits: Limits, progress: Progress | None = None) -> Extracted:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own, lower, bound decides
            pages = _read_frames(data, name, limits, progress)
    except Image.DecompressionBombError as exc:  # Pillow's own bound, at open: over 179 megapixels
        raise DocumentError(f"{name}: the image is larger than the limit of {MAX_PIXELS:,} pixels ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise DocumentError(f"{name}: corrupt or unreadable image (not a PNG, JPEG or TIFF image Pillow can "
                            "read)") from exc
    except _UNREADABLE as exc:
        raise DocumentError(f"{name}: corrupt or unreadable image ({exc})") from exc
    if not any(page.lines for page in pages):
        what = "the image" if len(pages) == 1 else f"any of its {len(pages)} pages"
        raise DocumentError(f"{name}: no text recognised in {what}")
    return assemble(pages)


def _read_frames(data: bytes, name: str, limits: Limits, progress: Progress | None) -> list[Page]:
    with Image.open(io.BytesIO(data)) as image:  # reads the header only
        frames = getattr(image, "n_frames", 1)
        if frames > limits.max_pages:
            raise DocumentError(f"{name}: {frames:,} pages; the limit is {limits.max_pages:,}")
        check_ocr_pages(frames, limits, name)
        pages: list[Page] = []
        for frame in range(frames):
            image.seek(frame)
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise DocumentError(f"{name}: the image is {width:,} × {height:,} pixels; the limit is "
                                    f"{MAX_PIXELS:,} pixels")
            pixels, scale = grayscale(image)
            pages.append(ocr.read_page(pixels, scale, ocr.recogniser()))
            if progress:
                progress(frame + 1, frames)
    return pages


def grayscale(image: Image.Image) -> tuple[np.ndarray, float]:
    """The current frame upright (EXIF orientation), on white where it is transparent, in grayscale of at
    most ``ocr.MAX_SIDE`` pixels on its long side; and the scale from the file's pixels to these."""
    side = max(image.size)
    if image.format == "JPEG":
        image.draft("L", (image.size[0] * ocr.MAX_SIDE // side, image.size[1] * ocr.MAX_SIDE // side))
    frame = ImageOps.exif_transpose(image)
    if frame.mode in ("RGBA", "LA", "PA") or "transparency" in frame.info:
        rgba = frame.convert("RGBA")
        frame = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
    gray = frame.convert("L")
    if max(gray.size) > ocr.MAX_SIDE:
        gray.thumbnail((ocr.MAX_SIDE, ocr.MAX_SIDE), Image.Resampling.LANCZOS)
    return np.asarray(gray), max(gray.size) / max(side, 1)
