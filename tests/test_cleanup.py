"""Sessions against the running server (webapp.cleanup): a session's folder lives as long as the session
makes requests -- browsing frames keeps it, whatever the folder's time stamp -- and goes ttl after the
last one; a session belongs to its login, so another login that knows its hash cannot replace its video."""
import time

import pytest
from gradio_client import Client

from tests.test_webapp_api import analyse
from tests.test_webapp_sessions import serve

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
