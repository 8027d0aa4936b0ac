from datetime import UTC, datetime

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from bot import conversations
from bot.channels.voice import render as voice
from bot.commands import runtime
from bot.config import parse_quiet_hours
from bot.conversations import inbox
from bot.cycle import feedback
from bot.engine import Reply
from bot.scripts.survey import load_file
from bot.storage.models import Message, Participant
from tests import people as panel
from tests.conftest import ADMIN, CONVERSATIONS, PUBLIC, run_worker
from tests.fakes import Scripted, post_twilio, sms_params, status_params

MESSAGE = "Hello {{ name }}. You chose {{ answers.title }}. {{ summary.title }}. {{ outcomes }}"
OUTCOMES = {
    "title": {"your-health": "It is the new title.", "*": "Thank you for choosing."},
    "why": {"*": "We read every reason."},
}
PANEL = {
    "participants": [
        {"name": "Ann Jones", "phone": "07700 900001", "external_id": "A", "tags": ["p"]},
        {"name": "Bob", "phone": "07700 900002", "external_id": "B", "tags": ["p"]},
        {"name": "Cy", "phone": "07700 900003", "external_id": "C", "tags": ["p"]},
        {"name": "Di", "phone": "07700 900004", "external_id": "D", "tags": ["p"]},
    ]
}


def text(client, phone, body):
    post_twilio(client, PUBLIC, "/webhooks/twilio/sms", sms_params(body, sender=phone))


@pytest.fixture
def finished(client, database, redis_conn, twilio_fake):
    """A campaign where Ann agreed to hear back, Bob did not, Cy never answered, Di stopped."""
    client.post("/admin/api/participants", json=PANEL, headers=ADMIN)
    campaign_id = client.post(
        "/admin/api/campaigns",
        json={"survey": "guide-title", "audience": {"tags": ["p"]}},
        headers=ADMIN,
    ).json["id"]
    client.post(f"/admin/api/campaigns/{campaign_id}/launch", headers=ADMIN)
    run_worker(redis_conn)
    for body in ["2", "Short and clear", "5", "yes"]:
        text(client, "+447700900001", body)
    for body in ["1", "skip", "3", "no"]:
        text(client, "+447700900002", body)
    for body in ["2", "skip", "4", "yes"]:
        text(client, "+447700900004", body)
    text(client, "+447700900004", "STOP")
    twilio_fake.requests.clear()
    return campaign_id


def post_feedback(client, campaign_id, **body):
    return client.post(
        f"/admin/api/campaigns/{campaign_id}/feedback",
        json={"message": MESSAGE, "outcomes": OUTCOMES, **body},
        headers=ADMIN,
    )


def test_preview_names_each_persons_own_answer_and_who_is_skipped(client, finished):
    response = post_feedback(client, finished, dry_run=True)
    assert response.status_code == 200, response.json
    (ann,) = response.json["recipients"]
    assert ann["participant"] == "ext:A" and ann["channel"] == "sms"
    assert ann["message"] == (
        "Hello Ann. You chose Your health, your way. Your health, your way was chosen by 67% of 3 people. "
        "It is the new title. We read every reason."
    )
    assert (ann["segments"], ann["encoding"], ann["warnings"]) == (1, "GSM-7", [])
    assert sorted((s["participant"], s["reason"]) for s in response.json["skipped"]) == [
        ("ext:B", "did not agree to hear back"),
        ("ext:C", "did not answer"),
        ("ext:D", "opted out"),
    ]


def test_send_goes_once_through_the_outbox_and_counts_follow_delivery(
    client, database, redis_conn, twilio_fake, finished
):
    response = post_feedback(client, finished)
    assert response.status_code == 202 and response.json["queued"] == 1
    assert client.get(f"/admin/api/campaigns/{finished}/feedback", headers=ADMIN).json[
        "counts"
    ] == {"queued": 1, "sent": 0, "delivered": 0, "failed": 0, "skipped": 3}
    run_worker(redis_conn)
    (sent,) = twilio_fake.sends()
    assert sent["To"] == "+447700900001" and sent["Body"].startswith(
        "Hello Ann. You chose Your health, your way."
    )
    with database.session() as session:
        message = session.scalars(select(Message).where(Message.kind == "feedback")).one()
    post_twilio(
        client,
        PUBLIC,
        f"/webhooks/twilio/status?m={message.id}",
        status_params(message.provider_id, "delivered"),
    )
    assert (
        client.get(f"/admin/api/campaigns/{finished}/feedback", headers=ADMIN).json["counts"][
            "delivered"
        ]
        == 1
    )
    again = post_feedback(client, finished)
    assert (
        again.json["queued"] == 0
        and {"participant": "ext:A", "reason": "already sent"} in again.json["skipped"]
    )
    history = client.get("/admin/api/participants/A", headers=ADMIN).json
    assert [m["status"] for m in history["messages"] if m["kind"] == "feedback"] == ["delivered"]
    (given,) = history["feedback"]
    assert given["campaign"] == finished and given["status"] == "delivered" and given["sent_at"]
    assert given["body"].startswith("Hello Ann. You chose Your health, your way.")


def test_sending_again_reaches_only_those_who_have_not_had_it(
    client, redis_conn, twilio_fake, finished
):
    # A failure that says nothing about the number (an invalid one is not tried again: its
    # contact point is marked unreachable, tests/test_contacts.py).
    twilio_fake.script.append(Scripted(status=400, code=30007, message="filtered"))
    post_feedback(client, finished)
    run_worker(redis_conn)
    assert (
        client.get(f"/admin/api/campaigns/{finished}/feedback", headers=ADMIN).json["counts"][
            "failed"
        ]
        == 1
    )
    assert post_feedback(client, finished).json["queued"] == 1
    run_worker(redis_conn)
    assert len(twilio_fake.sends()) == 2


def test_feedback_waits_for_quiet_hours(
    client, database, redis_conn, twilio_fake, finished, app_settings
):
    runtime.configure(app_settings.with_overrides(quiet_hours=parse_quiet_hours("00:00-23:59")))
    post_feedback(client, finished)
    run_worker(redis_conn)
    assert twilio_fake.sends() == []
    with database.session() as session:
        held = session.scalars(select(Message).where(Message.kind == "feedback")).one()
        assert held.status == "pending" and held.send_after is not None


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("Hello {{ name ", "message: line 1: unexpected end of template"),
        ("Hello {{ surname }}", "message: unknown name 'surname'"),
        ("You said {{ answers.colour }}", "message: "),
        ("{{ name.__class__.__mro__ }}", "message: "),
        ("{{ summary.title.__init__.__globals__ }}", "message: "),
        ("{% for x in ().__class__.__base__.__subclasses__() %}{{ x }}{% endfor %}", "message: "),
    ],
)
def test_template_problems_and_sandbox_escapes_are_a_clear_400(client, finished, message, expected):
    response = client.post(
        f"/admin/api/campaigns/{finished}/feedback",
        json={"message": message, "dry_run": True},
        headers=ADMIN,
    )
    assert response.status_code == 400, response.json
    assert response.json["error"].startswith(expected)


@pytest.mark.parametrize(
    ("outcomes", "expected"),
    [
        ({"colour": {"*": "x"}}, "outcomes: 'colour' is not a question"),
        ({"title": {"purple": "x"}}, "outcomes.title: 'purple' is not an answer"),
        ({"why": {"short": "x"}}, "outcomes.why: free answers can only use '*'"),
        ({"title": {"*": ""}}, "outcomes.title.* must be a sentence"),
    ],
)
def test_outcome_mistakes_are_a_clear_400(client, finished, outcomes, expected):
    response = client.post(
        f"/admin/api/campaigns/{finished}/feedback",
        json={"message": "Hi", "outcomes": outcomes, "dry_run": True},
        headers=ADMIN,
    )
    assert response.status_code == 400 and response.json["error"].startswith(expected), (
        response.json
    )


def test_long_or_curly_messages_are_warned_in_preview(client, finished):
    response = client.post(
        f"/admin/api/campaigns/{finished}/feedback",
        json={"message": "It’s done. " + "More news. " * 40, "dry_run": True},
        headers=ADMIN,
    )
    (ann,) = response.json["recipients"]
    assert ann["encoding"] == "UCS-2" and ann["segments"] > 2
    assert any("segments" in w for w in ann["warnings"]) and any(
        "outside GSM-7" in w for w in ann["warnings"]
    )


def test_each_person_hears_back_on_the_channel_they_answered_on(database, app_settings):
    survey = load_file(CONVERSATIONS / "guide-title.yaml")
    now = datetime.now(UTC)
    with database.session() as session:
        from bot.storage.models import Campaign

        version = conversations.survey_version(session, survey)
        campaign = Campaign(
            survey_id=survey.id,
            survey_version_id=version.id,
            status="launched",
            audience={"all": True},
        )
        session.add(campaign)
        session.flush()
        people = []
        for n, channel in enumerate(["sms", "voice", "telegram"]):
            person = panel.person(
                session,
                name=f"P{n}",
                phone=f"+4477009000{n}0",
                telegram_chat_id=100 + n,
                recontact=True,
            )
            _conv, _ = conversations.start_conversation(
                session, person, survey, channel, now, "Age Better", campaign_id=campaign.id
            )
            people.append((person.id, channel))
        campaign_id = campaign.id
    from bot.engine.keywords import Command

    # The whole survey, its own "May we tell you...?" answered yes: that is their consent.
    for person_id, channel in people:
        for said, meant in (("1", Reply("1")), ("skip", Command.SKIP), ("5", Reply("5"))):
            answered = inbox.Received(channel, said, meant, participant_id=person_id)
            assert inbox.receive(database, app_settings, answered, now).status == inbox.PROCESSED
        agreed = inbox.Received(channel, "yes", Reply("yes"), participant_id=person_id)
        assert inbox.receive(database, app_settings, agreed, now).status == inbox.PROCESSED
    with database.session() as session:
        campaign = session.get(Campaign, campaign_id)
        planned = feedback.plan(
            session, campaign, feedback.Definition("You chose {{ answers.title }}.")
        )
        assert sorted(r.channel for r in planned.recipients) == ["sms", "telegram", "voice"]
        feedback.send(session, campaign, planned)
        rows = session.scalars(select(Message).where(Message.kind == "feedback")).all()
        assert {(m.channel, m.address) for m in rows} == {
            ("sms", "+447700900000"),
            ("voice", "+447700900010"),
            ("telegram", "102"),
        }
    call = voice.feedback_call("You chose Living well.")
    assert (
        call.say[0] == "You chose Living well."
        and "To hear this message again, press star." in call.say[1]
    )


def test_every_example_survey_has_a_feedback_file_that_loads():
    surveys = [p for p in CONVERSATIONS.glob("*.yaml") if ".feedback." not in p.name]
    for path in surveys:
        survey = load_file(path)
        definition = feedback.load_file(CONVERSATIONS / f"{survey.id}.feedback.yaml", survey)
        assert definition.message and definition.outcomes


def test_cli_preview_and_send(client, redis_conn, twilio_fake, finished):
    from bot.commands.cli import main

    preview = CliRunner().invoke(main, ["feedback", "preview", str(finished)])
    assert preview.exit_code == 0, preview.output
    assert "--- ext:A by sms, 2 segment(s) GSM-7" in preview.output
    assert "You chose Your health, your way as the title for our new guide." in preview.output
    assert "skipped ext:B: did not agree to hear back" in preview.output
    sent = CliRunner().invoke(main, ["feedback", "send", str(finished)])
    assert sent.exit_code == 0 and "queued 1 message(s)" in sent.output, sent.output
    run_worker(redis_conn)
    assert len(twilio_fake.sends()) == 1
    assert CliRunner().invoke(main, ["feedback", "preview", "999"]).exit_code == 1


def test_summary_reads_naturally_for_a_winner_a_tie_and_free_text():
    assert (
        str(feedback.QuestionSummary(212, "Your health, your way", 61, 129))
        == "Your health, your way was chosen by 61% of 212 people"
    )
    tie = feedback.QuestionSummary(2, "Printed", 50, 1, ("Printed", "Online"))
    assert str(tie) == "Printed and Online were chosen equally, each by 50% of 2 people"
    assert str(feedback.QuestionSummary(1)) == "1 person answered"


def test_api_feedback_without_a_message_uses_the_surveys_feedback_file(
    client, redis_conn, twilio_fake, finished
):
    """As `involve feedback preview` does: conversations/<survey>.feedback.yaml."""
    preview = client.post(
        f"/admin/api/campaigns/{finished}/feedback", json={"dry_run": True}, headers=ADMIN
    )
    assert preview.status_code == 200, preview.json
    (ann,) = preview.json["recipients"]
    assert "You chose Your health, your way as the title for our new guide." in ann["message"]
    sent = client.post(f"/admin/api/campaigns/{finished}/feedback", json={}, headers=ADMIN)
    assert sent.status_code == 202 and sent.json["queued"] == 1, sent.json
    run_worker(redis_conn)
    assert len(twilio_fake.sends()) == 1


def test_an_unreadable_or_missing_recontact_answer_never_rests_on_the_imports_flag(
    client, database, redis_conn, twilio_fake
):
    """Everyone was imported with recontact yes. Ann answers the survey's own question yes;
    Bob writes "maybe" again and again (asked again each time: consent is never guessed, and
    never kept as his words); Cy stops answering before it."""
    panel = {
        "participants": [{**person, "recontact": True} for person in PANEL["participants"][:3]]
    }
    client.post("/admin/api/participants", json=panel, headers=ADMIN)
    campaign_id = client.post(
        "/admin/api/campaigns",
        json={"survey": "guide-title", "audience": {"tags": ["p"]}},
        headers=ADMIN,
    ).json["id"]
    client.post(f"/admin/api/campaigns/{campaign_id}/launch", headers=ADMIN)
    run_worker(redis_conn)
    for body in ["2", "skip", "5", "yes"]:
        text(client, "+447700900001", body)
    for body in ["1", "skip", "3", "maybe", "maybe", "maybe"]:
        text(client, "+447700900002", body)
    for body in ["1", "skip"]:
        text(client, "+447700900003", body)
    with database.session() as session:
        bob = session.scalar(select(Participant).where(Participant.external_id == "B"))
        (asked_again,) = session.scalars(
            select(Message.body)
            .where(Message.participant_id == bob.id, Message.direction == "out")
            .order_by(Message.id.desc())
            .limit(1)
        )
        assert "May we tell you which title we choose" in asked_again
        conv = session.scalar(
            select(conversations.Conversation).where(
                conversations.Conversation.participant_id == bob.id
            )
        )
        assert conv.status == "active"  # still waiting for his yes or no
    preview = post_feedback(client, campaign_id, dry_run=True).json
    (ann,) = preview["recipients"]
    assert ann["participant"] == "ext:A"
    assert ann["consent"] == "their answer in this survey (recontact: Yes)"
    skipped = dict((s["participant"], s["reason"]) for s in preview["skipped"])
    flag_alone = (
        "no readable answer to recontact in this survey; the panel's flag alone is not enough"
    )
    assert skipped == {"ext:B": flag_alone, "ext:C": flag_alone}


def test_without_its_own_question_the_preview_says_what_consent_each_rests_on(
    client, database, redis_conn, twilio_fake
):
    """Friends and Family asks no recontact question: Ann's flag came from the import, Bob's
    from his own yes in an earlier survey, and the preview says so for each."""
    from bot.storage.models import ConsentEvent

    people = [{**person, "recontact": True} for person in PANEL["participants"][:2]]
    client.post("/admin/api/participants", json={"participants": people}, headers=ADMIN)
    with database.session() as session:
        bob = session.scalar(select(Participant).where(Participant.external_id == "B"))
        session.add(ConsentEvent(participant_id=bob.id, kind="recontact_yes", how="sms"))
    campaign_id = client.post(
        "/admin/api/campaigns",
        json={"survey": "friends-and-family", "audience": {"tags": ["p"]}},
        headers=ADMIN,
    ).json["id"]
    client.post(f"/admin/api/campaigns/{campaign_id}/launch", headers=ADMIN)
    run_worker(redis_conn)
    for phone in ("+447700900001", "+447700900002"):
        for body in ["1", "skip"]:
            text(client, phone, body)
    preview = client.post(
        f"/admin/api/campaigns/{campaign_id}/feedback",
        json={"message": "Hello {{ name }}.", "dry_run": True},
        headers=ADMIN,
    ).json
    consent = {r["participant"]: r["consent"] for r in preview["recipients"]}
    assert consent["ext:A"] == "the panel import or staff (recontact: yes)"
    assert consent["ext:B"].startswith("their own earlier answer (by sms, ")
    cli = CliRunner().invoke(main_cli(), ["feedback", "preview", str(campaign_id)])
    assert "(agreed to hear back by: the panel import or staff (recontact: yes))" in cli.output


def main_cli():
    from bot.commands.cli import main

    return main
