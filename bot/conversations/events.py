"""What happens in a conversation that other parts of the service act on.

The conversation code sends these and knows nobody who listens: campaigns subscribe to a
survey's end (to invite someone waiting for it), without conversations importing campaigns.
Receivers run inside the sender's unit of work, so what they write commits with it.
"""

from __future__ import annotations

from blinker import Namespace

_signals = Namespace()

# sender: the survey id; keyword arguments: session, participant_id, settings
survey_ended = _signals.signal("survey-ended")
