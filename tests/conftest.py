"""Fixtures shared by every test: where ../shared is, the corpus in it, and a headless browser.

A user's clone has no ``../shared``; every test that reads it is skipped with a reason there. A
machine without Debian's ``chromium`` skips the browser tests, with the reason, except in CI.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / "shared"
TINYSHAKESPEARE = SHARED_DIR / "data" / "tinyshakespeare.txt"


@pytest.fixture(scope="session")
def tinyshakespeare_path() -> Path:
    if not TINYSHAKESPEARE.is_file():
        pytest.skip(f"{TINYSHAKESPEARE} is absent (only developer machines and CI have ../shared)")
    return TINYSHAKESPEARE


@pytest.fixture(scope="session")
def tinyshakespeare(tinyshakespeare_path: Path) -> str:
    return tinyshakespeare_path.read_text(encoding="utf-8")


@pytest.fixture
def parity_off_by_a_little(monkeypatch):
    """``minitransformer.parity`` loads our model with one weight moved by 1e-3: a row past its bound."""
    import torch

    import minitransformer.parity as parity

    load = parity.from_pretrained

    def off_by_a_little(*args, **kwargs):
        model = load(*args, **kwargs)
        with torch.no_grad():
            next(model.parameters()).view(-1)[0] += 1e-3
        return model

    monkeypatch.setattr(parity, "from_pretrained", off_by_a_little)


# ------------------------------------------------------------------------------------ a real browser

#: Set in CI (.ci/run), where Chromium is installed: a missing browser fails the tests instead of skipping them.
REQUIRE_BROWSER = os.environ.get("MINITRANSFORMER_REQUIRE_BROWSER") == "1"


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium, Debian's (``apt-get install chromium``), driven by playwright.

    Playwright's own browser builds are never downloaded: it launches the system's executable.
    Skipped, with the reason, where either is missing; under ``MINITRANSFORMER_REQUIRE_BROWSER=1``
    (CI) that is a failure instead, so that a failed install cannot pass as a skip. One per test
    module: playwright's event loop ends with the module, before any other test's asyncio starts.
    """
    missing = None
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = "playwright is not installed (it comes with the dev extra)"
    if missing is None and executable is None:
        missing = "no chromium on PATH (Debian: apt-get install chromium)"
    if missing:
        if REQUIRE_BROWSER:
            pytest.fail(f"MINITRANSFORMER_REQUIRE_BROWSER=1 but {missing}")
        pytest.skip(missing)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True)
        yield launched
        launched.close()


@dataclass
class PageReport:
    """What a page showed: its console errors, images that did not load, tables, and off-machine requests."""

    url: str
    title: str
    errors: list[str]
    broken_images: list[str]
    images: int
    tables: int
    external: list[str]
    text: str


@pytest.fixture(scope="module")
def visit(browser):
    """``visit(url) -> PageReport``: open ``url``, wait until it is loaded, and say what it showed.

    Requests that leave the machine (a CDN) are answered empty here, and listed in ``external``:
    a test never reaches the network, and a script it could not fetch is not a console error.
    """

    def open_page(url: str, selector: str = "body") -> PageReport:
        page = browser.new_page()
        errors, external = [], []
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(f"uncaught: {error}"))

        def route(route_, request):
            host = urlparse(request.url).hostname
            if request.url.startswith(("file:", "data:")) or host in ("127.0.0.1", "localhost"):
                route_.continue_()
            else:
                external.append(request.url)
                route_.fulfill(status=200, body="", content_type="application/javascript")

        page.route("**/*", route)
        page.goto(url, wait_until="load")
        page.wait_for_selector(selector)
        images = page.eval_on_selector_all(
            "img", "els => els.map(e => [e.getAttribute('src'), e.complete && e.naturalWidth > 0])")
        report = PageReport(url=url, title=page.title(), errors=errors,
                            broken_images=[src for src, ok in images if not ok], images=len(images),
                            tables=page.locator("table").count(), external=external,
                            text=page.inner_text("body"))
        page.close()
        return report

    return open_page
