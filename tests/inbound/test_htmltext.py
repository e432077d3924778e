"""html_to_text: HTML-only mail to plain text, quote containers cut by DOM."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from statusmail.inbound.htmltext import html_to_text

from .corpora import corpora_present, corpus_params, new_text_of, normalise

needs_corpora = pytest.mark.skipif(
    not corpora_present(), reason="../shared/corpora is absent (reply corpora not checked out)")


@needs_corpora
@pytest.mark.parametrize("case", corpus_params("talon-html"))
def test_talon_html_reply_keeps_exactly_the_new_text(case):
    assert normalise(new_text_of(case)) == normalise(case.expected)


def test_gmail_quote_container_is_cut():
    html = ('<div dir="ltr">Ship it.</div><div class="gmail_quote">On Mon, Bob wrote:'
            '<blockquote class="gmail_quote">Old</blockquote></div>')
    assert html_to_text(html) == "Ship it."


def test_gmail_signature_is_cut():
    html = '<div>Ship it.</div><div class="gmail_signature">Bob | Ops</div>'
    assert html_to_text(html) == "Ship it."


def test_outlook_reply_header_and_everything_after_it_are_cut():
    html = ('<div><p>Ship it.</p><div id="divRplyFwdMsg"><b>From:</b> Bob</div>'
            '<div>Old message</div></div><p>Old footer</p>')
    assert html_to_text(html) == "Ship it."


def test_outlook_border_top_header_block_is_cut():
    html = ('<div class="WordSection1"><p>Ship it.</p>'
            '<div style="border:none;border-top:solid #E1E1E1 1.0pt"><p><b>From:</b> Bob<br>'
            '<b>Sent:</b> Monday</p></div><p>Old message</p></div>')
    assert html_to_text(html) == "Ship it."


def test_apple_blockquote_cite_is_cut():
    html = '<div>Ship it.</div><blockquote type="cite"><div>Old</div></blockquote>'
    assert html_to_text(html) == "Ship it."


def test_thunderbird_cite_prefix_and_quote_are_cut():
    html = ('Ship it.<br><div class="moz-cite-prefix">On 26.06.2014 14:41, Bob wrote:<br></div>'
            '<blockquote cite="mid:x@y" type="cite">Old</blockquote>')
    assert html_to_text(html) == "Ship it."


def test_yahoo_quoted_container_is_cut():
    html = '<div>Ship it.</div><div class="yahoo_quoted">On Monday Bob wrote: Old</div>'
    assert html_to_text(html) == "Ship it."


def test_trailing_plain_blockquote_is_cut():
    html = '<p>Ship it.</p><p>26.06.2014, Bob:</p><blockquote>Old</blockquote>'
    text = html_to_text(html)
    assert text.startswith("Ship it.") and "Old" not in text


def test_inline_blockquote_is_rendered_as_quoted_lines():
    html = "<blockquote>Question one?</blockquote><p>Answer one.</p>"
    text = html_to_text(html)
    assert "> Question one?" in text
    assert "Answer one." in text


def test_cut_quotes_false_keeps_the_quote():
    html = '<div>Ship it.</div><div class="gmail_quote">Old</div>'
    assert "Old" in html_to_text(html, cut_quotes=False)


def test_script_style_and_head_never_reach_the_text():
    html = ("<html><head><title>T</title><style>p{color:red}</style></head><body>"
            "<script>alert('x')</script><p>Ship it.</p></body></html>")
    assert html_to_text(html) == "Ship it."


def test_paragraphs_stay_apart():
    assert html_to_text("<p>One.</p><p>Two.</p>") == "One.\n\nTwo."


def test_xml_declaration_and_empty_documents_are_handled():
    assert html_to_text('<?xml version="1.0" encoding="UTF-8"?><html><body>Hi</body></html>') == "Hi"
    assert html_to_text("") == ""
    assert html_to_text("   ") == ""


@given(st.text(max_size=2000), st.booleans())
@settings(max_examples=200, deadline=None)
def test_html_to_text_never_raises(html, cut_quotes):
    assert isinstance(html_to_text(html, cut_quotes=cut_quotes), str)


_TAGS = st.sampled_from(["div", "p", "blockquote", "span", "b", "br", "table", "td", "hr", "pre"])
_ATTRS = st.sampled_from(['', ' class="gmail_quote"', ' type="cite"', ' id="divRplyFwdMsg"',
                          ' style="border-top:solid #E1E1E1 1pt"', ' class="moz-cite-prefix"'])


@st.composite
def _documents(draw):
    parts = []
    for _ in range(draw(st.integers(0, 60))):
        tag, attrs = draw(_TAGS), draw(_ATTRS)
        words = draw(st.text(alphabet="abc >:&;\n", max_size=20))
        parts.append(draw(st.sampled_from([f"<{tag}{attrs}>", f"</{tag}>", words])))
    return "".join(parts)


@given(_documents(), st.text(alphabet="xyz", min_size=1, max_size=10))
@settings(max_examples=200, deadline=None)
def test_html_to_text_drops_scripts_and_markup_in_any_structure(doc, secret):
    marker = f"SECRET{secret}"
    text = html_to_text(f"{doc}<script>{marker}</script><style>{marker}</style>{doc}")
    assert marker not in text
    assert "<div" not in text and "<blockquote" not in text
