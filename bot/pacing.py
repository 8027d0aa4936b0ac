"""When outbound contact may happen: quiet hours in local time, and a shared send rate.

Quiet hours hold new contact (invitations, reminders, feedback) until the window closes,
computed in INVOLVE_TIMEZONE so it stays right across clock changes. Replies to a person who
just wrote are never held. The rate limit lives in Redis so it holds across every worker.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from redis import Redis

from bot.config import QuietWindow

NEW_CONTACT = frozenset({"invitation", "reminder", "feedback"})


def _inside(window: QuietWindow, local: datetime) -> datetime | None:
    """Where `local` is inside the window, the local moment the window ends."""
    t = local.time().replace(tzinfo=None)
    if window.start < window.end:
        if window.start <= t < window.end:
            return datetime.combine(local.date(), window.end, tzinfo=local.tzinfo)
        return None
    if t >= window.start:
        return datetime.combine(local.date() + timedelta(days=1), window.end, tzinfo=local.tzinfo)
    if t < window.end:
        return datetime.combine(local.date(), window.end, tzinfo=local.tzinfo)
    return None


def next_allowed(now: datetime, windows: Sequence[QuietWindow], zone: ZoneInfo) -> datetime:
    """`now`, or the first moment after it outside every quiet window (UTC)."""
    moment = now.astimezone(UTC)
    for _ in range(2 * len(windows) + 1):  # adjoining windows: follow them along
        local = moment.astimezone(zone)
        ends = [end for w in windows if (end := _inside(w, local)) is not None]
        if not ends:
            return moment
        # A wall-clock end that falls in a spring-forward gap still maps to one instant.
        moment = max(end.astimezone(UTC) for end in ends)
    return moment


def in_quiet_hours(now: datetime, windows: Sequence[QuietWindow], zone: ZoneInfo) -> bool:
    return next_allowed(now, windows, zone) > now


# Reserves the next free slot for a sender and returns how long to wait for it (microseconds).
# The clock is Redis's own, so workers on several machines agree.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local free = tonumber(redis.call('GET', KEYS[1]) or '0')
local slot = math.max(now, free)
local ttl = math.ceil((slot + interval - now) / 1000) + 1000
redis.call('SET', KEYS[1], tostring(slot + interval), 'PX', ttl)
return slot - now
"""


class RateLimiter:
    """At most `rate` sends a second for each sender key, shared through Redis."""

    def __init__(self, redis: Redis, rate: float):
        self.redis = redis
        self.interval_us = max(1, int(1_000_000 / rate))
        self._script = redis.register_script(_RESERVE)

    def reserve(self, sender_key: str, count: int = 1) -> float:
        """Seconds until the reserved slot(s) begin; the caller waits that long, then sends."""
        waited = self._script(keys=[f"involve:rate:{sender_key}"], args=[self.interval_us * count])
        return int(waited) / 1_000_000
