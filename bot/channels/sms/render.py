"""Texts: short, plain GSM-7 where we can, one message per step so nothing arrives out of order."""

from __future__ import annotations

from collections.abc import Iterable

from bot.engine import Ask, Inbound, Prompt, Reply, Say
from bot.keywords import classify
from bot.parsing import range_words

INLINE_CHOICES_MAX = 60  # beyond this many characters, list the options one per line


def question_text(prompt: Ask) -> str:
    q = prompt.question
    lines = [prompt.retry] if prompt.retry else []
    lines.append(prompt.text)
    labels = [label for _, label in prompt.choices]
    # Beside a scale or a list of all that apply, "Don't know" is said in words, not numbered.
    own = len(q.points)
    extras = " or ".join(label for _, label in prompt.choices[own:])
    if q.type == "multi":
        lines.extend(f"{n} - {label}" for n, label in enumerate(labels[:own], start=1))
        lines.append("Reply with the numbers of all that apply, like 1 3.")
        if extras:
            lines.append(f"Or reply {extras}.")
    elif q.type == "choice":
        if sum(len(label) for label in labels) <= INLINE_CHOICES_MAX:
            listed = ", ".join(f"{n} for {label}" for n, label in enumerate(labels, start=1))
            lines.append(f"Reply {listed}")
        else:
            lines.extend(f"{n} - {label}" for n, label in enumerate(labels, start=1))
            lines.append("Reply with a number.")
    elif q.type == "yesno":
        lines.append("Reply YES or NO")
    elif q.type == "scale":
        low, high = int(q.min or 0), int(q.max or 0)
        low_label = f" ({q.labels[low]})" if low in q.labels else ""
        high_label = f" ({q.labels[high]})" if high in q.labels else ""
        lines.append(
            f"Reply with a number from {low}{low_label} to {high}{high_label}"
            + (f", or {extras}" if extras else "")
        )
    elif q.type == "number":
        # The range up front, so nobody has to miss to learn it.
        bounds = range_words(q)
        lines.append(f"Reply with a number {bounds}" if bounds else "Reply with a number")
    elif q.type == "date":
        lines.append("Reply with the date, like 3/4/1948")
    if q.optional:
        lines.append("Or reply SKIP to leave this one out.")
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
