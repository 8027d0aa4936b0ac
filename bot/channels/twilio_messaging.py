"""What the channels people write to through Twilio Messaging share (texts, WhatsApp): Twilio
posts each message, signed, to `/webhooks/twilio/<channel name>` (one endpoint,
`webhooks.twilio_messaging`, serves every channel that lists it), the form is read the same
way, and the words are plain text, answers numbered (`bot.channels.plain_text`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from bot.channels import plain_text
from bot.channels.base import Channel, InvalidAddress
from bot.engine import Inbound, Prompt
from bot.engine.keywords import ProviderKeyword
from bot.text import clean_text

MAX_SID = 64  # Twilio's are 34 characters; anything far longer is not from Twilio
ENDPOINT = "webhooks.twilio_messaging:bp"


class TwilioMessagingChannel(Channel):
    """A channel whose inbound messages are Twilio Messaging webhooks, answered inline."""

    webhooks = (ENDPOINT,)
    simulate_label = "text"  # how the terminal simulator marks one of its messages

    def webhook_path(self) -> str:
        """Where Twilio posts what people send on this channel (under PUBLIC_BASE_URL)."""
        return f"/webhooks/twilio/{self.name}"

    def read_address(self, sender: str) -> str:
        """The stored form of Twilio's `From`; one this channel cannot normalise (a short
        code, an alphanumeric sender) is kept as it came."""
        try:
            return self.normalise(sender)
        except InvalidAddress:
            return sender

    def read_request(self, form: Mapping[str, str]) -> tuple[str, str, str] | str:
        """(message sid, sender's address, body) from Twilio's form, or what is wrong with it."""
        sid = form.get("MessageSid") or form.get("SmsSid") or ""
        sender = clean_text(form.get("From", "")).strip()
        if not sid or not sender:
            return "MessageSid and From are required"
        if len(sid) > MAX_SID or len(sender) > 64:
            return "MessageSid or From is too long"
        return clean_text(sid), self.read_address(sender), clean_text(form.get("Body", ""))

    def read_inbound(self, form: Mapping[str, str], body: str) -> Inbound | ProviderKeyword:
        """What the message says, and whether Twilio already took it as a keyword: with
        Advanced Opt-Out it sends `OptOutType` (STOP, START or HELP) for its own words,
        which may be any a Messaging Service is set up with. Passed on as it came; the writer
        decides what it means for the person."""
        # Asked with `in` first: most messages have no OptOutType, and werkzeug's form answers
        # `get` of a missing key by raising (and catching) an HTTP exception it builds.
        opt_out_type = form.get("OptOutType") if "OptOutType" in form else None
        return ProviderKeyword.read(opt_out_type, body) or self.parse_stored(body)

    def fits(self, text: str) -> bool:
        """Whether one message may carry this much (a text: two SMS segments); a step that
        does not fit goes as several, each part whole."""
        return plain_text.fits_two_segments(text)

    def cost(self, text: str) -> int:
        """What one message costs, as its channel bills it: a text its SMS segments, a
        message of a channel that counts none just one."""
        return plain_text.segments(text) if self.segment_counted else 1

    def render_body(self, prompts: Iterable[Prompt], org: str) -> str:
        return "\n\n".join(plain_text.render(prompts, self.fits, self.cost))

    def render_replies(self, prompts: Iterable[Prompt], org: str) -> list[str]:
        return plain_text.render(prompts, self.fits, self.cost)

    def parse_stored(self, body: str) -> Inbound:
        return plain_text.parse(body)

    def simulate_show(self, prompts: Sequence[Prompt], org: str) -> list[str]:
        mark = f"[{self.simulate_label}] "
        return [
            f"{mark}{line}" if i == 0 else f"{' ' * len(mark)}{line}"
            for text in plain_text.render(prompts, self.fits, self.cost)
            for i, line in enumerate(text.splitlines())
        ]
