"""POST /webhooks/telegram: an update from Telegram's Bot API, answered 200 at once.

Thin on purpose: the secret token is checked, the channel reads the update, a deep-link code is
redeemed, the one writer (`bot.conversations.inbox.receive`) applies it and stores what to say back in the
outbox, where the sender delivers it. A button press is acknowledged in this response (the
Bot API takes one method call as a webhook's answer), and its keyboard is cleared by a job.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from bot import channels, conversations
from bot.channels.base import Blocked
from bot.commands import runtime
from bot.config import Settings
from bot.conversations import inbox, links, outbox
from bot.text import clean_json
from webhooks.signatures import OncePer, limit_body

bp = Blueprint("telegram_bot", __name__, url_prefix="/webhooks")  # where the Bot API posts
CHANNEL = channels.serving(__name__)  # the channel that lists this module
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
STALE_TEXT = "That question has been answered already. Here is the one we are on now."
log = logging.getLogger(__name__)
refusal_logged = OncePer(60)


def _ok() -> Response:
    return Response("", status=200)


@bp.post("/telegram")
def inbound_update() -> Response:
    settings: Settings = current_app.extensions["involve.settings"]
    secret = settings.telegram_webhook_secret
    given = request.headers.get(SECRET_HEADER, "")
    if not secret or not hmac.compare_digest(given.encode(), secret.encode()):
        if given and refusal_logged():
            # Telegram sends the secret it was given by `involve webhooks set`: a mismatch is
            # most often a secret changed since. At most one line a minute; no update is read.
            log.warning(
                "refused a Telegram update (403): its secret token is not TELEGRAM_WEBHOOK_SECRET"
                " on this web process; after changing the secret, run `involve webhooks set`"
                " again (it gives Telegram %s/webhooks/telegram and the secret). (At most one"
                " such line a minute.)",
                settings.public_base_url,
            )
        return Response("forbidden", status=403, mimetype="text/plain")
    limit_body()  # a real update is a few KB: nothing bigger is parsed
    try:
        data = request.get_json(silent=True)
    except RecursionError:
        # json refuses nesting deeper than the interpreter's stack with RecursionError, which
        # `silent` does not cover: a 500 for a thousand `[`.
        data = None
    # NUL and unpaired surrogates (`\u0000`, `\ud800` are valid JSON) cannot be stored.
    data = clean_json(data)
    if not isinstance(data, dict) or not isinstance(data.get("update_id"), int):
        return Response("a JSON update with an update_id is required", status=400)
    try:
        read = CHANNEL.read_update(data)  # type: ignore[attr-defined]
    except (KeyError, TypeError, ValueError, AttributeError):
        # Signed with our secret, yet not an update python-telegram-bot can read.
        log.warning("an update we could not read was answered 400")
        return Response("not a Telegram update", status=400)
    if read is None:
        # Not something we handle: 200, so Telegram does not send it again. A button that is
        # not ours is still acknowledged, or the person's app shows it loading for a while.
        query = data.get("callback_query")
        if isinstance(query, dict) and isinstance(query.get("id"), str):
            return jsonify(method="answerCallbackQuery", callback_query_id=query["id"])
        return _ok()
    if isinstance(read, Blocked):
        # The person blocked the bot, or unblocked it: their contact point says so at once.
        conversations.blocked_at_provider(runtime.database(), read)
        return _ok()
    return _apply(settings, read)


def _apply(settings: Settings, read: Any) -> Response:  # the channel's ReadUpdate
    database = runtime.database()
    received_text, inbound = read.text, read.inbound
    if read.link_code is not None:
        result = links.redeem(
            database, settings, CHANNEL, read.chat_id, read.link_code, read.provider_id
        )
        if result != links.UNKNOWN:
            # Joined (or refused, with a note): a plain /start from here on, stored without
            # the code, which is a credential until used.
            received_text, inbound = "/start", CHANNEL.parse_stored("/start")
    outcome = inbox.receive(
        database,
        settings,
        inbox.Received(
            channel=CHANNEL.name,
            text=received_text,
            inbound=inbound,
            address=str(read.chat_id),
            provider_id=read.provider_id,
        ),
        keywords=runtime.library().keywords(),
    )
    if read.callback_query_id is None:
        return _ok()
    if read.pressed_message_id is not None and outcome.status != inbox.DUPLICATE:
        _tidy_after_press(str(read.chat_id), str(read.pressed_message_id))
    answer: dict[str, Any] = {
        "method": "answerCallbackQuery",
        "callback_query_id": read.callback_query_id,
    }
    if read.press is not None and read.press.stale:
        answer["text"] = STALE_TEXT
    return jsonify(answer)


def _tidy_after_press(chat_id: str, message_id: str) -> None:
    """The pressed message's buttons come off later, by the sender (`jobs.after_press`)."""
    try:
        outbox.queue(runtime.redis()).enqueue(
            "bot.commands.jobs.after_press",
            CHANNEL.name,
            chat_id,
            message_id,
            job_timeout=60,
            result_ttl=0,
            # rq logs a job's description, by default its call with the arguments: the chat id.
            description="clear a Telegram keyboard",
        )
    except Exception as exc:
        # Only tidiness is lost: a press on a keyboard left behind is refused as stale.
        log.warning("could not queue clearing a keyboard (%s)", type(exc).__name__)
