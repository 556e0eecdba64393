"""Sessions against the running server: sign-in failures slow down, and session folders of every kind of
session (here a REST one, which never says goodbye) are removed after their last use."""
import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from gradio_client import Client, handle_file

from tests.test_webapp_api import analyse, free_port
from webapp.app import build_app, launch
from webapp.cleanup import sweep
from webapp.config import AppConfig
from webapp.logins import MAX_DELAY_S, delay_after


def serve(tmp: Path, **settings):
    cfg = AppConfig(**{**dict(db_url=f"sqlite:///{tmp / 'review.db'}", users=(("alice", "alice-pw"),),
                              cache_dir=tmp / "cache", runs_dir=tmp / "runs", data_dir=tmp / "data", port=free_port(),
                              clip_model="ViT-S-32", device="cpu", max_duration_s=10, max_upload_mb=2), **settings})
    demo = build_app(cfg)
    launch(demo, cfg, prevent_thread_lock=True, quiet=True)
    return demo, cfg, f"http://127.0.0.1:{cfg.port}"


def sign_in(url: str, username: str, password: str) -> tuple[bool, float]:
    """(accepted, seconds the server took to answer) for one attempt at the login form."""
    data = urllib.parse.urlencode({"username": username, "password": password}).encode()
    started = time.monotonic()
    try:
        urllib.request.urlopen(urllib.request.Request(f"{url}/login", data=data), timeout=60).close()
        return True, time.monotonic() - started
    except urllib.error.HTTPError as err:
        assert err.code == 400
        return False, time.monotonic() - started


def test_the_wait_doubles_per_failure_up_to_a_cap():
    assert [delay_after(n) for n in range(7)] == [0.0, 0.5, 1.0, 2.0, 4.0, 8.0, MAX_DELAY_S]


def test_sign_in_failures_slow_down_and_a_success_resets(tmp_path):
    demo, cfg, url = serve(tmp_path)
    try:
        answers = [sign_in(url, "alice", f"guess-{i}") for i in range(4)]
        assert not any(ok for ok, _ in answers)
        # Lower bounds only: a busy machine can make an answer slower, never faster.
        assert answers[2][1] >= 1.0 and answers[3][1] >= 2.0
        ok, seconds = sign_in(url, "alice", "alice-pw")      # the right password still gets in, after the wait
        assert ok and seconds >= 4.0
        assert sign_in(url, "mallory", "x")[0] is False
    finally:
        demo.close()


def test_rest_session_folders_are_removed_after_their_last_use(tmp_path, media_dir):
    demo, cfg, url = serve(tmp_path, session_ttl_s=3)
    try:
        client = Client(url + "/", auth=("alice", "alice-pw"), verbose=False)
        downloads = analyse(client, media_dir / "single_face.mp4", models=("DDAMFN",))["downloads"]
        folder = cfg.cache_dir / client.session_hash
        assert folder.is_dir() and all(Path(p).is_file() for p in downloads)
        deadline = time.monotonic() + 60
        while folder.exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not folder.exists()
    finally:
        demo.close()


def test_the_timeline_fills_in_while_a_video_is_analysed(tmp_path, media_dir):
    """The analysis streams: updates with the frames done so far and a timeline of them come before the
    final result (a 20 s clip takes longer than the few seconds between updates)."""
    demo, cfg, url = serve(tmp_path, max_duration_s=30, max_upload_mb=10)
    try:
        client = Client(url + "/", auth=("alice", "alice-pw"), verbose=False)
        job = client.submit("Uploaded video", handle_file(str(media_dir / "WolfgangLanger_Pexels.mp4")), [], None,
                            ["DDAMFN"], "basic", 0, api_name="/analyse")
        final = job.result(timeout=600)
        updates = [o for o in job.outputs() if isinstance(o[0], str) and "so far" in o[0]]
        assert updates, [o[0] for o in job.outputs()]
        done = [int(re.search(r"(\d+) of (\d+) frames so far", u[0]).group(1)) for u in updates]
        assert done == sorted(done) and 0 < done[0] < 472
        assert all(u[1] and json.loads(u[1]["plot"])["data"] for u in updates)     # a timeline each time
        assert "472 frames" in final[0]
    finally:
        demo.close()


def test_sweep_keeps_folders_in_use(tmp_path):
    old, fresh = tmp_path / "old-session", tmp_path / "fresh-session"
    for folder in (old, fresh):
        folder.mkdir()
        (folder / "predictions.csv").write_text("frame\n0\n")
    now = time.time()
    os.utime(old, (now - 7200, now - 7200))
    assert sweep(tmp_path, 3600, now=now) == [old]
    assert fresh.is_dir() and not old.exists()


def test_sweep_of_a_missing_cache_dir_is_a_no_op(tmp_path):
    assert sweep(tmp_path / "never-made", 3600) == []
