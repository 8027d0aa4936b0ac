"""Local stand-ins for the network edge, and webhooks sent the way Twilio sends them.

`FakeTwilio` is a small HTTP server on 127.0.0.1 that answers Twilio's Messages API the way
Twilio does (201 with a JSON message, error JSON with a code, a message list), and its Content
API (content made with `POST /v1/Content`, found by name with `GET /v2/Content`), and records
every request it receives. Tests script its next answers (a content's creation takes its turn
among the messages').
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from twilio.request_validator import RequestValidator

ACCOUNT_SID = "AC" + "0" * 32
AUTH_TOKEN = "test-auth-token-1234567890abcdef"
FROM_NUMBER = "+441234567890"


@dataclass
class Scripted:
    status: int = 201
    code: int | None = None
    message: str = ""
    # Answer only once this is set: a Twilio that answers after the client has given up, however
    # slowly the client's own thread runs (a fixed delay raced the client's timeout under load).
    hold: threading.Event | None = None
    record: bool = True  # whether Twilio "has" the message afterwards
    # Run once the request is recorded and before any answer: a test kills the caller here,
    # so "killed mid-call" never hangs on how soon the test's own thread is scheduled again.
    on_receive: Callable[[], None] | None = None

    def answer_when_released(self) -> None:
        if self.hold is not None:
            self.hold.wait()

    def received(self, fake: FakeTwilio) -> None:
        if self.on_receive is not None:
            self.on_receive()
        fake.received.set()


@dataclass
class FakeTwilio:
    requests: list[dict[str, Any]] = field(default_factory=list)
    created: list[dict[str, Any]] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)  # calls placed (Calls.json)
    contents: list[dict[str, Any]] = field(default_factory=list)  # content made (/v1/Content)
    script: deque[Scripted] = field(default_factory=deque)
    received: threading.Event = field(default_factory=threading.Event)

    def start(self) -> FakeTwilio:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            # Keep-alive, as Twilio's API offers; without TCP_NODELAY the header and body
            # writes wait on delayed ACKs (40 ms a request).
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, status: int, payload: dict[str, Any]) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length).decode()
                if urlparse(self.path).path == "/v1/Content":
                    self._content(raw)
                    return
                form = {k: v[0] for k, v in parse_qs(raw).items()}
                fake.requests.append(
                    {
                        "method": "POST",
                        "path": self.path,
                        "form": form,
                        "auth": self.headers.get("Authorization"),
                        "at": time.monotonic(),
                    }
                )
                if "/IncomingPhoneNumbers/" in self.path:
                    self._reply(200, {**fake.number(), **{_snake(k): v for k, v in form.items()}})
                    return
                step = fake.script.popleft() if fake.script else Scripted()
                if step.status >= 300:
                    step.received(fake)
                    step.answer_when_released()
                    self._reply(
                        step.status,
                        {
                            "code": step.code,
                            "message": step.message or "error",
                            "status": step.status,
                            "more_info": "",
                        },
                    )
                    return
                if self.path.split("?")[0].endswith("/Calls.json"):
                    call = {
                        "sid": "CA" + uuid.uuid4().hex,
                        "account_sid": ACCOUNT_SID,
                        "to": form.get("To"),
                        "from": form.get("From"),
                        "status": "queued",
                        "direction": "outbound-api",
                        "date_created": format_datetime(_now(), usegmt=True),
                        "start_time": None,
                        "uri": "",
                        # What Twilio keeps of the request, for tests to follow.
                        "url": form.get("Url"),
                        "status_callback": form.get("StatusCallback"),
                        "machine_detection": form.get("MachineDetection"),
                    }
                    if step.record:
                        fake.calls.append(call)
                    step.received(fake)
                    step.answer_when_released()
                    self._reply(201, call)
                    return
                message = {
                    "sid": "SM" + uuid.uuid4().hex,
                    "account_sid": ACCOUNT_SID,
                    "to": form.get("To"),
                    "from": form.get("From"),
                    "body": form.get("Body"),
                    "status": "queued",
                    "status_callback": form.get("StatusCallback"),
                    "date_created": format_datetime(_now(), usegmt=True),
                    "date_sent": None,
                    "num_segments": "1",
                    "direction": "outbound-api",
                    "uri": "",
                }
                if step.record:
                    fake.created.append(message)  # Twilio has it, whether or not we hear back
                step.received(fake)
                step.answer_when_released()
                self._reply(201, message)

            def _content(self, raw: str) -> None:
                """The Content API's create: JSON in, the content with its new SID out."""
                made = json.loads(raw)
                fake.requests.append({"method": "POST", "path": self.path, "json": made})
                step = fake.script.popleft() if fake.script else Scripted()
                step.received(fake)
                step.answer_when_released()
                if step.status >= 300:
                    error = {"code": step.code, "message": step.message or "error"}
                    self._reply(step.status, {**error, "status": step.status, "more_info": ""})
                    return
                now = format_datetime(_now(), usegmt=True)
                found = {
                    **made,
                    "sid": "HX" + uuid.uuid4().hex,
                    "account_sid": ACCOUNT_SID,
                    "date_created": now,
                    "date_updated": now,
                    "url": "",
                    "links": {},
                }
                fake.contents.append(found)
                self._reply(201, found)

            @staticmethod
            def _page(key: str, items: list[Any], path: str) -> dict[str, Any]:
                return {
                    key: items,
                    "next_page_uri": None,
                    "page": 0,
                    "page_size": 50,
                    "uri": path,
                    "first_page_uri": path,
                    "previous_page_uri": None,
                    "start": 0,
                    "end": len(items),
                }

            def do_DELETE(self) -> None:
                # Recordings (erasure): gone is gone, so every delete is a 204.
                fake.requests.append({"method": "DELETE", "path": self.path, "query": {}})
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self) -> None:
                url = urlparse(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                fake.requests.append({"method": "GET", "path": self.path, "query": query})
                if url.path == "/v2/Content":
                    named = query.get("ContentName", "")
                    found = [c for c in fake.contents if re.search(named, c["friendly_name"])]
                    meta = {"key": "contents", "next_page_url": None, "previous_page_url": None}
                    self._reply(200, {"contents": found, "meta": {**meta, "page_size": 50}})
                    return
                if url.path.endswith("/IncomingPhoneNumbers.json"):
                    found = [fake.number()] if query.get("PhoneNumber") == FROM_NUMBER else []
                    self._reply(200, self._page("incoming_phone_numbers", found, url.path))
                    return
                if url.path.endswith("/Calls.json"):
                    placed = [
                        c
                        for c in reversed(fake.calls)
                        if c["to"] == query.get("To", c["to"])
                        and c["from"] == query.get("From", c["from"])
                    ]
                    self._reply(200, self._page("calls", placed, url.path))
                    return
                found = [
                    m
                    for m in reversed(fake.created)
                    if m["to"] == query.get("To", m["to"])
                    and m["from"] == query.get("From", m["from"])
                ]
                self._reply(
                    200,
                    {
                        "messages": found,
                        "next_page_uri": None,
                        "page": 0,
                        "page_size": 50,
                        "uri": url.path,
                        "first_page_uri": url.path,
                        "previous_page_uri": None,
                        "start": 0,
                        "end": len(found),
                    },
                )

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        # A client that went away mid-answer (a killed worker) is expected here, not news.
        self.server.handle_error = lambda request, address: None  # type: ignore[method-assign]
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def number(self) -> dict[str, Any]:
        """The account's one phone number, as IncomingPhoneNumbers describes it."""
        return {
            "sid": "PN" + "1" * 32,
            "account_sid": ACCOUNT_SID,
            "phone_number": FROM_NUMBER,
            "sms_url": "",
            "sms_method": "POST",
        }

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def sends(self) -> list[dict[str, str]]:
        """What was posted to the Messages, Calls and number APIs (content made is in
        `contents`)."""
        return [r["form"] for r in self.requests if r["method"] == "POST" and "form" in r]


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


def _now():
    from datetime import UTC, datetime

    return datetime.now(UTC)


def sms_params(
    body: str, sid: str | None = None, sender: str = "+447700900123", to: str = FROM_NUMBER
) -> dict[str, str]:
    """Every parameter Twilio Messaging posts for an inbound text."""
    sid = sid or "SM" + uuid.uuid4().hex
    return {
        "ToCountry": "GB",
        "ToState": "",
        "SmsMessageSid": sid,
        "NumMedia": "0",
        "ToCity": "",
        "FromZip": "",
        "SmsSid": sid,
        "FromState": "",
        "SmsStatus": "received",
        "FromCity": "",
        "Body": body,
        "FromCountry": "GB",
        "To": to,
        "MessagingServiceSid": "",
        "ToZip": "",
        "NumSegments": "1",
        "MessageSid": sid,
        "AccountSid": ACCOUNT_SID,
        "From": sender,
        "ApiVersion": "2010-04-01",
    }


def status_params(
    message_sid: str, status: str, error_code: str | None = None, to: str = "+447700900123"
) -> dict[str, str]:
    params = {
        "AccountSid": ACCOUNT_SID,
        "From": FROM_NUMBER,
        "ApiVersion": "2010-04-01",
        "MessageSid": message_sid,
        "MessageStatus": status,
        "SmsSid": message_sid,
        "SmsStatus": status,
        "To": to,
    }
    if error_code:
        params["ErrorCode"] = error_code
    return params


def call_params(
    call_sid: str,
    number: str = "+447700900123",
    direction: str = "inbound",
    status: str = "in-progress",
    **extra: str,
) -> dict[str, str]:
    """Every parameter Twilio Voice posts on a call's webhook: the caller is From on a call to
    us, To on a call we placed."""
    ours, theirs = FROM_NUMBER, number
    params = {
        "AccountSid": ACCOUNT_SID,
        "ApiVersion": "2010-04-01",
        "CallSid": call_sid,
        "CallStatus": status,
        "Direction": direction,
        "From": theirs if direction == "inbound" else ours,
        "To": ours if direction == "inbound" else theirs,
        "Caller": theirs if direction == "inbound" else ours,
        "Called": ours if direction == "inbound" else theirs,
        "FromCountry": "GB",
        "ToCountry": "GB",
    }
    params.update(extra)
    return params


def call_status_params(call_sid: str, status: str, **extra: str) -> dict[str, str]:
    params = {
        "AccountSid": ACCOUNT_SID,
        "ApiVersion": "2010-04-01",
        "CallSid": call_sid,
        "CallStatus": status,
        "Direction": "outbound-api",
        "From": FROM_NUMBER,
        "To": "+447700900123",
    }
    params.update(extra)
    return params


def sign(url: str, params: dict[str, str], token: str = AUTH_TOKEN) -> str:
    return RequestValidator(token).compute_signature(url, params)


def post_twilio(
    client: Any,
    base_url: str,
    path: str,
    params: dict[str, str],
    token: str = AUTH_TOKEN,
    signature: str | None = None,
):
    """POST as Twilio does: form-encoded, signed over the public URL (path and query included)."""
    headers = {
        "X-Twilio-Signature": signature
        if signature is not None
        else sign(base_url + path, params, token)
    }
    return client.post(path, data=params, headers=headers)


# --- Telegram ------------------------------------------------------------------------------

BOT_TOKEN = "123456789:TEST-bot-token-abcdefghijklmnopqrstuv"
BOT_USERNAME = "InvolveTestBot"
WEBHOOK_SECRET = "test-webhook-secret-0123456789"


@dataclass
class BotApiAnswer:
    """A scripted Bot API failure: the status and Telegram's own description."""

    status: int
    description: str
    retry_after: int | None = None


BLOCKED = BotApiAnswer(403, "Forbidden: bot was blocked by the user")
CHAT_NOT_FOUND = BotApiAnswer(400, "Bad Request: chat not found")


def flood(seconds: int) -> BotApiAnswer:
    return BotApiAnswer(429, f"Too Many Requests: retry after {seconds}", seconds)


@dataclass
class FakeTelegram:
    """Telegram's Bot API on 127.0.0.1: answers as Telegram does and records every call.

    Scripted answers (`script`) apply, in order, to calls of the methods in `scripted_methods`
    (sendMessage by default), so a test can make one send fail without touching the rest.
    """

    calls: list[dict[str, Any]] = field(default_factory=list)
    script: deque[BotApiAnswer] = field(default_factory=deque)
    scripted_methods: tuple[str, ...] = ("sendMessage",)
    next_message_id: int = 1000

    def start(self) -> FakeTelegram:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, status: int, payload: dict[str, Any]) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length).decode()
                token, _, method = self.path.lstrip("/").removeprefix("bot").partition("/")
                if self.headers.get("Content-Type", "").startswith("application/json"):
                    params = json.loads(raw or "{}")
                else:
                    # python-telegram-bot posts a form whose values are JSON-encoded.
                    params = {k: _json_or_text(v[0]) for k, v in parse_qs(raw).items()}
                fake.calls.append({"method": method, "token": token, "params": params})
                if token != BOT_TOKEN:
                    self._reply(
                        401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
                    )
                    return
                if method in fake.scripted_methods and fake.script:
                    step = fake.script.popleft()
                    error: dict[str, Any] = {
                        "ok": False,
                        "error_code": step.status,
                        "description": step.description,
                    }
                    if step.retry_after is not None:
                        error["parameters"] = {"retry_after": step.retry_after}
                    self._reply(step.status, error)
                    return
                self._reply(200, {"ok": True, "result": fake.result(method, params)})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.handle_error = lambda request, address: None  # type: ignore[method-assign]
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()
        return self

    def result(self, method: str, params: dict[str, Any]) -> Any:
        if method == "getMe":
            return {
                "id": int(BOT_TOKEN.split(":")[0]),
                "is_bot": True,
                "first_name": "Involve",
                "username": BOT_USERNAME,
            }
        if method == "sendMessage":
            self.next_message_id += 1
            message = {
                "message_id": self.next_message_id,
                "date": int(time.time()),
                "chat": {"id": int(params["chat_id"]), "type": "private", "first_name": "Ann"},
                "from": {
                    "id": int(BOT_TOKEN.split(":")[0]),
                    "is_bot": True,
                    "first_name": "Involve",
                },
                "text": params.get("text", ""),
            }
            if params.get("reply_markup"):
                message["reply_markup"] = params["reply_markup"]
            return message
        return True  # setWebhook, answerCallbackQuery, editMessageReplyMarkup...

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def of(self, method: str) -> list[dict[str, Any]]:
        return [c["params"] for c in self.calls if c["method"] == method]

    def sent(self) -> list[dict[str, Any]]:
        return self.of("sendMessage")


def _json_or_text(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


_update_ids = iter(range(500_000, 10**9))


def next_update_id() -> int:
    return next(_update_ids)


def _user(chat_id: int) -> dict[str, Any]:
    return {"id": chat_id, "is_bot": False, "first_name": "Ann", "language_code": "en-GB"}


def _chat(chat_id: int, kind: str = "private") -> dict[str, Any]:
    if kind == "private":
        return {"id": chat_id, "type": "private", "first_name": "Ann"}
    return {"id": chat_id, "type": kind, "title": "Readers' panel"}


def message_update(
    chat_id: int, text: str, update_id: int | None = None, chat_type: str = "private"
) -> dict[str, Any]:
    """A text message as Telegram sends it; a leading /command carries its bot_command entity."""
    message: dict[str, Any] = {
        "message_id": next_update_id() % 100_000,
        "from": _user(chat_id if chat_type == "private" else 4242),
        "chat": _chat(chat_id, chat_type),
        "date": int(time.time()),
        "text": text,
    }
    if text.startswith("/"):
        message["entities"] = [
            {"offset": 0, "length": len(text.split(" ", 1)[0]), "type": "bot_command"}
        ]
    return {"update_id": update_id or next_update_id(), "message": message}


def callback_update(
    chat_id: int, sent: dict[str, Any], data: str, message_id: int, update_id: int | None = None
) -> dict[str, Any]:
    """A button pressed on a message we sent (`sent`: the sendMessage call's parameters)."""
    message: dict[str, Any] = {
        "message_id": message_id,
        "from": {"id": int(BOT_TOKEN.split(":")[0]), "is_bot": True, "first_name": "Involve"},
        "chat": _chat(chat_id),
        "date": int(time.time()),
        "text": sent.get("text", ""),
    }
    if sent.get("reply_markup"):
        message["reply_markup"] = sent["reply_markup"]
    return {
        "update_id": update_id or next_update_id(),
        "callback_query": {
            "id": str(uuid.uuid4().int)[:19],
            "from": _user(chat_id),
            "message": message,
            "chat_instance": str(-uuid.uuid4().int % 10**19),
            "data": data,
        },
    }


def edited_message_update(chat_id: int, text: str) -> dict[str, Any]:
    update = message_update(chat_id, text)
    update["edited_message"] = {**update.pop("message"), "edit_date": int(time.time())}
    return update


def sticker_update(chat_id: int) -> dict[str, Any]:
    update = message_update(chat_id, "x")
    del update["message"]["text"]
    update["message"]["sticker"] = {
        "file_id": "CAACAgIAAxkBAAEB",
        "file_unique_id": "AgADAQAD",
        "type": "regular",
        "width": 512,
        "height": 512,
        "is_animated": False,
        "is_video": False,
    }
    return update


def channel_post_update(chat_id: int, text: str) -> dict[str, Any]:
    return {
        "update_id": next_update_id(),
        "channel_post": {
            "message_id": 7,
            "chat": {"id": chat_id, "type": "channel", "title": "News"},
            "date": int(time.time()),
            "text": text,
        },
    }


def my_chat_member_update(chat_id: int, status: str, was: str) -> dict[str, Any]:
    """The bot's own membership of a private chat changed, as Telegram sends it (Bot API
    `ChatMemberUpdated`): the person blocked the bot ("kicked") or unblocked it ("member")."""
    bot = {
        "id": int(BOT_TOKEN.split(":")[0]),
        "is_bot": True,
        "first_name": "Involve",
        "username": "InvolveTestBot",
    }

    def member(state: str) -> dict[str, Any]:
        # A banned ("kicked") member always carries until_date; 0 is for ever.
        return {"user": bot, "status": state, **({"until_date": 0} if state == "kicked" else {})}

    return {
        "update_id": next_update_id(),
        "my_chat_member": {
            "chat": _chat(chat_id),
            "from": _user(chat_id),
            "date": int(time.time()),
            "old_chat_member": member(was),
            "new_chat_member": member(status),
        },
    }


def post_telegram(client: Any, update: dict[str, Any], secret: str | None = WEBHOOK_SECRET):
    headers = {} if secret is None else {"X-Telegram-Bot-Api-Secret-Token": secret}
    return client.post("/webhooks/telegram", json=update, headers=headers)
