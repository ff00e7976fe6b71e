"""Open a report in a real headless Chromium (Debian's ``chromium`` driven by Playwright) and inspect it.

The browser is never downloaded at run time: Playwright is pointed at an installed Chromium
(``$FEDINSIGHT_CHROMIUM``, else ``chromium`` / ``chromium-browser`` / ``google-chrome`` on PATH).
``make test`` installs Debian's package when it can (scripts/ensure_chromium.sh).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

BROWSER_TIMEOUT_MS = 180_000
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                  "--disable-extensions", "--no-first-run"]


def chromium_path() -> str | None:
    explicit = os.environ.get("FEDINSIGHT_CHROMIUM")
    if explicit and Path(explicit).is_file():
        return explicit
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    return None


def require_chromium() -> str:
    path = chromium_path()
    if path is None:
        pytest.skip("no Chromium installed: `apt-get install chromium` (make test does this when it runs as root "
                    "or with passwordless sudo), or set FEDINSIGHT_CHROMIUM to a Chromium binary")
    return path


@dataclass
class PageCheck:
    """What the browser saw: console errors, uncaught exceptions, network requests, and each chart's box."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    charts: list[dict] = field(default_factory=list)
    sections: list[str] = field(default_factory=list)
    title: str = ""
    screenshot: Path | None = None


CHART_PROBE = """() => Array.from(document.querySelectorAll('figure.chart')).map(f => {
  const svg = f.querySelector('svg');
  const box = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
  const tips = svg ? Array.from(svg.querySelectorAll('g.tip')) : [];
  // Hover check: the browser's own hit test at a point inside each tooltip mark (left of a bar's error
  // whisker, low in the mark) must land in that mark; an invisible shape that ignores the pointer, or a mark
  // under another element, shows nothing. Marks under 2 px are not tried. Overlapping points (two models'
  // calibration bins) can hide each other, so callers decide how many must be reachable.
  const drawn = g => Array.from(g.querySelectorAll('path, use')).find(e => !e.closest('defs'));
  let tried = 0, reached = 0;
  const missed = [];
  for (const g of tips) {
    const mark = drawn(g);
    if (!mark) continue;
    mark.scrollIntoView({block: 'center', inline: 'center'});
    const r = mark.getBoundingClientRect();
    if (r.width < 2 || r.height < 2) continue;
    tried += 1;
    const hit = document.elementFromPoint(r.left + 0.3 * r.width, r.top + 0.8 * r.height);
    if (hit && hit.closest('g.tip') === g) reached += 1;
    else if (missed.length < 3) missed.push(g.querySelector('title').textContent);
  }
  const hover = {tried: tried, reached: reached, missed: missed};
  return {name: f.dataset.chart, width: box.width, height: box.height,
          marks: svg ? svg.querySelectorAll('path, rect, line, polyline, use').length : 0,
          texts: svg ? svg.querySelectorAll('text').length : 0, tips: tips.length, hover: hover};
})"""


def inspect_page(target: str, screenshot: Path, *, html: str | None = None) -> PageCheck:
    """Load ``target`` (a file:// or http:// URL; or ``html`` set as the page) and report what rendered."""
    from playwright.sync_api import sync_playwright

    result = PageCheck()
    with sync_playwright() as p:
        # Playwright gives up after 30 s by default; a loaded machine can take longer to start Chromium or lay out
        # a long report, so the deadlines are generous (each wait still ends as soon as its condition holds)
        browser = p.chromium.launch(executable_path=require_chromium(), args=CHROMIUM_FLAGS, timeout=BROWSER_TIMEOUT_MS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(BROWSER_TIMEOUT_MS)
            page.set_default_navigation_timeout(BROWSER_TIMEOUT_MS)
            page.on("console", lambda m: result.console_errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: result.page_errors.append(str(e)))
            page.on("request", lambda r: result.requests.append(r.url))
            if html is not None:
                page.set_content(html, wait_until="load")
            else:
                page.goto(target, wait_until="load")
            result.title = page.title()
            result.charts = page.evaluate(CHART_PROBE)
            result.sections = page.evaluate("() => Array.from(document.querySelectorAll('section')).map(s => s.id)")
            page.screenshot(path=str(screenshot), full_page=True)
            result.screenshot = screenshot
        finally:
            browser.close()
    return result
