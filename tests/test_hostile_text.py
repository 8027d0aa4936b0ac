"""Hostile text: control characters, bidi controls and look-alikes (issue 21, item 8).

Names and external ids are data we keep for staff, so they are cleaned (names) or refused
row by row (external ids) on the way in. Answers and messages are kept as people wrote them,
so every `involve` command shows what a terminal would act on as a visible \\uXXXX instead.
Each test failed on the code before: names and ids were stored with whatever they carried,
and the CLI printed answers, names and refusals raw.
"""

from __future__ import annotations

import json
import unicodedata

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from bot.commands.cli import main
from bot.storage.models import Answer, Participant
from bot.text import clean_name, external_id_problem, normal_external_id, terminal_safe
from tests.conftest import ADMIN, PUBLIC, run_worker
from tests.fakes import post_twilio, sms_params

# An OSC sequence that retitles the terminal (click strips only CSI colours off a pipe, and
# nothing off a terminal), a right-to-left override, and the one-character C1 CSI.
ESCAPES = "\x1b]0;you have been hacked\x07 \u202e \x9b2J"


def acted_on(text: str) -> list[str]:
    """Characters a terminal would act on rather than show."""
    return [
        c
        for c in text
        if (unicodedata.category(c) == "Cc" and c not in "\t\n")
        or c in "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
    ]


# --- names: every language's letters kept, what hides or reorders text taken out ------------


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("Gwenllïan ap Dafydd", "Gwenllïan ap Dafydd"),
        ("Siân Ŵyn Ŷr", "Siân Ŵyn Ŷr"),
        ("Łukasz Żółć", "Łukasz Żółć"),
        ("Ŵ", "Ŵ"),  # W + combining circumflex: composed
        ("王秀英", "王秀英"),
        ("محمد\u200cرضا", "محمد\u200cرضا"),  # the zero-width non-joiner is how it is written
        ("Ann\u202eSmith", "AnnSmith"),
        ("Ann\x1b]0;x\x07 Smith", "Ann]0;x Smith"),
        ("Ann\u200b \u2066Smith\u2069", "Ann Smith"),
        ("  Ann\tSmith\r\n", "Ann Smith"),
        ("\u202e\u200f", ""),
    ],
)
def test_a_name_keeps_its_letters_and_loses_controls(given, kept):
    assert clean_name(given) == kept


# --- external ids: one form, one script, nothing invisible -------------------------------


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("R1", "R1"),
        ("ＲＸ１２", "RX12"),  # full width
        ("𝐀𝐁12", "AB12"),  # mathematical bold
        ("CRM-00123/b", "CRM-00123/b"),
        ("ŵyn-12", "ŵyn-12"),
        ("ЖУК-1", "ЖУК-1"),
        ("会員アイ12", "会員アイ12"),
    ],
)
def test_an_external_id_in_one_script_is_kept_in_its_plain_form(given, kept):
    normal = normal_external_id(given)
    assert normal == kept and external_id_problem(normal) is None


@pytest.mark.parametrize(
    ("given", "why"),
    [
        ("R\u202e1", "invisible or control character (U+202E RIGHT-TO-LEFT OVERRIDE)"),
        ("R\u200b1", "invisible or control character (U+200B ZERO WIDTH SPACE)"),
        ("R\x1b1", "invisible or control character (U+001B"),
        ("Rо1", "mixes Latin and Cyrillic letters"),  # a Cyrillic о
        ("Ꭱ1-A", "mixes Cherokee and Latin letters"),
        ("АВ12", "Cyrillic letters that look like Latin ones"),
        ("ΑΒ12", "Greek letters that look like Latin ones"),
        ("A\u20101", "U+2010 HYPHEN"),  # not the keyboard's -
        ("\u0661\u0662", "U+0661 ARABIC-INDIC DIGIT ONE"),
    ],
)
def test_an_external_id_that_could_pass_for_another_is_refused(given, why):
    problem = external_id_problem(normal_external_id(given))
    assert problem is not None and why in problem


def _import(client, *rows):
    response = client.post(
        "/admin/api/participants", json={"participants": list(rows)}, headers=ADMIN
    )
    assert response.status_code == 200, response.json
    return response.json


def test_an_import_cleans_names_normalises_ids_and_refuses_look_alikes_row_by_row(client, database):
    report = _import(
        client,
        {"name": "Siân\u202e Ŵyn\x1b[2J", "phone": "07700 900001", "external_id": "ＲＸ１２"},
        {"name": "Bob", "phone": "07700 900002", "external_id": "RХ12"},  # Cyrillic Х
        {"name": "Cy", "phone": "07700 900003", "external_id": "R\u202e21X"},
        {"name": "Dee", "phone": "07700 900004", "tags": ["club\u202e", "read\x1bers"]},
    )
    assert report["created"] == 2
    rejected = {r["row"]: r["error"] for r in report["rejected"]}
    assert set(rejected) == {2, 3}
    assert rejected[2].startswith("external_id 'RХ12' mixes Latin and Cyrillic letters")
    assert "RIGHT-TO-LEFT OVERRIDE" in rejected[3] and "\u202e" not in rejected[3]
    with database.session() as session:
        people = {p.name: p for p in session.scalars(select(Participant))}
    assert set(people) == {"Siân Ŵyn[2J", "Dee"}
    assert people["Siân Ŵyn[2J"].external_id == "RX12"
    assert people["Dee"].tags == ["club", "readers"]
    # Found however the id is typed: as kept, full width, or by the admin API's ext: key.
    for key in ("RX12", "ＲＸ１２", "ext:ＲＸ１２"):
        found = client.get(f"/admin/api/participants/{key}", headers=ADMIN)
        assert found.status_code == 200 and found.json["name"] == "Siân Ŵyn[2J", key


def test_a_bare_key_whose_plain_form_is_our_id_names_nobody(client, database):
    _import(client, {"name": "Ann", "phone": "07700 900001"})
    with database.session() as session:
        ann = session.scalar(select(Participant)).id
    _import(client, {"name": "Bob", "phone": "07700 900002", "external_id": str(ann)})
    digits = str(ann).translate(str.maketrans("0123456789", "０１２３４５６７８９"))
    for key in (digits, f"ext:{digits}"):
        found = client.get(f"/admin/api/participants/{key}", headers=ADMIN)
        expected = "Bob" if key.startswith("ext:") else None
        assert found.json.get("name") == expected, (key, found.json)


def test_an_audience_named_by_a_full_width_id_is_that_person(client, database):
    _import(client, {"name": "Ann", "phone": "07700 900001", "external_id": "RX12"})
    created = client.post(
        "/admin/api/campaigns",
        json={
            "survey": "guide-title",
            "audience": {"participants": ["ＲＸ１２"]},
            "channel": "sms",
        },
        headers=ADMIN,
    )
    assert created.status_code == 201 and created.json["audience_size"] == 1, created.json


# --- the CLI shows answers as written, with nothing a terminal acts on --------------------


def test_terminal_safe_escapes_what_a_terminal_acts_on_and_keeps_lines():
    shown = terminal_safe(f"{ESCAPES}\n\tŵ 王 🏴󠁧󠁢󠁷󠁬󠁳󠁿")
    assert acted_on(shown) == []
    assert shown == "\\u001b]0;you have been hacked\\u0007 \\u202e \\u009b2J\n\tŵ 王 🏴󠁧󠁢󠁷󠁬󠁳󠁿"


@pytest.fixture
def answered(client, database, redis_conn) -> tuple[int, int]:
    """Ann answered the guide-title survey with escapes in her reason; her name, as kept
    before names were cleaned, carries some too. (campaign id, Ann's id)"""
    _import(client, {"name": "Ann", "phone": "07700 900001", "tags": ["t"]})
    created = client.post(
        "/admin/api/campaigns",
        json={"survey": "guide-title", "audience": {"tags": ["t"]}, "channel": "sms"},
        headers=ADMIN,
    ).json
    client.post(f"/admin/api/campaigns/{created['id']}/launch", headers=ADMIN)
    run_worker(redis_conn)
    for body in ("1", f"Because {ESCAPES}", "4", "yes"):
        post_twilio(
            client, PUBLIC, "/webhooks/twilio/sms", sms_params(body, sender="+447700900001")
        )
    with database.session() as session:
        ann = session.scalar(select(Participant))
        ann.name = f"Ann{ESCAPES}"
        # Kept exactly as she wrote it.
        why = session.scalar(select(Answer).where(Answer.question_id == "why"))
        assert why is not None and why.raw_text == f"Because {ESCAPES}"
        return created["id"], ann.id


def test_subject_access_in_the_cli_shows_escapes_and_is_still_the_data(app_settings, answered):
    _, ann = answered
    shown = CliRunner().invoke(main, ["participants", "show", f"id:{ann}"])
    assert shown.exit_code == 0, shown.output
    assert acted_on(shown.output) == []
    data = json.loads(shown.output)  # \uXXXX is JSON's own escape: the same data reads back
    assert data["name"] == f"Ann{ESCAPES}"
    assert f"Because {ESCAPES}" in [m["body"] for m in data["messages"]]


def test_a_feedback_preview_in_the_cli_shows_escapes(app_settings, answered, tmp_path):
    campaign, _ = answered
    template = tmp_path / "why.feedback.yaml"
    template.write_text('message: "{{ name }}, you said: {{ answers.why }}"\n', encoding="utf-8")
    shown = CliRunner().invoke(
        main, ["feedback", "preview", str(campaign), "--file", str(template)]
    )
    assert shown.exit_code == 0, shown.output
    assert acted_on(shown.output) == []
    assert "you said: Because \\u001b]0;you have been hacked\\u0007 \\u202e" in shown.output


def test_the_erase_question_and_a_refusal_show_escapes(app_settings, answered):
    _, ann = answered
    asked = CliRunner().invoke(main, ["participants", "erase", f"id:{ann}"], input="n\n")
    assert "Erase id:" in asked.output and acted_on(asked.output) == []
    refused = CliRunner().invoke(main, ["participants", "show", f"ext:{ESCAPES}"])
    assert refused.exit_code != 0 and acted_on(refused.output) == []
