from sqlalchemy import select

from bot.channels import Handed
from bot.commands import runtime
from bot.conversations import outbox
from bot.sending import send
from bot.storage.models import Message, Participant
from tests import people
from tests.conftest import PUBLIC
from tests.fakes import post_twilio, status_params


def sent_text(database, status="queued", sid="SM123", claimed=False):
    with database.session() as session:
        person = people.person(session, phone="+447700900123")
        message = outbox.add(session, person, "sms", "Hello", "invitation")
        message.status = "claimed" if claimed else status
        message.provider_id = None if claimed else sid
        return message.id


def callback(client, message_id, sid, status, error=None):
    path = f"/webhooks/twilio/status?m={message_id}"
    return post_twilio(client, PUBLIC, path, status_params(sid, status, error))


def status_of(database, message_id):
    with database.session() as session:
        m = session.get(Message, message_id)
        return m.status, m.error_code


def test_statuses_move_forward_in_any_order_and_repeat_harmlessly(client, database):
    mid = sent_text(database)
    assert callback(client, mid, "SM123", "sent").status_code == 204
    assert status_of(database, mid) == ("sent", None)
    callback(client, mid, "SM123", "delivered")
    callback(client, mid, "SM123", "sent")  # late
    callback(client, mid, "SM123", "queued")  # later still
    callback(client, mid, "SM123", "delivered")  # again
    assert status_of(database, mid) == ("delivered", None)


def test_failure_keeps_the_error_code(client, database):
    mid = sent_text(database)
    callback(client, mid, "SM123", "undelivered", "30003")
    assert status_of(database, mid) == ("undelivered", "30003")
    callback(client, mid, "SM123", "delivered")
    assert status_of(database, mid) == ("undelivered", "30003")


def test_carrier_opt_out_in_a_callback_opts_the_person_out(client, database):
    mid = sent_text(database)
    callback(client, mid, "SM123", "failed", "21610")
    with database.session() as session:
        assert session.scalars(select(Participant)).one().opted_out


def test_a_callback_that_beats_the_senders_write_is_kept(client, database, app_settings):
    mid = sent_text(database, claimed=True)
    callback(client, mid, "SM999", "sent")
    with database.session() as session:
        m = session.get(Message, mid)
        assert (m.status, m.provider_id) == ("sent", "SM999")
    # The sender's own record of the hand-over arrives afterwards and changes nothing back.
    sent = send._Planned(mid, "sms", "+447700900123", "hello", "invitation", 1)
    send._record(runtime.database(), runtime.redis(), [(sent, Handed("SM999", "queued"))])
    assert status_of(database, mid) == ("sent", None)


def test_callback_found_by_sid_without_the_row_id(client, database):
    mid = sent_text(database)
    post_twilio(client, PUBLIC, "/webhooks/twilio/status", status_params("SM123", "delivered"))
    assert status_of(database, mid) == ("delivered", None)


def test_unknown_messages_and_forged_callbacks(client, database):
    mid = sent_text(database)
    assert (
        post_twilio(
            client, PUBLIC, "/webhooks/twilio/status", status_params("SMnope", "delivered")
        ).status_code
        == 204
    )
    forged = client.post(
        f"/webhooks/twilio/status?m={mid}",
        data=status_params("SM123", "failed"),
        headers={"X-Twilio-Signature": "x"},
    )
    assert forged.status_code == 403
    assert status_of(database, mid) == ("queued", None)
