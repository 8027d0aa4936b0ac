"""The words stored in status, kind and direction columns, named once.

They are `StrEnum`s, so a row read back compares equal to its constant and the stored values
stay the plain words the API, the exports and earlier rows already use.
"""

from __future__ import annotations

from enum import StrEnum


class Direction(StrEnum):
    IN = "in"
    OUT = "out"


class Kind(StrEnum):
    INBOUND = "inbound"
    REPLY = "reply"  # answering a person who just wrote: never held by quiet hours
    INVITATION = "invitation"
    REMINDER = "reminder"
    FEEDBACK = "feedback"
    NOTICE = "notice"


class Inbound(StrEnum):
    """What became of something a person sent."""

    PROCESSED = "processed"
    RETRYING = "retrying"  # handling failed for a passing reason; a job tries again, in order
    FAILED = "error"  # gave up after retries: staff see it with its reason


class Outbound(StrEnum):
    """An outbound message, from the outbox to the handset. Only ever moves forward."""

    PENDING = "pending"
    CLAIMED = "claimed"  # a sender is calling the provider right now
    QUEUED = "queued"
    SENT = "sent"
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    FAILED = "failed"
    CANCELLED = "cancelled"
    REPLIED = "replied"  # an inline reply: the provider delivered it with its webhook answer


class CampaignStatus(StrEnum):
    DRAFT = "draft"
    LAUNCHING = "launching"
    LAUNCHED = "launched"
    CLOSED = "closed"


class InvitationStatus(StrEnum):
    INVITED = "invited"
    WAITING = "waiting"  # in another survey; invited when that one ends
    SKIPPED = "skipped"  # opted out, no address, channel off


class Consent(StrEnum):
    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"
    RECONTACT_YES = "recontact_yes"
    RECONTACT_NO = "recontact_no"
    # One contact point, not the person: they blocked us on that channel (a Telegram bot, a
    # WhatsApp sender), or let us in again. `how` is the channel; the address is never logged.
    POINT_STOPPED = "point_stopped"
    POINT_LET_IN = "point_let_in"
