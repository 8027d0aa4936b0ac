"""WhatsApp over Twilio, a channel plug-in: against the local fake of Twilio's API, with
inbound messages signed as Twilio signs them."""

from __future__ import annotations

import dataclasses
import json
import shutil
import uuid
import xml.etree.ElementTree as ET
from datetime import timedelta
from pathlib import Path

import pytest
from redis import Redis
from sqlalchemy import func, select

from bot import channels
from bot.commands import runtime
from bot.config import ConfigError
from bot.storage.models import Answer, ContactPoint, Message, Participant, utcnow
from tests.conftest import ADMIN, CONVERSATIONS, PUBLIC, app_env, run_worker
from tests.fakes import FakeTwilio, Scripted, post_twilio

PATH = "/webhooks/twilio/whatsapp"
SENDER = "whatsapp:+441234567899"
INVITATION = "HX" + "1" * 32
REMINDER = "HX" + "2" * 32
ANN = "whatsapp:+447700900123"


@pytest.fixture
def conversations_dir(tmp_path: Path) -> Path:
    """The usual scripts, with guide-title naming its WhatsApp templates."""
    folder = tmp_path / "conversations"
    shutil.copytree(CONVERSATIONS, folder)
    script = folder / "guide-title.yaml"
    script.write_text(
        script.read_text(encoding="utf-8")
        + f"channels:\n  whatsapp: {{invitation: {INVITATION}, variables: [name, org]}}\n",
        encoding="utf-8",
    )
    (folder / "travel.yaml").write_text(TRAVEL, encoding="utf-8")
    return folder


def _options(*labels: str) -> str:
    return "".join(f"      - {{value: {label.lower()}, label: {label}}}\n" for label in labels)


# Closed questions of every size: 3 answers, 6, 12, a labelled 1-5 scale, a yes/no.
TRAVEL = (
    "id: travel\ntitle: How you travel\nkeyword: TRAVEL\n"
    'intro: "Hello {{ name }}. A few quick questions about getting to the club."\n'
    "questions:\n"
    "  - id: how\n    type: choice\n    ask: How do you get to the club?\n    options:\n"
    + _options("Bus", "Car", "Walking")
    + "  - id: day\n    type: choice\n    ask: Which day suits you best?\n    options:\n"
    + _options("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
    + "  - id: area\n    type: choice\n    ask: Where do you live?\n    options:\n"
    + _options(*(f"Area{n}" for n in range(1, 13)))
    + "  - id: useful\n    type: scale\n    ask: How useful is the club?\n    min: 1\n"
    "    max: 5\n    labels: {1: Not useful, 5: Very useful}\n"
    "  - id: again\n    type: yesno\n    ask: Would you come again?\n"
    "outro: Thank you.\n"
    f"channels:\n  whatsapp: {{invitation: {INVITATION}}}\n"
)


@pytest.fixture(autouse=True)
def no_content_known():
    """Each test starts with no content SIDs known to this process, as a new worker does."""
    from bot.channels.whatsapp.sender import LIBRARY

    LIBRARY.forget()
    yield
    LIBRARY.forget()


@pytest.fixture
def app_settings(database, redis_conn, redis_url, twilio_fake, tmp_path, conversations_dir):
    env = app_env(
        database.url,
        redis_url,
        twilio_fake.url,
        tmp_path,
        CONVERSATIONS_DIR=str(conversations_dir),
        TWILIO_WHATSAPP_FROM="whatsapp:+44 1234 567899",
        WHATSAPP_REMINDER_TEMPLATE=REMINDER,
    )
    current = channels.load_settings(env)
    runtime.configure(current)
    yield current
    runtime.configure(current)


def whatsapp_params(body: str, sender: str = ANN, sid: str | None = None) -> dict[str, str]:
    """What Twilio posts for an inbound WhatsApp message."""
    sid = sid or "SM" + uuid.uuid4().hex
    return {
        "SmsMessageSid": sid,
        "NumMedia": "0",
        "ProfileName": "Ann",
        "MessageType": "text",
        "SmsSid": sid,
        "WaId": sender.removeprefix("whatsapp:+"),
        "SmsStatus": "received",
        "Body": body,
        "To": SENDER,
        "NumSegments": "1",
        "ReferralNumMedia": "0",
        "MessageSid": sid,
        "AccountSid": "AC" + "0" * 32,
        "From": sender,
        "ApiVersion": "2010-04-01",
    }


def write(client, body: str, sender: str = ANN, **kwargs):
    return post_twilio(client, PUBLIC, PATH, whatsapp_params(body, sender), **kwargs)


def said_back(
    client, redis_conn: Redis, twilio_fake: FakeTwilio, body: str, sender: str = ANN, **tapped
) -> list[dict[str, str]]:
    """What we send back to what they wrote (or tapped: `ButtonPayload`, `ListId`...): words
    alone in the TwiML answer (as `{"Body": ..., "inline": "yes"}`), buttons and lists through
    the outbox and the sender; never both for one message."""
    before = len(messages_to_twilio(twilio_fake))
    response = post_twilio(client, PUBLIC, PATH, {**whatsapp_params(body, sender), **tapped})
    inline = [{"Body": text, "inline": "yes"} for text in replies(response)]
    run_worker(redis_conn)
    sent = messages_to_twilio(twilio_fake)[before:]
    assert not (inline and sent), (inline, sent)
    return inline or sent


def last_answer(database, question_id: str) -> Answer:
    with database.session() as session:
        return session.scalars(select(Answer).where(Answer.question_id == question_id)).one()


def replies(response) -> list[str]:
    assert response.status_code == 200, response.data
    return [m.text or "" for m in ET.fromstring(response.data).findall("Message")]


def import_ann(client, **fields) -> None:
    row = {"name": "Ann Jones", "whatsapp": "07700 900123", "tags": ["readers"], **fields}
    report = client.post("/admin/api/participants", json={"participants": [row]}, headers=ADMIN)
    assert report.json["created"] == 1, report.json


def launch(client, redis_conn: Redis) -> int:
    body = {"survey": "guide-title", "audience": {"tags": ["readers"]}, "channel": "whatsapp"}
    campaign = client.post("/admin/api/campaigns", json=body, headers=ADMIN).json
    assert (
        client.post(f"/admin/api/campaigns/{campaign['id']}/launch", headers=ADMIN).status_code
        == 202
    )
    run_worker(redis_conn)  # fan-out, then the invitations
    run_worker(redis_conn)
    return int(campaign["id"])


def messages_to_twilio(twilio_fake: FakeTwilio) -> list[dict[str, str]]:
    return [f for f in twilio_fake.sends() if "To" in f]


def point(database, channel: str = "whatsapp") -> ContactPoint:
    with database.session() as session:
        return session.scalars(select(ContactPoint).where(ContactPoint.channel == channel)).one()


# --- addresses and settings -----------------------------------------------------------------


def test_addresses_are_whatsapp_numbers_however_written():
    whatsapp = channels.get("whatsapp")
    for written in [
        "07700 900123",
        "+44 7700 900123",
        "whatsapp:+447700900123",
        "WhatsApp:07700900123",
    ]:
        assert whatsapp.normalise(written) == ANN
    with pytest.raises(channels.InvalidAddress):
        whatsapp.normalise("whatsapp:not a number")
    assert len(ANN) == 22 <= whatsapp.max_address_length


def test_panel_import_gives_a_whatsapp_contact_point(client, database):
    csv = "name,whatsapp,phone,tags\nAnn Jones,07700 900123,,readers\nBob,07700 900456,07700 900456,\n"
    report = client.post(
        "/admin/api/participants", data=csv.encode(), headers={**ADMIN, "Content-Type": "text/csv"}
    ).json
    assert (report["created"], report["rejected"]) == (2, [])
    with database.session() as session:
        rows = session.execute(
            select(Participant.name, ContactPoint.channel, ContactPoint.address)
            .join(ContactPoint, ContactPoint.participant_id == Participant.id)
            .order_by(Participant.name, ContactPoint.position)
        ).all()
    assert ("Ann Jones", "whatsapp", ANN) in rows
    assert ("Bob", "whatsapp", "whatsapp:+447700900456") in rows
    assert ("Bob", "sms", "+447700900456") in rows
    assert not any(name == "Ann Jones" and channel == "sms" for name, channel, _ in rows)


def test_whatsapp_is_on_with_its_sender_and_says_what_to_set_without(app_settings, database):
    from bot.config import load_settings

    assert channels.states(app_settings)["whatsapp"] == "on"
    bare = load_settings({"DATABASE_URL": database.url})
    assert channels.states(bare)["whatsapp"].startswith("off: set TWILIO_ACCOUNT_SID")


@pytest.mark.parametrize(
    ("env", "said"),
    [
        ({"TWILIO_WHATSAPP_FROM": "whatsapp:nobody"}, "TWILIO_WHATSAPP_FROM must be"),
        ({"WHATSAPP_INVITATION_TEMPLATE": "hello"}, "WHATSAPP_INVITATION_TEMPLATE must be"),
        ({"TWILIO_WHATSAPP_MESSAGING_SERVICE_SID": "MG1"}, "TWILIO_WHATSAPP_MESSAGING_SERVICE_SID"),
        ({"WHATSAPP_TEMPLATE_VARIABLES": "name,age"}, "WHATSAPP_TEMPLATE_VARIABLES 'age'"),
    ],
)
def test_a_bad_whatsapp_setting_fails_at_start_in_one_line(env, said, tmp_path):
    base = {"INVOLVE_INSTANCE_PATH": str(tmp_path)}
    with pytest.raises(ConfigError, match=said) as caught:
        channels.load_settings({**base, **env})
    assert "\n" not in str(caught.value)


def test_lint_checks_a_scripts_whatsapp_options(tmp_path, conversations_dir):
    from bot.cycle.lint import lint_file

    assert lint_file(conversations_dir / "guide-title.yaml").errors == []
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "id: bad\ntitle: t\nquestions:\n  - {id: a, type: yesno, ask: 'A?'}\n"
        "channels:\n  whatsapp: {invitation: nope, variables: [age], colour: blue}\n",
        encoding="utf-8",
    )
    errors = lint_file(bad).errors
    assert any("channels.whatsapp: invitation: must be an approved template" in e for e in errors)
    assert any("channels.whatsapp: variables: 'age' is not one of" in e for e in errors)
    assert any("channels.whatsapp: unknown option 'colour'" in e for e in errors)


# --- inbound ----------------------------------------------------------------------------------


def test_a_signed_whatsapp_message_is_answered_inline_as_free_text(client, database):
    import_ann(client)
    (reply,) = replies(write(client, "TITLE"))
    assert reply.startswith("Hello Ann. Could you help us choose a title")
    assert "1 for" in reply or "1 - " in reply  # answers too long for buttons: numbered
    (reply,) = replies(write(client, "2"))
    assert "What made you choose it?" in reply
    with database.session() as session:
        person = session.scalars(select(Participant)).one()
        assert person.name == "Ann Jones"  # the imported person, found by Twilio's From
        rows = session.scalars(select(Message).order_by(Message.id)).all()
        assert {m.channel for m in rows} == {"whatsapp"}
        assert [(m.direction, m.address) for m in rows[:2]] == [("in", ANN), ("out", ANN)]
    assert point(database).last_inbound_at is not None


def test_a_forged_whatsapp_message_is_refused_and_nothing_is_stored(client, database):
    response = write(client, "TITLE", token="not-the-auth-token")
    assert response.status_code == 403
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(Message)) == 0
        assert session.scalar(select(func.count()).select_from(Participant)) == 0


def test_stop_by_whatsapp_opts_them_out(client, database, redis_conn, twilio_fake):
    import_ann(client)
    said_back(client, redis_conn, twilio_fake, "TITLE")
    (confirm,) = said_back(client, redis_conn, twilio_fake, "STOP")
    assert "You will not hear from Age Better again" in confirm["Body"]
    with database.session() as session:
        assert session.scalars(select(Participant)).one().opted_out


# --- outbound -------------------------------------------------------------------------------


def test_an_invitation_outside_the_window_goes_as_the_surveys_template(
    client, database, redis_conn, twilio_fake
):
    import_ann(client)
    launch(client, redis_conn)
    (sent,) = messages_to_twilio(twilio_fake)
    assert (sent["To"], sent["From"], sent["ContentSid"]) == (ANN, SENDER, INVITATION)
    assert json.loads(sent["ContentVariables"]) == {"1": "Ann", "2": "Age Better"}
    assert "Body" not in sent
    assert sent["StatusCallback"].startswith(f"{PUBLIC}/webhooks/twilio/status?m=")
    with database.session() as session:
        invitation = session.scalars(select(Message).where(Message.kind == "invitation")).one()
        assert (invitation.channel, invitation.status) == ("whatsapp", "queued")


def test_an_invitation_inside_the_window_goes_as_free_text(
    client, database, redis_conn, twilio_fake
):
    import_ann(client)
    said_back(client, redis_conn, twilio_fake, "Hello")  # they wrote to us: the window is open
    before = len(messages_to_twilio(twilio_fake))
    launch(client, redis_conn)
    (sent,) = messages_to_twilio(twilio_fake)[before:]
    assert sent["To"] == ANN and "ContentSid" not in sent
    assert sent["Body"].startswith("Hello Ann. Could you help us choose a title")


def test_outside_the_window_after_all_63016_sends_the_template(
    client, database, redis_conn, twilio_fake
):
    import_ann(client)
    said_back(client, redis_conn, twilio_fake, "Hello")
    before = len(messages_to_twilio(twilio_fake))
    twilio_fake.script.append(Scripted(status=400, code=63016, message="Outside window"))
    launch(client, redis_conn)
    first, second = messages_to_twilio(twilio_fake)[before:]
    assert "Body" in first and "ContentSid" not in first
    assert second["ContentSid"] == INVITATION and "Body" not in second
    with database.session() as session:
        invitation = session.scalars(select(Message).where(Message.kind == "invitation")).one()
        assert invitation.status == "queued" and invitation.attempts == 1


def test_a_reminder_outside_the_window_uses_the_setting_template(
    client, database, redis_conn, twilio_fake, app_settings
):
    from bot.cycle import reminders

    import_ann(client)
    body = {
        "survey": "guide-title",
        "audience": {"tags": ["readers"]},
        "channel": "whatsapp",
        "reminder_after_hours": 1,
    }
    campaign = client.post("/admin/api/campaigns", json=body, headers=ADMIN).json
    client.post(f"/admin/api/campaigns/{campaign['id']}/launch", headers=ADMIN)
    run_worker(redis_conn)
    run_worker(redis_conn)
    with database.session() as session:
        session.execute(Message.__table__.update().values(created_at=utcnow() - timedelta(hours=2)))
    reminders.send_reminders(runtime.database(), app_settings, campaign["id"])
    run_worker(redis_conn)
    sent = messages_to_twilio(twilio_fake)
    assert [s.get("ContentSid") for s in sent] == [INVITATION, REMINDER]
    assert json.loads(sent[1]["ContentVariables"]) == {"1": "Ann", "2": "Age Better"}


def test_outside_the_window_with_no_template_fails_saying_what_to_set(
    client, database, redis_conn, twilio_fake, conversations_dir, app_settings
):
    from bot.cycle import campaigns

    script = conversations_dir / "guide-title.yaml"
    script.write_text(script.read_text().split("channels:")[0], encoding="utf-8")
    import_ann(client)
    write(client, "Hello")  # she wrote today: the launch needs no template, and goes
    run_worker(redis_conn)  # (what we said back has gone, where it goes by the outbox)
    before = len(messages_to_twilio(twilio_fake))
    body = {"survey": "guide-title", "audience": {"tags": ["readers"]}, "channel": "whatsapp"}
    campaign = client.post("/admin/api/campaigns", json=body, headers=ADMIN).json
    launched = client.post(f"/admin/api/campaigns/{campaign['id']}/launch", headers=ADMIN)
    assert launched.status_code == 202, launched.json
    campaigns.fan_out(runtime.database(), app_settings, campaign["id"])  # not yet sent
    # The window closed before the invitation went (held, say, through quiet hours).
    with database.session() as session:
        session.execute(
            ContactPoint.__table__.update().values(last_inbound_at=utcnow() - timedelta(days=2))
        )
    run_worker(redis_conn)
    assert messages_to_twilio(twilio_fake)[before:] == []
    with database.session() as session:
        invitation = session.scalars(select(Message).where(Message.kind == "invitation")).one()
        assert invitation.status == "failed"
        assert "channels.whatsapp.invitation" in invitation.error_message
        assert "WHATSAPP_INVITATION_TEMPLATE" in invitation.error_message


def test_a_launch_with_no_template_for_people_outside_the_window_is_refused(
    client, database, redis_conn, twilio_fake, conversations_dir
):
    from click.testing import CliRunner

    from bot.commands.cli import main

    script = conversations_dir / "guide-title.yaml"
    script.write_text(script.read_text().split("channels:")[0], encoding="utf-8")
    import_ann(client)
    body = {"survey": "guide-title", "audience": {"tags": ["readers"]}, "channel": "whatsapp"}
    campaign = client.post("/admin/api/campaigns", json=body, headers=ADMIN).json
    refused = client.post(f"/admin/api/campaigns/{campaign['id']}/launch", headers=ADMIN)
    assert refused.status_code == 409, refused.json
    said = refused.json["error"]
    assert said.startswith("cannot launch: WhatsApp: no approved invitation template: set ")
    assert "channels.whatsapp.invitation in the script or WHATSAPP_INVITATION_TEMPLATE" in said
    assert "1 of the 1 to invite have not written to us on WhatsApp within 24 hours" in said
    result = CliRunner().invoke(main, ["campaign", "launch", str(campaign["id"])])
    assert result.exit_code == 1, result.output
    assert "no approved invitation template" in result.output
    assert "WHATSAPP_INVITATION_TEMPLATE" in result.output
    with database.session() as session:
        assert session.scalars(select(Message)).all() == []
    assert (
        client.get(f"/admin/api/campaigns/{campaign['id']}", headers=ADMIN).json["status"]
        == "draft"
    )


# --- a template is not the question -----------------------------------------------------------


def with_invitation_setting(app_settings):
    """A client (and a worker) with WHATSAPP_INVITATION_TEMPLATE set."""
    from webhooks import create_app

    own = app_settings.channels["whatsapp"]
    templates = {**own.templates, "invitation": INVITATION}
    current = app_settings.with_overrides(
        channels={
            **app_settings.channels,
            "whatsapp": dataclasses.replace(own, templates=templates),
        }
    )
    runtime.configure(current)
    return create_app({"SETTINGS": current, "TESTING": True}).test_client()


def launch_survey(client, redis_conn: Redis, survey: str, **extra) -> int:
    body = {"survey": survey, "audience": {"tags": ["readers"]}, "channel": "whatsapp", **extra}
    campaign = client.post("/admin/api/campaigns", json=body, headers=ADMIN).json
    launched = client.post(f"/admin/api/campaigns/{campaign['id']}/launch", headers=ADMIN)
    assert launched.status_code == 202, launched.json
    run_worker(redis_conn)  # fan-out, then the invitations
    run_worker(redis_conn)
    return int(campaign["id"])


def answered(database) -> list[tuple[str, str | None]]:
    from bot.storage.models import Answer

    with database.session() as session:
        return [
            (a.question_id, a.value) for a in session.scalars(select(Answer).order_by(Answer.id))
        ]


def said_last(database) -> str:
    """What we said back to the person's latest message, however it goes."""
    with database.session() as session:
        latest = session.scalar(select(func.max(Message.id)).where(Message.direction == "in"))
        return "\n".join(
            m.body or ""
            for m in session.scalars(
                select(Message)
                .where(Message.direction == "out", Message.kind == "reply", Message.id > latest)
                .order_by(Message.id)
            )
        )


def test_yes_to_a_template_invitation_begins_the_survey_and_is_not_its_consent(
    client, database, redis_conn, twilio_fake, app_settings
):
    from bot.storage.models import ConsentEvent

    # hear-back asks for consent first; its invitation goes as WHATSAPP_INVITATION_TEMPLATE,
    # which names the survey and asks nothing.
    client = with_invitation_setting(app_settings)
    import_ann(client)
    launch_survey(client, redis_conn, "hear-back")
    (sent,) = messages_to_twilio(twilio_fake)
    assert sent["ContentSid"] == INVITATION and "Body" not in sent
    assert write(client, "Yes").status_code == 200
    assert answered(database) == []
    with database.session() as session:
        ann = session.scalars(select(Participant)).one()
        assert ann.recontact is None
        assert session.scalars(select(ConsentEvent)).all() == []
    shown = said_last(database)
    assert "we like to tell you what changed" in shown  # the intro she has not seen
    assert "May we send you a short message about what we did" in shown
    # Now she has seen it: her yes is her answer.
    assert write(client, "Yes").status_code == 200
    assert answered(database) == [("recontact", "yes")]
    with database.session() as session:
        assert session.scalars(select(Participant)).one().recontact is True
    assert "How would you like to hear from us?" in said_last(database)


def test_a_reply_while_the_template_is_being_handed_over_is_not_its_answer(
    client, database, redis_conn, twilio_fake, app_settings
):
    # Her "Yes" comes before the send's result is written: the conversation was marked as
    # the invitation was claimed, so it meets the mark all the same.
    client = with_invitation_setting(app_settings)
    import_ann(client)
    during: list[int] = []
    twilio_fake.script.append(
        Scripted(on_receive=lambda: during.append(write(client, "Yes").status_code))
    )
    launch_survey(client, redis_conn, "hear-back")
    assert during == [200]
    assert answered(database) == []
    assert "May we send you a short message" in said_last(database)


def test_after_a_reminder_template_the_next_reply_is_shown_the_waiting_question(
    client, database, redis_conn, twilio_fake, app_settings
):
    from bot.cycle import reminders

    import_ann(client)
    campaign_id = launch_survey(client, redis_conn, "guide-title", reminder_after_hours=1)
    for body in ["Yes", "2"]:  # shown the opening, then her answer to the first question
        write(client, body)
    assert answered(database) == [("title", "your-health")]
    assert "What made you choose it?" in said_last(database)
    # Two days on, the window has closed: the reminder goes as its template.
    with database.session() as session:
        session.execute(
            ContactPoint.__table__.update().values(last_inbound_at=utcnow() - timedelta(days=2))
        )
    reminders.send_reminders(runtime.database(), app_settings, campaign_id)
    run_worker(redis_conn)
    assert messages_to_twilio(twilio_fake)[-1]["ContentSid"] == REMINDER
    write(client, "Yes")  # to the reminder: not her reason for choosing a title
    assert answered(database) == [("title", "your-health")]
    assert "What made you choose it?" in said_last(database)
    write(client, "It says what the guide is for")
    assert answered(database) == [
        ("title", "your-health"),
        ("why", "It says what the guide is for"),
    ]


def test_stop_in_reply_to_a_template_invitation_stops(client, database, redis_conn, twilio_fake):
    from bot.storage.models import Conversation

    import_ann(client)
    launch(client, redis_conn)
    assert messages_to_twilio(twilio_fake)[0]["ContentSid"] == INVITATION
    write(client, "STOP")
    assert answered(database) == []
    with database.session() as session:
        assert session.scalars(select(Participant)).one().opted_out
        assert session.scalars(select(Conversation)).one().status == "stopped"


def test_a_message_is_known_to_go_as_a_template_before_it_goes(app_settings):
    from bot.providers.base import Outgoing

    whatsapp, now = channels.get("whatsapp"), utcnow()
    script = {"invitation": INVITATION}  # and WHATSAPP_REMINDER_TEMPLATE is set

    def goes_as_template(kind, wrote=None, options=script, channel=whatsapp):
        message = Outgoing(1, ANN, "Hello", kind, last_inbound_at=wrote, options=options)
        return channel.replaces_body(message, app_settings, now)

    assert goes_as_template("invitation") and goes_as_template("reminder")
    assert not goes_as_template("invitation", wrote=now - timedelta(hours=1))  # free text
    assert goes_as_template("invitation", wrote=now - timedelta(hours=23, minutes=50))
    assert not goes_as_template("invitation", options={})  # none named: it fails instead
    assert not goes_as_template("reply")  # a reply has no template: it fails instead
    assert not goes_as_template("invitation", channel=channels.get("sms"))


def test_a_call_says_the_question_a_template_did_not_so_its_key_is_the_answer(
    client, database, redis_conn, twilio_fake
):
    from tests.test_twilio_voice import Phone

    import_ann(client, phone="07700 900123")
    launch(client, redis_conn)  # the invitation goes as the template
    call = Phone(client, number="+447700900123").dial()  # she rings us instead
    call.press("1")
    assert "Which title do you like best?" in call.said
    call.press("2")
    assert answered(database) == [("title", "your-health")]


def test_a_template_after_63016_marks_the_question_not_shown(
    client, database, redis_conn, twilio_fake
):
    import_ann(client)
    write(client, "Hello")  # the window looks open, so the invitation goes as free text...
    run_worker(redis_conn)  # (what we said back has gone, where it goes by the outbox)
    before = len(messages_to_twilio(twilio_fake))
    twilio_fake.script.append(Scripted(status=400, code=63016, message="Outside window"))
    launch(client, redis_conn)  # ...until WhatsApp refuses it, and the template goes
    free_text, template = messages_to_twilio(twilio_fake)[before:]
    assert "Body" in free_text and template["ContentSid"] == INVITATION
    write(client, "2")
    assert answered(database) == []
    assert "Which title do you like best?" in said_last(database)
    write(client, "2")
    assert answered(database) == [("title", "your-health")]


def test_a_recipient_not_on_whatsapp_marks_that_contact_point_unreachable(
    client, database, redis_conn, twilio_fake
):
    import_ann(client, phone="07700 900123")
    twilio_fake.script.append(Scripted(status=400, code=63024, message="Invalid recipient"))
    launch(client, redis_conn)
    whatsapp = point(database)
    assert whatsapp.unreachable_reason == "cannot take messages on that channel (Twilio 63024)"
    assert point(database, "sms").unreachable_at is None  # their number still takes texts
    with database.session() as session:
        invitation = session.scalars(select(Message).where(Message.kind == "invitation")).one()
        assert (invitation.status, invitation.error_code) == ("failed", "63024")
        assert not session.scalars(select(Participant)).one().opted_out


def test_a_failed_status_callback_63003_marks_that_contact_point_unreachable(
    client, database, redis_conn, twilio_fake
):
    import_ann(client)
    launch(client, redis_conn)
    with database.session() as session:
        invitation = session.scalars(select(Message).where(Message.kind == "invitation")).one()
    callback = {
        "MessageSid": invitation.provider_id,
        "MessageStatus": "failed",
        "ErrorCode": "63003",
        "To": ANN,
        "From": SENDER,
    }
    response = post_twilio(client, PUBLIC, f"/webhooks/twilio/status?m={invitation.id}", callback)
    assert response.status_code == 204
    assert "63003" in (point(database).unreachable_reason or "")


def test_erasure_removes_the_whatsapp_address(client, database):
    import_ann(client, external_id="A")
    for body in ["TITLE", "2"]:
        replies(write(client, body))
    assert client.delete("/admin/api/participants/A", headers=ADMIN).status_code == 200
    with database.session() as session:
        assert session.scalars(select(ContactPoint)).all() == []
        assert all(m.address is None and m.body is None for m in session.scalars(select(Message)))


def test_a_reply_outside_the_window_is_not_sent_as_another_kinds_template():
    from bot.channels.whatsapp.sender import WhatsAppSender
    from bot.channels.whatsapp.settings import WhatsAppSettings
    from bot.config import load_settings
    from bot.providers.base import Outgoing
    from bot.providers.errors import PermanentError

    own = WhatsAppSettings(sender=SENDER, templates={"invitation": INVITATION})
    sender = WhatsAppSender(load_settings({}), own)
    late = Outgoing(1, ANN, "Thank you", "reply", options={"invitation": INVITATION})
    with pytest.raises(PermanentError, match="a reply is outside WhatsApp's 24-hour window"):
        sender.template_for(late)
    invitation = Outgoing(2, ANN, "Hello", "invitation", variables={"name": "Ann"})
    assert sender.template_for(invitation) == (INVITATION, '{"1": "Ann"}')


def test_a_step_is_one_whatsapp_message_up_to_twilios_1600_characters():
    from bot.engine import Say

    whatsapp, sms = channels.get("whatsapp"), channels.get("sms")
    long_step = [Say("Hello. " * 60), Say("And something more to say. " * 10)]  # ~690
    assert len(sms.render_replies(long_step, "us")) == 2  # a text keeps to two segments
    assert len(whatsapp.render_replies(long_step, "us")) == 1
    too_long = [Say("Hello. " * 200), Say("More. " * 100)]
    assert [len(t) <= 1600 for t in whatsapp.render_replies(too_long, "us")] == [True, True]


# --- answers to tap: quick-reply buttons and list-pickers (Content API) ----------------------


def outbound(database) -> list[Message]:
    with database.session() as session:
        return list(
            session.scalars(
                select(Message).where(Message.direction == "out").order_by(Message.id)
            ).all()
        )


def test_inside_the_window_three_answers_go_as_quick_reply_buttons(
    client, database, redis_conn, twilio_fake
):
    import_ann(client)
    (sent,) = said_back(client, redis_conn, twilio_fake, "TRAVEL")
    (made,) = twilio_fake.contents
    assert made["types"] == {
        "twilio/quick-reply": {
            "body": "{{1}}",
            "actions": [
                {"type": "QUICK_REPLY", "title": "Bus", "id": "involve:1"},
                {"type": "QUICK_REPLY", "title": "Car", "id": "involve:2"},
                {"type": "QUICK_REPLY", "title": "Walking", "id": "involve:3"},
            ],
        }
    }
    assert made["friendly_name"].startswith("involve-") and made["language"] == "en"
    # The content holds no one's words: they fill its one variable as each message goes.
    assert "Ann" not in json.dumps(made)
    assert (sent["To"], sent["ContentSid"], "Body" in sent) == (ANN, made["sid"], False)
    words = json.loads(sent["ContentVariables"])["1"]
    assert words == (
        "Hello Ann. A few quick questions about getting to the club.\n\nHow do you get to the club?"
    )
    # Staff (and subject access) read the numbered text, as a text message says it.
    stored = outbound(database)[-1].body
    assert stored.startswith(f"{words}\nReply 1 for Bus, 2 for Car, 3 for Walking")


def test_a_tapped_button_is_stored_as_its_option_and_six_answers_go_as_a_list(
    client, database, redis_conn, twilio_fake
):
    import_ann(client)
    said_back(client, redis_conn, twilio_fake, "TRAVEL")
    # WhatsApp shows the button's words as what they sent; its payload says which it was.
    tapped = {"ButtonText": "Walking", "ButtonPayload": "involve:3", "MessageType": "button"}
    (sent,) = said_back(client, redis_conn, twilio_fake, "Walking", **tapped)
    answer = last_answer(database, "how")
    assert (answer.value, answer.label, answer.raw_text) == ("walking", "Walking", "3")
    _, listed = twilio_fake.contents
    assert listed["types"] == {
        "twilio/list-picker": {
            "body": "{{1}}",
            "button": "Choose an answer",
            "items": [
                {"id": f"involve:{n}", "item": day}
                for n, day in enumerate(
                    ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"], 1
                )
            ],
        }
    }
    assert sent["ContentSid"] == listed["sid"]
    assert json.loads(sent["ContentVariables"]) == {"1": "Which day suits you best?"}
    # A row picked from the list: its id says which.
    picked = {"ListId": "involve:4", "ListTitle": "Thursday", "MessageType": "interactive"}
    (sent,) = said_back(client, redis_conn, twilio_fake, "Thursday", **picked)
    assert last_answer(database, "day").value == "thursday"
    # Twelve answers are more than a list holds: numbered text.
    assert "ContentSid" not in sent and len(twilio_fake.contents) == 2
    assert sent["Body"].startswith("Where do you live?\n1 - Area1\n2 - Area2")
    assert "\u2328" not in sent["Body"]
    # A 1-5 scale is a list whose points say their labels; a yes/no is two buttons.
    said_back(client, redis_conn, twilio_fake, "12")
    scale = twilio_fake.contents[-1]["types"]["twilio/list-picker"]["items"]
    assert [(i["id"], i["item"]) for i in scale] == [
        ("involve:1", "1 - Not useful"),
        ("involve:2", "2"),
        ("involve:3", "3"),
        ("involve:4", "4"),
        ("involve:5", "5 - Very useful"),
    ]
    tapped = {"ListId": "involve:5", "ListTitle": "5 - Very useful"}
    said_back(client, redis_conn, twilio_fake, "5 - Very useful", **tapped)
    assert last_answer(database, "useful").value == "5"
    yes_no = twilio_fake.contents[-1]["types"]["twilio/quick-reply"]["actions"]
    assert [(a["title"], a["id"]) for a in yes_no] == [("Yes", "involve:1"), ("No", "involve:2")]
    said_back(client, redis_conn, twilio_fake, "No", ButtonText="No", ButtonPayload="involve:2")
    assert last_answer(database, "again").value == "no"


def test_a_template_buttons_own_payload_reads_as_the_words_on_it(
    client, database, redis_conn, twilio_fake
):
    # An approved template's quick replies carry payloads staff chose, not ours.
    import_ann(client)
    said_back(client, redis_conn, twilio_fake, "TRAVEL")
    said_back(client, redis_conn, twilio_fake, "Car", ButtonPayload="yes-please")
    assert last_answer(database, "how").value == "car"


def test_content_is_made_once_and_reused_for_the_next_person_and_after_a_restart(
    client, database, redis_conn, twilio_fake
):
    from bot.channels.whatsapp.sender import LIBRARY

    import_ann(client)
    (first,) = said_back(client, redis_conn, twilio_fake, "TRAVEL")
    bob = "whatsapp:+447700900456"
    (second,) = said_back(client, redis_conn, twilio_fake, "TRAVEL", sender=bob)
    LIBRARY.forget()  # a new process: found again at Twilio by its name
    (third,) = said_back(client, redis_conn, twilio_fake, "TRAVEL", sender="+447700900789")
    (made,) = twilio_fake.contents
    assert first["ContentSid"] == second["ContentSid"] == third["ContentSid"] == made["sid"]
    assert json.loads(second["ContentVariables"])["1"].startswith("Hello there.")
    looked_up = [r for r in twilio_fake.requests if r["path"].startswith("/v2/Content")]
    assert looked_up and all(
        r["query"]["ContentName"] == f"^{made['friendly_name']}$" for r in looked_up
    )


def test_outside_the_window_a_question_with_buttons_still_goes_as_the_template(
    client, database, redis_conn, twilio_fake
):
    import_ann(client, tags=["travellers"])
    body = {"survey": "travel", "audience": {"tags": ["travellers"]}, "channel": "whatsapp"}
    campaign = client.post("/admin/api/campaigns", json=body, headers=ADMIN).json
    client.post(f"/admin/api/campaigns/{campaign['id']}/launch", headers=ADMIN)
    run_worker(redis_conn)
    run_worker(redis_conn)
    (sent,) = messages_to_twilio(twilio_fake)
    assert (sent["ContentSid"], "Body" in sent) == (INVITATION, False)
    assert twilio_fake.contents == []
    # Inside the window the same invitation would have had buttons.
    (invitation,) = outbound(database)
    assert "\u2328 answers: " in invitation.body


def test_content_api_failing_for_now_is_tried_again_and_refused_goes_as_numbered_text(
    client, database, redis_conn, twilio_fake, caplog
):
    from bot.commands.jobs import send_messages

    import_ann(client)
    twilio_fake.script.append(Scripted(status=500, code=20500, message="Internal error"))
    assert said_back(client, redis_conn, twilio_fake, "TRAVEL") == []
    with database.session() as session:
        (waiting,) = session.scalars(select(Message).where(Message.direction == "out")).all()
        assert (waiting.status, waiting.error_code) == ("pending", "20500")
        waiting.send_after = None  # due now, as if the wait had passed
    send_messages([waiting.id])
    (sent,) = messages_to_twilio(twilio_fake)
    assert sent["ContentSid"] == twilio_fake.contents[0]["sid"]

    # Refused for good (a 4xx): that message goes as its numbered text, nobody is failed.
    twilio_fake.script.append(Scripted(status=400, code=21656, message="Walking is invalid"))
    assert replies(post_twilio(client, PUBLIC, PATH, whatsapp_params("3"))) == []
    with caplog.at_level("WARNING"):  # sent here, not in a worker's child, to read its log
        send_messages([outbound(database)[-1].id])
    (_, sent) = messages_to_twilio(twilio_fake)
    assert "ContentSid" not in sent
    days = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
    listed = ", ".join(f"{n} for {day}" for n, day in enumerate(days, 1))
    assert sent["Body"] == f"Which day suits you best?\nReply {listed}"
    assert outbound(database)[-1].status == "queued"
    refused = [r.getMessage() for r in caplog.records if "numbered text" in r.getMessage()]
    assert refused and "21656" in refused[0]
    assert not any(
        "Walking" in r.getMessage() or "Monday" in r.getMessage() for r in caplog.records
    )


def test_the_sender_sends_numbered_text_where_whatsapp_refuses_the_buttons(
    twilio_fake, app_settings
):
    """Not the Content API but the message with the content refused (a 4xx): the words go."""
    from bot.engine import Ask
    from bot.providers.base import Outgoing
    from bot.scripts.survey import load_text

    survey = load_text(TRAVEL, "travel.yaml")
    question = survey.question("again")
    ask = Ask(question, "Would you come again?", 5, 5, choices=(("yes", "Yes"), ("no", "No")))
    (body,) = channels.get("whatsapp").render_replies([ask], "us")
    assert body.startswith("Would you come again?\nReply YES or NO\n\u2328 answers: ")
    sender = channels.get("whatsapp").sender(app_settings)
    twilio_fake.script.extend([Scripted(), Scripted(status=400, code=63013, message="no")])
    handed = sender.send(Outgoing(7, ANN, body, "reply", last_inbound_at=utcnow()))
    refused, sent = messages_to_twilio(twilio_fake)
    assert refused["ContentSid"] == twilio_fake.contents[0]["sid"]
    assert sent["Body"] == "Would you come again?\nReply YES or NO"
    assert handed.sid.startswith("SM")


def test_a_list_in_welsh_opens_with_welsh_words_and_is_made_in_welsh():
    from bot.channels.whatsapp import content
    from bot.engine import Ask
    from bot.scripts.survey import load_text

    day = load_text(TRAVEL, "travel.yaml").question("day")
    choices = tuple((o.value, o.label) for o in day.choices)
    ask = Ask(day, "Pa ddiwrnod sy'n gyfleus?", 2, 5, choices=choices, language="cy")
    (stored,) = channels.get("whatsapp").render_replies([ask], "us")
    words, listed = content.split(stored)
    assert words.startswith("Pa ddiwrnod sy'n gyfleus?\nAtebwch")  # the numbered text, in Welsh
    assert listed is not None and (listed.kind, listed.button) == (
        content.LIST_PICKER,
        "Dewiswch ateb",
    )
    assert listed.definition()["language"] == "cy"
    english = content.fit(Ask(day, "Which day?", 2, 5, choices=choices), "Which day?")
    assert english is not None and english.friendly_name != listed.friendly_name
