"""What WhatsApp's 24-hour window means for the core's questions before a send and before a
launch (`Channel.replaces_body`, `Channel.launch_problem`), judged by the sender's own rule
(`sender.in_window`): contact we start outside the window goes as an approved template,
which names the survey but asks nothing, and without one it cannot go at all."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from bot.channels.base import Channel, Outgoing
from bot.channels.whatsapp.settings import TEMPLATE_KINDS, WhatsAppSettings
from bot.config import Settings


class TemplateWindow(Channel):
    """The window's hooks, for `WhatsAppChannel`."""

    def replaces_body(self, message: Outgoing, settings: Settings, now: datetime) -> bool:
        # Here: the sender's module loads the provider's client library, which only sending needs.
        from bot.channels.whatsapp.sender import in_window

        if in_window(message.last_inbound_at, now) or message.kind not in TEMPLATE_KINDS:
            return False
        # Outside the window it goes as its template; with none named it fails, unseen.
        return bool(self._template(message.options, settings, message.kind))

    def _template(self, options: Mapping[str, object], settings: Settings, kind: str) -> object:
        """The Content SID the sender would use for this kind: the survey's, else the setting's."""
        own = self.own_settings(settings)
        return options.get(kind) or (
            own.templates.get(kind) if isinstance(own, WhatsAppSettings) else None
        )

    def launch_problem(
        self,
        options: Mapping[str, object],
        settings: Settings,
        last_wrote: Sequence[datetime | None],
        at: datetime,
    ) -> str | None:
        # Here: the sender's module loads the provider's client library, which only sending needs.
        from bot.channels.whatsapp.sender import in_window

        if self._template(options, settings, "invitation"):
            return None
        # Inside the window the invitation goes as free text and needs no template: refused
        # only where someone would be outside it when invited.
        outside = sum(1 for wrote in last_wrote if not in_window(wrote, at))
        if not outside:
            return None
        return (
            "no approved invitation template: set channels.whatsapp.invitation in the script "
            f"or WHATSAPP_INVITATION_TEMPLATE ({outside} of the {len(last_wrote)} to invite "
            "have not written to us on WhatsApp within 24 hours, and outside that window it "
            "takes only an approved template)"
        )
