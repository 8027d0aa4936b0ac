"""What `involve` prints on a terminal.

Names, external ids, answers, notes and survey text come from people and files: any of them
may carry an escape sequence (recolour, retitle or clear the terminal, fake a line) or a bidi
control that turns a line round. Every line a command prints goes through `echo`, which shows
such characters as visible `\\uXXXX` (`bot.text.terminal_safe`); what is stored is unchanged.
"""

from __future__ import annotations

import click

from bot.text import terminal_safe


def echo(message: object = "", err: bool = False) -> None:
    click.echo(terminal_safe(str(message)), err=err)


def confirm(question: str) -> None:
    """Ask yes or no; no (or no answer) aborts the command."""
    click.confirm(terminal_safe(question), abort=True)
