"""Bounded work and bad input: a video is refused from its container's numbers before any model runs, and
every endpoint answers bad input with a sentence."""
import re
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from core.labels import EXPRESSIONS
from webapp.config import AppConfig
from webapp.inputs import InputError, check_video


def test_a_thousand_frames_a_second_is_refused_by_its_frame_count(tmp_path):
    path = tmp_path / "fast.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 1000, (64, 64))
    for i in range(1500):
        writer.write(np.full((64, 64, 3), i % 255, np.uint8))
    writer.release()
    started = time.monotonic()
    with pytest.raises(InputError, match=r"fast.mp4 has 1500 frames \(1000 frames/s\); this app analyses up to "
                                         r"1000 frames"):
        check_video(path, max_mb=10, max_duration_s=600, max_frames=1000)
    elapsed = time.monotonic() - started
    assert elapsed < 3.0, f"refused after {elapsed:.2f} s: the container's numbers should be enough"
    assert check_video(path, max_mb=10, max_duration_s=600, max_frames=1500).frame_count == 1500


def test_the_frame_limit_is_a_setting():
    assert AppConfig.from_env({"AFFECTLENS_MAX_FRAMES": "500"}).max_frames == 500
    assert AppConfig.from_env({}).max_frames == AppConfig().max_frames == 36_000


def two_frame_video(media_dir, path):
    """The first two frames of single_face.mp4: the shortest video the app takes."""
    capture = cv2.VideoCapture(str(media_dir / "single_face.mp4"))
    writer = None
    for _ in range(2):
        ok, frame = capture.read()
        assert ok
        writer = writer or cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30,
                                           (frame.shape[1], frame.shape[0]))
        writer.write(frame)
    capture.release()
    writer.release()
    return path


def test_every_endpoint_refuses_bad_input_in_words(tmp_path, media_dir):
    """Through the running server: whole numbers only, sizes bounded, malformed tables refused, a two-frame
    video analysed and shown; no message shows a server path."""
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    from db.limits import MAX_PROMPTS, MAX_TEXT_LENGTH
    from tests.test_webapp_api import analyse, start_server

    demo, cfg, url = start_server(tmp_path, None)
    try:
        alice = Client(url, auth=("alice", "alice-pw"), verbose=False)
        out = analyse(alice, two_frame_video(media_dir, tmp_path / "short.mp4"), models=("DDAMFN",))
        run_info, frame, key = out["run_info"], out["frame"], out["key"]
        assert "2 frames, 2 with a face" in run_info and frame["maximum"] >= frame["value"] == 0
        crop, *_ = alice.predict(0, api_name="/show_frame")
        assert Path(crop).is_file()

        def refused(pattern, *args, api_name):
            with pytest.raises(AppError) as info:
                alice.predict(*args, api_name=api_name)
            message = str(info.value)
            assert re.search(pattern, message), message
            assert str(tmp_path) not in message and "/tmp/" not in message, message

        refused(r"frame must be a whole number; 0\.5", 0.5, api_name="/show_frame")
        refused(r"frame must be from 0 to 1; 2 is not", 2, api_name="/show_frame")
        refused(r"first frame must be a whole number", 0.5, 0, api_name="/show_range")
        refused(r"correction id 9223372036854775808 is out of range \(1 to ", key, 2**63, "", api_name="/accept_correction")
        refused(rf"at most {MAX_TEXT_LENGTH:,} are allowed", key, "va", 0, 0, "wrong label",
                "x" * 5_000_000, api_name="/flag")
        queue = {"headers": ["kind"], "data": [["jump"]]}
        refused(r"Rank segments", queue, 0, api_name="/open_segment")
        many = "\n".join(f"a photo of a {{}} face, take {i}" for i in range(MAX_PROMPTS + 1))
        refused(r"prompts", "huge", many, "\n".join(f"{e}: {e.lower()}" for e in EXPRESSIONS),
                api_name="/save_prompt_set")
    finally:
        demo.close()
