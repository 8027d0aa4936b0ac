"""channel fallback and a gap between invitations, per campaign

`campaigns.fallback_after_hours`: invite people not reached on one contact point on their next
one, this many hours after their invitation (None: never). `campaigns.invite_gap_days`: leave
out people another campaign invited in the last this many days (None: the INVITE_GAP_DAYS
setting). Each invitation keeps the channel it was first sent on, when it last moved to a next
contact point, and why it moves no further. All nullable, no default: campaigns already here
behave as before (no fallback; the setting's gap applies to their later launches only).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 13:10:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import bot.storage.models

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("campaigns") as batch:
        batch.add_column(sa.Column("fallback_after_hours", sa.Double(), nullable=True))
        batch.add_column(sa.Column("invite_gap_days", sa.Integer(), nullable=True))
    with op.batch_alter_table("invitations") as batch:
        batch.add_column(sa.Column("fallback_from", sa.String(length=16), nullable=True))
        batch.add_column(
            sa.Column("fallback_at", bot.storage.models.UTCDateTime(timezone=True), nullable=True)
        )
        batch.add_column(sa.Column("fallback_end", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("invitations") as batch:
        batch.drop_column("fallback_end")
        batch.drop_column("fallback_at")
        batch.drop_column("fallback_from")
    with op.batch_alter_table("campaigns") as batch:
        batch.drop_column("invite_gap_days")
        batch.drop_column("fallback_after_hours")
