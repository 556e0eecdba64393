"""Opening the database: which URL, connection settings that make SQLite safe for several writers, and
schema migrations (Alembic, to head) so that an existing database survives an upgrade.

URL: the argument, else env AFFECTLENS_DB_URL, else sqlite:///<AFFECTLENS_DATA_DIR or ./data>/affectlens.db.
Any SQLAlchemy URL works, e.g. postgresql+psycopg://user:password@host/dbname for a team server or a hosted
Space (whose local disk does not persist).

SQLite connections get foreign keys on, the WAL journal (readers never wait for the writer) and a 30 s
busy timeout. A transaction starts with BEGIN IMMEDIATE, so two writers queue for the write lock at the
start instead of one failing with "database is locked" half way through (a transaction that read first
cannot wait for the lock later); sessions that only read (make_session_factory(engine, read_only=True)) use
a plain BEGIN and never wait for a writer.
"""
from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

BUSY_TIMEOUT_MS = 30_000
DB_FILE_NAME = "affectlens.db"
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def default_url(env=None) -> str:
    """The configured database URL: AFFECTLENS_DB_URL, else a SQLite file in AFFECTLENS_DATA_DIR or ./data."""
    env = os.environ if env is None else env
    if env.get("AFFECTLENS_DB_URL"):
        return env["AFFECTLENS_DB_URL"]
    data_dir = Path(env.get("AFFECTLENS_DATA_DIR") or "data")
    return f"sqlite:///{data_dir / DB_FILE_NAME}"


def make_engine(url: str | None = None, **kwargs) -> Engine:
    """An Engine for `url` (default: default_url()). A SQLite file and its folder are created on first use.

    Extra keyword arguments go to sqlalchemy.create_engine (e.g. echo=True).
    """
    url = make_url(url or default_url())
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, **kwargs)
        _configure_sqlite(engine)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        # The driver's own transaction handling is switched off; "begin" below issues BEGIN IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        read_only = connection.get_execution_options().get("affectlens_read_only", False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def _read_only(engine: Engine) -> Engine:
    """The same engine for transactions that only read: on SQLite they start without the write lock,
    so they neither wait for nor block writers (a write inside one may fail with "database is locked")."""
    return engine.execution_options(affectlens_read_only=True)


def make_session_factory(engine: Engine, read_only: bool = False) -> sessionmaker[Session]:
    """One sessionmaker per engine (and one more with read_only=True for sessions that never write:
    listing, effective labels, export). Objects stay readable after commit (web handlers return them)."""
    return sessionmaker(_read_only(engine) if read_only else engine, expire_on_commit=False)


def alembic_config(engine: Engine | None = None):
    """Alembic's Config for db/migrations, built in code (no alembic.ini needed); bound to `engine` if given."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    if engine is not None:
        config.attributes["engine"] = engine
    return config


def init_db(engine: Engine | str | None = None, revision: str = "head") -> Engine:
    """Create or upgrade the schema to `revision` (default: the newest) and return the engine.

    Safe to call on every start: an up-to-date database is left as it is, an older one is migrated with
    its rows kept. Concurrent callers are serialised (SQLite write lock, PostgreSQL advisory lock).
    """
    from alembic import command

    if not isinstance(engine, Engine):
        engine = make_engine(engine)
    command.upgrade(alembic_config(engine), revision)
    return engine


def current_revision(engine: Engine) -> str | None:
    """The schema revision the database is at (None: not initialised)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
