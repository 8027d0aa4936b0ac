"""What can go wrong when we hand a message to a provider, and what to do about it.

    SendError                  a message could not be handed over
    ├── TemporaryError         try again later, with back-off (timeouts, 429, 5xx, our own
    │                          credentials rejected: an operator can fix those)
    └── PermanentError         never try this message again (bad or unreachable number)
        ├── RecipientOptedOut  the person unsubscribed at their carrier (Twilio 21610)
        └── ChannelOff         the channel has no credentials configured

Senders raise these; `bot.sending.send` is the one place that decides what each means for the row.
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


class RecipientOptedOut(PermanentError):
    pass


class ChannelOff(PermanentError):
    pass
