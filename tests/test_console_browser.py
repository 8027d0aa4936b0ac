"""End to end in a real browser: sign in to the console and try a survey by text, keyboard
only where a person would use the keyboard. Headless Chromium driven by Playwright, using the
system's Chromium (Debian's `chromium` package): Playwright's own browser download is not used.
Screenshots are kept under INVOLVE_TEST_ARTEFACTS (else a temp folder) for a person to look at.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_console import EMAIL, PASSWORD, add_staff

CHROMIUM = os.environ.get("INVOLVE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(),
        reason=f"no Chromium at {CHROMIUM}: install Debian's `chromium` package "
        "(or set INVOLVE_CHROMIUM) to run the browser test",
    ),
]


@pytest.fixture
def artefacts() -> Path:
    folder = Path(
        os.environ.get("INVOLVE_TEST_ARTEFACTS")
        or Path(tempfile.gettempdir()) / "involve-console-screenshots"
    )
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def live_url(app_settings, database) -> Iterator[str]:
    from werkzeug.serving import make_server

    from webhooks import create_app

    # Plain http on a free port (never 5000): the session cookie is Secure only for https.
    local = app_settings.with_overrides(public_base_url="http://127.0.0.1")
    server = make_server("127.0.0.1", 0, create_app({"SETTINGS": local}), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(5)


def test_sign_in_and_try_a_survey_by_text_in_a_browser(live_url, database, artefacts):
    sync_api = pytest.importorskip("playwright.sync_api")
    add_staff(database)
    with sync_api.sync_playwright() as playwright:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.goto(f"{live_url}/console/surveys/guide-title/simulate/sms")
            assert page.url.startswith(f"{live_url}/console/sign-in")
            # The first Tab lands on the skip link.
            page.keyboard.press("Tab")
            assert page.evaluate("document.activeElement.textContent") == "Skip to main content"
            page.get_by_label("Email").fill(EMAIL)
            page.get_by_label("Password").fill(PASSWORD)
            page.screenshot(path=str(artefacts / "1-sign-in.png"), full_page=True)
            page.get_by_label("Password").press("Enter")
            page.wait_for_url("**/simulate/sms")
            page.get_by_role("button", name="Start").click()
            sync_api.expect(page.locator(".thread")).to_contain_text(
                "Which title do you like best?"
            )
            reply = page.get_by_label("Your text message")
            reply.fill("2")
            reply.press("Enter")
            sync_api.expect(page.locator(".thread")).to_contain_text("What made you choose it?")
            reply = page.get_by_label("Your text message")
            reply.fill("It is short")
            reply.press("Enter")
            sync_api.expect(page.locator(".thread")).to_contain_text(
                "How useful would this guide be to you?"
            )
            page.screenshot(path=str(artefacts / "2-simulator-sms.png"), full_page=True)
            assert page.locator("h1").count() == 1
        finally:
            browser.close()
    assert (artefacts / "2-simulator-sms.png").stat().st_size > 0
