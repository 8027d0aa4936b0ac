"""POST /webhooks/twilio/status: delivery callbacks for texts and calls we sent.

Thin on purpose: the signature is checked, the callback is read into a `StatusReport`, and the
core's one status writer (`bot.sending.delivery.record`) applies it.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, request

from bot.commands import runtime
from bot.providers.twilio import classify_code
from bot.sending import delivery
from bot.storage.models import as_id
from bot.text import clean_text
from webhooks.signatures import stable_sid, twilio_signed

bp = Blueprint("twilio_status", __name__, url_prefix="/webhooks/twilio")


@bp.post("/status")
@twilio_signed
def status_callback() -> Response:
    form = request.form
    sid = form.get("MessageSid") or form.get("CallSid")
    raw_status = (
        form.get("MessageStatus") or form.get("SmsStatus") or form.get("CallStatus") or ""
    ).lower()
    status = delivery.TWILIO_STATUS.get(raw_status)
    if not sid or status is None or stable_sid(sid) != sid:
        return Response(status=204)  # no message of ours has a sid like that
    report = delivery.StatusReport(
        provider="Twilio",
        provider_id=sid,
        status=status,
        raw_status=raw_status,
        # Signed, but still only text: cut to what the columns hold, without NULs, so an
        # odd callback is a 204 and never a database error.
        error_code=clean_text(form.get("ErrorCode") or "")[:20] or None,
        error_text=clean_text(form.get("ErrorMessage") or "")[:1000] or None,
        message_id=as_id(request.args.get("m", "")),
    )
    delivery.record(
        runtime.database(), current_app.extensions["involve.settings"], report, classify_code
    )
    return Response(status=204)
