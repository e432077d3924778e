"""The check-in mails' HTML as a reader sees it, in a real headless Chromium (the
digests' fluid layout, ``templates/layout.html.j2``): no sideways scroll on a 320 px or
375 px phone, AA contrast in light and dark mode, and user text escaped.

The round-up's screenshots land in /work/wt/notes when that folder exists."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from statusmail.outbound.checkin_content import Answer, Reader, TeamAnswers, TeamWeek, Week
from statusmail.outbound.checkins import compose_question, compose_rollup, compose_roundup
from statusmail.outbound.digest_content import Window, WindowPost
from tests.outbound.test_checkins import html_of

NOTES = Path("/work/wt/notes")
NOW = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
LONG_URL = "https://wiki.corp.example/finance/close/2026/q4/" + "y" * 70 + "?tab=history&rev=7"
LONG_WORD = "Rechnungsabschlussvorbereitungsarbeitsgruppenleitung"
READER = Reader(1, "mia@corp.example", "Mia Manager", "leads", "", zoneinfo.ZoneInfo("Europe/Berlin"), True,
                "daily", False)


def answers() -> list[TeamAnswers]:
    friday = datetime(2026, 11, 27, 16, 5, tzinfo=UTC)
    return [TeamAnswers("billing", [
        Answer(10, 2, "Kenji Kato", friday, f"Closed the Q4 books, notes: {LONG_URL}", "Closed the Q4 books", 2, 3),
        Answer(11, 3, "Nora <Nightly> North", friday, f"{LONG_WORD} & the <b>tax</b> rules", LONG_WORD, 0, 0),
    ], skipped=1), TeamAnswers("ops", [Answer(12, 4, "Otto", friday, "Rotated the certificates", "Rotated", 1, 1)])]


@pytest.fixture
def mails(settings) -> dict[str, str]:
    tokens = {n: f"token{n}" + "a" * 20 for n in range(10, 20)}
    roundup = compose_roundup(settings, READER, "2026-11-27", answers(), tokens, NOW)
    window = Window(NOW - timedelta(days=7), NOW)
    posts = [WindowPost(13, 2, 13, None, NOW - timedelta(days=2), f"Build farm is live {LONG_URL}"),
             WindowPost(14, 3, 13, 13, NOW - timedelta(days=1), f"{LONG_WORD}!")]
    for post in posts:
        window.posts[post.id] = post
    window.roots[13] = posts[0]
    window.reply_counts[13] = 1
    week = Week(NOW - timedelta(days=7), NOW, [TeamWeek("platform", posts, more=4)], more_teams=2, more_posts=9,
                authors={2: "Kenji Kato", 3: "Nora <Nightly> North"})
    rollup = compose_rollup(settings, READER, week, tokens, window, NOW)
    question = compose_question(settings, READER, "2026-11-30", "token" + "q" * 27, NOW)
    return {"question": html_of(question), "roundup": html_of(roundup), "rollup": html_of(rollup)}


def test_user_text_is_escaped_and_urls_become_links(mails):
    html = mails["roundup"]
    assert "Nora &lt;Nightly&gt; North" in html and "&amp; the &lt;b&gt;tax&lt;/b&gt; rules" in html
    assert "<b>tax</b>" not in html
    assert f'<a href="{LONG_URL.replace("&", "&amp;")}"' in html
    assert 'href="mailto:status+token10' in html
    assert "Kenji Kato" in mails["rollup"] and "Nora &lt;Nightly&gt; North" in mails["rollup"]  # the bylines
    assert "<Nightly>" not in mails["rollup"]
    assert 'width="600"' not in mails["rollup"].replace("<!--[if mso]>", "\0").split("\0", 1)[0]  # fluid


@pytest.mark.parametrize("width", [320, 375])
@pytest.mark.parametrize("kind", ["question", "roundup", "rollup"])
def test_on_a_phone_no_check_in_mail_scrolls_sideways(browser, mails, kind, width):
    for dark in (False, True):
        browser.open_html(mails[kind], width=width, dark=dark)
        assert browser.scroll_width() <= width, f"{kind}: {browser.scroll_width()} px wide in {width} px"
        assert browser.run("return [...document.links].every(a => a.getBoundingClientRect().right <= innerWidth)")
        assert browser.contrast_failures() == [], (kind, dark)


def test_the_round_up_at_reading_width_on_a_desktop(browser, mails, tmp_path):
    folder = NOTES if NOTES.is_dir() else tmp_path
    browser.open_html(mails["roundup"], width=1000)
    left, right = browser.run(
        "const r = document.querySelector('.sm-card').getBoundingClientRect(); return [r.left, r.right]")
    assert right - left == pytest.approx(600, abs=1)
    browser.screenshot(folder / "checkins-roundup-1000.png")
    browser.open_html(mails["roundup"], width=375, dark=True)
    browser.screenshot(folder / "checkins-roundup-375-dark.png")
