"""inbound mail: messages received, bounces and complaints, readers' steering signals

Revision ID: 0005
Revises: 0002
Create Date: 2026-12-01 22:24:45.164915
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import digest.store.models

revision: str = "0005"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "inbound_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("received_at", digest.store.models.UTCDateTime(), nullable=False),
        sa.Column("dedupe_key", sa.String(length=64), nullable=False),
        sa.Column("envelope_from", sa.String(length=320), nullable=False),
        sa.Column("recipient", sa.String(length=320), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("from_addr", sa.String(length=320), nullable=True),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("message_id", sa.String(length=300), nullable=True),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("raw", sa.LargeBinary(), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "received",
                "acted",
                "done",
                "ignored",
                "failed",
                name="inbound_status",
                native_enum=False,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("action", sa.String(length=30), nullable=True),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("subscriber_id", sa.Integer(), nullable=True),
        sa.Column("digest_id", sa.Integer(), nullable=True),
        sa.Column("reply_to", sa.String(length=320), nullable=True),
        sa.Column("reply_key", sa.String(length=320), nullable=True),
        sa.Column("reply", sa.JSON(), nullable=True),
        sa.Column("replied_at", digest.store.models.UTCDateTime(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("claimed_until", digest.store.models.UTCDateTime(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("finished_at", digest.store.models.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["digest_id"],
            ["digests.id"],
            name=op.f("fk_inbound_messages_digest_id_digests"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name=op.f("fk_inbound_messages_subscriber_id_subscribers"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbound_messages")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_inbound_messages_dedupe_key")),
    )
    with op.batch_alter_table("inbound_messages", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_inbound_messages_received_at"), ["received_at"], unique=False
        )
        batch_op.create_index(
            "ix_inbound_messages_reply_key", ["reply_key", "received_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_inbound_messages_status"), ["status"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_inbound_messages_subscriber_id"), ["subscriber_id"], unique=False
        )

    op.create_table(
        "reader_signals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("value", sa.String(length=300), nullable=False),
        sa.Column("terms", sa.JSON(), nullable=False),
        sa.Column("paper_id", sa.Integer(), nullable=True),
        sa.Column("digest_id", sa.Integer(), nullable=True),
        sa.Column("created_at", digest.store.models.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["digest_id"],
            ["digests.id"],
            name=op.f("fk_reader_signals_digest_id_digests"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["paper_id"],
            ["papers.id"],
            name=op.f("fk_reader_signals_paper_id_papers"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name=op.f("fk_reader_signals_subscriber_id_subscribers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reader_signals")),
        sa.UniqueConstraint(
            "subscriber_id", "kind", "value", name="uq_reader_signals_subscriber_kind_value"
        ),
    )
    with op.batch_alter_table("reader_signals", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_reader_signals_subscriber_id"), ["subscriber_id"], unique=False
        )

    op.create_table(
        "bounces",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("received_at", digest.store.models.UTCDateTime(), nullable=False),
        sa.Column("inbound_id", sa.Integer(), nullable=True),
        sa.Column("digest_id", sa.Integer(), nullable=True),
        sa.Column("subscriber_id", sa.Integer(), nullable=True),
        sa.Column("email_key", sa.String(length=320), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=40), nullable=True),
        sa.Column("action", sa.String(length=40), nullable=True),
        sa.Column("diagnostic", sa.Text(), nullable=True),
        sa.Column("detector", sa.String(length=40), nullable=False),
        sa.Column("points", sa.Float(), nullable=False),
        sa.Column("suppressed", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["digest_id"],
            ["digests.id"],
            name=op.f("fk_bounces_digest_id_digests"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["inbound_id"],
            ["inbound_messages.id"],
            name=op.f("fk_bounces_inbound_id_inbound_messages"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name=op.f("fk_bounces_subscriber_id_subscribers"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bounces")),
    )
    with op.batch_alter_table("bounces", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_bounces_digest_id"), ["digest_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_bounces_email_key"), ["email_key"], unique=False)
        batch_op.create_index(batch_op.f("ix_bounces_received_at"), ["received_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_bounces_subscriber_id"), ["subscriber_id"], unique=False
        )

    with op.batch_alter_table("digests", schema=None) as batch_op:
        batch_op.create_index("ix_digests_message_id", ["message_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("digests", schema=None) as batch_op:
        batch_op.drop_index("ix_digests_message_id")

    with op.batch_alter_table("bounces", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_bounces_subscriber_id"))
        batch_op.drop_index(batch_op.f("ix_bounces_received_at"))
        batch_op.drop_index(batch_op.f("ix_bounces_email_key"))
        batch_op.drop_index(batch_op.f("ix_bounces_digest_id"))

    op.drop_table("bounces")
    with op.batch_alter_table("reader_signals", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reader_signals_subscriber_id"))

    op.drop_table("reader_signals")
    with op.batch_alter_table("inbound_messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_inbound_messages_subscriber_id"))
        batch_op.drop_index(batch_op.f("ix_inbound_messages_status"))
        batch_op.drop_index("ix_inbound_messages_reply_key")
        batch_op.drop_index(batch_op.f("ix_inbound_messages_received_at"))

    op.drop_table("inbound_messages")
