"""The worker sends by its own settings: the CLI in another terminal says which it judged by
and where they differ, and a worker started with new QUIET_HOURS re-times what was held."""

from __future__ import annotations

from click.testing import CliRunner
from sqlalchemy import select

from bot.commands import runtime
from bot.commands.worker import BEAT_KEY, VIEW_KEY, beat, retime_held, service_view
from bot.config import parse_quiet_hours
from bot.storage.models import Message, utcnow
from tests.conftest import ADMIN, run_worker
from tests.test_campaigns import create, setup_panel


def _cli(*args: str):
    from bot.commands.cli import main

    return CliRunner().invoke(main, list(args))


def test_the_cli_says_whose_settings_it_judged_by(client, database, redis_conn, app_settings):
    setup_panel(client, database)
    campaign_id = create(client)["id"]
    redis_conn.delete(BEAT_KEY, VIEW_KEY)
    launched = _cli("campaign", "launch", str(campaign_id))
    assert launched.exit_code == 0, launched.output
    assert "note: no worker is running (never seen)" in launched.output
    assert "judged by its own settings: sms on, voice on, telegram off" in launched.output
    assert "quiet hours none (Europe/London)" in launched.output
    # A worker runs with the service's settings (no quiet hours); this terminal has others.
    beat(redis_conn, view=service_view(app_settings))
    runtime.configure(app_settings.with_overrides(quiet_hours=parse_quiet_hours("20:00-10:00")))
    shown = _cli("campaign", "status", str(campaign_id))
    assert shown.exit_code == 0, shown.output
    assert "warning: this terminal's settings are not the worker's" in shown.output
    assert "quiet hours 20:00-10:00 here, none in the worker" in shown.output
    runtime.configure(app_settings)
    same = _cli("campaign", "status", str(campaign_id))
    assert "warning" not in same.output and "note:" not in same.output


def test_emptying_quiet_hours_re_times_invitations_already_held(
    client, database, redis_conn, twilio_fake, app_settings
):
    quiet = app_settings.with_overrides(quiet_hours=parse_quiet_hours("00:00-23:59"))
    runtime.configure(quiet)
    setup_panel(client, database)
    campaign_id = create(client)["id"]
    client.post(f"/admin/api/campaigns/{campaign_id}/launch", headers=ADMIN)
    run_worker(redis_conn)
    assert twilio_fake.sends() == []  # held until 23:59
    # QUIET_HOURS= (empty), and the worker restarted: what was held goes now.
    runtime.configure(app_settings)
    assert retime_held(database, redis_conn, app_settings) == 2
    with database.session() as session:
        held = session.scalars(select(Message).where(Message.kind == "invitation")).all()
        assert all(m.send_after <= utcnow() for m in held)
    run_worker(redis_conn)
    assert len(twilio_fake.sends()) == 2
    assert retime_held(database, redis_conn, app_settings) == 0  # nothing twice
