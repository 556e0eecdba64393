"""A server started while its data folder is read-only (a storage hiccup at start-up) saves again once the
folder is writable: SQLite opens a connection read-only, without a word, when the folder refuses writes,
and such a connection never writes for its life. The server's folder is a real bind mount of the data
folder, made read-only and then writable again with `mount -o remount,bind,ro|rw` (chmod does not stop
root, who runs CI; a whole file system cannot be remounted read-only while another program has a file of
it open for writing, as the training job below does). Mounting needs root: the test is skipped without it."""
import subprocess

import pytest
from test_db_engine import count

from db import repo
from db.engine import init_db, make_session_factory, write
from db.errors import CANNOT_WRITE_MESSAGE, CannotWrite


def mount(*args) -> bool:
    return subprocess.run(["mount", *map(str, args)], capture_output=True).returncode == 0


@pytest.fixture
def folders(tmp_path):
    """(the data folder, the server's view of it: a bind mount)."""
    data, view = tmp_path / "data", tmp_path / "view"
    data.mkdir()
    view.mkdir()
    if not mount("--bind", data, view):
        pytest.skip("bind-mounting a folder needs root")
    yield data, view
    subprocess.run(["umount", "-l", str(view)], check=True)


def test_a_server_started_on_a_read_only_folder_saves_once_the_folder_is_writable(folders):
    data, view = folders
    job = init_db(f"sqlite:///{data / 'affectlens.db'}")      # a training job keeps the database's WAL files open
    write(make_session_factory(job), lambda s: repo.get_or_create_reviewer(s, "alice"))
    try:
        assert mount("-o", "remount,bind,ro", view)
        server = init_db(f"sqlite:///{view / 'affectlens.db'}")  # the server starts: the schema is read, not written
        sessions, readers = make_session_factory(server), make_session_factory(server, read_only=True)
        with pytest.raises(CannotWrite) as info:
            write(sessions, lambda s: repo.get_or_create_reviewer(s, "bob"))
        assert str(info.value).startswith(CANNOT_WRITE_MESSAGE)
        with readers.begin() as session:                        # pages are read meanwhile, on connections opened now
            assert repo.get_reviewer(session, "alice").name == "alice"

        assert mount("-o", "remount,bind,rw", view)
        write(sessions, lambda s: repo.get_or_create_reviewer(s, "bob"))      # the first save after is stored
        write(sessions, lambda s: repo.get_or_create_reviewer(s, "carol"))
        assert count(server, "reviewers") == 3
        server.dispose()
    finally:
        job.dispose()
