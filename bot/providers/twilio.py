"""Twilio's REST API: the one place texts (and calls) are handed over.

Failures are classified here (see `bot.providers.errors`); nothing else looks at Twilio's error codes.
"""

from __future__ import annotations

import json
import logging
import re
import urllib.parse
import urllib.request
from datetime import datetime, timedelta
from typing import Any

import urllib3
from twilio.base.exceptions import TwilioRestException
from twilio.http import HttpClient
from twilio.http.response import Response
from twilio.rest import Client

from bot.config import Settings
from bot.providers.base import Handed, Outgoing
from bot.providers.errors import (
    ChannelOff,
    OutsideWindow,
    PermanentError,
    RecipientBlocked,
    RecipientOptedOut,
    RecipientUnreachable,
    SendError,
    TemporaryError,
)

TWILIO_ORIGIN = "https://api.twilio.com"
# Twilio's other APIs live on hosts of their own (the Content API on content.twilio.com): with
# TWILIO_API_BASE_URL set elsewhere (a local fake, staging), they go there too.
TWILIO_HOST = re.compile(r"https://[a-z0-9-]+\.twilio\.com(?=/|$)")
TIMEOUT_SECONDS = 15

# Stopped at the provider, by the person: unsubscribed at their carrier (21610). Twilio sets
# it when a number texts one of its STOP words to our sender, and then refuses every text to
# it: that was the person's STOP, which holds on every channel.
OPTED_OUT = {21610: "unsubscribed at the carrier"}
# Blocked our sender on a chat channel such as WhatsApp (63014, "blocked by user action"): a
# withdrawn consent for that channel, as a blocked Telegram bot is; their texts and calls are
# another matter.
BLOCKED = {63014: "blocked us on that channel"}
# "Outside messaging window": free text more than 24 hours after the person last wrote on
# WhatsApp; only an approved template (ContentSid) may go.
OUTSIDE_WINDOW = {63016}
# Numbers we can never reach: invalid, not a mobile, landline for SMS, region not enabled,
# blocked or unreachable destination, and the like.
BAD_NUMBER = {
    21211,
    21214,
    21217,
    21219,
    21401,
    21407,
    21408,
    21421,
    21612,
    21614,
    21635,
    30003,
    30005,
    30006,
    63003,
    63024,
}
# 63018: the channel's rate limit; 63038: the account's daily limit.
TEMPORARY_CODES = {20429, 20500, 20503, 30001, 30008, 63018, 63038}
# Of those, the ones that say the number itself cannot be reached this way, for good (not
# our account's settings, nor a handset that is only switched off): its contact point is
# marked unreachable with these words, and campaigns use the person's next one.
UNREACHABLE = {
    21211: "invalid number",
    21214: "number cannot be reached",
    21217: "invalid number",
    21401: "invalid number",
    21407: "number cannot take texts",
    21421: "invalid number",
    21612: "number cannot take texts",
    21614: "not a mobile number",
    30005: "unknown or inactive number",
    30006: "landline or unreachable carrier",
    63003: "inactive or invalid address on that channel",
    63024: "cannot take messages on that channel",
}


def _permanent(number: int | None, said: str, code: str) -> PermanentError:
    if number in OUTSIDE_WINDOW:
        return OutsideWindow(said, code)
    if number in OPTED_OUT:
        return RecipientOptedOut(said, code, f"{OPTED_OUT[number]} (Twilio {code})")
    if number in BLOCKED:
        return RecipientBlocked(said, code, f"{BLOCKED[number]} (Twilio {code})")
    if number in UNREACHABLE:
        return RecipientUnreachable(said, code, f"{UNREACHABLE[number]} (Twilio {code})")
    return PermanentError(said, code)


class PooledHttpClient(HttpClient):
    """twilio's transport on a urllib3 connection pool, sent to TWILIO_API_BASE_URL.

    twilio's REST client builds every request; this only carries it. It replaces twilio's
    requests-based client, whose per-request work (the environment scan for proxies, hooks,
    cookies) was half the cost of handing a message over. Proxies in the environment are
    honoured, read once.
    """

    def __init__(self, base_url: str, timeout: float | None = None, pool_size: int = 8):
        super().__init__(logging.getLogger("twilio.http_client"), False, timeout or TIMEOUT_SECONDS)
        self.base_url = base_url.rstrip("/")
        proxy = urllib.request.getproxies().get(urllib.parse.urlsplit(self.base_url).scheme)
        if proxy and not urllib.request.proxy_bypass(
            urllib.parse.urlsplit(self.base_url).hostname or ""
        ):
            self.pool: urllib3.PoolManager = urllib3.ProxyManager(proxy, maxsize=pool_size)
        else:
            self.pool = urllib3.PoolManager(maxsize=pool_size)

    def request(  # type: ignore[override]
        self,
        method: str,
        url: str,
        params: dict[str, Any] | None = None,
        data: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        host = TWILIO_HOST.match(url)
        if self.base_url != TWILIO_ORIGIN and host is not None:
            url = self.base_url + url[host.end() :]
        if params:
            url += "?" + urllib.parse.urlencode(params, doseq=True)
        headers = dict(headers or {})
        if auth:
            headers.update(urllib3.make_headers(basic_auth=f"{auth[0]}:{auth[1]}"))
        body = None
        if data is not None:
            if headers.get("Content-Type") in ("application/json", "application/scim+json"):
                body = json.dumps(data)
            else:
                body = urllib.parse.urlencode(data, doseq=True)
                headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        answer = self.pool.request(
            method.upper(),
            url,
            body=body,
            headers=headers,
            timeout=timeout or self.timeout,
            redirect=allow_redirects,
            retries=False,
        )
        response = Response(answer.status, answer.data.decode("utf-8", "replace"), answer.headers)
        self.last_response = response
        return response


def classify_code(code: str | None, text: str = "") -> SendError | None:
    """What a Twilio error code in a status callback means, in the error tree; None if none."""
    if not code or not code.isdigit():
        return None
    number, said = int(code), f"Twilio error {code}{f': {text}' if text else ''}"
    if number in TEMPORARY_CODES:
        return TemporaryError(said, code)
    return _permanent(number, said, code)


def classify(exc: Exception) -> SendError:
    if isinstance(exc, TwilioRestException):
        code = exc.code
        text = f"Twilio {exc.status}{f' error {code}' if code else ''}: {exc.msg}"
        if code in OPTED_OUT or code in BLOCKED or code in BAD_NUMBER or code in OUTSIDE_WINDOW:
            return _permanent(code, text, str(code))
        if exc.status == 429 or exc.status >= 500 or code in TEMPORARY_CODES:
            return TemporaryError(text, str(code or exc.status))
        if exc.status in (401, 403):
            return TemporaryError(
                f"{text} (check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN)", str(code or exc.status)
            )
        return PermanentError(text, str(code or exc.status))
    if isinstance(exc, urllib3.exceptions.TimeoutError):
        return TemporaryError(f"Twilio did not answer in time: {exc}", "timeout")
    if isinstance(exc, urllib3.exceptions.HTTPError | OSError):
        return TemporaryError(f"could not reach Twilio: {exc}", "connection")
    return TemporaryError(f"unexpected error talking to Twilio: {exc!r}", "unexpected")


class TwilioSender:
    """Texts through Twilio's Messaging API (the `sms` channel's sender)."""

    def __init__(self, settings: Settings, http_client: HttpClient | None = None):
        self.settings = settings
        self._client: Client | None = None
        self._http = http_client

    @property
    def sender_key(self) -> str:
        return f"twilio:{self.settings.twilio_from_number}"

    def client(self) -> Client:
        if not self.settings.twilio_enabled:
            raise ChannelOff(
                "SMS and calls are off: TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN are not set"
            )
        if not self.settings.twilio_from_number:
            raise ChannelOff("SMS and calls are off: TWILIO_FROM_NUMBER is not set")
        if self._client is None:
            self._client = Client(
                self.settings.twilio_account_sid,
                self.settings.twilio_auth_token,
                http_client=self._http or PooledHttpClient(self.settings.twilio_api_base_url),
            )
        return self._client

    def status_callback(self, message_id: int) -> str:
        return f"{self.settings.public_base_url}/webhooks/twilio/status?m={message_id}"

    def send(self, message: Outgoing) -> Handed:
        client = self.client()
        try:
            sent = client.messages.create(
                to=message.address,
                from_=self.settings.twilio_from_number,
                body=message.body,
                status_callback=self.status_callback(message.id),
            )
        except Exception as exc:
            raise classify(exc) from exc
        return Handed(sent.sid, sent.status or "queued")

    def find(self, message: Outgoing, since: datetime) -> Handed | None:
        """A text to this address with this body created since `since`, if Twilio has one.

        Twilio's API has no idempotency key, so this is how a send interrupted mid-call is
        settled before it is ever tried again.
        """
        client = self.client()
        try:
            # No DateSent filter: a text still queued at Twilio has no send date yet.
            recent = client.messages.list(
                to=message.address, from_=self.settings.twilio_from_number, limit=50
            )
        except Exception as exc:
            raise classify(exc) from exc
        for found in recent:
            created = found.date_created
            if found.body == message.body and (
                created is None or created >= since - timedelta(seconds=30)
            ):
                return Handed(found.sid, found.status or "queued")
        return None


def point_number(settings: Settings, what: str, url: str, carries: str) -> str:
    """Set the Twilio number's webhook `what` (Twilio's name for it: `sms` or `voice`) to
    `url`; what was set, in words (`carries`: what Twilio posts there, "texts")."""
    client = sms_sender(settings).client()
    try:
        numbers = client.incoming_phone_numbers.list(
            phone_number=settings.twilio_from_number, limit=1
        )
        if not numbers:
            raise PermanentError(
                f"{settings.twilio_from_number} is not a number on this Twilio account "
                "(check TWILIO_FROM_NUMBER)"
            )
        numbers[0].update(**{f"{what}_url": url, f"{what}_method": "POST"})
    except SendError:
        raise
    except Exception as exc:
        raise classify(exc) from exc
    return f"{settings.twilio_from_number} posts {carries} to {url}"


_sms_senders: dict[int, TwilioSender] = {}


def sms_sender(settings: Settings) -> TwilioSender:
    """One sender (and so one connection pool) per settings object, kept for the process."""
    sender = _sms_senders.get(id(settings))
    if sender is None or sender.settings is not settings:
        _sms_senders.clear()
        sender = _sms_senders[id(settings)] = TwilioSender(settings)
    return sender


def delete_recordings(settings: Settings, recording_ids: list[str]) -> int:
    """Delete these recordings at Twilio (erasure); how many went. One already gone counts as
    gone; any other failure is raised, classified, so the job is tried again."""
    client = TwilioSender(settings).client()
    deleted = 0
    for recording_id in recording_ids:
        try:
            client.recordings(recording_id).delete()
        except TwilioRestException as exc:
            if exc.status != 404:
                raise classify(exc) from exc
        except Exception as exc:
            raise classify(exc) from exc
        deleted += 1
    return deleted
