"""Property tests: whatever a stranger sends to the webhooks or the admin API, never a 500, and
nothing stored without a valid signature or token.

Bounded and derandomized, so CI runs the same examples every time in a few seconds.
"""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from bot.storage.models import Campaign, Message, Participant
from tests.conftest import ADMIN, PUBLIC
from tests.fakes import sign, sms_params

BOUNDED = settings(
    max_examples=60,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
PATHS = ["/webhooks/twilio/sms", "/webhooks/twilio/status", "/webhooks/twilio/sms?x=1"]

# Text that includes what breaks databases and parsers: NUL, lone surrogates, huge runs.
hostile_text = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=40),
    st.sampled_from(["\x00", "\ud800", "\r", "=1+1", "%", "[" * 50, "a" * 5000, "+" + "4" * 90]),
)
header_value = st.text(
    alphabet=st.characters(min_codepoint=32, max_codepoint=126), min_size=0, max_size=60
)


def stored(database, model) -> int:
    with database.session() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


@BOUNDED
@given(
    path=st.sampled_from(PATHS),
    body=st.one_of(
        st.binary(max_size=2000),
        st.dictionaries(hostile_text, hostile_text, max_size=8).map(
            lambda d: "&".join(f"{k}={v}" for k, v in d.items()).encode("utf-8", "surrogatepass")
        ),
    ),
    signature=st.one_of(
        st.none(),
        header_value,
        st.sampled_from(["AAAAAAAAAAAAAAAAAAAAAAAAAAA=", "=" * 28, "a" * 28]),
    ),
    content_type=st.sampled_from(
        [
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/json",
            "text/plain",
            "",
        ]
    ),
)
def test_unsigned_webhook_requests_never_500_and_store_nothing(
    client, database, path, body, signature, content_type
):
    headers = {"Content-Type": content_type} if content_type else {}
    if signature is not None:
        headers["X-Twilio-Signature"] = signature
    response = client.post(path, data=body, headers=headers)
    assert response.status_code in (400, 403, 413, 415), response.status_code
    assert stored(database, Message) == 0 and stored(database, Participant) == 0


@BOUNDED
@given(
    fields=st.dictionaries(
        st.sampled_from(["Body", "From", "MessageSid", "SmsSid", "To", "NumMedia", "Extra"]),
        hostile_text,
        max_size=5,
    )
)
def test_signed_texts_with_any_fields_never_500(client, database, fields):
    params = {**sms_params("hi"), **fields}
    # Form encoding cannot carry lone surrogates; Twilio could not send them either.
    params = {k: v.encode("utf-8", "replace").decode("utf-8") for k, v in params.items()}
    response = client.post(
        "/webhooks/twilio/sms",
        data=params,
        headers={"X-Twilio-Signature": sign(PUBLIC + "/webhooks/twilio/sms", params)},
    )
    assert response.status_code < 500, (params, response.data[:300])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | hostile_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(hostile_text, inner, max_size=4),
    max_leaves=12,
)
ADMIN_POSTS = [
    "/admin/api/participants",
    "/admin/api/campaigns",
    "/admin/api/campaigns/1/feedback",
    "/admin/api/campaigns/1/launch",
]


@BOUNDED
@given(
    path=st.sampled_from(ADMIN_POSTS),
    payload=st.one_of(
        json_values,
        st.fixed_dictionaries(
            {},
            optional={
                "participants": st.lists(
                    st.dictionaries(
                        st.sampled_from(
                            ["name", "phone", "telegram_chat_id", "channel", "tags", "recontact"]
                        ),
                        json_values,
                        max_size=4,
                    ),
                    max_size=3,
                ),
                "survey": st.sampled_from(["guide-title", "nope"]) | hostile_text,
                "audience": json_values,
                "send_at": hostile_text
                | st.datetimes().map(lambda d: d.isoformat())
                | st.sampled_from(["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-12:00"]),
                "channel": json_values,
                "reminder_after_hours": json_values,
                "message": hostile_text | st.sampled_from(["{{ name }}", "{% for %}", "{{ 1/0 }}"]),
                "outcomes": json_values,
                "dry_run": st.booleans() | json_values,
            },
        ),
    ),
)
def test_admin_json_of_any_shape_never_500(app, database, path, payload):
    app.config["ADMIN_RATE_LIMIT"] = 10**6
    client = app.test_client()
    response = client.post(
        path, data=json.dumps(payload), headers={**ADMIN, "Content-Type": "application/json"}
    )
    assert response.status_code < 500, (payload, response.json)


@BOUNDED
@given(
    key=hostile_text.filter(lambda k: "/" not in k and k not in ("", ".", "..")),
    csv_text=st.text(max_size=300),
)
def test_admin_keys_and_csv_of_any_shape_never_500(app, database, key, csv_text):
    app.config["ADMIN_RATE_LIMIT"] = 10**6
    client = app.test_client()
    safe = key.encode("utf-8", "replace").decode("utf-8")
    for method in (client.get, client.delete):
        assert method(f"/admin/api/participants/{safe}", headers=ADMIN).status_code < 500
    assert client.get(f"/admin/api/campaigns/{safe}", headers=ADMIN).status_code < 500
    response = client.post(
        "/admin/api/participants",
        data=csv_text.encode("utf-8", "replace"),
        headers={**ADMIN, "Content-Type": "text/csv"},
    )
    assert response.status_code < 500, (csv_text, response.json)


@BOUNDED
@given(
    authorization=st.one_of(
        header_value,
        header_value.map(lambda t: "Bearer " + t),
        st.just("Bearer " + ADMIN["Authorization"][7:-1]),
    ),
    path=st.sampled_from(ADMIN_POSTS),
)
def test_admin_calls_without_the_token_never_500_and_store_nothing(
    app, database, authorization, path
):
    app.config["ADMIN_FAILED_AUTH_LIMIT"] = 10**6
    client = app.test_client()
    response = client.post(
        path,
        json={"participants": [{"phone": "07700 900001"}], "survey": "guide-title"},
        headers={"Authorization": authorization},
    )
    assert response.status_code in (401, 429)
    assert stored(database, Participant) == 0 and stored(database, Campaign) == 0


@BOUNDED
@given(
    fields=st.dictionaries(
        st.sampled_from(["MessageSid", "CallSid", "MessageStatus", "ErrorCode", "ErrorMessage"]),
        hostile_text | st.sampled_from(["delivered", "failed", "21610"]),
        max_size=5,
    ),
    m=st.one_of(st.none(), st.integers().map(str), st.sampled_from(["9" * 30, "-1", "²", "1e3"])),
)
def test_signed_status_callbacks_with_any_fields_never_500(client, database, fields, m):
    params = {
        k: v.encode("utf-8", "replace").decode("utf-8")
        for k, v in {"AccountSid": "AC1", "MessageStatus": "delivered", **fields}.items()
    }
    path = "/webhooks/twilio/status" + (f"?m={m}" if m is not None else "")
    response = client.post(
        path, data=params, headers={"X-Twilio-Signature": sign(PUBLIC + path, params)}
    )
    assert response.status_code < 500, (path, params)
