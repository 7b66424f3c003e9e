"""papers.field_sources: which source set each field of a paper

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 04:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Papers stored before have no record: merge infers their setter from where the paper
    # was seen (arXiv, Hugging Face, a generic feed), the most authoritative first.
    with op.batch_alter_table("papers") as batch:
        batch.add_column(
            sa.Column("field_sources", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
        )


def downgrade() -> None:
    with op.batch_alter_table("papers") as batch:
        batch.drop_column("field_sources")
