"""Texts no phone should send, but that must still get an answer and lose nothing."""

import xml.etree.ElementTree as ET

from sqlalchemy import select

from bot.models import Message
from tests.conftest import PUBLIC
from tests.fakes import post_twilio, sms_params


def test_a_nul_character_is_dropped_and_the_text_kept(client, database):
    response = post_twilio(
        client, PUBLIC, "/webhooks/twilio/sms", sms_params("TI\x00TLE", sid="SMnul")
    )
    assert response.status_code == 200
    (reply,) = [m.text for m in ET.fromstring(response.data).findall("Message")]
    assert "Which title do you like best?" in reply
    with database.session() as session:
        kept = session.scalars(select(Message).where(Message.provider_id == "SMnul")).one()
        assert kept.body == "TITLE" and kept.status == "processed"
