"""HTML mail bodies to plain text, with the quoted history cut out first.

BeautifulSoup with the standard library's `html.parser` (no C parser to build; it copes with the
broken HTML mail clients produce). Nothing executable survives: script, style, templates, embedded
objects, SVG and MathML are dropped with their content, comments and processing instructions are
dropped, and the result is text only (links keep their address in brackets when it differs from
the text; `javascript:` and `data:` links keep only their text).

Quoted history is recognised in the HTML, where clients mark it, before it becomes text:
Gmail's `div.gmail_quote`, Apple Mail and Thunderbird's `blockquote type="cite"`, Thunderbird's
`div.moz-cite-prefix`, Outlook on the web's `#divRplyFwdMsg` / `#appendonsend` (everything after
it belongs to the quoted mail) and Yahoo's `div.yahoo_quoted`. Outlook for Windows marks nothing;
its "From: ... Sent: ..." block is cut by the text rules in `inbound_mail.quotes`.
"""

from __future__ import annotations

import re

from bs4 import BeautifulSoup, Comment, NavigableString, Tag
from bs4.element import CData, Declaration, Doctype, ProcessingInstruction

# Bigger HTML is cut before parsing: the reply is at the top, and parsing megabytes of markup
# costs seconds of CPU for text that would be truncated anyway.
MAX_HTML_CHARS = 1_000_000

_DROP = (
    "script",
    "style",
    "head",
    "title",
    "noscript",
    "template",
    "iframe",
    "frame",
    "frameset",
    "object",
    "embed",
    "applet",
    "svg",
    "math",
    "canvas",
    "audio",
    "video",
    "select",
    "button",
    "input",
    "textarea",
    "img",
)
_BLOCK = {
    "address",
    "article",
    "aside",
    "blockquote",
    "center",
    "dd",
    "details",
    "div",
    "dl",
    "dt",
    "fieldset",
    "figcaption",
    "figure",
    "footer",
    "form",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "header",
    "hr",
    "li",
    "main",
    "nav",
    "ol",
    "p",
    "pre",
    "section",
    "summary",
    "table",
    "tr",
    "ul",
}
_SAFE_LINK = re.compile(r"^(https?:|mailto:)", re.IGNORECASE)
_SPACES = re.compile(r"[ \t\f\v\u00a0\u200b\u2000-\u200a\u202f\u205f\u3000]+")


def _cut_quotes(soup: BeautifulSoup) -> bool:
    """Remove the quoted history clients mark in HTML; True when something was removed."""
    removed = False
    for selector in (
        "div.gmail_quote",
        "blockquote.gmail_quote",
        'blockquote[type="cite"]',
        "div.moz-cite-prefix",
        "div.yahoo_quoted",
        "div#mail-editor-reference-message-container",
    ):
        for node in soup.select(selector):
            node.decompose()
            removed = True
    for marker_id in ("appendonsend", "divRplyFwdMsg"):
        marker = soup.find(id=marker_id)
        if isinstance(marker, Tag):
            # Outlook on the web puts the quoted mail in the siblings that follow the marker.
            for sibling in list(marker.find_next_siblings()):
                sibling.decompose()
            marker.decompose()
            removed = True
            break
    return removed


_PARAGRAPH = {"p", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol", "pre", "hr"}


class _Writer:
    """Collects text and knows whether it stands at the start of a line."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def text(self, value: str) -> None:
        self.parts.append(value)

    def newlines(self, count: int) -> None:
        tail = "".join(self.parts[-3:])
        have = len(tail) - len(tail.rstrip("\n"))
        if self.parts and have < count:
            self.parts.append("\n" * (count - have))


def _render(node: Tag, out: _Writer) -> None:
    for child in node.children:
        if isinstance(child, Comment | CData | ProcessingInstruction | Declaration | Doctype):
            continue
        if isinstance(child, NavigableString):
            out.text(str(child).replace("\n", " "))
            continue
        if not isinstance(child, Tag):
            continue
        name = child.name.lower()
        if name == "br":
            out.text("\n")
            continue
        block = name in _BLOCK
        if block:
            out.newlines(1)
        if name == "li":
            out.text("- ")
        if name in ("td", "th"):
            out.text(" ")
        if name == "pre":
            out.text(child.get_text())
        else:
            _render(child, out)
        if name == "a":
            href = str(child.get("href") or "").strip()
            text = child.get_text(" ", strip=True)
            if href and _SAFE_LINK.match(href) and href not in text:
                shown = href[7:] if href.lower().startswith("mailto:") else href
                if shown != text:
                    out.text(f" ({shown})")
        if block:
            out.newlines(2 if name in _PARAGRAPH else 1)


def tidy_text(text: str, *, keep_indent: bool = False) -> str:
    """No trailing blanks, at most one empty line in a row; runs of spaces become one space
    unless `keep_indent` (plain text, where indentation can carry meaning, e.g. a stack trace)."""
    raw = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if keep_indent:
        lines = [line.rstrip() for line in raw]
    else:
        lines = [_SPACES.sub(" ", line).strip() for line in raw]
    tidy: list[str] = []
    for line in lines:
        if not line and (not tidy or not tidy[-1]):
            continue
        tidy.append(line)
    while tidy and not tidy[-1]:
        tidy.pop()
    return "\n".join(tidy)


def html_to_text(html: str, *, cut_quotes: bool = True) -> tuple[str, bool]:
    """The text of an HTML body and whether quoted history was removed from it."""
    soup = BeautifulSoup(html[:MAX_HTML_CHARS], "html.parser")
    for name in _DROP:
        for node in soup.find_all(name):
            node.decompose()
    removed = _cut_quotes(soup) if cut_quotes else False
    out = _Writer()
    _render(soup, out)
    return tidy_text("".join(out.parts)), removed


__all__ = ["MAX_HTML_CHARS", "html_to_text", "tidy_text"]
