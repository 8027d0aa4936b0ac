"""End to end in a real browser: sign in to the console and try a survey by text, run a whole
campaign (import, create, launch, answers, results, "you said, we did") and try a survey by
keypad, by keyboard where a person would use the keyboard. Every console page visited is checked
with axe-core (from the axe-playwright-python package): no "serious" or "critical" violation.
Headless Chromium driven by Playwright, using the system's Chromium (Debian's `chromium`
package): Playwright's own browser download is not used. Screenshots are kept under
INVOLVE_TEST_ARTEFACTS (else a temp folder) for a person to look at.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PUBLIC, run_worker
from tests.fakes import post_twilio, sms_params, status_params
from tests.test_console import EMAIL, PASSWORD, add_staff, simulator_answers

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
            visit = Visit(page, artefacts, "sms")
            page.goto(f"{live_url}/console/surveys/guide-title/simulate/sms")
            assert page.url.startswith(f"{live_url}/console/sign-in")
            # The first Tab lands on the skip link.
            page.keyboard.press("Tab")
            assert page.evaluate("document.activeElement.textContent") == "Skip to main content"
            page.get_by_label("Email").fill(EMAIL)
            page.get_by_label("Password").fill(PASSWORD)
            page.screenshot(path=str(artefacts / "1-sign-in.png"), full_page=True)
            visit.check("sign-in")
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
            visit.check("simulator-sms")
        finally:
            browser.close()
    assert (artefacts / "2-simulator-sms.png").stat().st_size > 0


# --- helpers for the longer journeys -----------------------------------------------------


@pytest.fixture
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


class Visit:
    """Checks and photographs each console page a test looks at."""

    def __init__(self, page, artefacts: Path, prefix: str) -> None:
        from axe_playwright_python.sync_playwright import Axe

        self.page, self.artefacts, self.prefix = page, artefacts, prefix
        self.axe = Axe()
        self.seen: list[str] = []

    def check(self, name: str) -> None:
        """No serious or critical axe-core violation on the page as it is now; one h1."""
        page = self.page
        page.wait_for_load_state()
        self.seen.append(name)
        page.screenshot(
            path=str(self.artefacts / f"{self.prefix}-{len(self.seen)}-{name}.png"),
            full_page=True,
        )
        assert page.locator("h1").count() == 1, name
        results = self.axe.run(page)
        assert results.response["testEngine"]["name"] == "axe-core"
        assert results.response["passes"], f"axe-core checked nothing on {name}"
        # Every violation, whatever its impact, kept beside the screenshot for a person to read.
        (self.artefacts / f"{self.prefix}-{len(self.seen)}-{name}.axe.json").write_text(
            json.dumps(results.response["violations"], indent=1), encoding="utf-8"
        )
        bad = [
            f"{v['id']} ({v['impact']}): {v['help']} at "
            + ", ".join(str(n["target"]) for n in v["nodes"][:5])
            for v in results.response["violations"]
            if v["impact"] in ("serious", "critical")
        ]
        assert not bad, f"accessibility on {name} ({page.url}):\n" + "\n".join(bad)


def sign_in_by_keyboard(page, visit: Visit, live_url: str) -> None:
    page.goto(f"{live_url}/console/sign-in")
    visit.check("sign-in")
    page.get_by_label("Email").fill(EMAIL)
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(f"{live_url}/console/")


def press(page, name: str) -> None:
    """Move focus to a button or link and press Enter, as a keyboard user does."""
    target = page.get_by_role("button", name=name).or_(page.get_by_role("link", name=name))
    target.first.focus()
    page.keyboard.press("Enter")


def fact(page, term: str):
    """The number beside `term` in the page's list of facts."""
    return page.locator(f"xpath=//dl[@class='facts']/dt[.='{term}']/following-sibling::dd[1]")


PANEL_CSV = (
    "name,phone,tags,external_id\n"
    "Gwen Evans,+447700900001,readers,R1\n"
    "Huw Price,+447700900002,readers;carers,R2\n"
    "Iris Jones,+447700900003,carers,C3\n"
)
# What each reader texts back, in turn: title, why, how useful, may we tell you.
REPLIES = {
    "+447700900001": ["2", "Short and clear", "5", "yes"],  # Gwen: Your health, your way
    "+447700900002": ["2", "SKIP", "4", "yes"],  # Huw: the same title
}


def test_a_whole_campaign_cycle_in_a_browser(
    live_url, client, database, redis_conn, twilio_fake, artefacts, browser, tmp_path
):
    sync_api = pytest.importorskip("playwright.sync_api")
    expect = sync_api.expect
    add_staff(database)
    page = browser.new_page()
    visit = Visit(page, artefacts, "cycle")
    sign_in_by_keyboard(page, visit, live_url)
    visit.check("overview")

    press(page, "Surveys")
    page.wait_for_url("**/console/surveys")
    visit.check("surveys")
    press(page, "Choose a title for our new guide")
    page.wait_for_url("**/console/surveys/guide-title")
    visit.check("survey")

    # The panel, from a CSV file chosen in the file input.
    press(page, "People")
    page.wait_for_url("**/console/people")
    visit.check("people")
    panel = tmp_path / "panel.csv"
    panel.write_text(PANEL_CSV, encoding="utf-8")
    page.get_by_label("CSV file of people").set_input_files(str(panel))
    press(page, "Import")
    expect(page.locator("main")).to_contain_text("3 people added, 0 updated")
    visit.check("imported")
    page.goto(f"{live_url}/console/people")
    press(page, "Gwen Evans")
    page.wait_for_url("**/console/people/*")
    expect(page.locator("h1")).to_contain_text("Gwen Evans")
    visit.check("person")

    # A campaign for the readers, created and launched.
    press(page, "Campaigns")
    page.wait_for_url("**/console/campaigns")
    visit.check("campaigns")
    press(page, "Create a new campaign")
    page.wait_for_url("**/console/campaigns/new")
    visit.check("campaign-new")
    page.get_by_label("Survey").select_option("guide-title")
    page.get_by_label("How to ask").select_option("sms")
    tags = page.get_by_label("Tags, separated by commas")
    tags.fill("readers")
    tags.press("Enter")
    page.wait_for_url(re.compile(r".*/console/campaigns/\d+$"))
    expect(page.locator("main")).to_contain_text("is ready as a draft for 2 people")
    visit.check("campaign-draft")
    campaign_url = page.url
    press(page, "Launch: send the invitations")
    expect(page.locator("h1")).to_contain_text("Launch campaign")
    press(page, re.compile(r"^Launch campaign \d+ now$"))
    expect(page.locator("main")).to_contain_text("The campaign is launching")

    # The worker sends the invitations to the fake Twilio; the readers answer by signed texts.
    run_worker(redis_conn)
    assert sorted(m["to"] for m in twilio_fake.created) == sorted(REPLIES)
    for sender, bodies in REPLIES.items():
        for body in bodies:
            response = post_twilio(
                client, PUBLIC, "/webhooks/twilio/sms", sms_params(body, sender=sender)
            )
            assert response.status_code == 200, response.get_data(as_text=True)
    run_worker(redis_conn)

    page.goto(campaign_url)
    progress = page.locator("ul.progress li").filter(has_text="Completed")
    expect(progress.locator(".progress-number")).to_have_text("2 of 2 (100%)")
    title = page.locator("section.card").filter(has_text="Which title do you like best?")
    expect(title).to_contain_text("2 answers.")
    chosen = title.locator("ul.results li").filter(has_text="Your health, your way")
    expect(chosen.locator(".progress-number")).to_have_text("2 (100.0%)")
    expect(chosen.locator(".bar .fill")).to_have_class(re.compile(r"\bw-100\b"))
    other = title.locator("ul.results li").filter(has_text="Managing your health day to day")
    expect(other.locator(".progress-number")).to_have_text("0 (0.0%)")
    expect(page.locator("main")).to_contain_text("Short and clear")
    useful = page.locator("section.card").filter(has_text="How useful would this guide be")
    for label, number in (("4", "1 (50.0%)"), ("Very useful", "1 (50.0%)"), ("3", "0 (0.0%)")):
        bar = useful.locator("ul.results li").filter(
            has=page.locator(".progress-label", has_text=re.compile(f"^{label}$"))
        )
        expect(bar.locator(".progress-number")).to_have_text(number)
    visit.check("campaign-results")

    # You said, we did: preview, then send, then the counts.
    press(page, "You said, we did: tell people what changed")
    page.wait_for_url("**/feedback")
    visit.check("feedback")
    expect(page.get_by_label("Message template")).to_have_value(
        re.compile(r"You chose \{\{ answers.title \}\}")
    )
    press(page, "Preview")
    expect(page.get_by_role("status")).to_contain_text(
        "2 people would get a message; 0 skipped. Nothing has been sent."
    )
    expect(page.locator("main table")).to_contain_text("Your health, your way")
    visit.check("feedback-preview")
    before = len(twilio_fake.created)
    press(page, "Send")
    expect(page.locator("main")).to_contain_text("2 messages queued")
    expect(fact(page, "Waiting to go")).to_have_text("2")
    visit.check("feedback-sent")
    run_worker(redis_conn)
    feedback = twilio_fake.created[before:]
    assert sorted(m["to"] for m in feedback) == sorted(REPLIES)
    assert all("You chose Your health, your way" in m["body"] for m in feedback)
    # Twilio reports back: one delivered, one only sent so far.
    for message, status in zip(feedback, ("delivered", "sent"), strict=True):
        callback = message["status_callback"]
        assert callback.startswith(PUBLIC)
        params = status_params(message["sid"], status, to=message["to"])
        assert post_twilio(client, PUBLIC, callback[len(PUBLIC) :], params).status_code < 300
    page.reload()
    expect(fact(page, "Waiting to go")).to_have_text("0")
    expect(fact(page, "Sent")).to_have_text("1")
    expect(fact(page, "Delivered")).to_have_text("1")
    expect(fact(page, "Not sent a message")).to_have_text("0")

    press(page, "Audit log")
    page.wait_for_url("**/console/audit")
    for action in ("import", "create campaign", "launch", "send feedback"):
        expect(page.locator("main")).to_contain_text(action)
    visit.check("audit")
    page.close()


def test_try_a_survey_by_keypad_in_a_browser(live_url, database, artefacts, browser):
    sync_api = pytest.importorskip("playwright.sync_api")
    expect = sync_api.expect
    add_staff(database)
    page = browser.new_page()
    visit = Visit(page, artefacts, "keypad")
    sign_in_by_keyboard(page, visit, live_url)
    page.goto(f"{live_url}/console/surveys/guide-title/simulate/voice")
    visit.check("simulator-voice")
    press(page, "Start")
    thread = page.locator(".thread")
    expect(thread).to_contain_text("To begin, press 1.")
    keypad = page.locator(".keypad")
    keypad.get_by_role("button", name="1", exact=True).click()
    expect(thread).to_contain_text("Which title do you like best?")
    visit.check("keypad")
    keypad.get_by_role("button", name="3", exact=True).click()
    expect(thread).to_contain_text("What made you choose it?")
    said = page.get_by_label("What you would say")
    said.fill("It says what the guide is for")
    said.press("Enter")
    expect(thread).to_contain_text("How useful would this guide be to you?")
    keypad.get_by_role("button", name="4", exact=True).click()
    expect(thread).to_contain_text("May we tell you which title we choose and why?")
    keypad.get_by_role("button", name="1", exact=True).click()
    expect(page.get_by_role("status")).to_have_text("The survey has ended.")
    visit.check("keypad-ended")
    answers = simulator_answers(database)
    assert answers["title"] == "managing" and answers["useful"] == "4"
    assert answers["why"] == "It says what the guide is for"
    # The check bites: an image with no text alternative is a critical violation.
    page.evaluate(
        "document.querySelector('main').insertAdjacentHTML('beforeend', '<img src=\"/x.png\">')"
    )
    with pytest.raises(AssertionError, match="image-alt"):
        visit.check("broken-on-purpose")
    page.close()
