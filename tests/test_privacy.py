from sqlalchemy import select

from bot.models import Answer, Message, Participant, Suppression
from tests.conftest import ADMIN, PUBLIC
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
    assert (data["name"], data["phone"], data["external_id"]) == ("Ann", "+447700900001", "A")
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
        assert (person.name, person.phone, person.external_id, person.erased_at is not None) == (
            None,
            None,
            None,
            True,
        )
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
        assert (
            session.scalars(select(Participant).where(Participant.phone == "+447700900001"))
            .one()
            .opted_out
        )


def test_keys_that_cannot_be_ids_are_not_found_not_errors(client):
    for key in ["%C2%B2", "99999999999999999999999", "-3", "0"]:
        response = client.get(f"/admin/api/participants/{key}", headers=ADMIN)
        assert response.status_code == 404, (key, response.json)
