"""Web pages (``.html``/``.htm``): the article text, one line per block, ``<h1>``…``<h6>`` as headings.

Scripts, styles, navigation, headers, footers, forms and hidden elements are dropped; the page junk
lines that scraped text files carry (扫码关注…, 上一篇…) are dropped later by the normalizer, as for text.
"""

from __future__ import annotations

import dataclasses
import re

from bs4 import BeautifulSoup, NavigableString, Tag
from bs4.element import Comment, Doctype, ProcessingInstruction

from rag.formats.base import Extracted, Limits, TextBuilder, table_row
from rag.formats.text import decode

_DROP = frozenset({"script", "style", "noscript", "template", "nav", "aside", "form", "iframe", "svg", "canvas",
                   "button", "select", "textarea", "input", "head", "menu"})
# The page's header and footer go; an article's own <header> (inside <article>/<main>, or holding a heading)
# carries its title and stays.
_PAGE_PARTS = frozenset({"header", "footer"})
_BLOCKS = frozenset({"p", "div", "section", "article", "main", "li", "ul", "ol", "dl", "dt", "dd", "blockquote",
                     "pre", "figure", "figcaption", "address", "center", "body", "html", "caption", "hr"})
_HEADINGS = {f"h{i}": i for i in range(1, 7)}
# "文章标题 - 站点名", "文章标题_站点名", "文章标题 | 站点名": the site's name after the last separator.
_SITE_SUFFIX = re.compile(r"\s*(?:\s[-|–—]\s|_)[^-|–—_]*$")
_JUNK_CLASS = re.compile(r"(^|[-_ ])(nav|navbar|menu|breadcrumbs?|sidebar|share|comments?|advert|ads?)([-_ ]|$)",
                         re.IGNORECASE)


def read_html(data: bytes, name: str, limits: Limits) -> Extracted:
    soup = BeautifulSoup(decode(data, name), "html.parser")
    root = _content_root(soup)
    builder = TextBuilder()
    _Walker(builder).block(root)
    return dataclasses.replace(builder.build(), title=page_title(soup, root))


def page_title(soup: BeautifulSoup, root: Tag) -> str:
    """The article's first ``<h1>``, else the page's ``<title>`` without the site's name after it (a
    ``<title>`` that does not hold the ``<h1>`` is usually the site's name alone)."""
    h1 = root.find("h1")
    if isinstance(h1, Tag) and (heading := " ".join(h1.get_text(" ").split())):
        return heading
    return _SITE_SUFFIX.sub("", " ".join(soup.title.get_text(" ").split())) if soup.title else ""


def _content_root(soup: BeautifulSoup) -> Tag:
    """The article (or main) element when the page has one, else the body."""
    for tag in ("article", "main"):
        found = [t for t in soup.find_all(tag) if isinstance(t, Tag)]
        if found:
            return max(found, key=lambda t: len(t.get_text()))
    body = soup.body
    return body if isinstance(body, Tag) else soup


def _dropped(tag: Tag) -> bool:
    if tag.name in _DROP or tag.get("hidden") is not None or tag.get("aria-hidden") == "true":
        return True
    if tag.name in _PAGE_PARTS and tag.find_parent(["article", "main"]) is None and not tag.find(list(_HEADINGS)):
        return True
    if tag.get("role") in ("navigation", "banner", "contentinfo"):
        return True
    style = str(tag.get("style") or "").replace(" ", "").lower()
    if "display:none" in style or "visibility:hidden" in style:
        return True
    classes = " ".join(tag.get_attribute_list("class") or []) + " " + str(tag.get("id") or "")
    return bool(_JUNK_CLASS.search(classes.strip()))


class _Walker:
    """Emits inline text into the current line and breaks lines around blocks."""

    def __init__(self, builder: TextBuilder) -> None:
        self.out = builder
        self.line: list[str] = []

    def flush(self, heading: int = 0) -> None:
        self.out.line("".join(self.line), heading)
        self.line = []

    def block(self, tag: Tag) -> None:
        for child in tag.children:
            if isinstance(child, (Comment, Doctype, ProcessingInstruction)):
                continue
            if isinstance(child, NavigableString):
                self.line.append(str(child))
            elif isinstance(child, Tag):
                self.element(child)

    def element(self, tag: Tag) -> None:
        if _dropped(tag):
            return
        if tag.name == "br":
            self.flush()
        elif tag.name in _HEADINGS:
            self.flush()
            self.line.append(tag.get_text(" "))
            self.flush(_HEADINGS[tag.name])
        elif tag.name == "table":
            self.flush()
            self.table(tag)
        elif tag.name in _BLOCKS:
            self.flush()
            self.block(tag)
            self.flush()
        else:
            self.block(tag)

    def table(self, table: Tag) -> None:
        for row in table.find_all("tr"):
            if isinstance(row, Tag) and row.find_parent("table") is table:
                cells = [c.get_text(" ") for c in row.find_all(["td", "th"]) if isinstance(c, Tag)
                         and c.find_parent("tr") is row]
                self.out.line(table_row(cells))
