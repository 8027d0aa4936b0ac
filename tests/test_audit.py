import json

from click.testing import CliRunner
from sqlalchemy import select

from bot.commands.cli import main
from bot.storage.models import AuditEvent, Participant
from tests.conftest import ADMIN, PUBLIC, run_worker
from tests.fakes import post_twilio, sms_params

PHONE = "+447700900042"


def _events(client):
    response = client.get("/admin/api/audit", headers=ADMIN)
    assert response.status_code == 200
    return response.json["events"]


def test_access_erasure_export_and_launch_are_audited_as_the_admin_api(
    client, database, redis_conn
):
    client.post(
        "/admin/api/participants",
        json={
            "participants": [
                {"name": "Gwendolyn", "phone": PHONE, "tags": ["t"], "external_id": "G7"}
            ]
        },
        headers=ADMIN,
    )
    campaign = client.post(
        "/admin/api/campaigns",
        json={"survey": "guide-title", "audience": {"tags": ["t"]}, "channel": "sms"},
        headers=ADMIN,
    ).json["id"]
    client.post(f"/admin/api/campaigns/{campaign}/launch", headers=ADMIN)
    client.post(f"/admin/api/campaigns/{campaign}/launch", headers=ADMIN)  # nothing new: no row
    run_worker(redis_conn)
    for body in ["1", "My hip replacement went badly"]:
        post_twilio(client, PUBLIC, "/webhooks/twilio/sms", sms_params(body, sender=PHONE))
    client.get(f"/admin/api/campaigns/{campaign}/responses.csv", headers=ADMIN).get_data()
    person = client.get("/admin/api/participants/ext:G7", headers=ADMIN).json["id"]
    assert client.delete("/admin/api/participants/ext:G7", headers=ADMIN).status_code == 200
    events = _events(client)
    assert [(e["actor"], e["action"], e["target"]) for e in events] == [
        ("admin-api", "erasure", f"participant {person}"),
        ("admin-api", "subject_access", f"participant {person}"),
        ("admin-api", "export", f"campaign {campaign}"),
        ("admin-api", "launch", f"campaign {campaign}"),
        ("admin-api", "create_campaign", f"campaign {campaign}"),
        ("admin-api", "import", "panel"),
    ]
    assert all(e["at"] for e in events)
    # The audit log says an erasure happened, never what was erased.
    logged = json.dumps(events)
    for secret in [PHONE, PHONE[3:], "Gwendolyn", "G7", "hip replacement"]:
        assert secret not in logged
    assert events[0]["detail"]["messages"] > 0
    # Paging back from the newest.
    older = client.get(f"/admin/api/audit?limit=2&before={events[1]['id']}", headers=ADMIN).json
    assert [e["action"] for e in older["events"]] == ["export", "launch"]
    assert client.get("/admin/api/audit?limit=many", headers=ADMIN).status_code == 400
    assert client.get("/admin/api/audit").status_code in (401, 403)


def test_the_cli_is_audited_as_the_os_user(client, database, monkeypatch, tmp_path):
    monkeypatch.setenv("LOGNAME", "ffion")  # getpass.getuser() reads it first
    client.post(
        "/admin/api/participants",
        json={"participants": [{"name": "Ann", "phone": PHONE, "tags": ["t"]}]},
        headers=ADMIN,
    )
    campaign = client.post(
        "/admin/api/campaigns",
        json={"survey": "guide-title", "audience": {"tags": ["t"]}, "channel": "sms"},
        headers=ADMIN,
    ).json["id"]
    runner = CliRunner()
    assert runner.invoke(main, ["campaign", "launch", str(campaign)]).exit_code == 0
    out = tmp_path / "out.csv"
    assert runner.invoke(main, ["campaign", "export", str(campaign), "-o", str(out)]).exit_code == 0
    with database.session() as session:
        assert [
            (e.actor, e.action, e.target)
            for e in session.scalars(select(AuditEvent).order_by(AuditEvent.id))
            if e.actor != "admin-api"  # the setup above, through the API
        ] == [
            ("cli:ffion", "launch", f"campaign {campaign}"),
            ("cli:ffion", "export", f"campaign {campaign}"),
        ]
    listed = runner.invoke(main, ["privacy", "audit"])
    assert listed.exit_code == 0 and f"cli:ffion export campaign {campaign}" in listed.output


def test_cli_subject_access_and_erasure(client, database, monkeypatch):
    monkeypatch.setenv("LOGNAME", "ffion")
    client.post(
        "/admin/api/participants",
        json={"participants": [{"name": "Ann", "phone": PHONE, "external_id": "A1"}]},
        headers=ADMIN,
    )
    runner = CliRunner()
    shown = runner.invoke(main, ["participants", "show", "ext:A1"])
    assert shown.exit_code == 0 and json.loads(shown.output)["name"] == "Ann"
    # Asked first, naming the person as staff know them (and not erased on "no").
    kept = runner.invoke(main, ["participants", "erase", "ext:A1"], input="n\n")
    assert "Erase ext:A1, Ann, +44770090**** (participant" in kept.output
    assert kept.exit_code == 1
    with database.session() as session:
        assert session.scalars(select(Participant)).one().erased_at is None
    erased = runner.invoke(main, ["participants", "erase", "ext:A1", "--yes"])
    assert erased.exit_code == 0, erased.output
    assert runner.invoke(main, ["participants", "show", "ext:A1"]).exit_code == 1
    with database.session() as session:
        assert [
            (e.actor, e.action)
            for e in session.scalars(select(AuditEvent).order_by(AuditEvent.id))
            if e.actor != "admin-api"  # the import above, through the API
        ] == [
            ("cli:ffion", "subject_access"),
            ("cli:ffion", "erasure"),
        ]


def test_the_api_audits_imports_campaigns_and_feedback_as_the_console_does(client, database):
    people = [{"name": "Ann", "phone": "07700 900001", "tags": ["r"], "recontact": True}]
    client.post("/admin/api/participants", json={"participants": people}, headers=ADMIN)
    created = client.post(
        "/admin/api/campaigns",
        json={"survey": "guide-title", "audience": {"tags": ["r"]}, "channel": None},
        headers=ADMIN,
    ).json
    client.post(f"/admin/api/campaigns/{created['id']}/close", headers=ADMIN)
    with database.session() as session:
        done = session.execute(select(AuditEvent.actor, AuditEvent.action)).all()
    assert ("admin-api", "import") in done
    assert ("admin-api", "create_campaign") in done and ("admin-api", "close") in done
