import csv
import hashlib
import hmac
import io
import json

from sqlalchemy import select

from bot.cycle.campaigns import audience_ids
from bot.storage.models import (
    Answer,
    Campaign,
    ContactPoint,
    Conversation,
    Message,
    Participant,
    Suppression,
)
from tests import people as panel
from tests.conftest import ADMIN, PUBLIC, run_worker
from tests.fakes import post_twilio, sms_params


def text(client, body, phone="+447700900001"):
    return post_twilio(client, PUBLIC, "/webhooks/twilio/sms", sms_params(body, sender=phone))


def test_subject_access_shows_everything_we_hold(client):
    client.post(
        "/admin/api/participants",
        json={
            "participants": [
                {"name": "Ann", "phone": "07700 900001", "external_id": "A", "recontact": True}
            ]
        },
        headers=ADMIN,
    )
    for body in ["TITLE", "2", "Clearer words", "4"]:
        text(client, body)
    data = client.get("/admin/api/participants/A", headers=ADMIN).json
    assert (data["name"], data["external_id"]) == ("Ann", "A")
    # Every address we hold, in their order, with what we know of it: they wrote by text.
    points = data["contact_points"]
    assert [(p["channel"], p["address"], p["position"]) for p in points] == [
        ("sms", "+447700900001", 0),
        ("voice", "+447700900001", 1),
    ]
    assert points[0]["last_inbound_at"] and points[0]["verified_at"]
    assert points[1]["last_inbound_at"] is None and points[1]["opted_out_at"] is None
    assert [e["kind"] for e in data["consent_log"]] == ["recontact_yes"]
    assert [(a["question"], a["label"]) for a in data["answers"]] == [
        ("title", "Your health, your way"),
        ("why", "Clearer words"),
        ("useful", "4"),
    ]
    assert [m["direction"] for m in data["messages"]] == ["in", "out"] * 4
    assert (
        client.get(f"/admin/api/participants/{data['id']}", headers=ADMIN).json["external_id"]
        == "A"
    )
    assert client.get("/admin/api/participants/nobody", headers=ADMIN).status_code == 404


def test_erasure_removes_personal_data_and_keeps_anonymous_counts(client, database):
    client.post(
        "/admin/api/participants",
        json={"participants": [{"name": "Ann", "phone": "07700 900001", "external_id": "A"}]},
        headers=ADMIN,
    )
    for body in ["TITLE", "2", "Because of my mum", "4"]:
        text(client, body)
    response = client.delete("/admin/api/participants/A", headers=ADMIN)
    assert response.status_code == 200 and response.json["erased"] is True
    assert client.get("/admin/api/participants/A", headers=ADMIN).status_code == 404
    with database.session() as session:
        person = session.scalars(select(Participant)).one()
        assert (person.name, person.external_id, person.erased_at is not None) == (
            None,
            None,
            True,
        )
        assert session.scalars(select(ContactPoint)).all() == []  # every address goes
        assert all(m.body is None and m.address is None for m in session.scalars(select(Message)))
        answers = {a.question_id: a for a in session.scalars(select(Answer))}
        assert answers["why"].value is None and answers["why"].raw_text is None
        assert answers["title"].value == "your-health" and answers["title"].participant_id is None
        assert session.scalars(select(Suppression)).all() == []  # they had not opted out


def test_an_erased_person_who_opted_out_is_never_contacted_again(client, database):
    client.post(
        "/admin/api/participants",
        json={"participants": [{"name": "Ann", "phone": "07700 900001", "external_id": "A"}]},
        headers=ADMIN,
    )
    text(client, "STOP")
    client.delete("/admin/api/participants/A", headers=ADMIN)
    again = client.post(
        "/admin/api/participants",
        json={"participants": [{"name": "Ann", "phone": "07700900001"}]},
        headers=ADMIN,
    ).json
    assert again["created"] == 0 and "asked not to be contacted" in again["rejected"][0]["error"]
    # If they write in themselves, they are known to have opted out until they say START.
    response = text(client, "TITLE")
    assert b"You asked us not to contact you" in response.data
    with database.session() as session:
        assert panel.at(session, "phone", "+447700900001").opted_out


def test_keys_that_cannot_be_ids_are_not_found_not_errors(client):
    for key in ["%C2%B2", "99999999999999999999999", "-3", "0"]:
        response = client.get(f"/admin/api/participants/{key}", headers=ADMIN)
        assert response.status_code == 404, (key, response.json)


WORDS = "I have COPD and diabetes; my GP is Dr Patel"


def test_erasure_leaves_no_free_text_in_the_conversation_state(client, database):
    client.post(
        "/admin/api/participants",
        json={"participants": [{"name": "Ann", "phone": "07700 900001", "external_id": "A"}]},
        headers=ADMIN,
    )
    # An active conversation carries what they wrote in its state until the next question.
    for body in ["TITLE", "1", WORDS]:
        text(client, body)
    assert client.delete("/admin/api/participants/A", headers=ADMIN).status_code == 200
    with database.session() as session:
        for conv in session.scalars(select(Conversation)):
            assert "COPD" not in json.dumps(conv.state), conv.state


def _import(client, *people):
    response = client.post(
        "/admin/api/participants", json={"participants": list(people)}, headers=ADMIN
    )
    assert response.status_code == 200 and not response.json["rejected"], response.json


def _ids(database):
    with database.session() as session:
        return {p.name: p.id for p in session.scalars(select(Participant))}


def test_an_internal_id_and_someone_elses_external_id_are_never_confused(client, database):
    _import(client, {"name": "Ann", "phone": "07700 900001"})
    ann = _ids(database)["Ann"]
    _import(client, {"name": "Bob", "phone": "07700 900002", "external_id": str(ann)})
    # A bare key that names two people is refused, and says how to be clear.
    response = client.get(f"/admin/api/participants/{ann}", headers=ADMIN)
    assert response.status_code == 409 and "ext:" in response.json["error"], response.json
    assert client.delete(f"/admin/api/participants/{ann}", headers=ADMIN).status_code == 409
    # Each can be reached on their own.
    assert client.get(f"/admin/api/participants/id:{ann}", headers=ADMIN).json["name"] == "Ann"
    assert client.get(f"/admin/api/participants/ext:{ann}", headers=ADMIN).json["name"] == "Bob"
    # Erasing one by the clear form erases that one only.
    assert client.delete(f"/admin/api/participants/ext:{ann}", headers=ADMIN).status_code == 200
    with database.session() as session:
        assert session.get(Participant, ann).name == "Ann"
    # Once it is no longer ambiguous, the bare number is the internal id again.
    assert client.get(f"/admin/api/participants/{ann}", headers=ADMIN).json["name"] == "Ann"


def test_a_bare_key_still_works_where_it_names_one_person(client, database):
    _import(client, {"name": "Ann", "phone": "07700 900001", "external_id": "XYZ"})
    ann = _ids(database)["Ann"]
    for key in ["XYZ", "ext:XYZ", str(ann), f"id:{ann}"]:
        response = client.get(f"/admin/api/participants/{key}", headers=ADMIN)
        assert response.status_code == 200 and response.json["name"] == "Ann", key
    for key in ["ext:nobody", f"ext:{ann}", "id:XYZ", "id:999999"]:
        assert client.get(f"/admin/api/participants/{key}", headers=ADMIN).status_code == 404, key


def test_the_opt_out_hash_is_keyed(client, database, app_settings):
    _import(client, {"name": "Ann", "phone": "07700 900001", "external_id": "A"})
    text(client, "STOP")
    client.delete("/admin/api/participants/A", headers=ADMIN)
    with database.session() as session:
        (row,) = session.scalars(select(Suppression)).all()
    # Anyone with the database alone could try every UK mobile number against an unkeyed hash.
    for guess in ["+447700900001", "447700900001", "07700900001"]:
        for unkeyed in [
            hashlib.sha256(guess.encode()).hexdigest(),
            hashlib.sha256(f"involve-suppression:{guess}".encode()).hexdigest(),
        ]:
            assert row.address_hash != unkeyed
    assert (
        row.address_hash
        == hmac.new(
            app_settings.suppression_key.encode(), b"+447700900001", hashlib.sha256
        ).hexdigest()
    )


def test_the_export_tells_our_ids_from_external_ids(client, database, redis_conn):
    _import(client, {"name": "Ann", "phone": "07700 900001", "tags": ["t"]})
    ann = _ids(database)["Ann"]
    _import(
        client, {"name": "Bob", "phone": "07700 900002", "tags": ["t"], "external_id": str(ann)}
    )
    bob = _ids(database)["Bob"]
    created = client.post(
        "/admin/api/campaigns",
        json={"survey": "guide-title", "audience": {"tags": ["t"]}, "channel": "sms"},
        headers=ADMIN,
    ).json
    client.post(f"/admin/api/campaigns/{created['id']}/launch", headers=ADMIN)
    run_worker(redis_conn)
    body = client.get(f"/admin/api/campaigns/{created['id']}/responses.csv", headers=ADMIN)
    people = [row[0] for row in csv.reader(io.StringIO(body.get_data(as_text=True)))][1:]
    assert people == [str(ann), f"ext:{ann}"] and bob != ann
    # Each cell, used as a key, finds the person it stands for.
    for cell, name in zip(people, ["Ann", "Bob"], strict=True):
        assert client.get(f"/admin/api/participants/{cell}", headers=ADMIN).status_code in (
            200,
            409,
        )
        clear = cell if cell.startswith("ext:") else f"id:{cell}"
        assert client.get(f"/admin/api/participants/{clear}", headers=ADMIN).json["name"] == name


def test_a_text_kept_after_a_failure_is_theirs_too(client, database):
    # When handling an SMS fails, the webhook keeps the text (status error) before it knows
    # whose it is: only the number ties it to the person.
    _import(client, {"name": "Ann", "phone": "07700 900001", "external_id": "A"})
    with database.session() as session:
        session.add(
            Message(
                direction="in",
                channel="sms",
                kind="inbound",
                address="+447700900001",
                body=WORDS,
                provider_id="SMfailed",
                status="error",
            )
        )
    held = client.get("/admin/api/participants/ext:A", headers=ADMIN).json
    assert [m["body"] for m in held["messages"]] == [WORDS]
    assert client.delete("/admin/api/participants/ext:A", headers=ADMIN).status_code == 200
    with database.session() as session:
        (kept,) = session.scalars(select(Message)).all()
        assert (kept.body, kept.address) == (None, None)


def test_a_campaign_audience_names_people_as_clearly_as_the_urls(client, database):
    _import(client, {"name": "Ann", "phone": "07700 900001"})
    ann = _ids(database)["Ann"]
    _import(client, {"name": "Bob", "phone": "07700 900002", "external_id": str(ann)})
    bob = _ids(database)["Bob"]

    def create(people):
        return client.post(
            "/admin/api/campaigns",
            json={"survey": "guide-title", "audience": {"participants": people}, "channel": "sms"},
            headers=ADMIN,
        )

    ambiguous = create([str(ann)])
    assert ambiguous.status_code == 409 and "ext:" in ambiguous.json["error"], ambiguous.json
    for people, who in [([f"ext:{ann}"], bob), ([f"id:{ann}"], ann), ([ann], ann)]:
        response = create(people)
        assert response.status_code == 201 and response.json["audience_size"] == 1, people
        with database.session() as session:
            campaign = session.get(Campaign, response.json["id"])
            assert audience_ids(session, campaign.audience) == [who], people


def test_erasure_removes_telegram_message_ids_that_carry_the_chat_id(client, database):
    """Telegram's id for a message we sent is "<chat id>:<message id>": it goes with the rest."""
    from bot.storage.models import Message

    _import(client, {"name": "Cy", "telegram_chat_id": "987654321", "external_id": "C"})
    with database.session() as session:
        person = session.scalars(select(Participant)).one()
        session.add(
            Message(
                participant_id=person.id,
                direction="out",
                channel="telegram",
                kind="feedback",
                address="987654321",
                body="Thank you",
                provider_id="987654321:42",
                status="sent",
            )
        )
    assert client.delete("/admin/api/participants/ext:C", headers=ADMIN).status_code == 200
    with database.session() as session:
        (kept,) = session.scalars(select(Message)).all()
        assert "987654321" not in f"{kept.provider_id} {kept.address} {kept.body}"
