"""A campaign by text to people on landlines: staff are warned with the count when they create
and launch it, and offered the call channel for them; taking the offer rings them, and texts
go to everyone else as before (issue 20, "Calls that sound right")."""

from __future__ import annotations

import re
from types import SimpleNamespace

import phonenumbers
import pytest
from click.testing import CliRunner
from sqlalchemy import select

from bot import channels
from bot.commands.cli import main
from bot.cycle import unsuited
from bot.phone_numbers import is_landline
from bot.scripts.survey import load_text
from bot.storage import contacts
from bot.storage.models import AuditEvent, Campaign, Message
from tests import people
from tests.conftest import ADMIN, run_worker
from tests.test_console import add_staff, form, sign_in

MOBILES = ("+447700900001", "+447700900002")
# A London number and one in Ofcom's drama range for landlines (01632 960xxx).
LANDLINES = ("+442079460003", "+441632960004")
TEXT = "a landline, which cannot take texts"


def panel(database, *numbers: str, tag: str = "readers", **fields) -> list[int]:
    with database.session() as session:
        return [
            people.person(session, name=f"P{i}", phone=n, tags=[tag], **fields).id
            for i, n in enumerate(numbers)
        ]


def create(client, **body):
    payload = {"survey": "guide-title", "audience": {"tags": ["readers"]}, "channel": "sms"}
    response = client.post("/admin/api/campaigns", json={**payload, **body}, headers=ADMIN)
    assert response.status_code == 201, response.json
    return response.json


def launch(client, campaign_id: int, **body):
    return client.post(
        f"/admin/api/campaigns/{campaign_id}/launch", json=body or None, headers=ADMIN
    )


def texted(twilio_fake) -> list[str]:
    return sorted(r["form"]["To"] for r in twilio_fake.requests if "/Messages.json" in r["path"])


def called(twilio_fake) -> list[str]:
    return sorted(call["to"] for call in twilio_fake.calls)


def invited_by(database, campaign_id: int) -> dict[str, str]:
    """Each invitation's address and channel."""
    with database.session() as session:
        return dict(
            session.execute(
                select(Message.address, Message.channel).where(
                    Message.campaign_id == campaign_id, Message.kind == "invitation"
                )
            ).all()
        )


# --- which numbers are landlines ----------------------------------------------------------


@pytest.mark.parametrize(
    "number",
    [
        *LANDLINES,
        "+441134960000",  # Leeds (drama range)
        "+442920018000",  # Cardiff
        "+441481256789",  # Guernsey
        "+443069990123",  # 03: charged and routed as geographic numbers
        "020 7946 0123",  # as people write them
        "01632 960123",
        "+33123456789",  # a Paris fixed line
    ],
)
def test_fixed_lines_are_landlines(number):
    assert is_landline(number)


@pytest.mark.parametrize(
    "number",
    [
        *MOBILES,
        "+447911123456",
        "07700 900123",
        "+448081570123",  # freephone
        "+33612345678",  # a French mobile
        "+12015550123",  # North America: fixed line or mobile, cannot tell: not said to be one
        "not a number",
    ],
)
def test_mobiles_and_numbers_that_may_be_mobiles_are_not(number):
    assert not is_landline(number)


@pytest.mark.parametrize("region", ["GB", "FR", "DE", "IE", "ES", "AU"])
def test_every_number_phonenumbers_calls_a_fixed_line_is_one(region):
    fixed = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.FIXED_LINE)
    mobile = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
    e164 = phonenumbers.PhoneNumberFormat.E164
    assert is_landline(phonenumbers.format_number(fixed, e164))
    assert not is_landline(phonenumbers.format_number(mobile, e164))


def test_only_texts_find_a_landline_unsuited():
    assert channels.get("sms").unsuited(LANDLINES[0]) == TEXT
    assert channels.get("sms").unsuited(MOBILES[0]) is None
    for other in channels.all_channels():
        if other.name != "sms":
            assert other.unsuited(LANDLINES[0]) is None, other


def _person(*points: tuple[str, str]) -> SimpleNamespace:
    """A person as the campaign reads them in bulk: their channel and contact points."""
    return SimpleNamespace(
        channel=points[0][0],
        contact_points=[
            SimpleNamespace(channel=c, address=a, opted_out_at=None, unreachable_at=None)
            for c, a in points
        ],
    )


def test_no_offer_where_the_other_channel_cannot_carry_the_survey(app_settings):
    options = ", ".join(f"{{value: o{i}, label: Option {i}}}" for i in range(12))
    long_list = load_text(
        "id: many\ntitle: Many\nintro: Hello.\nquestions:\n"
        f"  - {{id: q, type: choice, ask: 'Which?', options: [{options}]}}\n"
    )
    assert "voice" not in channels.able_to_carry(long_list)
    landline = _person(("sms", LANDLINES[0]), ("voice", LANDLINES[0]))
    (found,) = unsuited.tally([landline], "sms", long_list, app_settings)
    assert (found.people, found.of, found.offer) == (1, 1, None)
    assert found.sentence() == f"The 1 person to invite by text message has {TEXT}"
    assert found.offer_sentence() == "no other way to reach them can take this survey now"
    assert found.moved_sentence() == "they are invited by text message all the same"


# --- the admin API --------------------------------------------------------------------------


def test_create_warns_of_landlines_with_the_count_and_offers_calls(client, database):
    panel(database, *MOBILES, *LANDLINES)
    created = create(client)
    assert created["audience_size"] == 4
    assert created["unsuited"] == [
        {
            "channel": "sms",
            "title": "text message",
            "reason": TEXT,
            "people": 2,
            "of": 4,
            "offer": {"channel": "voice", "title": "phone call (keypad)", "people": 2},
            "moved": 0,
        }
    ]
    # Left to each person's channel, texts are still theirs: the same warning.
    assert create(client, channel=None)["unsuited"][0]["people"] == 2
    # By call, or to mobiles only, there is nothing to warn of.
    assert "unsuited" not in create(client, channel="voice")
    panel(database, "+447700900009", tag="mobiles")
    assert "unsuited" not in create(client, audience={"tags": ["mobiles"]})


def test_the_offer_counts_only_landlines_that_can_be_called(client, database):
    (stopped,) = panel(database, LANDLINES[0])
    panel(database, LANDLINES[1])
    with database.session() as session:
        contacts.mark(session, stopped, "voice", LANDLINES[0], opted_out="carrier")
    (found,) = create(client)["unsuited"]
    assert (found["people"], found["offer"]["people"]) == (2, 1)


def test_launch_without_the_offer_warns_and_texts_everyone(
    client, database, redis_conn, twilio_fake
):
    panel(database, *MOBILES, *LANDLINES)
    campaign_id = create(client)["id"]
    launched = launch(client, campaign_id)
    assert launched.status_code == 202, launched.json
    (found,) = launched.json["unsuited"]
    assert (found["people"], found["of"], found["moved"]) == (2, 4, 0)
    run_worker(redis_conn)
    # Staff decided: many landlines read texts aloud, and fallback covers those that fail.
    assert texted(twilio_fake) == sorted(MOBILES + LANDLINES) and called(twilio_fake) == []


def test_taking_the_offer_rings_the_landlines_and_texts_the_mobiles(
    client, database, redis_conn, twilio_fake
):
    panel(database, *MOBILES, *LANDLINES)
    campaign_id = create(client, reminder_after_hours=24)["id"]
    launched = launch(client, campaign_id, move_unsuited_to="voice")
    assert launched.status_code == 202, launched.json
    (found,) = launched.json["unsuited"]
    assert (found["people"], found["moved"], found["offer"]["channel"]) == (2, 2, "voice")
    run_worker(redis_conn)
    assert called(twilio_fake) == sorted(LANDLINES)
    assert texted(twilio_fake) == sorted(MOBILES)
    assert invited_by(database, campaign_id) == {
        **dict.fromkeys(MOBILES, "sms"),
        **dict.fromkeys(LANDLINES, "voice"),
    }
    shown = client.get(f"/admin/api/campaigns/{campaign_id}", headers=ADMIN).json
    assert shown["move_unsuited_to"] == "voice"
    with database.session() as session:
        event = session.scalars(select(AuditEvent).where(AuditEvent.action == "launch")).one()
        assert event.detail == {"move_unsuited_to": "voice"}
    # Launching again sends nothing twice, and changes nothing.
    again = launch(client, campaign_id, move_unsuited_to="voice")
    assert again.status_code == 202 and "unsuited" not in again.json
    run_worker(redis_conn)
    assert len(twilio_fake.calls) == 2


def test_taking_the_offer_leaves_mobiles_and_uncallable_landlines_as_they_are(
    client, database, redis_conn, twilio_fake
):
    (stopped,) = panel(database, LANDLINES[0])
    panel(database, LANDLINES[1], *MOBILES)
    with database.session() as session:
        contacts.mark(session, stopped, "voice", LANDLINES[0], opted_out="carrier")
    campaign_id = create(client)["id"]
    (found,) = launch(client, campaign_id, move_unsuited_to="voice").json["unsuited"]
    assert (found["people"], found["moved"]) == (2, 1)
    said = unsuited.Unsuited.from_json(found)
    assert said.sentence() == f"2 of the 4 people to invite by text message have {TEXT}"
    assert said.moved_sentence() == (
        "1 of them is invited by phone call (keypad) instead; the other 1 by text message"
    )
    run_worker(redis_conn)
    assert texted(twilio_fake) == sorted((*MOBILES, LANDLINES[0]))
    assert called(twilio_fake) == [LANDLINES[1]]


def test_a_launch_refuses_a_channel_that_cannot_take_them(client, database):
    panel(database, *LANDLINES)
    campaign_id = create(client)["id"]
    for body, status, said in [
        ({"move_unsuited_to": "pigeon"}, 400, "move_unsuited_to must be null or one of"),
        ({"move_unsuited_to": "sms"}, 400, "this campaign already invites by text message"),
        ({"move_unsuited_to": "telegram"}, 409, "cannot move people to Telegram now: set"),
        ({"move_to": "voice"}, 400, "unknown field 'move_to'"),
        ([], 400, "the body is"),
    ]:
        refused = client.post(
            f"/admin/api/campaigns/{campaign_id}/launch", json=body, headers=ADMIN
        )
        assert (refused.status_code, said in refused.json["error"]) == (status, True), (
            body,
            refused.json,
        )
    with database.session() as session:
        found = session.get(Campaign, campaign_id)
        assert (found.status, found.move_unsuited_to) == ("draft", None)


# --- the shell --------------------------------------------------------------------------


def test_the_shell_says_one_line_at_create_and_launch(client, database, redis_conn, twilio_fake):
    panel(database, *MOBILES, *LANDLINES)
    runner = CliRunner()
    created = runner.invoke(main, ["campaign", "create", "guide-title", "--tag", "readers"])
    assert created.exit_code == 0, created.output
    number = created.output.split()[1]
    (warning,) = [line for line in created.output.splitlines() if line.startswith("warning:")]
    assert warning == (
        f"warning: 2 of the 4 people to invite by text message have {TEXT}: all of them can be"
        f" reached by phone call (keypad) instead (launch with: involve campaign launch {number}"
        " --move-unsuited-to voice; else they are invited by text message all the same)"
    )
    launched = runner.invoke(main, ["campaign", "launch", number, "--move-unsuited-to", "voice"])
    assert launched.exit_code == 0, launched.output
    assert (
        f"moved: 2 of the 4 people to invite by text message have {TEXT}: 2 of them are invited"
        " by phone call (keypad) instead\n" in launched.output
    )
    run_worker(redis_conn)
    assert called(twilio_fake) == sorted(LANDLINES)
    status = runner.invoke(main, ["campaign", "status", number]).output
    assert "moved        to phone call (keypad) where their address cannot take" in status, status
    panel(database, "+447700900009", tag="mobiles")
    mobiles = runner.invoke(main, ["campaign", "create", "guide-title", "--tag", "mobiles"])
    assert mobiles.exit_code == 0 and "warning" not in mobiles.output, mobiles.output


def test_the_shell_warns_at_a_launch_that_texts_them(client, database, redis_conn):
    panel(database, LANDLINES[0], *MOBILES)
    runner = CliRunner()
    number = runner.invoke(main, ["campaign", "create", "guide-title", "--all"]).output.split()[1]
    launched = runner.invoke(main, ["campaign", "launch", number])
    assert (
        f"warning: 1 of the 3 people to invite by text message has {TEXT}: they are invited by"
        " text message all the same\n" in launched.output
    ), launched.output


# --- the console --------------------------------------------------------------------------


def test_the_console_warns_and_its_offer_rings_them(client, database, redis_conn, twilio_fake):
    panel(database, *MOBILES, *LANDLINES)
    add_staff(database)
    assert sign_in(client).status_code == 302
    created = form(
        client, "/console/campaigns/new", survey="guide-title", tags="readers", channel="sms"
    )
    assert created.status_code == 302
    campaign_id = int(created.headers["Location"].rsplit("/", 1)[1])
    page = f"/console/campaigns/{campaign_id}"
    detail = client.get(page).get_data(as_text=True)
    warning = f"2 of the 4 people to invite by text message have {TEXT}."
    assert warning + " All of them can be reached by phone call (keypad) instead: you can" in detail
    assert detail.count('class="notice notice-warning"') == 2  # the flash, and the draft's own
    asked = client.get(f"{page}/launch").get_data(as_text=True)
    assert warning + " All of them can be reached by phone call (keypad) instead." in asked
    assert 'name="move_unsuited_to" value="voice"' in asked
    assert "now, and invite these 2 people by phone call (keypad) instead" in asked
    assert f"Launch campaign {campaign_id} now, without moving anyone</button>" in asked
    launched = form(client, f"{page}/launch", confirm="launch", move_unsuited_to="voice")
    assert launched.status_code == 302
    run_worker(redis_conn)
    assert called(twilio_fake) == sorted(LANDLINES) and texted(twilio_fake) == sorted(MOBILES)
    after = client.get(page).get_data(as_text=True)
    assert "2 of them are invited by phone call (keypad) instead." in after
    assert "notice-warning" not in after  # launched: nothing left to warn of
    assert "invited by phone call (keypad) instead, as chosen at launch" in after


def test_the_console_says_nothing_for_mobiles(client, database):
    panel(database, *MOBILES)
    add_staff(database)
    assert sign_in(client).status_code == 302
    created = form(
        client, "/console/campaigns/new", survey="guide-title", tags="readers", channel="sms"
    )
    page = created.headers["Location"]
    assert "notice-warning" not in client.get(page).get_data(as_text=True)
    asked = client.get(f"{page}/launch").get_data(as_text=True)
    assert "move_unsuited_to" not in asked
    assert re.search(r">Launch campaign \d+ now</button>", asked)
