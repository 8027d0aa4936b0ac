"""Telegram's Bot API: the one place it is called, and where its errors are classified.

python-telegram-bot's `Bot` makes every call (its types build the keyboards and read the
answers, its exceptions say what went wrong). It is async; `send_batch` is not, and calls a
sender from several threads at once. So each process runs one event loop on a thread of its
own, holding one `Bot` and its connection pool, and the sending threads hand it coroutines and
wait for the answer. One loop (rather than `asyncio.run` per message) keeps the pool's
connections open across messages, and a `Bot` is only ever used on the loop it was made on.
rq forks a work-horse per job, and a thread does not survive a fork, so the loop is made again
in a process that did not make it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import threading
import warnings
from collections.abc import Coroutine, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

from telegram import Bot, User
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)
from telegram.request import HTTPXRequest

from bot.channels.telegram import render
from bot.config import Settings
from bot.providers.base import Handed, Outgoing
from bot.providers.errors import (
    ChannelOff,
    PermanentError,
    RecipientBlocked,
    RecipientUnreachable,
    SendError,
    TemporaryError,
)

# httpx logs every request's URL at INFO, and Bot API URLs carry the bot's token; the library
# logs parameters (chat ids, words) at DEBUG. Neither belongs in our logs.
logging.getLogger("httpx").setLevel(logging.WARNING)
logging.getLogger("telegram").setLevel(logging.WARNING)
log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 15
POOL_SIZE = 8  # more than send_batch's threads, so no call waits for a connection
# What the webhook handles; Telegram sends only these. `my_chat_member` is how a private chat
# says the person blocked the bot (or unblocked it), at once rather than at our next send.
UPDATES = ("message", "callback_query", "my_chat_member")

T = TypeVar("T")


def classify(exc: BaseException) -> SendError:
    """What a Bot API failure means, in the one error tree (`bot.providers.errors`)."""
    said = str(exc)
    lowered = said.casefold()
    if isinstance(exc, RetryAfter):
        with warnings.catch_warnings():
            # Its type (int or timedelta) is changing between releases; both are read here.
            warnings.simplefilter("ignore")
            wait = exc.retry_after
        seconds = wait.total_seconds() if isinstance(wait, timedelta) else float(wait)
        return TemporaryError(
            f"Telegram 429: too many requests, retry after {seconds:g} s", "429", seconds
        )
    if isinstance(exc, Forbidden):
        if "blocked by the user" in lowered:
            return RecipientBlocked(f"Telegram 403: {said}", "403", "bot blocked (Telegram 403)")
        if "deactivated" in lowered:
            return RecipientUnreachable(
                f"Telegram 403: {said}", "403", "account deleted (Telegram 403)"
            )
        return PermanentError(f"Telegram 403: {said}", "403")
    if isinstance(exc, InvalidToken):
        return TemporaryError(
            f"Telegram refused the token ({said}): check TELEGRAM_BOT_TOKEN", "401"
        )
    if isinstance(exc, ChatMigrated):
        return PermanentError("Telegram 400: the chat became a supergroup", "400")
    if isinstance(exc, TimedOut):
        return TemporaryError(f"Telegram did not answer in time: {said}", "timeout")
    if isinstance(exc, BadRequest):
        if "chat not found" in lowered:
            return RecipientUnreachable(
                f"Telegram 400: {said}", "400", "chat not found (Telegram 400)"
            )
        return PermanentError(f"Telegram 400: {said}", "400")
    if isinstance(exc, NetworkError):
        return TemporaryError(f"could not reach Telegram: {said}", "connection")
    if isinstance(exc, TelegramError):
        return PermanentError(f"Telegram: {said}", "telegram")
    if isinstance(exc, concurrent.futures.TimeoutError | TimeoutError):
        return TemporaryError("Telegram did not answer in time", "timeout")
    return TemporaryError(
        f"unexpected error talking to Telegram: {type(exc).__name__}", "unexpected"
    )


class _Loop:
    """An event loop running on its own daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="telegram-bot-api", daemon=True
        )
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float) -> T:
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise


class TelegramSender:
    """Messages through the Bot API (the `telegram` channel's sender)."""

    def __init__(self, settings: Settings):
        if not (settings.telegram_bot_token and settings.telegram_webhook_secret):
            raise ChannelOff(
                "Telegram is off: TELEGRAM_BOT_TOKEN and TELEGRAM_WEBHOOK_SECRET are not set"
            )
        self.settings = settings
        self.token: str = settings.telegram_bot_token
        self.pid = os.getpid()
        self._lock = threading.Lock()
        self._loop: _Loop | None = None
        self._bot: Bot | None = None

    @property
    def sender_key(self) -> str:
        # The bot's id (the token's public half): Telegram's limit is per bot.
        return f"telegram:{self.token.split(':', 1)[0]}"

    def _call(self, make: Any) -> Any:
        """Run `make(bot)` (a coroutine) on the loop and wait; failures come out classified."""
        with self._lock:
            if self._loop is None:
                self._loop = _Loop()
                self._bot = Bot(
                    self.token,
                    base_url=f"{self.settings.telegram_api_base_url}/bot",
                    base_file_url=f"{self.settings.telegram_api_base_url}/file/bot",
                    request=HTTPXRequest(
                        connection_pool_size=POOL_SIZE,
                        read_timeout=TIMEOUT_SECONDS,
                        write_timeout=TIMEOUT_SECONDS,
                        connect_timeout=5,
                        pool_timeout=TIMEOUT_SECONDS,
                    ),
                )
            loop, bot = self._loop, self._bot
        assert bot is not None
        try:
            return loop.run(make(bot), TIMEOUT_SECONDS * 2)
        except Exception as exc:
            raise classify(exc) from exc

    def send(self, message: Outgoing) -> Handed:
        built = render.from_body(message.body)
        # Words written for every channel (a feedback template's "Reply STOP") read as the
        # commands they are here; text already rendered for Telegram is left as it is.
        text = render.for_telegram(built.text)
        sent = self._call(
            lambda bot: bot.send_message(
                chat_id=int(message.address), text=text, reply_markup=built.keyboard
            )
        )
        # Message ids are unique only within a chat, and provider ids must be unique.
        return Handed(f"{sent.chat.id}:{sent.message_id}", "sent")

    def find(self, message: Outgoing, since: datetime) -> Handed | None:
        """The Bot API cannot say whether a message went, and has no idempotency key. A row
        whose worker died mid-call may have been delivered, so it is taken as handed over:
        sending at most once matters more than one lost message, which the person can ask
        for again with /repeat."""
        return Handed(f"unconfirmed:{message.id}", "sent")

    def after_press(self, address: str, message_ref: str) -> bool:
        """Take the buttons off a message whose question was answered (`address` the chat id,
        `message_ref` the message id); False if Telegram would not (too old, already
        cleared): the press was taken or refused anyway."""
        try:
            chat_id, message_id = int(address), int(message_ref)
        except ValueError:
            return False
        try:
            self._call(
                lambda bot: bot.edit_message_reply_markup(
                    chat_id=chat_id, message_id=message_id, reply_markup=None
                )
            )
        except SendError as exc:
            log.info("could not clear a keyboard: %s", exc.code)
            return False
        return True

    def get_me(self) -> User:
        return self._call(lambda bot: bot.get_me())

    def set_webhook(self, url: str, updates: Sequence[str] = UPDATES) -> bool:
        return self._call(
            lambda bot: bot.set_webhook(
                url=url,
                secret_token=self.settings.telegram_webhook_secret,
                allowed_updates=list(updates),
            )
        )


_senders: dict[tuple[int, int], TelegramSender] = {}
_senders_lock = threading.Lock()


def telegram_sender(settings: Settings) -> TelegramSender:
    """One sender (one loop, one connection pool) per settings object, per process; the
    sending threads ask at once, and two senders would mean two loops."""
    key = (id(settings), os.getpid())
    with _senders_lock:
        sender = _senders.get(key)
        if sender is None or sender.settings is not settings:
            _senders.clear()
            sender = _senders[key] = TelegramSender(settings)
        return sender
