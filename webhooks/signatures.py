"""Webhook authenticity: Twilio's signature over PUBLIC_BASE_URL + path + query + params.

Limits come before work: a stranger must not be able to make us parse or hash a large body
just by sending some `X-Twilio-Signature`. So, in order: the declared size (413, nothing
read), the signature's shape (403, nothing read), and only then the form, read with a hard cap
even when no size was declared (chunked), and the HMAC.
"""

from __future__ import annotations

import binascii
import functools
import hashlib
import hmac
import logging
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

from flask import Response, abort, current_app, request
from twilio.request_validator import RequestValidator, add_port, remove_port

from bot import channels, conversations
from bot.commands import runtime
from bot.config import Settings
from bot.storage.models import utcnow
from bot.text import clean_text

log = logging.getLogger(__name__)

# Twilio's own requests are a few KB; 64 KB leaves room for long texts and every parameter.
WEBHOOK_MAX_BODY = 64 * 1024
# HMAC-SHA1 is 20 bytes, 28 characters of base64.
SIGNATURE_LENGTH = 28
# Twilio's MessageSid/SmsSid/CallSid: two letters and 32 hex digits.
SID_LENGTH = 34


def public_url() -> str:
    """The URL Twilio called, as configured: behind a proxy we never guess it from headers."""
    settings: Settings = current_app.extensions["involve.settings"]
    query = request.query_string.decode("latin-1")
    return settings.public_base_url + request.path + (f"?{query}" if query else "")


class OncePer:
    """Says yes at most once per `seconds` (in this process): a misconfigured URL fails every
    request, and one line a minute says so without filling the log."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.last: float | None = None
        self.lock = threading.Lock()

    def __call__(self) -> bool:
        now = time.monotonic()
        with self.lock:
            if self.last is not None and now - self.last < self.seconds:
                return False
            self.last = now
            return True


refusal_logged = OncePer(60)


def log_refused_signature(why: str) -> None:
    """One warning a minute naming the URL a Twilio request was checked against, and the fix.

    Only the configured base and the route's path are named (its query can carry a caller's
    words); never the sender or the body. The Host the request came to is named, cut short and
    printable, because a mismatch with PUBLIC_BASE_URL is the usual cause.
    """
    if not refusal_logged():
        return
    settings: Settings = current_app.extensions["involve.settings"]
    came_to = "".join(c for c in request.host[:100] if c.isascii() and c.isprintable())
    query = " (and its query)" if request.query_string else ""
    log.warning(
        "refused a Twilio request (403): %s, checked against %s%s, built from "
        "PUBLIC_BASE_URL=%s; the request came to host %s. If Twilio posts to another address "
        "(another host, http instead of https, a port, a proxy's path), set PUBLIC_BASE_URL to "
        "the address Twilio is given, and check TWILIO_AUTH_TOKEN is this account's. "
        "(At most one such line a minute.)",
        why,
        settings.public_base_url + request.path,
        query,
        settings.public_base_url,
        came_to or "(none)",
    )


def _plausible_signature(signature: str) -> bool:
    if len(signature) != SIGNATURE_LENGTH or not signature.isascii():
        return False
    try:
        return len(binascii.a2b_base64(signature)) == 20
    except binascii.Error:
        return False


def limit_body() -> None:
    """413 before anything is read when the body is declared too big; a hard cap otherwise.

    Setting `max_content_length` on the request makes werkzeug stop reading a chunked body
    (which declares no length) at the limit too, with the same 413.
    """
    if request.content_length is not None and request.content_length > WEBHOOK_MAX_BODY:
        abort(413)
    request.max_content_length = WEBHOOK_MAX_BODY


def twilio_signed(view: Callable[..., Any]) -> Callable[..., Any]:
    """413 or 403, before anything is stored, unless the body is small and signed right."""

    @functools.wraps(view)
    def checked(*args: Any, **kwargs: Any) -> Any:
        settings: Settings = current_app.extensions["involve.settings"]
        limit_body()
        signature = request.headers.get("X-Twilio-Signature", "")
        if not settings.twilio_auth_token:
            log_refused_signature("TWILIO_AUTH_TOKEN is not set on this web process")
            abort(403)
        if not _plausible_signature(signature):
            abort(403)  # no signature Twilio could have made: a stranger, not a setting
        if not signature_matches(settings.twilio_auth_token, public_url(), request.form, signature):
            log_refused_signature("its signature does not match")
            abort(403)
        return view(*args, **kwargs)

    return checked


def signature_matches(token: str, url: str, form: Any, signature: str) -> bool:
    """Twilio's `RequestValidator.validate` for a form, taking what it takes: the signature
    over the URL without its port or with it (Twilio signs either). It computes both every
    time; this stops at the first that matches, trying first the form the URL is configured
    in, so a webhook Twilio signed as configured costs one HMAC, not two."""
    validator = RequestValidator(token)
    parsed = urlparse(url)
    forms = (add_port, remove_port) if parsed.port else (remove_port, add_port)
    return any(_same(validator.compute_signature(f(parsed), form), signature) for f in forms)


def _same(computed: str, given: str) -> bool:
    """twilio's `compare` (constant time, False for different lengths), in C: twilio's walks
    the characters in Python, about a third of the signature check's own Python. As bytes,
    so a given signature with any characters at all is compared, not refused
    (`compare_digest` takes only ASCII in a str)."""
    return hmac.compare_digest(computed.encode(), given.encode())


def _plausible_sid(sid: str) -> bool:
    return len(sid) <= SID_LENGTH and sid.isascii() and sid.isprintable()


def stable_sid(sid: str) -> str:
    """A sid that can be stored: itself if Twilio-like, else a digest that is the same for
    every redelivery of the same odd sid (so dedupe still holds)."""
    if _plausible_sid(sid):
        return sid
    prefix = sid[:2] if sid[:2].isascii() and sid[:2].isalpha() else "XX"
    return prefix + hashlib.sha256(sid.encode("utf-8", "replace")).hexdigest()[:32]


def unreachable_sms_fields(channel: str) -> str | None:
    """Why this signed inbound message on `channel` cannot be handled as a person's message,
    or None.

    Twilio never sends a MessageSid longer than 34 characters, or a From longer than the
    channel's addresses (`Channel.max_address_length`: E.164's 16 for a text,
    `whatsapp:+447700900123`'s 22 for WhatsApp); a signed request that does (a misconfigured
    proxy, a test tool holding the auth token) would otherwise overflow the columns, which
    PostgreSQL refuses with a 500.
    """
    longest = channels.get(channel).max_address_length
    form = request.form
    sid = form.get("MessageSid") or form.get("SmsSid") or ""
    sender = form.get("From", "")
    if len(sid) > SID_LENGTH:
        return f"MessageSid is too long ({len(sid)} characters; Twilio's are {SID_LENGTH})"
    if not _plausible_sid(sid):
        # A NUL here is a 500 on PostgreSQL; Twilio's sids are plain letters and digits.
        return "MessageSid has characters no Twilio sid has"
    if len(sender) > longest:
        return f"From is too long ({len(sender)} characters; at most {longest} on this channel)"
    return None


def twilio_signed_inbound(channel: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`twilio_signed`, then: an inbound text whose sid or sender cannot be stored as they are is
    kept (on `channel`, status `error`, with the reason) and answered with empty TwiML, never
    run through a conversation: an over-long sender is not anyone we could reply to."""

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def checked(*args: Any, **kwargs: Any) -> Any:
            problem = unreachable_sms_fields(channel)
            if problem is None:
                return view(*args, **kwargs)
            keep_unreachable_sms(channel, problem)
            return Response(
                "<?xml version='1.0' encoding='UTF-8'?><Response />", mimetype="application/xml"
            )

        return twilio_signed(checked)

    return decorate


def keep_unreachable_sms(channel: str, problem: str) -> None:
    form = request.form
    sid = stable_sid(form.get("MessageSid") or form.get("SmsSid") or "")
    address = clean_text(form.get("From", ""))[:64] or None
    log.warning("kept an inbound text we cannot answer: %s", problem)
    with runtime.database().session() as session:
        conversations.insert_inbound_once(
            session,
            channel=channel,
            kind="inbound",
            address=address,
            body=clean_text(form.get("Body", "")),
            provider_id=sid or None,
            created_at=utcnow(),
            status="error",
            error_message=problem,
        )
