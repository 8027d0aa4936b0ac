"""What can go wrong when we hand a message to a provider, and what to do about it.

    SendError                  a message could not be handed over
    ├── TemporaryError         try again later, with back-off (timeouts, 429, 5xx, our own
    │                          credentials rejected: an operator can fix those)
    └── PermanentError         never try this message again
        ├── RecipientOptedOut  the person stopped us at the provider: unsubscribed at their
        │                      carrier (Twilio 21610, Twilio's own rule for its STOP words).
        │                      They are opted out, and that contact point is marked so.
        ├── RecipientBlocked   the person blocked us on this channel only (a blocked Telegram
        │                      bot, Telegram 403; WhatsApp's "blocked by user action", Twilio
        │                      63014): that contact point is stopped, the person is not; their
        │                      other contact points still work.
        ├── RecipientUnreachable  this address can never be reached on this channel (an
        │                      invalid number, a landline for texts, a chat that is gone):
        │                      its contact point is marked so; campaigns use their next one.
        ├── OutsideWindow      the provider takes free text only within a reply window
        │                      (WhatsApp's 24 hours since the person last wrote): a channel
        │                      with an approved template sends that instead
        └── ChannelOff         the channel has no credentials configured

Senders raise these; `bot.sending.send` is the one place that decides what each means for the
row (`bot.sending.delivery`, for a failure a status callback reports later). `reason` is a few
words for the contact point and staff, without the address (a provider's own message can
quote it).
"""

from __future__ import annotations


class SendError(Exception):
    def __init__(self, message: str, code: str | None = None):
        super().__init__(message)
        self.code = code

    permanent = False


class TemporaryError(SendError):
    def __init__(self, message: str, code: str | None = None, retry_after: float | None = None):
        super().__init__(message, code)
        self.retry_after = retry_after


class PermanentError(SendError):
    permanent = True


class _AboutTheAddress(PermanentError):
    def __init__(self, message: str, code: str | None = None, reason: str | None = None):
        super().__init__(message, code)
        self.reason = reason or f"{self.said} ({code or 'no code'})"

    said = ""


class RecipientOptedOut(_AboutTheAddress):
    said = "stopped at the provider"


class RecipientBlocked(_AboutTheAddress):
    said = "blocked us on this channel"


class RecipientUnreachable(_AboutTheAddress):
    said = "cannot be reached"


class OutsideWindow(PermanentError):
    pass


class ChannelOff(PermanentError):
    pass
