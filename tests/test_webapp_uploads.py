"""Uploads as people make them, through the running server: a still image under a video's name and a
one-frame video are refused in words before any model runs, and nothing is stored (gradio_client); a
phone's HEVC video is shown at once as a browser-playable H.264 copy, and the player never shows another
video than the timeline beside it (Chromium, the shared HEVC clip face_noface.mov); an 8K upload is refused
without the server's memory growing by a decoded 8K frame (a server process of its own, its peak RSS read
from /proc)."""
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError
from playwright.sync_api import expect

from db import repo
from db.engine import make_engine, make_session_factory
from tests.test_webapp_api import analyse, free_port, start_server
from tests.test_webapp_browser import ANALYSIS_TIMEOUT_MS, browser, signed_in_page, upload_and_analyse  # noqa: F401
from core.video import iter_frames, probe
from webapp.previews import Previews, codec

PHOTO_REFUSED = "holiday.mp4 is an image file (JPEG), not a video, whatever its name says. Upload a video file."


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    demo, cfg, url = start_server(tmp_path_factory.mktemp("webapp-uploads"), None)
    yield cfg, url
    demo.close()


@pytest.fixture
def photo(media_dir, tmp_path) -> Path:
    """A phone photo renamed .mp4."""
    path = tmp_path / "holiday.mp4"
    path.write_bytes((media_dir / "single_face.jpg").read_bytes())
    return path


def test_a_still_image_or_a_one_frame_video_is_refused_and_nothing_is_stored(server, media_dir, tmp_path, ffmpeg,
                                                                            photo):
    cfg, url = server
    client = Client(url, auth=("alice", "alice-pw"), verbose=False)
    one = tmp_path / "one.mp4"
    ffmpeg("-i", media_dir / "single_face.mp4", "-frames:v", 1, one)
    for video, message in [
        (photo, PHOTO_REFUSED),
        (one, "one.mp4 holds 1 frame: it is a still picture, not a video. This app analyses videos of at least "
              "2 frames."),
    ]:
        with pytest.raises(AppError) as info:
            analyse(client, video, models=("DDAMFN",))
        assert str(info.value) == message
    with make_session_factory(make_engine(cfg.db_url))() as s:
        assert repo.list_videos(s) == []
    assert not (cfg.data_dir / "videos").exists() or not any((cfg.data_dir / "videos").iterdir())


def frame_times(path) -> list[float]:
    """Every decoded frame's time stamp."""
    return [t for batch in iter_frames(path) for t in batch.time_s]


def test_a_copy_is_made_once_only_for_what_a_browser_cannot_play_and_keeps_every_frame_time(media_dir, tmp_path,
                                                                                        ffmpeg):
    """HEVC is converted to H.264, H.264 in a QuickTime file is moved into an MP4, an H.264 MP4 is shown as it
    is; a copy has the original's frames at the original's times (the page maps the player's time to frames)."""
    h264_mov = tmp_path / "iphone_compatible.mov"
    ffmpeg("-i", media_dir / "single_face.mp4", "-c", "copy", h264_mov)
    previews = Previews()
    assert previews.start(media_dir / "single_face.mp4", tmp_path).result() == media_dir / "single_face.mp4"
    for original in (media_dir / "face_noface.mov", h264_mov):
        future = previews.start(original, tmp_path)
        assert previews.start(original, tmp_path).result() == future.result()         # made once
        copy = future.result()
        assert copy.name == original.stem + ".mp4" and copy.is_relative_to(tmp_path / "previews")
        assert codec(copy) == "h264"
        source, made = probe(original), probe(copy)
        assert made.frame_count == source.frame_count and abs(made.duration_s - source.duration_s) < 0.02
        assert frame_times(copy) == pytest.approx(frame_times(original), abs=1e-3)


def plays(page, selector: str) -> tuple[int, float]:
    """(videoWidth, seconds played in about a second) of the page's <video> at selector, played muted."""
    return tuple(page.evaluate("""async (sel) => {
        const v = document.querySelector(sel);
        v.muted = true;
        await v.play();
        await new Promise((r) => setTimeout(r, 1000));
        v.pause();
        return [v.videoWidth, v.currentTime]; }""", selector))


def served_codec(page, selector: str, tmp_path: Path) -> str:
    """The codec of the file that the page's <video> at selector plays, fetched as the browser fetches it."""
    src = page.locator(selector).get_attribute("src")
    path = tmp_path / "served.mp4"
    path.write_bytes(page.request.get(src).body())
    return codec(path)


# Samples, every 50 ms in the page, the player note's text and the player's video (None while hidden).
SAMPLE_PLAYER = """() => { window.seen = []; window.sampler = setInterval(() => {
    const p = document.querySelector('#player'), v = p && p.querySelector('video');
    const shown = !!p && p.offsetParent !== null && getComputedStyle(p).display !== 'none';
    window.seen.push([document.querySelector('#player-note').innerText.trim(), shown && v ? v.src : null]); }, 50); }"""


def test_a_phone_video_plays_at_once_and_the_player_shows_only_the_analysed_video(
        server, browser, media_dir, tmp_path, photo, ffmpeg):  # noqa: F811  browser: a fixture
    cfg, url = server
    phone = tmp_path / "phone_clip.mov"            # the iPhone HEVC clip's first 48 frames, as they are
    ffmpeg("-i", media_dir / "face_noface.mov", "-frames:v", 48, "-c", "copy", "-an", phone)
    assert codec(phone) == "hevc"
    page = signed_in_page(browser, url, "alice")
    try:
        # A photo renamed .mp4: refused in words as soon as it is in the upload box.
        page.locator("#video input[type=file]").set_input_files(str(photo))
        expect(page.locator("#upload-note")).to_have_text(f"Not done: {PHOTO_REFUSED}")

        upload_and_analyse(page, media_dir / "single_face.mp4")
        expect(page.locator("#run-info")).to_contain_text("72 frames, 72 with a face", timeout=ANALYSIS_TIMEOUT_MS)
        expect(page.locator("#player video")).to_have_attribute("src", re.compile(r"single_face\.mp4$"))
        page.locator("#video button[aria-label='Clear']").click()

        # An iPhone's HEVC .mov: a browser-playable copy under the upload box before anything is analysed.
        page.locator("#video input[type=file]").set_input_files(str(phone))
        preview = "#upload-preview video"
        expect(page.locator(preview)).to_have_attribute("src", re.compile(r"phone_clip\.mp4$"), timeout=120_000)
        assert served_codec(page, preview, tmp_path) == "h264"
        width, played = plays(page, preview)
        assert width == 960 and played > 0.3, (width, played)

        # The player shows no other video than the one the run summary and timeline are about: single_face.mp4,
        # nothing from the moment the new analysis starts, then the copy.
        page.evaluate(SAMPLE_PLAYER.replace("#player-note", "#run-info"))
        page.locator("#analyse").click()
        expect(page.locator("#run-info")).to_contain_text("phone_clip.mov: 48 frames", timeout=ANALYSIS_TIMEOUT_MS)
        expect(page.locator("#player video")).to_have_attribute("src", re.compile(r"phone_clip\.mp4$"))
        seen = page.evaluate("() => { clearInterval(window.sampler); return window.seen; }")
        about = [(re.search(r"(single_face|phone_clip)\.(mp4|mov)", text), src) for text, src in seen]
        shown = {(m and m.group(1), Path(src).stem if src else None) for m, src in about}
        assert shown <= {("single_face", "single_face"), ("single_face", None), ("phone_clip", None),
                         ("phone_clip", "phone_clip")}, shown
        assert ("phone_clip", "phone_clip") in shown
        assert served_codec(page, "#player video", tmp_path) == "h264"
        width, played = plays(page, "#player video")
        assert width == 960 and played > 0.3, (width, played)
        expect(page.locator("#player-note")).to_have_text("")
    finally:
        page.context.close()


def test_a_stored_phone_video_opened_in_review_shows_a_note_until_the_player_can_play_it(
        server, browser, media_dir, tmp_path, ffmpeg):  # noqa: F811  browser: a fixture
    """Bob opens from the database a phone video that Alice analysed through the API (no page ever made
    its copy): the Analyse tab says the player is being prepared, shows no video meanwhile, then plays
    the H.264 copy, named as the upload."""
    cfg, url = server
    phone = tmp_path / "opened_clip.mov"
    ffmpeg("-i", media_dir / "face_noface.mov", "-frames:v", 24, "-c", "copy", "-an", phone)
    alice = Client(url, auth=("alice", "alice-pw"), verbose=False)
    assert "24 frames" in analyse(alice, phone, models=("DDAMFN",))["run_info"]
    page = signed_in_page(browser, url, "bob")
    try:
        page.get_by_role("tab", name="Review").click()
        page.locator("#open-choice input").click()
        page.get_by_role("option", name=re.compile("opened_clip.mov")).click()
        page.evaluate(SAMPLE_PLAYER)
        page.locator("#open-video").click()
        page.get_by_role("tab", name="Analyse").click()
        expect(page.locator("#player video")).to_have_attribute("src", re.compile(r"opened_clip\.mp4$"),
                                                                timeout=120_000)
        seen = page.evaluate("() => { clearInterval(window.sampler); return window.seen; }")
        waiting = ("Preparing the player: this browser cannot play opened_clip.mov as it is, so a playable copy is "
                   "being made.")
        assert [waiting, None] in seen and all(src is None for note, src in seen if note == waiting), seen[-5:]
        assert served_codec(page, "#player video", tmp_path) == "h264"
        width, played = plays(page, "#player video")
        assert width == 960 and played > 0.3, (width, played)
    finally:
        page.context.close()


def memory_mib(pid: int, field: str) -> float:
    """A process's resident memory now (VmRSS) or at its peak since start or the last reset (VmHWM), MiB."""
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", text, re.M).group(1)) / 1024


def test_an_8k_upload_is_refused_without_the_servers_memory_holding_a_frame(tmp_path, ffmpeg):
    """A server process of its own (python -m webapp). After a first refused upload (the first request's
    own costs), its peak is reset to its resident memory (/proc/PID/clear_refs), so that the peak during
    the 8K upload is measured from there, not hidden below the start-up's peak."""
    eight_k = tmp_path / "eight_k.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=s=7680x4320:r=2", "-frames:v", 4, "-c:v", "libx264", "-preset",
           "ultrafast", eight_k)
    tiny = tmp_path / "notes.mp4"
    tiny.write_text("not a video")
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "AFFECTLENS_USERS": "alice:alice-pw", "PORT": str(port),
           "AFFECTLENS_DB_URL": f"sqlite:///{tmp_path / 'review.db'}", "AFFECTLENS_DATA_DIR": str(tmp_path / "data"),
           "AFFECTLENS_CACHE_DIR": str(tmp_path / "cache"), "AFFECTLENS_RUNS_DIR": str(tmp_path / "runs"),
           "GRADIO_TEMP_DIR": str(tmp_path / "gradio"), "AFFECTLENS_CLIP_MODEL": "ViT-S-32",
           "AFFECTLENS_DEVICE": "cpu", "AFFECTLENS_MAX_UPLOAD_MB": "50"}
    server = subprocess.Popen([sys.executable, "-m", "webapp"], env=env, cwd=Path(__file__).resolve().parents[1],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = None
        for _ in range(240):
            try:
                client = Client(f"http://127.0.0.1:{port}/", auth=("alice", "alice-pw"), verbose=False)
                break
            except Exception:         # not listening yet
                assert server.poll() is None, "the server stopped while starting"
                time.sleep(0.5)
        assert client is not None, "the server did not start within 2 minutes"
        with pytest.raises(AppError, match=r"^notes\.mp4 cannot be read as a video"):
            analyse(client, tiny, models=("DDAMFN",))
        Path(f"/proc/{server.pid}/clear_refs").write_text("5")        # VmHWM := VmRSS
        before = memory_mib(server.pid, "VmHWM")
        with pytest.raises(AppError) as info:
            analyse(client, eight_k, models=("DDAMFN",))
        after = memory_mib(server.pid, "VmHWM")
        assert str(info.value) == ("eight_k.mp4's frames are 7680 x 4320 pixels; this app accepts frames up to "
                                   "8,847,360 pixels (4096 x 2160 by default). Scale it down and upload it again.")
        print(f"server resident memory {before:.0f} MiB before the 8K upload, peak {after:.0f} MiB during it "
              f"({eight_k.stat().st_size / 2**20:.1f} MiB file)")
        assert after - before < 20        # MiB; one decoded 8K frame is 95 (BGR) + 95 (RGB)
    finally:
        server.terminate()
        server.wait(timeout=30)
