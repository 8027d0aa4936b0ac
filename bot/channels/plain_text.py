"""Plain text for the channels that carry only words (a text, a WhatsApp message): short,
GSM-7 where we can, one message per step so nothing arrives out of order, answers numbered."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from bot.engine import Ask, Inbound, Prompt, Reply, Say
from bot.engine.keywords import classify
from bot.engine.parsing import range_words
from bot.i18n import t
from bot.scripts.gsm import sms_size

INLINE_CHOICES_MAX = 60  # beyond this many characters, list the options one per line


def question_text(prompt: Ask) -> str:
    """The question as a text shows it: why we ask again (if we do), the question, how to
    answer."""
    return "\n".join(line for line in (prompt.retry, _question_only(prompt)) if line)


# What `_question_only` made of each question, in each language, with its words and labels
# as asked: the same for everyone a question is not a template for. Keyed by the question's
# id() (a question, holding dicts, does not hash), with the question kept in the value: while
# it is kept its id() cannot be another's.
_ASKED: dict[tuple[int, str, str, tuple[tuple[str, str], ...]], tuple[Any, str]] = {}


def _question_only(prompt: Ask) -> str:
    key = (id(prompt.question), prompt.language, prompt.text, prompt.choices)
    found = _ASKED.get(key)
    if found is not None and found[0] is prompt.question:
        return found[1]
    text = _worded(prompt)
    if len(_ASKED) >= 1024:
        _ASKED.clear()
    _ASKED[key] = (prompt.question, text)
    return text


def _worded(prompt: Ask) -> str:
    q = prompt.question
    lang = prompt.language
    lines = [prompt.text]
    labels = [label for _, label in prompt.choices]
    # Beside a scale or a list of all that apply, "Don't know" is said in words, not numbered.
    own = len(q.points)
    extras = t(lang, " or ").join(label for _, label in prompt.choices[own:])
    if q.type == "multi":
        lines.extend(f"{n} - {label}" for n, label in enumerate(labels[:own], start=1))
        lines.append(t(lang, "Reply with the numbers of all that apply, like 1 3."))
        if extras:
            lines.append(t(lang, "Or reply {extras}.", extras=extras))
    elif q.type == "choice":
        if sum(len(label) for label in labels) <= INLINE_CHOICES_MAX:
            listed = ", ".join(
                t(lang, "{n} for {label}", n=n, label=label)
                for n, label in enumerate(labels, start=1)
            )
            lines.append(t(lang, "Reply {listed}", listed=listed))
        else:
            lines.extend(f"{n} - {label}" for n, label in enumerate(labels, start=1))
            lines.append(t(lang, "Reply with a number."))
    elif q.type == "yesno":
        lines.append(t(lang, "Reply YES or NO"))
    elif q.type == "scale":
        low, high = int(q.min or 0), int(q.max or 0)
        low_label = f" ({q.labels[low]})" if low in q.labels else ""
        high_label = f" ({q.labels[high]})" if high in q.labels else ""
        lines.append(
            t(
                lang,
                "Reply with a number from {low} to {high}",
                low=f"{low}{low_label}",
                high=f"{high}{high_label}",
            )
            + (t(lang, ", or {label}", label=extras) if extras else "")
        )
    elif q.type == "number":
        # The range up front, so nobody has to miss to learn it.
        bounds = range_words(q, lang)
        lines.append(
            t(lang, "Reply with a number {bounds}", bounds=bounds)
            if bounds
            else t(lang, "Reply with a number")
        )
    elif q.type == "date":
        lines.append(t(lang, "Reply with the date, like 3/4/1948"))
    if q.optional:
        lines.append(t(lang, "Or reply SKIP to leave this one out."))
    return "\n".join(lines)


MAX_SEGMENTS = 2  # what a step costs a person in all: its reply and the question after it


def fits_two_segments(text: str) -> bool:
    """A text's rule: at most two SMS segments."""
    return sms_size(text).segments <= MAX_SEGMENTS


def segments(text: str) -> int:
    """What a text is billed as: its SMS segments."""
    return sms_size(text).segments


def render(
    prompts: Iterable[Prompt],
    fits: Callable[[str], bool] = fits_two_segments,
    cost: Callable[[str], int] = segments,
) -> list[str]:
    """One message for the whole step, read top to bottom, where it `fits` (a text: two SMS
    segments). Where it does not (HELP with a long ORG_NAME before a long question; a reply
    in GSM-7 joined to a question with one Welsh circumflex, which makes the whole text
    UCS-2), the engine's replies and re-prompts are said in fewer words, as few as it takes
    (`Say.shorter`; a re-prompt's `sorry` alone, since the question says how to answer), so a
    text and its question cost two segments in all, not three or four. Where even the
    fewest are not one message (a question with no room left beside it, which `involve lint`
    warns of), each part goes whole, in order, joined to the one before while they fit, in
    whichever wording `cost`s least: two short texts cost less than one long one, and read
    better than a reply cut off mid-word."""
    prompts = list(prompts)
    wordings = 1 + max(map(_shorter_wordings, prompts), default=0)
    cheapest: list[str] = []
    for fewer in range(wordings):
        texts = _joined(_parts(prompts, fewer), fits)
        if len(texts) <= 1:
            return texts
        if not cheapest or sum(map(cost, texts)) < sum(map(cost, cheapest)):
            cheapest = texts
    return cheapest


def _shorter_wordings(prompt: Prompt) -> int:
    if isinstance(prompt, Say):
        return len(prompt.shorter)
    return 1 if prompt.retry else 0


def _parts(prompts: list[Prompt], fewer: int) -> list[tuple[str, str]]:
    """(what joins it to the part before, its words) for each part of a step: the engine's
    full wording (`fewer` 0), or its `fewer`-th shorter one, or the shortest it has."""
    parts: list[tuple[str, str]] = []
    for prompt in prompts:
        if isinstance(prompt, Ask):
            retry = (prompt.sorry or prompt.retry) if fewer else prompt.retry
            if retry:
                parts.append(("\n\n", retry))
            parts.append(("\n" if retry else "\n\n", _question_only(prompt)))
        elif isinstance(prompt, Say):
            wordings = (prompt.text, *prompt.shorter)
            parts.append(("\n\n", wordings[min(fewer, len(wordings) - 1)]))
    return parts


def _joined(parts: list[tuple[str, str]], fits: Callable[[str], bool]) -> list[str]:
    """The parts as messages: each joined to the one before while the message `fits`."""
    texts: list[str] = []
    for joint, part in parts:
        if not part:
            continue
        joined = f"{texts[-1]}{joint}{part}" if texts else part
        if texts and not fits(joined):
            texts.append(part)
        else:
            texts[-1:] = [joined]
    return texts


def parse(body: str) -> Inbound:
    return classify(body) or Reply(body or "")
