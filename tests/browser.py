"""Open report pages in a real headless Chromium (Debian's, driven by Playwright) with the
network off: what a reader's browser shows, checked.

Per page: no console error and no uncaught exception, no request leaving the page (every
request other than the page's own file is recorded and aborted), every chart drawn (an
inline SVG with a non-zero size and marks in it), the page's width (wide tables scroll in
their box, not the page), and a full-page screenshot saved under
``ARTIFACTS`` (``SPARKLIFT_ARTIFACTS``, default ``<repo>/.artifacts/screenshots``).
"""

from __future__ import annotations

import functools
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("SPARKLIFT_ARTIFACTS", REPO / ".artifacts" / "screenshots"))
WHY = "no chromium on PATH (CI installs Debian's: apt-get install chromium)"
INSTALL_TIMEOUT_S = 900


@functools.cache
def chromium() -> str | None:
    """The Chromium binary, or None. An install still under way (``.ci/run`` installs
    Debian's beside the tests; ``SPARKLIFT_CHROMIUM_SETUP``: the file it writes its exit
    code to) is waited for first."""
    status = os.environ.get("SPARKLIFT_CHROMIUM_SETUP")
    deadline = time.monotonic() + INSTALL_TIMEOUT_S
    while status and not Path(status).exists():
        assert time.monotonic() < deadline, f"the chromium install did not end ({status})"
        time.sleep(1)
    return (
        os.environ.get("SPARKLIFT_CHROMIUM")
        or shutil.which("chromium")
        or shutil.which("chromium-browser")
    )


@dataclass
class Seen:
    """What the browser saw of one page."""

    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    charts: list[tuple[float, float, int]] = field(default_factory=list)  # width, height, marks
    sections: list[str] = field(default_factory=list)  # the h2 headings
    width: int = 0  # the page's scroll width: no wider than the window (1100 px)
    screenshot: Path | None = None


def need_chromium() -> None:
    if chromium() is None:
        pytest.skip(WHY)


def open_pages(pages: list[Path], name: str) -> dict[Path, Seen]:
    """Open every page in one browser, offline; what each showed."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    out = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        context = browser.new_context(offline=True, viewport={"width": 1100, "height": 900})
        for path in pages:
            seen = Seen()
            page = context.new_page()
            page.on(
                "console", lambda m, s=seen: s.errors.append(m.text) if m.type == "error" else None
            )
            page.on("pageerror", lambda e, s=seen: s.errors.append(str(e)))
            own = path.resolve().as_uri()

            def route(r, s=seen, own=own):
                if r.request.url == own:
                    r.continue_()
                else:
                    s.requests.append(r.request.url)
                    r.abort()

            page.route("**/*", route)
            page.goto(own, wait_until="load")
            seen.charts = [
                tuple(c)
                for c in page.eval_on_selector_all(
                    "figure.chart svg",
                    "els => els.map(e => { const b = e.getBoundingClientRect(); return "
                    "[b.width, b.height, e.querySelectorAll('path,rect,line,use,text').length]; })",
                )
            ]
            seen.width = page.evaluate("document.documentElement.scrollWidth")
            seen.sections = page.eval_on_selector_all(
                "section h2", "els => els.map(e => e.textContent)"
            )
            shot = ARTIFACTS / f"{name}-{path.stem}.png"
            page.screenshot(path=str(shot), full_page=True)
            seen.screenshot = shot
            out[path] = seen
            page.close()
        browser.close()
    return out
