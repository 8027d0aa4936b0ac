"""Texts render as plain text (`bot.channels.plain_text`), shared with every channel that
carries the same words; named here too, where the SMS channel's own tests look for it."""

from bot.channels.plain_text import (
    INLINE_CHOICES_MAX,
    MAX_SEGMENTS,
    fits_two_segments,
    parse,
    question_text,
    render,
)

__all__ = [
    "INLINE_CHOICES_MAX",
    "MAX_SEGMENTS",
    "fits_two_segments",
    "parse",
    "question_text",
    "render",
]
