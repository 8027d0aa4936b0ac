from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from bot.storage import db
from bot.storage.models import Base


def test_migrations_run_up_from_empty_and_match_the_models(database_url):
    engine = db.make_engine(database_url)
    try:
        with engine.connect() as conn:
            assert MigrationContext.configure(conn).get_current_revision() is not None
            tables = set(inspect(conn).get_table_names())
            assert {
                "participants",
                "consent_events",
                "survey_versions",
                "campaigns",
                "conversations",
                "answers",
                "messages",
            } <= tables
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
            assert diff == [], diff
    finally:
        engine.dispose()


def test_upgrade_twice_is_harmless_and_reaches_head(database_url):
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(db.alembic_config(database_url)).get_current_head()
    db.upgrade(database_url)
    assert db.current_revision(database_url) == head


def test_0008_moves_every_address_to_contact_points_in_order_and_back(empty_database_url):
    """A database as revision 0007 left it, with real rows: people with a phone only, a
    Telegram chat only, both (each preferring another channel), erased people (no addresses
    left) and someone known by external id alone; upgraded, every address is a contact point
    in the person's order, with when it last wrote to us; downgraded, the columns are back."""
    from datetime import UTC, datetime

    from alembic import command
    from sqlalchemy import MetaData, Table, select

    url = empty_database_url
    db.upgrade(url, "0007")
    engine = db.make_engine(url)
    sqlite = engine.dialect.name == "sqlite"

    def at(hour: int) -> datetime:
        moment = datetime(2026, 12, 1, hour, 0, tzinfo=UTC)
        return moment.replace(tzinfo=None) if sqlite else moment

    big_chat = 2**52 - 1
    people = [
        # id, phone, telegram_chat_id, channel, erased
        (1, "+447700900001", None, None, False),
        (2, "+447700900002", None, "voice", False),
        (3, None, 987654321, "telegram", False),
        (4, "+447700900004", big_chat, "telegram", False),
        (5, "+447700900005", 555, "sms", False),
        (6, "+447700900006", 666, None, False),
        (7, None, None, None, True),  # erased: nothing left to move
        (8, None, None, "sms", False),  # an external id only
    ]
    try:
        with engine.begin() as conn:
            tables = MetaData()
            participants = Table("participants", tables, autoload_with=conn)
            messages = Table("messages", tables, autoload_with=conn)
            conn.execute(
                participants.insert(),
                [
                    {
                        "id": pid,
                        "external_id": f"P{pid}",
                        "name": None if erased else f"Person {pid}",
                        "phone": phone,
                        "telegram_chat_id": chat,
                        "channel": channel,
                        "tags": [],
                        "opted_out": erased,
                        "created_at": at(8),
                        "updated_at": at(8),
                        "erased_at": at(9) if erased else None,
                    }
                    for pid, phone, chat, channel, erased in people
                ],
            )
            common = {
                "kind": "inbound",
                "status": "processed",
                "attempts": 0,
                "updated_at": at(14),
            }
            conn.execute(
                messages.insert(),
                [
                    {"participant_id": 1, "direction": "in", "channel": "sms",
                     "address": "+447700900001", "created_at": at(10), **common},
                    {"participant_id": 1, "direction": "in", "channel": "sms",
                     "address": "+447700900001", "created_at": at(11), **common},
                    {"participant_id": 1, "direction": "out", "channel": "sms",
                     "address": "+447700900001", "created_at": at(12), **common},
                    {"participant_id": 3, "direction": "in", "channel": "telegram",
                     "address": "987654321", "created_at": at(13), **common},
                ],
            )  # fmt: skip

        db.upgrade(url)

        with engine.connect() as conn:
            columns = {c["name"] for c in inspect(conn).get_columns("participants")}
            assert not {"phone", "telegram_chat_id"} & columns
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
            tables = MetaData()
            points = Table("contact_points", tables, autoload_with=conn)
            rows = conn.execute(
                select(
                    points.c.participant_id,
                    points.c.channel,
                    points.c.address,
                    points.c.position,
                    points.c.last_inbound_at,
                ).order_by(points.c.participant_id, points.c.position)
            ).all()
        wrote = {(r.participant_id, r.channel): r.last_inbound_at for r in rows}
        assert [(r.participant_id, r.channel, r.address, r.position) for r in rows] == [
            (1, "sms", "+447700900001", 0),
            (1, "voice", "+447700900001", 1),
            (2, "voice", "+447700900002", 0),  # their own channel first
            (2, "sms", "+447700900002", 1),
            (3, "telegram", "987654321", 0),
            (4, "telegram", str(big_chat), 0),
            (4, "sms", "+447700900004", 1),
            (4, "voice", "+447700900004", 2),
            (5, "sms", "+447700900005", 0),
            (5, "voice", "+447700900005", 1),
            (5, "telegram", "555", 2),
            (6, "sms", "+447700900006", 0),  # no preference: the registry's order
            (6, "voice", "+447700900006", 1),
            (6, "telegram", "666", 2),
        ]
        assert wrote[(1, "sms")].replace(tzinfo=None) == datetime(2026, 12, 1, 11, 0)
        assert wrote[(3, "telegram")].replace(tzinfo=None) == datetime(2026, 12, 1, 13, 0)
        assert wrote[(1, "voice")] is None and wrote[(5, "sms")] is None

        command.downgrade(db.alembic_config(url), "0007")
        with engine.connect() as conn:
            participants = Table("participants", MetaData(), autoload_with=conn)
            back = conn.execute(
                select(
                    participants.c.id, participants.c.phone, participants.c.telegram_chat_id
                ).order_by(participants.c.id)
            ).all()
            assert "contact_points" not in inspect(conn).get_table_names()
        assert [tuple(r) for r in back] == [(pid, phone, chat) for pid, phone, chat, *_ in people]
    finally:
        engine.dispose()
