"""/admin/api: the staff tools' contract (CONTRACT.md), JSON in and out, CSV for exports.

Bearer token compared in constant time; refused entirely while ADMIN_TOKEN is unset; rate
limited per client through Redis; every bad input is a JSON error with the right 4xx.
"""

from __future__ import annotations

import hmac
import logging
import time
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request, stream_with_context
from werkzeug.exceptions import HTTPException

from bot import (
    audit,
    campaigns,
    conversations,
    exports,
    feedback,
    panel,
    privacy,
    progress,
    runtime,
)
from bot.config import Settings
from bot.models import Campaign
from bot.survey import Question

bp = Blueprint("admin", __name__, url_prefix="/admin/api")
log = logging.getLogger(__name__)
RATE_LIMIT_PER_MINUTE = 600


class ApiError(Exception):
    def __init__(self, status: int, message: str, **extra: Any):
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra


def _settings() -> Settings:
    return current_app.extensions["involve.settings"]


@bp.errorhandler(ApiError)
def _api_error(exc: ApiError):
    response = jsonify(error=exc.message, **exc.extra)
    response.status_code = exc.status
    if exc.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="involve admin"'
    return response


@bp.errorhandler(campaigns.CampaignError)
def _campaign_error(exc: campaigns.CampaignError):
    return jsonify(error=str(exc)), exc.status


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException):
    return jsonify(error=exc.description or exc.name), exc.code or 500


@bp.errorhandler(Exception)
def _server_error(exc: Exception):
    log.exception("admin API error")
    return jsonify(error="something went wrong on our side; it has been logged"), 500


@bp.before_request
def _authenticate() -> None:
    if request.endpoint == "admin.openapi":
        return
    token = _settings().admin_token
    if not token:
        raise ApiError(403, "the admin API is off until ADMIN_TOKEN is set")
    given = request.headers.get("Authorization", "")
    scheme, _, credentials = given.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        credentials.strip().encode(), token.encode()
    ):
        raise ApiError(401, "a valid 'Authorization: Bearer <ADMIN_TOKEN>' header is required")
    _rate_limit(request.remote_addr or "unknown")


def _rate_limit(client: str) -> None:
    limit = int(current_app.config.get("ADMIN_RATE_LIMIT", RATE_LIMIT_PER_MINUTE))
    window = int(time.time() // 60)
    key = f"involve:admin-rate:{client}:{window}"
    try:
        redis = runtime.redis()
        pipe = redis.pipeline()
        pipe.incr(key)
        pipe.expire(key, 120)
        used = pipe.execute()[0]
    except Exception:
        log.warning("admin rate limit unavailable (Redis down); allowing the call")
        return
    if used > limit:
        retry = 60 - int(time.time() % 60)
        raise ApiError(429, f"too many requests: at most {limit} a minute", retry_after=retry)


def _json_body() -> Any:
    if not request.is_json:
        raise ApiError(415, "send JSON with Content-Type: application/json")
    body = request.get_json(silent=True)
    if body is None:
        raise ApiError(400, "the body is not valid JSON")
    return body


def _campaign_id(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ApiError(404, f"no campaign {value!r}") from None
    if not 0 < number < 2**62:
        raise ApiError(404, f"no campaign {value!r}")
    return number


# --- surveys and participants ------------------------------------------------------------


@bp.get("/surveys")
def list_surveys():
    surveys = runtime.library().surveys()
    return jsonify(
        [
            {"id": s.id, "title": s.title, "questions": [_question(q) for q in s.questions]}
            for s in surveys.values()
        ]
    )


def _question(question: Question) -> dict[str, Any]:
    described: dict[str, Any] = {
        "id": question.id,
        "type": question.type,
        "ask": question.ask,
        "optional": question.optional,
    }
    if question.choices:
        described["options"] = [{"value": o.value, "label": o.label} for o in question.choices]
    if question.when:
        described["when"] = {k: list(v) for k, v in question.when.items()}
    return described


@bp.post("/participants")
def import_participants():
    replace_tags = request.args.get("replace_tags", "").lower() in ("1", "true", "yes")
    if request.mimetype in ("text/csv", "application/csv"):
        try:
            text = request.get_data(as_text=False).decode("utf-8-sig")
        except UnicodeDecodeError:
            raise ApiError(400, "the CSV is not UTF-8 text") from None
        rows, problems = panel.read_csv(text)
        first_row = 2  # the header is row 1
    else:
        body = _json_body()
        if not isinstance(body, dict) or not isinstance(body.get("participants"), list):
            raise ApiError(400, 'send {"participants": [{"name", "phone", ...}, ...]}')
        rows, problems, first_row = body["participants"], [], 1
    with runtime.database().session() as session:
        report = panel.import_rows(
            session, rows, replace_tags=replace_tags, source="api", first_row=first_row
        )
    result = report.as_json()
    result["rejected"] = problems + result["rejected"]
    return jsonify(result)


def _person_or_404(session, key: str):
    try:
        person = privacy.find(session, key)
    except privacy.AmbiguousKey as exc:
        raise ApiError(409, str(exc)) from None
    if person is None or person.erased_at is not None:
        raise ApiError(404, f"no participant {key!r}")
    return person


@bp.get("/participants/<key>")
def subject_access(key: str):
    with runtime.database().session() as session:
        person = _person_or_404(session, key)
        data = privacy.subject_access(session, person)
        audit.record(session, audit.ADMIN_API, "subject_access", f"participant {person.id}")
    return jsonify(data)


@bp.delete("/participants/<key>")
def erase(key: str):
    with runtime.database().session() as session:
        person = _person_or_404(session, key)
        addresses = privacy.addresses_of(person)
        removed = privacy.erase(session, person)
        audit.record(session, audit.ADMIN_API, "erasure", f"participant {person.id}", **removed)
    try:
        privacy.forget_in_redis(runtime.redis(), addresses)
    except Exception:
        # The database is erased; Redis's job history expires on its own (rq's result TTL).
        log.warning("erasure: could not clean rq's job history in Redis")
    return jsonify(erased=True, **removed)


@bp.get("/audit")
def audit_log():
    try:
        limit = int(request.args.get("limit", 100))
        before = int(request.args["before"]) if "before" in request.args else None
    except ValueError:
        raise ApiError(400, "limit and before must be whole numbers") from None
    if not 1 <= limit <= 1000:
        raise ApiError(400, "limit must be from 1 to 1000")
    if before is not None and not -(2**62) < before < 2**62:
        raise ApiError(400, "before must be an audit event id")
    with runtime.database().read() as session:
        events = [audit.as_json(e) for e in audit.recent(session, limit, before)]
    return jsonify(events=events)


# --- campaigns -------------------------------------------------------------------------


@bp.post("/campaigns")
def create_campaign():
    body = _json_body()
    with runtime.database().session() as session:
        campaign, size = campaigns.create(session, body, runtime.library().surveys(), _settings())
        result = {"id": campaign.id, "status": campaign.status, "audience_size": size}
    return jsonify(result), 201


@bp.post("/campaigns/<campaign_id>/launch")
def launch_campaign(campaign_id: str):
    with runtime.database().session() as session:
        campaign = campaigns.get_or_404(session, _campaign_id(campaign_id))
        started = campaigns.launch(session, campaign)
        if started:
            audit.record(session, audit.ADMIN_API, "launch", f"campaign {campaign.id}")
    if started:
        campaigns.enqueue_fan_out(runtime.redis(), campaign)
    return jsonify(id=campaign.id, status="launching" if started else campaign.status), 202


@bp.post("/campaigns/<campaign_id>/close")
def close_campaign(campaign_id: str):
    with runtime.database().session() as session:
        campaign = campaigns.get_or_404(session, _campaign_id(campaign_id))
        campaigns.close(session, campaign)
    return jsonify(id=campaign.id, status="closed")


@bp.get("/campaigns/<campaign_id>")
def campaign_status(campaign_id: str):
    with runtime.database().read() as session:
        campaign = campaigns.get_or_404(session, _campaign_id(campaign_id))
        counts = progress.counts(session, campaign.id)
        return jsonify(
            id=campaign.id,
            survey=campaign.survey_id,
            status=campaign.status,
            channel=campaign.channel,
            counts=counts.as_json(),
        )


@bp.get("/campaigns/<campaign_id>/responses.csv")
def responses_csv(campaign_id: str):
    number = _campaign_id(campaign_id)
    with runtime.database().session() as session:
        campaigns.get_or_404(session, number)
        audit.record(session, audit.ADMIN_API, "export", f"campaign {number}", file="responses.csv")

    def generate():
        with runtime.database().read() as session:
            campaign = session.get(Campaign, number)
            yield from exports.csv_chunks(exports.response_rows(session, campaign))

    headers = {"Content-Disposition": f'attachment; filename="campaign-{number}-responses.csv"'}
    return Response(stream_with_context(generate()), mimetype="text/csv", headers=headers)


@bp.get("/campaigns/<campaign_id>/summary")
def campaign_summary(campaign_id: str):
    with runtime.database().read() as session:
        campaign = campaigns.get_or_404(session, _campaign_id(campaign_id))
        return jsonify(exports.summary(session, campaign))


@bp.post("/campaigns/<campaign_id>/feedback")
def campaign_feedback(campaign_id: str):
    body = _json_body()
    dry_run = body.get("dry_run", False) if isinstance(body, dict) else False
    if not isinstance(dry_run, bool):
        raise ApiError(400, "dry_run must be true or false")
    number = _campaign_id(campaign_id)
    try:
        with runtime.database().session() as session:
            campaign = campaigns.get_or_404(session, number)
            session.refresh(
                campaign, with_for_update=True
            )  # one feedback send at a time per campaign
            survey = conversations.survey_for(session, campaign.survey_version_id)
            definition = feedback.parse_definition(body, survey)
            planned = feedback.plan(session, campaign, definition)
            if dry_run:
                return jsonify(feedback.preview(planned))
            queued = feedback.send(session, campaign, planned)
    except feedback.FeedbackError as exc:
        raise ApiError(400, str(exc)) from None
    return jsonify(queued=len(queued), skipped=planned.skipped), 202


@bp.get("/campaigns/<campaign_id>/feedback")
def campaign_feedback_counts(campaign_id: str):
    with runtime.database().read() as session:
        campaign = campaigns.get_or_404(session, _campaign_id(campaign_id))
        return jsonify(counts=feedback.counts(session, campaign))


@bp.get("/openapi.json")
def openapi():
    from webhooks.openapi import spec

    return jsonify(spec(_settings().public_base_url, sorted(runtime.library().surveys())))
