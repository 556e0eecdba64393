"""Several reviewers writing at once: threads and processes submitting flags and corrections (each one
twice, racing itself, like a double click) into one database, fifty writers beside processes that keep
every core busy, writes that meet a busy or deadlocked database, readers beside writers, and a writer
killed in the middle of a transaction. Every submission must be stored exactly once, a write waits a
bounded time and then says that nothing was saved, and the database must stay intact."""
import multiprocessing
import os
import random
import signal
import threading
import time

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError
from test_db_engine import count, db_url, engine, sessions  # noqa: F401  (fixtures)

from db import repo
from db.engine import make_engine, make_session_factory, write
from db.limits import WRITE_TIMEOUT_S
from db.models import Flag

FRAMES = 1000
REVIEWERS = ("alice", "bob", "carol", "dave")
# Children fork from a clean server process (no inherited connections or threads) that has the heavy
# imports done already, so that starting one costs milliseconds rather than a second or two.
SPAWN = multiprocessing.get_context("forkserver")
SPAWN.set_forkserver_preload(["pytest", "alembic.command", "db.repo", "db.export"])


def make_submissions(n: int, tag: str) -> list[dict]:
    """n distinct submissions, half flags and half corrections; half carry a client key, the others
    are deduplicated by their content."""
    subs = []
    for i in range(n):
        sub = {"kind": "flag" if i % 2 == 0 else "correction", "start": i, "end": i + 5,
               "reviewer": REVIEWERS[i % len(REVIEWERS)], "key": f"{tag}-{i}" if i % 4 < 2 else None}
        subs.append(sub)
    return subs


def submit(sessions, sub: dict) -> None:
    with sessions.begin() as session:
        if sub["kind"] == "flag":
            repo.add_flag(session, "v", "va", sub["start"], sub["end"], "ambiguous", sub["reviewer"],
                          note=f"flag {sub['start']}", idempotency_key=sub["key"])
        else:
            repo.add_correction(session, "v", "expr", sub["start"], sub["end"], sub["start"] % 8, sub["reviewer"],
                                idempotency_key=sub["key"])


def prepare(sessions) -> None:
    with sessions.begin() as session:
        for name in REVIEWERS:
            repo.get_or_create_reviewer(session, name)
        repo.register_video(session, "v", FRAMES, 30.0)


def assert_stored_once(engine, subs: list[dict]) -> None:
    flags = [s for s in subs if s["kind"] == "flag"]
    corrections = [s for s in subs if s["kind"] == "correction"]
    assert count(engine, "flags") == len(flags)
    assert count(engine, "corrections") == len(corrections)
    assert count(engine, "audit_events") == len(subs)          # one "flagged" / "proposed" event each
    with make_session_factory(engine)() as session:
        stored_flags = {(f.start_frame, f.reviewer.name, f.note) for f in repo.list_flags(session)}
        stored_corrections = {(c.start_frame, c.reviewer.name, c.value["expression"])
                              for c in repo.list_corrections(session)}
    assert stored_flags == {(s["start"], s["reviewer"], f"flag {s['start']}") for s in flags}
    assert stored_corrections == {(s["start"], s["reviewer"], s["start"] % 8) for s in corrections}


def test_threads_write_at_once_and_each_submission_is_stored_once(engine, sessions):
    prepare(sessions)
    subs = make_submissions(48, "thread")
    n_threads, errors = 8, []
    start = threading.Barrier(n_threads)

    def work(t: int) -> None:
        # Threads t and t+4 send the same quarter of the submissions, in different orders: every
        # submission arrives twice, often at the same moment.
        mine = subs[t % 4::4]
        random.Random(t).shuffle(mine)
        try:
            start.wait()
            with sessions.begin() as session:
                repo.get_or_create_reviewer(session, "newcomer")      # all threads create one reviewer
            for sub in mine:
                submit(sessions, sub)
        except Exception as err:  # noqa: BLE001  (reported below with the thread)
            errors.append((t, repr(err)))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert_stored_once(engine, subs)
    assert count(engine, "reviewers") == len(REVIEWERS) + 1


def test_concurrent_reviews_of_one_correction_record_one_decision(engine, sessions):
    prepare(sessions)
    with sessions.begin() as session:
        correction = repo.add_correction(session, "v", "va", 0, 9, (0.5, 0.5), "alice")
    reviewers = REVIEWERS[1:] * 2                     # bob, carol and dave accept, each with a double click
    start, errors = threading.Barrier(len(reviewers)), []

    def work(name: str) -> None:
        try:
            start.wait()
            with sessions.begin() as session:
                repo.decide_correction(session, correction.id, video="v", reviewer=name, accept=True)
        except Exception as err:  # noqa: BLE001
            errors.append(repr(err))

    threads = [threading.Thread(target=work, args=(name,)) for name in reviewers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    with sessions() as session:
        events = repo.history(session, correction=correction.id)
        stored = repo.list_corrections(session)[0]
    assert [e.action for e in events] == ["proposed", "accepted"]
    assert stored.status == "accepted" and stored.reviewed_by.name == events[1].reviewer.name


def write_in_process(url: str, subs: list[dict], start) -> None:
    """Child process: its own engine, waits for the others, then submits."""
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    start.wait(timeout=60)
    for sub in subs:
        submit(sessions, sub)
    engine.dispose()


def test_processes_write_at_once_and_each_submission_is_stored_once(db_url, engine, sessions):
    prepare(sessions)
    subs = make_submissions(40, "process")
    n_procs = 4
    start = SPAWN.Barrier(n_procs)
    procs = []
    for p in range(n_procs):
        mine = subs[p % 2::2]                         # processes p and p+2 send the same half
        random.Random(p).shuffle(mine)
        procs.append(SPAWN.Process(target=write_in_process, args=(db_url, mine, start)))
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
    assert [proc.exitcode for proc in procs] == [0] * n_procs
    assert_stored_once(engine, subs)


def hold_a_write_open(url: str, committed: int, uncommitted: int, stage) -> None:
    """Child process: commits some flags, then writes more inside a transaction it never finishes."""
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    for i in range(committed):
        with sessions.begin() as session:
            repo.add_flag(session, "v", "va", i, i, "occluded", "alice", idempotency_key=f"committed-{i}")
    stage.put("committed")
    session = sessions()
    if engine.dialect.name == "sqlite":
        # A tiny page cache makes SQLite spill the uncommitted pages into the WAL file before the kill.
        session.execute(sa.text("PRAGMA cache_size = 2"))
    for i in range(uncommitted):
        repo.add_flag(session, "v", "va", i, i, "other", "bob", note="x" * 2000, idempotency_key=f"open-{i}")
    session.flush()
    stage.put("holding")
    time.sleep(600)


def test_a_writer_killed_mid_transaction_leaves_the_database_intact(db_url, engine, sessions):
    prepare(sessions)
    stage = SPAWN.Queue()
    child = SPAWN.Process(target=hold_a_write_open, args=(db_url, 5, 300, stage))
    child.start()
    try:
        assert stage.get(timeout=60) == "committed"
        wal = engine.url.database + "-wal" if engine.dialect.name == "sqlite" else None
        wal_before = os.path.getsize(wal) if wal else 0
        assert stage.get(timeout=60) == "holding"
        if wal:
            assert os.path.getsize(wal) > wal_before + 300_000     # the open transaction reached the disk
        started = time.monotonic()
        assert count(engine, "flags") == 5                         # readers see only committed rows...
        assert time.monotonic() - started < 5                      # ...and do not wait for the writer
        os.kill(child.pid, signal.SIGKILL)
        child.join(timeout=30)
    finally:
        if child.is_alive():
            child.kill()
    assert child.exitcode == -signal.SIGKILL

    engine.dispose()                                               # fresh connections, as after a crash
    if engine.dialect.name == "sqlite":
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
            assert connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall() == []
    with sessions() as session:
        keys = sorted(session.scalars(sa.select(Flag.idempotency_key)))
    assert keys == [f"committed-{i}" for i in range(5)]
    assert count(engine, "audit_events") == 5
    started = time.monotonic()
    with sessions.begin() as session:                              # the dead writer's lock is gone
        repo.add_flag(session, "v", "va", 10, 20, "no face", "carol")
    assert time.monotonic() - started < 5
    assert count(engine, "flags") == 6


# ---------------------------------------------------------------------------------------------------
# Bounded waits: write() and read-only sessions


def hold_the_write_lock(sessions, seconds: float, held: threading.Event) -> None:
    """Thread: keep a write transaction open for `seconds` with the lock every writer needs (SQLite's
    write lock; on PostgreSQL the training_jobs table), then roll it back."""
    with sessions() as session:
        if session.get_bind().dialect.name == "sqlite":
            session.execute(sa.text("SELECT 1"))                     # BEGIN IMMEDIATE: the write lock
        else:
            session.execute(sa.text("LOCK TABLE training_jobs IN EXCLUSIVE MODE"))
        held.set()
        time.sleep(seconds)
        session.rollback()


def blocker(sessions, seconds: float) -> threading.Thread:
    held = threading.Event()
    thread = threading.Thread(target=hold_the_write_lock, args=(sessions, seconds, held))
    thread.start()
    assert held.wait(10)
    return thread


def test_a_write_waits_while_the_database_is_busy_and_stores_once(engine, sessions):
    thread = blocker(sessions, 1.0)
    started = time.monotonic()
    job = write(sessions, lambda s: repo.create_job(s, preset="ddamfn-va"), timeout_s=10)
    waited = time.monotonic() - started
    thread.join()
    assert 0.8 < waited < 5
    assert job.id == 1 and count(engine, "training_jobs") == 1


def test_a_write_busy_for_longer_than_its_limit_saves_nothing_and_says_so(engine, sessions):
    thread = blocker(sessions, 3.0)
    started = time.monotonic()
    with pytest.raises(repo.DatabaseBusy) as info:
        write(sessions, lambda s: repo.create_job(s, preset="ddamfn-va"), timeout_s=0.5)
    waited = time.monotonic() - started
    thread.join()
    assert 0.4 < waited < 2
    assert "busy" in str(info.value) and "nothing was saved" in str(info.value)
    assert isinstance(info.value, repo.ValidationError)        # the page shows it like any refusal
    assert count(engine, "training_jobs") == 0
    write(sessions, lambda s: repo.create_job(s, preset="ddamfn-va"))      # and the next try goes through
    assert count(engine, "training_jobs") == 1


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)   # SQLite locks before a transaction starts
def test_a_deadlocked_write_is_retried_whole_and_stored_once(engine, sessions):
    """PostgreSQL breaks a deadlock by failing one transaction half way through; write() rolls all of it
    back (the job it had added) and runs it again, so the job is stored once."""
    with sessions.begin() as session:
        for name in ("alice", "bob"):
            repo.get_or_create_reviewer(session, name)
    lock = "SELECT id FROM reviewers WHERE name = :name FOR UPDATE"
    work_waits, calls = threading.Event(), []

    def other_writer():
        with sessions.begin() as session:
            session.execute(sa.text(lock), {"name": "alice"})
            assert work_waits.wait(10)
            time.sleep(0.2)                                  # work waits for alice first: it is the victim
            session.execute(sa.text(lock), {"name": "bob"})

    def work(session):
        calls.append(1)
        job = repo.create_job(session, preset="ddamfn-va")
        session.execute(sa.text(lock), {"name": "bob"})
        work_waits.set()
        session.execute(sa.text(lock), {"name": "alice"})
        return job

    thread = threading.Thread(target=other_writer)
    thread.start()
    time.sleep(0.2)                                          # the other writer holds alice
    job = write(sessions, work, timeout_s=20)
    thread.join()
    assert len(calls) >= 2                # once deadlocked; retried at once, it may meet the other writer again
    assert count(engine, "training_jobs") == 1 and job.id == len(calls)    # earlier attempts' jobs undone


def test_reads_do_not_wait_for_a_writer_and_cannot_write(engine, sessions):
    with sessions.begin() as session:
        repo.register_video(session, "v", FRAMES, 30.0)
        repo.add_flag(session, "v", "va", 0, 1, "occluded", repo.get_or_create_reviewer(session, "alice"))
    readers = make_session_factory(engine, read_only=True)
    thread = blocker(sessions, 3.0)
    started = time.monotonic()
    with readers.begin() as session:
        assert [e.action for e in repo.history(session, video="v")] == ["flagged"]
        assert len(repo.list_flags(session, "v")) == 1
    assert time.monotonic() - started < 1
    thread.join()
    with pytest.raises(DBAPIError, match="readonly|read-only"), readers.begin() as session:
        repo.add_flag(session, "v", "va", 2, 3, "occluded", "alice")
    assert count(engine, "flags") == 1


# ---------------------------------------------------------------------------------------------------
# Fifty writers while every core is busy


# A web server with 25 reviewers (threads of one process) beside 25 scripts (a process each): 50 writers,
# 30 corrections each. Turns go by arrival, not by process, so the threads get their share.
WRITER_THREADS = (25,) + (1,) * 25
ITEMS = 30
CPU_HOGS = 4


def burn(stop) -> None:
    """Child process: keep a core busy until told to stop."""
    while not stop.is_set():
        sum(range(10_000))


def write_corrections(url: str, first: int, n_threads: int, start, results) -> None:
    """Child process: n_threads writers (numbered from `first`), each proposing ITEMS corrections
    through write(); reports (refusals, waits in seconds)."""
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    errors, waits = [], []

    def writer(w: int) -> None:
        for i in range(ITEMS):
            frame = w * ITEMS + i
            started = time.monotonic()
            try:
                write(sessions, lambda s: repo.add_correction(s, "busy", "expr", frame, frame, frame % 8,
                                                              REVIEWERS[w % 4], note=f"writer {w}"))
            except Exception as err:  # noqa: BLE001  (reported to the test)
                errors.append(f"writer {w} item {i}: {err!r}")
            waits.append(time.monotonic() - started)

    threads = [threading.Thread(target=writer, args=(first + t,)) for t in range(n_threads)]
    start.wait(timeout=60)
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    engine.dispose()
    results.put((errors, waits))


def test_fifty_writers_beside_busy_cores_store_every_correction_once(db_url, engine, sessions):
    writers = sum(WRITER_THREADS)
    with sessions.begin() as session:
        for name in REVIEWERS:
            repo.get_or_create_reviewer(session, name)
        repo.register_video(session, "busy", writers * ITEMS, 30.0)
    stop, start, results = SPAWN.Event(), SPAWN.Barrier(len(WRITER_THREADS) + 1), SPAWN.Queue()
    hogs = [SPAWN.Process(target=burn, args=(stop,)) for _ in range(CPU_HOGS)]
    firsts = [sum(WRITER_THREADS[:p]) for p in range(len(WRITER_THREADS))]
    procs = [SPAWN.Process(target=write_corrections, args=(db_url, first, n, start, results))
             for first, n in zip(firsts, WRITER_THREADS)]
    try:
        for proc in hogs + procs:
            proc.start()
        start.wait(timeout=60)
        started = time.monotonic()
        reports = [results.get(timeout=120) for _ in procs]
        elapsed = time.monotonic() - started
    finally:
        stop.set()
        for proc in hogs + procs:
            proc.join(timeout=30)
    errors = [e for report, _ in reports for e in report]
    waits = sorted(w for _, report in reports for w in report)
    print(f"\n{engine.dialect.name}: {writers} writers (25 threads of one process, 25 processes) x {ITEMS} "
          f"corrections beside {CPU_HOGS} busy processes: {elapsed:.1f} s, stored {count(engine, 'corrections')}, "
          f"refused {len(errors)}, wait median {waits[len(waits) // 2]:.2f} s, 99th percentile "
          f"{waits[len(waits) * 99 // 100]:.2f} s, longest {waits[-1]:.2f} s, load {os.getloadavg()[0]:.1f}")
    assert errors == []
    assert waits[-1] < WRITE_TIMEOUT_S
    assert count(engine, "corrections") == writers * ITEMS
    assert count(engine, "audit_events") == writers * ITEMS
    with make_session_factory(engine, read_only=True)() as session:
        stored = sorted((c.start_frame, c.value["expression"], c.reviewer.name, c.note)
                        for c in repo.list_corrections(session, "busy"))
    assert stored == [(f, f % 8, REVIEWERS[(f // ITEMS) % 4], f"writer {f // ITEMS}") for f in range(writers * ITEMS)]
