"""Plain text (``.txt``) and its decoding: UTF-8 with or without BOM, or GB18030/GBK."""

from __future__ import annotations

from rag.errors import DocumentError
from rag.formats.base import Extracted, Limits
from rag.normalize import to_simplified

# Share of control characters above which bytes that happen to decode are still called binary.
_MAX_CONTROL_SHARE = 0.01
# GB18030 decodes almost any run of high bytes. In real Chinese text (either script, once Simplified) nearly
# every non-ASCII character is a GB2312 symbol or level-1 (common) character: 0.99+ on the sample documents,
# about 0.35 for random bytes. Below this share, bytes are "not text".
_MIN_COMMON_SHARE = 0.7
_MIN_CHARS_TO_JUDGE = 20


def decode(data: bytes, name: str) -> str:
    """Decode bytes as UTF-8 (BOM optional) or GB18030; raise ``DocumentError`` naming the file."""
    if b"\x00" in data:
        raise DocumentError(f"{name}: looks like a binary file (contains NUL bytes)")
    text = _try_decodings(data, name)
    if not text.strip():
        raise DocumentError(f"{name}: the file is empty")
    controls = sum(1 for c in text if ord(c) < 32 and c not in "\n\r\t\f")
    if controls > _MAX_CONTROL_SHARE * len(text):
        raise DocumentError(f"{name}: looks like a binary file ({controls} control characters)")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _try_decodings(data: bytes, name: str) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    # UTF-8 first: valid UTF-8 Chinese is almost never valid GB18030 by accident, and vice versa.
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        text = data.decode("gb18030")
    except UnicodeDecodeError:
        raise DocumentError(f"{name}: cannot decode as UTF-8 or GB18030/GBK") from None
    if (share := _common_share(text)) < _MIN_COMMON_SHARE:
        raise DocumentError(f"{name}: not text: decoded as GB18030, only {share:.0%} of its characters are "
                            "common Chinese characters or punctuation")
    return text


def _common_share(text: str) -> float:
    """Share of the non-ASCII characters that are GB2312 symbols or level-1 characters (1.0 if too few)."""
    wide = [c for c in to_simplified(text) if ord(c) > 0x7F and not c.isspace()]
    if len(wide) < _MIN_CHARS_TO_JUDGE:
        return 1.0
    return sum(1 for c in wide if _is_common(c)) / len(wide)


def _is_common(char: str) -> bool:
    try:
        code = char.encode("gb2312")
    except UnicodeEncodeError:
        return False
    return len(code) == 2 and (0xA1 <= code[0] <= 0xA9 or 0xB0 <= code[0] <= 0xD7)


def read_text(data: bytes, name: str, limits: Limits) -> Extracted:
    """The decoded file is the extracted text."""
    return Extracted(decode(data, name))
