"""Bounded work: a video is refused from its container's numbers before any model runs."""
import time

import cv2
import numpy as np
import pytest

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
    print(f"refused in {time.monotonic() - started:.2f} s")
    assert check_video(path, max_mb=10, max_duration_s=600, max_frames=1500).frame_count_estimate == 1500


def test_the_frame_limit_is_a_setting():
    assert AppConfig.from_env({"AFFECTLENS_MAX_FRAMES": "500"}).max_frames == 500
    assert AppConfig.from_env({}).max_frames == AppConfig().max_frames == 36_000
