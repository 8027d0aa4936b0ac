"""gunicorn's access log without personal data: `--logger-class webhooks.access_log.AccessLogger`.

gunicorn logs each request's first line whole, query string included, and the Referer: a
console search (`/console/people?q=Ann+Jones`, a phone number, a name later erased) would stay
in the operator's logs, where erasure cannot reach. Here the request line is the path only,
with a participant key in it (an external id) and any phone number masked; the query string
and the Referer's query are left out; request headers (cookies, the admin token) never enter.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from gunicorn.glogging import Logger

from bot.logmask import mask_phones

# `/admin/api/participants/<key>` and `/console/people/<id>`: the key may be the charity's own
# id for the person, which names them as surely as a number does.
_PARTICIPANT_KEY = re.compile(r"(/participants/)[^/?]+")


def safe_path(path: str) -> str:
    """The path, with a participant key replaced and phone numbers masked."""
    return mask_phones(_PARTICIPANT_KEY.sub(r"\1<key>", path))


class AccessLogger(Logger):
    def atoms(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> dict:
        atoms = super().atoms(resp, req, environ, request_time)
        path = safe_path(environ.get("PATH_INFO", ""))
        method, protocol = environ.get("REQUEST_METHOD", "-"), environ.get("SERVER_PROTOCOL", "-")
        referer = environ.get("HTTP_REFERER")
        atoms.update(
            r=f"{method} {path} {protocol}",
            U=path,
            q="",
            f=safe_path(urlsplit(referer).path) if referer else "-",
        )
        # Request and response headers (`%({cookie}i)s`): none of them, whatever the format.
        return {k: v for k, v in atoms.items() if not k.startswith("{")}
