import csv
import io

import pytest
from click.testing import CliRunner
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from bot.storage.models import ConsentEvent, Participant
from tests import people as panel
from tests.conftest import ADMIN, CONVERSATIONS


def people(database):
    with database.session() as session:
        return {
            p.external_id or panel.phone(p): p
            for p in session.scalars(
                select(Participant).options(selectinload(Participant.contact_points))
            )
        }


def test_token_is_required_and_compared(client):
    assert client.get("/admin/api/surveys").status_code == 401
    assert (
        client.get("/admin/api/surveys", headers={"Authorization": "Bearer wrong"}).status_code
        == 401
    )
    response = client.get("/admin/api/surveys", headers={"Authorization": "Basic abc"})
    assert response.status_code == 401 and response.json["error"].startswith(
        "a valid 'Authorization: Bearer"
    )
    assert client.get("/admin/api/surveys", headers=ADMIN).status_code == 200


def test_refuses_everything_until_the_token_is_set(app_settings):
    from webhooks import create_app

    off = create_app({"SETTINGS": app_settings.with_overrides(admin_token=None)}).test_client()
    response = off.get("/admin/api/surveys", headers=ADMIN)
    assert response.status_code == 403 and "ADMIN_TOKEN" in response.json["error"]


@pytest.mark.usefixtures("fresh_rate_window")
def test_rate_limited_per_client(app):
    app.config["ADMIN_RATE_LIMIT"] = 3
    client = app.test_client()
    codes = [client.get("/admin/api/surveys", headers=ADMIN).status_code for _ in range(5)]
    assert codes == [200, 200, 200, 429, 429]
    assert "at most 3 a minute" in client.get("/admin/api/surveys", headers=ADMIN).json["error"]


def test_surveys(client):
    surveys = {s["id"]: s for s in client.get("/admin/api/surveys", headers=ADMIN).json}
    title = surveys["guide-title"]
    assert title["title"] == "Choose a title for our new guide"
    assert [q["id"] for q in title["questions"]] == ["title", "why", "useful", "recontact"]
    assert title["questions"][0]["options"][1] == {
        "value": "your-health",
        "label": "Your health, your way",
    }
    assert title["questions"][1]["optional"] is True and "options" not in title["questions"][1]


def test_openapi_description_is_served(client):
    spec = client.get("/admin/api/openapi.json").json
    assert (
        spec["openapi"].startswith("3.")
        and "/admin/api/campaigns/{campaign_id}/responses.csv" in spec["paths"]
    )


def test_errors_are_json_with_the_right_code(client):
    assert client.post("/admin/api/campaigns", headers=ADMIN, data="x").status_code == 415
    bad = client.post(
        "/admin/api/campaigns", headers={**ADMIN, "Content-Type": "application/json"}, data="{nope"
    )
    assert bad.status_code == 400 and bad.json["error"] == "the body is not valid JSON"
    assert client.get("/admin/api/campaigns/999", headers=ADMIN).json == {
        "error": "no campaign 999"
    }
    assert client.get("/admin/api/campaigns/abc", headers=ADMIN).status_code == 404
    missing = client.get("/admin/api/nothing-here", headers=ADMIN)
    assert missing.status_code == 404 and "error" in missing.json
    wrong_method = client.delete("/admin/api/surveys", headers=ADMIN)
    assert wrong_method.status_code == 405 and "error" in wrong_method.json
    # Elsewhere a missing page is still a page.
    assert client.get("/nothing-here").mimetype == "text/html"


def test_import_json_upserts_and_reports_bad_rows(client, database):
    body = {
        "participants": [
            {
                "name": "Ann",
                "phone": "07700 900123",
                "tags": ["readers"],
                "recontact": True,
                "external_id": "A1",
            },
            {"name": "Bob", "phone": "not a number"},
            {"name": "Cy", "telegram_chat_id": 12345, "channel": "telegram", "tags": ["focus"]},
            {"name": "Di"},
            {"name": "Ed", "phone": "+44 7700 900456", "channel": "fax"},
        ]
    }
    report = client.post("/admin/api/participants", json=body, headers=ADMIN).json
    assert (report["created"], report["updated"], report["unchanged"]) == (2, 0, 0)
    assert [r["row"] for r in report["rejected"]] == [2, 4, 5]
    assert "not a phone number" in report["rejected"][0]["error"]
    assert report["rejected"][1]["error"] == (
        "needs a phone, a telegram_chat_id, a whatsapp or an external_id"
    )
    assert "channel must be one of" in report["rejected"][2]["error"]
    again = client.post(
        "/admin/api/participants",
        json={"participants": [{"external_id": "A1", "tags": ["panel"]}]},
        headers=ADMIN,
    ).json
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 1, 0)
    found = people(database)
    assert panel.phone(found["A1"]) == "+447700900123" and found["A1"].tags == ["readers", "panel"]
    assert found["A1"].name == "Ann"  # fields a row leaves out are kept
    replaced = client.post(
        "/admin/api/participants?replace_tags=true",
        json={"participants": [{"external_id": "A1", "tags": ["new"]}]},
        headers=ADMIN,
    )
    assert replaced.json["updated"] == 1 and people(database)["A1"].tags == ["new"]
    with database.session() as session:
        assert session.scalars(select(ConsentEvent.kind)).all() == ["recontact_yes"]


def test_import_matches_by_phone_then_chat_and_refuses_to_steal_numbers(client, database):
    client.post(
        "/admin/api/participants",
        json={
            "participants": [
                {"phone": "07700900123", "name": "Ann"},
                {"phone": "07700900124", "external_id": "B2"},
            ]
        },
        headers=ADMIN,
    )
    report = client.post(
        "/admin/api/participants",
        json={
            "participants": [
                {"phone": "+447700900123", "name": "Ann Smith"},
                {"external_id": "C3", "phone": "07700900124"},
            ]
        },
        headers=ADMIN,
    ).json
    assert report["updated"] == 1 and report["created"] == 0
    assert (
        report["rejected"][0]["row"] == 2
        and "belongs to participant 'B2'" in report["rejected"][0]["error"]
    )
    assert people(database)["+447700900123"].name == "Ann Smith"


def test_import_csv_keeps_good_rows(client, database):
    text = "name,phone,tags,recontact,external_id\nAnn,07700 900123,readers;focus,yes,A1\nBob,12,,,B1\nCy,07700 900125,,maybe,C1\nDi,07700 900126,,no,D1\n"
    report = client.post(
        "/admin/api/participants", data=text.encode(), headers={**ADMIN, "Content-Type": "text/csv"}
    ).json
    assert report["created"] == 2
    assert [(r["row"], r["error"][:20]) for r in report["rejected"]] == [
        (3, "'12' is not a phone "),
        (4, "recontact must be ye"),
    ]
    found = people(database)
    assert (
        found["A1"].tags == ["readers", "focus"]
        and found["A1"].recontact is True
        and found["D1"].recontact is False
    )
    second = client.post(
        "/admin/api/participants", data=text.encode(), headers={**ADMIN, "Content-Type": "text/csv"}
    ).json
    # The same file again changes nobody, and says so.
    assert (second["created"], second["updated"], second["unchanged"]) == (0, 0, 2)


def test_csv_with_a_wrong_header(client):
    report = client.post(
        "/admin/api/participants",
        data=b"who,where\nAnn,Leeds\n",
        headers={**ADMIN, "Content-Type": "text/csv"},
    ).json
    assert report["created"] == 0 and report["rejected"][0]["row"] == 1


def test_cli_import_shows_the_same_report(app_settings, database, tmp_path):
    from bot.commands.cli import main

    path = tmp_path / "panel.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["name", "phone", "external_id"])
        writer.writerow(["Ann", "07700 900123", "A1"])
        writer.writerow(["Bob", "nope", "B1"])
    result = CliRunner().invoke(main, ["participants", "import", str(path)])
    assert result.exit_code == 0, result.output
    assert "created 1, updated 0, unchanged 0, rejected 1" in result.output
    assert "row 3: 'nope' is not a phone number" in result.output
    assert list(people(database)) == ["A1"]
    # The same file again: nothing to change is not a failure (a nightly sync stays green).
    again = CliRunner().invoke(main, ["participants", "import", str(path)])
    assert again.exit_code == 0, again.output
    assert "created 0, updated 0, unchanged 1, rejected 1" in again.output


def _csv(text):
    return list(csv.reader(io.StringIO(text)))


def test_a_script_that_does_not_load_is_named_where_surveys_are_listed(app_settings, tmp_path):
    from bot.commands import runtime
    from webhooks import create_app

    folder = tmp_path / "scripts"
    folder.mkdir()
    good = (CONVERSATIONS / "guide-title.yaml").read_text(encoding="utf-8")
    (folder / "guide-title.yaml").write_text(good, encoding="utf-8")
    (folder / "broken.yaml").write_text(
        good.replace("id: guide-title", "id: broken").replace("type: choice", "type: pick"),
        encoding="utf-8",
    )
    current = app_settings.with_overrides(conversations_dir=folder)
    runtime.configure(current)
    client = create_app({"SETTINGS": current, "TESTING": True}).test_client()
    listed = client.get("/admin/api/surveys", headers=ADMIN).json
    assert [(s["id"], s["loaded"]) for s in listed] == [("guide-title", True), ("broken", False)]
    assert "type must be one of" in listed[1]["problems"][0]
    refused = client.post(
        "/admin/api/campaigns", json={"survey": "broken", "audience": {"all": True}}, headers=ADMIN
    )
    assert refused.status_code == 400 and "broken.yaml did not load" in refused.json["error"]


def test_an_import_with_no_good_row_exits_non_zero(app_settings, database, tmp_path):
    from bot.commands.cli import main

    path = tmp_path / "panel.csv"
    path.write_text("name,phone\nBob,nope\nCy,\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["participants", "import", str(path)])
    assert result.exit_code == 1, result.output
    assert "created 0, updated 0, unchanged 0, rejected 2" in result.output
    assert "no rows imported" in result.output


def test_csv_with_a_stray_carriage_return_is_a_report_not_a_500(client):
    """Found by schemathesis: a lone \r inside an unquoted field."""
    response = client.post(
        "/admin/api/participants",
        data=b'name,phone\nAnn\r x,07700 900123\n"Bob,07700 900124\n',
        headers={**ADMIN, "Content-Type": "text/csv"},
    )
    assert response.status_code == 200, response.json
    assert response.json["rejected"], response.json


def test_two_rows_for_one_person_in_a_file_keep_the_first_and_say_so(client, database):
    text = "name,phone,recontact,external_id\nDi,07700 900131,yes,D001\nDi Evans,07700 900132,no,D001\nEd,07700 900131,,E001\n"
    headers = {**ADMIN, "Content-Type": "text/csv"}
    report = client.post("/admin/api/participants", data=text.encode(), headers=headers).json
    assert report["created"] == 1
    assert [(r["row"], r["error"]) for r in report["rejected"]] == [
        (3, "the same person as row 2: keep one row each"),
        (4, "the same person as row 2: keep one row each"),
    ]
    assert people(database)["D001"].name == "Di" and people(database)["D001"].recontact is True
    again = client.post("/admin/api/participants", data=text.encode(), headers=headers).json
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 1)
    with database.session() as session:
        assert session.scalars(select(ConsentEvent.kind)).all() == ["recontact_yes"]


def test_an_import_does_not_undo_what_a_person_answered_themselves(client, database):
    from datetime import UTC, datetime

    with database.session() as session:
        person = panel.person(
            session, phone="+447700900123", external_id="P003", opted_out=False, recontact=False
        )
        session.add(
            ConsentEvent(
                participant_id=person.id,
                kind="recontact_no",
                how="sms",
                at=datetime(2026, 11, 20, tzinfo=UTC),
            )
        )
    report = client.post(
        "/admin/api/participants",
        json={"participants": [{"external_id": "P003", "recontact": True, "name": "Winifred"}]},
        headers=ADMIN,
    ).json
    assert report["updated"] == 1  # the name
    assert report["notes"] == [
        {
            "row": 1,
            "note": "recontact kept as no: they answered that themselves by sms on 20 Nov 2026",
        }
    ]
    found = people(database)["P003"]
    assert found.recontact is False and found.name == "Winifred"
    with database.session() as session:
        assert session.scalars(select(ConsentEvent.kind)).all() == ["recontact_no"]


def test_row_numbers_are_the_spreadsheets_whatever_blank_rows_there_are(client):
    text = 'name,phone\nAnn,07700 900123\n\nBob,nope\n,\nCy,"07700\n900125x"\nDi,07700 900126\n'
    report = client.post(
        "/admin/api/participants", data=text.encode(), headers={**ADMIN, "Content-Type": "text/csv"}
    ).json
    # Row 3 is blank and row 5 empty (",": skipped, not a person); a quoted field on two
    # lines is still one row, as a spreadsheet shows it.
    assert [r["row"] for r in report["rejected"]] == [4, 6]
    assert report["created"] == 2
