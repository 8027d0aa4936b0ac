"""Local stand-ins for the network edge, and webhooks sent the way Twilio sends them.

`FakeTwilio` is a small HTTP server on 127.0.0.1 that answers Twilio's Messages API the way
Twilio does (201 with a JSON message, error JSON with a code, a message list) and records
every request it receives. Tests script its next answers.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import deque
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
    delay: float = 0.0  # seconds to wait before answering (a slow or hanging Twilio)
    record: bool = True  # whether Twilio "has" the message afterwards


@dataclass
class FakeTwilio:
    requests: list[dict[str, Any]] = field(default_factory=list)
    created: list[dict[str, Any]] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)  # calls placed (Calls.json)
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
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                fake.requests.append(
                    {
                        "method": "POST",
                        "path": self.path,
                        "form": form,
                        "auth": self.headers.get("Authorization"),
                        "at": time.monotonic(),
                    }
                )
                step = fake.script.popleft() if fake.script else Scripted()
                if step.status >= 300:
                    fake.received.set()
                    if step.delay:
                        time.sleep(step.delay)
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
                    fake.received.set()
                    if step.delay:
                        time.sleep(step.delay)
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
                fake.received.set()
                if step.delay:
                    time.sleep(step.delay)
                self._reply(201, message)

            def do_GET(self) -> None:
                url = urlparse(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                fake.requests.append({"method": "GET", "path": self.path, "query": query})
                if url.path.endswith("/Calls.json"):
                    placed = [
                        c
                        for c in reversed(fake.calls)
                        if c["to"] == query.get("To", c["to"])
                        and c["from"] == query.get("From", c["from"])
                    ]
                    self._reply(
                        200,
                        {
                            "calls": placed,
                            "next_page_uri": None,
                            "page": 0,
                            "page_size": 50,
                            "uri": url.path,
                            "start": 0,
                            "end": len(placed),
                        },
                    )
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

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def sends(self) -> list[dict[str, str]]:
        return [r["form"] for r in self.requests if r["method"] == "POST"]


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
