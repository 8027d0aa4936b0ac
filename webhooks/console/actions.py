"""The console pages that change data: each view parses its form, calls the one staff verb in
`bot.cycle.services` (shared with the admin API and the CLI) and renders its answer, or its
`Refused` message beside the form. No verb is written here a second time."""

from __future__ import annotations

import json
from typing import Any

import yaml
from flask import (
    Response,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)

from bot import channels
from bot.commands import runtime
from bot.config import Settings
from bot.cycle import services
from bot.cycle.refusals import Refused
from bot.cycle.unsuited import Unsuited
from bot.privacy import audit
from webhooks.console import bp, queries

MAX_CSV_BYTES = 5 * 1024 * 1024


def _settings() -> Settings:
    return current_app.extensions["involve.settings"]


def _actor() -> str:
    """The signed-in staff member, named as the audit log names them."""
    return audit.staff_actor(g.staff_email)


def _redis_or_none():
    try:
        redis = runtime.redis()
        redis.ping()
        return redis
    except Exception:
        return None


# --- the panel: importing a CSV -----------------------------------------------------------


@bp.post("/people/import")
def import_people() -> Any:
    upload = request.files.get("csv")
    replace_tags = request.form.get("replace_tags") == "yes"
    error, report = None, None
    if upload is None or not upload.filename:
        error = "Choose a CSV file to import."
    else:
        data = upload.read(MAX_CSV_BYTES + 1)
        if len(data) > MAX_CSV_BYTES:
            error = "The file is larger than 5 MB. Split it into smaller files."
        else:
            try:
                report = services.import_csv(
                    runtime.database(),
                    runtime.settings(),
                    data,
                    replace_tags=replace_tags,
                    source="console",
                    actor=_actor(),
                )
            except Refused as exc:
                error = exc.message
    status = 400 if error else 200
    return render_template(
        "console/import.html", error=error, report=report, replace_tags=replace_tags
    ), status


# --- campaigns ---------------------------------------------------------------------------


def _campaign_form() -> dict[str, str]:
    return {
        "survey": request.form.get("survey", ""),
        "audience": request.form.get("audience", "tags"),
        "tags": request.form.get("tags", "")[:1000],
        "channel": request.form.get("channel", ""),
        "send_at": request.form.get("send_at", "").strip(),
        "reminder": request.form.get("reminder", "").strip(),
        "fallback": request.form.get("fallback", "").strip(),
        "gap": request.form.get("gap", "").strip(),
    }


def _number(raw: str, kind: type) -> Any:
    """A form's number, or None when empty; what cannot be read goes to the verb as written,
    to be refused there in its own words."""
    if not raw:
        return None
    try:
        return kind(raw)
    except ValueError:
        return raw


def _campaign_request(form: dict[str, str]) -> dict[str, Any]:
    """The form as the verb's request; the verb judges it (and words every refusal)."""
    if form["audience"] == "everyone":
        audience: dict[str, Any] = {"all": True}
    else:
        audience = {"tags": [t.strip() for t in form["tags"].split(",") if t.strip()]}
    reminder: Any = None
    if form["reminder"]:
        try:
            reminder = float(form["reminder"])
        except ValueError:
            reminder = form["reminder"]  # refused by the verb, in its own words
    return {
        "survey": form["survey"],
        "audience": audience,
        "channel": form["channel"] or None,
        "send_at": form["send_at"] or None,
        "reminder_after_hours": reminder,
        **_fallback_and_gap(form),
    }


def _fallback_and_gap(form: dict[str, str]) -> dict[str, Any]:
    """Channel fallback and the gap between invitations, only where staff filled them in."""
    chosen: dict[str, Any] = {}
    if form["fallback"]:
        chosen["fallback_after_hours"] = _number(form["fallback"], float)
    if form["gap"]:
        chosen["invite_gap_days"] = _number(form["gap"], int)
    return chosen


@bp.route("/campaigns/new", methods=["GET", "POST"])
def new_campaign() -> Any:
    library = runtime.library()
    form = _campaign_form()
    error = None
    if request.method == "POST":
        try:
            created = services.create_campaign(
                runtime.database(),
                _settings(),
                library,
                _campaign_request(form),
                actor=_actor(),
            )
        except Refused as exc:
            error = exc.message
        else:
            size = created["audience_size"]
            flash(
                f"Campaign {created['id']} is ready as a draft for {size} "
                f"{'person' if size == 1 else 'people'}. Launch it when you are ready.",
                "info",
            )
            for found in map(Unsuited.from_json, created["unsuited"]):
                offer = found.offer_sentence()
                choose = ": you can choose that when you launch" if found.offer else ""
                flash(f"{found.sentence()}. {offer[:1].upper()}{offer[1:]}{choose}.", "warning")
            return redirect(url_for("console.campaign", campaign_id=created["id"]))
    return render_template(
        "console/campaign_new.html",
        form=form,
        error=error,
        surveys=sorted(library.surveys().values(), key=lambda s: s.title.lower()),
        channel_names=channels.NAMES,
        invite_gap_days=_settings().invite_gap_days,
    ), (400 if error else 200)


def _confirm_campaign(campaign_id: int, verb: str) -> Any:
    """A campaign's Launch or Close acts only on a second, explicit press (the form carries
    `confirm=<verb>`): the first press, or a POST without it, shows what will happen."""
    with runtime.database().read() as db:
        row = queries.campaign(db, campaign_id)
    if row is None:
        abort(404)
    if request.method == "POST" and request.form.get("confirm") == verb:
        return None
    error = (
        f"Nothing was done. Press “{verb.capitalize()} campaign {campaign_id} now” to confirm."
        if request.method == "POST"
        else None
    )
    # Before a launch: who it would invite at an address their channel does not suit (a
    # landline, for texts), and the offer of another channel for them, as a second button.
    unsuited = (
        [
            Unsuited.from_json(u)
            for u in services.unsuited_before_launch(runtime.database(), _settings(), campaign_id)
        ]
        if verb == "launch"
        else []
    )
    return render_template(
        "console/campaign_confirm.html", campaign=row, verb=verb, error=error, unsuited=unsuited
    ), (400 if error else 200)


@bp.route("/campaigns/<int:campaign_id>/launch", methods=["GET", "POST"])
def launch_campaign(campaign_id: int) -> Any:
    asked = _confirm_campaign(campaign_id, "launch")
    if asked is not None:
        return asked
    move = request.form.get("move_unsuited_to", "")[:100]
    try:
        launched = services.launch_campaign(
            runtime.database(),
            _settings(),
            runtime.redis(),
            campaign_id,
            _actor(),
            {"move_unsuited_to": move} if move else None,
        )
    except Refused as exc:
        if exc.status == 404:
            abort(404)
        flash(f"The campaign was not launched: {exc.message}", "error")
    else:
        if launched["started"] and not launched["queued"]:
            flash(
                "The campaign is launched, but the job queue (Redis) cannot be reached just now:"
                " invitations start within a minute or two of it being back.",
                "error",
            )
        elif launched["started"]:
            flash("The campaign is launching: invitations are being sent.", "info")
        else:
            flash("The campaign was launched already; nobody is left to invite.", "info")
        _say_who_is_left_out(launched.get("left_out", {}))
        for found in map(Unsuited.from_json, launched.get("unsuited", [])):
            flash(
                f"{found.sentence()}: {found.moved_sentence()}.",
                "info" if found.moved else "warning",
            )
    return redirect(url_for("console.campaign", campaign_id=campaign_id))


def _say_who_is_left_out(left_out: dict[str, int]) -> None:
    for why, people in left_out.items():
        flash(
            f"Left out: {people} {'person' if people == 1 else 'people'} {why} by another"
            " campaign, so as not to ask them too often.",
            "info",
        )


@bp.route("/campaigns/<int:campaign_id>/close", methods=["GET", "POST"])
def close_campaign(campaign_id: int) -> Any:
    asked = _confirm_campaign(campaign_id, "close")
    if asked is not None:
        return asked
    try:
        closed = services.close_campaign(runtime.database(), _settings(), campaign_id, _actor())
    except Refused as exc:
        if exc.status == 404:
            abort(404)
        flash(f"The campaign was not closed: {exc.message}", "error")
    else:
        ended = closed["conversations_ended"]
        flash(
            f"The campaign is closed: no more invitations or reminders. {ended} "
            f"{'conversation' if ended == 1 else 'conversations'} in progress ended.",
            "info",
        )
    return redirect(url_for("console.campaign", campaign_id=campaign_id))


@bp.get("/campaigns/<int:campaign_id>/responses.csv")
def responses_csv(campaign_id: int) -> Response:
    try:
        export = services.export_responses(
            runtime.database(), campaign_id, _actor(), file="responses.csv"
        )
    except Refused:
        abort(404)
    headers = {
        "Content-Disposition": f'attachment; filename="campaign-{campaign_id}-responses.csv"'
    }
    return Response(
        stream_with_context(export.chunks),
        content_type="text/csv; charset=utf-8",
        headers=headers,
    )


# --- "you said, we did" ------------------------------------------------------------------


def _feedback_file(survey_id: str) -> dict[str, str]:
    """The survey's `<id>.feedback.yaml` as text for the form (the verb reads it itself when
    the form is left as it came)."""
    path = _settings().conversations_dir / f"{survey_id}.feedback.yaml"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {"message": "", "outcomes": ""}
    if not isinstance(data, dict):
        return {"message": "", "outcomes": ""}
    outcomes = data.get("outcomes")
    return {
        "message": str(data.get("message") or ""),
        "outcomes": yaml.safe_dump(outcomes, allow_unicode=True, sort_keys=False)
        if outcomes
        else "",
    }


def _feedback_request(message: str, outcomes_text: str) -> dict[str, Any]:
    try:
        outcomes = yaml.safe_load(outcomes_text) if outcomes_text.strip() else None
    except yaml.YAMLError:
        raise Refused(
            "The outcomes could not be read. Write one question per line, then each answer "
            "indented below it with its sentence, as in the survey's feedback file."
        ) from None
    return {"message": message, "outcomes": outcomes}


@bp.route("/campaigns/<int:campaign_id>/feedback", methods=["GET", "POST"])
def feedback(campaign_id: int) -> Any:
    with runtime.database().read() as db:
        row = queries.campaign(db, campaign_id)
    if row is None:
        abort(404)
    database, settings = runtime.database(), _settings()
    if request.method == "POST":
        form = {
            "message": request.form.get("message", "")[:5000],
            "outcomes": request.form.get("outcomes", "")[:20000],
        }
    else:
        form = _feedback_file(row.survey_id)
    error, preview = None, None
    if request.method == "POST":
        try:
            body = _feedback_request(form["message"].replace("\r\n", "\n"), form["outcomes"])
            if request.form.get("action") == "send":
                sent = services.send_feedback(database, settings, campaign_id, body, actor=_actor())
                flash(
                    f"{sent['queued']} {'message' if sent['queued'] == 1 else 'messages'} "
                    f"queued; {len(sent['skipped'])} skipped.",
                    "info",
                )
                return redirect(url_for("console.feedback", campaign_id=campaign_id))
            preview = services.preview_feedback(database, settings, campaign_id, body)
        except Refused as exc:
            error = exc.message
    counts = services.feedback_counts(database, campaign_id)
    return render_template(
        "console/feedback.html",
        campaign=row,
        form=form,
        error=error,
        preview=preview,
        counts=counts,
    ), (400 if error else 200)


# --- one person: subject access and erasure ------------------------------------------------


@bp.get("/people/<int:person_id>/subject-access.json")
def subject_access(person_id: int) -> Response:
    try:
        data = services.subject_access(runtime.database(), f"id:{person_id}", _actor())
    except Refused:
        abort(404)
    return Response(
        json.dumps(data, ensure_ascii=False, indent=2, default=str),
        content_type="application/json; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="person-{person_id}-subject-access.json"'
        },
    )


@bp.route("/people/<int:person_id>/erase", methods=["GET", "POST"])
def erase(person_id: int) -> Any:
    with runtime.database().read() as db:
        view = queries.person(db, person_id)
        if view is None or view.person.erased_at is not None:
            abort(404)
        shown = view.person.name or f"Person {person_id}"
    error = None
    if request.method == "POST":
        confirmed = request.form.get("confirm") == "erase"
        if not confirmed:
            error = f"Nothing was erased. Press “Erase {shown} now” to confirm."
        else:
            try:
                removed = services.erase(
                    runtime.database(),
                    runtime.settings(),
                    _redis_or_none(),
                    f"id:{person_id}",
                    _actor(),
                )
            except Refused as exc:
                error = exc.message
            else:
                # By number only: a flash rides in the session cookie, which is signed, not
                # encrypted, and would carry an erased person's name on after the erasure.
                flash(
                    f"Participant {removed['participant']}'s personal data has been erased. "
                    "Their answers stay only as anonymous counts.",
                    "info",
                )
                return redirect(url_for("console.people"))
    return render_template("console/erase.html", person_id=person_id, shown=shown, error=error), (
        400 if error else 200
    )
