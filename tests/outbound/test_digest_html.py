"""The digest's HTML as a reader sees it, in a real headless Chromium: fluid from a
desktop window down to a 320 px phone, and readable in dark mode.

The screenshots land in /work/wt/notes when that folder exists (the closing note shows
them), else in the test's temporary folder."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from statusmail.outbound.digest import preview
from tests.outbound.test_digest import NOW, add_follow, add_post, add_user, html_of

NOTES = Path("/work/wt/notes")
LONG_URL = "https://wiki.corp.example/engineering/runbooks/billing-export/2026/q4/" + "x" * 60 + "?tab=history&rev=42"


@pytest.fixture
def digest_html(settings, engine) -> str:
    """A digest with every section, a long URL, a long word, a reply and a mention."""
    lea = add_user(engine, "lea@corp.example", "Lea Leader", timezone="Europe/Berlin")
    carol = add_user(engine, "carol@corp.example", "Carol Coder")
    dan = add_user(engine, "dan@corp.example", "Dan Developer")
    add_follow(engine, lea, target=carol)
    add_follow(engine, lea, tag="billing")
    root = add_post(engine, lea, "Planning the Q1 offsite: ideas welcome", NOW - timedelta(hours=20))
    add_post(engine, carol, "Lisbon, and keep Friday free of talks", NOW - timedelta(hours=3), parent=root)
    add_post(engine, carol, f"Billing export is live, runbook: {LONG_URL} #billing", NOW - timedelta(hours=2),
             tags=("billing",))
    add_post(engine, dan, "@lea the Donaudampfschifffahrtsgesellschaftskapitaenskajuetenschluessel test passes",
             NOW - timedelta(hours=1), mentions=(lea,))
    for n in range(3):
        add_post(engine, carol, f"Small update number {n} about the release train", NOW - timedelta(minutes=50 - n))
    message = preview(settings, engine, lea, now=NOW).message
    assert message is not None
    return html_of(message)


def shot(name: str, tmp_path: Path) -> Path:
    return (NOTES if NOTES.is_dir() else tmp_path) / name


def test_the_digest_declares_both_colour_schemes_for_mail_clients(digest_html):
    assert '<meta name="color-scheme" content="light dark">' in digest_html
    assert '<meta name="supported-color-schemes" content="light dark">' in digest_html
    assert "@media (prefers-color-scheme: dark)" in digest_html
    assert 'width="600"' not in digest_html.replace("<!--[if mso]>", "\0").split("\0", 1)[0]  # fluid, not fixed


@pytest.mark.parametrize("width", [320, 375])
def test_on_a_phone_the_digest_never_scrolls_sideways(browser, digest_html, width):
    for dark in (False, True):
        browser.open_html(digest_html, width=width, dark=dark)
        assert browser.viewport_width() == width
        assert browser.scroll_width() <= width, f"{browser.scroll_width()} px wide in a {width} px viewport"
        # The long URL wraps inside the card instead of pushing it wider.
        assert browser.run("return [...document.links].every(a => a.getBoundingClientRect().right <= innerWidth)")


def test_on_a_desktop_the_card_stays_at_reading_width_and_centred(browser, digest_html, tmp_path):
    browser.open_html(digest_html, width=1000)
    left, right = browser.run(
        "const r = document.querySelector('.sm-card').getBoundingClientRect(); return [r.left, r.right]")
    assert right - left == pytest.approx(600, abs=1)
    assert left == pytest.approx(1000 - right, abs=1)
    assert browser.scroll_width() <= 1000
    assert browser.contrast_failures() == []
    browser.screenshot(shot("digest-1000.png", tmp_path))


def test_in_dark_mode_the_digest_is_dark_and_every_text_has_aa_contrast(browser, digest_html, tmp_path):
    browser.open_html(digest_html, width=375, dark=True)
    assert browser.matches("(prefers-color-scheme: dark)")
    background = browser.run(
        "return getComputedStyle(document.querySelector('.sm-card')).backgroundColor")
    red, green, blue = (int(part) for part in background[background.index("(") + 1:-1].split(",")[:3])
    assert max(red, green, blue) < 64, f"the card is {background} in dark mode"
    assert browser.contrast_failures() == []
    browser.screenshot(shot("digest-375.png", tmp_path))


def test_in_light_mode_every_text_has_aa_contrast_too(browser, digest_html):
    browser.open_html(digest_html, width=375)
    assert browser.contrast_failures() == []
