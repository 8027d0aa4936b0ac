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
from bot.storage.status import Kind

NEW_CONTACT = frozenset({Kind.INVITATION, Kind.REMINDER, Kind.FEEDBACK})


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


# Reserves up to ARGV[2] consecutive slots for a sender, but only those that begin within ARGV[3]
# microseconds, and returns {microseconds until the first, how many were granted}. The clock is
# Redis's own, so workers on several machines agree; nothing is reserved that will not be used.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local wanted = tonumber(ARGV[2])
local horizon = tonumber(ARGV[3])
local free = tonumber(redis.call('GET', KEYS[1]) or '0')
local slot = math.max(now, free)
local granted = 0
if slot - now <= horizon then
  granted = math.min(wanted, math.floor((horizon - (slot - now)) / interval) + 1)
end
if granted > 0 then
  local ttl = math.ceil((slot + interval * granted - now) / 1000) + 1000
  redis.call('SET', KEYS[1], tostring(slot + interval * granted), 'PX', ttl)
end
return {slot - now, granted}
"""


class RateLimiter:
    """At most `rate` sends a second for each sender key, shared through Redis."""

    def __init__(self, redis: Redis, rate: float):
        self.redis = redis
        self.interval_us = max(1, int(1_000_000 / rate))
        self._script = redis.register_script(_RESERVE)

    def reserve(self, sender_key: str, count: int = 1, within: float = 3600.0) -> tuple[float, int]:
        """Up to `count` consecutive send slots that begin within `within` seconds.

        Returns (seconds until the first slot, how many were granted); slot i begins
        `i / rate` seconds after the first. Zero granted means the queue ahead is longer than
        `within`, and the first free slot is that many seconds away.
        """
        wait_us, granted = self._script(
            keys=[f"involve:rate:{sender_key}"],
            args=[self.interval_us, count, int(within * 1_000_000)],
        )
        return int(wait_us) / 1_000_000, int(granted)
