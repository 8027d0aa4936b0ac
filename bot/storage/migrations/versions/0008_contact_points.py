"""contact points: a person's addresses become rows, one per channel, each with its own state

`participants.phone` becomes one contact point for each channel that reaches a phone number
(a text and a call: a landline that cannot take texts is still called), and
`participants.telegram_chat_id` a `telegram` one (the chat id as text). Each person's are
numbered in their preferred order: their own `channel` first, then texts, calls, Telegram (the
registry's order when this was written). When each address last wrote to us is read from the
messages kept. Then both columns go (SQLite rebuilds the table, in batch mode). Nothing is
lost: erased people, whose columns were empty, get none.

The channel names are written out here, not read from the registry: a migration must do the
same thing whatever the code that runs it says later.

Downgrade puts the first number (texts first, then calls) and the Telegram chat back in the
columns; addresses the old columns cannot hold (another channel's, a number over 20
characters) and the contact points' state are lost.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 09:00:00.000000

"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
PHONE_CHANNELS = ("sms", "voice")  # the channels whose address is the phone number
ORDER = ("sms", "voice", "telegram")  # the registry's order in 0008
BATCH = 1000

participants = sa.table(
    "participants",
    sa.column("id", Id),
    sa.column("phone", sa.String()),
    sa.column("telegram_chat_id", sa.BigInteger()),
    sa.column("channel", sa.String()),
)
contact_points = sa.table(
    "contact_points",
    sa.column("id", Id),
    sa.column("participant_id", Id),
    sa.column("channel", sa.String()),
    sa.column("address", sa.String()),
    sa.column("position", sa.Integer()),
    sa.column("last_inbound_at", sa.DateTime(timezone=True)),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("updated_at", sa.DateTime(timezone=True)),
)
messages = sa.table(
    "messages",
    sa.column("participant_id", Id),
    sa.column("direction", sa.String()),
    sa.column("channel", sa.String()),
    sa.column("address", sa.String()),
    sa.column("created_at", sa.DateTime(timezone=True)),
)


def _now(bind: sa.Connection) -> datetime:
    # As the models store times: naive UTC on SQLite, aware on PostgreSQL.
    now = datetime.now(UTC)
    return now.replace(tzinfo=None) if bind.dialect.name == "sqlite" else now


def addresses_in_order(
    phone: str | None, chat_id: int | None, preferred: str | None
) -> list[tuple[str, str]]:
    """(channel, address) for one person's old columns, their preferred channel first."""
    found = [(name, phone) for name in PHONE_CHANNELS if phone]
    if chat_id is not None:
        found.append(("telegram", str(chat_id)))
    return sorted(found, key=lambda point: (point[0] != preferred, ORDER.index(point[0])))


def upgrade() -> None:
    op.create_table(
        "contact_points",
        sa.Column("id", Id, nullable=False),
        sa.Column("participant_id", Id, nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("position", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("verified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("unreachable_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("unreachable_reason", sa.String(length=200), nullable=True),
        sa.Column("opted_out_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("opted_out_reason", sa.String(length=200), nullable=True),
        sa.Column("last_inbound_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["participant_id"], ["participants.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("channel", "address", name="uq_contact_points_channel_address"),
    )
    op.create_index(op.f("ix_contact_points_participant_id"), "contact_points", ["participant_id"])
    bind = op.get_bind()
    now = _now(bind)
    last = 0
    while True:
        people = bind.execute(
            sa.select(
                participants.c.id,
                participants.c.phone,
                participants.c.telegram_chat_id,
                participants.c.channel,
            )
            .where(
                participants.c.id > last,
                sa.or_(
                    participants.c.phone.isnot(None), participants.c.telegram_chat_id.isnot(None)
                ),
            )
            .order_by(participants.c.id)
            .limit(BATCH)
        ).all()
        if not people:
            break
        last = people[-1].id
        rows = [
            {
                "participant_id": person.id,
                "channel": channel,
                "address": address,
                "position": position,
                "created_at": now,
                "updated_at": now,
            }
            for person in people
            for position, (channel, address) in enumerate(
                addresses_in_order(person.phone, person.telegram_chat_id, person.channel)
            )
        ]
        if rows:
            bind.execute(contact_points.insert(), rows)
    # When each address last wrote to us, from the messages kept (a reply window reads it).
    bind.execute(
        contact_points.update().values(
            last_inbound_at=sa.select(sa.func.max(messages.c.created_at))
            .where(
                messages.c.participant_id == contact_points.c.participant_id,
                messages.c.direction == "in",
                messages.c.channel == contact_points.c.channel,
                messages.c.address == contact_points.c.address,
            )
            .scalar_subquery()
        )
    )
    # SQLite rebuilds the table (batch mode; `env.py` holds foreign keys off meanwhile).
    with op.batch_alter_table("participants") as batch:
        batch.drop_column("phone")
        batch.drop_column("telegram_chat_id")


def downgrade() -> None:
    with op.batch_alter_table("participants") as batch:
        batch.add_column(sa.Column("phone", sa.String(length=20), nullable=True))
        batch.add_column(sa.Column("telegram_chat_id", sa.BigInteger(), nullable=True))
        batch.create_unique_constraint("uq_participants_phone", ["phone"])
        batch.create_unique_constraint("uq_participants_telegram_chat_id", ["telegram_chat_id"])
    bind = op.get_bind()
    found = bind.execute(
        sa.select(
            contact_points.c.participant_id, contact_points.c.channel, contact_points.c.address
        ).order_by(contact_points.c.participant_id, contact_points.c.position, contact_points.c.id)
    ).all()
    numbers: dict[tuple[int, str], str] = {}
    chats: dict[int, int] = {}
    for person_id, channel, address in found:
        if channel in PHONE_CHANNELS and len(address) <= 20:
            numbers.setdefault((person_id, channel), address)
        elif channel == "telegram" and address.lstrip("-").isdigit():
            chats.setdefault(person_id, int(address))
    taken: set[str] = set()
    for person_id in sorted({p for p, _ in numbers} | set(chats)):
        phone = next(
            (n for c in PHONE_CHANNELS if (n := numbers.get((person_id, c))) not in (None, *taken)),
            None,
        )
        if phone is not None:
            taken.add(phone)  # the old column held a number once: a second holder loses it
        bind.execute(
            participants.update()
            .where(participants.c.id == person_id)
            .values(phone=phone, telegram_chat_id=chats.get(person_id))
        )
    op.drop_index(op.f("ix_contact_points_participant_id"), table_name="contact_points")
    op.drop_table("contact_points")
