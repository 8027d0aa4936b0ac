"""Telegram: a chat id is the address; closed questions are answered by tapping buttons.

The webhook (`webhooks/telegram.py`) reads each update here (`read_update`), applies it through
the one writer, and answers 200 at once; everything said back goes through the outbox and the
sender (`replies_inline = False`), the one place the Bot API is called.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from telegram import ChatMember, Update

from bot.channels.base import Blocked, Channel, Interpret, InvalidAddress, LinkError, Sender
from bot.channels.telegram import render
from bot.config import Settings
from bot.engine import Inbound, Prompt
from bot.providers.errors import SendError
from bot.scripts.survey import Question

MAX_CHAT_ID = 2**52  # Telegram promises chat ids fit in 52 bits
MAX_TEXT = 4096  # Telegram's longest message; anything longer is not from Telegram
# A deep-link code as `bot.conversations.links` makes them: URL-safe base64, as /start
# payloads allow.
LINK_CODE = re.compile(r"[A-Za-z0-9_-]{20,64}")


@dataclass(frozen=True)
class ReadUpdate:
    """An update we handle, as the writer needs it."""

    update_id: int
    chat_id: int
    text: str  # what is stored: the words, the label of a pressed button, or "/start"
    inbound: Interpret
    link_code: str | None = None  # from `/start <code>` (or a keyword; the links table says)
    callback_query_id: str | None = None
    pressed_message_id: int | None = None  # the message whose button was pressed
    press: render.Press | None = None

    @property
    def provider_id(self) -> str:
        return str(self.update_id)


def _command_text(message: Any) -> str:
    """The message's words, with a leading command as we read it: `/stop@InvolveBot` is /stop."""
    text: str = message.text or ""
    for entity in message.entities or ():
        if entity.type == "bot_command" and entity.offset == 0:
            command = text[: entity.length].split("@", 1)[0].lower()
            rest = text[entity.length :].strip()
            return f"{command} {rest}".strip()
    return text


class TelegramChannel(Channel):
    name = "telegram"
    joins_by_link = True
    title = "Telegram"
    provider_ids_name_the_person = True
    contact_field = "telegram_chat_id"
    contact_example = "123456789"
    max_address_length = 17  # a minus and 16 digits: chat ids fit in 52 bits
    buttons = True
    replies_inline = False  # the Bot API is called by the sender, never in the webhook
    max_choices = 100  # buttons in one message: Telegram refuses a keyboard with more
    simulate_hint = "type a button's number or text, or your own words"
    webhooks = ("webhooks.telegram:bp",)

    def answers_offered(self, question: Question) -> int:
        # A button each, and Done (all that apply) and Skip (optional) are buttons too.
        buttons = len(question.choices) if question.type in render.BUTTONED else 0
        return buttons + (question.type == "multi") + question.optional

    def normalise(self, raw: str) -> str:
        text = str(raw).strip()
        digits = text[1:] if text.startswith("-") else text
        if not (digits.isascii() and digits.isdigit()) or not 0 < int(digits) < MAX_CHAT_ID:
            raise InvalidAddress(f"{raw!r} is not a Telegram chat id (a whole number)")
        return str(int(text))

    def off_reason(self, settings: Settings) -> str | None:
        if settings.telegram_bot_token and settings.telegram_webhook_secret:
            return None
        return "set TELEGRAM_BOT_TOKEN and TELEGRAM_WEBHOOK_SECRET"

    def provider_api(self, settings: Settings) -> str | None:
        return settings.telegram_api_base_url

    def sender(self, settings: Settings) -> Sender:
        # Here: the provider's client library loads only where we send or set it up.
        from bot.channels.telegram.sender import telegram_sender

        self.require_on(settings)
        return telegram_sender(settings)

    def link_prefix(self, settings: Settings) -> str:
        """`t.me/<bot>?start=`: the bot's @username is TELEGRAM_BOT_USERNAME, else asked of
        Telegram."""
        return f"https://t.me/{self._bot_username(settings)}?start="

    def _bot_username(self, settings: Settings) -> str:
        if settings.telegram_bot_username:
            return settings.telegram_bot_username
        try:
            me = self.sender(settings).get_me()  # type: ignore[attr-defined]
        except SendError as exc:
            raise LinkError(
                f"set TELEGRAM_BOT_USERNAME, or let us ask Telegram for it ({exc})"
            ) from None
        if not me.username:
            raise LinkError("Telegram did not say the bot's username: set TELEGRAM_BOT_USERNAME")
        return str(me.username)

    def point_webhooks(self, settings: Settings) -> list[str]:
        # Here: the provider's client library loads only where we send or set it up.
        from bot.channels.telegram.sender import UPDATES, telegram_sender

        url = f"{settings.public_base_url}/webhooks/telegram"
        telegram_sender(settings).set_webhook(url, UPDATES)
        return [f"setWebhook {url} with the secret token, for {', '.join(UPDATES)} updates"]

    def render_body(self, prompts: Iterable[Prompt], org: str) -> str:
        message = render.combine(render.render(prompts, org))
        return render.to_body(message) if message is not None else ""

    def parse_stored(self, body: str) -> Inbound:
        return render.parse(text=body)

    # --- reading what Telegram sends --------------------------------------------------

    def read_update(self, data: dict[str, Any]) -> ReadUpdate | Blocked | None:
        """What an update means for us, or None for one we do not handle (edits, groups,
        channel posts...), which is answered 200 and forgotten. A photo's caption is its
        words; a sticker, a voice note or a photo without one is a message with no words,
        which gets an answer saying so rather than silence. In a private chat the bot's own
        membership changes only when the person blocks it ("kicked") or unblocks it
        ("member"): `Blocked`."""
        update = Update.de_json(data, None)
        change = update.my_chat_member
        if change is not None:
            status = change.new_chat_member.status
            if change.chat.type != "private" or status not in (
                ChatMember.BANNED,
                ChatMember.MEMBER,
            ):
                return None
            blocked = status == ChatMember.BANNED
            reason = "bot blocked" if blocked else "bot unblocked"
            return Blocked(
                self.name, str(change.chat.id), blocked, f"{reason} (Telegram my_chat_member)"
            )
        if update.message is not None:
            message = update.message
            if message.chat.type != "private":
                return None
            if message.text is None:
                words = (message.caption or "")[:MAX_TEXT]
                return ReadUpdate(
                    update.update_id, message.chat.id, words, render.parse(text=words)
                )
            text = _command_text(message)[:MAX_TEXT]
            payload = text.split(" ", 1)[1].strip() if text.startswith("/start ") else ""
            if payload and LINK_CODE.fullmatch(payload):
                return ReadUpdate(
                    update.update_id,
                    message.chat.id,
                    text,
                    render.parse(text=text),
                    link_code=payload,
                )
            return ReadUpdate(update.update_id, message.chat.id, text, render.parse(text=text))
        query = update.callback_query
        if query is not None and query.data:
            pressed = query.message
            if pressed is not None and pressed.chat.type != "private":
                return None
            press = render.Press.read(query.data)
            chat_id = pressed.chat.id if pressed is not None else query.from_user.id
            message_id = pressed.message_id if pressed is not None else None
            if press is None:
                # Not one of our buttons: acknowledged so the spinner stops, nothing applied.
                return None
            label = press.value
            markup = getattr(pressed, "reply_markup", None)
            for row in markup.inline_keyboard if markup is not None else ():
                for button in row:
                    if button.callback_data == query.data:
                        label = button.text
            # Stored as the person would have typed it, so a retry reads it the same way.
            text = "/skip" if press.value == render.SKIP_VALUE else label
            return ReadUpdate(
                update.update_id,
                chat_id,
                text,
                press,
                callback_query_id=query.id,
                pressed_message_id=message_id,
                press=press,
            )
        return None

    # --- the simulator -----------------------------------------------------------------

    def simulate_show(self, prompts: Sequence[Prompt], org: str) -> list[str]:
        message = render.combine(render.render(prompts, org))
        if message is None:
            return []
        lines = [
            f"[telegram] {line}" if i == 0 else f"           {line}"
            for i, line in enumerate(message.text.splitlines())
        ]
        if message.keyboard is not None:
            # As laid out in the chat, one line per row; each button with what typing does
            # the same: its number (the point itself on a scale).
            for row in message.keyboard.inline_keyboard:
                shown = []
                for button in row:
                    press = render.Press.read(str(button.callback_data))
                    value = press.value if press is not None else ""
                    if value in (render.SKIP_VALUE, button.text):
                        shown.append(f"[{button.text}]")
                    else:
                        shown.append(f"[{value}] {button.text}")
                lines.append("           " + "   ".join(shown))
        return lines

    def simulate_screen(
        self, prompts: Sequence[Prompt], org: str
    ) -> list[tuple[str, list[list[tuple[str, str]]]]]:
        message = render.combine(render.render(prompts, org))
        if message is None:
            return []
        rows = []
        if message.keyboard is not None:
            rows = [
                [(b.text, str(b.callback_data)) for b in row]
                for row in message.keyboard.inline_keyboard
            ]
        return [(message.text, rows)]

    def simulate_press(self, data: str) -> Inbound | None:
        return render.Press.read(data)

    def simulate_parse(self, typed: str, question: Question | None) -> Inbound:
        # A button's number typed is what pressing it sends ("2", the point on a scale).
        return render.parse(text=typed)


TELEGRAM = TelegramChannel()
