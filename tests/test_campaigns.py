import csv
import io
import xml.etree.ElementTree as ET
from datetime import timedelta

import pytest
from rq.job import Job
from rq.registry import ScheduledJobRegistry
from sqlalchemy import select

from bot.channels import Outgoing
from bot.commands import jobs, runtime
from bot.config import parse_quiet_hours
from bot.cycle import campaigns, reminders
from bot.sending import send
from bot.storage.models import Invitation, Message, Participant, utcnow
from tests import people as panel
from tests.conftest import ADMIN, PUBLIC, run_worker
from tests.fakes import post_twilio, sms_params

PANEL = {
    "participants": [
        {"name": "Ann Jones", "phone": "07700 900001", "tags": ["readers"], "external_id": "A"},
        {"name": "Bob", "phone": "07700 900002", "tags": ["readers"], "external_id": "B"},
        {"name": "Cy", "phone": "07700 900003", "tags": ["readers"], "external_id": "C"},
        {
            "name": "Di",
            "telegram_chat_id": 555,
            "tags": ["readers"],
            "channel": "telegram",
            "external_id": "D",
        },
        {"name": "Ed", "phone": "07700 900005", "tags": ["focus"], "external_id": "E"},
    ]
}


def setup_panel(client, database, opted_out=("C",)):
    assert client.post("/admin/api/participants", json=PANEL, headers=ADMIN).json["created"] == 5
    with database.session() as session:
        for person in session.scalars(
            select(Participant).where(Participant.external_id.in_(opted_out))
        ):
            person.opted_out = True


def create(client, **body):
    payload = {"survey": "guide-title", "audience": {"tags": ["readers"]}, "channel": None, **body}
    response = client.post("/admin/api/campaigns", json=payload, headers=ADMIN)
    assert response.status_code == 201, response.json
    return response.json


def status(client, campaign_id):
    return client.get(f"/admin/api/campaigns/{campaign_id}", headers=ADMIN).json


def reply(client, phone, body):
    response = post_twilio(client, PUBLIC, "/webhooks/twilio/sms", sms_params(body, sender=phone))
    return [m.text for m in ET.fromstring(response.data).findall("Message")]


def test_create_validates_every_field(client):
    bad = [
        ({"survey": "nope", "audience": {"all": True}}, "there is no survey 'nope'"),
        ({"survey": "guide-title", "audience": {"everyone": True}}, "unknown audience 'everyone'"),
        (
            {"survey": "guide-title", "audience": {"tags": []}},
            "audience tags must be a non-empty list",
        ),
        (
            {"survey": "guide-title", "audience": {"all": True}, "channel": "pigeon"},
            "channel must be null",
        ),
        (
            {"survey": "guide-title", "audience": {"all": True}, "send_at": "tomorrow"},
            "send_at must be an ISO 8601 time",
        ),
        (
            {"survey": "guide-title", "audience": {"all": True}, "reminder_after_hours": -1},
            "reminder_after_hours must be",
        ),
        (
            {"survey": "guide-title", "audience": {"all": True}, "colour": "red"},
            "unknown field 'colour'",
        ),
        (
            {"survey": "guide-title", "audience": {"all": True}, "channel": "telegram"},
            "cannot invite by telegram now: set TELEGRAM_BOT_TOKEN and TELEGRAM_WEBHOOK_SECRET",
        ),
    ]
    for body, message in bad:
        response = client.post("/admin/api/campaigns", json=body, headers=ADMIN)
        assert response.status_code in (400, 409) and response.json["error"].startswith(message), (
            body,
            response.json,
        )


def test_launch_invites_by_text_skips_and_counts(client, database, redis_conn, twilio_fake):
    setup_panel(client, database)
    created = create(client)
    assert created["status"] == "draft" and created["audience_size"] == 4
    launched = client.post(f"/admin/api/campaigns/{created['id']}/launch", headers=ADMIN)
    assert launched.status_code == 202
    run_worker(redis_conn)
    sent = twilio_fake.sends()
    assert sorted(s["To"] for s in sent) == ["+447700900001", "+447700900002"]
    ann = next(s for s in sent if s["To"] == "+447700900001")
    assert (
        ann["Body"].startswith("Hello Ann. Could you help us choose a title")
        and "Which title" in ann["Body"]
    )
    counts = status(client, created["id"])["counts"]
    assert counts == {
        "invited": 2,
        "started": 0,
        "completed": 0,
        "opted_out": 1,
        "failed": 0,
        "not_reached": 1,
        "waiting": 0,
    }
    assert status(client, created["id"])["status"] == "launched"
    with database.session() as session:
        reasons = {
            i.participant_id: (i.status, i.reason) for i in session.scalars(select(Invitation))
        }
        assert sorted(reasons.values()) == [
            ("invited", None),
            ("invited", None),
            ("skipped", "Telegram is off: set TELEGRAM_BOT_TOKEN and TELEGRAM_WEBHOOK_SECRET"),
            ("skipped", "opted out"),
        ]


def test_launching_twice_sends_nothing_twice(client, database, redis_conn, twilio_fake):
    setup_panel(client, database)
    campaign_id = create(client)["id"]
    client.post(f"/admin/api/campaigns/{campaign_id}/launch", headers=ADMIN)
    run_worker(redis_conn)
    again = client.post(f"/admin/api/campaigns/{campaign_id}/launch", headers=ADMIN)
    assert again.status_code == 202 and again.json["status"] == "launched"
    campaigns.fan_out(
        runtime.database(), runtime.settings(), campaign_id
    )  # even the fan-out itself, run again by hand
    run_worker(redis_conn)
    assert len(twilio_fake.sends()) == 2


def test_answers_by_text_move_the_counts_and_export(client, database, redis_conn, twilio_fake):
    setup_panel(client, database)
    campaign_id = create(client)["id"]
    client.post(f"/admin/api/campaigns/{campaign_id}/launch", headers=ADMIN)
    run_worker(redis_conn)
    assert "What made you choose it?" in reply(client, "+447700900001", "2")[0]
    reply(client, "+447700900001", '=HYPERLINK("http://x")')
    reply(client, "+447700900001", "5")
    assert reply(client, "+447700900001", "yes") == ["Thank you. We will tell you what we decide."]
    reply(client, "+447700900002", "1")
    counts = status(client, campaign_id)["counts"]
    assert (counts["started"], counts["completed"]) == (2, 1)
    response = client.get(f"/admin/api/campaigns/{campaign_id}/responses.csv", headers=ADMIN)
    assert response.mimetype == "text/csv"
    raw = response.get_data()
    assert raw.startswith("\ufeff".encode()), "Excel needs the BOM to read UTF-8 (emoji, accents)"
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert rows[0] == [
        "participant",
        "channel",
        "status",
        "started_at",
        "completed_at",
        "title",
        "why",
        "useful",
        "recontact",
    ]
    by_person = {r[0].removeprefix("ext:"): r for r in rows[1:]}
    assert {r[0] for r in rows[1:]} == {"ext:A", "ext:B", "ext:C", "ext:D"}
    assert by_person["A"][2] == "completed" and by_person["A"][5:] == [
        "Your health, your way",
        '\'=HYPERLINK("http://x")',
        "Very useful",
        "Yes",
    ]
    assert (
        by_person["B"][2] == "started"
        and by_person["B"][5] == "Living well with long-term health conditions"
    )
    assert by_person["C"][2] == "skipped"
    summary = client.get(f"/admin/api/campaigns/{campaign_id}/summary", headers=ADMIN).json
    title = next(q for q in summary["questions"] if q["id"] == "title")
    assert title["answered"] == 2
    assert {o["value"]: (o["count"], o["percent"]) for o in title["options"]}["your-health"] == (
        1,
        50.0,
    )
    why = next(q for q in summary["questions"] if q["id"] == "why")
    assert why["answers"] == ['=HYPERLINK("http://x")']


def test_one_reminder_to_those_not_finished_picking_up_where_they_stopped(
    client, database, redis_conn, twilio_fake
):
    setup_panel(client, database, opted_out=())
    campaign_id = create(client, reminder_after_hours=24)["id"]
    client.post(f"/admin/api/campaigns/{campaign_id}/launch", headers=ADMIN)
    assert (
        ScheduledJobRegistry("involve", connection=redis_conn).count == 1
    )  # the reminder, a day later
    run_worker(redis_conn)
    reply(client, "+447700900001", "2")  # Ann is part-way
    for text in ["1", "skip", "4", "no"]:
        reply(client, "+447700900002", text)  # Bob finished
    reply(client, "+447700900003", "STOP")  # Cy stopped
    before = len(twilio_fake.sends())
    assert reminders.send_reminders(runtime.database(), runtime.settings(), campaign_id) == 1
    run_worker(redis_conn)
    (reminder,) = twilio_fake.sends()[before:]
    assert reminder["To"] == "+447700900001"
    assert (
        reminder["Body"].startswith("A gentle reminder")
        and "What made you choose it?" in reminder["Body"]
    )
    assert (
        reminders.send_reminders(runtime.database(), runtime.settings(), campaign_id) == 0
    )  # only ever one


def test_a_reminder_to_a_welsh_speaker_opens_in_welsh(client, database, redis_conn, twilio_fake):
    setup_panel(client, database, opted_out=())
    campaign_id = create(client, reminder_after_hours=24)["id"]
    client.post(f"/admin/api/campaigns/{campaign_id}/launch", headers=ADMIN)
    run_worker(redis_conn)
    reply(client, "+447700900001", "2")
    with database.session() as session:
        panel.at(session, "phone", "+447700900001").language = "cy"
    before = len(twilio_fake.sends())
    assert reminders.send_reminders(runtime.database(), runtime.settings(), campaign_id) >= 1
    run_worker(redis_conn)
    sent = {s["To"]: s["Body"] for s in twilio_fake.sends()[before:]}
    assert sent["+447700900001"].startswith("Nodyn atgoffa caredig")


def test_someone_in_another_survey_is_invited_when_it_ends(
    client, database, redis_conn, twilio_fake
):
    setup_panel(client, database, opted_out=())
    reply(client, "+447700900001", "TITLE")  # Ann starts the title survey by keyword
    campaign = client.post(
        "/admin/api/campaigns",
        json={
            "survey": "readers-panel-review",
            "audience": {"participants": ["A"]},
            "channel": "sms",
        },
        headers=ADMIN,
    ).json
    client.post(f"/admin/api/campaigns/{campaign['id']}/launch", headers=ADMIN)
    run_worker(redis_conn)
    assert twilio_fake.sends() == []
    assert status(client, campaign["id"])["counts"]["waiting"] == 1
    for text in ["1", "skip", "3", "yes"]:
        reply(client, "+447700900001", text)
    run_worker(redis_conn)
    (invitation,) = twilio_fake.sends()
    assert "Thank you for reading our draft guide" in invitation["Body"]
    assert status(client, campaign["id"])["counts"]["invited"] == 1


def test_an_idle_survey_expires_and_the_waiting_invitation_goes_out(
    client, database, redis_conn, twilio_fake, app_settings
):
    setup_panel(client, database, opted_out=())
    reply(client, "+447700900001", "TITLE")
    campaign = client.post(
        "/admin/api/campaigns",
        json={"survey": "hear-back", "audience": {"participants": ["A"]}, "channel": "sms"},
        headers=ADMIN,
    ).json
    client.post(f"/admin/api/campaigns/{campaign['id']}/launch", headers=ADMIN)
    run_worker(redis_conn)
    result = jobs.reconcile_outbox(now=utcnow() + timedelta(days=8))
    assert result["waiting_invited"] == 1
    run_worker(redis_conn)
    assert len(twilio_fake.sends()) == 1


def test_close_stops_waiting_and_pending_invitations(client, database, redis_conn, twilio_fake):
    setup_panel(client, database, opted_out=())
    campaign_id = create(client)["id"]
    client.post(f"/admin/api/campaigns/{campaign_id}/launch", headers=ADMIN)
    # Close before the worker runs: nothing goes out.
    assert (
        client.post(f"/admin/api/campaigns/{campaign_id}/close", headers=ADMIN).json["status"]
        == "closed"
    )
    run_worker(redis_conn)
    assert twilio_fake.sends() == []
    assert (
        client.post(f"/admin/api/campaigns/{campaign_id}/launch", headers=ADMIN).status_code == 409
    )


def test_answering_after_staff_closed_the_campaign_is_told_it_closed(
    client, database, redis_conn, twilio_fake
):
    """Their answer used to meet the general help, as if we had never asked."""
    setup_panel(client, database)
    campaign_id = create(client)["id"]
    client.post(f"/admin/api/campaigns/{campaign_id}/launch", headers=ADMIN)
    run_worker(redis_conn)
    assert "What made you choose it?" in reply(client, "+447700900001", "2")[0]
    client.post(f"/admin/api/campaigns/{campaign_id}/close", headers=ADMIN)
    (told,) = reply(client, "+447700900001", "Because it is clear")
    assert told == (
        "Sorry, this survey has closed, so we could not use your answer. "
        "Thank you for your help so far."
    )
    # Bob never began: his late "1" is told the same, not given the general help.
    (bob,) = reply(client, "+447700900002", "1")
    assert "This is" not in bob and bob.startswith("Sorry, this survey has closed")


def test_a_lost_fan_out_is_resumed_by_the_reconciler(client, database, redis_conn, twilio_fake):
    setup_panel(client, database)
    campaign_id = create(client)["id"]
    client.post(f"/admin/api/campaigns/{campaign_id}/launch", headers=ADMIN)
    redis_conn.flushdb()  # Redis lost everything
    result = jobs.reconcile_outbox(now=utcnow() + timedelta(minutes=15))
    assert result["fanouts_resumed"] == 1
    run_worker(redis_conn)
    assert len(twilio_fake.sends()) == 2


def test_invitations_are_held_in_quiet_hours(
    client, database, redis_conn, twilio_fake, app_settings
):
    runtime.configure(app_settings.with_overrides(quiet_hours=parse_quiet_hours("00:00-23:59")))
    setup_panel(client, database)
    campaign_id = create(client)["id"]
    client.post(f"/admin/api/campaigns/{campaign_id}/launch", headers=ADMIN)
    run_worker(redis_conn)
    assert twilio_fake.sends() == []
    with database.session() as session:
        held = session.scalars(select(Message).where(Message.kind == "invitation")).all()
        assert len(held) == 2 and all(
            m.status == "pending" and m.send_after > utcnow() for m in held
        )


def test_the_whole_cycle_from_the_shell(client, database, redis_conn, twilio_fake, tmp_path):
    from click.testing import CliRunner

    from bot.commands.cli import main

    setup_panel(client, database, opted_out=())
    runner = CliRunner()
    created = runner.invoke(
        main, ["campaign", "create", "guide-title", "--tag", "readers", "--channel", "sms"]
    )
    assert created.exit_code == 0 and "created (draft) for 4 people" in created.output, (
        created.output
    )
    campaign_id = created.output.split()[1]
    assert runner.invoke(main, ["campaign", "launch", campaign_id]).exit_code == 0
    run_worker(redis_conn)
    assert "was launched already" in runner.invoke(main, ["campaign", "launch", campaign_id]).output
    reply(client, "+447700900001", "1")
    status_out = runner.invoke(main, ["campaign", "status", campaign_id]).output
    assert "invited      3" in status_out and "started      1" in status_out, status_out
    target = tmp_path / "out.csv"
    exported = runner.invoke(main, ["campaign", "export", campaign_id, "-o", str(target)])
    assert exported.exit_code == 0, exported.output
    assert target.read_bytes().startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(target.open(encoding="utf-8-sig")))
    assert rows[0][:3] == ["participant", "channel", "status"] and len(rows) == 5
    assert runner.invoke(main, ["campaign", "close", campaign_id]).exit_code == 0
    assert runner.invoke(main, ["campaign", "status", "999"]).exit_code == 1
    bad = runner.invoke(main, ["campaign", "create", "guide-title"])
    assert bad.exit_code == 2 and "choose the audience" in bad.output


def test_audience_entries_that_cannot_be_ids_match_nobody(client):
    response = client.post(
        "/admin/api/campaigns",
        json={"survey": "guide-title", "audience": {"participants": ["²", "9" * 30, -4]}},
        headers=ADMIN,
    )
    assert response.status_code == 409
    assert response.json["error"].startswith(f"no participant ², {'9' * 30}, -4: check the ids")


def test_a_mistyped_person_in_an_audience_is_named_not_dropped(client, database):
    with database.session() as session:
        panel.person(session, phone="+447700900002", external_id="P002")
    response = client.post(
        "/admin/api/campaigns",
        json={"survey": "guide-title", "audience": {"participants": ["P002", "P0003", "ext:M999"]}},
        headers=ADMIN,
    )
    assert response.status_code == 409
    assert response.json["error"].startswith("no participant P0003, ext:M999: check the ids")


def test_a_campaign_for_nobody_is_refused_with_the_reason(client, database):
    from click.testing import CliRunner

    from bot.commands.cli import main

    empty = client.post(
        "/admin/api/campaigns",
        json={"survey": "guide-title", "audience": {"all": True}},
        headers=ADMIN,
    )
    assert empty.status_code == 409 and "the panel is empty" in empty.json["error"]
    setup_panel(client, database)
    result = CliRunner().invoke(main, ["campaign", "create", "guide-title", "--tag", "nobody"])
    assert result.exit_code == 1 and "nobody has the tag(s) nobody" in result.output, result.output


def test_simulator_people_are_not_in_everyone(client, database):
    from bot.commands import simulate
    from bot.scripts.survey import resolve

    setup_panel(client, database, opted_out=())
    inputs = iter(["1"])
    simulate.run(
        runtime.database(),
        runtime.settings(),
        resolve("guide-title", runtime.settings().conversations_dir),
        "sms",
        lambda: next(inputs, None),
        lambda *_: None,
        name="Sam",
    )
    with database.session() as session:
        assert session.scalar(select(Participant).where(Participant.joined_via == "simulate"))
    everyone = create(client, audience={"all": True})
    assert everyone["audience_size"] == 5


def _without_twilio(app_settings):
    from webhooks import create_app

    off = app_settings.with_overrides(
        twilio_account_sid=None, twilio_auth_token=None, twilio_from_number=None
    )
    runtime.configure(off)
    return create_app({"SETTINGS": off, "TESTING": True}).test_client()


def test_launch_is_refused_while_the_channel_cannot_send_and_works_once_it_can(
    client, database, redis_conn, twilio_fake, app_settings
):
    setup_panel(client, database)
    off_client = _without_twilio(app_settings)
    campaign_id = create(off_client)["id"]
    refused = off_client.post(f"/admin/api/campaigns/{campaign_id}/launch", headers=ADMIN)
    assert refused.status_code == 409, refused.json
    assert "text message is off" in refused.json["error"]
    assert "TWILIO_FROM_NUMBER" in refused.json["error"]
    assert status(off_client, campaign_id)["status"] == "draft"

    from click.testing import CliRunner

    from bot.commands.cli import main

    result = CliRunner().invoke(main, ["campaign", "launch", str(campaign_id)])
    assert result.exit_code == 1 and "TWILIO_ACCOUNT_SID" in result.output, result.output

    runtime.configure(app_settings)
    launched = client.post(f"/admin/api/campaigns/{campaign_id}/launch", headers=ADMIN)
    assert launched.status_code == 202 and launched.json["status"] == "launching"
    run_worker(redis_conn)
    assert len(twilio_fake.sends()) == 2


def test_people_not_reached_because_sms_was_off_are_invited_by_a_later_launch(
    client, database, redis_conn, twilio_fake, app_settings
):
    setup_panel(client, database)
    off_client = _without_twilio(app_settings)
    campaign_id = create(off_client)["id"]
    # A campaign launched before launches were refused: everyone by text was "not reached".
    with database.session() as session:
        session.get(campaigns.Campaign, campaign_id).status = "launching"
    campaigns.fan_out(runtime.database(), runtime.settings(), campaign_id)
    assert status(off_client, campaign_id)["counts"]["not_reached"] == 3
    runtime.configure(app_settings)
    again = client.post(f"/admin/api/campaigns/{campaign_id}/launch", headers=ADMIN)
    assert again.status_code == 202 and again.json["status"] == "launching"
    with database.session() as session:
        # A fan-out in progress again, so the reconciler would resume it if its job were lost.
        assert session.get(campaigns.Campaign, campaign_id).fanout_done_at is None
    run_worker(redis_conn)
    assert sorted(s["To"] for s in twilio_fake.sends()) == ["+447700900001", "+447700900002"]
    counts = status(client, campaign_id)["counts"]
    assert counts["invited"] == 2 and counts["not_reached"] == 1  # Di: Telegram is not built yet
    again = client.post(f"/admin/api/campaigns/{campaign_id}/launch", headers=ADMIN)
    assert again.json["status"] == "launched"
    run_worker(redis_conn)
    assert len(twilio_fake.sends()) == 2


def test_status_shows_invitations_held_by_quiet_hours_and_when_they_go(
    client, database, redis_conn, twilio_fake, app_settings
):
    from click.testing import CliRunner

    from bot.commands.cli import main

    quiet = app_settings.with_overrides(quiet_hours=parse_quiet_hours("00:00-23:59"))
    runtime.configure(quiet)
    setup_panel(client, database)
    campaign_id = create(client)["id"]
    client.post(f"/admin/api/campaigns/{campaign_id}/launch", headers=ADMIN)
    run_worker(redis_conn)
    assert twilio_fake.sends() == []
    shown = status(client, campaign_id)
    assert shown["counts"]["invited"] == 2
    held = shown["held"]
    assert held["messages"] == 2 and held["reason"] == "quiet hours", held
    assert "T23:59:00" in held["until"], held  # the end of the window, local time
    assert held["quiet_hours"] == "00:00-23:59" and held["timezone"] == "Europe/London"
    out = CliRunner().invoke(main, ["campaign", "status", str(campaign_id)]).output
    assert "held         2 until 23:59" in out and "quiet hours 00:00-23:59" in out, out


def test_nothing_held_shows_zero(client, database, redis_conn, twilio_fake):
    setup_panel(client, database)
    campaign_id = create(client)["id"]
    client.post(f"/admin/api/campaigns/{campaign_id}/launch", headers=ADMIN)
    run_worker(redis_conn)
    assert status(client, campaign_id)["held"]["messages"] == 0


def test_closing_a_campaign_ends_its_conversations_and_the_next_campaign_goes_out(
    client, database, redis_conn, twilio_fake
):
    from bot.storage.models import Conversation

    setup_panel(client, database, opted_out=())
    first = create(client, audience={"participants": ["A"]}, channel="sms")["id"]
    client.post(f"/admin/api/campaigns/{first}/launch", headers=ADMIN)
    run_worker(redis_conn)
    second = create(client, survey="hear-back", audience={"participants": ["A"]}, channel="sms")[
        "id"
    ]
    client.post(f"/admin/api/campaigns/{second}/launch", headers=ADMIN)
    run_worker(redis_conn)
    assert status(client, second)["counts"]["waiting"] == 1
    closed = client.post(f"/admin/api/campaigns/{first}/close", headers=ADMIN)
    assert closed.json["conversations_ended"] == 1
    run_worker(redis_conn)
    assert len(twilio_fake.sends()) == 2
    assert status(client, second)["counts"]["invited"] == 1
    with database.session() as session:
        statuses = {c.campaign_id: c.status for c in session.scalars(select(Conversation))}
    assert statuses == {first: "expired", second: "active"}


def test_the_reminder_is_scheduled_for_when_it_is_due(client, database, redis_conn, twilio_fake):
    """Not only that one is scheduled: that it comes reminder_after_hours after the start."""
    setup_panel(client, database, opted_out=())
    start = utcnow() + timedelta(hours=3)
    campaign_id = create(client, reminder_after_hours=24, send_at=start.isoformat())["id"]
    client.post(f"/admin/api/campaigns/{campaign_id}/launch", headers=ADMIN)
    registry = ScheduledJobRegistry("involve", connection=redis_conn)
    due = sorted(
        (registry.get_scheduled_time(job_id), Job.fetch(job_id, connection=redis_conn).func_name)
        for job_id in registry.get_job_ids()
    )
    assert [name for _, name in due] == [
        "bot.commands.jobs.fan_out",
        "bot.commands.jobs.send_reminders",
    ]
    assert abs((due[0][0] - start).total_seconds()) < 2
    assert abs((due[1][0] - (start + timedelta(hours=24))).total_seconds()) < 2
    # And the reconciler, standing in for a lost job, does not send it a moment early.
    run_worker(redis_conn)
    assert jobs.reconcile_outbox(now=start + timedelta(hours=23, minutes=50))["reminders_sent"] == 0


def test_skipped_answers_are_not_counted_in_summaries(database, app_settings):
    from bot import conversations
    from bot.conversations import inbox
    from bot.cycle import exports, feedback
    from bot.engine import Reply
    from bot.engine.keywords import Command
    from bot.scripts.survey import load_text
    from bot.storage.models import Campaign

    survey = load_text(
        """
id: format
title: Formats
questions:
  - id: format
    type: choice
    optional: true
    ask: Which format?
    options:
      - {value: printed, label: Printed}
      - {value: online, label: Online}
""",
        "format.yaml",
    )
    now = utcnow()
    with database.session() as session:
        version = conversations.survey_version(session, survey)
        campaign = Campaign(
            survey_id=survey.id, survey_version_id=version.id, status="launched", audience={}
        )
        session.add(campaign)
        session.flush()
        people = []
        for n in range(3):
            person = panel.person(session, name=f"P{n}", phone=f"+4477009001{n}0")
            conversations.start_conversation(
                session, person, survey, "sms", now, "us", campaign_id=campaign.id
            )
            people.append(person.id)
        campaign_id = campaign.id
    for person_id, said in zip(people, ["1", "1", "SKIP"], strict=True):
        inbound = Command.SKIP if said == "SKIP" else Reply(said)
        received = inbox.Received("sms", said, inbound, participant_id=person_id)
        assert inbox.receive(database, app_settings, received, now).status == inbox.PROCESSED
    with database.session() as session:
        campaign = session.get(Campaign, campaign_id)
        (question,) = exports.summary(session, campaign)["questions"]
        assert question["answered"] == 2
        printed = next(o for o in question["options"] if o["value"] == "printed")
        assert (printed["count"], printed["percent"]) == (2, 100.0)
        said = str(feedback.summaries(session, campaign)["format"])
        assert said == "Printed was chosen by 100% of 2 people"


def test_a_campaign_resumes_after_redis_restarts_empty_mid_send(
    client, database, redis_conn, twilio_fake, app_settings
):
    """Redis lost everything while invitations were going out, and one send was in flight when
    the worker died: within two minutes the reconciler brings every invitation out, once."""
    people = [
        {"name": f"P{n}", "phone": f"+4477009002{n:02d}", "tags": ["readers"]} for n in range(30)
    ]
    client.post("/admin/api/participants", json={"participants": people}, headers=ADMIN)
    campaign_id = create(client)["id"]
    client.post(f"/admin/api/campaigns/{campaign_id}/launch", headers=ADMIN)
    db = runtime.database()
    campaigns.fan_out(db, app_settings, campaign_id)
    with database.session() as session:
        ids = session.scalars(
            select(Message.id).where(Message.kind == "invitation").order_by(Message.id)
        ).all()
    assert len(ids) == 30
    send.send_batch(db, redis_conn, app_settings, ids[:10])  # ten went out
    # The eleventh was handed to Twilio, then the worker died before it wrote that down.
    sent = send._Planned(ids[10], "sms", "", "", "invitation", 0)
    with database.session() as session:
        row = session.get(Message, ids[10])
        sent.address, sent.body = row.address, row.body
    assert send._claim(db, ids[10])
    send._sender(app_settings, "sms").send(Outgoing(ids[10], sent.address, sent.body, "invitation"))
    redis_conn.flushdb()  # and Redis restarted empty: the jobs for the rest are gone
    assert len(twilio_fake.sends()) == 11
    later = utcnow() + timedelta(minutes=2)
    result = jobs.reconcile_outbox(now=later)
    assert result["requeued"] == 19 and result["settled"] == 1 and result["resent"] == 0
    run_worker(redis_conn)
    to = [s["To"] for s in twilio_fake.sends()]
    assert len(to) == 30 and len(set(to)) == 30  # everybody, nobody twice
    assert status(client, campaign_id)["counts"]["invited"] == 30


def test_unreadable_words_and_questions_not_asked_are_shown_as_such_in_the_export(
    client, database, redis_conn, twilio_fake
):
    # Issue 13: after two misses the words are kept for staff, never stored as the answer.
    setup_panel(client, database)
    with database.session() as session:
        ann = session.scalars(select(Participant).where(Participant.external_id == "A")).one()
        ann.language = "cy"
    campaign_id = create(client, survey="readers-panel-review")["id"]
    client.post(f"/admin/api/campaigns/{campaign_id}/launch", headers=ADMIN)
    run_worker(redis_conn)
    reply(client, "+447700900002", "purple")
    reply(client, "+447700900002", "mauve")  # tone: unreadable; tone-why rests on it
    reply(client, "+447700900001", "3")  # hard to follow
    reply(client, "+447700900001", "Rhy hir")  # in Welsh, their own words
    raw = client.get(f"/admin/api/campaigns/{campaign_id}/responses.csv", headers=ADMIN)
    rows = list(csv.reader(io.StringIO(raw.get_data().decode("utf-8-sig"))))
    header, by_person = rows[0], {r[0]: dict(zip(rows[0], r, strict=True)) for r in rows[1:]}
    assert header[5:7] == ["tone", "tone-why"]
    assert by_person["ext:B"]["tone"] == "(unreadable: mauve)"
    assert by_person["ext:B"]["tone-why"] == "(not asked: no usable answer to tone)"
    assert by_person["ext:A"]["tone"] == "Hard to follow"  # stored in the staff language
    assert by_person["ext:A"]["tone-why"] == "[cy] Rhy hir"
    summary = client.get(f"/admin/api/campaigns/{campaign_id}/summary", headers=ADMIN).json
    tone = next(q for q in summary["questions"] if q["id"] == "tone")
    assert tone["other"] == ["mauve"]
    assert all(o["count"] == 0 for o in tone["options"] if o["value"] != "hard")


def test_a_survey_with_more_answers_than_keys_cannot_go_by_call(client, database, tmp_path):
    from bot.scripts.survey import load_text

    options = "".join(f"      - {{value: o{i}, label: Option {i}}}\n" for i in range(10))
    long_list = load_text(
        f"id: long\ntitle: t\nquestions:\n  - id: q\n    type: choice\n    ask: Pick\n    options:\n{options}",
        "long.yaml",
    )
    setup_panel(client, database)
    with (
        database.session() as session,
        pytest.raises(campaigns.CampaignError, match="cannot go by voice: a question offers 10"),
    ):
        campaigns.create(
            session,
            {"survey": "long", "audience": {"tags": ["readers"]}, "channel": "voice"},
            {"long": long_list},
            runtime.settings(),
        )


def test_someone_whose_own_channel_cannot_carry_the_survey_is_skipped_with_the_reason(
    client, database, app_settings
):
    from bot.scripts.survey import load_text
    from bot.storage.models import Invitation

    options = "".join(f"      - {{value: o{i}, label: Option {i}}}\n" for i in range(10))
    long_list = load_text(
        f"id: long\ntitle: t\nquestions:\n  - id: q\n    type: choice\n    ask: Pick\n    options:\n{options}",
        "long.yaml",
    )
    people = [
        {"name": "Di", "phone": "07700 900301", "channel": "voice", "tags": ["calls"]},
        {"name": "Ed", "phone": "07700 900302", "channel": "sms", "tags": ["calls"]},
    ]
    client.post("/admin/api/participants", json={"participants": people}, headers=ADMIN)
    with database.session() as session:
        campaign, _ = campaigns.create(
            session,
            {"survey": "long", "audience": {"tags": ["calls"]}, "channel": None},
            {"long": long_list},
            app_settings,
        )
        campaigns.launch(session, campaign, app_settings)
        campaign_id = campaign.id
    campaigns.fan_out(runtime.database(), app_settings, campaign_id)
    with database.session() as session:
        outcome = sorted((i.status, i.reason or "") for i in session.scalars(select(Invitation)))
    assert outcome[0] == ("invited", "")
    assert outcome[1][0] == "skipped" and "offers 10 answers" in outcome[1][1]


def test_tags_are_one_tag_whatever_their_case(client, database):
    from webhooks.console.queries import all_tags

    rows = {
        "participants": [
            {"phone": "07700 900141", "tags": ["Readers"]},
            {"phone": "07700 900142", "tags": ["readers"]},
            {"phone": "07700 900143", "tags": ["focus"]},
        ]
    }
    client.post("/admin/api/participants", json=rows, headers=ADMIN)
    again = {"participants": [{"phone": "07700 900141", "tags": ["READERS"]}]}
    assert client.post("/admin/api/participants", json=again, headers=ADMIN).json["unchanged"] == 1
    for spelled in ("readers", "Readers"):
        made = client.post(
            "/admin/api/campaigns",
            json={"survey": "guide-title", "audience": {"tags": [spelled]}},
            headers=ADMIN,
        ).json
        assert made["audience_size"] == 2, spelled
    with database.session() as session:
        assert all_tags(session) == ["focus", "Readers"]


def test_a_launch_while_redis_is_away_stands_and_says_so(client, database, app_settings):
    from bot.commands import runtime
    from webhooks import create_app

    setup_panel(client, database, opted_out=())
    campaign_id = create(client)["id"]
    away = app_settings.with_overrides(redis_url="redis://127.0.0.1:1/0")  # nothing listens
    runtime.configure(away)
    try:
        response = (
            create_app({"SETTINGS": away})
            .test_client()
            .post(f"/admin/api/campaigns/{campaign_id}/launch", headers=ADMIN)
        )
    finally:
        runtime.configure(app_settings)
    assert response.status_code == 202
    assert response.json == {"id": campaign_id, "status": "launching", "queued": False}


def test_campaigns_are_listed_newest_first_by_the_api_and_the_cli(client, database):
    from click.testing import CliRunner

    from bot.commands.cli import main

    assert client.get("/admin/api/campaigns", headers=ADMIN).json == []
    setup_panel(client, database, opted_out=())
    first, second = create(client)["id"], create(client)["id"]
    listed = client.get("/admin/api/campaigns", headers=ADMIN).json
    assert [c["id"] for c in listed] == [second, first]
    assert listed[0]["survey"] == "guide-title" and listed[0]["status"] == "draft"
    shown = CliRunner().invoke(main, ["campaign", "list"])
    assert shown.exit_code == 0 and shown.output.splitlines()[0].split()[:3] == [
        str(second),
        "guide-title",
        "draft",
    ]


def test_erasing_someone_is_not_counted_as_opting_out(client, database, redis_conn):
    setup_panel(client, database, opted_out=())
    campaign_id = create(client)["id"]
    client.post(f"/admin/api/campaigns/{campaign_id}/launch", headers=ADMIN)
    run_worker(redis_conn)
    for text in ["1", "Because it is clear", "4", "no"]:
        reply(client, "+447700900001", text)  # Ann finishes
    reply(client, "+447700900003", "STOP")  # Cy stops
    assert status(client, campaign_id)["counts"]["opted_out"] == 1
    assert client.delete("/admin/api/participants/A", headers=ADMIN).status_code == 200
    assert client.delete("/admin/api/participants/C", headers=ADMIN).status_code == 200
    counts = status(client, campaign_id)["counts"]
    assert counts["opted_out"] == 1  # Cy, who said STOP; not Ann, who was erased
    summary = client.get(f"/admin/api/campaigns/{campaign_id}/summary", headers=ADMIN).json
    why = next(q for q in summary["questions"] if q["id"] == "why")
    assert (why["answered"], why["answers"], why["removed"]) == (1, [], 1)
