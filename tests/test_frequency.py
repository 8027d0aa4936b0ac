"""Not too often (issue 19 item 6): nobody is invited again within INVITE_GAP_DAYS (14) of an
invitation from another campaign, on any channel; a campaign may choose its own gap (0: none).
A launch says how many it leaves out and why; the status, the CLI and the console show it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import select, update

from bot.commands import runtime
from bot.commands.cli import main
from bot.config import load_settings
from bot.storage.models import Campaign, Invitation, Message, utcnow
from tests.conftest import ADMIN, app_env, run_worker
from tests.fakes import Scripted
from tests.test_console import add_staff, form, sign_in

PANEL = {
    "participants": [
        {"name": "Ann", "phone": "07700 900001", "external_id": "A"},
        {"name": "Bob", "phone": "07700 900002", "external_id": "B"},
        {"name": "Cy", "phone": "07700 900003", "external_id": "C"},
    ]
}
GAP = "invited in the last 14 days"


@pytest.fixture
def gap_settings(database, redis_conn, redis_url, twilio_fake, tmp_path):
    """The service as deployed: the default gap of 14 days between invitations."""
    env = app_env(database.url, redis_url, twilio_fake.url, tmp_path)
    del env["INVITE_GAP_DAYS"]
    current = load_settings(env)
    assert current.invite_gap_days == 14
    runtime.configure(current)
    yield current
    runtime.configure(current)


@pytest.fixture
def api(gap_settings):
    from webhooks import create_app

    client = create_app({"SETTINGS": gap_settings, "TESTING": True}).test_client()
    assert client.post("/admin/api/participants", json=PANEL, headers=ADMIN).json["created"] == 3
    return client


def _create(client, audience, **body) -> int:
    payload = {"survey": "guide-title", "audience": audience, **body}
    created = client.post("/admin/api/campaigns", json=payload, headers=ADMIN)
    assert created.status_code == 201, created.json
    return created.json["id"]


def _launch(client, campaign_id: int) -> dict:
    launched = client.post(f"/admin/api/campaigns/{campaign_id}/launch", headers=ADMIN)
    assert launched.status_code == 202, launched.json
    return launched.json


def _status(client, campaign_id: int) -> dict:
    return client.get(f"/admin/api/campaigns/{campaign_id}", headers=ADMIN).json


def _first_campaign_to_ann_and_bob(client, redis_conn) -> int:
    first = _create(client, {"participants": ["A", "B"]})
    _launch(client, first)
    run_worker(redis_conn)
    return first


def test_people_invited_lately_by_another_campaign_are_left_out_and_the_launch_says_so(
    api, database, redis_conn, twilio_fake
):
    _first_campaign_to_ann_and_bob(api, redis_conn)
    second = _create(api, {"all": True})
    assert _launch(api, second)["left_out"] == {GAP: 2}
    run_worker(redis_conn)
    assert [m["to"] for m in twilio_fake.created[2:]] == ["+447700900003"]  # Cy alone
    status = _status(api, second)
    assert status["left_out"] == {"invite_gap_days": 14, "invited_recently": 2}
    assert status["counts"]["invited"] == 1 and status["counts"]["not_reached"] == 0
    with database.session() as session:
        reasons = session.scalars(
            select(Invitation.reason).where(
                Invitation.campaign_id == second, Invitation.status == "skipped"
            )
        ).all()
    assert reasons == [GAP, GAP]


def test_a_campaign_may_choose_no_gap(api, database, redis_conn, twilio_fake):
    _first_campaign_to_ann_and_bob(api, redis_conn)
    second = _create(api, {"all": True}, invite_gap_days=0)
    assert "left_out" not in _launch(api, second)
    run_worker(redis_conn)
    status = _status(api, second)
    assert status["left_out"] == {"invite_gap_days": 0, "invited_recently": 0}
    # Ann and Bob are in the first survey still: they wait for it, and are not left out.
    assert status["counts"]["waiting"] == 2 and status["counts"]["invited"] == 1


def test_an_invitation_that_never_reached_them_or_is_older_than_the_gap_does_not_count(
    api, database, redis_conn, twilio_fake
):
    # Ann's number is not a number (it fails at once); Bob's invitation was long ago.
    twilio_fake.script.append(Scripted(status=400, code=21211, message="invalid 'To'"))
    first = _create(api, {"participants": ["A"]})
    _launch(api, first)
    run_worker(redis_conn)
    older = _create(api, {"participants": ["B"]}, invite_gap_days=0)
    _launch(api, older)
    run_worker(redis_conn)
    with database.session() as session:
        assert session.scalar(select(Message.status).where(Message.campaign_id == first)) == (
            "failed"
        )
        session.execute(
            update(Invitation)
            .where(Invitation.campaign_id == older)
            .values(invited_at=utcnow() - timedelta(days=15))
        )
    third = _create(api, {"all": True})
    assert "left_out" not in _launch(api, third)


def test_someone_waiting_is_left_out_if_another_campaign_invited_them_meanwhile(
    api, database, redis_conn, twilio_fake
):
    # Ann is in a survey she began herself (not an invitation): both campaigns wait for it.
    from tests.test_campaigns import reply

    reply(api, "+447700900001", "TITLE")
    first = _create(api, {"participants": ["A"]}, survey="hear-back")
    second = _create(api, {"participants": ["A"]}, survey="readers-panel-review")
    for campaign_id in (first, second):
        _launch(api, campaign_id)
    run_worker(redis_conn)
    assert _status(api, second)["counts"]["waiting"] == 1
    # Her own survey ends: the first campaign invites her, and the invitation goes.
    for text in ["1", "skip", "3", "yes"]:
        reply(api, "+447700900001", text)
    run_worker(redis_conn)
    assert _status(api, first)["counts"]["invited"] == 1
    # The first campaign closes, ending her survey there: the second would invite her now,
    # a moment after the first did.
    assert api.post(f"/admin/api/campaigns/{first}/close", headers=ADMIN).status_code == 200
    status = _status(api, second)
    assert status["counts"]["waiting"] == 0 and status["left_out"]["invited_recently"] == 1


def test_the_shell_sets_both_and_says_who_a_launch_leaves_out(api, database, redis_conn):
    _first_campaign_to_ann_and_bob(api, redis_conn)
    runner = CliRunner()
    created = runner.invoke(
        main,
        ["campaign", "create", "guide-title", "--all", "--fallback-after-hours", "6"],
    )
    assert created.exit_code == 0, created.output
    number = created.output.split()[1]
    launched = runner.invoke(main, ["campaign", "launch", number])
    assert launched.exit_code == 0, launched.output
    assert "left out: 2 people invited in the last 14 days by another campaign" in (launched.output)
    run_worker(redis_conn)
    status = runner.invoke(main, ["campaign", "status", number]).output
    assert "left out     2 invited by another campaign in the last 14 days" in status, status
    assert "0 invited on their next contact point, 0 reached by fallback" in status, status
    none = runner.invoke(
        main, ["campaign", "create", "guide-title", "--all", "--invite-gap-days", "0"]
    )
    with database.session() as session:
        chosen = session.get(Campaign, int(none.output.split()[1]))
        assert (chosen.invite_gap_days, chosen.fallback_after_hours) == (0, None)
        assert session.get(Campaign, int(number)).fallback_after_hours == 6


def test_the_console_sets_both_and_shows_who_was_left_out(api, database, redis_conn):
    _first_campaign_to_ann_and_bob(api, redis_conn)
    add_staff(database)
    assert sign_in(api).status_code == 302
    page = api.get("/console/campaigns/new").get_data(as_text=True)
    assert 'name="fallback"' in page and 'name="gap"' in page and "(14 days)" in page
    created = form(
        api,
        "/console/campaigns/new",
        survey="guide-title",
        audience="everyone",
        channel="",
        fallback="3",
        gap="",
    )
    assert created.status_code == 302, created.get_data(as_text=True)
    campaign = int(created.headers["Location"].rsplit("/", 1)[1])
    assert form(api, f"/console/campaigns/{campaign}/launch", confirm="launch").status_code == 302
    run_worker(redis_conn)
    detail = api.get(f"/console/campaigns/{campaign}").get_data(as_text=True)
    assert "Left out: 2 people invited in the last 14 days by another campaign" in detail
    assert "The campaign is launching" in detail and "launched already" not in detail
    assert "Left out: 2 people asked by another campaign in the last 14 days" in detail
    assert "Reached by fallback: 0 of 0 people" in detail
    refused = form(
        api, "/console/campaigns/new", survey="guide-title", audience="everyone", gap="often"
    )
    assert refused.status_code == 400
    assert "invite_gap_days must be" in refused.get_data(as_text=True)


def test_invite_gap_days_is_checked(api):
    for value in (-1, 366, 1.5, "two weeks", True):
        response = api.post(
            "/admin/api/campaigns",
            json={"survey": "guide-title", "audience": {"all": True}, "invite_gap_days": value},
            headers=ADMIN,
        )
        assert response.status_code == 400, value
        assert response.json["error"].startswith("invite_gap_days must be"), response.json
    whole = _create(api, {"all": True}, invite_gap_days=21.0)  # JSON's 21.0 is a whole number
    assert _status(api, whole)["left_out"]["invite_gap_days"] == 21


def test_a_bad_invite_gap_days_setting_fails_at_start_in_one_line():
    from bot.config import ConfigError

    with pytest.raises(ConfigError, match="INVITE_GAP_DAYS must be a whole number from 0 to 365"):
        load_settings({"INVITE_GAP_DAYS": "fortnight"})
