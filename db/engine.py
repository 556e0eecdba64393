"""Opening the database: which URL, connection settings that make SQLite safe for several writers, and
schema migrations (Alembic, to head) so that an existing database survives an upgrade.

URL: the argument, else env AFFECTLENS_DB_URL, else sqlite:///<AFFECTLENS_DATA_DIR or ./data>/affectlens.db.
Any SQLAlchemy URL works, e.g. postgresql+psycopg://user:password@host/dbname for a team server or a hosted
Space (whose local disk does not persist).

SQLite connections get foreign keys on and the WAL journal (readers never wait for the writer) with
synchronous=NORMAL: a commit is not flushed to the disk on its own, only at checkpoints, which halves the
time a write holds the lock; the database stays intact after any crash, but a power cut or an operating
system crash may lose the last commits before it (SQLite's recommended setting for WAL). A write
transaction starts with BEGIN IMMEDIATE, so two writers queue for the write lock at the start instead of
one failing with "database is locked" half way through (a transaction that read first cannot wait for the
lock later), and waits at most 30 s for it (write() sets its own bound). Sessions that only read
(make_session_factory(engine, read_only=True)) start with a plain BEGIN, never wait for a writer and
cannot write: SQLite's query_only, PostgreSQL's READ ONLY transactions.

Writes that people wait for go through write(): one transaction, retried whole while the database is
busy, for a bounded time, then DatabaseBusy.
"""
from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

from db.errors import DatabaseBusy
from db.limits import WRITE_TIMEOUT_S

T = TypeVar("T")
BUSY_TIMEOUT_MS = 30_000     # a write transaction outside write() (scripts, training jobs) waits this long
BUSY_MESSAGE = "The database is busy with other reviewers' work: nothing was saved. Try again in a moment."
SQLITE_BUSY, SQLITE_LOCKED = 5, 6
# A write tries SQLite's lock for ATTEMPT_WAIT_S (its busy handler polls ever more slowly, at last every
# 100 ms, which leaves the lock idle between writers of different processes), then pauses at random, at
# most MAX_PAUSE_S, and tries again.
ATTEMPT_WAIT_S, MAX_PAUSE_S = 0.05, 0.02
PG_RETRY_STATES = ("40001", "40P01", "55P03")   # serialization failure, deadlock, lock not available
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
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        # Both pragmas are set on every begin: a pooled connection must not keep the last user's settings.
        options = connection.get_execution_options()
        if options.get("affectlens_read_only", False):
            connection.exec_driver_sql("PRAGMA query_only = 1")
            connection.exec_driver_sql("BEGIN")
        else:
            connection.exec_driver_sql("PRAGMA query_only = 0")
            connection.exec_driver_sql(f"PRAGMA busy_timeout = {options.get('affectlens_busy_ms', BUSY_TIMEOUT_MS)}")
            connection.exec_driver_sql("BEGIN IMMEDIATE")


def _read_only(engine: Engine) -> Engine:
    """The same engine for transactions that only read: they start without SQLite's write lock, so they
    neither wait for nor block writers, and any write inside one is refused by the database."""
    options = {"affectlens_read_only": True}
    if engine.dialect.name == "postgresql":
        options["postgresql_readonly"] = True
    return engine.execution_options(**options)


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


# One lock per SQLite file and process: threads of one process take turns in it instead of all polling
# the file (SQLite's busy handler sleeps up to 100 ms between tries, so polling writers starve).
_SQLITE_WRITERS: dict[str, threading.Lock] = {}


def _writer_lock(engine: Engine) -> threading.Lock | None:
    if engine.dialect.name != "sqlite":
        return None
    return _SQLITE_WRITERS.setdefault(str(Path(engine.url.database or ":memory:").resolve()), threading.Lock())


def _busy(err: Exception) -> bool:
    """Whether an error means "other writers are in the way" (the transaction did nothing; try again)."""
    if isinstance(err, PoolTimeout):
        return True
    orig = getattr(err, "orig", None) if isinstance(err, DBAPIError) else None
    code = getattr(orig, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (SQLITE_BUSY, SQLITE_LOCKED)
    return getattr(orig, "sqlstate", None) in PG_RETRY_STATES


def write(sessions: sessionmaker[Session], work: Callable[[Session], T], timeout_s: float | None = None) -> T:
    """Run work(session) as one write transaction, commit, and return what work returned.

    While the database is busy with other writers the whole transaction is rolled back and run again
    after a random, growing pause, for at most timeout_s seconds in all (default db.limits.WRITE_TIMEOUT_S);
    then DatabaseBusy: nothing was saved. work may thus run more than once, so it must only read and
    write through the session (its writes are undone before a retry). Any other error is raised as it is.
    """
    deadline = time.monotonic() + (WRITE_TIMEOUT_S if timeout_s is None else timeout_s)
    lock = _writer_lock(sessions.kw["bind"])
    pause = 0.002
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or (lock is not None and not lock.acquire(timeout=remaining)):
            raise DatabaseBusy(BUSY_MESSAGE)
        try:
            with sessions.begin() as session:
                busy_ms = max(1, int(min(remaining, ATTEMPT_WAIT_S) * 1000))
                session.connection(execution_options={"affectlens_busy_ms": busy_ms})
                return work(session)
        except (DBAPIError, PoolTimeout) as err:
            if not _busy(err):
                raise
            if time.monotonic() + pause >= deadline:
                raise DatabaseBusy(BUSY_MESSAGE) from err
        finally:
            if lock is not None:
                lock.release()
        time.sleep(random.uniform(0, pause))
        pause = min(pause * 2, MAX_PAUSE_S)
