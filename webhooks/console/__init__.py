"""/console/: the staff console, server-rendered pages that work without JavaScript.

Every page but sign-in needs a signed-in staff member; every form carries a CSRF token
(Flask-WTF's CSRFProtect: a well-tested token tied to the session, checked here for the
console only). Sign-in, sign-out, the read-only pages and the simulator (which writes only its own simulator
people's conversations) are here; the pages that change data through a staff verb are in
`actions`, on top of bot/cycle/services.py.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.routing import IntegerConverter, Map
from werkzeug.wrappers import Response

from bot import channels
from bot.commands import runtime
from bot.config import Settings
from bot.cycle import exports, fallback, frequency, lint, services, staff
from bot.cycle.unsuited import Unsuited
from bot.privacy import audit, contact_state
from bot.scripts.survey import SurveyError
from bot.storage.models import MAX_ID, Campaign
from bot.text import clean_text
from webhooks.console import auth, queries, simulator

bp = Blueprint(
    "console",
    __name__,
    url_prefix="/console",
    template_folder="templates",
    static_folder="static",
)
csrf = CSRFProtect()
OPEN = ("console.sign_in", "console.static")
# Views whose form carries a file (a panel's CSV): their body is limited only after sign-in,
# by the app's MAX_CONTENT_LENGTH and the view's own size check.
UPLOADS = ("console.import_people",)
# Every other console form (sign-in, a feedback template, an erasure) fits in far less.
FORM_BYTES = 64 * 1024
FORM_FIELDS = 100


class RowId(IntegerConverter):
    """`<int:...>` in console URLs: a row id, so nothing past the largest one a database
    column holds (PostgreSQL and SQLite refuse 2**63 with an error, not "no such row")."""

    def __init__(self, url_map: Map, *args: Any, **kwargs: Any) -> None:
        super().__init__(url_map, *args, **{"min": 1, **kwargs, "max": MAX_ID - 1})


def init_app(app: Flask, settings: Settings) -> None:
    auth.configure(app, settings)
    app.url_map.converters["int"] = RowId
    csrf.init_app(app)
    app.register_blueprint(bp)


def _settings() -> Settings:
    return current_app.extensions["involve.settings"]


def _client() -> str:
    return request.remote_addr or "unknown"


@bp.before_request
def _guard() -> Response | None:
    posted = request.method not in ("GET", "HEAD", "OPTIONS")
    if posted and request.endpoint not in UPLOADS:
        # Before the CSRF check parses the form: a stranger's 8 MB `a&a&a...` costs nothing.
        _limit_form()
    if request.endpoint not in OPEN:
        # The session cookie alone says who this is: no body is read for it.
        with runtime.database().session() as db:
            account = auth.current(db)
            if account is not None:
                g.staff_id, g.staff_email = account.id, account.email
        if account is None:
            if "staff_id" in session and auth.outlived():
                session.clear()
                flash(
                    f"For safety, a sign-in lasts {auth.SESSION_MAX_HOURS} hours at most. "
                    "Please sign in again.",
                    "info",
                )
            session.pop("staff_id", None)
            return redirect(url_for("console.sign_in", next=request.full_path.rstrip("?")))
    if posted:
        # An upload's body (a panel's CSV, up to the app's limit) is read only for staff.
        csrf.protect()  # raises CSRFError, answered below
    return None


def _limit_form() -> None:
    """413 for a console form over FORM_BYTES or FORM_FIELDS, before it is parsed.

    The length is checked from the header where there is one; a body without one (chunked) is
    cut off at the limit as it is read. Fields are counted in the raw bytes, which costs
    microseconds, where parsing 30,000 of them would cost a second of CPU.
    """
    request.max_content_length = FORM_BYTES
    if request.content_length is not None and request.content_length > FORM_BYTES:
        abort(413)
    if request.mimetype == "multipart/form-data":
        request.max_form_parts = FORM_FIELDS
        return
    body = request.get_data(cache=True)  # kept: the form is parsed from this copy
    if body.count(b"&") + body.count(b";") >= FORM_FIELDS:
        abort(413)


@bp.after_request
def _headers(response: Response) -> Response:
    # Pages hold personal data: not cached anywhere, not framed, no outside scripts.
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    )
    return response


@bp.errorhandler(CSRFError)
def _csrf_error(exc: CSRFError) -> tuple[str, int]:
    return (
        render_template(
            "console/problem.html",
            title="This form could not be sent",
            message="The page was open too long, or the form did not come from this console. "
            "Go back, reload the page and try again.",
        ),
        400,
    )


@bp.app_template_filter("when")
def _when(moment: datetime | None) -> str:
    if moment is None:
        return ""
    local = moment.astimezone(_settings().timezone)
    return f"{local:%d %b %Y, %H:%M}"


@bp.app_template_filter("contact_state")
def _contact_state(point: Any) -> str:
    """ "stopped on Telegram: bot blocked (Telegram 403)", as subject access says it."""
    return contact_state(point)


@bp.app_context_processor
def _context() -> dict[str, Any]:
    return {
        "staff_email": g.get("staff_email"),
        "org_name": _settings().org_name,
        "channel_titles": {c.name: c.title for c in channels.all_channels()},
        "contact_fields": channels.CONTACT_FIELDS,  # a panel file's address columns
        "demo": _settings().demo,  # `involve serve --demo`: a banner on every page
    }


def _safe_next(target: str | None) -> str:
    """Only a path inside the console: never another site (an open redirect)."""
    if not target:
        return url_for("console.home")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/console/"):
        return url_for("console.home")
    if target.startswith("//") or "\\" in target:
        return url_for("console.home")
    return target


# --- signing in and out ------------------------------------------------------------------


@bp.route("/sign-in", methods=["GET", "POST"])
def sign_in() -> Any:
    next_url = _safe_next(request.values.get("next"))
    if request.method == "GET":
        return render_template("console/sign_in.html", next_url=next_url, email="")
    email = request.form.get("email", "")[:254]
    password = request.form.get("password", "")
    limits = (
        int(current_app.config.get("CONSOLE_SIGNIN_LIMIT_EMAIL", auth.FAILED_PER_EMAIL)),
        int(current_app.config.get("CONSOLE_SIGNIN_LIMIT_CLIENT", auth.FAILED_PER_CLIENT)),
    )
    # Counted before the password is checked, so a blocked guesser cannot tell a right guess
    # from a wrong one, and tries sent at once meet the limit as tries in a row do.
    tried = auth.attempt(email, _client(), limits)
    wait = tried.wait
    with runtime.database().session() as db:
        account = None if wait is not None else staff.authenticate(db, email, password)
        refused = account is None
        if account is not None:
            audit.record(db, audit.staff_actor(account.email), "sign_in", "console")
            auth.sign_in(account)
        elif tried.noteworthy:
            # Only the first refusal in a window, and the first blocked one: a guesser's
            # thousand tries are counted in Redis, not written a thousand times here.
            known = staff.find(db, email) if email.strip() else None
            actor = audit.staff_actor(known.email) if known else "console:unknown"
            reason = "too many attempts" if wait is not None else "wrong details"
            audit.record(db, actor, "sign_in_refused", "console", reason=reason)
    if wait is not None:
        minutes = max(1, -(-wait // 60))
        flash(f"Too many tries to sign in. Please wait {minutes} minutes, then try again.", "error")
        return render_template("console/sign_in.html", next_url=next_url, email=email), 429
    if refused:
        flash("That email and password do not match an account. Please try again.", "error")
        return render_template("console/sign_in.html", next_url=next_url, email=email), 401
    auth.succeeded(email, _client())
    return redirect(next_url)


@bp.post("/sign-out")
def sign_out() -> Response:
    with runtime.database().session() as db:
        account = auth.current(db)
        if account is not None:
            # Every copy of this staff member's session cookie stops working now.
            account.session_epoch += 1
            audit.record(db, audit.staff_actor(account.email), "sign_out", "console")
    session.clear()
    flash("You have signed out.", "info")
    return redirect(url_for("console.sign_in"))


# --- read-only pages ---------------------------------------------------------------------


@bp.get("/")
def home() -> str:
    library = runtime.library()
    with runtime.database().read() as db:
        rows = queries.campaigns(db, limit=20)
        size = queries.panel_size(db)
    return render_template(
        "console/home.html",
        campaigns=rows,
        size=size,
        surveys=len(library.surveys()),
        broken=sorted(library.broken),
        now=datetime.now(UTC),
    )


def _lint_reports() -> list[dict[str, Any]]:
    folder = _settings().conversations_dir
    paths = sorted(folder.glob("*.y*ml"))
    reports = []
    for report in lint.lint_paths(paths):
        name = report.path.rsplit("/", 1)[-1]
        strip = (report.path + ": ", name + ": ")

        def plain(line: str, strip: tuple[str, ...] = strip) -> str:
            for prefix in strip:
                line = line.removeprefix(prefix)
            return line

        reports.append(
            {
                "file": name,
                "survey": report.survey,
                "feedback": ".feedback." in name,
                "errors": [plain(line) for line in report.errors],
                "warnings": [plain(line) for line in report.warnings],
            }
        )
    return reports


@bp.get("/surveys")
def surveys() -> str:
    library = runtime.library()
    return render_template(
        "console/surveys.html",
        reports=_lint_reports(),
        loaded=library.surveys(),
        clashes=[p for p in library.check() if not any(p.startswith(b) for b in library.broken)],
        folder=_settings().conversations_dir,
    )


def _survey_or_404(survey_id: str):
    try:
        return runtime.library().get(survey_id)
    except SurveyError:
        abort(404)


@bp.get("/surveys/<survey_id>")
def survey(survey_id: str) -> str:
    found = _survey_or_404(survey_id)
    report = next((r for r in _lint_reports() if r["survey"] and r["survey"].id == found.id), None)
    return render_template(
        "console/survey.html", survey=found, report=report, channels=channels.all_channels()
    )


@bp.route("/surveys/<survey_id>/simulate/<channel>", methods=["GET", "POST"])
def simulate(survey_id: str, channel: str) -> Any:
    found = _survey_or_404(survey_id)
    if channel not in channels.NAMES:
        abort(404)
    redis = runtime.redis()
    play = simulator.load(redis, g.staff_id, found.id, channel)
    if request.method == "POST":
        database, settings = runtime.database(), _settings()
        if request.form.get("action") == "restart" or play is None:
            simulator.start(database, settings, redis, g.staff_id, found, channel)
        else:
            simulator.send(
                database,
                settings,
                redis,
                g.staff_id,
                found,
                play,
                typed=request.form.get("reply", ""),
                button=request.form.get("button", ""),
            )
        # Post/redirect/get: reloading the page does not send the reply again.
        return redirect(
            url_for("console.simulate", survey_id=found.id, channel=channel) + "#latest"
        )
    return render_template(
        "console/simulate.html",
        survey=found,
        channel=channels.get(channel),
        play=play,
        keys=["1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "0", "#"],
    )


def _page_number() -> int:
    raw = request.args.get("page", "1")
    return int(raw) if raw.isdigit() and len(raw) < 7 else 1


@bp.get("/people")
def people() -> str:
    filters = {
        # NUL and unpaired surrogates are refused by PostgreSQL in a query (a 500).
        "text": clean_text(request.args.get("q", "")[:200]),
        "tag": clean_text(request.args.get("tag", "")[:100]),
        "channel": request.args.get("channel", ""),
        "consent": request.args.get("consent", ""),
    }
    if filters["channel"] not in ("", *channels.NAMES):
        filters["channel"] = ""
    if filters["consent"] not in queries.CONSENT_FILTERS:
        filters["consent"] = ""
    with runtime.database().read() as db:
        found = queries.search_panel(db, page=_page_number(), **filters)
    return render_template(
        "console/people.html",
        found=found,
        filters=filters,
        consents=queries.CONSENT_FILTERS,
        channel_names=channels.NAMES,
    )


@bp.get("/people/<int:person_id>")
def person(person_id: int) -> str:
    with runtime.database().session() as db:
        view = queries.person(db, person_id)
        if view is None:
            abort(404)
        # Opening someone's page is looking at their personal data: the log says who did.
        audit.record(
            db, audit.staff_actor(g.staff_email), "view_participant", f"participant {person_id}"
        )
        page = render_template("console/person.html", view=view)
    return page


@bp.get("/campaigns")
def campaigns() -> str:
    with runtime.database().read() as db:
        rows = queries.campaigns(db)
    return render_template("console/campaigns.html", campaigns=rows, now=datetime.now(UTC))


@bp.get("/campaigns/<int:campaign_id>")
def campaign(campaign_id: int) -> str:
    with runtime.database().read() as db:
        row = queries.campaign(db, campaign_id)
        if row is None:
            abort(404)
        found = db.get(Campaign, campaign_id)
        results = exports.summary(db, found)
        reach = _fallback_and_gap(db, found)
    # A draft says what its launch would be warned of, and that the launch page offers more.
    unsuited = (
        [
            Unsuited.from_json(u)
            for u in services.unsuited_before_launch(runtime.database(), _settings(), campaign_id)
        ]
        if found.status == "draft"
        else []
    )
    return render_template(
        "console/campaign.html",
        campaign=row,
        results=results,
        now=datetime.now(UTC),
        unsuited=unsuited,
        **reach,
    )


def _fallback_and_gap(db: Any, found: Campaign) -> dict[str, Any]:
    """What the campaign page says of channel fallback and of people left out as invited
    lately (the settings the worker uses: `runtime.settings`)."""
    return {
        "moved_to": channels.get(found.move_unsuited_to).title if found.move_unsuited_to else None,
        "fallback": fallback.counts(db, found).as_json(),
        "left_out": frequency.left_out(db, found.id),
        "invite_gap_days": frequency.gap_days(found, runtime.settings()),
    }


@bp.get("/audit")
def audit_log() -> str:
    raw = request.args.get("before", "")
    before = int(raw) if raw.isdigit() and len(raw) < 19 else None
    with runtime.database().read() as db:
        events = audit.recent(db, limit=100, before=before)
    return render_template("console/audit.html", events=events)


@bp.errorhandler(413)
def _too_large(exc: Exception) -> tuple[str, int]:
    return render_template(
        "console/problem.html",
        title="This form was too large",
        message="The form held more than the console takes. Go back and send less.",
    ), 413


@bp.errorhandler(404)
def _not_found(exc: Exception) -> tuple[str, int]:
    return render_template(
        "console/problem.html",
        title="Page not found",
        message="There is nothing at this address. It may have been removed.",
    ), 404


# The pages that change data through a staff verb register their routes on `bp`.
from webhooks.console import actions, demo  # noqa: E402, F401
