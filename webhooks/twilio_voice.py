"""POST /webhooks/twilio/voice and the turns under it: a keypad call, answered with TwiML.

Thin on purpose: the signature is checked (the whole URL, query included), the channel reads
Twilio's form, and `bot.channels.voice.call` decides each turn, reading and writing only through
the core's `Gateway` (whose writes go through the one writer, `bot.conversations.inbox`).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, request

from bot import channels
from bot.commands import runtime
from bot.config import Settings
from bot.conversations.gateway import Gateway
from bot.storage.models import as_id
from webhooks.signatures import twilio_signed

bp = Blueprint("twilio_voice", __name__, url_prefix="/webhooks/twilio/voice")
CHANNEL = channels.serving(__name__)  # the channel that lists this module


def _flow() -> Any:  # the voice channel's CallFlow
    settings: Settings = current_app.extensions["involve.settings"]
    survey = None
    if settings.inbound_call_survey:
        survey = runtime.library().surveys().get(settings.inbound_call_survey)
    return CHANNEL.call_flow(Gateway(runtime.database(), settings), settings, survey)  # type: ignore[attr-defined]


def _call() -> Any:
    """The call as the voice channel reads Twilio's form (its `CallIn`), or a 400."""
    read = CHANNEL.read_call(request.form)  # type: ignore[attr-defined]
    if isinstance(read, str):
        return Response(read, status=400, mimetype="text/plain")
    return read


def _step() -> int:
    step = as_id(request.args.get("s", "1"))
    return step if step is not None and step < 10_000 else 1


def twiml(body: str) -> Response:
    return Response(body, mimetype="application/xml")


@bp.post("")
@twilio_signed
def call_started() -> Response:
    call = _call()
    if isinstance(call, Response):
        return call
    message = request.args.get("m")
    return twiml(_flow().start(call, as_id(message) if message else None))


@bp.post("/open")
@twilio_signed
def opening() -> Response:
    call = _call()
    if isinstance(call, Response):
        return call
    return twiml(_flow().open(call, _step(), begin=request.args.get("begin") == "1"))


@bp.post("/ask")
@twilio_signed
def ask() -> Response:
    call = _call()
    if isinstance(call, Response):
        return call
    return twiml(_flow().ask(call, _step(), request.args.get("lead", "")))


@bp.post("/answer")
@twilio_signed
def answer() -> Response:
    call = _call()
    if isinstance(call, Response):
        return call
    silences = request.args.get("n", "0")
    return twiml(
        _flow().answer(
            call,
            _step(),
            request.args.get("q", ""),
            int(silences) if silences.isdigit() and len(silences) < 3 else 0,
            silent=request.args.get("silent") == "1",
        )
    )


@bp.post("/confirm")
@twilio_signed
def confirm() -> Response:
    call = _call()
    if isinstance(call, Response):
        return call
    return twiml(
        _flow().confirm(call, _step(), request.args.get("q", ""), request.args.get("said", ""))
    )


@bp.post("/stop")
@twilio_signed
def stop() -> Response:
    call = _call()
    if isinstance(call, Response):
        return call
    return twiml(_flow().stop(call, _step()))


@bp.post("/restart")
@twilio_signed
def restart() -> Response:
    call = _call()
    if isinstance(call, Response):
        return call
    return twiml(_flow().restart(call, _step()))


@bp.post("/feedback")
@twilio_signed
def feedback() -> Response:
    call = _call()
    if isinstance(call, Response):
        return call
    message_id = as_id(request.args.get("m", ""))
    if message_id is None:
        return Response("m is required", status=400, mimetype="text/plain")
    return twiml(_flow().feedback(call, message_id))


@bp.post("/transcription")
@twilio_signed
def transcription() -> Response:
    _flow().transcription(request.form, request.args.get("q", ""))
    return Response(status=204)
