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
