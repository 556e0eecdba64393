"""A server whose data folder is read-only, as a real read-only folder: `python -m webapp` in its own
process, on a bind mount of the data folder remounted read-only (`mount -o remount,bind,ro`: chmod does not
stop root, who runs CI). An analysis is shown and says it was not stored, a review save is refused in
words, the log holds no traceback; once the folder is writable again the next save is stored, without a
restart. Mounting needs root: the test is skipped without it."""
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from db import repo
from db.engine import init_db, make_session_factory, write
from db.errors import CANNOT_WRITE_MESSAGE
from tests.test_db_read_only_start import folders, mount  # noqa: F401  (a fixture and a helper)
from tests.test_webapp_api import analyse, free_port

REPO = Path(__file__).resolve().parents[1]


def start_server(tmp: Path, data_dir: Path, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "AFFECTLENS_DATA_DIR": str(data_dir),
           "AFFECTLENS_DB_URL": f"sqlite:///{data_dir / 'review.db'}", "AFFECTLENS_USERS": "alice:alice-pw",
           "AFFECTLENS_CACHE_DIR": str(tmp / "cache"),
           "AFFECTLENS_RUNS_DIR": str(tmp / "runs"), "GRADIO_TEMP_DIR": str(tmp / "gradio"), "PORT": str(port),
           "AFFECTLENS_CLIP_MODEL": "ViT-S-32", "AFFECTLENS_DEVICE": "cpu", "AFFECTLENS_MAX_DURATION_S": "10",
           "AFFECTLENS_MAX_UPLOAD_MB": "2", "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    with open(log, "w") as out:
        server = subprocess.Popen([sys.executable, "-m", "webapp"], cwd=REPO, env=env, stdout=out,
                                  stderr=subprocess.STDOUT)
    url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 300
    while time.monotonic() < deadline and server.poll() is None:
        try:
            urllib.request.urlopen(f"{url}/config", timeout=2).close()
            return server, url
        except urllib.error.HTTPError:          # answered (a signed-in route says 401): it is up
            return server, url
        except OSError:
            time.sleep(0.5)
    server.kill()
    pytest.fail(f"the server did not start:\n{log.read_text()[-3000:]}")


def test_a_server_on_a_read_only_data_folder_refuses_in_words_and_saves_once_writable(folders, tmp_path, media_dir):
    data, view = folders
    # Stored before: the database and one video. A training job keeps the database's WAL files open (SQLite
    # opens a WAL database in a read-only folder only when they exist).
    job = init_db(f"sqlite:///{data / 'review.db'}")
    write(make_session_factory(job), lambda s: repo.register_video(s, "ro-video", 100, 30.0, name="ro-video.mp4"))
    assert mount("-o", "remount,bind,ro", view)
    log = tmp_path / "server.log"
    server, url = start_server(tmp_path, view, log)
    try:
        alice = Client(url + "/", auth=("alice", "alice-pw"), verbose=False)
        out = analyse(alice, media_dir / "single_face.mp4", models=("DDAMFN",))
        assert CANNOT_WRITE_MESSAGE + " The analysis is shown but not stored" in out["run_info"]
        assert "72 frames, 72 with a face" in out["run_info"] and not out["key"]
        with pytest.raises(AppError, match="^" + CANNOT_WRITE_MESSAGE.replace(".", r"\.")):
            alice.predict("ro-video", "va", 0, 5, "occluded", "", api_name="/flag")
        assert not (data / "analyses").exists()

        assert mount("-o", "remount,bind,rw", view)
        status = alice.predict("ro-video", "va", 0, 5, "occluded", "", api_name="/flag")[0]
        assert status == "Flag 1: VA frames 0-5 (occluded), by alice."
        assert "Traceback" not in log.read_text()
    finally:
        server.terminate()
        server.wait(timeout=30)
        job.dispose()
