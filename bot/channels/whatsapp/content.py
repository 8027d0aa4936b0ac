"""Closed questions as WhatsApp answers a person taps: quick-reply buttons or a list-picker,
made with Twilio's Content API, inside the 24-hour window only.

What fits WhatsApp's limits goes this way (Twilio's content types, checked against Twilio's
and Meta's documentation):

- up to 3 answers whose words fit a button (20 characters): `twilio/quick-reply`; sent within
  the window without approval, WhatsApp takes at most 3 buttons;
- up to 10 answers whose words fit a list row (24 characters, and a description of up to 72
  under a scale's point): `twilio/list-picker`, opened with a button of up to 20 characters;
- anything else (more answers, longer words, a list of all that apply): the numbered text
  every texting channel sends.

The words above the answers (at most 1,024 characters) are the step as a text says it without
its "Reply 1 for..." line. They go as the content's one variable, `{{1}}`: the content itself
holds only the answers, so one is made per question and language, not per person, and no
person's name is kept in Twilio's content library.

Each answer's id is what typing the answer does: `involve:2` for the second choice (or for No),
`involve:4` for 4 on a scale, `involve:Don't know` for an extra beside a scale. A tap reads
exactly as typing it would (`read_payload`), so it meets the same forgiving parser.

A message is stored as its numbered text, readable as it is, followed by one line that starts
with `MARK` and holds the answers as JSON: staff and subject access read the words, the sender
sends the content from the same row, or the words where the content cannot go.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bot.channels import plain_text
from bot.engine import Ask, Prompt, Say
from bot.i18n import N_, t

QUICK_REPLY = "twilio/quick-reply"
LIST_PICKER = "twilio/list-picker"
QUICK_REPLY_MAX = 3  # buttons in a quick reply sent within the window, unapproved
BUTTON_TITLE_MAX = 20  # a reply button's words
LIST_MAX = 10  # rows in a list-picker
LIST_ITEM_MAX = 24  # a row's words
LIST_DESCRIPTION_MAX = 72  # the line under a row
LIST_BUTTON_MAX = 20  # the button that opens the list
BODY_MAX = 1024  # the words above the answers
ID_MAX = 200  # an answer's id (not shown)
ID_PREFIX = "involve:"  # marks an id as ours: an approved template's own buttons have others
MARK = "\u2328 answers: "  # "⌨ answers: " - a line no script writes
BUTTONED = ("choice", "yesno", "scale")
LIST_BUTTON = N_("Choose an answer")
NAME_PREFIX = "involve-"  # friendly names of the content we make


@dataclass(frozen=True)
class Answer:
    """One answer as a button or row: its words, what tapping it types, and (a list row
    only) the line under it."""

    title: str
    typed: str
    description: str | None = None


@dataclass(frozen=True)
class Choices:
    """The tappable form of one message: its words above, its answers."""

    kind: str  # QUICK_REPLY or LIST_PICKER
    body: str
    answers: tuple[Answer, ...]
    language: str
    button: str | None = None  # the list-picker's button

    def definition(self) -> dict[str, object]:
        """The content as the Content API creates it, without a name: the words are its
        variable `{{1}}`, filled in when each message is sent."""
        if self.kind == QUICK_REPLY:
            kind: dict[str, object] = {
                "body": "{{1}}",
                "actions": [
                    {"type": "QUICK_REPLY", "title": a.title, "id": ID_PREFIX + a.typed}
                    for a in self.answers
                ],
            }
        else:
            items = []
            for a in self.answers:
                item = {"id": ID_PREFIX + a.typed, "item": a.title}
                if a.description:
                    item["description"] = a.description
                items.append(item)
            kind = {"body": "{{1}}", "button": self.button, "items": items}
        # The variable's sample: Twilio keeps one for each variable a content names.
        return {"language": self.language, "variables": {"1": "-"}, "types": {self.kind: kind}}

    @property
    def friendly_name(self) -> str:
        """The content's name at Twilio: a hash of what it is, so the same answers in the same
        language are found again, by any process, and a change makes a new one."""
        canonical = json.dumps(self.definition(), sort_keys=True, ensure_ascii=False)
        return NAME_PREFIX + hashlib.sha256(canonical.encode()).hexdigest()[:32]

    def variables(self) -> str:
        """ContentVariables for one message: its words."""
        return json.dumps({"1": self.body}, ensure_ascii=False)

    def line(self) -> str:
        data = {
            "kind": self.kind,
            "body": self.body,
            "answers": [[a.title, a.typed, a.description] for a in self.answers],
            "language": self.language,
            "button": self.button,
        }
        return MARK + json.dumps(data, ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_line(cls, line: str) -> Choices | None:
        try:
            data = json.loads(line[len(MARK) :])
            return cls(
                kind=str(data["kind"]),
                body=str(data["body"]),
                answers=tuple(Answer(str(a), str(b), c and str(c)) for a, b, c in data["answers"]),
                language=str(data["language"]),
                button=data.get("button"),
            )
        except (ValueError, KeyError, TypeError):
            return None


def split(body: str) -> tuple[str, Choices | None]:
    """A stored message's words, and its answers to tap where it has them."""
    words, found, last = body.rpartition("\n")
    if found and last.startswith(MARK):
        return words, Choices.from_line(last)
    return body, None


def with_choices(words: str, choices: Choices | None) -> str:
    return f"{words}\n{choices.line()}" if choices is not None else words


# --- rendering --------------------------------------------------------------------------------


def _question_words(prompt: Ask) -> str:
    """The question as the words above its buttons: why we ask again, the question, and how
    to leave it out; the answers are the buttons."""
    lines = [prompt.retry, prompt.text]
    if prompt.question.optional:
        lines.append(t(prompt.language, "Or reply SKIP to leave this one out."))
    return "\n".join(line for line in lines if line)


def words_only(prompts: Sequence[Prompt]) -> list[Prompt]:
    """The step with its question as words above buttons (`_question_words`), to render as
    the texts are rendered."""
    return [Say(_question_words(p)) if isinstance(p, Ask) else p for p in prompts]


def _answers(prompt: Ask) -> list[tuple[Answer, Answer | None]]:
    """Each answer as one line (`title`), and, where it has a label of its own (a scale's
    point), as a row with the label under it."""
    q = prompt.question
    own = len(q.points)
    found = []
    for n, (value, label) in enumerate(prompt.choices, start=1):
        if q.type == "scale" and n <= own:
            # The point is what is typed; its label, where it has one, says what it means.
            labelled = label if label != value else None
            whole = Answer(f"{value} - {labelled}" if labelled else value, value)
            found.append((whole, Answer(value, value, labelled) if labelled else None))
        elif q.type in ("choice", "yesno") or n <= own:
            # Numbered as the text numbers them (a yes/no's 1 is yes, 2 is no).
            found.append((Answer(label, str(n)), None))
        else:
            found.append((Answer(label, label), None))  # "Don't know" beside a scale: its words
    return found


def _fits(answers: Sequence[Answer], title_max: int) -> bool:
    titles = [a.title for a in answers]
    return (
        all(0 < len(title) <= title_max and title.strip() == title for title in titles)
        and len(set(titles)) == len(titles)  # WhatsApp wants each one different
        and all(len(ID_PREFIX + a.typed) <= ID_MAX for a in answers)
        and all(len(a.description or "") <= LIST_DESCRIPTION_MAX for a in answers)
    )


def fit(prompt: Ask, body: str) -> Choices | None:
    """The tappable form of a message that ends with this question and says `body` above its
    answers; None where it does not fit WhatsApp's limits (numbered text then)."""
    if prompt.question.type not in BUTTONED or not body.strip() or len(body) > BODY_MAX:
        return None
    found = _answers(prompt)
    if not found:
        return None
    language = prompt.language
    whole = [w for w, _ in found]
    if len(found) <= QUICK_REPLY_MAX and _fits(whole, BUTTON_TITLE_MAX):
        return Choices(QUICK_REPLY, body, tuple(whole), language)
    if len(found) > LIST_MAX:
        return None
    button = t(language, LIST_BUTTON)
    rows = [w if len(w.title) <= LIST_ITEM_MAX or row is None else row for w, row in found]
    if len(button) <= LIST_BUTTON_MAX and _fits(rows, LIST_ITEM_MAX):
        return Choices(LIST_PICKER, body, tuple(rows), language, button)
    return None


def render(
    prompts: Sequence[Prompt], fits: Callable[[str], bool], joined: bool = False
) -> list[str]:
    """The step's messages as stored: its texts (`joined` in one), the one that ends with a
    closed question followed by the line of its answers where they fit WhatsApp's limits."""
    texts = plain_text.render(prompts, fits)
    words = plain_text.render(words_only(prompts), fits)
    if joined:
        texts, words = ["\n\n".join(texts)] if texts else [], ["\n\n".join(words)]
    last = prompts[-1] if prompts else None
    if not texts or not isinstance(last, Ask):
        return texts
    if len(words) != len(texts):
        return texts  # split differently: the texts go as they are
    texts[-1] = with_choices(texts[-1], fit(last, words[-1]))
    return texts


def read_payload(payload: str) -> str | None:
    """What a tapped answer typed, where the button or row is one of ours."""
    if payload.startswith(ID_PREFIX) and len(payload) <= ID_MAX:
        return payload[len(ID_PREFIX) :]
    return None
