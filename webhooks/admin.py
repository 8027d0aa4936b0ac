"""/admin/api: the staff tools' contract (CONTRACT.md), JSON in and out, CSV for exports.

Bearer token compared in constant time; refused entirely while ADMIN_TOKEN is unset; rate
limited per client through Redis; every bad input is a JSON error with the right 4xx.

The views are thin: they read the request, call the verb in `bot.cycle.services` (shared with the
CLI and the console) and render its answer. `@api.validate` declares each view's body and
answers for the generated OpenAPI description (`webhooks.openapi`).
"""

from __future__ import annotations

import hmac
import logging
import time
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request, stream_with_context
from werkzeug.exceptions import HTTPException

from bot.commands import runtime
from bot.config import Settings
from bot.cycle import services
from bot.cycle.refusals import Refused
from bot.cycle.requests import (
    AuditQuery,
    CampaignRequest,
    FeedbackRequest,
    ImportRequest,
    LaunchRequest,
    TelegramLinkRequest,
)
from bot.privacy import audit
from webhooks import openapi
from webhooks.openapi import answers, api

bp = Blueprint("admin", __name__, url_prefix="/admin/api")
log = logging.getLogger(__name__)
RATE_LIMIT_PER_MINUTE = 600
# Wrong tokens a client may send a minute before every call it makes waits: enough for a
# person fixing a typo, far too few to guess a 32-character token.
FAILED_AUTH_PER_MINUTE = 10


class ApiError(Refused):
    """A refusal made by the API itself (authentication, limits, a body that is not JSON)."""

    def __init__(self, status: int, message: str, **extra: Any):
        super().__init__(message, status, **extra)


def _settings() -> Settings:
    return current_app.extensions["involve.settings"]


@bp.errorhandler(Refused)
def _refused(exc: Refused):
    response = jsonify(error=exc.message, **exc.extra)
    response.status_code = exc.status
    if "retry_after" in exc.extra:
        response.headers["Retry-After"] = str(exc.extra["retry_after"])
    if exc.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="involve admin"'
    return response


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException):
    return jsonify(error=exc.description or exc.name), exc.code or 500


@bp.app_errorhandler(404)
@bp.app_errorhandler(405)
def _routing_error(exc: HTTPException):
    """A path or method no route of the API has: still JSON there (the blueprint's own handlers
    see only requests one of its routes matched)."""
    if request.path == "/admin/api" or request.path.startswith("/admin/api/"):
        return _http_error(exc)
    return exc


@bp.errorhandler(Exception)
def _server_error(exc: Exception):
    log.exception("admin API error")
    return jsonify(error="something went wrong on our side; it has been logged"), 500


@bp.before_request
def _authenticate() -> None:
    if request.endpoint == "admin.openapi_json":
        return
    token = _settings().admin_token
    if not token:
        raise ApiError(403, "the admin API is off until ADMIN_TOKEN is set")
    client = request.remote_addr or "unknown"
    failures = f"involve:admin-auth-failures:{client}"
    failed_limit = int(current_app.config.get("ADMIN_FAILED_AUTH_LIMIT", FAILED_AUTH_PER_MINUTE))
    # Every attempt is counted as a wrong one before the token is compared, and refunded when
    # it was right: fifteen guesses at once then meet the limit of ten as fifteen in a row do
    # (reading the count and adding to it later let them all through). Checked before the
    # token, so a blocked guesser cannot tell a right guess from a wrong one.
    _refuse_over(failures, failed_limit, "too many wrong tokens")
    given = request.headers.get("Authorization", "")
    scheme, _, credentials = given.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        credentials.strip().encode("utf-8", "replace"), token.encode()
    ):
        raise ApiError(401, "a valid 'Authorization: Bearer <ADMIN_TOKEN>' header is required")
    _refund(failures)
    limit = int(current_app.config.get("ADMIN_RATE_LIMIT", RATE_LIMIT_PER_MINUTE))
    _refuse_over(f"involve:admin-rate:{client}", limit, "too many requests")


def _window_key(prefix: str) -> str:
    return f"{prefix}:{int(time.time() // 60)}"


def _count(prefix: str) -> int | None:
    """One more in this minute's window; None when Redis is away (the limits are advisory)."""
    key = _window_key(prefix)
    try:
        pipe = runtime.redis().pipeline()
        pipe.incr(key)
        pipe.expire(key, 120)
        return int(pipe.execute()[0])
    except Exception:
        log.warning("admin rate limit unavailable (Redis down); allowing the call")
        return None


def _refund(prefix: str) -> None:
    """Take back one counted in this minute's window (an attempt that turned out right)."""
    try:
        runtime.redis().decr(_window_key(prefix))
    except Exception:
        log.warning("admin rate limit unavailable (Redis down); allowing the call")


def _refuse_over(prefix: str, limit: int, what: str) -> None:
    """429 when this call, counted first (atomically, INCR), is over the minute's limit."""
    used = _count(prefix)
    if used is not None and used > limit:
        retry = 60 - int(time.time() % 60)
        raise ApiError(429, f"{what}: at most {limit} a minute", retry_after=retry)


def _json_body() -> Any:
    if not request.is_json:
        raise ApiError(415, "send JSON with Content-Type: application/json")
    try:
        body = request.get_json(silent=True)
    except RecursionError:
        # json refuses nesting deeper than the interpreter's stack with RecursionError, not
        # ValueError, so `silent` does not cover it.
        raise ApiError(400, "the JSON is nested too deeply") from None
    if body is None:
        raise ApiError(400, "the body is not valid JSON")
    return body


def _optional_json_body() -> Any:
    return _json_body() if request.content_length else None


# --- surveys and participants ------------------------------------------------------------


@bp.get("/surveys")
@api.validate(
    resp=answers(200, list[openapi.SurveyListing], description="The scripts"),
    operation_id="listSurveys",
    skip_validation=True,
)
def list_surveys():
    """Survey scripts"""
    return jsonify(services.list_surveys(runtime.library()))


@bp.post("/participants")
@api.validate(
    json=ImportRequest,
    resp=answers(
        200,
        openapi.ImportReport,
        400,
        415,
        description="What was created, updated, left unchanged and rejected",
    ),
    operation_id="importParticipants",
    skip_validation=True,
)
def import_participants():
    """Import or update a panel (JSON rows, or text/csv with the same columns)"""
    replace_tags = request.args.get("replace_tags", "").lower() in ("1", "true", "yes")
    if request.mimetype in ("text/csv", "application/csv"):
        report = services.import_csv(
            runtime.database(),
            runtime.settings(),
            request.get_data(),
            replace_tags=replace_tags,
            source="api",
            actor=audit.ADMIN_API,
        )
    else:
        report = services.import_json(
            runtime.database(),
            runtime.settings(),
            _json_body(),
            replace_tags=replace_tags,
            source="api",
            actor=audit.ADMIN_API,
        )
    return jsonify(report)


@bp.get("/participants/<key>")
@api.validate(
    resp=answers(
        200, openapi.Listed, 404, 409, description="Their data, consent log, answers and messages"
    ),
    operation_id="subjectAccess",
    skip_validation=True,
)
def subject_access(key: str):
    """Everything held about a person (subject access)"""
    return jsonify(services.subject_access(runtime.database(), key, audit.ADMIN_API))


@bp.delete("/participants/<key>")
@api.validate(
    resp=answers(200, openapi.Listed, 404, 409, description="Erased"),
    operation_id="erase",
    skip_validation=True,
)
def erase(key: str):
    """Erase a person's personal data"""
    removed = services.erase(
        runtime.database(), runtime.settings(), _redis_or_none(), key, audit.ADMIN_API
    )
    removed.pop("participant")
    removed.pop("redis_cleaned")
    return jsonify(removed)


def _redis_or_none():
    try:
        return runtime.redis()
    except Exception:
        return None


@bp.get("/audit")
@api.validate(
    query=AuditQuery,
    resp=answers(200, openapi.AuditEvents, 400, description="Events"),
    operation_id="auditLog",
    skip_validation=True,
)
def audit_log():
    """The audit log, newest first: subject access, erasure, exports, launches and retention
    purges (who, when, what)"""
    return jsonify(events=services.audit_log(runtime.database(), request.args.to_dict()))


@bp.post("/participants/<key>/telegram-link")
@api.validate(
    json=TelegramLinkRequest,
    resp=answers(
        201,
        openapi.TelegramLink,
        400,
        404,
        409,
        415,
        description="The link, shown once (only a hash of its code is kept)",
    ),
    operation_id="telegramLink",
    skip_validation=True,
)
def telegram_link(key: str):
    """A single-use Telegram deep link that joins a chat to this person"""
    issued = services.issue_telegram_link(
        runtime.database(), _settings(), key, _optional_json_body()
    )
    return jsonify(issued), 201


# --- campaigns -------------------------------------------------------------------------


@bp.get("/campaigns")
@api.validate(
    resp=answers(200, list[openapi.CampaignListed], description="Newest first (at most 100)"),
    operation_id="listCampaigns",
    skip_validation=True,
)
def list_campaigns():
    """Campaigns, newest first"""
    return jsonify(services.list_campaigns(runtime.database()))


@bp.post("/campaigns")
@api.validate(
    json=CampaignRequest,
    resp=answers(201, openapi.Created, 400, 409, 415, description="Created"),
    operation_id="createCampaign",
    skip_validation=True,
)
def create_campaign():
    """Create a campaign (a draft)"""
    created = services.create_campaign(
        runtime.database(), _settings(), runtime.library(), _json_body(), actor=audit.ADMIN_API
    )
    if not created["unsuited"]:  # as a launch's answer: only when there is someone to warn of
        del created["unsuited"]
    return jsonify(created), 201


@bp.post("/campaigns/<campaign_id>/launch")
@api.validate(
    json=LaunchRequest,
    resp=answers(202, openapi.Launched, 400, 404, 409, 415, description="Launching"),
    operation_id="launchCampaign",
    skip_validation=True,
)
def launch_campaign(campaign_id: str):
    """Send the invitations (through rq)"""
    launched = services.launch_campaign(
        runtime.database(),
        _settings(),
        runtime.redis(),
        services.campaign_number(campaign_id),
        audit.ADMIN_API,
        _optional_json_body(),
    )
    answer = {key: launched[key] for key in ("id", "status", "queued")}
    if launched["left_out"]:  # {reason: people}, only when the launch leaves someone out
        answer["left_out"] = launched["left_out"]
    if launched["unsuited"]:  # only when someone's address does not suit their channel
        answer["unsuited"] = launched["unsuited"]
    return jsonify(answer), 202


@bp.post("/campaigns/<campaign_id>/close")
@api.validate(
    resp=answers(200, openapi.Closed, 404, description="Closed"),
    operation_id="closeCampaign",
    skip_validation=True,
)
def close_campaign(campaign_id: str):
    """No more invitations or reminders"""
    closed = services.close_campaign(
        runtime.database(),
        _settings(),
        services.campaign_number(campaign_id),
        actor=audit.ADMIN_API,
    )
    return jsonify(closed)


@bp.get("/campaigns/<campaign_id>")
@api.validate(
    resp=answers(200, openapi.CampaignStatus, 404, description="Status and counts"),
    operation_id="campaignStatus",
    skip_validation=True,
)
def campaign_status(campaign_id: str):
    """Progress"""
    settings = runtime.settings()  # as the worker sees them: quiet hours may change after start
    status = services.campaign_status(
        runtime.database(), settings, services.campaign_number(campaign_id)
    )
    return jsonify(status.as_json(settings))


@bp.get("/campaigns/<campaign_id>/responses.csv")
@api.validate(
    resp=answers(200, None, 404, description="CSV"),
    operation_id="responsesCsv",
    skip_validation=True,
)
def responses_csv(campaign_id: str):
    """One row per invited person"""
    number = services.campaign_number(campaign_id)
    export = services.export_responses(
        runtime.database(), number, audit.ADMIN_API, file="responses.csv"
    )
    headers = {"Content-Disposition": f'attachment; filename="campaign-{number}-responses.csv"'}
    return Response(
        stream_with_context(export.chunks),
        content_type="text/csv; charset=utf-8",
        headers=headers,
    )


@bp.get("/campaigns/<campaign_id>/summary")
@api.validate(
    resp=answers(200, openapi.Listed, 404, description="Summary"),
    operation_id="campaignSummary",
    skip_validation=True,
)
def campaign_summary(campaign_id: str):
    """Counts per option, text answers"""
    return jsonify(services.summary(runtime.database(), services.campaign_number(campaign_id)))


@bp.post("/campaigns/<campaign_id>/feedback")
@api.validate(
    json=FeedbackRequest,
    resp=answers(
        202,
        openapi.FeedbackQueued,
        400,
        404,
        415,
        description="Queued: the messages go out through rq",
        also={200: (openapi.FeedbackPreview, "A dry run: each recipient's message, unsent")},
    ),
    operation_id="sendFeedback",
    skip_validation=True,
)
def campaign_feedback(campaign_id: str):
    """ "You said, we did": preview (dry_run) or send each person's message"""
    body = FeedbackRequest.parse(_json_body())
    number = services.campaign_number(campaign_id)
    if body.dry_run:
        return jsonify(services.preview_feedback(runtime.database(), _settings(), number, body))
    sent = services.send_feedback(
        runtime.database(), _settings(), number, body, actor=audit.ADMIN_API
    )
    return jsonify(sent), 202


@bp.get("/campaigns/<campaign_id>/feedback")
@api.validate(
    resp=answers(200, openapi.FeedbackCounts, 404, description="Feedback messages by state"),
    operation_id="feedbackCounts",
    skip_validation=True,
)
def campaign_feedback_counts(campaign_id: str):
    """How the "you said, we did" messages are getting on"""
    counts = services.feedback_counts(runtime.database(), services.campaign_number(campaign_id))
    return jsonify(counts=counts)


@bp.get("/openapi.json")
def openapi_json():
    """Generated from the views' declarations and the request models; served without a token."""
    return jsonify(openapi.spec())
