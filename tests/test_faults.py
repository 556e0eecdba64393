"""Faults of the data folder through the running server: on a full disk the analysis is still shown and
says it was not stored, and nothing half-written stays behind; a writers' lock file that cannot be
opened (here a directory in its place; a read-only folder, EACCES or EMFILE fail the same way) makes a
review save say the folder cannot be written, at once, and once it can be opened again the next save
goes through: nothing sticks."""
import subprocess
import time
from pathlib import Path

import pytest
from gradio_client import Client

from db.errors import CANNOT_WRITE_MESSAGE
from tests.test_webapp_api import analyse
from tests.test_webapp_sessions import serve


def mount(*args) -> bool:
    return subprocess.run(["mount", *map(str, args)], capture_output=True).returncode == 0


@pytest.fixture
def small_disk(tmp_path):
    """A 16 MiB tmpfs as the data folder (mounting needs root; the test is skipped without it)."""
    data = tmp_path / "data"
    data.mkdir()
    if not mount("-t", "tmpfs", "-o", "size=16m", "tmpfs", data):
        pytest.skip("mounting a small tmpfs needs root")
    yield data
    subprocess.run(["umount", "-l", str(data)], check=True)


def fill(disk: Path) -> Path:
    """Write one file until the disk is full; returns it."""
    filler = disk / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    return filler


def half_written(disk: Path) -> list[Path]:
    return [p for p in disk.rglob("*") if p.name.endswith(".tmp")]


def test_a_full_then_read_only_data_folder_answers_in_words_and_recovers(small_disk, tmp_path, media_dir):
    demo, cfg, url = serve(tmp_path, data_dir=small_disk, db_url=f"sqlite:///{small_disk / 'review.db'}")
    try:
        alice = Client(url + "/", auth=("alice", "alice-pw"), verbose=False)
        alice.predict(api_name="/list_videos")                    # the database exists before the disk fills
        filler = fill(small_disk)
        out = analyse(alice, media_dir / "single_face.mp4", models=("DDAMFN",))
        run_info, timeline, downloads, key = (out[k] for k in ("run_info", "timeline", "downloads", "key"))
        assert CANNOT_WRITE_MESSAGE + " The analysis is shown but not stored" in run_info
        assert "72 frames, 72 with a face" in run_info and timeline is not None and len(downloads) > 0
        assert not key
        assert half_written(small_disk) == [] and not list((small_disk / "analyses").rglob("*.parquet"))

        filler.unlink()
        out = analyse(alice, media_dir / "single_face.mp4", models=("DDAMFN",))
        run_info, key = out["run_info"], out["key"]
        assert CANNOT_WRITE_MESSAGE not in run_info and key.startswith("sha256:")

        lock_file = small_disk / "review.db-writers"
        lock_file.unlink()
        lock_file.mkdir()
        started = time.monotonic()
        with pytest.raises(Exception, match=CANNOT_WRITE_MESSAGE.replace(".", r"\.")):
            alice.predict(key, "va", 0, 5, "occluded", "", api_name="/flag")
        assert time.monotonic() - started < 10                      # said at once, not after the busy wait
        lock_file.rmdir()
        status = alice.predict(key, "va", 0, 5, "occluded", "", api_name="/flag")[0]
        assert status == "Flag 1: VA frames 0-5 (occluded), by alice."
    finally:
        demo.close()
