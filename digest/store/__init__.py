"""Storage: the SQLAlchemy models, engines and sessions, dialect differences,
the suppression list, and the Alembic migrations (``store/migrations``)."""
