"""a campaign may move people whose address cannot take its channel to another channel

`campaigns.move_unsuited_to`: the channel people are invited on instead when their address on
the campaign's channel cannot take it (a landline, for texts), chosen by staff at launch.
Nullable, no default: campaigns already here invite everyone as before.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 21:30:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("campaigns") as batch:
        batch.add_column(sa.Column("move_unsuited_to", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("campaigns") as batch:
        batch.drop_column("move_unsuited_to")
