"""A real headless Chromium for anything a person looks at (digests, mail HTML, the web).

Debian's ``/usr/bin/chromium`` and ``/usr/bin/chromedriver`` driven by Selenium (the test
extra). Selenium is given the driver's path, so it never tries to download one. One
browser serves the whole test session (starting Chromium costs about a second of CPU);
every :meth:`Browser.open` first resets the viewport and the emulated colour scheme, so
tests do not see each other's settings.

Use the ``browser`` fixture (registered for every test by ``tests/conftest.py``); it
skips when Chromium, ChromeDriver or Selenium is missing::

    def test_fits_a_phone(browser, tmp_path):
        browser.open_html("<p>hello</p>", width=375, dark=True)
        assert browser.scroll_width() <= 375
        assert browser.contrast_failures() == []
        browser.screenshot(tmp_path / "page.png")

Widths are CSS pixels of the layout viewport (``Emulation.setDeviceMetricsOverride``):
``width=375`` means ``window.innerWidth == 375``, whatever the window's frame.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("STATUSMAIL_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("STATUSMAIL_TEST_CHROMEDRIVER", "/usr/bin/chromedriver")

# WCAG 2.x contrast of every visible text element against the background it is painted
# on (the first ancestor with an opaque background colour, else the canvas). Returns one
# entry per element whose ratio is below the minimum: [ratio, colour, background, text].
CONTRAST_SCRIPT = r"""
const minimum = arguments[0];
function rgba(value) {
  const m = value.match(/rgba?\(([^)]+)\)/);
  if (!m) return null;
  const p = m[1].split(/[ ,\/]+/).filter(Boolean).map(Number);
  return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
}
function luminance(c) {
  const [r, g, b] = c.slice(0, 3).map(v => {
    v = v / 255;
    return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
  });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}
function canvas() {
  for (const el of [document.body, document.documentElement]) {
    const c = el && rgba(getComputedStyle(el).backgroundColor);
    if (c && c[3] > 0) return c;
  }
  return getComputedStyle(document.documentElement).colorScheme.includes("dark") &&
         matchMedia("(prefers-color-scheme: dark)").matches ? [18, 18, 18, 1] : [255, 255, 255, 1];
}
function background(el) {
  for (let e = el; e; e = e.parentElement) {
    const c = rgba(getComputedStyle(e).backgroundColor);
    if (c && c[3] > 0.5) return c;
  }
  return canvas();
}
const failures = [];
for (const el of document.body.querySelectorAll("*")) {
  const own = [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
  if (!own) continue;
  const style = getComputedStyle(el);
  const box = el.getBoundingClientRect();
  if (style.visibility === "hidden" || style.display === "none" || box.width === 0 || box.height === 0) continue;
  const fg = rgba(style.color), bg = background(el);
  const [hi, lo] = [luminance(fg), luminance(bg)].sort((a, b) => b - a);
  const ratio = (hi + 0.05) / (lo + 0.05);
  if (ratio < minimum) failures.push([Math.round(ratio * 100) / 100, style.color,
                                      `rgba(${bg.join(",")})`, el.textContent.trim().slice(0, 60)]);
}
return failures;
"""


class Browser:
    """One headless Chromium session: open a page at a width and colour scheme, measure it,
    take a screenshot of all of it."""

    def __init__(self, driver: Any, folder: Path) -> None:
        self.driver = driver
        self.folder = folder
        self.pages = 0
        self.width = 0

    def emulate(self, width: int, height: int = 800, dark: bool = False) -> None:
        """A device ``width`` CSS pixels wide (a phone below 600: a page wider than the
        device then widens ``innerWidth``, as a phone zooms out), light or dark."""
        self.width = width
        self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600})
        self.driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {
            "media": "screen", "features": [{"name": "prefers-color-scheme", "value": "dark" if dark else "light"}]})

    def open(self, url: str, *, width: int, height: int = 800, dark: bool = False) -> None:
        """Load ``url`` in a viewport ``width`` CSS pixels wide, light or dark."""
        self.emulate(width, height, dark)
        self.driver.get(url)

    def open_html(self, html: str, *, width: int, height: int = 800, dark: bool = False) -> Path:
        """Load a document from a file (``data:`` URLs are limited in size and origin)."""
        self.pages += 1
        page = self.folder / f"page-{self.pages}.html"
        page.write_text(html, encoding="utf-8")
        self.open(page.as_uri(), width=width, height=height, dark=dark)
        return page

    def run(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def viewport_width(self) -> int:
        return int(self.run("return window.innerWidth"))

    def scroll_width(self) -> int:
        """How wide the document is laid out; wider than the viewport means sideways scrolling."""
        return int(self.run("return document.documentElement.scrollWidth"))

    def matches(self, media_query: str) -> bool:
        return bool(self.run("return matchMedia(arguments[0]).matches", media_query))

    def contrast_failures(self, minimum: float = 4.5) -> list[list[Any]]:
        """Text elements whose WCAG contrast ratio is below ``minimum`` (AA for body text)."""
        return list(self.run(CONTRAST_SCRIPT, minimum))

    def screenshot(self, path: Path | str, full_page: bool = True) -> Path:
        """A PNG of the page at the current width; all of its height when ``full_page``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if full_page:
            width = self.width
            height = int(self.run("return document.documentElement.scrollHeight"))
            self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
                "width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600})
        self.driver.save_screenshot(str(path))
        return path


def browser_missing() -> str:
    """Why the browser cannot run here, or "" when it can."""
    for binary in (CHROMIUM, CHROMEDRIVER):
        if not os.access(binary, os.X_OK):
            return f"{binary} is not installed"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    return ""


@pytest.fixture(scope="session")
def browser_session() -> Iterator[Browser]:
    reason = browser_missing()
    if reason:
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--hide-scrollbars", "--no-first-run", "--disable-extensions", "--mute-audio",
                     "--font-render-hinting=none"):
        options.add_argument(argument)
    folder = Path(tempfile.mkdtemp(prefix="statusmail-browser-"))
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield Browser(driver, folder)
    finally:
        driver.quit()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def browser(browser_session: Browser) -> Browser:
    """The session's headless Chromium (skips when it is not installed)."""
    return browser_session
