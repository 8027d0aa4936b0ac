"""Local stand-ins for Twilio and Telegram, for `involve serve --demo`.

One small HTTP server on 127.0.0.1 speaks as much of Twilio's REST API (Messages and Calls:
create, fetch, list) and Telegram's Bot API (sendMessage and the calls around it) as our
senders use, so the real senders, worker and webhooks run unchanged; it keeps what was sent,
in memory, for the console's "Demo: messages sent" page. Like the real providers, it also
calls the service back: status callbacks for texts, and what a participant writes, signed
with the demo's own Twilio token or carrying its Telegram secret.

Its own endpoints, under /demo/ (no provider has them), are for the console and
`involve demo text` (bot/commands/demo/records.py): `GET /demo/messages` and
`POST /demo/reply`.
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
import queue
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections import deque
from dataclasses import asdict
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib import request as urlrequest
from urllib.error import HTTPError, URLError
from urllib.parse import parse_qs, urlencode, urlsplit

from twilio.request_validator import RequestValidator

from bot.commands.demo.records import (
    CALL,
    CHAT,
    TEXT,
    TIMEOUT_SECONDS,
    Record,
    StandInError,
    opener,
)

log = logging.getLogger(__name__)

# Not secrets: they open nothing but a demo's stand-ins, on this machine (see demo.refusal).
ACCOUNT_SID = "AC" + "de" * 16
AUTH_TOKEN = "demo-auth-token-opens-only-the-stand-ins"
FROM_NUMBER = "+447700900000"  # Ofcom's drama range: a number that reaches nobody
BOT_TOKEN = "100000001:demo-bot-token-opens-only-the-stand-ins"
BOT_USERNAME = "InvolveDemoBot"
WEBHOOK_SECRET = "demo-webhook-secret-opens-only-the-stand-ins"

KEPT = 2000  # records kept; the oldest go first
CALL_NOTE = "(A phone call. The demo cannot answer calls: try the keypad in a survey's simulator.)"


class StandIns:
    """The server: `start()`, then `url` for TWILIO_API_BASE_URL and TELEGRAM_API_BASE_URL."""

    def __init__(self, public_base_url: str, host: str = "127.0.0.1", port: int = 0):
        self.public_base_url = public_base_url.rstrip("/")
        self._address = (host, port)
        self._records: deque[Record] = deque(maxlen=KEPT)
        self._lock = threading.Lock()
        self._numbers = itertools.count(1)
        # Ids only ever grow, across restarts too: the webhook ignores an update id seen
        # before, and the outbox keeps each message's id as the provider's.
        self._update_ids = itertools.count(int(time.time() * 1000))
        self._message_ids = itertools.count(int(time.time() * 1000))
        self._callbacks: queue.Queue[tuple[str, dict[str, str]] | None] = queue.Queue()

    # --- running --------------------------------------------------------------------------

    def start(self) -> StandIns:
        self.server = ThreadingHTTPServer(self._address, _handler(self))
        self.server.daemon_threads = True
        self.server.handle_error = lambda request, address: None  # type: ignore[method-assign]
        self._threads = [
            threading.Thread(
                target=self.server.serve_forever,
                kwargs={"poll_interval": 0.1},
                name="demo-stand-ins",
                daemon=True,
            ),
            threading.Thread(target=self._call_back, name="demo-callbacks", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        return self

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        self._callbacks.put(None)
        self.server.shutdown()
        self.server.server_close()
        for thread in self._threads:
            thread.join(5)

    # --- what was sent --------------------------------------------------------------------

    def records(self) -> list[Record]:
        with self._lock:
            return list(self._records)

    def _keep(self, **fields: Any) -> Record:
        with self._lock:
            record = Record(
                n=next(self._numbers), at=datetime.now(UTC).isoformat(timespec="seconds"), **fields
            )
            self._records.append(record)
            return record

    def _set_status(self, sid: str, status: str) -> None:
        with self._lock:
            for record in self._records:
                if record.sid == sid:
                    record.status = status

    def _find(self, kind: str, **match: Any) -> list[Record]:
        with self._lock:
            return [
                r
                for r in reversed(self._records)
                if r.kind == kind
                and r.direction == "out"
                and all(getattr(r, k) == v for k, v in match.items() if v is not None)
            ]

    # --- Twilio ---------------------------------------------------------------------------

    def twilio_message(self, form: dict[str, str]) -> dict[str, Any]:
        sid = "SM" + uuid.uuid4().hex
        record = self._keep(
            kind=TEXT,
            direction="out",
            address=form.get("To", ""),
            text=form.get("Body", ""),
            sid=sid,
            status="queued",
        )
        if form.get("StatusCallback"):
            for status in ("sent", "delivered"):
                self._callbacks.put(
                    (
                        form["StatusCallback"],
                        {
                            "AccountSid": ACCOUNT_SID,
                            "ApiVersion": "2010-04-01",
                            "From": form.get("From", FROM_NUMBER),
                            "To": record.address,
                            "MessageSid": sid,
                            "SmsSid": sid,
                            "MessageStatus": status,
                            "SmsStatus": status,
                        },
                    )
                )
        return _twilio_message(record, form.get("From", FROM_NUMBER))

    def twilio_call(self, form: dict[str, str]) -> dict[str, Any]:
        record = self._keep(
            kind=CALL,
            direction="out",
            address=form.get("To", ""),
            text=CALL_NOTE,
            sid="CA" + uuid.uuid4().hex,
            status="queued",
        )
        return _twilio_call(record, form.get("From", FROM_NUMBER))

    def twilio_list(self, kind: str, query: dict[str, str]) -> dict[str, Any]:
        ours = query.get("From", FROM_NUMBER)
        # Every record is from the demo's one number; a list for another has nothing.
        found = self._find(kind, address=query.get("To")) if ours == FROM_NUMBER else []
        if kind == TEXT:
            items = [_twilio_message(r, ours) for r in found[:50]]
            key = "messages"
        else:
            items = [_twilio_call(r, ours) for r in found[:50]]
            key = "calls"
        return {
            key: items,
            "next_page_uri": None,
            "previous_page_uri": None,
            "page": 0,
            "page_size": 50,
            "start": 0,
            "end": len(items),
            "uri": "",
            "first_page_uri": "",
        }

    def twilio_fetch(self, kind: str, sid: str) -> dict[str, Any] | None:
        for record in self._find(kind, sid=sid):
            return (_twilio_message if kind == TEXT else _twilio_call)(record, FROM_NUMBER)
        return None

    def _call_back(self) -> None:
        """Status callbacks, one at a time and in order, as Twilio sends them."""
        while (item := self._callbacks.get()) is not None:
            url, params = item
            try:
                _post_signed(url, params)
                self._set_status(params["MessageSid"], params["MessageStatus"])
            except (StandInError, OSError) as exc:
                log.warning("demo: a status callback was not taken: %s", exc)

    # --- Telegram -------------------------------------------------------------------------

    def telegram(self, method: str, params: dict[str, Any]) -> Any:
        if method == "getMe":
            return {
                "id": int(BOT_TOKEN.split(":")[0]),
                "is_bot": True,
                "first_name": "Involve demo",
                "username": BOT_USERNAME,
            }
        if method == "sendMessage":
            record = self._keep(
                kind=CHAT,
                direction="out",
                address=str(params.get("chat_id", "")),
                text=str(params.get("text", "")),
                message_id=next(self._message_ids),
                buttons=_buttons(params.get("reply_markup")),
                status="delivered",
            )
            return {
                "message_id": record.message_id,
                "date": int(time.time()),
                "chat": {"id": _int(record.address) or 0, "type": "private", "first_name": "Demo"},
                "from": {"id": int(BOT_TOKEN.split(":")[0]), "is_bot": True, "first_name": "Demo"},
                "text": record.text,
            }
        if method in ("editMessageReplyMarkup", "editMessageText"):
            for record in self._find(CHAT, address=str(params.get("chat_id", ""))):
                if record.message_id == _int(params.get("message_id")):
                    with self._lock:
                        record.buttons = _buttons(params.get("reply_markup"))
                        if method == "editMessageText":
                            record.text = str(params.get("text", record.text))
            return True
        if method == "getWebhookInfo":
            return {"url": "", "has_custom_certificate": False, "pending_update_count": 0}
        return True  # answerCallbackQuery, setWebhook, setMyCommands...

    # --- a participant writes -------------------------------------------------------------

    def reply(self, kind: str, address: str, text: str = "", button: str = "") -> list[str]:
        """Deliver what a participant wrote (or the button they pressed) to the service, as
        Twilio or Telegram would; what the service answered at once (a text's TwiML)."""
        if kind == TEXT:
            return self._text_in(address, text)
        if kind == CHAT:
            self._telegram_in(address, text, button)
            return []
        raise StandInError(f"a participant can send a {TEXT} or a {CHAT} message, not {kind!r}")

    def _text_in(self, address: str, text: str) -> list[str]:
        sid = "SM" + uuid.uuid4().hex
        self._keep(kind=TEXT, direction="in", address=address, text=text, sid=sid)
        params = {
            "AccountSid": ACCOUNT_SID,
            "ApiVersion": "2010-04-01",
            "MessageSid": sid,
            "SmsSid": sid,
            "SmsMessageSid": sid,
            "SmsStatus": "received",
            "From": address,
            "To": FROM_NUMBER,
            "Body": text,
            "NumMedia": "0",
            "NumSegments": "1",
            "FromCountry": "GB",
            "ToCountry": "GB",
        }
        answer = _post_signed(f"{self.public_base_url}/webhooks/twilio/sms", params)
        replies = _twiml_messages(answer)
        for said in replies:
            # Twilio sends a TwiML <Message> as a text of its own.
            self._keep(
                kind=TEXT,
                direction="out",
                address=address,
                text=said,
                sid="SM" + uuid.uuid4().hex,
                status="delivered",
            )
        return replies

    def _telegram_in(self, address: str, text: str, button: str) -> None:
        chat_id = _int(address)
        if chat_id is None:
            raise StandInError(f"a Telegram chat id is a number, got {address!r}")
        person = {"id": chat_id, "is_bot": False, "first_name": "Demo", "language_code": "en-GB"}
        chat = {"id": chat_id, "type": "private", "first_name": "Demo"}
        update: dict[str, Any] = {"update_id": next(self._update_ids)}
        if button:
            under = next((r for r in self._find(CHAT, address=address) if r.buttons), None)
            if under is None:
                raise StandInError("there is no message with buttons in that chat")
            label = next(
                (b["label"] for row in under.buttons for b in row if b["data"] == button), button
            )
            self._keep(kind=CHAT, direction="in", address=address, text=f"(tapped) {label}")
            update["callback_query"] = {
                "id": str(uuid.uuid4().int)[:19],
                "from": person,
                "chat_instance": str(chat_id),
                "data": button,
                "message": {
                    "message_id": under.message_id,
                    "from": {
                        "id": int(BOT_TOKEN.split(":")[0]),
                        "is_bot": True,
                        "first_name": "Demo",
                    },
                    "chat": chat,
                    "date": int(time.time()),
                    "text": under.text,
                    "reply_markup": _markup(under.buttons),
                },
            }
        else:
            self._keep(kind=CHAT, direction="in", address=address, text=text)
            message: dict[str, Any] = {
                "message_id": next(self._message_ids),
                "from": person,
                "chat": chat,
                "date": int(time.time()),
                "text": text,
            }
            if text.startswith("/"):
                command = text.split(" ", 1)[0]
                message["entities"] = [{"offset": 0, "length": len(command), "type": "bot_command"}]
            update["message"] = message
        _post(
            f"{self.public_base_url}/webhooks/telegram",
            json.dumps(update).encode(),
            {"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": WEBHOOK_SECRET},
        )


# --- the HTTP side -----------------------------------------------------------------------


def _handler(stand_ins: StandIns) -> type[BaseHTTPRequestHandler]:
    expected_auth = "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the senders' connection pools expect
        disable_nagle_algorithm = True

        def log_message(self, *args: Any) -> None:
            pass  # the paths carry numbers and the bot token

        def _answer(self, status: int, payload: Any) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _twilio_error(self, status: int, code: int, message: str) -> None:
            self._answer(
                status, {"code": code, "message": message, "status": status, "more_info": ""}
            )

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            if parts.path == "/demo/messages":
                self._answer(200, {"messages": [asdict(r) for r in stand_ins.records()]})
                return
            if parts.path.startswith("/bot"):
                self._telegram(parts.path, {})
                return
            if self.headers.get("Authorization") != expected_auth:
                self._twilio_error(401, 20003, "Authenticate")
                return
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            if parts.path.endswith("/Messages.json"):
                self._answer(200, stand_ins.twilio_list(TEXT, query))
            elif parts.path.endswith("/Calls.json"):
                self._answer(200, stand_ins.twilio_list(CALL, query))
            elif "/Messages/" in parts.path or "/Calls/" in parts.path:
                kind = TEXT if "/Messages/" in parts.path else CALL
                sid = parts.path.rsplit("/", 1)[-1].removesuffix(".json")
                found = stand_ins.twilio_fetch(kind, sid)
                if found is None:
                    self._twilio_error(404, 20404, "The requested resource was not found")
                else:
                    self._answer(200, found)
            else:
                self._twilio_error(404, 20404, "The requested resource was not found")

        def do_POST(self) -> None:
            parts = urlsplit(self.path)
            raw = self._body()
            if parts.path == "/demo/reply":
                self._reply(raw)
                return
            if parts.path.startswith("/bot"):
                if self.headers.get("Content-Type", "").startswith("application/json"):
                    params = json.loads(raw or b"{}")
                else:
                    # python-telegram-bot posts a form whose values are JSON-encoded.
                    params = {k: _json_or_text(v[0]) for k, v in parse_qs(raw.decode()).items()}
                self._telegram(parts.path, params)
                return
            if self.headers.get("Authorization") != expected_auth:
                self._twilio_error(401, 20003, "Authenticate")
                return
            form = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
            if parts.path.endswith("/Messages.json"):
                self._answer(201, stand_ins.twilio_message(form))
            elif parts.path.endswith("/Calls.json"):
                self._answer(201, stand_ins.twilio_call(form))
            else:
                self._twilio_error(404, 20404, "The requested resource was not found")

        def do_DELETE(self) -> None:
            # Recordings (erasure): the demo keeps none, so each is already gone.
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _telegram(self, path: str, params: dict[str, Any]) -> None:
            token, _, method = path.removeprefix("/bot").partition("/")
            if token != BOT_TOKEN:
                self._answer(401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
                return
            self._answer(200, {"ok": True, "result": stand_ins.telegram(method, params)})

        def _reply(self, raw: bytes) -> None:
            try:
                asked = json.loads(raw or b"{}")
                replies = stand_ins.reply(
                    str(asked.get("kind", "")),
                    str(asked.get("address", "")),
                    text=str(asked.get("text", "")),
                    button=str(asked.get("button", "")),
                )
            except (StandInError, ValueError) as exc:
                self._answer(400, {"error": str(exc)})
                return
            self._answer(200, {"replies": replies})

    return Handler


def _twilio_message(record: Record, ours: str) -> dict[str, Any]:
    return {
        "sid": record.sid,
        "account_sid": ACCOUNT_SID,
        "to": record.address,
        "from": ours,
        "body": record.text,
        "status": record.status or "queued",
        "direction": "outbound-api",
        "date_created": _rfc2822(record.at),
        "date_sent": None,
        "num_segments": "1",
        "uri": "",
    }


def _twilio_call(record: Record, ours: str) -> dict[str, Any]:
    return {
        "sid": record.sid,
        "account_sid": ACCOUNT_SID,
        "to": record.address,
        "from": ours,
        "status": record.status or "queued",
        "direction": "outbound-api",
        "date_created": _rfc2822(record.at),
        "start_time": None,
        "uri": "",
    }


def _rfc2822(iso: str) -> str:
    return format_datetime(datetime.fromisoformat(iso), usegmt=True)


def _buttons(markup: Any) -> list[list[dict[str, str]]]:
    if isinstance(markup, str):
        markup = _json_or_text(markup)
    if not isinstance(markup, dict):
        return []
    return [
        [{"label": str(b.get("text", "")), "data": str(b.get("callback_data", ""))} for b in row]
        for row in markup.get("inline_keyboard", [])
        if isinstance(row, list)
    ]


def _markup(buttons: list[list[dict[str, str]]]) -> dict[str, Any]:
    return {
        "inline_keyboard": [
            [{"text": b["label"], "callback_data": b["data"]} for b in row] for row in buttons
        ]
    }


def _json_or_text(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


def _int(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except ValueError:
        return None


def _twiml_messages(twiml: str) -> list[str]:
    if not twiml.strip():
        return []
    try:
        root = ET.fromstring(twiml)
    except ET.ParseError:
        return []
    said = []
    for message in root.iter("Message"):
        body = message.find("Body")
        said.append("".join((body if body is not None else message).itertext()).strip())
    return [s for s in said if s]


def _post(url: str, body: bytes, headers: dict[str, str]) -> str:
    try:
        with opener.open(
            urlrequest.Request(url, data=body, headers=headers, method="POST"),
            timeout=TIMEOUT_SECONDS,
        ) as answer:
            return answer.read().decode("utf-8", "replace")
    except HTTPError as exc:
        raise StandInError(f"the service answered {exc.code} at {urlsplit(url).path}") from None
    except (URLError, TimeoutError) as exc:
        raise StandInError(f"could not reach the service at {url}: {exc}") from None


def _post_signed(url: str, params: dict[str, str]) -> str:
    """POST as Twilio does: form-encoded, signed with the auth token over the full URL."""
    signature = RequestValidator(AUTH_TOKEN).compute_signature(url, params)
    return _post(
        url,
        urlencode(params).encode(),
        {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature},
    )
