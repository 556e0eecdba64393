"""Uploads as people make them, through the running server (gradio_client): a still image under a video's
name and a one-frame video are refused in words before any model runs, and nothing is stored."""
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from db import repo
from db.engine import make_engine, make_session_factory
from tests.test_webapp_api import analyse, start_server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    demo, cfg, url = start_server(tmp_path_factory.mktemp("webapp-uploads"), None)
    yield cfg, url
    demo.close()


def test_a_still_image_or_a_one_frame_video_is_refused_and_nothing_is_stored(server, media_dir, tmp_path, ffmpeg):
    cfg, url = server
    client = Client(url, auth=("alice", "alice-pw"), verbose=False)
    photo = tmp_path / "holiday.mp4"                                 # a phone photo renamed .mp4
    photo.write_bytes((media_dir / "single_face.jpg").read_bytes())
    one = tmp_path / "one.mp4"
    ffmpeg("-i", media_dir / "single_face.mp4", "-frames:v", 1, one)
    for video, message in [
        (photo, "holiday.mp4 is a still image (JPEG), not a video, whatever its name says. Upload a video file."),
        (one, "one.mp4 holds 1 frame: it is a still picture, not a video. This app analyses videos of at least "
              "2 frames."),
    ]:
        with pytest.raises(AppError) as info:
            analyse(client, video, models=("DDAMFN",))
        assert str(info.value) == message
    with make_session_factory(make_engine(cfg.db_url))() as s:
        assert repo.list_videos(s) == []
    assert not (cfg.data_dir / "videos").exists() or not any((cfg.data_dir / "videos").iterdir())
