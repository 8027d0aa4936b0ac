"""After erasure, nothing anywhere still says who the person was or what they wrote.

Every column of every table the database holds (not just the ones the models know) and every
Redis key and value (rq's job payloads are zlib-compressed pickles and its results base64, so those are opened
too) are
searched for the person's number, name, chat id, external id and words.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import zlib
from typing import Any

from redis import Redis
from sqlalchemy import MetaData, select

from bot.storage.db import Database
from tests.conftest import ADMIN, PUBLIC, run_worker
from tests.fakes import Scripted, post_twilio, sms_params

PHONE = "+447700900731"
NAME = "Philippa Quartermaine"
CHAT_ID = 98765432101
EXTERNAL = "CRM-ZX81"
WORDS = "I have COPD and diabetes; my GP is Dr Patel"
NEEDLES = [
    PHONE,
    PHONE[1:],
    "7700900731",
    "Philippa",
    "Quartermaine",
    str(CHAT_ID),
    EXTERNAL,
    "COPD",
    "Dr Patel",
]


def _database_text(database: Database) -> list[str]:
    found = []
    metadata = MetaData()
    with database.engine.connect() as conn:
        metadata.reflect(conn)
        for table in metadata.sorted_tables:
            for row in conn.execute(select(table)):
                found += [f"{table.name}.{col}={value!r}" for col, value in row._mapping.items()]
    return found


def _readable(raw: Any) -> list[str]:
    """Written apart from bot.privacy's own unwrapping, so one mistake cannot hide in both."""
    if isinstance(raw, str):
        raw = raw.encode()
    layers = [raw]
    with contextlib.suppress(binascii.Error, ValueError):
        layers.append(base64.b64decode(raw, validate=True))  # rq results
    for layer in list(layers):
        with contextlib.suppress(zlib.error):
            layers.append(zlib.decompress(layer))  # rq job data and errors
    return [layer.decode("utf-8", "replace") for layer in layers]


def _redis_text(redis: Redis) -> list[str]:
    found = []
    for key in redis.scan_iter(count=1000):
        kind = redis.type(key).decode()
        values: list[Any] = [key]
        if kind == "string":
            values.append(redis.get(key))
        elif kind == "hash":
            for field, value in redis.hgetall(key).items():
                values += [field, value]
        elif kind == "list":
            values += redis.lrange(key, 0, -1)
        elif kind == "set":
            values += list(redis.smembers(key))
        elif kind == "zset":
            values += [member for member, _ in redis.zrange(key, 0, -1, withscores=True)]
        elif kind == "stream":
            for _, fields in redis.xrange(key):
                for field, value in fields.items():
                    values += [field, value]
        for value in values:
            found += [f"{key!r}: {text}" for text in _readable(value)]
    return found


def _text(client, body: str) -> None:
    response = post_twilio(client, PUBLIC, "/webhooks/twilio/sms", sms_params(body, sender=PHONE))
    assert response.status_code == 200


def test_erasure_leaves_nothing_of_the_person_in_any_table_or_redis_key(
    client, database, redis_conn
):
    imported = client.post(
        "/admin/api/participants",
        json={
            "participants": [
                {
                    "name": NAME,
                    "phone": "07700 900731",
                    "telegram_chat_id": CHAT_ID,
                    "channel": "sms",
                    "tags": ["readers"],
                    "recontact": True,
                    "external_id": EXTERNAL,
                }
            ]
        },
        headers=ADMIN,
    ).json
    assert imported["created"] == 1, imported
    created = client.post(
        "/admin/api/campaigns",
        json={"survey": "guide-title", "audience": {"participants": [EXTERNAL]}, "channel": "sms"},
        headers=ADMIN,
    )
    assert created.status_code == 201, created.json
    campaign = created.json["id"]
    assert client.post(f"/admin/api/campaigns/{campaign}/launch", headers=ADMIN).status_code == 202
    run_worker(redis_conn)
    for body in ["1", WORDS, "4", "Yes"]:
        _text(client, body)
    feedback = client.post(
        f"/admin/api/campaigns/{campaign}/feedback",
        json={"message": "Hello {{ name }}. You said: {{ answers.why }}", "dry_run": False},
        headers=ADMIN,
    )
    assert feedback.status_code == 202 and feedback.json["queued"] == 1, feedback.json
    run_worker(redis_conn)
    _text(client, "STOP")  # so a suppression hash is left behind too
    assert client.get(f"/admin/api/participants/{EXTERNAL}", headers=ADMIN).status_code == 200
    client.get(f"/admin/api/campaigns/{campaign}/responses.csv", headers=ADMIN).get_data()

    # Before erasure, the scan does see them: it would not prove anything otherwise.
    before = "\n".join(_database_text(database))
    assert all(needle in before for needle in [PHONE, "Philippa", str(CHAT_ID), "COPD"])

    assert client.delete(f"/admin/api/participants/{EXTERNAL}", headers=ADMIN).status_code == 200
    run_worker(redis_conn)

    leftovers = [
        line
        for line in _database_text(database) + _redis_text(redis_conn)
        if any(needle in line for needle in NEEDLES)
    ]
    assert leftovers == []


def test_erasure_removes_rq_records_that_quote_the_number(client, redis_conn, twilio_fake):
    # Twilio's error text names the number it refused; rq keeps it in the job's result.
    twilio_fake.script.append(
        Scripted(
            status=400, code=21211, message=f"The 'To' number {PHONE} is not a valid phone number."
        )
    )
    client.post(
        "/admin/api/participants",
        json={"participants": [{"name": NAME, "phone": PHONE, "external_id": EXTERNAL}]},
        headers=ADMIN,
    )
    campaign = client.post(
        "/admin/api/campaigns",
        json={"survey": "guide-title", "audience": {"all": True}, "channel": "sms"},
        headers=ADMIN,
    ).json["id"]
    client.post(f"/admin/api/campaigns/{campaign}/launch", headers=ADMIN)
    run_worker(redis_conn)
    # Send jobs keep no result in Redis (result_ttl=0, bot/conversations/outbox.py), so Twilio's error text
    # naming the number is not there to begin with; whatever else is, erasure must leave none.
    assert (
        client.delete(f"/admin/api/participants/ext:{EXTERNAL}", headers=ADMIN).status_code == 200
    )
    assert [line for line in _redis_text(redis_conn) if PHONE[3:] in line] == []
