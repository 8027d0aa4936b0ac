"""What staff send, as pydantic models: the admin API validates its bodies with them, the CLI
and the console build them, and the OpenAPI description is generated from them.

Every refusal is one friendly line, the same whichever tool sent the request: validators raise
the messages staff have always seen (the core's `CampaignError` is a ValueError, so pydantic
keeps its text), and `StaffRequest.parse` turns pydantic's own errors (an unknown field, a
wrong type, a missing field) into such a line too.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    create_model,
    field_validator,
)

from bot import channels
from bot.config import Settings
from bot.cycle.refusals import Refused
from bot.text import clean_text

ChannelName = Literal[channels.NAMES]  # type: ignore[valid-type]  # from the registry, never spelt out


SCHEDULING_MARGIN_DAYS = 90  # more than the longest reminder delay (1440 hours)
# A fallback goes within a week of the invitation: after that the first conversation has
# expired (7 days idle) and the invitation is old news.
MAX_FALLBACK_HOURS = 168


class CampaignError(Refused, ValueError):
    """Bad input from staff; the message says what to change. `status` is the HTTP code.

    A ValueError too, so that the request models' validators can raise it and pydantic turns
    it into a validation error carrying the same message.
    """

    def __init__(self, message: str, status: int = 400):
        super().__init__(message, status)


def _parse_time(value: Any, name: str, settings: Settings) -> datetime | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise CampaignError(f"{name} must be an ISO 8601 time such as 2026-12-01T10:00:00Z")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise CampaignError(
            f"{name} must be an ISO 8601 time such as 2026-12-01T10:00:00Z, got {value!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=settings.timezone)
    # Times at the ends of the calendar parse, but cannot be moved to UTC, or have the reminder
    # delay (at most 60 days) and the upkeep's margins added to them without overflowing: a
    # 500 now, or a worker job failing every minute later. Past times stay allowed (= now).
    try:
        in_utc = moment.astimezone(UTC)
        in_utc + timedelta(days=SCHEDULING_MARGIN_DAYS)
        in_utc - timedelta(days=SCHEDULING_MARGIN_DAYS)
    except OverflowError:
        raise CampaignError(
            f"{name} is too near the end of the calendar to schedule, got {value!r}"
        ) from None
    return moment


def _audience(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, Mapping) or len(raw) != 1:
        raise CampaignError(
            'audience must be one of {"tags": [...]}, {"participants": [...]} or {"all": true}'
        )
    ((kind, value),) = raw.items()
    if kind == "all":
        if value is not True:
            raise CampaignError('audience {"all": ...} must be true')
        return {"all": True}
    if kind in ("tags", "participants"):
        if (
            not isinstance(value, list)
            or not value
            or not all(isinstance(v, str | int) and not isinstance(v, bool) for v in value)
        ):
            raise CampaignError(f"audience {kind} must be a non-empty list")
        return {
            kind: [clean_text(v) for v in value]
            if kind == "tags"
            else [v if isinstance(v, int) else clean_text(v) for v in value]
        }
    raise CampaignError(f"unknown audience {kind!r}: use tags, participants or all")


class StaffRequest(BaseModel):
    """A request body; `parse` validates it or raises `Refused(400)` with one line."""

    model_config = ConfigDict(extra="forbid")

    # The line for a body that is not an object at all.
    NOT_AN_OBJECT: ClassVar[str] = "the body must be a JSON object"
    # The line for a value pydantic itself refused, by field (validators give their own).
    FIELD_PROBLEMS: ClassVar[dict[str, str]] = {}

    @classmethod
    def parse(cls, data: Any, **context: Any) -> Self:
        if isinstance(data, cls):
            return data
        try:
            return cls.model_validate(data, context=context)
        except ValidationError as exc:
            raise Refused(cls.explain(exc, context), 400) from None

    @classmethod
    def explain(cls, exc: ValidationError, context: Mapping[str, Any]) -> str:
        errors = exc.errors(include_url=False, include_input=False)
        # An unknown field first: usually a typo, and what staff should fix before anything.
        errors.sort(key=lambda e: e["type"] != "extra_forbidden")
        error = errors[0]
        loc = error["loc"]
        if error["type"] in ("model_type", "model_attributes_type", "dict_type") and not loc:
            return cls.NOT_AN_OBJECT
        if error["type"] == "extra_forbidden":
            return cls.unknown_field(str(loc[-1]))
        if error["type"] in ("value_error", "assertion_error") and "error" in error.get("ctx", {}):
            return str(error["ctx"]["error"])
        field = str(loc[0]) if loc else ""
        return cls.FIELD_PROBLEMS.get(field) or f"{field or 'the body'}: {error['msg']}"

    @classmethod
    def unknown_field(cls, name: str) -> str:
        return f"unknown field {name!r} (allowed: {', '.join(sorted(cls.model_fields))})"


# --- participants ------------------------------------------------------------------------


class _ParticipantFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    channel: ChannelName | None = None
    tags: list[str] | None = None
    recontact: bool | str | None = None
    external_id: str | None = None


# One person in an import. Rows are checked one by one (`bot.cycle.panel.clean`, shared with
# CSV files), so that a bad row is reported with its number while good rows are kept. The
# address fields are the channels' own (`Channel.contact_field`), from the registry.
ParticipantRow = create_model(
    "ParticipantRow",
    __base__=_ParticipantFields,
    **{  # type: ignore[call-overload]
        field: (
            int | str | None,
            Field(None, examples=[c.contact_example for c in channels.for_field(field)][:1]),
        )
        for field in channels.CONTACT_FIELDS
    },
)


class ImportRequest(StaffRequest):
    """`{"participants": [...]}`; each row is judged on its own (see ParticipantRow)."""

    model_config = ConfigDict(extra="ignore")
    NOT_AN_OBJECT: ClassVar[str] = (
        f'send {{"participants": [{{"name", "{channels.CONTACT_FIELDS[0]}", ...}}, ...]}}'
    )
    FIELD_PROBLEMS: ClassVar[dict[str, str]] = {"participants": NOT_AN_OBJECT}

    participants: Annotated[
        list[Any],
        WithJsonSchema(
            {"type": "array", "items": ParticipantRow.model_json_schema(mode="validation")}
        ),
    ]


class TelegramLinkRequest(StaffRequest):
    NOT_AN_OBJECT: ClassVar[str] = 'the body is {"days": N} or nothing'
    FIELD_PROBLEMS: ClassVar[dict[str, str]] = {"days": "days must be more than 0 and at most 365"}

    days: float = Field(28, gt=0, le=365, description="days until the link expires")

    @classmethod
    def unknown_field(cls, name: str) -> str:
        return cls.NOT_AN_OBJECT

    @field_validator("days", mode="before")
    @classmethod
    def _a_number(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("days must be a number")
        return value


# --- campaigns ---------------------------------------------------------------------------


class TagsAudience(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tags: list[str] = Field(min_length=1)


class PeopleAudience(BaseModel):
    model_config = ConfigDict(extra="forbid")
    participants: list[str | int] = Field(
        min_length=1, description="id:<our id>, ext:<external id>, or either bare"
    )


class EveryoneAudience(BaseModel):
    model_config = ConfigDict(extra="forbid")
    all: Literal[True]


Audience = TagsAudience | PeopleAudience | EveryoneAudience


def _campaign_schema(schema: dict[str, Any]) -> None:
    """Both are required, and neither may be null: the model holds None only so that a missing
    one is told in staff's words, which the description must not offer as valid."""
    schema["required"] = ["survey", "audience"]
    audience = schema.get("properties", {}).get("audience", {})
    if "anyOf" in audience:
        audience["anyOf"] = [s for s in audience["anyOf"] if s.get("type") != "null"]
    audience.pop("default", None)


class CampaignRequest(StaffRequest):
    """A draft campaign. Validate with the context `surveys` (id -> Survey), `broken` (file ->
    problems) and `settings` (for the local time zone of `send_at`)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_campaign_schema)

    # In the order staff have always been told about mistakes.
    survey: Annotated[str | None, WithJsonSchema({"type": "string"})] = Field(
        None, validate_default=True
    )
    channel: ChannelName | None = Field(
        None, description="null: each person's preferred channel", validate_default=True
    )
    reminder_after_hours: float | None = Field(None, gt=0, le=24 * 60)
    fallback_after_hours: float | None = Field(
        None,
        ge=0,
        le=MAX_FALLBACK_HOURS,
        description="null: no fallback; else invite people not reached on their first contact"
        " point (failed, undelivered, calls unanswered after every retry) on their next one,"
        " this many hours after their invitation",
    )
    invite_gap_days: int | None = Field(
        None,
        ge=0,
        le=365,
        description="null: the INVITE_GAP_DAYS setting; leave out people invited by another"
        " campaign in the last this many days (0: nobody is left out)",
    )
    audience: Audience | None = Field(None, validate_default=True)
    send_at: datetime | None = None

    @field_validator("survey", mode="before")
    @classmethod
    def _known_survey(cls, value: Any, info: ValidationInfo) -> Any:
        context = info.context or {}
        surveys = context.get("surveys") or {}
        if isinstance(value, str) and value in surveys:
            return value
        known = ", ".join(sorted(surveys)) or "none"
        sent = f"there is no survey {value!r}" if isinstance(value, str) else "survey is missing"
        broken = context.get("broken") or {}
        not_loaded = "".join(
            f"; {name} did not load: {problems[0]}"
            + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
            for name, problems in sorted(broken.items())
        )
        raise ValueError(
            f"{sent}: survey must be the id of a survey script (there are: {known}){not_loaded}"
        )

    @field_validator("channel", mode="before")
    @classmethod
    def _known_channel(cls, value: Any) -> Any:
        if value is not None and value not in channels.NAMES:
            raise ValueError(
                "channel must be null (each person's preferred channel) or one of "
                + ", ".join(channels.NAMES)
            )
        return value

    @field_validator("reminder_after_hours", mode="before")
    @classmethod
    def _hours(cls, value: Any) -> Any:
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1440
        ):
            raise ValueError(
                "reminder_after_hours must be null or a number of hours from 1 to 1440"
            )
        return value

    @field_validator("fallback_after_hours", mode="before")
    @classmethod
    def _fallback_hours(cls, value: Any) -> Any:
        if value is not None and (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not 0 <= value <= MAX_FALLBACK_HOURS
        ):
            raise ValueError(
                "fallback_after_hours must be null (no fallback) or a number of hours"
                f" from 0 to {MAX_FALLBACK_HOURS}"
            )
        return value

    @field_validator("invite_gap_days", mode="before")
    @classmethod
    def _gap_days(cls, value: Any) -> Any:
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # 14.0 is 14, as JSON Schema's integer says
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 365
        ):
            raise ValueError(
                "invite_gap_days must be null (the INVITE_GAP_DAYS setting) or a whole number"
                " of days from 0 to 365"
            )
        return value

    @field_validator("audience", mode="before")
    @classmethod
    def _audience(cls, value: Any) -> Any:
        return _audience(value)  # one of the three shapes, tidied, or the reason why not

    @field_validator("send_at", mode="before")
    @classmethod
    def _when(cls, value: Any, info: ValidationInfo) -> Any:
        settings = (info.context or {}).get("settings")
        if settings is None:
            raise ValueError("send_at cannot be read without the settings' time zone")
        return _parse_time(value, "send_at", settings)

    def audience_json(self) -> dict[str, Any]:
        assert self.audience is not None  # the validator never lets None through
        return self.audience.model_dump()


class LaunchRequest(StaffRequest):
    """A launch: no body, or staff's choices for it."""

    NOT_AN_OBJECT: ClassVar[str] = 'the body is {"move_unsuited_to": CHANNEL} or nothing'

    move_unsuited_to: ChannelName | None = Field(
        None,
        description="null: everyone is invited on their channel as it is; else people whose"
        " address there cannot take it (a landline, for texts) are invited on this channel"
        " instead, where they have an address it suits (the create and launch answers'"
        " `unsuited` offer one)",
        validate_default=True,
    )

    @field_validator("move_unsuited_to", mode="before")
    @classmethod
    def _known_channel(cls, value: Any) -> Any:
        if value is not None and value not in channels.NAMES:
            raise ValueError("move_unsuited_to must be null or one of " + ", ".join(channels.NAMES))
        return value


# --- feedback ----------------------------------------------------------------------------


class FeedbackRequest(StaffRequest):
    """The "you said, we did" message. With neither `message` nor `outcomes`, the survey's
    `<id>.feedback.yaml` in CONVERSATIONS_DIR is used, as the CLI does."""

    NOT_AN_OBJECT: ClassVar[str] = (
        'send {"message": TEMPLATE, "outcomes": {QUESTION: {ANSWER or "*": TEXT}}}'
    )
    FIELD_PROBLEMS: ClassVar[dict[str, str]] = {
        "message": "message is missing: the template each person receives",
        "outcomes": "outcomes must map question ids to {answer value or '*': sentence}",
        "dry_run": "dry_run must be true or false",
    }

    message: str | None = Field(None, description="a sandboxed Jinja2 template")
    # Checked against the survey's questions by `bot.cycle.feedback.parse_definition`, in one place
    # for the API and the *.feedback.yaml files alike.
    outcomes: Annotated[
        dict[str, Any] | None,
        WithJsonSchema(
            {
                "type": ["object", "null"],
                "additionalProperties": {
                    "type": "object",
                    "additionalProperties": {"type": "string"},
                },
            }
        ),
    ] = None
    dry_run: StrictBool = False

    @classmethod
    def unknown_field(cls, name: str) -> str:
        return f"unknown field {name!r}"

    def uses_file(self) -> bool:
        return self.message is None and self.outcomes is None

    def definition_payload(self) -> dict[str, Any]:
        return {"message": self.message, "outcomes": self.outcomes}


# --- the audit log -----------------------------------------------------------------------


class AuditQuery(StaffRequest):
    model_config = ConfigDict(extra="ignore")
    FIELD_PROBLEMS: ClassVar[dict[str, str]] = {
        "limit": "limit must be from 1 to 1000",
        "before": "before must be an audit event id",
    }

    limit: int = Field(100, ge=1, le=1000)
    before: int | None = Field(
        None, gt=-(2**62), lt=2**62, description="only events with a smaller id (paging back)"
    )

    @classmethod
    def explain(cls, exc: ValidationError, context: Mapping[str, Any]) -> str:
        if any(e["type"] in ("int_parsing", "int_type", "int_from_float") for e in exc.errors()):
            return "limit and before must be whole numbers"
        return super().explain(exc, context)
