"""The one door: everything a participant sends, on any channel, is applied here and only here.

A channel endpoint reads its provider's request into a `Received` and calls `receive`; the
simulator does the same. In one transaction, in this order:

1. the person's row is locked (created if they are new): the first lock every writer of a
   person's data takes (`bot.conversations`), so two messages from one person queue;
2. their conversation is read and locked *after* that, so it is never a stale copy;
3. the engine's step, and every write: state, answers, consent, the replies; a survey's end is
   announced (`bot.conversations.events`) for campaigns to act on;
4. last, the inbound row under the provider's id, in one statement that skips an id seen
   before (INSERT ... ON CONFLICT DO NOTHING): a redelivery rolls all of the above back and
   changes nothing; a concurrent one waits for the person's lock, then for that row.

A passing failure (deadlock, serialization failure, lost connection) is tried again at once a
couple of times. If it still fails, the message is kept as `retrying` and handled again by a
job with back-off, in arrival order for that person; later messages from them queue behind it,
and the answers they get go out through the outbox. Nothing a person sent is dropped.
"""

from __future__ import annotations

import logging
import random
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, insert, select, text, update
from sqlalchemy.orm import Session

from bot import channels, conversations, engine
from bot.channels.base import (
    DUPLICATE,
    PROCESSED,
    RETRYING,
    Interpret,
    Outcome,
    Received,
)
from bot.config import Settings
from bot.conversations import events, outbox
from bot.engine import Inbound, Prompt, Say
from bot.engine.keywords import Command, ProviderKeyword, classify, start_payload
from bot.i18n import N_, t
from bot.scripts.survey import Survey
from bot.storage import contacts
from bot.storage.db import INBOX, Database, connection_of, is_transient, queue_after_commit
from bot.storage.models import (
    WAITING_INBOUND,
    Answer,
    Campaign,
    Conversation,
    Message,
    Participant,
    utcnow,
)
from bot.storage.prepared import Prepared
from bot.storage.status import CampaignStatus, Consent, Direction, Kind, Outbound
from bot.storage.status import Inbound as InboundStatus

log = logging.getLogger(__name__)

RETRY_JOB = "bot.commands.jobs.retry_inbound"  # the rq job that handles a kept message again
INLINE_TRIES = 3  # attempts within the request before handing over to the retry job
RETRY_DELAYS = (10, 30, 120, 600, 3600)  # seconds before each later attempt
# Said in the person's language (`t`); staff and the keypad know the first by its kind.
OPTED_OUT_TEXT = N_(
    "You asked us not to contact you. Reply START if you would like to hear from us again."
)
GAVE_UP_TEXT = N_(
    "Sorry, something went wrong on our side with your last message. "
    "We have kept it, and someone will look into it."
)


def receive(
    database: Database,
    settings: Settings,
    received: Received,
    now: datetime | None = None,
    keywords: Mapping[str, Survey] | None = None,
) -> Outcome:
    """Apply what a person sent; what to answer them with, inline."""
    now = now or utcnow()
    failure: BaseException | None = None

    def apply(session: Session) -> Outcome:
        # Perhaps on another thread, committed with other messages (`Database.together`).
        return _handle(session, settings, received, now, keywords, inline=True)

    for attempt in range(INLINE_TRIES):
        try:
            return database.together(apply)
        except _SeenBefore:
            return Outcome(DUPLICATE)
        except Exception as exc:
            failure = exc
            if not is_transient(exc) or attempt + 1 == INLINE_TRIES:
                break
            time.sleep(0.02 * 2**attempt * random.uniform(0.5, 1.5))
    log.warning(
        "could not handle a %s message (%s); kept for a retry%s",
        received.channel,
        type(failure).__name__,
        _where(failure),
    )
    return _keep_for_retry(database, settings, received, now, failure)


def _keep_for_retry(
    database: Database,
    settings: Settings,
    received: Received,
    now: datetime,
    failure: BaseException | None,
) -> Outcome:
    try:
        return _keep(database, settings, received, now, failure, find_person=True)
    except Exception as exc:
        # Even finding (or creating) the person failed: keep the words, and find them later.
        log.warning(
            "could not link a %s message to its sender (%s)", received.channel, type(exc).__name__
        )
        return _keep(database, settings, received, now, failure, find_person=False)


def _keep(
    database: Database,
    settings: Settings,
    received: Received,
    now: datetime,
    failure: BaseException | None,
    find_person: bool,
) -> Outcome:
    with database.session() as session:
        person_id = received.participant_id
        if person_id is None and received.address is not None and find_person:
            # Theirs from the start (created if new), so subject access and erasure find it.
            channel = channels.get(received.channel)
            person_id = conversations.lock_person_at(
                session, settings, channel, received.address
            ).id
        inbound_id = conversations.insert_inbound_once(
            session,
            **_inbound_row(received, now),
            participant_id=person_id,
            status=InboundStatus.RETRYING,
            attempts=1,
            send_after=now + timedelta(seconds=RETRY_DELAYS[0]),
            error_message=_reason(failure),
        )
        if inbound_id is None:
            return Outcome(DUPLICATE)
        queue_after_commit(session, [(inbound_id, now + timedelta(seconds=RETRY_DELAYS[0]))], INBOX)
    return Outcome(RETRYING, participant_id=person_id, inbound_id=inbound_id)


def _where(failure: BaseException | None) -> str:
    """Where a bug failed (its stack), for the log, without the exception's text: that can
    quote what the person wrote. A passing failure (a deadlock) needs no stack."""
    if failure is None or is_transient(failure):
        return ""
    return "\n" + "".join(traceback.format_tb(failure.__traceback__)).rstrip()


def _reason(failure: BaseException | None) -> str:
    # The exception's type only: its text can carry SQL parameters, so a number or words.
    return f"handling failed ({type(failure).__name__}); retrying" if failure else "retrying"


def _inbound_row(received: Received, now: datetime) -> dict[str, Any]:
    return {
        "channel": received.channel,
        "kind": Kind.INBOUND,
        "address": received.address,
        "body": received.text,
        "provider_id": received.provider_id,
        "created_at": now,
    }


class _SeenBefore(Exception):
    """This delivery is stored already: undo everything it did."""


def _handle(
    session: Session,
    settings: Settings,
    received: Received,
    now: datetime,
    keywords: Mapping[str, Survey] | None,
    inline: bool,
    inbound_id: int | None = None,
) -> Outcome:
    """Apply one message in the caller's transaction. A new delivery (`inbound_id` None) is
    stored last, in one statement that skips a provider id seen before: a redelivery raises
    `_SeenBefore` and its transaction is rolled back, and a concurrent one waits on the
    person's lock and then on that row, so either way it changes nothing."""
    channel = channels.get(received.channel)
    if received.participant_id is not None:
        person = conversations.lock_person_row(session, received.participant_id)
        if person is None:
            raise LookupError("no such participant")
    else:
        assert received.address is not None, "a message comes from an address or a known person"
        # A new delivery moves the contact point's `last_inbound_at` on, in the same read.
        wrote_at = now if inbound_id is None else None
        person = conversations.lock_person_at(
            session, settings, channel, received.address, wrote_at
        )
    if inbound_id is not None and not _still_waiting(session, inbound_id):
        # Handled again by two jobs at once (the reconciler and the after-commit dispatch
        # can both enqueue it): the other one applied it while this one waited for the lock.
        raise _SeenBefore
    conv, waiting = _conversation_and_waiting(session, person, received, inline and not inbound_id)
    if waiting:
        # An earlier message of theirs is waiting for a retry: this one goes after it.
        inbound_id = conversations.insert_inbound_once(
            session,
            **_inbound_row(received, now),
            participant_id=person.id,
            status=InboundStatus.RETRYING,
            send_after=now,
        )
        if inbound_id is None:
            raise _SeenBefore
        return Outcome(RETRYING, participant_id=person.id, inbound_id=inbound_id)

    closed = None
    if conv is not None and engine.is_expired(conv.last_activity_at, now):
        closed = conversations.survey_for(session, conv.survey_version_id)  # a late answer
    conv = conversations.unless_expired(session, conv, now)
    decided = _decide(
        session, settings, person, conv, channel.name, received, now, keywords, closed
    )
    conv = decided.conversation
    conversation_id = conv.id if conv is not None else None
    if inbound_id is None:
        inbound_id = conversations.insert_inbound_once(
            session,
            **_inbound_row(received, now),
            participant_id=person.id,
            conversation_id=conversation_id,
            status=InboundStatus.PROCESSED,
        )
        if inbound_id is None:
            raise _SeenBefore
    else:
        _finish_inbound(session, inbound_id, person.id, conversation_id, now)
    if decided.finished and conv is not None:
        survey_id = conversations.survey_for(session, conv.survey_version_id).id
        events.survey_ended.send(
            survey_id, session=session, participant_id=person.id, settings=settings
        )
    # A channel whose provider takes no reply in its webhook answer (Telegram) answers through
    # the outbox; the simulator (a known person, no address) shows its replies where it is.
    inline_reply = inline and (channel.replies_inline or received.address is None)
    replies = _reply(
        session,
        channel,
        person,
        received.address,
        decided.prompts,
        conversation_id,
        inbound_id,
        now,
        inline_reply,
        settings,
    )
    state = decided.state
    if state is None and conv is not None:
        state = engine.State.from_json(conv.state)
    return Outcome(
        PROCESSED, decided.prompts, tuple(replies), person.id, conversation_id, inbound_id, state
    )


_WAITING_STATEMENT = (
    select(Message.id)
    .where(
        text(WAITING_INBOUND),  # as the partial index says it, so that index answers
        Message.channel == bindparam("channel"),
        Message.address == bindparam("address"),
    )
    .limit(1)
)
_WAITING = Prepared(_WAITING_STATEMENT)
# The conversation and, in the same round trip, whether an earlier message is waiting. Read
# after the person's lock is held, so it sees whatever the lock's last holder committed.
_ACTIVE_AND_WAITING = Prepared(
    conversations.ACTIVE_LOCKED_STATEMENT.add_columns(_WAITING_STATEMENT.exists().label("waiting"))
)


def _conversation_and_waiting(
    session: Session, person: Any, received: Received, new_delivery: bool
) -> tuple[Any, bool]:
    """The person's active conversation (locked), and whether this new delivery must queue
    behind an earlier message of theirs that is waiting for a retry."""
    connection = connection_of(session)
    if not new_delivery or received.address is None:
        found = conversations.ACTIVE_LOCKED.first(connection, {"participant_id": person.id})
        return found, False
    where = {"participant_id": person.id, "channel": received.channel, "address": received.address}
    row = _ACTIVE_AND_WAITING.first(connection, where)
    if row is not None:
        return row, bool(row.waiting)
    return None, _WAITING.first(connection, where) is not None


_STILL_WAITING = (
    select(Message.id)
    .where(Message.id == bindparam("message_id"), Message.status == InboundStatus.RETRYING)
    .with_for_update()
)


def _still_waiting(session: Session, message_id: int) -> bool:
    """The kept message is still to be handled; its row is locked (after the person's)."""
    found = connection_of(session).execute(_STILL_WAITING, {"message_id": message_id})
    return found.first() is not None


def _finish_inbound(
    session: Session, inbound_id: int, person_id: int, conversation_id: int | None, now: datetime
) -> None:
    """A message handled again after a failure: now handled."""
    session.execute(
        update(Message.__table__)
        .where(Message.__table__.c.id == inbound_id)
        .values(
            participant_id=person_id,
            conversation_id=conversation_id,
            status=InboundStatus.PROCESSED,
            error_message=None,
            updated_at=now,
        )
    )


def _reply(
    session: Session,
    channel: channels.Channel,
    person: Any,
    address: str | None,
    prompts: tuple[Prompt, ...],
    conversation_id: int | None,
    inbound_id: int,
    now: datetime,
    inline: bool,
    settings: Settings,
) -> list[str]:
    bodies = channel.render_replies(prompts, settings.org_name)
    if not bodies:
        return []
    if inline and address is not None and not channel.can_reply_inline(bodies):
        inline = False  # what the provider's webhook answer cannot carry goes by its sender
    if not inline:
        if not channel.answers_later:
            return []  # the state moved on; they hear the next question on the next call
        # Handled later than the request, or by a channel that cannot answer in its webhook
        # response: the answer goes out like any other message, to where they wrote from.
        for body in bodies:
            outbox.add(
                session,
                person,
                channel.name,
                body,
                Kind.REPLY,
                conversation_id=conversation_id,
                address=address,
            )
        return []
    if address is None:
        # A known person (a call we placed, the simulator): their address on this channel.
        address = contacts.address_for(session, person, channel.name)
    _INSERT_REPLIES.run(
        connection_of(session),
        [
            {
                "direction": Direction.OUT,
                "channel": channel.name,
                "kind": Kind.REPLY,
                "address": address,
                "body": body,
                "status": Outbound.REPLIED,
                "participant_id": person.id,
                "in_reply_to_id": inbound_id,
                "conversation_id": conversation_id,
                "created_at": now,
                "updated_at": now,
                "sent_at": now,
                "attempts": 0,
            }
            for body in bodies
        ],
    )
    return bodies


_INSERT_REPLIES = Prepared(insert(Message.__table__))


@dataclass(frozen=True)
class _Decided:
    prompts: tuple[Prompt, ...]
    conversation: Any  # the locked row, or the new `Conversation`; None if none
    finished: bool = False
    state: engine.State | None = None  # the conversation's state, where the step changed it


def _decide(
    session: Session,
    settings: Settings,
    person: Any,
    conv: Any,
    channel: str,
    received: Received,
    now: datetime,
    keywords: Mapping[str, Survey] | None,
    closed: Survey | None = None,
) -> _Decided:
    """What this input means for the person and their conversation in progress (None if
    none; `closed` the survey whose conversation this input found a week idle), written as
    it is decided."""
    org = settings.org_name
    context = conversations.context_for(person, org, settings.contact_phone)
    inbound = _interpret(session, received.inbound, conv, person)
    state = _state_now(conv, now, channel)
    if state is not None and state.stop_asked:
        # "Yes" to "Do you want us to stop all messages?" takes the one STOP path below.
        inbound = engine.meaning(state, inbound)
    if inbound is Command.STOP:
        changed = conversations.record_consent(session, person, Consent.OPT_OUT, channel, now=now)
        if conv is not None:
            conversations.end_conversation(session, conv, engine.STOPPED, now)
        # Confirmed once: a second STOP gets no answer.
        prompts = (Say(engine.stopped_text(context), "stopped"),) if changed else ()
        stopped = engine.State.from_json({**conv.state, "status": engine.STOPPED}) if conv else None
        return _Decided(prompts, conv, finished=conv is not None, state=stopped)
    if inbound is Command.START:
        changed = conversations.record_consent(session, person, Consent.OPT_IN, channel, now=now)
        if received.address is not None:
            # A START lifts a provider's block on the address they wrote from, as Twilio does.
            conversations.let_in_point(
                session, person.id, channel, received.address, "said START", now
            )
        survey = _keyword_survey(received.text, keywords)
        if conv is None and survey is not None:
            return _begin(session, person, survey, channel, now, org)
        prompts: tuple[Prompt, ...] = (engine.started_say(context),) if changed else ()
        if conv is not None:
            current = conversations.survey_for(session, conv.survey_version_id)
            piped = {**context, "answered": conv.state.get("answered") or {}}
            prompts += (engine.ask(current, current.question(conv.state["question_id"]), piped),)
            if conv.state.get("unseen"):
                # The question they had not seen is shown now: their next reply answers it.
                shown = replace(engine.State.from_json(conv.state), unseen=None)
                conversations.write_step(session, person, conv, engine.Step(shown), channel, now)
        elif not changed:
            prompts = (Say(engine.idle_help_text(context), "help"),)  # no question waits
        return _Decided(prompts, conv)
    if person.opted_out:
        # They asked us to stop; answer only to say how to start again.
        return _Decided((Say(t(person.language, OPTED_OUT_TEXT), "opted_out"),), conv)
    if conv is None:
        survey = _keyword_survey(received.text, keywords)
        if survey is not None:
            return _begin(session, person, survey, channel, now, org)
        changes = {}
        if person.joined_via is None:
            changes["joined_via"] = f"wrote by {channel}"
        by_staff = None
        if closed is None and isinstance(inbound, engine.Reply):
            by_staff = _closed_by_staff(session, person.id, now)
        ended = engine.after_end(inbound, context, closed or by_staff, by_staff is not None)
        if ended.language is not None:
            changes["language"] = ended.language  # CYMRAEG / ENGLISH, no survey in progress
        if changes:
            conversations.set_person(session, person, **changes)
        return _Decided(ended.prompts, None)
    survey = conversations.survey_for(session, conv.survey_version_id)
    assert state is not None
    step = engine.step(survey, state, inbound, context)
    conversations.write_step(session, person, conv, step, channel, now)
    for kind in step.consent:
        conversations.record_consent(
            session, person, kind, channel, detail=f"survey {survey.id}", now=now
        )
    return _Decided(step.prompts, conv, finished=step.finished, state=step.state)


# How long after staff close a campaign its people are told so when they answer.
CLOSED_NOTICE = timedelta(days=7)


def _closed_by_staff(session: Session, person_id: int, now: datetime) -> Survey | None:
    """The survey of this person's latest conversation if staff closed its campaign (within
    CLOSED_NOTICE) while it was in progress: their answer is told it came too late, rather
    than met with the general help as if we had never asked."""
    latest = session.execute(
        select(
            Conversation.status,
            Conversation.survey_version_id,
            Campaign.status,
            Campaign.closed_at,
        )
        .outerjoin(Campaign, Campaign.id == Conversation.campaign_id)
        .where(Conversation.participant_id == person_id)
        .order_by(Conversation.id.desc())
        .limit(1)
    ).first()
    if latest is None:
        return None
    status, version_id, campaign_status, closed_at = latest
    if status != engine.EXPIRED or campaign_status != CampaignStatus.CLOSED or closed_at is None:
        return None
    if now - closed_at > CLOSED_NOTICE:
        return None
    return conversations.survey_for(session, version_id)


# How long "Do you want us to stop all messages?" waits for its answer. A reply much later
# (after a reminder has asked the question again) answers the question, not that.
STOP_QUESTION_LIFETIME = timedelta(hours=1)


def _state_now(conv: Any, now: datetime, channel: str) -> engine.State | None:
    """The conversation's state as this message meets it (None without one). The stop
    question waits an hour, on the channel it was asked on: a key pressed on a call later is
    not an answer to a text."""
    if conv is None:
        return None
    state = engine.State.from_json(conv.state)
    if state.unseen is not None and channels.get(channel).keypad:
        # A call says the waiting question before it takes a key (the call's own turns): what
        # a template left unshown has been heard there.
        state = replace(state, unseen=None)
    if state.stop_asked and (
        now - conv.last_activity_at > STOP_QUESTION_LIFETIME or conv.channel != channel
    ):
        state = replace(state, stop_asked=False)
    return state


def _interpret(session: Session, inbound: Interpret, conv: Any, person: Any) -> Inbound:
    if isinstance(inbound, ProviderKeyword):
        return _provider_keyword(inbound, person)
    if not callable(inbound):
        return inbound
    question = None
    if conv is not None and conv.state.get("question_id"):
        survey = conversations.survey_for(session, conv.survey_version_id)
        question = survey.question(conv.state["question_id"])
    return inbound(question)


def _provider_keyword(keyword: ProviderKeyword, person: Any) -> Inbound:
    """What a text the provider took as a keyword means. Its STOP has already stopped the
    number there, so it stops here too, on every channel, whatever the words; HELP is HELP.
    Its START (Twilio's opt-in words include YES) starts again only someone who had stopped;
    from anyone else it is read as the words it is, so a "yes" still answers the question."""
    if keyword.command is Command.START and not person.opted_out:
        return classify(keyword.text) or engine.Reply(keyword.text)
    return keyword.command


def _keyword_survey(raw: str | None, keywords: Mapping[str, Survey] | None) -> Survey | None:
    if not keywords or not raw:
        return None
    word = start_payload(raw) or raw.strip().strip(".!").upper()
    if word not in keywords:
        # "Title please", "TITLE thanks": the keyword with a polite word around it.
        polite = {"PLEASE", "PLS", "THANKS", "THANK", "YOU", "HELLO", "HI"}
        words = [w.strip(".,!") for w in word.split() if w.strip(".,!") not in polite]
        word = words[0] if len(words) == 1 else word
    return keywords.get(word)


def _begin(
    session: Session, person: Any, survey: Survey, channel: str, now: datetime, org: str
) -> _Decided:
    conv, step = conversations.start_conversation(session, person, survey, channel, now, org)
    if person.joined_via is None:
        conversations.set_person(session, person, joined_via=f"keyword {survey.keyword}")
    return _Decided(step.prompts, conv)


def transcribed(database: Database, question_id: str, recording_url: str, words: str) -> int:
    """A provider's words for a spoken answer replace the placeholder kept with it (the
    recording stays): a late part of that person's input, written with their lock first.
    How many answers changed."""
    matching = (Answer.question_id == question_id, Answer.raw_text.contains(recording_url))
    with database.session() as session:
        people = session.scalars(select(Answer.participant_id).where(*matching).distinct())
        for person_id in sorted(p for p in people if p is not None):
            conversations.lock_person(session, person_id)
        changed = session.execute(update(Answer).where(*matching).values(value=words, label=words))
    return changed.rowcount or 0


# --- handling again, in order, what failed ------------------------------------------------


def retry_backlog(
    database: Database,
    settings: Settings,
    message_id: int,
    now: datetime | None = None,
    keywords: Mapping[str, Survey] | None = None,
) -> dict[str, int]:
    """Handle again the person's waiting messages, oldest first, starting from any one of them.

    Each is tried in its own transaction; one that still fails waits for its next attempt and
    holds the ones after it back, so a person's messages are applied in the order they came.
    After the last attempt it is marked failed (staff see it, with its reason), the person is
    told we kept it, and the ones behind it go on.
    """
    now = now or utcnow()
    counts = {"processed": 0, "failed": 0, "waiting": 0}
    with database.session() as session:
        first = session.get(Message, message_id)
        if first is None or first.status != InboundStatus.RETRYING:
            return counts
        backlog = session.scalars(
            select(Message)
            .where(
                Message.direction == Direction.IN,
                Message.status == InboundStatus.RETRYING,
                Message.channel == first.channel,
                (Message.address == first.address)
                if first.address is not None
                else (Message.id == first.id),
            )
            .order_by(Message.id)
        ).all()
    channel = None
    for row in backlog:
        channel = channel or channels.get(row.channel)
        received = Received(
            channel=row.channel,
            text=row.body or "",
            inbound=channel.parse_stored(row.body or ""),
            address=row.address,
            provider_id=row.provider_id,
            participant_id=None if row.address is not None else row.participant_id,
        )
        try:
            with database.session() as session:
                _handle(session, settings, received, now, keywords, inline=False, inbound_id=row.id)
            counts["processed"] += 1
            continue
        except _SeenBefore:
            continue  # another job handled it a moment ago
        except Exception as exc:
            failure = exc
        if _note_failure(database, row.id, row.attempts, failure, now):
            counts["failed"] += 1
            continue
        counts["waiting"] = len(backlog) - counts["processed"] - counts["failed"]
        break
    return counts


def _note_failure(
    database: Database, message_id: int, attempts: int, failure: BaseException, now: datetime
) -> bool:
    """Record a failed attempt; True when that was the last one and the message is given up."""
    log.warning(
        "handling inbound message %s failed again (%s)%s",
        message_id,
        type(failure).__name__,
        _where(failure),
    )
    tried = attempts + 1
    with database.session() as session:
        # The person's lock first, then the message's, as the writer takes them.
        person_id = session.scalar(select(Message.participant_id).where(Message.id == message_id))
        if person_id is not None:
            conversations.lock_person(session, person_id)
        row = session.get(Message, message_id, with_for_update=True)
        if row is None or row.status != InboundStatus.RETRYING:
            return False
        row.attempts = tried
        if tried > len(RETRY_DELAYS):
            row.status = InboundStatus.FAILED
            row.error_message = f"handling failed {tried} times ({type(failure).__name__})"
            person = session.get(Participant, row.participant_id) if row.participant_id else None
            if (
                person is not None
                and not person.opted_out
                and channels.get(row.channel).answers_later
            ):
                gave_up = t(person.language, GAVE_UP_TEXT)
                outbox.add(session, person, row.channel, gave_up, Kind.REPLY, address=row.address)
            return True
        when = now + timedelta(seconds=RETRY_DELAYS[tried - 1])
        row.send_after, row.error_message = when, _reason(failure)
        queue_after_commit(session, [(row.id, when)], INBOX)
    return False


def due_retries(session: Session, now: datetime, limit: int = 500) -> list[int]:
    """The first waiting message of each person whose next attempt is due (for the reconciler)."""
    rows = session.execute(
        select(Message.id, Message.channel, Message.address)
        .where(
            Message.direction == Direction.IN,
            Message.status == InboundStatus.RETRYING,
            (Message.send_after.is_(None)) | (Message.send_after <= now),
        )
        .order_by(Message.id)
        .limit(limit)
    ).all()
    first: dict[tuple[str, str | None], int] = {}
    for message_id, channel, address in rows:
        first.setdefault((channel, address if address is not None else str(message_id)), message_id)
    return list(first.values())


def problems(session: Session, participants: Any = None) -> dict[str, Any]:
    """Inbound messages still waiting for a retry, and those given up, with why (never what
    the person wrote): for health and, narrowed to `participants` (ids or a subquery of
    them), for a campaign's status."""
    from sqlalchemy import func

    scope = [
        Message.direction == Direction.IN,
        Message.status.in_((InboundStatus.RETRYING, InboundStatus.FAILED)),
    ]
    if participants is not None:
        scope.append(Message.participant_id.in_(participants))
    counts = dict(
        session.execute(
            select(Message.status, func.count()).where(*scope).group_by(Message.status)
        ).all()
    )
    found: dict[str, Any] = {
        "retrying": counts.get(InboundStatus.RETRYING, 0),
        "failed": counts.get(InboundStatus.FAILED, 0),
    }
    if participants is not None:
        found["reasons"] = sorted(
            {
                reason
                for reason in session.scalars(
                    select(Message.error_message).where(*scope).limit(100)
                )
                if reason
            }
        )
    return found
