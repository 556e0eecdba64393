"""A review action answers with a page of the video's corrections, as it does with its history: the newest
HISTORY_PAGE of them, oldest first, however many the video has (all of them are exported)."""
from gradio_client import Client

from db import repo
from db.limits import HISTORY_PAGE
from tests.test_webapp_api import table
from tests.test_webapp_sessions import serve
from webapp.config import AppConfig
from webapp.context import Context


def test_a_review_action_returns_the_newest_page_of_corrections(tmp_path):
    many = HISTORY_PAGE + 5

    def propose(s):
        repo.register_video(s, "v", 1000, 30.0, name="v.mp4")
        repo.get_or_create_reviewer(s, "bob")
        for frame in range(many):
            repo.add_correction(s, "v", "va", frame, frame, {"valence": 0.5, "arousal": 0.25}, "bob")

    Context(AppConfig(db_url=f"sqlite:///{tmp_path / 'review.db'}", data_dir=tmp_path / "data")).write(propose)
    demo, cfg, url = serve(tmp_path)
    try:
        alice = Client(url + "/", auth=("alice", "alice-pw"), verbose=False)
        status, corrections, history, flags, _ = alice.predict("v", "va", 5, 12, "wrong label", "", api_name="/flag")
        assert status == "Flag 1: VA frames 5-12 (wrong label), by alice."
        assert table(corrections)["id"].tolist() == list(range(many - HISTORY_PAGE + 1, many + 1))
        assert len(table(history)) == HISTORY_PAGE and table(flags)["id"].tolist() == [1]
        corrections, history, flags, _ = alice.predict("v", api_name="/history")
        assert table(corrections)["id"].tolist() == list(range(many - HISTORY_PAGE + 1, many + 1))
    finally:
        demo.close()
