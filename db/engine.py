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
busy, for a bounded time, then DatabaseBusy. On SQLite, write() callers take turns in order of arrival before
they begin, so fifty writers neither poll the database nor starve: across threads and processes where the
system has open-file-description locks (Linux: _WriterTurns), else among the threads of one process
(_ThreadTurns: macOS, BSD, Windows); WRITER_TURNS names the one chosen at start-up for the log. A full or
read-only disk answers CannotWrite in words, with nothing saved.
"""
from __future__ import annotations

import os
import random
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

from core import settings
from db.errors import CANNOT_WRITE_MESSAGE, CannotWrite, DatabaseBusy
from db.limits import WRITE_TIMEOUT_S

try:
    import fcntl
except ImportError:                       # Windows
    fcntl = None
OFD_LOCKS = hasattr(fcntl, "F_OFD_SETLKW")   # Linux; macOS and the BSDs have only per-process locks
WRITER_TURNS = ("in order of arrival across threads and processes (open-file-description locks)" if OFD_LOCKS else
                "in order of arrival within this process only (no open-file-description locks on this system)")

T = TypeVar("T")
BUSY_TIMEOUT_MS = 30_000     # a write transaction outside write() (scripts, training jobs) waits this long
BUSY_MESSAGE = "The database is busy with other reviewers' work: nothing was saved. Try again in a moment."
SQLITE_BUSY, SQLITE_LOCKED = 5, 6
SQLITE_CANNOT_WRITE = (8, 10, 13, 14)   # READONLY, IOERR, FULL, CANTOPEN
PG_CANNOT_WRITE = ("53", "58")          # insufficient resources (disk full), system error (I/O)
TURN_POLL_S = 0.001                  # how often the next SQLite writer looks whether its turn has come
FIRST_PAUSE_S, MAX_PAUSE_S = 0.01, 1.0   # pauses before a retry: random, doubling up to the maximum
PG_RETRY_STATES = ("40001", "40P01", "55P03")   # serialization failure, deadlock, lock not available
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def make_engine(url: str | None = None, **kwargs) -> Engine:
    """An Engine for `url` (default: core.settings.db_url(), from the environment). A SQLite file and its
    folder are created on first use.

    Extra keyword arguments go to sqlalchemy.create_engine (e.g. echo=True).
    """
    url = make_url(url or settings.db_url())
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

    with _read_only(engine).connect() as connection:        # a reader: never waits for a writer
        return MigrationContext.configure(connection).get_current_revision()


class _WriterTurns:
    """Turns at writing one SQLite file, first come first served across threads and processes: a ticket
    lock in the lock file beside the database. A writer draws the next number from a counter kept in the
    file's first 8 bytes and locks byte 8 + its number (Linux open-file-description locks: one per open
    of the file, so two threads of one process exclude each other like two processes do); its turn has
    come when no lower number is still locked. SQLite's own busy handler sleeps ever longer between
    tries, so the database stood idle between writers and unlucky ones starved; a turn test is one cheap
    system call. A writer that gives up, finishes or dies closes its file, and the kernel drops its
    lock: no turn can stick. The file stays 8 bytes long (locks may lie past its end)."""

    def __init__(self, database: str):
        self.lock_file = database + "-writers"

    def take(self, deadline: float) -> int | None:
        """Wait for a turn until `deadline` (time.monotonic()); the turn's file descriptor (hand it to
        give_back), or None when the turn did not come. CannotWrite when the lock file cannot be used."""
        try:
            fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as err:
            raise CannotWrite(f"{CANNOT_WRITE_MESSAGE} ({err.strerror}: {self.lock_file})") from err
        try:
            ticket = self._draw(fd)
            while True:
                ahead = _conflict(fd, TICKETS_AT, TICKETS_AT + ticket)
                if ahead is None:
                    return fd
                if time.monotonic() >= deadline:
                    os.close(fd)
                    return None
                time.sleep(TURN_POLL_S if ahead == TICKETS_AT + ticket - 1 else TURN_POLL_S * 4)
        except OSError as err:
            os.close(fd)
            raise CannotWrite(f"{CANNOT_WRITE_MESSAGE} ({err.strerror}: {self.lock_file})") from err
        except BaseException:
            os.close(fd)
            raise

    @staticmethod
    def _draw(fd: int) -> int:
        """The next ticket, its byte locked while the counter is (so a later ticket always sees it)."""
        _lock(fd, fcntl.F_WRLCK, 0, TICKETS_AT, wait=True)
        try:
            while True:                # a number still locked (the counter was reset or torn) is skipped
                raw = os.pread(fd, TICKETS_AT, 0)
                ticket = int.from_bytes(raw, "little") if len(raw) == TICKETS_AT else 0
                ticket = ticket if ticket < MAX_TICKET else 0
                os.pwrite(fd, (ticket + 1).to_bytes(TICKETS_AT, "little"), 0)
                if _lock(fd, fcntl.F_WRLCK, TICKETS_AT + ticket, 1, wait=False):
                    return ticket
        finally:
            _lock(fd, fcntl.F_UNLCK, 0, TICKETS_AT, wait=True)

    def give_back(self, fd: int) -> None:
        os.close(fd)                           # drops the ticket's lock: the next writer's turn


class _ThreadTurns:
    """Turns at writing one SQLite file, first come first served among this process's threads: the
    fallback where open-file-description locks are missing. The web server's writers are its threads, so
    its reviewers still take turns in order; another process (a training job, the command line) waits
    for SQLite's own write lock (BEGIN IMMEDIATE with its busy timeout), safely but not in order."""

    def __init__(self):
        self._changed = threading.Condition()
        self._queue: deque[object] = deque()     # one token per writer, in order of arrival; the first writes

    def take(self, deadline: float) -> object | None:
        """Wait for a turn until `deadline` (time.monotonic()); the turn (hand it to give_back), or None
        when the turn did not come."""
        turn = object()
        with self._changed:
            self._queue.append(turn)
            while self._queue[0] is not turn:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._queue.remove(turn)            # never first: the writers behind keep their places
                    return None
                self._changed.wait(remaining)
            return turn

    def give_back(self, turn: object) -> None:
        with self._changed:
            self._queue.remove(turn)
            self._changed.notify_all()          # the next writer's turn


TICKETS_AT = 8                   # the counter's bytes; ticket n locks byte TICKETS_AT + n
MAX_TICKET = 2 ** 62             # a torn counter past this restarts at 0 (file offsets end at 2**63)


def _flock_struct(kind: int, start: int, length: int) -> bytes:
    return struct.pack("hhxxxxqqixxxx", kind, os.SEEK_SET, start, length, 0)


def _lock(fd: int, kind: int, start: int, length: int, wait: bool) -> bool:
    """Take (or with F_UNLCK drop) an open-file-description lock on bytes [start, start + length);
    False when another holder has them and wait is False."""
    try:
        fcntl.fcntl(fd, fcntl.F_OFD_SETLKW if wait else fcntl.F_OFD_SETLK, _flock_struct(kind, start, length))
        return True
    except (BlockingIOError, PermissionError):      # EAGAIN or EACCES: another holder has them
        if wait:
            raise
        return False


def _conflict(fd: int, start: int, end: int) -> int | None:
    """The first byte of a lock another holder keeps within [start, end), None when there is none."""
    if end <= start:
        return None
    answer = fcntl.fcntl(fd, fcntl.F_OFD_GETLK, _flock_struct(fcntl.F_WRLCK, start, end - start))
    kind, _, found, *_ = struct.unpack("hhxxxxqqixxxx", answer)
    return None if kind == fcntl.F_UNLCK else found


_TURNS: dict[str, _WriterTurns | _ThreadTurns] = {}     # one per SQLite file in this process, made on first write


def _turns(engine: Engine) -> _WriterTurns | _ThreadTurns | None:
    """The turns of a SQLite file (None for other databases, whose locks queue writers fairly)."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:" or database.startswith("file:"):
        return None
    path = str(Path(database).resolve())
    return _TURNS.get(path) or _TURNS.setdefault(path, _WriterTurns(path) if OFD_LOCKS else _ThreadTurns())


def _busy(err: Exception) -> bool:
    """Whether an error means "other writers are in the way" (the transaction did nothing; try again)."""
    if isinstance(err, PoolTimeout):
        return True
    orig = getattr(err, "orig", None) if isinstance(err, DBAPIError) else None
    code = getattr(orig, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (SQLITE_BUSY, SQLITE_LOCKED)
    return getattr(orig, "sqlstate", None) in PG_RETRY_STATES


def _cannot_write(err: Exception) -> bool:
    """Whether an error means the disk refused the write (full, read-only, failing): no retry helps."""
    orig = getattr(err, "orig", None) if isinstance(err, DBAPIError) else None
    code = getattr(orig, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in SQLITE_CANNOT_WRITE
    return (getattr(orig, "sqlstate", None) or "").startswith(PG_CANNOT_WRITE)


def write(sessions: sessionmaker[Session], work: Callable[[Session], T], timeout_s: float | None = None) -> T:
    """Run work(session) as one write transaction, commit, and return what work returned.

    Waiting for other writers is bounded: timeout_s seconds in all (default db.limits.WRITE_TIMEOUT_S),
    then DatabaseBusy, with nothing saved. On SQLite the writer first waits for its turn (_WriterTurns)
    and keeps it through any retries. While the database is busy (SQLite's lock taken by a writer outside
    write(), a PostgreSQL deadlock or lock timeout) the whole transaction is rolled back and run again
    after a random, growing pause; work may thus run more than once, so it must only read and write
    through the session (its writes are undone before a retry). A disk that is full or read-only raises
    CannotWrite (nothing saved), after one more try on fresh SQLite connections (_reopen); any other error
    is raised as it is.
    """
    deadline = time.monotonic() + (WRITE_TIMEOUT_S if timeout_s is None else timeout_s)
    engine = sessions.kw["bind"]
    turns = _turns(engine)
    turn = turns.take(deadline) if turns is not None else None
    if turns is not None and turn is None:
        raise DatabaseBusy(BUSY_MESSAGE)
    try:
        pause, reopened = FIRST_PAUSE_S, False
        while True:
            try:
                with sessions.begin() as session:
                    _bound_waits(session, deadline - time.monotonic())
                    return work(session)
            except (DBAPIError, PoolTimeout) as err:
                if _cannot_write(err) and engine.dialect.name == "sqlite" and not reopened:
                    _reopen(engine)
                    reopened = True
                    continue
                if _cannot_write(err):
                    raise CannotWrite(CANNOT_WRITE_MESSAGE) from err
                if not _busy(err):
                    raise
                if time.monotonic() + pause >= deadline:
                    raise DatabaseBusy(BUSY_MESSAGE) from err
            time.sleep(random.uniform(pause / 2, pause))
            pause = min(pause * 2, MAX_PAUSE_S)
    finally:
        if turn is not None:
            turns.give_back(turn)


def _reopen(engine: Engine) -> None:
    """Close the pool's SQLite connections: one opened while its folder was read-only stays read-only for
    its life (SQLite falls back to reading without a word), so a server started on a read-only folder
    would refuse every save after the folder became writable again. The next transaction opens afresh."""
    engine.dispose()


def _bound_waits(session: Session, remaining_s: float) -> None:
    """Make the transaction give up waiting for a lock when the time is up: SQLite's busy timeout (set as
    the transaction begins), PostgreSQL's lock_timeout (for this transaction only)."""
    wait_ms = max(1, int(remaining_s * 1000))
    if session.get_bind().dialect.name == "sqlite":
        session.connection(execution_options={"affectlens_busy_ms": wait_ms})
    elif session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT set_config('lock_timeout', :ms, true)"), {"ms": str(wait_ms)})
