"""A phone call, turn by turn: each answer Twilio posts becomes the next TwiML.

Every turn is a `<Gather>` (or a `<Record>` for a spoken answer) whose `action` carries the call
on under `/webhooks/twilio/voice/`. What a turn needs to remember rides in that URL:

    s  the step: the number of the next write in this call. `CallSid:s` is the provider id the
       one writer (`bot.conversations.inbox`) dedupes on, so the same keys delivered twice store one answer.
       Turns that write nothing (a repeat, a silence, a confirmation) keep the same step.
    q  the question the caller heard; keys meant for another question (they answered it by
       text meanwhile) are not applied to the one in front of them now.
    n  silences so far at this prompt: asked again twice, then we keep what we have.

Everything else (where the person is in their survey) is read through the core (`Core.place`:
a channel never opens a database session itself), so a dropped
call loses nothing and the next call, either way, resumes at the first unanswered question.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from urllib.parse import urlencode

from twilio.twiml.voice_response import VoiceResponse

from bot import engine
from bot.channels.base import (
    DUPLICATE,
    RETRYING,
    Channel,
    Core,
    Interpret,
    Outcome,
    Place,
    Received,
)
from bot.channels.voice import render
from bot.config import Settings
from bot.engine import Ask, Inbound, Prompt, Reply, Say, parsing
from bot.engine.keywords import Command
from bot.i18n import N_, OrgName, org_name_in, t
from bot.scripts.survey import Question, Survey
from bot.storage.status import Kind

log = logging.getLogger(__name__)

BASE = "/webhooks/twilio/voice"
MAX_SILENCES = 2  # asked again twice after silence, then we keep what we have
MACHINE = {"machine_start", "machine_end_beep", "machine_end_silence", "machine_end_other", "fax"}
BEGIN_WORDS = {"yes", "begin", "start", "ok", "okay", "yes please", "go ahead", "carry on"}
GOODBYE = N_("Goodbye.")
# A goodbye already said, by us or in a script's outro ("Thank you, goodbye!", "Hwyl fawr"):
# the call does not say it twice.
_SAYS_GOODBYE = re.compile(r"\b(?:good[\s-]?bye|bye for now|hwyl fawr|da bo chi)\b", re.IGNORECASE)


def says_goodbye(sentence: str) -> bool:
    return bool(_SAYS_GOODBYE.search(sentence))


THANKS_GOODBYE = N_("Thank you. Goodbye.")
REACH_A_PERSON = N_("To speak to a person, call {number}.")
ABOUT = N_("We are asking people about this: {title}.")


def spoken_number(number: str) -> str:
    """A phone number read out digit by digit, in the groups it is written in."""
    groups = ["".join(c for c in part if c.isdigit()) for part in number.split()]
    return ", ".join(" ".join(group) for group in groups if group)


# How Twilio shows a withheld number: nobody to keep answers for, or to call back.
WITHHELD = {"anonymous", "restricted", "unknown", "unavailable", "+266696687", "+7378742833"}
RECORD_SECONDS = 120  # Twilio transcribes recordings of up to two minutes


@dataclass(frozen=True)
class CallIn:
    """One request of a call, as Twilio posts it."""

    sid: str
    address: str  # the person's number: From on calls to us, To on calls we placed
    answered_by: str = ""
    digits: str = ""
    speech: str = ""
    confidence: float | None = None
    recording_url: str = ""
    recording_seconds: int = 0
    params: Mapping[str, str] = field(default_factory=dict)
    person_id: int | None = None  # the simulator's caller, who has no number

    @property
    def said_nothing(self) -> bool:
        return not (self.digits or self.speech or self.recording_url)

    @property
    def outbound(self) -> bool:
        """A call we placed (not one a person made to us)."""
        return (self.params.get("Direction") or "inbound").startswith("outbound")


def read_call(channel: Channel, form: Mapping[str, str]) -> CallIn | str:
    """The call's parameters, or what is wrong with them."""
    sid = (form.get("CallSid") or "").strip()
    outbound = (form.get("Direction") or "inbound").startswith("outbound")
    raw = (form.get("To") if outbound else form.get("From")) or ""
    if not sid or not raw:
        return "CallSid, From and To are required"
    if len(sid) > 64 or len(raw) > 64:
        return "CallSid or the number is too long"
    try:
        address = "" if raw.strip().lower() in WITHHELD else channel.normalise(raw)
    except ValueError:
        address = ""  # withheld or not a number we could ever call back
    try:
        confidence: float | None = float(form["Confidence"]) if form.get("Confidence") else None
    except ValueError:
        confidence = None
    digits = form.get("Digits") or ""
    if digits == "hangup":  # how <Record> says the caller hung up
        digits = ""
    seconds = form.get("RecordingDuration") or "0"
    return CallIn(
        sid=sid,
        address=address,
        answered_by=(form.get("AnsweredBy") or "").lower(),
        digits=digits.strip(),
        speech=(form.get("SpeechResult") or "").strip(),
        confidence=confidence,
        recording_url=(form.get("RecordingUrl") or "").strip(),
        recording_seconds=int(seconds) if seconds.isdigit() else 0,
        params=form,
    )


# --- speaking ------------------------------------------------------------------------------


# Amazon Polly's voice for each language other than the configured one (Twilio speaks it).
SPEAKERS = {"cy": ("Polly.Gwyneth", "cy-GB")}


class Said(str):
    """A sentence with blanks ("Hello, this is {org}."), filled in English and kept whole, so
    a Turn can say it in the person's language from the catalogue."""

    template: str
    values: dict[str, object]

    def __new__(cls, template: str, **values: object) -> Said:
        made = super().__new__(cls, template.format(**values))
        made.template, made.values = template, values
        return made


class Turn:
    """One TwiML answer, spoken in the configured voice, in the person's language where the
    catalogue has the words (script words arrive already in it)."""

    def __init__(self, settings: Settings, rate: str = "90%", language: str | None = None):
        self.settings = settings
        self.rate = rate
        self.language = language
        self.response = VoiceResponse()

    def words(self, sentence: str) -> str:
        if isinstance(sentence, Said):
            values = {  # the organisation by its name in the language spoken
                k: org_name_in(v, self.language) if isinstance(v, OrgName) else v
                for k, v in sentence.values.items()
            }
            return t(self.language, sentence.template, **values)
        return t(self.language, sentence)

    def url(self, action: str, **params: object) -> str:
        query = urlencode({k: v for k, v in params.items() if v not in (None, "")})
        return f"{self.settings.public_base_url}{BASE}/{action}" + (f"?{query}" if query else "")

    def say(self, words: Iterable[str], into: object = None) -> None:
        target = into if into is not None else self.response
        voice, language = self.settings.voice_name, self.settings.voice_language
        if self.language in SPEAKERS and voice.startswith("Polly."):
            voice, language = SPEAKERS[self.language]  # Welsh words in a Welsh voice
        for sentence in (self.words(w) for w in words if w):
            if voice.startswith(("Polly.", "Google.")):
                # SSML prosody: a little slower than the voice's default, for older ears.
                said = target.say(voice=voice, language=language)  # type: ignore[attr-defined]
                said.prosody(sentence, rate=self.rate)
            else:
                target.say(sentence, voice=voice, language=language)  # type: ignore[attr-defined]

    def gather(self, action: str, *, digits: int | None, finish: str, hints: str = "") -> object:
        return self.response.gather(
            input="dtmf speech",
            action=action,
            method="POST",
            timeout=self.settings.voice_wait_seconds,
            num_digits=digits,
            finish_on_key=finish,
            language=self.settings.voice_language,
            hints=hints or None,
            speech_timeout="auto",
        )

    def redirect(self, action: str) -> None:
        self.response.redirect(action, method="POST")

    def end(self, words: Iterable[str] = ()) -> str:
        """The last words of a call, then hang up. With CONTACT_PHONE set, every call ends by
        saying where to reach a person (before a closing "Goodbye." said on its own)."""
        said = list(words)
        if self.settings.contact_phone:
            reach = Said(REACH_A_PERSON, number=spoken_number(self.settings.contact_phone))
            at = len(said) - 1 if said and says_goodbye(self.words(said[-1])) else len(said)
            said.insert(at, reach)
        self.say(said)
        self.response.hangup()
        return str(self.response)

    def __str__(self) -> str:
        return str(self.response)


def ask_turn(
    settings: Settings, prompt: Ask, step: int, lead: Iterable[str] = (), silences: int = 0
) -> str:
    """A question, the options after it, and what happens on silence."""
    q = prompt.question
    turn = Turn(settings, language=prompt.language)
    words = [*lead, *render.question_speech(prompt, settings.voice_wait_seconds)]
    action = turn.url("answer", s=step, q=q.id, n=silences)
    silent = turn.url("answer", s=step, q=q.id, n=silences + 1, silent=1)
    if q.type == "text":
        # Star or 0 pressed while the question is read, or in the wait after it, is caught
        # here; then the tone. The wait is as long as at every other question (and said), and
        # hash is a key like the others: pressed alone it is nothing said, as silence is.
        keys = turn.response.gather(
            input="dtmf",
            action=action,
            method="POST",
            timeout=settings.voice_wait_seconds,
            num_digits=1,
            finish_on_key="",
        )
        turn.say(words, into=keys)
        turn.response.record(
            action=action,
            method="POST",
            timeout=settings.voice_wait_seconds,
            max_length=RECORD_SECONDS,
            finish_on_key="#",
            play_beep=True,
            transcribe=settings.voice_transcribe or None,
            transcribe_callback=(
                turn.url("transcription", q=q.id) if settings.voice_transcribe else None
            ),
        )
    else:
        shape = render.gather_for(q)
        gather = turn.gather(
            action,
            digits=shape.num_digits,
            finish=shape.finish_on_key,
            hints=render.hints(q, (label for _, label in prompt.choices)),
        )
        turn.say(words, into=gather)
    turn.redirect(silent)
    return str(turn)


def prompts_turn(
    settings: Settings,
    prompts: Iterable[Prompt],
    step: int,
    lead: Iterable[str] = (),
    language: str | None = None,
) -> str:
    """What the engine said after an input: its words, then the next question or goodbye."""
    words = list(lead)
    for prompt in prompts:
        if isinstance(prompt, Ask):
            return ask_turn(settings, prompt, step, words)
        if prompt.kind == "opted_out":
            words.append("You asked us not to contact you, so we have no questions for you.")
        else:
            words.append(render.say_prompt(prompt, settings.org_name))
    turn = Turn(settings, language=language)
    if not any(says_goodbye(turn.words(w)) for w in words if w):
        words.append(GOODBYE)
    return turn.end(words)


def stop_confirm_turn(settings: Settings, step: int, language: str | None = None) -> str:
    turn = Turn(settings, language=language)
    gather = turn.gather(turn.url("stop", s=step), digits=1, finish="", hints="yes, no")
    turn.say([render.STOP_CONFIRM], into=gather)
    # Silence carries on: stopping never happens by accident.
    turn.redirect(turn.url("ask", s=step, lead="carry"))
    return str(turn)


def machine_turn(settings: Settings) -> str:
    number = settings.twilio_from_number or ""
    national = "0" + number[3:] if number.startswith("+44") else number.lstrip("+")
    return Turn(settings).end(
        [
            f"Hello, this is a call from {settings.org_name}.",
            N_("We rang to ask for your views in a short survey."),
            N_("We will try again another time."),
            f"You can also call us back on {' '.join(national)}.",
            N_("Thank you. Goodbye."),
        ]
    )


def feedback_turn(settings: Settings, body: str, message_id: int) -> str:
    """A "you said, we did" message, read slowly; star hears it again."""
    call = render.feedback_call(body)
    turn = Turn(settings, rate="80%")
    gather = turn.gather(turn.url("feedback", m=message_id), digits=1, finish="")
    turn.say([f"Hello, this is a call from {settings.org_name}.", *call.say], into=gather)
    return turn.end([N_("Thank you for listening."), GOODBYE])


# --- the turns -----------------------------------------------------------------------------


class CallFlow:
    """The handlers behind each URL under /webhooks/twilio/voice; each returns TwiML."""

    def __init__(
        self,
        core: Core,
        settings: Settings,
        channel: Channel,
        inbound_survey: Survey | None = None,
    ):
        self.core = core
        self.settings = settings
        self.channel = channel
        self.inbound_survey = inbound_survey

    @property
    def org(self) -> str:
        return self.settings.org_name

    def _where(self, call: CallIn) -> Place | None:
        if call.person_id is not None:
            return self.core.place(self.channel, person_id=call.person_id)
        return self.core.place(self.channel, address=call.address)

    def _submit(
        self,
        call: CallIn,
        step: int,
        text: str,
        inbound: Interpret,
        keywords: Mapping[str, Survey] | None = None,
    ) -> Outcome:
        if not call.address and call.person_id is None:
            # A withheld number: there is nobody to keep this for, and nothing is stored.
            return Outcome(DUPLICATE)
        received = Received(
            channel=self.channel.name,
            text=text,
            inbound=inbound,
            address=call.address if call.person_id is None else None,
            provider_id=f"{call.sid}:{step}",
            participant_id=call.person_id,
        )
        return self.core.receive(received, keywords=keywords)

    def _after(self, call: CallIn, outcome: Outcome, step: int) -> str:
        if outcome.status == DUPLICATE:
            # Seen before: say what comes next from the stored state, as the first time did.
            return self._current(call, step + 1)
        if outcome.status == RETRYING:
            return Turn(self.settings).end(
                [
                    N_("Sorry, something went wrong on our side."),
                    N_("We have kept your answer."),
                    N_("Thank you for your help. Goodbye."),
                ]
            )
        asked = any(isinstance(p, Ask) for p in outcome.prompts)
        return prompts_turn(
            self.settings,
            outcome.prompts,
            step + 1,
            language=None if asked else self._language(call),  # an Ask carries its own
        )

    def _language(self, call: CallIn) -> str | None:
        here = self._where(call)
        return None if here is None else here.context.get("language")  # type: ignore[return-value]

    def _current(self, call: CallIn, step: int, lead: Iterable[str] = ()) -> str:
        here = self._where(call)
        prompt = here.prompt() if here is not None else None
        if prompt is not None and not here.opted_out:  # type: ignore[union-attr]
            return ask_turn(self.settings, prompt, step, lead)
        language = None if here is None else here.context.get("language")
        if here is not None and here.opted_out:
            return Turn(self.settings, language=language).end([render.SPOKEN["stopped"]])  # type: ignore[arg-type]
        return Turn(self.settings, language=language).end(  # type: ignore[arg-type]
            [N_("Thank you for your help."), GOODBYE]
        )

    # POST /webhooks/twilio/voice
    def start(self, call: CallIn, message_id: int | None) -> str:
        if message_id is None and not call.address and call.person_id is None:
            return Turn(self.settings).end(
                [
                    f"Hello, this is {self.org}. Thank you for calling.",
                    N_("Your number is withheld, so we cannot keep your answers."),
                    N_("Please call again without withholding your number."),
                    GOODBYE,
                ]
            )
        if message_id is None:
            return self._opening(call, self._where(call), outbound=False)
        message = self.core.sent_message(message_id)
        if message is None or message.channel != self.channel.name or not message.outbound:
            return Turn(self.settings).end(
                [f"Hello, this is {self.org}.", N_("Sorry, this call was made in error."), GOODBYE]
            )
        if call.answered_by in MACHINE:
            return machine_turn(self.settings)  # never the survey, to a machine
        if message.kind == Kind.FEEDBACK:
            return feedback_turn(self.settings, message.body, message_id)
        person_id = message.participant_id
        here = self.core.place(self.channel, person_id=person_id) if person_id is not None else None
        return self._opening(call, here, outbound=True)

    def ring(self, call: CallIn) -> str:
        """A call we placed, answered by a person: the simulator's way in."""
        return self._opening(call, self._where(call), outbound=True)

    def _opening(self, call: CallIn, here: Place | None, outbound: bool, step: int = 1) -> str:
        """The call's first menu. `step` numbers what is pressed next: past 1 when something
        was already stored under an earlier step in this call (a restart)."""
        hello = (
            Said("Hello, this is a call from {org}.", org=self.org)
            if outbound
            else Said("Hello, this is {org}. Thank you for calling.", org=self.org)
        )
        language = None if here is None else here.context.get("language")
        turn = Turn(self.settings, language=language)  # type: ignore[arg-type]
        if here is not None and here.opted_out:
            said = N_("You asked us not to contact you, so we have no questions for you.")
            if outbound:
                return turn.end([hello, said, GOODBYE])
            # They rang us: the keypad's way back, as START is by text.
            turn.say([hello, said])
            gather = turn.gather(turn.url("restart", s=step), digits=1, finish="", hints="yes")
            turn.say(
                [
                    N_("If you would like to hear from us again, press 1."),
                    N_("If you would rather not, just hang up."),
                ],
                into=gather,
            )
            turn.say([GOODBYE])
            return str(turn)
        prompt = here.prompt() if here is not None else None
        if prompt is None or here is None:
            survey = None if outbound else self.inbound_survey
            if survey is None:
                return turn.end(
                    [
                        hello,
                        N_("We have no questions for you at the moment."),
                        N_("Thank you."),
                        GOODBYE,
                    ]
                )
            turn.say([hello, Said(ABOUT, title=survey.title)])
            gather = turn.gather(
                turn.url("open", s=step, begin=1), digits=1, finish="", hints="yes, begin"
            )
            turn.say(
                [
                    N_("To begin, press 1."),
                    N_("If you would rather not, just hang up."),
                    render.STOP_OFFER,
                ],
                into=gather,
            )
            turn.redirect(turn.url("open", s=step, begin=1, silent=1))
            return str(turn)
        if here.at_start and here.survey is not None:
            # Not yet begun: the script's intro, or, with none, what the survey is about;
            # "welcome back" only to someone who really is part-way.
            intro = engine.begin(here.survey, here.context).prompts[0]
            lead = (
                [render.say_prompt(intro, self.org)]
                if isinstance(intro, Say) and intro.kind == "intro"
                else [Said(ABOUT, title=here.survey.title)]
            )
        else:
            lead = [N_("Welcome back."), N_("We will carry on where you left off.")]
        turn.say([hello, *lead])
        gather = turn.gather(turn.url("open", s=step), digits=1, finish="", hints="begin, stop")
        # Offered once per call, where no answer is expected, so 9 can mean nothing else.
        turn.say([N_("To begin, press 1."), render.STOP_OFFER], into=gather)
        turn.redirect(turn.url("ask", s=step))  # silence: we simply begin
        return str(turn)

    # POST /webhooks/twilio/voice/open
    def open(self, call: CallIn, step: int, begin: bool) -> str:
        repeat = call.digits == render.REPEAT_KEY or (
            call.speech and parsing.simplify(call.speech) in {"repeat", "again"}
        )
        if begin:
            survey = self.inbound_survey
            wants = call.digits == "1" or parsing.simplify(call.speech) in BEGIN_WORDS
            if repeat:
                return self._opening(call, self._where(call), outbound=False, step=step)
            if call.digits == render.STOP_KEY or render.said_stop(call.speech):
                return stop_confirm_turn(self.settings, step, self._language(call))
            if survey is None or not wants:
                return Turn(self.settings).end([N_("Thank you for calling."), GOODBYE])
            word = (survey.keyword or "BEGIN").upper()

            def started(question: Question | None) -> Inbound:
                # Already in a survey (a second press, or they began by text): say where.
                return Command.REPEAT if question is not None else Reply(word)

            outcome = self._submit(call, step, word, started, keywords={word: survey})
            return self._after(call, outcome, step)
        if repeat:
            return self._opening(call, self._where(call), outbound=True, step=step)
        if call.digits == render.STOP_KEY or render.said_stop(call.speech):
            return stop_confirm_turn(self.settings, step, self._language(call))
        return self.ask(call, step, "begin")

    # POST /webhooks/twilio/voice/ask
    def ask(self, call: CallIn, step: int, lead: str = "") -> str:
        words = {"carry": [N_("Thank you. We will carry on.")], "begin": []}.get(lead, [])
        return self._current(call, step, words)

    # POST /webhooks/twilio/voice/stop
    def stop(self, call: CallIn, step: int) -> str:
        if call.digits != render.CONFIRM_KEY and parsing.simplify(call.speech) not in {
            "yes",
            "stop",
        }:
            here = self._where(call)
            if not call.outbound and (here is None or here.prompt() is None):
                # They rang us and chose not to stop: the menu again, not a goodbye.
                return self._opening(call, here, outbound=False, step=step)
            return self.ask(call, step, "carry")
        outcome = self._submit(call, step, "STOP (confirmed on the keypad)", Command.STOP)
        if outcome.status == RETRYING:
            return self._after(call, outcome, step)
        # Confirmed, or confirmed before (a redelivery): the same words either way.
        return Turn(self.settings).end([render.SPOKEN["stopped"]])

    # POST /webhooks/twilio/voice/restart
    def restart(self, call: CallIn, step: int) -> str:
        """Someone who asked not to be contacted, calling us: 1 is START, as by text."""
        if call.digits != "1" and parsing.simplify(call.speech) not in BEGIN_WORDS:
            return Turn(self.settings, language=self._language(call)).end([GOODBYE])
        outcome = self._submit(call, step, "START (on the keypad)", Command.START)
        if outcome.status == RETRYING:
            return self._after(call, outcome, step)
        # The START is stored under this step: what is pressed next goes under the next one.
        return self._opening(call, self._where(call), outbound=False, step=step + 1)

    # POST /webhooks/twilio/voice/answer
    def answer(self, call: CallIn, step: int, question_id: str, silences: int, silent: bool) -> str:
        here = self._where(call)
        prompt = here.prompt() if here is not None else None
        if here is None or prompt is None or here.opted_out:
            return self._current(call, step)
        q = prompt.question
        # Hash alone where it is not the skip key keys nothing in: counted as silence is, so
        # it is asked about twice, then we keep what we have (never "no words in your message"
        # for ever).
        keyed_nothing = call.digits == render.HASH and render.skip_key(q) != render.HASH
        if (
            silent
            or call.said_nothing
            or (q.type == "text" and self._empty_recording(call))
            or (keyed_nothing and not call.speech and not call.recording_url)
        ):
            if q.id != question_id:
                return ask_turn(self.settings, prompt, step)
            heard = silences if silent else silences + 1
            if heard <= MAX_SILENCES:
                sorry = render.NOTHING_KEYED if call.digits else render.SILENCE
                return ask_turn(self.settings, prompt, step, [sorry], heard)
            if q.optional:
                outcome = self._submit(call, step, "(silence)", _only_at(q.id, Command.SKIP))
                return self._after(call, outcome, step)
            later = (
                N_("We will try again another time.")
                if call.outbound
                else N_("You can call us again at any time to carry on.")
            )
            return Turn(self.settings).end(
                [N_("We have kept your answers so far."), later, N_("Thank you. Goodbye.")]
            )
        if call.digits.startswith(render.REPEAT_KEY) or (
            call.speech
            and not call.digits
            and render.parse("", q, speech=call.speech) is Command.REPEAT
        ):
            return ask_turn(self.settings, prompt, step)
        if call.speech and not call.digits and render.said_stop(call.speech):
            return stop_confirm_turn(self.settings, step, self._language(call))
        if (
            call.speech
            and not call.digits
            and q.id == question_id
            and call.confidence is not None
            and call.confidence < self.settings.voice_confidence
        ):
            heard_as = parsing.parse(q, call.speech)
            if isinstance(heard_as, parsing.Answer):
                # The URL carries the option's value, never the words said: URLs reach logs.
                return self._confirm_turn(step, q.id, heard_as.value, heard_as.label)
        recording = self._recording_text(call) if q.type == "text" else None
        text = recording or call.speech or call.digits

        def meaning(question: Question | None) -> Inbound:
            if question is None or question.id != question_id:
                return Command.REPEAT  # meant for another question: say the current one
            return render.parse(call.digits, question, recording=recording, speech=call.speech)

        outcome = self._submit(call, step, text, meaning)
        if q.id == question_id and render.no_such_option(q, call.digits):
            outcome = _named_key(outcome, q.id, call.digits)
        return self._after(call, outcome, step)

    @staticmethod
    def _empty_recording(call: CallIn) -> bool:
        return (
            bool(call.recording_url)
            and call.recording_seconds == 0
            and call.digits in ("", render.HASH)
        )

    @staticmethod
    def _recording_text(call: CallIn) -> str | None:
        if not call.recording_url or call.recording_seconds <= 0:
            return None
        # Kept with the answer until a transcription, if enabled, replaces the words.
        return f"Spoken answer, {call.recording_seconds} seconds: {call.recording_url}"

    def _confirm_turn(self, step: int, question_id: str, said: str, label: str) -> str:
        turn = Turn(self.settings)
        gather = turn.gather(
            turn.url("confirm", s=step, q=question_id, said=said), digits=1, finish=""
        )
        turn.say(
            [
                Said("We heard {label}.", label=label),
                N_("Press 1 if that is right."),
                N_("Press 2 to try again."),
            ],
            into=gather,
        )
        turn.redirect(turn.url("confirm", s=step, q=question_id, silent=1))
        return str(turn)

    # POST /webhooks/twilio/voice/confirm
    def confirm(self, call: CallIn, step: int, question_id: str, said: str) -> str:
        right = call.digits == render.CONFIRM_KEY or parsing.simplify(call.speech) in {
            "yes",
            "right",
            "yes please",
            "correct",
        }
        if not right or not said:
            return self._current(call, step, [N_("Let us try again.")])

        def meaning(question: Question | None) -> Inbound:
            if question is None or question.id != question_id:
                return Command.REPEAT
            return Reply(said)

        outcome = self._submit(call, step, said, meaning)
        return self._after(call, outcome, step)

    # POST /webhooks/twilio/voice/feedback
    def feedback(self, call: CallIn, message_id: int) -> str:
        if call.digits == render.REPEAT_KEY or (
            call.speech and parsing.simplify(call.speech) in {"repeat", "again"}
        ):
            message = self.core.sent_message(message_id)
            if message is not None and message.body:
                return feedback_turn(self.settings, message.body, message_id)
        return Turn(self.settings).end([N_("Thank you for listening."), GOODBYE])

    # POST /webhooks/twilio/voice/transcription
    def transcription(self, form: Mapping[str, str], question_id: str) -> None:
        """Twilio's words for a spoken answer replace the placeholder; the recording stays."""
        words = (form.get("TranscriptionText") or "").strip()
        url = (form.get("RecordingUrl") or "").strip()
        if (form.get("TranscriptionStatus") or "") != "completed" or not words or not url:
            return
        self.core.transcribed(question_id, url, words)


def _named_key(outcome: Outcome, question_id: str, key: str) -> Outcome:
    """The question asked again after a key with no option is pressed says so: "Sorry, there
    is no option 7." rather than "we didn't quite catch that"."""
    prompts = tuple(
        replace(p, sorry=Said(render.NO_SUCH_OPTION, key=key))
        if isinstance(p, Ask) and p.question.id == question_id and p.sorry
        else p
        for p in outcome.prompts
    )
    return replace(outcome, prompts=prompts)


def _only_at(question_id: str, inbound: Inbound) -> Interpret:
    def meaning(question: Question | None) -> Inbound:
        return inbound if question is not None and question.id == question_id else Command.REPEAT

    return meaning
