"""Sessions against the running server (webapp.cleanup): a session's folder and its downloads live as
long as the session makes requests -- browsing frames keeps them, whatever the files' age -- and go ttl
after the last one, a download then being refused in words; a session belongs to its login, so another
login that knows its hash cannot replace its video, even once the session's folder is swept. At start-up,
the analysis folders that no stored run names (shown, but the database refused to store them) go."""
import os
import time
import urllib.error
import urllib.request

import pytest
from gradio_client import Client

from db import repo
from tests.test_webapp_api import analyse
from tests.test_webapp_sessions import serve
from webapp.cleanup import ORPHAN_AGE_S, ended_message, sweep
from webapp.config import AppConfig
from webapp.context import Context

USERS = (("alice", "alice-pw"), ("bob", "bob-pw"))


def test_browsing_frames_keeps_a_session_and_it_goes_after_its_last_request(tmp_path, media_dir):
    demo, cfg, url = serve(tmp_path, users=USERS, session_ttl_s=4)
    try:
        alice = Client(url + "/", auth=("alice", "alice-pw"), verbose=False)
        analyse(alice, media_dir / "single_face.mp4", models=("DDAMFN",))
        folder = cfg.cache_dir / alice.session_hash
        browsing_until = time.monotonic() + 10                  # 2.5 times the session's ttl
        while time.monotonic() < browsing_until:
            alice.predict(5, api_name="/show_frame")          # a frame view writes nothing in the folder
            assert folder.is_dir()
            time.sleep(1.0)
        deadline = time.monotonic() + 30
        while folder.exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not folder.exists()
    finally:
        demo.close()


def test_another_login_cannot_replace_a_sessions_video(tmp_path, media_dir):
    demo, cfg, url = serve(tmp_path, users=USERS)
    try:
        alice = Client(url + "/", auth=("alice", "alice-pw"), verbose=False)
        analyse(alice, media_dir / "single_face.mp4", models=("DDAMFN",))
        bob = Client(url + "/", auth=("bob", "bob-pw"), verbose=False)
        bob.session_hash = alice.session_hash                 # learnt from a download URL
        with pytest.raises(Exception, match="This session was opened under another login"):
            analyse(bob, media_dir / "no_face.mp4", models=("DDAMFN",))
        info = alice.predict(5, api_name="/show_frame")[1]     # still alice's video: a face (no_face.mp4 has none)
        assert info["data"][:3] == [["frame", "5"], ["time (s)", "0.167"], ["face", "True"]]
    finally:
        demo.close()


def fetch(url: str, client: Client, file: dict) -> tuple[int, bytes]:
    """(status, body) of a download link of the page, fetched with the client's login."""
    cookies = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
    request = urllib.request.Request(url + file["url"].split(url, 1)[-1], headers={"Cookie": cookies})
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_a_session_in_use_keeps_its_downloads_past_its_lifetime(tmp_path, media_dir):
    ttl = 4
    demo, cfg, url = serve(tmp_path, session_ttl_s=ttl)
    try:
        alice = Client(url + "/", auth=("alice", "alice-pw"), verbose=False, download_files=False)
        csv = next(f for f in analyse(alice, media_dir / "single_face.mp4", models=("DDAMFN",))["downloads"]
                   if f["path"].endswith("_predictions.csv"))
        expected = (cfg.cache_dir / alice.session_hash / "single_face_predictions.csv").read_bytes()
        fetched = []
        using_until = time.monotonic() + 4 * ttl
        while time.monotonic() < using_until:
            alice.predict(5, api_name="/show_frame")
            fetched.append(fetch(url, alice, csv))
        assert len(fetched) >= 8 and set(fetched) == {(200, expected)}
    finally:
        demo.close()


def test_a_download_of_an_ended_session_is_refused_in_words(tmp_path, media_dir):
    ttl = 2
    demo, cfg, url = serve(tmp_path, session_ttl_s=ttl)
    try:
        alice = Client(url + "/", auth=("alice", "alice-pw"), verbose=False, download_files=False)
        csv = analyse(alice, media_dir / "single_face.mp4", models=("DDAMFN",))["downloads"][0]
        assert fetch(url, alice, csv)[0] == 200
        time.sleep(ttl + 1)                 # idle past the lifetime: ended, whether swept yet or not
        assert fetch(url, alice, csv) == (410, ended_message(ttl).encode())
    finally:
        demo.close()


def test_another_login_cannot_replace_a_video_once_its_session_folder_is_swept(tmp_path, media_dir):
    demo, cfg, url = serve(tmp_path, users=USERS)
    try:
        alice = Client(url + "/", auth=("alice", "alice-pw"), verbose=False)
        analyse(alice, media_dir / "single_face.mp4", models=("DDAMFN",))
        folder = cfg.cache_dir / alice.session_hash
        assert sweep(cfg.cache_dir, cfg.session_ttl_s, now=time.time() + cfg.session_ttl_s + 1) == [folder]
        bob = Client(url + "/", auth=("bob", "bob-pw"), verbose=False)
        bob.session_hash = alice.session_hash
        with pytest.raises(Exception, match="This session was opened under another login"):
            analyse(bob, media_dir / "no_face.mp4", models=("DDAMFN",))
        info = alice.predict(5, api_name="/show_frame")[1]
        assert info["data"][:3] == [["frame", "5"], ["time (s)", "0.167"], ["face", "True"]]
    finally:
        demo.close()


def test_analysis_folders_that_no_stored_run_names_are_removed_at_the_next_start(tmp_path, capfd):
    data = tmp_path / "data"
    ctx = Context(AppConfig(db_url=f"sqlite:///{tmp_path / 'review.db'}", data_dir=data))
    ctx.write(lambda s: repo.add_prediction_run(s, repo.register_video(s, "v", 10, 30.0), models=["ddamfn"],
                                                device="cpu", table_path="analyses/stored/table.parquet",
                                                untrained=True, artifacts_dir="analyses/stored"))
    long_ago = time.time() - ORPHAN_AGE_S - 60
    for name in ("stored", "orphan", "fresh"):          # fresh: maybe being stored by another server now
        (data / "analyses" / name).mkdir(parents=True)
        (data / "analyses" / name / "table.parquet").write_bytes(b"PAR1")
        if name != "fresh":
            os.utime(data / "analyses" / name, (long_ago, long_ago))
    capfd.readouterr()
    demo, cfg, url = serve(tmp_path)
    try:
        assert sorted(p.name for p in (data / "analyses").iterdir()) == ["fresh", "stored"]
        assert "AffectLens removed 1 analysis folder(s) that no stored analysis names (shown but not stored): " \
               "orphan\n" in capfd.readouterr().out
    finally:
        demo.close()
