"""Plain text for the channels that carry only words (a text, a WhatsApp message): short,
GSM-7 where we can, one message per step so nothing arrives out of order, answers numbered."""

from __future__ import annotations

from collections.abc import Iterable

from bot.engine import Ask, Inbound, Prompt, Reply, Say
from bot.engine.keywords import classify
from bot.engine.parsing import range_words
from bot.i18n import t

INLINE_CHOICES_MAX = 60  # beyond this many characters, list the options one per line


def question_text(prompt: Ask) -> str:
    q = prompt.question
    lang = prompt.language
    lines = [prompt.retry] if prompt.retry else []
    lines.append(prompt.text)
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


def render(prompts: Iterable[Prompt]) -> list[str]:
    """One text for the whole step; a person reads it top to bottom."""
    parts = [
        question_text(p) if isinstance(p, Ask) else p.text
        for p in prompts
        if isinstance(p, Ask | Say)
    ]
    text = "\n\n".join(part for part in parts if part)
    return [text] if text else []


def parse(body: str) -> Inbound:
    return classify(body) or Reply(body or "")
