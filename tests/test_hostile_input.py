"""Hostile and odd input at the edges: limits before work, and no server errors from it.

Every request here is one a stranger (or a careless spreadsheet) can send. The rule: a 4xx
that says what is wrong, nothing stored without a valid signature, and never a 500.
"""

from __future__ import annotations

import base64
import pickle
import time
import xml.etree.ElementTree as ET

import pytest
from sqlalchemy import func, select

from bot.storage.models import Message, Participant
from tests import people
from tests.conftest import ADMIN, PUBLIC
from tests.fakes import post_twilio, sms_params

SMS = "/webhooks/twilio/sms"
STATUS = "/webhooks/twilio/status"


def count(database, model) -> int:
    with database.session() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


# --- item 4: limits before work on the webhooks ----------------------------------------


def test_a_big_body_is_refused_before_it_is_parsed_or_hashed(client, database):
    # 10 MB with any signature at all used to be parsed and hashed (seconds of CPU) first.
    body = b"Body=" + b"x" * (10 * 1024 * 1024)
    started = time.perf_counter()
    response = client.post(
        SMS,
        data=body,
        headers={
            "X-Twilio-Signature": "AAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    assert response.status_code == 413
    assert time.perf_counter() - started < 0.5
    assert count(database, Message) == 0


def test_a_body_just_over_the_limit_is_413_even_when_signed(client, database):
    params = sms_params("x" * (64 * 1024))
    response = post_twilio(client, PUBLIC, SMS, params)
    assert response.status_code == 413
    assert count(database, Message) == 0


def test_a_status_callback_over_the_limit_is_413(client):
    response = client.post(
        STATUS,
        data={"MessageSid": "SM1", "Junk": "y" * (70 * 1024)},
        headers={"X-Twilio-Signature": "AAAAAAAAAAAAAAAAAAAAAAAAAAA="},
    )
    assert response.status_code == 413


def test_a_signature_that_cannot_be_one_is_403_and_stores_nothing(client, database):
    # HMAC-SHA1 in base64 is 28 characters; anything else is refused before the form is read.
    params = sms_params("TITLE")
    for bad in ("x", "not a signature at all" * 50, "=" * 28, "\u00e9" * 28):
        response = client.post(SMS, data=params, headers={"X-Twilio-Signature": bad})
        assert response.status_code == 403
    assert count(database, Message) == 0


# --- item 9: signed texts with over-long identifiers (PostgreSQL used to answer 500) -----


def _texts(response) -> list[str]:
    return [m.text for m in ET.fromstring(response.data).findall("Message")]


def test_a_signed_text_with_an_over_long_message_sid_is_kept_not_500(client, database):
    sid = "SM" + "a" * 200
    response = post_twilio(client, PUBLIC, SMS, sms_params("TITLE", sid=sid))
    assert response.status_code == 200 and response.mimetype == "application/xml"
    with database.session() as session:
        kept = session.scalars(select(Message).where(Message.direction == "in")).one()
        assert kept.body == "TITLE" and len(kept.provider_id or "") <= 34
    # Twilio retries: the same over-long sid is the same delivery and stores nothing twice.
    again = post_twilio(client, PUBLIC, SMS, sms_params("TITLE", sid=sid))
    assert again.status_code == 200
    assert count(database, Message) - _replies(database) == 1


def _replies(database) -> int:
    with database.session() as session:
        return (
            session.scalar(
                select(func.count()).select_from(Message).where(Message.direction == "out")
            )
            or 0
        )


def test_a_signed_text_from_an_over_long_sender_is_kept_not_500(client, database):
    sender = "+44" + "7" * 300
    response = post_twilio(client, PUBLIC, SMS, sms_params("my answer", sender=sender))
    assert response.status_code == 200 and response.mimetype == "application/xml"
    assert _texts(response) == []  # nobody to answer: it is not an address we can reach
    with database.session() as session:
        kept = session.scalars(select(Message)).one()
        assert kept.body == "my answer" and kept.status == "error"
        assert "too long" in (kept.error_message or "")
    assert count(database, Participant) == 0


# --- item 7: admin tokens -----------------------------------------------------------------


def test_wrong_admin_tokens_are_slowed_down_with_retry_after(app):
    app.config["ADMIN_FAILED_AUTH_LIMIT"] = 5
    client = app.test_client()
    wrong = {"Authorization": "Bearer " + "w" * 40}
    codes = [client.get("/admin/api/surveys", headers=wrong).status_code for _ in range(8)]
    assert codes[:5] == [401] * 5 and set(codes[5:]) == {429}
    refused = client.get("/admin/api/surveys", headers=wrong)
    assert refused.status_code == 429
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    # The limit is on guessing: even the right token waits until the window passes, so a
    # guesser cannot learn that a guess was right while blocked.
    assert client.get("/admin/api/surveys", headers=ADMIN).status_code == 429


def test_a_successful_client_is_not_blocked_by_another_clients_guessing(app):
    app.config["ADMIN_FAILED_AUTH_LIMIT"] = 2
    client = app.test_client()
    wrong = {"Authorization": "Bearer nope"}
    for _ in range(4):
        client.get("/admin/api/surveys", headers=wrong, environ_base={"REMOTE_ADDR": "10.0.0.9"})
    assert client.get("/admin/api/surveys", headers=ADMIN).status_code == 200


def _guess(client, forwarded_for: str, proxy: str = "10.0.0.1") -> int:
    headers = {"Authorization": "Bearer nope", "X-Forwarded-For": forwarded_for}
    environ = {"REMOTE_ADDR": proxy}
    return client.get("/admin/api/surveys", headers=headers, environ_base=environ).status_code


def test_x_forwarded_for_is_not_trusted_unless_a_proxy_is_declared(app):
    app.config["ADMIN_FAILED_AUTH_LIMIT"] = 2
    client = app.test_client()
    # A guesser writing a new X-Forwarded-For each time is still one connecting address.
    assert [_guess(client, f"203.0.113.{n}") for n in range(3)] == [401, 401, 429]


def test_behind_a_trusted_proxy_each_client_has_its_own_allowance(app_settings):
    from webhooks import create_app

    app = create_app({"SETTINGS": app_settings.with_overrides(trusted_proxies=1)})
    app.config["ADMIN_FAILED_AUTH_LIMIT"] = 2
    client = app.test_client()
    # Every request comes from the proxy (10.0.0.1); it appends the address it saw last.
    assert [_guess(client, "203.0.113.9") for _ in range(3)] == [401, 401, 429]
    # A value the guesser wrote itself comes before the proxy's and is not believed.
    assert _guess(client, "198.51.100.1, 203.0.113.9") == 429
    # Staff behind the same proxy are not locked out by the guesser.
    staff = {**ADMIN, "X-Forwarded-For": "192.0.2.7"}
    answered = client.get(
        "/admin/api/surveys", headers=staff, environ_base={"REMOTE_ADDR": "10.0.0.1"}
    )
    assert answered.status_code == 200


@pytest.mark.usefixtures("fresh_rate_window")
def test_the_request_rate_limit_says_when_to_retry(app):
    app.config["ADMIN_RATE_LIMIT"] = 1
    client = app.test_client()
    client.get("/admin/api/surveys", headers=ADMIN)
    refused = client.get("/admin/api/surveys", headers=ADMIN)
    assert refused.status_code == 429 and 0 < int(refused.headers["Retry-After"]) <= 60


# --- item 5: no personal data in logs or Redis --------------------------------------------


def test_mask_phone_keeps_the_country_and_hides_the_last_four_digits():
    from bot.logmask import mask_phone, mask_phones

    assert mask_phone("+447700900123") == "+44770090****"
    assert mask_phone("0123") == "****"
    assert (
        mask_phones("The 'To' number +447700900123 is not valid; nor is 07700 900456.")
        == "The 'To' number +44770090**** is not valid; nor is 07700 90****."
    )
    assert mask_phones("message 12 failed after 3 attempts") == (
        "message 12 failed after 3 attempts"
    )


def test_a_failing_webhook_logs_neither_the_number_nor_the_text(
    client, database, monkeypatch, caplog
):
    from sqlalchemy import text as sql

    from bot.conversations import inbox

    def broken(session, *args, **kwargs):
        # A statement that fails with the person's number and words among its parameters.
        session.execute(
            sql("SELECT * FROM no_such_table WHERE a = :phone AND b = :body"),
            {"phone": "+447700900123", "body": "my bad knee"},
        )

    monkeypatch.setattr(inbox, "_decide", broken)
    caplog.set_level("INFO")
    response = post_twilio(client, PUBLIC, SMS, sms_params("my bad knee"))
    assert response.status_code == 200
    logged = caplog.text
    assert "+447700900123" not in logged and "my bad knee" not in logged


def test_database_errors_do_not_carry_their_parameters(database):
    # Wherever such an error is logged or reported (admin API, worker, error tracker), the
    # statement's parameters (numbers, words) are not in its text.
    import pytest
    from sqlalchemy import text as sql
    from sqlalchemy.exc import DBAPIError

    with pytest.raises(DBAPIError) as caught, database.session() as session:
        session.execute(
            sql("SELECT * FROM no_such_table WHERE a = :phone AND b = :body"),
            {"phone": "+447700900123", "body": "my bad knee"},
        )
    assert "no_such_table" in str(caught.value)
    assert "+447700900123" not in str(caught.value) and "my bad knee" not in str(caught.value)


def _store_a_refused_row(url: str, body: str = "about my bad knee") -> None:
    """A write the database refuses while quoting it: a reply with no channel (NOT NULL)."""
    from bot.storage.db import Database

    database = Database(url)
    try:
        with database.session() as session:
            session.add(Message(direction="out", channel=None, kind="reply", body=body))
    finally:
        database.dispose()


def fail_quoting_a_participant(url: str) -> None:
    """An rq job that fails the same way."""
    _store_a_refused_row(url)


def _postgresql_only(database) -> None:
    import pytest

    if not database.url.startswith("postgresql"):
        pytest.skip("SQLite's errors quote no values; PostgreSQL's do")


def test_what_postgresql_quotes_of_a_refused_row_is_not_logged(database, caplog):
    import logging

    import pytest
    from sqlalchemy.exc import IntegrityError

    from bot import logmask

    _postgresql_only(database)
    logmask.install()
    caplog.set_level("INFO")
    log = logging.getLogger("involve.test")
    words = "about my bad knee; I can't walk far"  # not on a line a traceback shows
    with pytest.raises(IntegrityError) as caught:
        _store_a_refused_row(database.url, words)
    # SQLAlchemy hides the parameters, but PostgreSQL's DETAIL quotes the row itself.
    assert "I can't walk far" in str(caught.value)
    try:
        raise caught.value
    except IntegrityError as exc:
        log.exception("could not store it")
        log.warning("could not store it: %s", exc)
        log.warning("could not store it: %r", exc)  # a repr escapes the apostrophe
    stored = caught.value
    log.warning("later, outside the except block: %s", stored)
    log.warning("later, as a repr: %r", stored)
    log.warning("later, formatted by the caller: " + str(stored))
    assert "walk far" not in caplog.text and "bad knee" not in caplog.text
    assert (
        caplog.text.count("could not store it") == 3
        and caplog.text.count("later,") == 3
        and 'column "channel"' in caplog.text
    )
    assert "Failing row contains (values hidden)" in caplog.text


def test_a_value_postgresql_quotes_in_its_message_is_not_logged(database, caplog):
    import logging

    import pytest
    from sqlalchemy import text as sql
    from sqlalchemy.exc import DataError

    from bot import logmask

    _postgresql_only(database)
    logmask.install()
    caplog.set_level("INFO")
    with pytest.raises(DataError) as caught, database.session() as session:
        session.execute(sql("SELECT CAST(:answer AS integer)"), {"answer": "my bad knee"})
    assert "my bad knee" in str(caught.value)
    logging.getLogger("involve.test").warning("could not read it: %s", caught.value)
    assert "my bad knee" not in caplog.text
    assert "invalid input syntax for type integer: (values hidden)" in caplog.text


def test_quotes_are_hidden_by_their_wording_where_the_exception_is_not_at_hand():
    from bot.logmask import redact

    assert (
        redact("DETAIL:  Key (phone)=(+447700900123) already exists.")
        == "DETAIL:  Key (phone)=(values hidden)"
    )
    hidden = redact("IntegrityError('DETAIL:  Failing row contains (1, I can\\'t walk far).')")
    assert "walk far" not in hidden and "Failing row contains (values hidden)" in hidden
    # A deadlock's DETAIL names processes and transactions, no one's data: kept for debugging.
    deadlock = "DETAIL:  Process 12 waits for ShareLock on transaction 34."
    assert redact(deadlock) == deadlock


def test_a_failed_job_keeps_no_quoted_row_in_redis_or_the_worker_log(
    database, redis_conn, tmp_path
):
    import logging

    from rq import Queue
    from rq.job import Job

    from bot import logmask
    from bot.conversations import outbox
    from tests.conftest import run_worker

    _postgresql_only(database)
    logmask.install()
    # The job runs in a forked work horse, which writes through the handlers it inherits.
    worker_log = tmp_path / "worker.log"
    handler = logging.FileHandler(worker_log)
    logging.getLogger().addHandler(handler)
    try:
        job = Queue(outbox.QUEUE, connection=redis_conn).enqueue(
            fail_quoting_a_participant, database.url
        )
        run_worker(redis_conn)
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
    failed = Job.fetch(job.id, connection=redis_conn).latest_result()
    assert failed is not None and failed.type == failed.Type.FAILED
    assert "IntegrityError" in failed.exc_string
    assert "bad knee" not in failed.exc_string
    logged = worker_log.read_text()
    assert "IntegrityError" in logged and "bad knee" not in logged


def test_a_failed_send_logs_a_masked_number(app_settings, database, twilio_fake, caplog):
    from bot.commands import jobs
    from bot.conversations import outbox
    from tests.fakes import Scripted

    twilio_fake.script.append(
        Scripted(
            status=400,
            code=21211,
            message="The 'To' number +447700900123 is not a valid phone number.",
        )
    )
    with database.session() as session:
        person = people.person(session, phone="+447700900123", name="Ann", opted_out=False)
        message_id = outbox.add(session, person, "sms", "About your knee", "reply").id
    caplog.set_level("INFO")
    outcome = jobs.send_messages([message_id])
    assert "+447700900123" not in caplog.text
    assert "+447700900123" not in str(outcome) and "About your knee" not in str(outcome)


def test_send_jobs_leave_no_message_text_or_number_in_redis(
    app_settings, database, redis_conn, twilio_fake
):
    from bot.conversations import outbox
    from tests.conftest import run_worker
    from tests.fakes import Scripted

    twilio_fake.script.append(
        Scripted(
            status=400,
            code=21211,
            message="The 'To' number +447700900999 is not valid: About your hip",
        )
    )
    ids = []
    with database.session() as session:
        for phone in ("+447700900999", "+447700900123"):
            person = people.person(session, phone=phone, name="Ann", opted_out=False)
            ids.append(outbox.add(session, person, "sms", "About your hip", "reply").id)
    outbox.dispatch(redis_conn, [(i, None) for i in ids])
    run_worker(redis_conn)
    assert len(twilio_fake.sends()) == 2
    kept = []
    for key in redis_conn.scan_iter():
        kind = redis_conn.type(key)
        if kind == b"string":
            kept.append(repr(redis_conn.get(key)))
        elif kind == b"hash":
            kept.append(repr(redis_conn.hgetall(key)))
        elif kind == b"stream":
            for _, fields in redis_conn.xrange(key):
                kept.append(repr(fields))
                if b"return_value" in fields:  # rq keeps results as base64 pickles
                    kept.append(repr(pickle.loads(base64.b64decode(fields[b"return_value"]))))
    everything = "\n".join(kept)
    assert "About your hip" not in everything and "7700900" not in everything


# --- item 8: staff templates are bounded and cannot reach each other --------------------


def _refused_quickly(source: str, context: dict | None = None, within: float = 3.0) -> str:
    import pytest

    from bot.scripts import templates

    started = time.perf_counter()
    with pytest.raises(templates.TemplateProblem) as caught:
        templates.render(source, context or {"name": "Ann"})
    assert time.perf_counter() - started < within, source
    return str(caught.value)


def test_nested_loops_stop_at_the_time_limit():
    problem = _refused_quickly(
        "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}"
    )
    assert "took too long" in problem


def test_loops_over_a_string_without_calls_stop_too():
    _refused_quickly(
        "{% set s = 'abcdefghij' * 100 %}"
        "{% for a in s %}{% for b in s %}{% for c in s %}{% endfor %}{% endfor %}{% endfor %}"
    )


def test_huge_powers_and_products_are_refused():
    for source in (
        "{{ 9 ** (9 ** 9) }}",
        "{{ 10 ** 1000000 }}",
        "{{ 'x' * 100000000 }}",
        "{{ [1] * 100000000 }}",
        "{{ 'x' | center(1000000000) }}",
        "{{ 'x'.ljust(1000000000) }}",
        "{{ '%1000000000d' % 1 }}",
        "{{ '{:>1000000000}'.format(1) }}",
    ):
        _refused_quickly(source, within=1.0)


def test_output_is_capped():
    problem = _refused_quickly("{% for i in range(100000) %}{{ name }} {% endfor %}")
    assert "too long" in problem


def test_runtime_errors_in_a_template_are_a_problem_not_a_crash():
    for source in (
        "{{ 1 / 0 }}",
        "{{ name + 1 }}",
        "{% set name.x = 1 %}",
        "{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}",
        "{{ 2.0 ** 5000 }}",
    ):
        _refused_quickly(source)


def test_one_render_cannot_change_what_the_next_person_reads():
    from bot.scripts import templates

    shared = {"title": "Your health, your way was chosen by 61% of 212 people"}
    source = "{{ summary.setdefault('who', name) }} {{ summary.who }}"
    problem = None
    seen = []
    for name in ("Ann", "Bob"):
        try:
            seen.append(templates.render(source, {"name": name, "summary": shared}))
        except templates.TemplateProblem as exc:
            problem = str(exc)
    assert seen == [] and problem is not None
    assert shared == {"title": "Your health, your way was chosen by 61% of 212 people"}
    for source in (
        "{{ summary.update(title='changed') }}",
        "{{ answers.pop('title') }}",
        "{{ tags.append('x') }}",
    ):
        context = {"name": "Ann", "summary": dict(shared), "answers": {"title": "a"}, "tags": []}
        _refused_quickly(source, context)


def test_a_runaway_feedback_template_is_a_400_and_the_app_carries_on(client, database):
    from tests.test_feedback import OUTCOMES, PANEL

    client.post("/admin/api/participants", json=PANEL, headers=ADMIN)
    campaign_id = _campaign_with_answers(database)
    started = time.perf_counter()
    response = client.post(
        f"/admin/api/campaigns/{campaign_id}/feedback",
        json={
            "message": "{% for a in range(99999) %}{% for b in range(99999) %}{% endfor %}"
            "{% endfor %}{{ name }}",
            "outcomes": OUTCOMES,
            "dry_run": True,
        },
        headers=ADMIN,
    )
    assert response.status_code == 400 and "took too long" in response.json["error"]
    assert time.perf_counter() - started < 5
    ok = client.post(
        f"/admin/api/campaigns/{campaign_id}/feedback",
        json={"message": "Hello {{ name }}", "outcomes": OUTCOMES, "dry_run": True},
        headers=ADMIN,
    )
    assert ok.status_code == 200 and len(ok.json["recipients"]) == 4


# --- item 9: ordinary staff input that used to be a 500 ---------------------------------


def _import_csv(client, text: str | bytes):
    return client.post(
        "/admin/api/participants",
        data=text.encode() if isinstance(text, str) else text,
        headers={**ADMIN, "Content-Type": "text/csv"},
    )


def test_a_csv_with_old_mac_line_endings_imports(client, database):
    response = _import_csv(
        client, "name,phone,external_id\rAnn,07700 900001,A\rBob,07700 900002,B\r"
    )
    assert response.status_code == 200, response.json
    assert (response.json["created"], response.json["rejected"]) == (2, [])


def test_a_csv_field_over_128_kb_is_a_reported_row_not_a_500(client, database):
    big = "x" * (200 * 1024)
    response = _import_csv(
        client,
        f"name,phone,external_id\nAnn,07700 900001,A\n{big},07700 900002,B\nCy,07700 900003,C\n",
    )
    assert response.status_code == 200, response.json
    assert response.json["created"] >= 1
    (problem,) = [r for r in response.json["rejected"] if r["row"] == 3]
    assert "too long" in problem["error"]


def test_deeply_nested_json_is_a_400(client):
    deep = "[" * 100_000 + "]" * 100_000
    for path in ("/admin/api/participants", "/admin/api/campaigns"):
        response = client.post(
            path, data=deep, headers={**ADMIN, "Content-Type": "application/json"}
        )
        assert response.status_code == 400, path
        assert "nested" in response.json["error"]


def test_send_at_at_the_ends_of_the_calendar_is_a_400(client):
    for send_at in (
        "0001-01-01T00:00:00+14:00",
        "0001-01-01T00:00:00",
        "9999-12-31T23:59:59-12:00",
        "9999-12-31T23:59:59",
    ):
        response = client.post(
            "/admin/api/campaigns",
            json={"survey": "guide-title", "audience": {"all": True}, "send_at": send_at},
            headers=ADMIN,
        )
        assert response.status_code == 400, (send_at, response.json)
        assert "send_at" in response.json["error"]


def test_a_nul_in_a_participant_key_is_not_found(client):
    for method in (client.get, client.delete):
        response = method("/admin/api/participants/ab%00cd", headers=ADMIN)
        assert response.status_code == 404


# --- item 10: numbers in responses.csv stay numbers ---------------------------------------


def test_only_what_a_spreadsheet_would_run_is_defused():
    from bot.cycle.exports import defuse

    for plain in ("-2", "+447700900999", "-2.5", "+0.5", "1e5", "hello", "", "2-3"):
        assert defuse(plain) == plain, plain
    for formula in ("=1+1", "-2+3", "@SUM(A1)", "+A1", "-A1*2", '=HYPERLINK("x")', "\t=1", "\r=1"):
        assert defuse(formula) == "'" + formula, formula


def test_a_signed_text_with_a_nul_in_its_message_sid_is_kept_not_500(client, database):
    sid = "SM\x00" + "a" * 20
    response = post_twilio(client, PUBLIC, SMS, sms_params("TITLE", sid=sid))
    assert response.status_code == 200
    with database.session() as session:
        kept = session.scalars(select(Message).where(Message.direction == "in")).one()
        assert kept.body == "TITLE" and kept.status == "error" and "\x00" not in kept.provider_id


def test_a_chunked_body_with_no_length_is_cut_off_at_the_limit(client, database):
    import io

    from tests.fakes import sign

    # Behind gunicorn a chunked upload declares no length; werkzeug must stop reading at the cap.
    body = b"Body=" + b"x" * (10 * 1024 * 1024)
    started = time.perf_counter()
    response = client.post(
        SMS,
        input_stream=io.BytesIO(body),
        content_type="application/x-www-form-urlencoded",
        headers={"X-Twilio-Signature": sign(PUBLIC + SMS, {"Body": "x"})},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.status_code == 413
    assert time.perf_counter() - started < 0.5
    assert count(database, Message) == 0


def test_rendering_everyones_feedback_has_a_total_time_limit(client, database, monkeypatch):
    from bot.cycle import feedback
    from bot.scripts import templates

    client.post(
        "/admin/api/participants",
        json={"participants": [{"phone": f"07700 90000{i}", "recontact": "yes"} for i in range(3)]},
        headers=ADMIN,
    )
    campaign_id = _campaign_with_answers(database)
    slow = templates.render

    def a_little_slow(source, context):
        time.sleep(0.05)
        return slow(source, context)

    monkeypatch.setattr(templates, "render", a_little_slow)
    monkeypatch.setattr(feedback, "PLAN_TIME_LIMIT", 0.01)
    response = client.post(
        f"/admin/api/campaigns/{campaign_id}/feedback",
        json={"message": "Hello {{ name }}", "dry_run": True},
        headers=ADMIN,
    )
    assert response.status_code == 400 and "took too long" in response.json["error"]


def _campaign_with_answers(database) -> int:
    from bot.commands import runtime
    from bot.cycle import campaigns
    from bot.storage.models import Answer, Conversation

    with database.session() as session:
        campaign, _ = campaigns.create(
            session,
            {"survey": "guide-title", "audience": {"all": True}},
            runtime.library().surveys(),
            runtime.settings(),
        )
        for person in session.scalars(select(Participant)):
            person.recontact = True
            conv = Conversation(
                participant_id=person.id,
                campaign_id=campaign.id,
                survey_version_id=campaign.survey_version_id,
                channel="sms",
                status="completed",
                state={},
            )
            session.add(conv)
            session.flush()
            session.add(
                Answer(
                    conversation_id=conv.id,
                    participant_id=person.id,
                    question_id="title",
                    value="your-health",
                    label="Your health, your way",
                    channel="sms",
                )
            )
            # Their own yes to the survey's recontact question: an import's flag alone is not
            # consent to hear back (issue 21 item 16).
            session.add(
                Answer(
                    conversation_id=conv.id,
                    participant_id=person.id,
                    question_id="recontact",
                    value="yes",
                    label="Yes",
                    channel="sms",
                )
            )
        return campaign.id


def test_signed_status_callbacks_with_odd_ids_are_204_not_500(client):
    from tests.fakes import status_params

    for path, params in (
        (STATUS + "?m=" + "9" * 30, status_params("SM1", "delivered")),
        (STATUS, status_params("SM\x00x", "delivered")),
        (STATUS, status_params("SM" + "a" * 200, "failed", error_code="2" * 50)),
    ):
        response = post_twilio(client, PUBLIC, path, params)
        assert response.status_code == 204, path


def test_a_bug_while_handling_a_text_logs_where_it_failed_but_not_what_it_said(
    client, database, monkeypatch, caplog
):
    from bot.conversations import inbox

    def buggy(session, settings, person, conv, channel, received, *rest):
        # A bug whose message quotes what the person sent (the stack's lines do not).
        raise ValueError(f"could not read {received.text!r} from {received.address}")

    monkeypatch.setattr(inbox, "_decide", buggy)
    caplog.set_level("INFO")
    assert post_twilio(client, PUBLIC, SMS, sms_params("my bad knee")).status_code == 200
    logged = caplog.text
    assert "ValueError" in logged and "in buggy" in logged  # the stack, for whoever fixes it
    assert "my bad knee" not in logged and "+447700900123" not in logged
