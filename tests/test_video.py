"""core.video on the real sample videos and on files written here with ffmpeg (rotated, VFR, webm, avi,
truncated, one frame, not a video, a still image under a video's name), and ffprobe stuck on a pipe."""
import os
import subprocess
import time

import numpy as np
import pytest

from core.video import (Container, FrameBatch, FrameCache, VideoError, container, ffprobe, iter_frames, probe,
                        read_frame, read_frames)

def decode_all(path, **kwargs):
    batches = list(iter_frames(path, **kwargs))
    index = np.concatenate([b.index for b in batches])
    times = np.concatenate([b.time_s for b in batches])
    return batches, index, times


@pytest.fixture(scope="module")
def clip(tmp_path_factory, media_dir, ffmpeg):
    """One second (30 frames) of single_face.mp4, re-encoded as H.264 without audio."""
    out = tmp_path_factory.mktemp("video") / "clip.mp4"
    ffmpeg("-i", media_dir / "single_face.mp4", "-frames:v", 30, "-an", "-c:v", "libx264", "-preset",
           "ultrafast", out)
    return out


@pytest.mark.parametrize("name, frames, size", [
    ("single_face.mp4", 72, (360, 640)),
    ("no_face.mp4", 95, (540, 960)),          # the container says 98
    ("face_noface.mov", 169, (540, 960)),      # HEVC in QuickTime
    ("noface_face.mov", 169, (540, 960)),
])
def test_sample_videos_decode_every_frame(media_dir, name, frames, size):
    batches, index, times = decode_all(media_dir / name, batch_size=32)
    assert all(isinstance(b, FrameBatch) and len(b) <= 32 for b in batches)
    assert np.array_equal(index, np.arange(frames))
    assert times[0] == 0.0 and np.all(np.diff(times) > 0)
    first = batches[0].frames[0]
    assert first.shape == (*size, 3) and first.dtype == np.uint8 and first.flags.c_contiguous


def test_probe_reports_container_facts(media_dir):
    info = probe(media_dir / "no_face.mp4")
    assert (info.width, info.height, info.rotation, info.codec) == (960, 540, 0, "h264")
    assert info.frame_count_estimate == 98 and info.fps == pytest.approx(23.67, abs=0.01)
    assert info.frame_count == 95                       # from the packets: the edit list's 3 are dropped
    assert info.duration_s == pytest.approx(95 / 24, abs=0.01)
    assert probe(media_dir / "face_noface.mov").codec.lower() in ("hevc", "hev1", "hvc1")


def test_frames_are_rgb(tmp_path, ffmpeg):
    """A pure red frame written by ffmpeg decodes as red in channel 0."""
    out = tmp_path / "red.mp4"
    ffmpeg("-f", "lavfi", "-i", "color=c=red:s=64x64:d=0.2", "-c:v", "libx264", "-pix_fmt", "yuv444p", out)
    frame = next(iter(iter_frames(out))).frames[0].astype(int)
    assert frame[..., 0].mean() > 200 and frame[..., 1].mean() < 50 and frame[..., 2].mean() < 50


def test_vfr_timestamps_are_true_presentation_times(clip, tmp_path, ffmpeg):
    """Frames 10+ are shifted by half a second: timestamps keep the gap instead of index / fps."""
    out = tmp_path / "vfr.mp4"
    ffmpeg("-i", clip, "-vf", "setpts='(N/30+if(gte(N,10),0.5,0))/TB'", "-fps_mode", "passthrough",
           "-c:v", "libx264", "-preset", "ultrafast", out)
    _, index, times = decode_all(out)
    expected = index / 30 + np.where(index >= 10, 0.5, 0.0)
    assert len(index) == 30 and np.allclose(times, expected, atol=2e-3)


def test_hevc_mov_timestamps_span_its_duration(media_dir):
    _, _, times = decode_all(media_dir / "noface_face.mov")
    assert times[-1] == pytest.approx(6.345, abs=0.01)     # ffprobe: last frame at 6.3453 s


def ffmpeg_first_frame(ffmpeg, path, shape):
    """ffmpeg's own decode of the first frame (it applies rotation by default), as RGB."""
    raw = ffmpeg("-i", path, "-frames:v", 1, "-f", "rawvideo", "-pix_fmt", "rgb24", "-").stdout
    return np.frombuffer(raw, np.uint8).reshape(shape)


def write_rotated(ffmpeg, src, out, degrees):
    """Tag a video as rotated without re-encoding (newer ffmpeg: -display_rotation; 5.x: rotate tag)."""
    try:
        ffmpeg("-display_rotation", degrees, "-i", src, "-c", "copy", out)
    except subprocess.CalledProcessError:
        ffmpeg("-i", src, "-c", "copy", "-metadata:s:v:0", f"rotate={degrees}", out)


@pytest.mark.parametrize("degrees", [90, 270])
def test_rotated_phone_video_comes_out_upright(clip, tmp_path, degrees, ffmpeg):
    out = tmp_path / f"portrait{degrees}.mp4"
    write_rotated(ffmpeg, clip, out, degrees)
    info = probe(out)
    assert (info.width, info.height) == (360, 640) and info.rotation in (90, 270)
    frame = next(iter(iter_frames(out))).frames[0]
    assert frame.shape == (640, 360, 3)
    reference = ffmpeg_first_frame(ffmpeg, out, frame.shape).astype(int)
    assert np.abs(frame.astype(int) - reference).mean() < 1.0
    # and it is not merely transposed: turning it the other way disagrees with ffmpeg
    assert np.abs(np.rot90(frame, 2).astype(int) - reference).mean() > 10


@pytest.mark.parametrize("suffix, codec", [(".webm", ["libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8"]),
                                           (".avi", ["mjpeg"]), (".mov", ["libx264", "-preset", "ultrafast"])])
def test_other_containers_decode(clip, tmp_path, suffix, codec, ffmpeg):
    out = tmp_path / f"clip{suffix}"
    ffmpeg("-i", clip, "-c:v", *codec, out)
    _, index, times = decode_all(out, batch_size=7)
    assert np.array_equal(index, np.arange(30))
    assert np.allclose(np.diff(times), 1 / 30, atol=2e-3)


def test_one_frame_video(clip, tmp_path, ffmpeg):
    out = tmp_path / "one.mp4"
    ffmpeg("-i", clip, "-frames:v", 1, out)
    batches, index, times = decode_all(out)
    assert len(batches) == 1 and index.tolist() == [0] and times.tolist() == [0.0]


def test_max_frames_stops_early(media_dir):
    _, index, _ = decode_all(media_dir / "WolfgangLanger_Pexels.mp4", batch_size=16, max_frames=40)
    assert np.array_equal(index, np.arange(40))


def test_truncated_file_with_index_first_raises_after_its_frames(media_dir, tmp_path, ffmpeg):
    """moov atom first (+faststart), then cut: the first frames decode, and the end is reported."""
    whole = tmp_path / "faststart.mp4"
    ffmpeg("-i", media_dir / "single_face.mp4", "-c", "copy", "-movflags", "+faststart", whole)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[:100_000])
    decoded = 0
    with pytest.raises(VideoError, match="truncated"):
        for batch in iter_frames(cut, batch_size=8):
            decoded += len(batch)
    assert 0 < decoded < 72


def test_truncated_file_with_index_last_cannot_open(media_dir, tmp_path):
    cut = tmp_path / "cut.mp4"
    cut.write_bytes((media_dir / "single_face.mp4").read_bytes()[:100_000])
    with pytest.raises(VideoError, match="cannot open"):
        probe(cut)


@pytest.mark.parametrize("content, message", [
    (b"", "empty file"),
    (b"just some text\n", "cannot open"),
    (None, "no such file"),
])
def test_unreadable_files_raise_one_line_errors(tmp_path, content, message):
    path = tmp_path / "upload.mp4"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(VideoError, match=message) as err:
        list(iter_frames(path))
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_a_photo_is_not_a_video(media_dir, tmp_path):
    path = tmp_path / "broken.jpg"
    path.write_bytes((media_dir / "single_face.jpg").read_bytes()[:3000])
    with pytest.raises(VideoError):
        list(iter_frames(path))


@pytest.mark.parametrize("name", ["WolfgangLanger_Pexels.mp4", "single_face.mp4", "no_face.mp4", "face_noface.mov",
                                  "noface_face.mov"])
def test_probe_counts_the_frames_iter_frames_gives(media_dir, name):
    _, index, _ = decode_all(media_dir / name)
    assert probe(media_dir / name).frame_count == len(index)


def test_probe_refuses_a_truncated_file_before_decoding(media_dir, tmp_path, ffmpeg):
    whole = tmp_path / "faststart.mp4"
    ffmpeg("-i", media_dir / "single_face.mp4", "-c", "copy", "-movflags", "+faststart", whole)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[:100_000])
    with pytest.raises(VideoError, match="truncated"):
        probe(cut)


def test_probe_of_a_long_video_reports_its_duration(media_dir, tmp_path, ffmpeg):
    """Ten loops of the 20 s clip, copied without re-encoding: 200 s from the packets."""
    long = tmp_path / "long.mp4"
    ffmpeg("-stream_loop", 9, "-i", media_dir / "WolfgangLanger_Pexels.mp4", "-an", "-c", "copy", long)
    info = probe(long)
    assert info.frame_count == 4720 and info.duration_s == pytest.approx(196.8, abs=0.5)


@pytest.mark.parametrize("name", ["WolfgangLanger_Pexels.mp4", "single_face.mp4", "no_face.mp4", "face_noface.mov",
                                  "noface_face.mov"])
def test_read_frames_gives_the_pixels_of_sequential_decoding(media_dir, name):
    """Seeking (several keyframes, variable frame rate in the .mov files, an edit list in no_face.mp4)
    lands on exactly the frames decoding from the start gives, in any order asked."""
    path = media_dir / name
    frames = [f for b in iter_frames(path) for f in b.frames]
    rng = np.random.default_rng(0)
    asked = [len(frames) - 1, 0, *rng.choice(len(frames), 12, replace=False).tolist(), 1]
    got = read_frames(path, asked)
    assert sorted(got) == sorted(set(asked))
    for i in asked:
        assert np.array_equal(got[i], frames[i]), i
        assert np.array_equal(read_frame(path, i), frames[i]), i


def test_read_frames_of_a_vfr_and_a_one_frame_video(clip, tmp_path, ffmpeg):
    vfr = tmp_path / "vfr.mp4"
    ffmpeg("-i", clip, "-vf", "setpts='(N/30+if(gte(N,10),0.5,0))/TB'", "-fps_mode", "passthrough", "-g", 8,
           "-c:v", "libx264", "-preset", "ultrafast", vfr)
    frames = [f for b in iter_frames(vfr) for f in b.frames]
    got = read_frames(vfr, [29, 12, 3, 20])
    assert sorted(got) == [3, 12, 20, 29] and all(np.array_equal(got[i], frames[i]) for i in got)
    one = tmp_path / "one.mp4"
    ffmpeg("-i", clip, "-frames:v", 1, one)
    assert probe(one).frame_count == 1
    assert np.array_equal(read_frame(one, 0), next(iter(iter_frames(one))).frames[0])
    with pytest.raises(IndexError):
        read_frame(one, 1)


def test_a_vp9_webm_with_alpha_is_read(tmp_path, ffmpeg):
    """ffprobe lists a blank side-data line after each packet of a WebM with an alpha channel."""
    out = tmp_path / "alpha.webm"
    ffmpeg("-f", "lavfi", "-i", "color=c=red@0.5:s=64x48:d=1:r=10,format=yuva420p", "-c:v", "libvpx-vp9",
           "-pix_fmt", "yuva420p", out)
    info = probe(out)
    assert (info.frame_count, info.width, info.height) == (10, 64, 48)
    assert info.duration_s == pytest.approx(1.0)
    assert len(read_frames(out, [0, 9])) == 2


def test_the_container_is_read_without_decoding(media_dir, tmp_path):
    assert container(media_dir / "single_face.mp4") == Container("mov,mp4,m4a,3gp,3g2,mj2", 640, 360)
    assert not container(media_dir / "face_noface.mov").is_image
    photo = tmp_path / "photo.mp4"                                   # a JPEG under a video's name
    photo.write_bytes((media_dir / "single_face.jpg").read_bytes())
    stated = container(photo)
    assert (stated.format, stated.is_image) == ("jpeg_pipe", True)
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("hello")
    with pytest.raises(VideoError, match="notes.mp4: no video stream with a frame size"):
        container(not_video)


def test_ffprobe_that_gets_no_answer_is_stopped_and_said_in_words(tmp_path):
    """A named pipe nobody writes to: ffprobe waits on it for ever unless the call has a time limit."""
    pipe = tmp_path / "stalled.mp4"
    os.mkfifo(pipe)
    started = time.monotonic()
    with pytest.raises(VideoError) as info:
        ffprobe(pipe, "-show_entries", "format=format_name", timeout_s=1)
    assert time.monotonic() - started < 10
    assert str(info.value) == (f"{pipe}: reading the file gave no answer within 1 s (a stalled disk or a pipe "
                               "rather than a file)")


def stall_ffprobe(tmp_path, monkeypatch, timeout_s: float = 1):
    """An ffprobe on PATH that never answers (a stand-in for one stuck on a stalled network disk), and a
    time limit of timeout_s for every ffprobe call."""
    folder = tmp_path / "stalled-bin"
    folder.mkdir()
    fake = folder / "ffprobe"
    fake.write_text("#!/bin/sh\nexec sleep 120\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr("core.video.FFPROBE_TIMEOUT_S", timeout_s)


def test_every_ffprobe_call_of_the_reader_has_a_time_limit(media_dir, tmp_path, monkeypatch):
    """The container check and the packet listing (probe) both stop a stuck ffprobe and say so."""
    first, second = tmp_path / "first.mp4", tmp_path / "second.mp4"     # fresh paths: no cached packets
    for copy in (first, second):
        copy.write_bytes((media_dir / "single_face.mp4").read_bytes())
    stall_ffprobe(tmp_path, monkeypatch)
    for call, path in ((container, first), (probe, second)):
        started = time.monotonic()
        with pytest.raises(VideoError) as info:
            call(path)
        assert time.monotonic() - started < 10
        assert str(info.value) == (f"{path}: reading the file gave no answer within 1 s (a stalled disk or a "
                                   "pipe rather than a file)")


def test_the_frame_cache_is_bounded_in_bytes_and_drops_the_least_recently_used():
    reads = []

    def read(path, indices):
        reads.append((path, list(indices)))
        return {i: np.full((10, 10, 3), i, np.uint8) for i in indices}       # 300 bytes each

    cache = FrameCache(max_bytes=1000)                                       # three frames fit
    assert sorted(cache.frames("a.mp4", [0, 1, 2], read)) == [0, 1, 2]
    assert cache.frames("a.mp4", [0], read)[0][0, 0, 0] == 0                 # kept: no read; 0 is now recent
    cache.frames("a.mp4", [3], read)                                         # 1 is dropped, not 0
    cache.frames("a.mp4", [0, 1, 2, 3], read)
    assert reads == [("a.mp4", [0, 1, 2]), ("a.mp4", [3]), ("a.mp4", [1])]
    assert cache.bytes == 900
    huge = FrameCache(max_bytes=100)                                         # a frame larger than the bound
    assert huge.frames("b.mp4", [5], read)[5].shape == (10, 10, 3) and huge.bytes == 0
