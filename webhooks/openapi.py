"""The OpenAPI 3 description of /admin/api, served at /admin/api/openapi.json."""

from __future__ import annotations

from typing import Any

from bot import channels

ERROR = {"$ref": "#/components/schemas/Error"}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "Bad input",
        401: "Missing or wrong token",
        403: "ADMIN_TOKEN is not set",
        404: "Not found",
        409: "Not possible in this state",
        415: "Not JSON",
        429: "Too many requests",
    }
    return {
        str(c): {"description": text[c], "content": {"application/json": {"schema": ERROR}}}
        for c in codes
    }


COMMON = (401, 403, 429)
CAMPAIGN_ID = {
    "name": "campaign_id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 1, "maximum": 2**53},
}
PARTICIPANT_KEY = {
    "name": "key",
    "in": "path",
    "required": True,
    "description": (
        "id:<our id>, ext:<external id>, or either bare where it names one person "
        "(a bare key that is one person's id and another's external id answers 409)"
    ),
    "schema": {"type": "string", "minLength": 1},
}
PARTICIPANT = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "name": {"type": ["string", "null"]},
        "phone": {"type": ["string", "null"], "example": "07700 900123"},
        "telegram_chat_id": {"type": ["integer", "string", "null"]},
        "channel": {"type": ["string", "null"], "enum": [*channels.NAMES, None]},
        "tags": {"type": ["array", "null"], "items": {"type": "string"}},
        "recontact": {"type": ["boolean", "string", "null"]},
        "external_id": {"type": ["string", "null"]},
    },
}


def spec(server: str, survey_ids: list[str]) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "involve admin API",
            "version": "1.0.0",
            "description": "Staff tools: panels, campaigns, exports, subject access, feedback.",
        },
        "servers": [{"url": server}],
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {"type": "string"}},
                },
                "Participant": PARTICIPANT,
                "ImportReport": {
                    "type": "object",
                    "required": ["created", "updated", "rejected"],
                    "properties": {
                        "created": {"type": "integer"},
                        "updated": {"type": "integer"},
                        "rejected": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["row", "error"],
                                "properties": {
                                    "row": {"type": "integer"},
                                    "error": {"type": "string"},
                                },
                            },
                        },
                    },
                },
                "CampaignStatus": {
                    "type": "object",
                    "required": ["id", "survey", "status", "counts"],
                    "properties": {
                        "id": {"type": "integer"},
                        "survey": {"type": "string", "enum": survey_ids or [""]},
                        "status": {"type": "string"},
                        "channel": {"type": ["string", "null"]},
                        "counts": {
                            "type": "object",
                            "required": ["invited", "started", "completed", "opted_out", "failed"],
                            "additionalProperties": {"type": "integer"},
                        },
                    },
                },
            },
        },
        "paths": {
            "/admin/api/surveys": {
                "get": {
                    "summary": "Survey scripts",
                    "operationId": "listSurveys",
                    "responses": {
                        "200": {
                            "description": "The scripts",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "required": ["id", "title", "questions"],
                                            "properties": {
                                                "id": {"type": "string"},
                                                "title": {"type": "string"},
                                                "questions": {
                                                    "type": "array",
                                                    "items": {
                                                        "type": "object",
                                                        "required": ["id", "type", "ask"],
                                                    },
                                                },
                                            },
                                        },
                                    }
                                }
                            },
                        },
                        **_errors(*COMMON),
                    },
                }
            },
            "/admin/api/participants": {
                "post": {
                    "summary": "Import or update a panel",
                    "operationId": "importParticipants",
                    "parameters": [
                        {
                            "name": "replace_tags",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "boolean"},
                        }
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["participants"],
                                    "properties": {
                                        "participants": {
                                            "type": "array",
                                            "items": {"$ref": "#/components/schemas/Participant"},
                                        }
                                    },
                                }
                            },
                            "text/csv": {"schema": {"type": "string"}},
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "What was created, updated and rejected",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/ImportReport"}
                                }
                            },
                        },
                        **_errors(400, 415, *COMMON),
                    },
                }
            },
            "/admin/api/participants/{key}": {
                "get": {
                    "summary": "Everything held about a person (subject access)",
                    "operationId": "subjectAccess",
                    "parameters": [PARTICIPANT_KEY],
                    "responses": {
                        "200": {
                            "description": "Their data, consent log, answers and messages",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                        **_errors(404, 409, *COMMON),
                    },
                },
                "delete": {
                    "summary": "Erase a person's personal data",
                    "operationId": "erase",
                    "parameters": [PARTICIPANT_KEY],
                    "responses": {
                        "200": {
                            "description": "Erased",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                        **_errors(404, 409, *COMMON),
                    },
                },
            },
            "/admin/api/audit": {
                "get": {
                    "summary": "The audit log, newest first: subject access, erasure, exports, "
                    "launches and retention purges (who, when, what)",
                    "operationId": "auditLog",
                    "parameters": [
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                        },
                        {
                            "name": "before",
                            "in": "query",
                            "description": "only events with a smaller id (paging back)",
                            "schema": {"type": "integer"},
                        },
                    ],
                    "responses": {
                        "200": {
                            "description": "Events",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "required": ["events"],
                                        "properties": {
                                            "events": {
                                                "type": "array",
                                                "items": {
                                                    "type": "object",
                                                    "required": [
                                                        "id",
                                                        "at",
                                                        "actor",
                                                        "action",
                                                        "target",
                                                        "detail",
                                                    ],
                                                    "properties": {
                                                        "id": {"type": "integer"},
                                                        "at": {"type": "string"},
                                                        "actor": {"type": "string"},
                                                        "action": {"type": "string"},
                                                        "target": {"type": ["string", "null"]},
                                                        "detail": {"type": "object"},
                                                    },
                                                },
                                            }
                                        },
                                    }
                                }
                            },
                        },
                        **_errors(400, *COMMON),
                    },
                }
            },
            "/admin/api/campaigns": {
                "post": {
                    "summary": "Create a campaign (a draft)",
                    "operationId": "createCampaign",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["survey", "audience"],
                                    "additionalProperties": False,
                                    "properties": {
                                        "survey": {"type": "string", "enum": survey_ids or [""]},
                                        "audience": {
                                            "oneOf": [
                                                {
                                                    "type": "object",
                                                    "required": ["tags"],
                                                    "additionalProperties": False,
                                                    "properties": {
                                                        "tags": {
                                                            "type": "array",
                                                            "minItems": 1,
                                                            "items": {"type": "string"},
                                                        }
                                                    },
                                                },
                                                {
                                                    "type": "object",
                                                    "required": ["participants"],
                                                    "additionalProperties": False,
                                                    "properties": {
                                                        "participants": {
                                                            "type": "array",
                                                            "minItems": 1,
                                                            "items": {
                                                                "type": ["string", "integer"]
                                                            },
                                                        }
                                                    },
                                                },
                                                {
                                                    "type": "object",
                                                    "required": ["all"],
                                                    "additionalProperties": False,
                                                    "properties": {"all": {"const": True}},
                                                },
                                            ]
                                        },
                                        "channel": {
                                            "type": ["string", "null"],
                                            "enum": [*channels.NAMES, None],
                                        },
                                        "send_at": {
                                            "type": ["string", "null"],
                                            "format": "date-time",
                                        },
                                        "reminder_after_hours": {
                                            "type": ["number", "null"],
                                            "exclusiveMinimum": 0,
                                            "maximum": 1440,
                                        },
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "201": {
                            "description": "Created",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "required": ["id", "status", "audience_size"],
                                        "properties": {
                                            "id": {"type": "integer"},
                                            "status": {"const": "draft"},
                                            "audience_size": {"type": "integer"},
                                        },
                                    }
                                }
                            },
                        },
                        **_errors(400, 409, 415, *COMMON),
                    },
                }
            },
            "/admin/api/campaigns/{campaign_id}": {
                "get": {
                    "summary": "Progress",
                    "operationId": "campaignStatus",
                    "parameters": [CAMPAIGN_ID],
                    "responses": {
                        "200": {
                            "description": "Status and counts",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/CampaignStatus"}
                                }
                            },
                        },
                        **_errors(404, *COMMON),
                    },
                }
            },
            "/admin/api/campaigns/{campaign_id}/launch": {
                "post": {
                    "summary": "Send the invitations (through rq)",
                    "operationId": "launchCampaign",
                    "parameters": [CAMPAIGN_ID],
                    "responses": {
                        "202": {
                            "description": "Launching",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                        **_errors(404, 409, *COMMON),
                    },
                }
            },
            "/admin/api/campaigns/{campaign_id}/close": {
                "post": {
                    "summary": "No more invitations or reminders",
                    "operationId": "closeCampaign",
                    "parameters": [CAMPAIGN_ID],
                    "responses": {
                        "200": {
                            "description": "Closed",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                        **_errors(404, *COMMON),
                    },
                }
            },
            "/admin/api/campaigns/{campaign_id}/responses.csv": {
                "get": {
                    "summary": "One row per invited person",
                    "operationId": "responsesCsv",
                    "parameters": [CAMPAIGN_ID],
                    "responses": {
                        "200": {
                            "description": "CSV",
                            "content": {"text/csv": {"schema": {"type": "string"}}},
                        },
                        **_errors(404, *COMMON),
                    },
                }
            },
            "/admin/api/campaigns/{campaign_id}/summary": {
                "get": {
                    "summary": "Counts per option, text answers",
                    "operationId": "campaignSummary",
                    "parameters": [CAMPAIGN_ID],
                    "responses": {
                        "200": {
                            "description": "Summary",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                        **_errors(404, *COMMON),
                    },
                }
            },
        },
    }
