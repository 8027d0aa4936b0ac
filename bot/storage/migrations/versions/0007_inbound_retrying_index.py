"""an index of the inbound messages waiting to be handled again, by sender

Every message a person sends first asks whether an earlier one of theirs is waiting for a
retry; without this index that question read every inbound message on the channel, so each
text cost more than the last. Partial: it holds only the (rare) waiting rows.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26 06:00:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WAITING = sa.text("status = 'retrying' AND direction = 'in'")


def upgrade() -> None:
    op.create_index(
        "ix_messages_inbound_retrying",
        "messages",
        ["channel", "address"],
        sqlite_where=WAITING,
        postgresql_where=WAITING,
    )


def downgrade() -> None:
    op.drop_index("ix_messages_inbound_retrying", table_name="messages")
