"""Channels render the engine's prompts and parse what people send; they own no flow.

`sms`, `voice` and `telegram` each expose `render(prompts, ...)` and `parse(...) -> Inbound`.
"""

from __future__ import annotations

CHANNELS = ("sms", "voice", "telegram")
