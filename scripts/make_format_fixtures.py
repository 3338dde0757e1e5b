"""Write PDF, Word and HTML versions of the sample documents to ``tests/fixtures/formats/``.

Each ``corpus/*.txt`` becomes a web page (``.html``: the article among navigation, scripts, a share bar and
a footer), a Word file (``.docx``, python-docx, headings in Word heading styles) and a PDF (``.pdf``: the
article printed by headless Chromium with a running header and page numbers). Lines the chunker reads as
headings become ``<h1>``…``<h4>`` / ``Heading 1…4``; every other line is a paragraph, kept as written
(scraped pinyin and junk lines included), so each format must yield the same chunks as the text file.

It also writes the bad inputs that cannot be made at test time under ``bad/``: a password-protected PDF
(``qpdf --encrypt``) and a scanned PDF (a picture of a page, no text layer).

    python scripts/make_format_fixtures.py   # needs /usr/bin/chromium, fonts-wqy-microhei and qpdf
"""

from __future__ import annotations

import argparse
import datetime
import html
import subprocess
import tempfile
from pathlib import Path

import docx
from docx.oxml.ns import qn

from rag.chunk import TITLE_LEVEL, heading
from rag.formats import read_document
from rag.normalize import clean, title_lines_of

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "tests" / "fixtures" / "formats"
CHROMIUM = "/usr/bin/chromium"
FONT = "WenQuanYi Micro Hei"
RUNNING_HEADER = "教育工作简报"
FIXED_TIME = datetime.datetime(2024, 1, 1)
_TAG_OF_LEVEL = {1: 2, 2: 2, 4: 2, 5: 3, 6: 3, 7: 4, 8: 4}

Block = tuple[int, str]  # (heading level 1–4, or 0 for a paragraph; the line as written)


def blocks(text: str) -> list[Block]:
    """The non-blank lines of a text file, each with the heading level its markup gets."""
    titles = title_lines_of(clean(text))
    out: list[Block] = []
    previous_title = False
    for raw in text.split("\n"):
        line = clean(raw)
        if not line:
            continue
        found = heading(line, frozenset(titles))
        if line in titles:
            level = 1 if not out else 2
        elif found is None:
            level = 0
        elif found[0] == TITLE_LEVEL:
            level = 4 if previous_title else 3
        else:
            level = _TAG_OF_LEVEL[int(found[0])]
        previous_title = found is not None and found[0] == TITLE_LEVEL
        out.append((level, raw.strip()))
    return out


def article(items: list[Block]) -> str:
    return "\n".join(f"<h{level}>{html.escape(text)}</h{level}>" if level else f"<p>{html.escape(text)}</p>"
                     for level, text in items)


def web_page(title: str, items: list[Block]) -> str:
    """A page as a news site serves it: the article among navigation and other page furniture."""
    return f"""<!DOCTYPE html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>{html.escape(title)} - 教育新闻网</title>
<style>body {{ font-family: "{FONT}", sans-serif; }} .share {{ color: #888; }}</style>
<script>window.dataLayer = [{{"page": "article"}}]; function share() {{ return "分享"; }}</script>
</head><body>
<header class="site-header"><a href="/">教育新闻网</a></header>
<nav class="nav"><a href="/">首页</a> | <a href="/news">教育新闻</a> | <a href="/notice">通知公告</a></nav>
<div class="breadcrumb">当前位置：首页 &gt; 教育新闻</div>
<article>
{article(items)}
</article>
<div class="share">分享到：微信 微博 QQ空间</div>
<aside><h3>相关文章</h3><ul><li><a href="/1">另一篇报道</a></li></ul></aside>
<footer><p>版权所有 © 2023 教育新闻网</p><p>联系我们 | 网站地图</p></footer>
<script>share();</script>
</body></html>
"""


def print_page(items: list[Block]) -> str:
    """The article alone, for print: A4, a running header and a page number on every page. The second
    half is set in the font's other face: Chromium embeds a font whole (megabytes) once it uses more
    than about a thousand of its glyphs, so two faces keep every PDF small."""
    half = len(items) // 2
    body = f'{article(items[:half])}\n<div style="font-family: \'{FONT} Mono\'">{article(items[half:])}</div>'
    return f"""<!DOCTYPE html>
<html lang="zh-CN"><head><meta charset="utf-8">
<style>
@page {{ size: A4; margin: 2.2cm 2cm;
  @top-center {{ content: "{RUNNING_HEADER}"; font: 9pt "{FONT}"; }}
  @bottom-center {{ content: "- " counter(page) " -"; font: 9pt "{FONT}"; }} }}
body {{ font: 11pt/1.6 "{FONT}", sans-serif; margin: 0; }}
p {{ margin: 0 0 0.4em 0; text-indent: 2em; }} h1, h2, h3, h4 {{ font-weight: normal; }}
h1 {{ font-size: 16pt; }} h2, h3, h4 {{ font-size: 12pt; }}
</style></head><body>
{body}
</body></html>
"""


def write_docx(items: list[Block], path: Path) -> None:
    document = docx.Document()
    normal = document.styles["Normal"].element  # East Asian text in a font that has it
    normal.get_or_add_rPr().get_or_add_rFonts().set(qn("w:eastAsia"), FONT)
    for level, text in items:
        if level:
            document.add_heading(text, level)
        else:
            document.add_paragraph(text)
    document.core_properties.created = document.core_properties.modified = FIXED_TIME  # reproducible
    document.save(str(path))


def print_pdf(page: str, path: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "page.html"
        source.write_text(page, encoding="utf-8")
        subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-pdf-header-footer",
                        f"--user-data-dir={tmp}/profile", f"--print-to-pdf={path}", source.as_uri()],
                       check=True, capture_output=True, timeout=120)


def write_bad(out: Path) -> None:
    """A password-protected PDF and a PDF that is only a picture of text."""
    out.mkdir(parents=True, exist_ok=True)
    page = print_page([(1, "加密文件"), (0, "这份文件设置了打开密码，没有密码读不到任何文字。")])
    with tempfile.TemporaryDirectory() as tmp:
        plain = Path(tmp) / "plain.pdf"
        print_pdf(page, plain)
        subprocess.run(["qpdf", "--encrypt", "user-secret", "owner-secret", "256", "--", str(plain),
                        str(out / "encrypted.pdf")], check=True)
        shot = Path(tmp) / "shot.png"
        source = Path(tmp) / "scan.html"
        source.write_text(page, encoding="utf-8")
        subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=600,200",
                        f"--user-data-dir={tmp}/profile", f"--screenshot={shot}", source.as_uri()],
                       check=True, capture_output=True, timeout=120)
        scan = Path(tmp) / "scan-img.html"
        scan.write_text(f'<!DOCTYPE html><html><body style="margin:0"><img src="{shot.as_uri()}"></body></html>',
                        encoding="utf-8")
        print_pdf(scan.read_text("utf-8"), out / "scanned.pdf")
    for path in sorted(out.glob("*.pdf")):
        print(f"bad/{path.name}: {path.stat().st_size:,} B")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path, default=REPO / "corpus")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for source in sorted(args.corpus.glob("*.txt")):
        text = read_document(source, source.name).text
        items = blocks(text)
        stem = args.out / source.stem
        stem.with_suffix(".html").write_text(web_page(clean(items[0][1]), items), encoding="utf-8")
        write_docx(items, stem.with_suffix(".docx"))
        print_pdf(print_page(items), stem.with_suffix(".pdf"))
        sizes = ", ".join(f"{p.suffix} {p.stat().st_size:,} B" for p in sorted(args.out.glob(f"{source.stem}.*")))
        print(f"{source.stem}: {len(items)} blocks; {sizes}")
    write_bad(args.out / "bad")


if __name__ == "__main__":
    main()
