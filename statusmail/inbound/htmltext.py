"""Turn an HTML-only mail body into plain text, quotes and signatures cut by DOM.

Mail clients mark what they quote: Gmail wraps it in ``.gmail_quote``, Outlook
starts it at ``#divRplyFwdMsg`` or a ``border-top`` reply-header block, Apple
Mail and Thunderbird use ``blockquote type="cite"``, Yahoo ``.yahoo_quoted``.
Cutting those elements is more reliable than guessing from the rendered text,
so we do it first; what remains is rendered with html-text (which keeps the
paragraph structure) and the plain-text trimmer runs afterwards as a safety net.
A ``blockquote`` with nothing after it is a quote at the end; one that stays
(an inline answer) is rendered with ``> `` prefixes so the trimmer sees it as
quoted. Scripts, styles and the head never reach the text.
"""

from __future__ import annotations

import re

import html_text
from lxml import etree
from lxml import html as lxml_html

from statusmail.inbound.quote_patterns import header_label

MAX_HTML_CHARS = 1_000_000

_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]{0,200}\?>")
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_DROPPED_TAGS = ("script", "style", "head", "title", "noscript", "template", "iframe",
                 "object", "embed", "svg", "math")

# Containers that hold a quote or signature and nothing of the new text.
_QUOTE_CLASSES = ("gmail_quote", "gmail_quote_container", "gmail_extra", "gmail_signature",
                  "yahoo_quoted", "moz-cite-prefix", "moz-signature", "protonmail_quote")
# Elements after which everything is the quoted original (Outlook, Hotmail).
_REPLY_START_IDS = ("divRplyFwdMsg", "appendonsend", "stopSpelling")


def html_to_text(html: str, *, cut_quotes: bool = True) -> str:
    """Plain text of ``html``; with ``cut_quotes`` the quoted history is removed."""
    root = parse_html(html)
    if root is None:
        return ""
    drop_invisible(root)
    if cut_quotes:
        cut_quote_containers(root)
        cut_from_reply_start(root)
        cut_trailing_blockquotes(root)
    mark_inline_blockquotes(root)
    try:
        return html_text.etree_to_text(root).strip()
    except (ValueError, TypeError, RecursionError):
        return root.text_content().strip()


def parse_html(html: str) -> lxml_html.HtmlElement | None:
    """Parse leniently; ``None`` when there is no document to speak of."""
    html = _XML_DECLARATION.sub("", html[:MAX_HTML_CHARS], count=1)
    html = _CONTROL_CHARS.sub("", html)
    if not html.strip():
        return None
    try:
        return lxml_html.document_fromstring(html)
    except (etree.ParserError, ValueError, etree.XMLSyntaxError):
        return None


def drop_invisible(root: lxml_html.HtmlElement) -> None:
    """Remove scripts, styles, the head and comments: never part of the text."""
    for el in list(root.iter(etree.Comment, etree.ProcessingInstruction)):
        _drop(el)
    for el in list(root.iter(*_DROPPED_TAGS)):
        _drop(el)


def cut_quote_containers(root: lxml_html.HtmlElement) -> None:
    """Drop the elements clients use to wrap quotes and signatures."""
    doomed = []
    for el in root.iter(etree.Element):
        classes = (el.get("class") or "").split()
        if any(name in classes for name in _QUOTE_CLASSES):
            doomed.append(el)
        elif el.tag == "blockquote" and (el.get("type") or "").lower() == "cite":
            doomed.append(el)
    for el in doomed:
        if el.getparent() is not None:
            _drop(el)


def cut_from_reply_start(root: lxml_html.HtmlElement) -> None:
    """Drop Outlook's reply header and everything after it."""
    for el in root.iter(etree.Element):
        el_id = el.get("id") or ""
        if any(marker in el_id for marker in _REPLY_START_IDS) or _is_reply_header_block(el):
            remove_from(el)
            return


def _is_reply_header_block(el: lxml_html.HtmlElement) -> bool:
    """Outlook's ``border-top:solid #E1E1E1`` box that holds "From: … Sent: …"."""
    style = (el.get("style") or "").replace(" ", "").lower()
    if el.tag not in ("div", "p") or "border-top" not in style or "solid" not in style:
        return False
    first_line = el.text_content().strip().split("\n", 1)[0]
    return header_label(first_line) is not None


def cut_trailing_blockquotes(root: lxml_html.HtmlElement) -> None:
    """A blockquote with no text after it is the quoted original."""
    for el in list(root.iter("blockquote")):
        if el.getparent() is not None and not _text_after(el).strip():
            _drop(el)


def mark_inline_blockquotes(root: lxml_html.HtmlElement) -> None:
    """Render what stays quoted as ``> `` lines, so the text trimmer knows."""
    for el in list(root.iter("blockquote")):
        if el.getparent() is None or any(a.tag == "blockquote" for a in el.iterancestors()):
            continue
        inner = html_text.etree_to_text(el)
        replacement = lxml_html.Element("p")
        previous = None
        for line in inner.splitlines() or [""]:
            if previous is None:
                replacement.text = "> " + line
            else:
                previous.tail = "> " + line
            previous = etree.SubElement(replacement, "br")
        replacement.tail = el.tail
        el.getparent().replace(el, replacement)


def remove_from(el: lxml_html.HtmlElement) -> None:
    """Remove ``el`` and everything that follows it in document order."""
    node = el
    while node is not None and node.tag != "body":
        parent = node.getparent()
        if parent is None:
            break
        for sibling in list(node.itersiblings()):
            parent.remove(sibling)
        node.tail = None
        node = parent
    if el.getparent() is not None:
        el.getparent().remove(el)


def _text_after(el: lxml_html.HtmlElement) -> str:
    """The text that follows ``el`` in document order, up to the body."""
    parts = [el.tail or ""]
    node = el
    while node is not None and node.tag not in ("body", "html"):
        for sibling in node.itersiblings():
            parts.append(sibling.text_content() if isinstance(sibling.tag, str) else "")
            parts.append(sibling.tail or "")
        parts.append(node.tail or "" if node is not el else "")
        node = node.getparent()
    return "".join(parts)


def _drop(el: etree._Element) -> None:
    """Remove an element but keep the text that follows it."""
    parent = el.getparent()
    if parent is None:
        return
    tail = el.tail
    previous = el.getprevious()
    parent.remove(el)
    if tail:
        if previous is not None:
            previous.tail = (previous.tail or "") + tail
        else:
            parent.text = (parent.text or "") + tail
