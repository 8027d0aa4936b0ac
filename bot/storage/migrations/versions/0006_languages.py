"""a participant's language, and the language each answer was given in

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 04:20:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable, no default: everyone already here reads the staff language (English).
    with op.batch_alter_table("participants") as batch:
        batch.add_column(sa.Column("language", sa.String(length=8), nullable=True))
    with op.batch_alter_table("answers") as batch:
        batch.add_column(sa.Column("language", sa.String(length=8), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("answers") as batch:
        batch.drop_column("language")
    with op.batch_alter_table("participants") as batch:
        batch.drop_column("language")
