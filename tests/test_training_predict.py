"""`python -m training predict` records what it did: a raw video's frames are counted as the decoder yields
them (the packets, core.video.probe), not the container header's estimate, and the run JSON says how faceless
frames got their values with the app's own words (core.analysis.FACELESS, faceless_rule)."""
import json
import shutil

from core.affwild2_index import AffWild2Index
from core.analysis import FACELESS
from test_training_cli import CPU, training
from training.config import UNTRAINED
from training.evaluate import frames_to_predict


def test_a_raw_video_is_listed_frame_for_decoded_frame(media_dir, tmp_path):
    """no_face.mp4's header says 98 frames; its edit list drops 3, and a decoder yields 95."""
    (tmp_path / "videos").mkdir()
    shutil.copy(media_dir / "no_face.mp4", tmp_path / "videos" / "no_face.mp4")
    assert frames_to_predict(AffWild2Index(tmp_path), "no_face").tolist() == list(range(95))


def test_the_run_json_says_faceless_frames_are_interpolated(affwild2_root, tmp_path):
    proc = training("predict", "--weights", UNTRAINED, "--videos", "val", "--out", tmp_path / "sub", "--root",
                    affwild2_root, "--tasks", "expr", "--batch-size", 64, *CPU, tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    run = json.loads((tmp_path / "sub" / "run.json").read_text())
    assert run["faceless"] == "interpolated"
    assert run["faceless_predictions"] == FACELESS["interpolated"] == \
        "interpolated linearly from the nearest face frames (filled=True)"
    assert "faceless_frames" not in run and run["videos_without_face"] == []
    assert 0 < run["face_frames"] < run["frames"]
