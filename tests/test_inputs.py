"""webapp.inputs: what an upload may cost is checked before it costs it -- the frame size from the
container before any frame is decoded (an 8K video is refused without its memory), the header line of
an annotation file read up to a bounded length -- numbers out of range are refused in words, and a
still image, a one-frame file or a file whose reading stalls is refused in words."""
import resource
import subprocess
import sys

import pytest

from db.limits import MAX_FRAME_PIXELS, MAX_HEADER_CHARS
from tests.test_video import stall_ffprobe
from webapp.inputs import InputError, annotation_task, check_video, whole

REFUSE_8K = """
import resource
from webapp.inputs import InputError, check_video
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    check_video({path!r}, max_mb=200, max_duration_s=600)
except InputError as err:
    print(err)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


def test_an_8k_video_is_refused_by_its_frame_size_before_a_frame_is_decoded(tmp_path, ffmpeg):
    video = tmp_path / "eight_k.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=s=7680x4320:r=2", "-frames:v", 2, "-c:v", "libx264", "-preset",
           "ultrafast", video)
    out = subprocess.run([sys.executable, "-c", REFUSE_8K.format(path=str(video))], capture_output=True,
                         text=True, check=True).stdout.splitlines()
    assert MAX_FRAME_PIXELS == 4096 * 2160
    assert out[0] == ("eight_k.mp4's frames are 7680 x 4320 pixels; this app accepts frames up to 8,847,360 "
                      "pixels (4096 x 2160 by default). Scale it down and upload it again.")
    assert int(out[1]) < 20          # MiB the check added at its peak; one decoded 8K frame is 95 (BGR) + 95 (RGB)


def test_the_frame_size_limit_is_a_parameter(media_dir):
    clip = media_dir / "single_face.mp4"                                     # 640 x 360
    assert check_video(clip, max_mb=1, max_duration_s=3, max_pixels=640 * 360).width == 640
    with pytest.raises(InputError, match="single_face.mp4's frames are 640 x 360 pixels; this app accepts "
                                         "frames up to 230,399 pixels"):
        check_video(clip, max_mb=1, max_duration_s=3, max_pixels=640 * 360 - 1)


def test_an_annotation_header_is_read_up_to_its_limit(tmp_path):
    endless = tmp_path / "endless.txt"
    with open(endless, "w") as f:                      # 50 MB of one line: only the limit is read
        for _ in range(50):
            f.write("x," * 500_000)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(InputError) as info:
        annotation_task(endless)
    assert str(info.value) == ("endless.txt is not an Aff-Wild2 annotation file: its first line is longer than "
                               f"{MAX_HEADER_CHARS:,} characters.")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 20 * 1024      # KiB
    valence = tmp_path / "va.txt"
    valence.write_text("valence,arousal\n0.1,0.2\n")
    assert annotation_task(valence) == "va"


def test_whole_numbers_name_their_bounds():
    assert whole("7", "number of steps", 0) == 7
    with pytest.raises(InputError, match=r"^The number of steps must be 0 or more; -1 is not\.$"):
        whole(-1, "number of steps", 0)
    with pytest.raises(InputError, match=r"^The batch size must be from 0 to 4096; 5000 is not\.$"):
        whole(5000, "batch size", 0, 4096)
    with pytest.raises(InputError, match=r"^The frame must be 10 or less; 11 is not\.$"):
        whole(11, "frame", high=10)
    with pytest.raises(InputError, match=r"^The frame must be a whole number; None is not\.$"):
        whole(None, "frame", 0)


def test_a_still_image_is_not_a_video_whatever_its_name(media_dir, tmp_path, ffmpeg):
    photo = tmp_path / "holiday.mp4"                                 # a JPEG renamed .mp4
    photo.write_bytes((media_dir / "single_face.jpg").read_bytes())
    with pytest.raises(InputError) as info:
        check_video(photo, max_mb=10, max_duration_s=600)
    assert str(info.value) == ("holiday.mp4 is an image file (JPEG), not a video, whatever its name says. "
                               "Upload a video file.")
    one = tmp_path / "one.mp4"                                       # a real video container, one frame
    ffmpeg("-i", media_dir / "single_face.mp4", "-frames:v", 1, one)
    with pytest.raises(InputError) as info:
        check_video(one, max_mb=10, max_duration_s=600)
    assert str(info.value) == ("one.mp4 holds 1 frame: it is a still picture, not a video. This app analyses "
                               "videos of at least 2 frames.")
    two = tmp_path / "two.mp4"
    ffmpeg("-i", media_dir / "single_face.mp4", "-frames:v", 2, two)
    assert check_video(two, max_mb=10, max_duration_s=600).frame_count == 2


def test_a_video_whose_reading_stalls_is_refused_in_words(media_dir, tmp_path, monkeypatch):
    video = tmp_path / "clip.mp4"
    video.write_bytes((media_dir / "single_face.mp4").read_bytes())
    stall_ffprobe(tmp_path, monkeypatch)
    with pytest.raises(InputError) as info:
        check_video(video, max_mb=10, max_duration_s=600)
    assert str(info.value) == ("clip.mp4 cannot be read as a video: reading the file gave no answer within 1 s (a "
                               "stalled disk or a pipe rather than a file)")
