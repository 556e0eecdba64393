"""Writers' turns on SQLite (db.engine._WriterTurns): taken in order of arrival, and none can stick -- a lock
file that cannot be opened answers in words and the next save goes through once it can; a writer killed
during its turn leaves the next one waiting no longer."""
import os
import signal
import threading
import time

import pytest
from test_db_concurrency import SPAWN
from test_db_engine import count, db_url, engine, sessions  # noqa: F401  (fixtures)

from db import repo
from db.engine import make_engine, make_session_factory, write


# Turns are taken on SQLite only (PostgreSQL queues writers itself): these tests run on a SQLite file.
pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def test_turns_go_in_order_of_arrival(engine, sessions):
    repo_ready, order = threading.Event(), []
    first = threading.Thread(target=write, args=(sessions, lambda s: (repo_ready.set(), time.sleep(1.0))))
    first.start()
    assert repo_ready.wait(10)
    threads = []
    for n in range(6):                      # arrive one after another while the first writer holds its turn
        threads.append(threading.Thread(target=write, args=(sessions, lambda s, n=n: order.append(n))))
        threads[-1].start()
        time.sleep(0.05)
    for thread in [first] + threads:
        thread.join(timeout=30)
    assert order == list(range(6))


def test_a_lock_file_that_cannot_be_opened_says_so_and_does_not_stick(engine, sessions):
    lock_file = engine.url.database + "-writers"
    write(sessions, lambda s: repo.get_or_create_reviewer(s, "alice"))
    os.remove(lock_file)
    os.mkdir(lock_file)                     # as good as a read-only folder: the open fails (EISDIR)
    started = time.monotonic()
    with pytest.raises(repo.ValidationError) as info:
        write(sessions, lambda s: repo.get_or_create_reviewer(s, "bob"))
    assert time.monotonic() - started < 1
    assert str(info.value).startswith("The server cannot write its data folder: nothing was saved.")
    os.rmdir(lock_file)
    started = time.monotonic()
    write(sessions, lambda s: repo.get_or_create_reviewer(s, "bob"))
    assert time.monotonic() - started < 1
    assert count(engine, "reviewers") == 2


def take_a_turn_and_hang(url: str, holding) -> None:
    """Child process: hold a writer's turn (and SQLite's write lock) until killed."""
    sessions = make_session_factory(make_engine(url))
    write(sessions, lambda s: (repo.get_or_create_reviewer(s, "zoe"), holding.set(), time.sleep(600)))


def test_a_writer_killed_during_its_turn_does_not_block_the_next(db_url, engine, sessions):
    holding = SPAWN.Event()
    child = SPAWN.Process(target=take_a_turn_and_hang, args=(db_url, holding))
    child.start()
    try:
        assert holding.wait(60)
        os.kill(child.pid, signal.SIGKILL)
        child.join(timeout=30)
    finally:
        if child.is_alive():
            child.kill()
    started = time.monotonic()
    write(sessions, lambda s: repo.get_or_create_reviewer(s, "alice"))
    assert time.monotonic() - started < 2
    assert count(engine, "reviewers") == 1                     # the killed writer's reviewer was rolled back
