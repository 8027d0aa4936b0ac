"""Webhook authenticity: Twilio's signature over PUBLIC_BASE_URL + path + query + params."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from flask import abort, current_app, request
from twilio.request_validator import RequestValidator

from bot.config import Settings


def public_url() -> str:
    """The URL Twilio called, as configured: behind a proxy we never guess it from headers."""
    settings: Settings = current_app.extensions["involve.settings"]
    query = request.query_string.decode("latin-1")
    return settings.public_base_url + request.path + (f"?{query}" if query else "")


def twilio_signed(view: Callable[..., Any]) -> Callable[..., Any]:
    """403, before anything is read or stored, unless X-Twilio-Signature is right."""

    @functools.wraps(view)
    def checked(*args: Any, **kwargs: Any) -> Any:
        settings: Settings = current_app.extensions["involve.settings"]
        signature = request.headers.get("X-Twilio-Signature", "")
        if not settings.twilio_auth_token or not signature:
            abort(403)
        validator = RequestValidator(settings.twilio_auth_token)
        if not validator.validate(public_url(), request.form, signature):
            abort(403)
        return view(*args, **kwargs)

    return checked
