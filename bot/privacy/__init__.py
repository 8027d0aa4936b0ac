"""Subject access and erasure (UK GDPR articles 15 and 17), for one person at a time."""

from __future__ import annotations

import base64
import contextlib
import re
import zlib
from typing import Any

from redis import Redis
from sqlalchemy import ColumnElement, delete, or_, select, update
from sqlalchemy.orm import Session

from bot import channels, conversations, engine
from bot.config import Settings
from bot.conversations.suppression import suppression_hash, suppression_key
from bot.phone_numbers import InvalidPhoneNumber, normalise_phone
from bot.storage import contacts
from bot.storage.models import (
    Answer,
    Campaign,
    ConsentEvent,
    Conversation,
    Invitation,
    Message,
    Participant,
    Suppression,
    TelegramLink,
    as_id,
    utcnow,
)
from bot.storage.status import InvitationStatus, Kind, Outbound
from bot.text import normal_external_id

EXTERNAL_PREFIX = "ext:"
ID_PREFIX = "id:"


class AmbiguousKey(LookupError):
    """A bare key that is one person's id and another person's external id."""


def find(session: Session, key: str) -> Participant | None:
    """A person by `id:<our id>`, `ext:<their external id>`, or a bare key naming exactly one.

    A bare key that is both someone's id and someone else's external id raises AmbiguousKey:
    guessing could send one person's answers to another, or erase the wrong person.
    """
    if key.startswith(EXTERNAL_PREFIX):
        external = key[len(EXTERNAL_PREFIX) :]
        return by_external_id(session, external) if external else None
    if key.startswith(ID_PREFIX):
        number = as_id(key[len(ID_PREFIX) :])
        return session.get(Participant, number) if number is not None else None
    # A bare key whose plain form is our kind of id ("２", "²" are "2" in NFKC) may have been
    # meant as our id: as an external id it counts only as typed, as " 2" and "02" do.
    by_external = by_external_id(session, key, normalise=as_id(normal_external_id(key)) is None)
    number = as_id(key)
    by_id = session.get(Participant, number) if number is not None else None
    if by_external is not None and by_id is not None and by_external is not by_id:
        raise AmbiguousKey(
            f"{key!r} is participant {number}'s id and another participant's external id: "
            f"say id:{number} for the first or ext:{key} for the second"
        )
    return by_id or by_external


def by_external_id(session: Session, external: str, normalise: bool = True) -> Participant | None:
    """The person with this external id as typed, else as imports keep it (NFKC: `Ｒ１` is
    `R1`); exactly as typed first, for an id kept before imports normalised them."""
    exact = session.scalar(select(Participant).where(Participant.external_id == external))
    normal = normal_external_id(external)
    if exact is not None or normal == external or not normalise:
        return exact
    return session.scalar(select(Participant).where(Participant.external_id == normal))


def _messages_of(session: Session, person: Participant) -> ColumnElement[bool]:
    """Their messages: those linked to them, and those only their number or chat id ties to
    them (a text the webhook kept after failing to handle it has no participant yet), in
    whatever form the sender's address came: `whatsapp:+44...`, `+44 7700 900116`."""
    linked = Message.participant_id == person.id
    theirs = unlinked_messages_from(session, person_addresses(person))
    if not theirs:
        return linked
    return or_(linked, Message.id.in_(theirs))


def person_addresses(person: Participant) -> list[str]:
    """Every address the person can be reached at or write from, as we store it."""
    return _addresses(person)


def _addresses(person: Participant) -> list[str]:
    return list(dict.fromkeys(point.address for point in person.contact_points))


_CHANNEL_PREFIX = re.compile(r"^[a-z][a-z0-9+.-]{0,19}:", re.IGNORECASE)  # whatsapp:, tel:


def address_keys(address: str) -> set[str]:
    """The one form of an address written any way: `whatsapp:+44 7700 900116`,
    `+44 7700 900116`, `07700900116` and `+447700900116` are all `+447700900116`; a chat id
    (bare digits, as Telegram writes it) is itself. Empty for text that is no address."""
    text = _CHANNEL_PREFIX.sub("", address.strip()).strip()
    bare = text.removeprefix("-")
    if bare.isascii() and bare.isdigit() and not bare.startswith("0"):
        return {text}
    try:
        return {normalise_phone(text)}
    except InvalidPhoneNumber:
        return set()


def unlinked_messages_from(session: Session, addresses: list[str]) -> list[int]:
    """Ids of the messages no participant is linked to whose address is one of `addresses`
    in any written form. Only rows kept on an error path are unlinked, so they are few; each
    is compared by its normalised form, which no SQL expression computes on every database.
    A number can have moved to this person from someone else: linked rows are not taken."""
    wanted = {key for address in addresses for key in address_keys(address)}
    if not wanted:
        return []
    rows = session.execute(
        select(Message.id, Message.address).where(
            Message.participant_id.is_(None), Message.address.is_not(None)
        )
    )
    return [number for number, address in rows if address_keys(address) & wanted]


def _iso(moment: Any) -> str | None:
    return moment.isoformat() if moment is not None else None


def contact_state(point: Any) -> str:
    """A contact point's state in plain words, as staff and the person read it: "usable",
    "stopped on Telegram: bot blocked (Telegram 403)", "cannot be reached on ..."."""
    title = channels.get(point.channel).title if point.channel in channels.NAMES else point.channel
    return contacts.described(point, title)


def subject_access(session: Session, person: Participant) -> dict[str, Any]:
    """Everything we hold about the person."""
    return {
        "id": person.id,
        "external_id": person.external_id,
        "name": person.name,
        # Every address we hold, in their preferred order, with what we know about each.
        "contact_points": [
            {
                "channel": point.channel,
                "address": point.address,
                "position": point.position,
                "verified_at": _iso(point.verified_at),
                "unreachable_at": _iso(point.unreachable_at),
                "unreachable_reason": point.unreachable_reason,
                "opted_out_at": _iso(point.opted_out_at),
                "opted_out_reason": point.opted_out_reason,
                # In plain words: "stopped on Telegram: bot blocked (Telegram 403)".
                "state": contact_state(point),
                "last_inbound_at": _iso(point.last_inbound_at),
                "created_at": _iso(point.created_at),
            }
            for point in person.contact_points
        ],
        "channel": person.channel,
        "language": person.language,
        "tags": person.tags or [],
        "recontact": person.recontact,
        "opted_out": person.opted_out,
        "joined_via": person.joined_via,
        "created_at": _iso(person.created_at),
        "erased_at": _iso(person.erased_at),
        "consent_log": [
            {"kind": e.kind, "how": e.how, "detail": e.detail, "at": _iso(e.at)}
            for e in session.scalars(
                select(ConsentEvent)
                .where(ConsentEvent.participant_id == person.id)
                .order_by(ConsentEvent.id)
            )
        ],
        "conversations": [
            {
                "id": c.id,
                "campaign": c.campaign_id,
                "channel": c.channel,
                "status": c.status,
                "started_at": _iso(c.started_at),
                "completed_at": _iso(c.completed_at),
            }
            for c in session.scalars(
                select(Conversation)
                .where(Conversation.participant_id == person.id)
                .order_by(Conversation.id)
            )
        ],
        "answers": [
            {
                "conversation": a.conversation_id,
                "question": a.question_id,
                "value": a.value,
                "label": a.label,
                "raw_text": a.raw_text,
                "unparsed": a.unparsed,
                "skipped": a.skipped,
                "channel": a.channel,
                "answered_at": _iso(a.answered_at),
            }
            for a in session.scalars(
                select(Answer)
                .join(Conversation, Conversation.id == Answer.conversation_id)
                .where(Conversation.participant_id == person.id)
                .order_by(Answer.id)
            )
        ],
        "messages": [
            {
                "direction": m.direction,
                "channel": m.channel,
                "kind": m.kind,
                "body": m.body,
                "status": m.status,
                "campaign": m.campaign_id,
                "created_at": _iso(m.created_at),
                "sent_at": _iso(m.sent_at),
            }
            for m in session.scalars(
                select(Message).where(_messages_of(session, person)).order_by(Message.id)
            )
        ],
        # Proof the loop was closed: what "you said, we did" message they got, and when.
        "feedback": [
            {
                "campaign": m.campaign_id,
                "channel": m.channel,
                "body": m.body,
                "status": m.status,
                "queued_at": _iso(m.created_at),
                "sent_at": _iso(m.sent_at),
            }
            for m in session.scalars(
                select(Message)
                .where(Message.participant_id == person.id, Message.kind == Kind.FEEDBACK)
                .order_by(Message.id)
            )
        ],
        "invitations": [
            {
                "campaign": i.campaign_id,
                "status": i.status,
                "reason": i.reason,
                "invited_at": _iso(i.invited_at),
                "reminded_at": _iso(i.reminded_at),
            }
            for i in session.scalars(
                select(Invitation)
                .where(Invitation.participant_id == person.id)
                .order_by(Invitation.id)
            )
        ],
    }


def lock_for_erasure(session: Session, person: Participant) -> None:
    """Before anything of theirs is read for an erasure: the campaigns that name them are
    rewritten first (`_drop_from_audiences`: a campaign's row comes before any person's, as
    closing and fan-outs take them), then the person's lock, and their row is read again under
    it. An answer or STOP in flight finishes first, and is erased with the rest."""
    _drop_from_audiences(session, person)
    session.flush()
    conversations.lock_person(session, person.id)
    session.refresh(person)


def erase(session: Session, settings: Settings, person: Participant) -> dict[str, int]:
    """Remove the person's personal data everywhere; keep only anonymous answers for the counts.

    The participant row stays as an empty tombstone so counts still add up. Closed answers keep
    their value but lose the link to the person; free text and anything they typed is removed.
    A person who had opted out leaves a hashed number behind so they are never contacted again.
    Their pending messages are cancelled so no job will send them. Redis is cleaned by
    `forget_in_redis` once this transaction has committed. The caller took
    `lock_for_erasure` before reading anything of theirs.
    """
    now = utcnow()
    if person.opted_out:
        key = suppression_key(settings)
        for address in _addresses(person):
            digest = suppression_hash(address, key)
            if (
                session.scalar(select(Suppression.id).where(Suppression.address_hash == digest))
                is None
            ):
                session.add(
                    Suppression(
                        address_hash=digest, reason="opted out, then erased", created_at=now
                    )
                )
    conversation_ids = (
        select(Conversation.id).where(Conversation.participant_id == person.id).scalar_subquery()
    )
    free_text = 0
    for conv in session.scalars(
        select(Conversation).where(Conversation.participant_id == person.id)
    ):
        survey = conversations.survey_for(session, conv.survey_version_id)
        typed = [q.id for q in survey.questions if q.type == "text"]
        free_text += session.execute(
            update(Answer)
            .where(
                Answer.conversation_id == conv.id,
                or_(Answer.unparsed.is_(True), Answer.question_id.in_(typed)),
            )
            .values(value=None, label=None)
        ).rowcount
    session.execute(
        update(Answer)
        .where(Answer.conversation_id.in_(conversation_ids))
        .values(raw_text=None, participant_id=None)
    )
    messages = session.execute(
        update(Message)
        .where(_messages_of(session, person))
        .values(body=None, address=None, error_message=None, updated_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    session.execute(
        update(Message)
        .where(
            Message.participant_id == person.id,
            Message.status.in_((Outbound.PENDING, Outbound.CLAIMED)),
        )
        .values(status=Outbound.CANCELLED, error_message="erased")
    )
    naming = [c.name for c in channels.all_channels() if c.provider_ids_name_the_person]
    session.execute(
        update(Message)
        .where(Message.participant_id == person.id, Message.channel.in_(naming))
        .values(provider_id=None)
    )
    session.execute(
        update(ConsentEvent).where(ConsentEvent.participant_id == person.id).values(detail=None)
    )
    # The engine keeps each answer, free text included, in the conversation's state too.
    for conv in session.scalars(
        select(Conversation).where(Conversation.participant_id == person.id)
    ):
        status = engine.EXPIRED if conv.status == engine.ACTIVE else conv.status
        conv.status = status
        conv.state = engine.State(question_id=None, status=status).to_json()
    session.execute(
        update(Invitation)
        .where(
            Invitation.participant_id == person.id,
            Invitation.status == InvitationStatus.WAITING,
        )
        .values(status=InvitationStatus.SKIPPED, reason="erased")
    )
    # Unused deep-link codes would join a chat to nobody; they go with the rest.
    session.execute(delete(TelegramLink).where(TelegramLink.participant_id == person.id))
    person.contact_points.clear()  # every address and what we knew of it
    person.name = person.external_id = person.joined_via = None
    person.tags = []
    person.channel = None
    person.language = None  # a preference that says something about them: it goes too
    person.recontact = None
    person.opted_out = True
    person.erased_at = now
    return {"messages": messages, "free_text_answers": free_text}


def _drop_from_audiences(session: Session, person: Participant) -> None:
    """A campaign aimed at people by external id keeps that id in its audience: swap it for our
    id (the campaign still names the same, now empty, row) so the external id leaves too."""
    if not person.external_id:
        return
    wanted = {person.external_id, f"{EXTERNAL_PREFIX}{person.external_id}"}
    for campaign in session.scalars(select(Campaign)):
        named = (campaign.audience or {}).get("participants")
        if isinstance(named, list) and wanted & {v for v in named if isinstance(v, str)}:
            campaign.audience = {"participants": [person.id if v in wanted else v for v in named]}


def held_at_providers(session: Session, person: Participant) -> dict[str, list[str]]:
    """What each channel's provider keeps of this person, named in their stored answers (the
    recordings of spoken answers live at Twilio): read before erasing, deleted there after."""
    texts = [
        text
        for row in session.execute(
            select(Answer.value, Answer.raw_text).where(
                Answer.conversation_id.in_(
                    select(Conversation.id).where(Conversation.participant_id == person.id)
                )
            )
        )
        for text in row
        if text
    ]
    held = {channel.name: channel.held_at_provider(texts) for channel in channels.all_channels()}
    return {name: refs for name, refs in held.items() if refs}


def addresses_of(person: Participant) -> list[str]:
    """What could identify the person in free-form text elsewhere (Redis): read before erasing."""
    found: list[str | None] = [*_addresses(person)]
    if person.name and len(person.name) >= 4:
        found.append(person.name)
    return [a for a in found if a]


def forget_in_redis(redis: Redis, addresses: list[str]) -> int:
    """Delete rq's records of finished or failed jobs that mention the person.

    Jobs carry only row ids, but a job's result or error text can quote what the provider said,
    and Twilio's errors name the number. Such records are history, not work, so removing them
    loses nothing; queued work is only ever ids and never matches. Returns keys deleted.
    """
    needles = [a.encode() for a in addresses if a]
    if not needles:
        return 0
    deleted = 0
    for key in redis.scan_iter(match="rq:*", count=1000):
        if any(needle in text for text in _redis_texts(redis, key) for needle in needles):
            deleted += redis.delete(key)
    return deleted


def _redis_texts(redis: Redis, key: bytes) -> list[bytes]:
    kind = redis.type(key)
    values: list[bytes] = []
    if kind == b"hash":
        values = list(redis.hgetall(key).values())
    elif kind == b"string":
        values = [redis.get(key) or b""]
    elif kind == b"stream":
        values = [v for _, fields in redis.xrange(key) for v in fields.values()]
    elif kind == b"list":
        values = list(redis.lrange(key, 0, -1))
    return [text for value in values for text in _unwrapped(value)]


def _unwrapped(value: bytes) -> list[bytes]:
    """The value, and what it holds where rq wrapped it: job data and errors are compressed,
    results base64 of a pickle, errors in results base64 of compressed text."""
    texts = [value]
    with contextlib.suppress(ValueError):
        texts.append(base64.b64decode(value, validate=True))
    for text in list(texts):
        with contextlib.suppress(zlib.error):
            texts.append(zlib.decompress(text))
    return texts
