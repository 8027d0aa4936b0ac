"""Every rq job's entry point, and nothing else.

Each is a thin process entry point: it takes ids (never a person's words or number), reads the
settings, database and Redis from `bot.commands.runtime`, and calls the work in its domain
module, which takes them as arguments. Jobs are enqueued by these dotted names, as strings
("bot.commands.jobs.send_messages"), so that the modules that enqueue them import nothing
from up here (tests/test_registry.py checks every such name is a job below).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bot import channels
from bot.commands import runtime
from bot.conversations import inbox
from bot.cycle import campaigns, reminders, upkeep
from bot.privacy import retention
from bot.providers.base import ErasesAtProvider, TidiesAfterPress
from bot.sending import send
from bot.storage.models import utcnow


def send_messages(message_ids: list[int]) -> dict[int, str]:
    """Send a batch of outbox rows; what happened to each, in words (no message text)."""
    return send.send_batch(runtime.database(), runtime.redis(), runtime.settings(), message_ids)


def send_message(message_id: int) -> str:
    return send_messages([message_id]).get(message_id, "no such outbound message")


def reconcile_outbox(now: datetime | None = None) -> dict[str, int]:
    """Every minute (the worker's cron): the outbox, inbound retries, and campaigns' upkeep."""
    database, redis, settings = runtime.database(), runtime.redis(), runtime.settings()
    now = now or utcnow()
    return {
        **send.reconcile(database, redis, settings, now),
        **upkeep.keep_moving(database, redis, settings, now),
    }


def retry_inbound(message_id: int) -> dict[str, int]:
    return inbox.retry_backlog(
        runtime.database(), runtime.settings(), message_id, keywords=runtime.library().keywords()
    )


def fan_out(campaign_id: int) -> dict[str, int]:
    return campaigns.fan_out(runtime.database(), runtime.settings(), campaign_id)


def send_reminders(campaign_id: int) -> int:
    return reminders.send_reminders(runtime.database(), runtime.settings(), campaign_id)


def purge_expired() -> dict[str, Any]:
    """Takes nothing, so a queued job never holds anything about anyone."""
    return retention.purge_expired(runtime.database(), runtime.settings(), utcnow())


def erase_at_provider(channel: str, refs: list[str]) -> int:
    """Erasure's last step: what the channel's provider keeps of the person (the recordings of
    spoken answers on calls), deleted there by its sender."""
    sender = channels.get(channel).sender(runtime.settings())
    if not isinstance(sender, ErasesAtProvider):
        return 0
    return sender.erase_at_provider(refs)


def after_press(channel: str, address: str, message_ref: str) -> bool:
    """A button on one of our messages was pressed and taken: the channel's sender tidies that
    message where it can (Telegram takes its buttons off); a sender with nothing to tidy is
    left alone."""
    sender = channels.get(channel).sender(runtime.settings())
    return isinstance(sender, TidiesAfterPress) and sender.after_press(address, message_ref)
