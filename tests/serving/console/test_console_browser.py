"""The console in a real browser: Debian's headless chromium, driven by Playwright for Python.

One test walks the demo world as a marketer would: sign in, every page in English and in Russian, find a
customer and read their reasons, the contact fragment and the send-time chart, open a model and its
calibration chart. It fails on any console error, page error, failed request, HTTP error answer or
missing translation, and saves a screenshot of each page under ``tests/artifacts/console/``.

Skipped (with the reason) when chromium or Playwright is absent, except under ``CI=true``, where that fails:
``.ci/run`` installs chromium, ``make install`` Playwright.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from serving.console.routes import MISSING_HEADER
from tests.serving.conftest import KEYS, World, live_server
from tests.serving.console.conftest import console_settings

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "console"
TIMEOUT_MS = 20_000


def _browser_or_skip() -> Any:
    why = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        why = "Playwright for Python is not installed (make install)"
        sync_playwright = None
    if why is None and not CHROMIUM.exists():
        why = f"no chromium at {CHROMIUM} (apt-get install -y chromium chromium-driver)"
    if why is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the console's browser tests must run in CI: {why}")
        pytest.skip(why)
    return sync_playwright


class Watch:
    """Everything the browser reports that a page must not: console errors, page errors, failed requests,
    error answers and answers with untranslated strings."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def attach(self, page: Any) -> None:
        page.on("console", lambda m: self.problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: self.problems.append(f"request failed: {r.url} {r.failure}"))
        page.on("response", self._response)

    def _response(self, r: Any) -> None:
        if r.status >= 400:
            self.problems.append(f"HTTP {r.status}: {r.url}")
        missing = r.headers.get(MISSING_HEADER.lower())
        if missing:
            self.problems.append(f"{missing} untranslated string(s): {r.url}")


@pytest.fixture(scope="module")
def served(console_world: World) -> Iterator[str]:
    from serving.app import create_app

    app = create_app(console_world.settings(**console_settings()))
    with live_server(app) as url:
        yield url


def _charts_ready(page: Any) -> None:
    """Every chart on the page rendered by vega-embed (console.js marks it), none failed."""
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-vl]')].every(e => e.dataset.ready || e.dataset.error)",
        timeout=TIMEOUT_MS,
    )
    failed = page.eval_on_selector_all("[data-vl]", "els => els.filter(e => e.dataset.error).map(e => e.id)")
    assert failed == []


def _shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_the_console_in_a_browser(served: str, console_world: World) -> None:
    sync_playwright = _browser_or_skip()
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    watch = Watch()
    cid = console_world.ids[0]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800}, locale="en-GB")
            page.set_default_timeout(TIMEOUT_MS)
            watch.attach(page)

            # signing in: the console sends a browser without a session to the sign-in page
            page.goto(f"{served}/")
            assert page.url.startswith(f"{served}/console/sign-in")
            _shot(page, "sign-in")
            page.fill("#api_key", KEYS["admin"])
            page.click("button[type=submit]:not(.link)")
            page.wait_for_url(f"{served}/console")

            for lang in ("en", "ru"):
                if lang == "ru":
                    page.click("button[name=lang][value=ru]")
                    page.wait_for_selector("html[lang=ru]")
                page.goto(f"{served}/console")
                _charts_ready(page)
                assert page.locator("#base-size").inner_text().strip() != "—"
                _shot(page, f"overview-{lang}")

                page.click("nav a[href='/console/segments']")
                page.wait_for_selector("table.data")
                _charts_ready(page)
                _shot(page, f"segments-{lang}")

                # find a customer by the retailer's id (htmx), then read their reasons
                page.click("nav a[href='/console/customers']")
                _shot(page, f"customers-{lang}")
                page.fill("#customer_id", cid)
                page.click("form[hx-get] button[type=submit]")
                page.wait_for_url(f"{served}/console/customers/{cid}")
                assert page.locator("#customer-id").inner_text() == cid
                reasons = page.locator("tr.score-row[data-model=churn] ul.reasons li").all_inner_texts()
                assert reasons and all(r.strip() for r in reasons)
                page.wait_for_selector("#contact table.data")  # may I contact now: loaded by htmx
                _charts_ready(page)
                assert page.locator("#chart-sendtime svg").count() == 1  # the 168-hour curve
                _shot(page, f"customer-{lang}")

                # a model and its calibration chart
                page.click("nav a[href='/console/models']")
                page.wait_for_selector("table.data")
                _shot(page, f"models-{lang}")
                page.click("a[href='/console/models/churn']")
                plot = page.locator("img[data-plot='calibration.png']").first
                plot.scroll_into_view_if_needed()
                page.wait_for_function(
                    "() => { const i = document.querySelector(\"img[data-plot='calibration.png']\");"
                    " return i && i.complete && i.naturalWidth > 0; }"
                )
                _shot(page, f"model-churn-{lang}")
        finally:
            browser.close()
    assert watch.problems == []
    shots = sorted(p.name for p in ARTIFACTS.glob("*.png"))
    assert len(shots) == 13, shots
