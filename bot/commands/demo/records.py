"""What the demo's stand-ins kept, as the console and `involve demo text` read it, and how
they ask the stand-ins to deliver what a participant writes (bot/commands/demo/stand_ins.py
serves both, under /demo/ on the stand-ins' own address)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from urllib import request as urlrequest
from urllib.error import HTTPError, URLError

# What the stand-ins carry, in the providers' own terms (channels are the registry's business):
TEXT = "text"  # a Twilio message
CALL = "call"  # a Twilio call
CHAT = "chat"  # a Telegram message
REPLIES_BY = (TEXT, CHAT)  # what a participant can send through the demo

TIMEOUT_SECONDS = 30  # the service's answer to a participant's message, on a busy laptop

# Straight to 127.0.0.1, never through a proxy named in the environment.
opener = urlrequest.build_opener(urlrequest.ProxyHandler({}))


@dataclass
class Record:
    """One message through the stand-ins: `out` from the service, `in` from a participant."""

    n: int
    at: str
    kind: str  # TEXT, CALL or CHAT
    direction: str  # out | in
    address: str  # the participant's number or chat id
    text: str
    sid: str = ""
    status: str = ""
    message_id: int | None = None  # Telegram: for a button pressed under it
    buttons: list[list[dict[str, str]]] = field(default_factory=list)  # label, data


class StandInError(RuntimeError):
    """The stand-ins could not be reached, or refused what was asked."""


def fetch_records(stand_ins_url: str) -> list[Record]:
    try:
        with opener.open(f"{stand_ins_url}/demo/messages", timeout=10) as answer:
            found = json.load(answer)["messages"]
    except (URLError, TimeoutError, ValueError, KeyError) as exc:
        raise StandInError(
            f"the demo's stand-ins at {stand_ins_url} did not answer: {exc}"
        ) from None
    return [Record(**r) for r in found]


def send_reply(
    stand_ins_url: str, kind: str, address: str, text: str = "", button: str = ""
) -> list[str]:
    """Ask the stand-ins to deliver what a participant wrote; what the service answered."""
    body = json.dumps({"kind": kind, "address": address, "text": text, "button": button})
    try:
        with opener.open(
            urlrequest.Request(
                f"{stand_ins_url}/demo/reply",
                data=body.encode(),
                headers={"Content-Type": "application/json"},
                method="POST",
            ),
            timeout=TIMEOUT_SECONDS + 5,
        ) as answer:
            return list(json.load(answer)["replies"])
    except HTTPError as exc:
        try:
            said = json.load(exc)["error"]
        except (ValueError, KeyError):
            said = f"status {exc.code}"
        raise StandInError(said) from None
    except (URLError, TimeoutError) as exc:
        raise StandInError(
            f"the demo's stand-ins at {stand_ins_url} did not answer: {exc}"
        ) from None
