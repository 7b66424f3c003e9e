"""operator: feed source tags, the transport's answer per digest, resends

Revision ID: 0007
Revises: 0005
Create Date: 2026-12-01 09:00:00

- ``feeds.source``: the tag a feed's papers carry in ``papers.sources`` and that
  ``source:`` queries match. Filled for existing feeds with the tag their papers
  already carry (``arxiv``, ``hf``, or a generic feed's host), so no stored paper and
  no saved topic changes meaning.
- ``digests.reply``: the transport's last answer (the SMTP server's reply, or the
  outbox file), for ``digest digests show``.
- ``digest_resends``: one row per resend an admin asked for, holding what the digest
  row said before it was sent again (its Message-ID, status, answer, attempts).
"""

from collections.abc import Sequence
from urllib.parse import urlsplit

import sqlalchemy as sa
from alembic import op

import digest.store.models

revision: str = "0007"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BUILT_IN = {"arxiv-rss": "arxiv", "arxiv-api": "arxiv", "hf-daily": "hf"}


def _host(url: str) -> str:
    # The same rule as digest.ingest.sources.ids.host_of at the time of this migration
    # (copied: a migration must not change when the code does).
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        host = ""
    return host.removeprefix("www.")


def upgrade() -> None:
    with op.batch_alter_table("feeds", schema=None) as batch_op:
        batch_op.add_column(sa.Column("source", sa.String(length=100), nullable=True))
    feeds = sa.table(
        "feeds",
        sa.column("id", sa.Integer),
        sa.column("url", sa.String),
        sa.column("kind", sa.String),
        sa.column("source", sa.String),
    )
    connection = op.get_bind()
    rows = connection.execute(sa.select(feeds.c.id, feeds.c.url, feeds.c.kind)).all()
    for feed_id, url, kind in rows:
        tag = _BUILT_IN.get(kind) or _host(url) or f"feed-{feed_id}"
        connection.execute(feeds.update().where(feeds.c.id == feed_id).values(source=tag[:100]))
    with op.batch_alter_table("feeds", schema=None) as batch_op:
        batch_op.alter_column("source", existing_type=sa.String(length=100), nullable=False)
        batch_op.create_index(batch_op.f("ix_feeds_source"), ["source"], unique=False)

    with op.batch_alter_table("digests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reply", sa.Text(), nullable=True))

    op.create_table(
        "digest_resends",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("digest_id", sa.Integer(), nullable=False),
        sa.Column("requested_at", digest.store.models.UTCDateTime(), nullable=False),
        sa.Column("requested_by", sa.String(length=200), nullable=False),
        sa.Column("previous_status", sa.String(length=20), nullable=False),
        sa.Column("previous_message_id", sa.String(length=300), nullable=True),
        sa.Column("previous_sent_at", digest.store.models.UTCDateTime(), nullable=True),
        sa.Column("previous_finished_at", digest.store.models.UTCDateTime(), nullable=True),
        sa.Column("previous_attempts", sa.Integer(), nullable=False),
        sa.Column("previous_smtp_code", sa.Integer(), nullable=True),
        sa.Column("previous_reply", sa.Text(), nullable=True),
        sa.Column("previous_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["digest_id"],
            ["digests.id"],
            name=op.f("fk_digest_resends_digest_id_digests"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_digest_resends")),
    )
    with op.batch_alter_table("digest_resends", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_digest_resends_digest_id"), ["digest_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("digest_resends", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_digest_resends_digest_id"))
    op.drop_table("digest_resends")
    with op.batch_alter_table("digests", schema=None) as batch_op:
        batch_op.drop_column("reply")
    with op.batch_alter_table("feeds", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_feeds_source"))
        batch_op.drop_column("source")
