"""Calling again after no answer, declared as a policy: busy, no answer or a passing failure,
on VOICE_RETRY's schedule (default 15 minutes, 1 hour, then a day), then counted as not
reached.

The core acts on it (`bot.sending.delivery`, in the status callback's transaction): each
further call is a new outbox row (the unanswered one is closed with the reason), so it has
every guarantee a first call has: claimed at most once, paced by SEND_RATE, held past quiet
hours (it is new contact), and cancelled if the person stops in the meantime.
"""

from __future__ import annotations

from bot.channels.base import RetryPolicy
from bot.config import Settings

NOT_ANSWERED = frozenset({"busy", "no-answer"})


def call_again(settings: Settings) -> RetryPolicy:
    return RetryPolicy(
        schedule=settings.voice_retry,
        statuses=NOT_ANSWERED,
        passing_failures=True,
        tries="calls",
        again="called again",
    )
