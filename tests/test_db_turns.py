"""Writers' turns on SQLite (db.engine._WriterTurns): taken in order of arrival, and none can stick -- a lock
file that cannot be opened answers in words and the next save goes through once it can; a writer killed
during its turn leaves the next one waiting no longer. On a system without open-file-description locks
(macOS, Windows: simulated in a child process by taking the locks, or fcntl itself, away) the turns fall
back to the threads of one process (db.engine._ThreadTurns), and the log says so."""
import os
import signal
import subprocess
import sys
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


WITHOUT_OFD_LOCKS = r"""
import sys, threading, time
if sys.argv[1] == "macos":
    import fcntl
    del fcntl.F_OFD_SETLK, fcntl.F_OFD_SETLKW, fcntl.F_OFD_GETLK
else:
    sys.modules["fcntl"] = None             # Windows: no fcntl at all
from db.engine import WRITER_TURNS, init_db, make_session_factory, write
from db.errors import DatabaseBusy

sessions = make_session_factory(init_db(sys.argv[2]))
holding, order = threading.Event(), []
first = threading.Thread(target=write, args=(sessions, lambda s: (holding.set(), time.sleep(1.0))))
first.start()
holding.wait(10)

def impatient():
    try:
        write(sessions, lambda s: order.append("impatient"), timeout_s=0.3)
    except DatabaseBusy:
        order.append("gave up")

threads = []
for n in range(6):                          # arrive one after another while the first writer holds its turn
    work = impatient if n == 2 else lambda n=n: write(sessions, lambda s: order.append(n))
    threads.append(threading.Thread(target=work))
    threads[-1].start()
    time.sleep(0.05)
for thread in [first] + threads:
    thread.join(timeout=30)
print(WRITER_TURNS)
print(order)
"""


@pytest.mark.parametrize("system", ["macos", "windows"])
def test_without_open_file_description_locks_turns_go_in_order_within_the_process(system, db_url):
    answer = subprocess.run([sys.executable, "-c", WITHOUT_OFD_LOCKS, system, db_url], capture_output=True,
                            text=True, timeout=120, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.splitlines() == [
        "in order of arrival within this process only (no open-file-description locks on this system)",
        "['gave up', 0, 1, 3, 4, 5]"]
    assert not os.path.exists(db_url.removeprefix("sqlite:///") + "-writers")
