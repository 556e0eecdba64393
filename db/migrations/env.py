"""Alembic environment for the review database.

db.engine.init_db() passes its Engine in config.attributes["engine"]; without one (e.g. `python -m db`
on the command line) the configured URL is used. The whole upgrade runs in one transaction, serialised
between processes: SQLite takes its write lock at BEGIN IMMEDIATE, PostgreSQL an advisory lock.
Only SQLite and PostgreSQL are handled specially; other backends run the migrations as they are.
"""
from alembic import context

from db.engine import make_engine
from db.models import Base

MIGRATION_LOCK_ID = 74_652_001  # any constant shared by every AffectLens process


def run_migrations_offline() -> None:
    """Emit SQL for the configured URL instead of running it (alembic --sql)."""
    from core.settings import db_url

    context.configure(url=db_url(), target_metadata=Base.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = context.config.attributes.get("engine")
    own_engine = engine is None
    if own_engine:
        engine = make_engine()
    try:
        with engine.connect() as connection:
            _migrate(connection)
    finally:
        if own_engine:
            engine.dispose()


def _migrate(connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    raw = connection.connection.driver_connection
    if sqlite:
        # SQLite rebuilds a table to alter it (batch mode); with foreign keys on, dropping the old copy
        # would fail. The pragma only works outside a transaction; references are checked before commit.
        raw.execute("PRAGMA foreign_keys = OFF")
    try:
        with connection.begin():
            if connection.dialect.name == "postgresql":
                connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_ID})")
            context.configure(connection=connection, target_metadata=Base.metadata, transactional_ddl=True,
                              render_as_batch=sqlite)
            with context.begin_transaction():
                context.run_migrations()
            if sqlite:
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise RuntimeError(f"migration left broken references: {broken[:5]}")
    finally:
        if sqlite:
            raw.execute("PRAGMA foreign_keys = ON")

if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
