"""Words made for the ear, and keys read against the question in front of the caller.

Keys: 1-9 answer, `*` repeats, `0` skips an optional question (where `0` is itself an answer,
hash on its own skips instead). Stopping is never a key at a question: it is offered once, at
the start of a call, on `9` (no answer is expected there), and confirmed before it takes effect.
Landlines cannot read texts, so nothing here assumes a screen.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from bot.engine import Ask, Inbound, Prompt, Reply, Say
from bot.engine.keywords import Command, Intent, classify, intent
from bot.engine.parsing import range_words, simplify
from bot.i18n import N_, t
from bot.scripts.survey import Question

REPEAT_KEY, SKIP_KEY, HASH = "*", "0", "#"
STOP_KEY = "9"  # only at the opening menu, where no answer is expected
CONFIRM_KEY, CARRY_ON_KEY = "1", "2"
STOP_OFFER = N_("If you would rather we did not call you again, press 9.")
STOP_CONFIRM = N_("Press 1 to stop all contact. Press 2 to carry on.")

# A sentence that tells a person to type a word only makes sense on a screen: it is dropped
# whole ("You can reply STOP at any time."), never cut short. A sentence ends at . ! or ? with
# a space or the end after it, never inside "4.41", and never after "e.g.", "a.m." or a
# title: splitting there would be read out as two ("4. 41", "9 a. m.").
_SENTENCE_END = re.compile(r"[.!?]+(?=\s|$)")
# Words that always lead on to more ("e.g. soup", "Dr. Jones") and words that end a sentence
# only where a capital follows ("at 9 a.m. on Monday" against "at 9 a.m. Reply STOP..."), so a
# dropped sentence never takes the one before it along.
_LEADS_ON = {
    "e.g", "eg", "i.e", "ie", "nos", "tel", "mr", "mrs", "ms", "mx", "dr", "rev",
    "revd", "st", "prof", "vs", "cf", "ref", "dept",
}  # fmt: skip
_MAY_END = {"a.m", "p.m", "etc", "approx"}
_TEXT_ONLY = re.compile(
    r"\b(?:reply|replying|text|texting|send|type)\b[^.!?]*\b(?:STOP|SKIP|START|REPEAT|HELP)\b"
    r"|\b(?:STOP|SKIP|START|REPEAT|HELP)\b[^.!?]*\b(?:reply|replying|text|texting)\b",
    re.IGNORECASE,
)
_WORD = re.compile(r"\b(?:STOP|SKIP|START|REPEAT|HELP)\b")  # the texting words, in capitals
# "Reply YES or NO.", "Text 1, 2 or 3.", "Send the word FOOD.": an instruction to write
# something back, which a call words its own way ("press 1"). Only a sentence that begins with
# the verb and names what to write (a word in capitals, a digit, a quoted word, "a number",
# "the button") is one; "Would you like us to send you a leaflet?" is a question, and stays.
_WRITE_BACK = re.compile(
    r"^(?:(?:please|just|simply|or|and|you can|you may)\s+)*"
    r"(?:reply|text|send|type|write|tap)\b"
    r"(?=.*(?:(?-i:\b[A-Z]{2,}\b)|\d|[\"'‘“][^\"'’”]+[\"'’”]|\b(?:button|number)s?\b))",
    re.IGNORECASE,
)

SPOKEN = {
    "help": (
        "This call is from {org}, asking for your views to improve our services. "
        "Press star at any time to hear a question again."
    ),
    "stopped": N_("We will not contact you again. Thank you for your help so far. Goodbye."),
    "started": N_("Welcome back."),
}
# One voice, "we", in everything the call says for us.
SILENCE = N_("Sorry, we did not hear anything.")
NOTHING_KEYED = N_("Sorry, we did not hear an answer.")  # hash alone, where it is no answer
NO_SUCH_OPTION = N_("Sorry, there is no option {key}.")
WAIT_SECONDS = 10  # VOICE_WAIT_SECONDS's default, for words rendered without the settings


def sentences(text: str) -> list[str]:
    """The sentences of `text`, each with its own stop, split only where a sentence ends."""
    found, start = [], 0
    for end in _SENTENCE_END.finditer(text or ""):
        before = text[start : end.start()].split()
        word = before[-1].casefold() if before else ""
        after = text[end.end() :].lstrip()[:1]
        if end.group() == "." and (
            word in _LEADS_ON
            or (len(word) == 1 and word.isalpha())  # an initial: "J. Smith"
            or (word in _MAY_END and not after.isupper())
        ):
            continue
        found.append(text[start : end.end()].strip())
        start = end.end()
    found.append((text or "")[start:].strip())
    return [sentence for sentence in found if sentence]


def text_only(sentence: str) -> bool:
    """Is this sentence an instruction for a screen: reply with a word, text a number?"""
    return bool(
        _TEXT_ONLY.search(sentence) or _WORD.search(sentence) or _WRITE_BACK.search(sentence)
    )


def spoken(text: str) -> str:
    """Script words for the ear: every sentence about replying with a word is dropped whole."""
    return " ".join(sentence for sentence in sentences(text) if not text_only(sentence))


def spoken_question(text: str) -> str:
    """A question's own words for the ear, without its text-only sentences ("Reply STOP to opt
    out."); where every sentence is one, the words as written: a question must be heard."""
    return spoken(text) or " ".join(sentences(text))


@dataclass(frozen=True)
class Gather:
    """What the call waits for after speaking."""

    num_digits: int | None  # None: until hash
    finish_on_key: str  # "" means every key, hash included, is a digit
    record: bool = False  # a spoken answer, for text questions


@dataclass(frozen=True)
class VoiceTurn:
    say: list[str]
    gather: Gather | None  # None: the call ends after speaking
    pace: str = "medium"  # SSML prosody rate for the words: "slow" for a message to take in


def two_digit(q: Question) -> bool:
    """Keys until hash: numbers, dates, several answers, and scales past 9."""
    return q.type in ("number", "date", "multi") or (q.type == "scale" and (q.max or 0) > 9)


def extra_keys(q: Question) -> dict[str, str]:
    """Keys for "Don't know" beside a scale: the ones after its last point, where they are
    free. A list of choices numbers them as options; anywhere else they are said."""
    if q.type != "scale" or two_digit(q) or not q.extras:
        return {}
    first = int(q.max or 0) + 1
    keys = {str(first + n): o.label for n, o in enumerate(q.extras)}
    return keys if first + len(q.extras) - 1 <= 9 else {}


def no_such_option(q: Question, keys: str) -> bool:
    """A single key that names none of a list's options: 7 where there are 3."""
    if q.type not in ("choice", "yesno") or len(keys) != 1 or not keys.isdigit():
        return False
    return not 1 <= int(keys) <= len(q.choices)


def zero_is_answer(q: Question) -> bool:
    return q.type in ("number", "scale") and (q.min or 0) <= 0


def skip_key(q: Question) -> str | None:
    """The key that skips this optional question: never one that also answers it."""
    if not q.optional:
        return None
    return HASH if zero_is_answer(q) else SKIP_KEY


def gather_for(q: Question) -> Gather:
    if q.type == "text":
        return Gather(num_digits=None, finish_on_key="#", record=True)
    if two_digit(q):
        return Gather(num_digits=None, finish_on_key="#")
    return Gather(num_digits=1, finish_on_key="")


def hints(q: Question, labels: Iterable[str] = ()) -> str:
    """What a caller is likely to say, for the speech recogniser."""
    words = list(labels)
    if q.type == "yesno":
        words = ["yes", "no", *words]
    if q.type == "scale":
        words += [label for label in q.labels.values()]
    words.append("repeat")
    if q.optional:
        words.append("skip")
    return ", ".join(dict.fromkeys(w for w in words if w))


def question_speech(prompt: Ask, wait_seconds: int = WAIT_SECONDS) -> list[str]:
    """The question first, then one sentence per option or instruction. `wait_seconds` is how
    long the call waits for a key: before the tone, at a question answered in words."""
    q = prompt.question
    lang = prompt.language
    # The retry without its verb: the keys are named below, "press", never "reply".
    parts = [prompt.sorry] if prompt.sorry else []
    if prompt.sorry and prompt.expected and q.type == "choice":
        # A text's retry says the range ("Please reply with a number from 1 to 3"); a call
        # says it too, as keys: the options alone never say how many there are.
        parts.append(
            t(lang, "Press a number from {low} to {high}.", low=1, high=len(prompt.choices))
        )
    parts.append(spoken_question(prompt.text))
    own = len(q.points)
    extras = [label for _, label in prompt.choices[own:]]

    def press(label: str, key: object) -> str:
        return t(lang, "For {label}, press {key}.", label=label, key=key)

    if q.type in ("choice", "yesno"):
        parts.extend(press(label, n) for n, (_, label) in enumerate(prompt.choices, start=1))
    elif q.type == "multi":
        parts.extend(press(label, n) for n, (_, label) in enumerate(prompt.choices[:own], start=1))
        parts.append(t(lang, "Press the keys for all that apply, then press hash."))
        parts.extend(t(lang, "Or say {label}.", label=label) for label in extras)
    elif q.type == "date":
        parts.append(
            t(
                lang,
                "Key in the date as eight numbers, the day, the month and the year, "
                "then press hash.",
            )
        )
        parts.append(t(lang, "For the 3rd of April 1948, press 0 3 0 4 1 9 4 8, then hash."))
    elif q.type == "scale":
        low, high = int(q.min or 0), int(q.max or 0)
        parts.append(
            # Past 9 the number is keyed in, then hash ("1 0 #"): said up front.
            t(lang, "Key in a number from {low} to {high}, then press hash.", low=low, high=high)
            if high > 9
            else t(lang, "Press a number from {low} to {high}.", low=low, high=high)
        )
        labels = dict(
            zip(
                (int(v) for v, _ in prompt.choices[:own]),
                (lb for _, lb in prompt.choices[:own]),
                strict=True,
            )
        )
        if low in q.labels:
            parts.append(t(lang, "{point} means {label}.", point=low, label=labels[low]))
        if high in q.labels:
            parts.append(t(lang, "{point} means {label}.", point=high, label=labels[high]))
        keyed = extra_keys(q)
        parts.extend(press(label, key) for key, label in zip(keyed, extras, strict=False))
        if not keyed:
            parts.extend(t(lang, "Or say {label}.", label=label) for label in extras)
    elif q.type == "number":
        bounds = range_words(q, lang)
        parts.append(
            t(lang, "Key in a number {bounds}, then press hash.", bounds=bounds)
            if bounds
            else t(lang, "Key in the number, then press hash.")
        )
    key = skip_key(q)
    if key == SKIP_KEY:
        parts.append(t(lang, "To skip this question, press 0."))
    elif key == HASH:
        parts.append(t(lang, "To skip this question, press hash on its own."))
    if q.type != "text":
        parts.append(t(lang, "You can also say your answer."))
    parts.append(
        t(lang, "To hear this again, press star, then hash.")
        if gather_for(q).finish_on_key == "#" and q.type != "text"
        else t(lang, "To hear this again, press star.")
    )
    if q.type == "text":
        # The keys above work until the tone, and only # after it: the wait is said, and is
        # as long as at any other question.
        parts.append(
            t(
                lang,
                "Or wait {seconds} seconds for the tone, then say your answer.",
                seconds=wait_seconds,
            )
        )
        parts.append(t(lang, "When you have finished, press hash."))
    return parts


def say_prompt(prompt: Say, org: str) -> str:
    text = SPOKEN[prompt.kind].format(org=org) if prompt.kind in SPOKEN else prompt.text
    return spoken(text)


def render(
    prompts: Iterable[Prompt], org: str = "us", wait_seconds: int = WAIT_SECONDS
) -> VoiceTurn:
    """The words of these prompts, as an outbound call's body or the simulator shows them."""
    said: list[str] = []
    gather: Gather | None = None
    for prompt in prompts:
        if isinstance(prompt, Ask):
            said.extend(question_speech(prompt, wait_seconds))
            gather = gather_for(prompt.question)
        elif isinstance(prompt, Say):
            words = say_prompt(prompt, org)
            if words:
                said.append(words)
    return VoiceTurn(said, gather)


_REPEAT_WORDS = {"repeat", "again", "say again", "say that again", "pardon", "sorry", "what"}
_SKIP_WORDS = {"skip", "skip it", "skip this", "skip this one", "next", "pass"}


def said_stop(speech: str) -> bool:
    """Words on a call that ask us to stop: confirmed with the keypad's own 1 or 2 (the text
    channels' "Do you want us to stop?" has no place on a call)."""
    if simplify(speech) in {"stop", "stop calling", "stop calling me", "unsubscribe"}:
        return True
    return classify(speech) is Command.STOP or intent(speech) is Intent.STOP_REQUEST


def parse(
    digits: str,
    question: Question | None,
    recording: str | None = None,
    speech: str | None = None,
) -> Inbound:
    """What keys (or words said, or a recording) mean at this question. No key stops: that is
    offered once per call and confirmed (see `bot.channels.voice.call`)."""
    pressed = (digits or "").strip()
    if speech and not pressed:
        words = simplify(speech)
        if words in _REPEAT_WORDS:
            return Command.REPEAT
        if words in _SKIP_WORDS and question is not None and question.optional:
            return Command.SKIP
        return Reply(speech.strip())
    if pressed.startswith(REPEAT_KEY):
        return Command.REPEAT
    if question is not None and pressed:
        key = skip_key(question)
        if (key == SKIP_KEY and pressed.rstrip(HASH) == SKIP_KEY) or (
            key == HASH and pressed == HASH
        ):
            return Command.SKIP
    if recording is not None and question is not None and question.type == "text":
        return Reply(recording)
    keys = pressed.rstrip(HASH)
    if question is not None and keys in extra_keys(question):
        return Reply(extra_keys(question)[keys])
    return Reply(keys)


def feedback_call(text: str) -> VoiceTurn:
    """A "you said, we did" message for a landline: read slowly, with star to hear it again."""
    return VoiceTurn(
        say=[spoken(text), "To hear this message again, press star.", "Or simply hang up."],
        gather=Gather(num_digits=1, finish_on_key=""),
        pace="slow",
    )
