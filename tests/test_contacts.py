"""Contact points: a person's addresses are rows, one per channel, each with its own state."""

from datetime import timedelta

from sqlalchemy import select

from bot import channels, conversations
from bot.commands import jobs
from bot.config import load_settings
from bot.conversations import inbox, outbox
from bot.cycle import campaigns
from bot.engine import Reply
from bot.storage import contacts
from bot.storage.models import Campaign, ContactPoint, Invitation, Message, Participant, utcnow
from tests import people
from tests.conftest import ADMIN, PUBLIC
from tests.fakes import Scripted, post_twilio, status_params

SETTINGS = load_settings({"DATABASE_URL": "sqlite://", "ORG_NAME": "Age Better"})
NUMBER = "+447700900123"


def points(database, person_id=None):
    with database.session() as session:
        query = select(ContactPoint).order_by(ContactPoint.participant_id, ContactPoint.position)
        if person_id is not None:
            query = query.where(ContactPoint.participant_id == person_id)
        return session.scalars(query).all()


def text_in(database, words, at, sender=NUMBER, provider_id=None):
    received = inbox.Received(
        channel="sms",
        text=words,
        inbound=channels.get("sms").parse_stored(words),  # as the webhook reads it
        address=sender,
        provider_id=provider_id or f"SM{at.timestamp()}",
    )
    return inbox.receive(database, SETTINGS, received, at)


def test_a_newcomer_who_texts_in_is_a_person_with_that_contact_point(database):
    now = utcnow()
    outcome = text_in(database, "hello", now)
    point, call = points(database)
    assert (point.participant_id, point.channel, point.address) == (
        outcome.participant_id,
        "sms",
        NUMBER,
    )
    # As an import gives a number: calls reach it too, after texts; nobody wrote there yet.
    assert (call.channel, call.address, call.position, call.last_inbound_at) == (
        "voice",
        NUMBER,
        1,
        None,
    )
    # They wrote on it: it is theirs, and the reply window starts now.
    assert point.last_inbound_at == now and point.verified_at == now
    with database.session() as session:
        (reply,) = session.scalars(select(Message).where(Message.direction == "out")).all()
        assert reply.address == NUMBER


def test_last_inbound_at_moves_on_but_not_with_every_text(database):
    start = utcnow()
    text_in(database, "hello", start)
    text_in(database, "again", start + timedelta(minutes=1))
    # Within INBOUND_PRECISION it is left as it was: no write for most texts of a survey.
    assert points(database)[0].last_inbound_at == start
    later = start + contacts.INBOUND_PRECISION + timedelta(seconds=1)
    text_in(database, "and again", later)
    assert points(database)[0].last_inbound_at == later


def test_writing_on_a_contact_point_marked_unreachable_clears_the_mark(database):
    now = utcnow()
    person_id = text_in(database, "hello", now).participant_id
    with database.session() as session:
        contacts.mark(session, person_id, "sms", NUMBER, unreachable="invalid number")
    assert points(database)[0].unreachable_at is not None
    text_in(database, "it is me", now + timedelta(seconds=5))
    point = points(database)[0]
    assert (point.unreachable_at, point.unreachable_reason) == (None, None)


def test_start_on_a_contact_point_lifts_the_providers_stop_there(database):
    now = utcnow()
    person_id = text_in(database, "hello", now).participant_id
    with database.session() as session:
        contacts.mark(session, person_id, "sms", NUMBER, opted_out="unsubscribed at the carrier")
        person = session.get(Participant, person_id)
        conversations.record_consent(session, person, "opt_out", "carrier")
    text_in(database, "START", now + timedelta(minutes=1))
    point = points(database)[0]
    assert (point.channel, point.opted_out_at, point.opted_out_reason) == ("sms", None, None)
    with database.session() as session:
        assert not session.get(Participant, person_id).opted_out


def test_a_message_goes_to_the_first_contact_point_that_can_be_used(database):
    with database.session() as session:
        person = people.person(session, phone=NUMBER)
        contacts.add(session, person, "sms", "+447700900999")  # a second number, after
        session.flush()
        assert outbox.add(session, person, "sms", "Hi", "feedback").address == NUMBER
        contacts.mark(session, person.id, "sms", NUMBER, unreachable="invalid number")
        session.expire(person)
        # The first number cannot be reached: the next one on that channel is used.
        assert outbox.add(session, person, "sms", "Hi", "feedback").address == "+447700900999"
        contacts.mark(session, person.id, "sms", "+447700900999", opted_out="carrier opt-out")
        session.expire(person)
        assert outbox.add(session, person, "sms", "Hi", "feedback").address is None
        # Calls to the same number are not stopped by what the texts were told.
        assert outbox.add(session, person, "voice", "Hi", "feedback").address == NUMBER


def test_a_known_person_is_found_by_their_address_on_that_channel_only(database):
    with database.session() as session:
        person_id = people.person(session, phone=NUMBER, telegram_chat_id=555).id
    assert text_in(database, "hi", utcnow()).participant_id == person_id
    # A Telegram chat whose id is a number's digits is not that number.
    received = inbox.Received(
        channel="telegram",
        text="hi",
        inbound=Reply("hi"),
        address="447700900123",
        provider_id="1",
    )
    stranger = inbox.receive(database, SETTINGS, received, utcnow())
    assert stranger.participant_id != person_id


def test_an_invalid_number_in_a_status_callback_marks_only_that_channels_contact_point(
    client, database
):
    with database.session() as session:
        person = people.person(session, phone=NUMBER, channel="sms")
        message = outbox.add(session, person, "sms", "Hello", "invitation")
        message.status, message.provider_id = "queued", "SM123"
        message_id = message.id
    post_twilio(
        client,
        PUBLIC,
        f"/webhooks/twilio/status?m={message_id}",
        status_params("SM123", "undelivered", "21614"),  # not a mobile number
    )
    sms, voice = points(database)
    assert (sms.channel, sms.unreachable_reason) == ("sms", "not a mobile number (Twilio 21614)")
    assert sms.unreachable_at is not None and sms.opted_out_at is None
    assert (voice.channel, voice.unreachable_at) == ("voice", None)  # a landline takes calls
    with database.session() as session:
        assert not session.scalars(select(Participant)).one().opted_out


def test_a_failure_that_is_not_about_the_number_marks_nothing(client, database):
    with database.session() as session:
        message = outbox.add(session, people.person(session, phone=NUMBER), "sms", "Hi", "reply")
        message.status, message.provider_id = "queued", "SM124"
        message_id = message.id
    post_twilio(
        client,
        PUBLIC,
        f"/webhooks/twilio/status?m={message_id}",
        status_params("SM124", "undelivered", "30003"),  # the handset is off, for now
    )
    assert all(p.unreachable_at is None for p in points(database))


def test_a_carrier_opt_out_when_sending_stops_the_person_and_marks_that_contact_point(
    app_settings, database, twilio_fake
):
    twilio_fake.script.append(Scripted(status=400, code=21610, message="unsubscribed"))
    with database.session() as session:
        person = people.person(session, phone=NUMBER)
        message_id = outbox.add(session, person, "sms", "Hello", "reply").id
    jobs.send_messages([message_id])
    sms, voice = points(database)
    assert sms.opted_out_reason == "unsubscribed at the carrier (Twilio 21610)"
    assert sms.opted_out_at is not None and voice.opted_out_at is None
    with database.session() as session:
        assert session.scalars(select(Participant)).one().opted_out  # STOP holds everywhere


def test_an_invalid_number_when_sending_marks_its_contact_point(
    app_settings, database, twilio_fake
):
    twilio_fake.script.append(Scripted(status=400, code=21211, message="The 'To' number is bad"))
    with database.session() as session:
        message_id = outbox.add(
            session, people.person(session, phone=NUMBER), "sms", "Hi", "reply"
        ).id
    jobs.send_messages([message_id])
    sms, _voice = points(database)
    assert sms.unreachable_reason == "invalid number (Twilio 21211)"


def test_a_campaign_skips_contact_points_that_cannot_be_used(
    client, database, app_settings, redis_conn
):
    """Invited on their own channel while it works; by their next contact point when the
    provider said their first cannot be reached; never where they were stopped."""
    with database.session() as session:
        ok = people.person(session, name="Ok", phone="+447700900001", channel="sms", tags=["t"])
        landline = people.person(
            session, name="Landline", phone="+447700900002", channel="sms", tags=["t"]
        )
        stopped = people.person(session, name="Stopped", phone="+447700900003", tags=["t"])
        contacts.mark(session, landline.id, "sms", "+447700900002", unreachable="not a mobile")
        for channel in ("sms", "voice"):
            contacts.mark(session, stopped.id, channel, "+447700900003", opted_out="carrier")
        ids = (ok.id, landline.id, stopped.id)
    made = client.post(
        "/admin/api/campaigns",
        json={"survey": "guide-title", "audience": {"tags": ["t"]}},
        headers=ADMIN,
    )
    assert made.status_code == 201, made.json
    campaign_id = made.json["id"]
    with database.session() as session:
        campaigns.launch(session, session.get(Campaign, campaign_id), app_settings)
    campaigns.fan_out(database, app_settings, campaign_id)
    with database.session() as session:
        invited = {
            i.participant_id: (i.status, i.channel, i.reason)
            for i in session.scalars(select(Invitation))
        }
        sent = {
            m.participant_id: (m.channel, m.address)
            for m in session.scalars(select(Message).where(Message.kind == "invitation"))
        }
    assert invited[ids[0]] == ("invited", "sms", None)
    assert invited[ids[1]] == ("invited", "voice", None)  # their landline is called
    assert invited[ids[2]][0] == "skipped" and "opted out there (carrier)" in invited[ids[2]][2]
    assert sent == {ids[0]: ("sms", "+447700900001"), ids[1]: ("voice", "+447700900002")}


def test_a_campaign_on_one_channel_says_why_a_person_cannot_be_reached_there(
    client, database, app_settings
):
    with database.session() as session:
        landline = people.person(session, name="L", phone="+447700900002", tags=["t"])
        contacts.mark(session, landline.id, "sms", "+447700900002", unreachable="not a mobile")
    made = client.post(
        "/admin/api/campaigns",
        json={"survey": "guide-title", "audience": {"tags": ["t"]}, "channel": "sms"},
        headers=ADMIN,
    )
    campaign_id = made.json["id"]
    with database.session() as session:
        campaigns.launch(session, session.get(Campaign, campaign_id), app_settings)
    campaigns.fan_out(database, app_settings, campaign_id)
    with database.session() as session:
        (invitation,) = session.scalars(select(Invitation)).all()
    assert (invitation.status, invitation.reason) == (
        "skipped",
        "text message unreachable (not a mobile)",
    )


def test_an_import_gives_each_channel_its_contact_point_in_the_persons_order(client, database):
    def bring(*rows):
        response = client.post(
            "/admin/api/participants", json={"participants": rows}, headers=ADMIN
        )
        assert response.status_code == 200, response.json
        return response.json

    bring(
        {
            "external_id": "A",
            "phone": "07700 900001",
            "telegram_chat_id": 42,
            "channel": "telegram",
        },
        {"external_id": "B", "phone": "07700 900002"},
    )
    found = [(p.channel, p.address, p.position) for p in points(database)]
    assert found == [
        ("telegram", "42", 0),
        ("sms", "+447700900001", 1),
        ("voice", "+447700900001", 2),
        ("sms", "+447700900002", 0),
        ("voice", "+447700900002", 1),
    ]
    with database.session() as session:
        point = contacts.holder(session, "sms", "+447700900001")
        point.last_inbound_at = utcnow()
    # The same file again changes nothing, state included; a new number takes the old's place.
    again = bring({"external_id": "A", "phone": "07700 900001", "telegram_chat_id": 42})
    assert (again["updated"], again["unchanged"]) == (0, 1)
    assert points(database)[1].last_inbound_at is not None
    moved = bring({"external_id": "A", "phone": "07700 900011"})
    assert moved["updated"] == 1
    mine = [(p.channel, p.address, p.position, p.last_inbound_at) for p in points(database)][:3]
    assert mine == [
        ("telegram", "42", 0, None),
        ("sms", "+447700900011", 1, None),
        ("voice", "+447700900011", 2, None),
    ]
    # The old number is free again; someone else's is not.
    taken = bring({"external_id": "C", "phone": "07700 900002"})
    assert taken["rejected"][0]["error"] == "this phone belongs to participant 'B', not 'C'"
    assert bring({"external_id": "C", "phone": "07700 900001"})["created"] == 1


def test_the_registry_says_which_import_fields_name_addresses():
    assert (
        tuple(dict.fromkeys(c.contact_field for c in channels.all_channels()))
        == channels.CONTACT_FIELDS
    )
    phone_channels = {c.name for c in channels.for_field(channels.get("sms").contact_field)}
    assert phone_channels == {"sms", "voice"}  # one number: texts and calls


def test_a_senders_length_is_checked_against_its_channels_addresses(app, monkeypatch):
    """`whatsapp:+447700900123` is 22 characters: a channel whose addresses are that long
    takes it, where a text's sender stops at E.164's 16."""
    from bot.channels.sms import SmsChannel
    from webhooks.signatures import unreachable_sms_fields

    class Prefixed(SmsChannel):
        name = "prefixed"
        max_address_length = 24

    monkeypatch.setitem(channels.REGISTRY, Prefixed.name, Prefixed())
    form = {"MessageSid": "SM" + "a" * 32, "From": "whatsapp:+447700900123"}
    with app.test_request_context("/", method="POST", data=form):
        assert "From is too long (22 characters; at most 16" in unreachable_sms_fields("sms")
        assert unreachable_sms_fields("prefixed") is None
