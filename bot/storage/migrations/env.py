"""Alembic environment: the URL comes from `bot.storage.db.alembic_config`, never from an ini file."""

from __future__ import annotations

from alembic import context

from bot.storage.db import make_engine
from bot.storage.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_offline() -> None:
    context.configure(
        url=config.attributes["database_url"],
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = make_engine(config.attributes["database_url"])
    try:
        with engine.connect() as connection:
            sqlite = connection.dialect.name == "sqlite"
            if sqlite:
                # Batch mode changes a SQLite table by copying it, dropping the old one and
                # renaming the copy; with foreign keys on, dropping a table others point at
                # fails (0008 drops columns of `participants`). The pragma cannot change
                # inside a transaction, so it is set before ours begins, on the driver, and
                # every key is checked before it is turned on again.
                connection.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")
            context.configure(
                connection=connection, target_metadata=target_metadata, render_as_batch=True
            )
            with context.begin_transaction():
                context.run_migrations()
                if sqlite:
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
                    if broken:
                        raise RuntimeError(f"a migration broke foreign keys: {broken[:5]}")
            connection.commit()
            if sqlite:
                connection.connection.driver_connection.execute("PRAGMA foreign_keys=ON")
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
