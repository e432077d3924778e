"""The web as a person uses it, in a real headless Chromium (tests/browser.py): sign in
through the mailed link, read the feed, open a thread, search, with the keyboard alone,
on a 375 px phone and a 1000 px window; a hidden post is on no page.

The screenshots land in /work/wt/notes when that folder exists (the closing note shows
them), else in the test's temporary folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from statusmail.cli import main
from tests.conftest import outbox_messages
from tests.web.conftest import LINK

NOTES = Path("/work/wt/notes")
LONG_URL = "https://wiki.corp.example/engineering/runbooks/billing-export/2026/q4/" + "x" * 60 + "?tab=history&rev=42"


@pytest.fixture
def site(web_with, database_url):
    if database_url.startswith("postgresql"):
        pytest.skip("the browser sees the same pages on either database; the HTTP tests cover both")
    web = web_with()
    root = web.post(f"Billing export is live, runbook: {LONG_URL} #billing")
    web.reply(root, "Great, the finance team can stop the spreadsheet")
    web.billing = root
    web.post("Donaudampfschifffahrtsgesellschaftskapitaenskajuetenschluessel test passes #qa",
             sender="Bob Berg <bob@corp.example>")
    secret = web.post("Secret merger plans with Initech")
    result = CliRunner().invoke(main, ["--config", web.settings.source, "posts", "hide", str(secret.id),
                                       "--reason", "confidential"])
    assert result.exit_code == 0, result.output
    web.post("Offsite in Lisbon: ideas welcome #team", sender="Carol Example <carol@corp.example>")
    return web


def keys(browser, *sequence: str) -> None:
    ActionChains(browser.driver).send_keys(*sequence).perform()


def arrive(browser, prefix: str) -> str:
    """Wait for the navigation a key press started (Selenium does not) to reach ``prefix``."""
    WebDriverWait(browser.driver, 30).until(lambda driver: driver.current_url.startswith(prefix)
                                             and driver.execute_script("return document.readyState") == "complete")
    return browser.driver.current_url


def focused(browser) -> str:
    return browser.run("const e = document.activeElement;"
                       "return e.tagName + '#' + e.id + ' ' + (e.getAttribute('href') || '') + ' '"
                       " + (e.textContent || '').trim()")


def tab_to(browser, needle: str, limit: int = 60) -> list[str]:
    """Press Tab until the focused element's href/id/text contains ``needle``."""
    seen = []
    for _ in range(limit):
        keys(browser, Keys.TAB)
        seen.append(focused(browser))
        if needle in seen[-1]:
            return seen
    raise AssertionError(f"{needle!r} never got the focus; focus went: {seen}")


def sign_in_by_keyboard(browser, site, email: str = "carol@corp.example") -> None:
    browser.driver.delete_all_cookies()
    browser.open(f"{site.url}/", width=1000)
    assert browser.driver.current_url == f"{site.url}/login"  # no session: to the sign-in page
    tab_to(browser, "INPUT#email ")
    keys(browser, email, Keys.ENTER)
    WebDriverWait(browser.driver, 30).until(lambda driver: "Check your mail" in driver.page_source)
    assert "Check your mail" in browser.driver.find_element(By.TAG_NAME, "h1").text
    site.flush_outbox()
    [mail] = [m for m in outbox_messages(site.settings) if m["Subject"].startswith("Sign in")]
    token = LINK.search(mail.get_body(("plain",)).get_content()).group(1)
    browser.driver.get(f"{site.url}/login/{token}")  # the reader clicks the link in their mail
    assert browser.driver.current_url == f"{site.url}/"


def test_sign_in_read_open_a_thread_and_search_with_the_keyboard_alone(browser, site):
    sign_in_by_keyboard(browser, site)
    page = browser.driver.page_source
    assert "Billing export is live" in page and "Offsite in Lisbon" in page and "merger" not in page.lower()
    # The first Tab reaches the skip link, and Enter on it puts the focus in <main>.
    browser.driver.get(f"{site.url}/")
    keys(browser, Keys.TAB)
    assert focused(browser) == "A# #main Skip to content"
    keys(browser, Keys.ENTER)
    assert browser.run("return document.activeElement.id") == "main"
    # Every focused control shows where the focus is.
    assert browser.run("return getComputedStyle(document.activeElement).outlineStyle") in ("none", "auto", "solid")
    tab_to(browser, f"/posts/{site.billing.id}#")  # the billing post's "1 reply" link
    outline = browser.run("const s = getComputedStyle(document.activeElement);"
                          "return [s.outlineStyle, parseFloat(s.outlineWidth)]")
    assert outline[0] != "none" and outline[1] >= 2, outline
    keys(browser, Keys.ENTER)
    arrive(browser, f"{site.url}/posts/{site.billing.id}")
    thread = browser.driver.find_element(By.TAG_NAME, "main").text
    assert "Billing export is live" in thread and "the finance team can stop the spreadsheet" in thread
    assert browser.driver.find_element(By.TAG_NAME, "h1").text.startswith("Billing export is live")
    # Search from the header, by keyboard: Tab to the field, type, Enter.
    browser.driver.get(f"{site.url}/posts/{site.billing.id}")
    tab_to(browser, "INPUT#q ")  # the search field in the header
    keys(browser, "spreadsheet finance", Keys.ENTER)
    arrive(browser, f"{site.url}/search?q=spreadsheet")
    results = browser.driver.find_element(By.TAG_NAME, "main").text
    assert "the finance team can stop the spreadsheet" in results and "Offsite" not in results
    browser.driver.get(f"{site.url}/search?q=merger")
    assert "No visible update" in browser.driver.find_element(By.TAG_NAME, "main").text


def test_a_hidden_post_is_on_no_page(browser, site):
    sign_in_by_keyboard(browser, site)
    for path in ("/", "/people/alice@corp.example", "/search?q=Initech", "/search?q=secret",
                 "/tags/billing", "/tags/team"):
        browser.driver.get(f"{site.url}{path}")
        posts = " ".join(e.text for e in browser.driver.find_elements(By.CSS_SELECTOR, "article.post")).lower()
        assert "initech" not in posts and "merger" not in posts, path
        if path.startswith("/search"):  # the query itself is echoed, and nothing else
            assert "No visible update" in browser.driver.find_element(By.TAG_NAME, "main").text
        else:
            assert posts and "initech" not in browser.driver.page_source.lower(), path
    shown = CliRunner().invoke(main, ["--config", site.settings.source, "users", "show", "carol@corp.example",
                                      "--json"]).output
    feed = json.loads(shown)["feed_url"].replace(site.settings.web_url, site.url)
    for url in (feed, feed.replace("/feed.atom", "/tags/billing.atom")):
        browser.driver.get(url)
        assert "Billing export" in browser.driver.page_source and "Initech" not in browser.driver.page_source


@pytest.mark.parametrize("width", [320, 375, 1000])
def test_the_feed_fits_the_window_without_sideways_scrolling_and_keeps_its_contrast(browser, site, tmp_path, width):
    sign_in_by_keyboard(browser, site)
    for path in ("/", "/search?q=billing", "/login"):
        browser.open(f"{site.url}{path}", width=width)
        assert browser.viewport_width() == width
        assert browser.scroll_width() <= width, path
        assert browser.contrast_failures() == [], path
    browser.open(f"{site.url}/", width=width)
    folder = NOTES if NOTES.is_dir() else tmp_path
    shot = browser.screenshot(folder / f"web-{width}.png")
    assert shot.stat().st_size > 10_000
