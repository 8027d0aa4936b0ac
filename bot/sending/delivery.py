"""Message status: moves only forward, whatever order the provider's callbacks arrive in."""

from __future__ import annotations

from bot.storage.models import Message, utcnow

# Our statuses, by how far along they are. Final ones never change again.
RANK = {
    "pending": 0,
    "claimed": 1,
    "queued": 2,
    "sent": 3,
    "delivered": 4,
    "undelivered": 4,
    "failed": 4,
    "cancelled": 4,
    "replied": 4,
}
FINAL = {status for status, rank in RANK.items() if rank == 4}

TWILIO_STATUS = {
    "accepted": "queued",
    "scheduled": "queued",
    "queued": "queued",
    "sending": "queued",
    "sent": "sent",
    "delivered": "delivered",
    "read": "delivered",
    "undelivered": "undelivered",
    "failed": "failed",
    "canceled": "cancelled",
    # calls
    "initiated": "queued",
    "ringing": "queued",
    "in-progress": "sent",
    "answered": "sent",
    "completed": "delivered",
    "busy": "undelivered",
    "no-answer": "undelivered",
}


def advance(
    message: Message, status: str, error_code: str | None = None, error_message: str | None = None
) -> bool:
    """Apply `status` if it moves the message on; repeats and late arrivals change nothing."""
    if status not in RANK:
        return False
    if message.status in FINAL or RANK[status] <= RANK.get(message.status, 0):
        return False
    message.status = status
    if error_code:
        message.error_code = error_code
    if error_message:
        message.error_message = error_message
    message.updated_at = utcnow()
    return True
