"""link secrets: every link names one subscriber forever; ids are never reused

Revision ID: 0008
Revises: 0004
Create Date: 2026-12-02 03:00:00

- ``subscribers.link_secret``: a random secret per subscriber, inside the MAC of every
  link and signed mail address made for them (``subscriptions.tokens``,
  ``subscriptions.mailtokens``). An old link whose id now names somebody else (a
  deleted row's id handed out again, a database restored from a backup) no longer
  verifies. Each existing row gets its own random value here.
- SQLite: ``subscribers`` and ``topics`` are recreated with AUTOINCREMENT (all rows,
  ids, indexes and the foreign keys pointing at them are kept), so a deleted
  subscriber's id, or a removed topic's (named by "stop this topic" links), is never
  handed out again. PostgreSQL sequences never hand an id out twice already.
- ``app_meta.links_bound_at``: when this ran (epoch seconds). An unsubscribe link
  issued before then carries the old MAC; it keeps working for the row it was issued
  for (a row created before the link), so leaving works from any email ever sent.
"""

import secrets
import time
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_CHUNK = 5000
LINKS_BOUND_AT = "links_bound_at"


def _fill_secrets(connection: sa.Connection) -> None:
    subscribers = sa.table(
        "subscribers", sa.column("id", sa.Integer), sa.column("link_secret", sa.String)
    )
    ids = [row[0] for row in connection.execute(sa.select(subscribers.c.id))]
    statement = (
        subscribers.update()
        .where(subscribers.c.id == sa.bindparam("row_id"))
        .values(link_secret=sa.bindparam("secret"))
    )
    for start in range(0, len(ids), _CHUNK):
        # Python's CSPRNG, not the database's random(): these are keys, not samples.
        rows = [
            {"row_id": row_id, "secret": secrets.token_urlsafe(32)}
            for row_id in ids[start : start + _CHUNK]
        ]
        connection.execute(statement, rows)


def upgrade() -> None:
    connection = op.get_bind()
    sqlite = connection.dialect.name == "sqlite"
    if sqlite and connection.exec_driver_sql("PRAGMA foreign_keys").scalar():
        # Recreating the table drops the old one, and with foreign keys on, SQLite
        # deletes (cascades) every topic and digest of every subscriber with it.
        raise RuntimeError("run this migration with PRAGMA foreign_keys=OFF")
    with op.batch_alter_table("subscribers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("link_secret", sa.String(length=64), nullable=True))
    _fill_secrets(connection)
    if sqlite:
        with op.batch_alter_table(
            "subscribers",
            schema=None,
            recreate="always",
            table_kwargs={"sqlite_autoincrement": True},
        ) as batch_op:
            batch_op.alter_column("link_secret", existing_type=sa.String(length=64), nullable=False)
        with op.batch_alter_table(
            "topics",
            schema=None,
            recreate="always",
            table_kwargs={"sqlite_autoincrement": True},
        ):
            pass  # nothing changes but the table's AUTOINCREMENT
    else:
        op.alter_column(
            "subscribers", "link_secret", existing_type=sa.String(length=64), nullable=False
        )
    meta = sa.table("app_meta", sa.column("key", sa.String), sa.column("value", sa.Text))
    connection.execute(meta.delete().where(meta.c.key == LINKS_BOUND_AT))
    connection.execute(meta.insert().values(key=LINKS_BOUND_AT, value=str(int(time.time()))))


def downgrade() -> None:
    meta = sa.table("app_meta", sa.column("key", sa.String), sa.column("value", sa.Text))
    op.get_bind().execute(meta.delete().where(meta.c.key == LINKS_BOUND_AT))
    with op.batch_alter_table("subscribers", schema=None) as batch_op:
        batch_op.drop_column("link_secret")
