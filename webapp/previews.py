"""Browser-playable copies of videos, for the upload's preview and the player.

Browsers play H.264, VP8/VP9 and AV1 in MP4 or WebM, but Chromium does not play a phone's HEVC: the upload
box stays blank, and Gradio would convert such a file itself only when it is shown in the player, on the
request's thread, after the analysis. Here the copy is made once per file and session folder by ffmpeg in
a background thread as soon as the file arrives; the analysis always reads the original. No Gradio here.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from core.video import VideoError, ffprobe

# (container, codec) pairs a browser plays as they are: Gradio's own list, so that it never converts again.
PLAYABLE = {(".mp4", "h264"), (".mp4", "av1"), (".webm", "vp8"), (".webm", "vp9"), (".webm", "av1"),
            (".ogg", "theora")}
COPY_MAX_SIDE = 1280          # the player is 260 px high: more pixels would only make the copy slower to make
COPY_TIMEOUT_S = 900.0        # far above a 10-minute clip's conversion: a stuck ffmpeg gives up its turn
PREVIEWS = "previews"         # the copies' folder inside a session folder


class PreviewError(RuntimeError):
    """No browser-playable copy could be made; the message says why, by the file's name."""


def codec(path) -> str:
    """The first video stream's codec, as FFmpeg names it ("" when there is none)."""
    return ffprobe(path, "-select_streams", "v:0", "-show_entries", "stream=codec_name", "-of", "csv=p=0").strip()


def copy_command(source: Path, target: Path, video_codec: str) -> list[str]:
    """ffmpeg's arguments for the copy: H.264 is only moved into an MP4 (instant, lossless); anything else
    is converted to H.264 at most COPY_MAX_SIDE pixels on a side. Frame times are kept as they are (the
    page maps the player's time to frame numbers), and the rotation is applied."""
    if video_codec == "h264":
        video = ["-c:v", "copy"]
    else:
        scale = (f"scale=w='min({COPY_MAX_SIDE},iw)':h='min({COPY_MAX_SIDE},ih)'"
                 ":force_original_aspect_ratio=decrease:force_divisible_by=2")
        video = ["-vf", scale, "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p",
                 "-fps_mode", "passthrough", "-enc_time_base:v", "-1"]     # -1: the original time base
    return [shutil.which("ffmpeg") or "ffmpeg", "-v", "error", "-nostdin", "-y", "-i", str(source),
            "-map", "0:v:0", "-map", "0:a:0?", *video, "-c:a", "aac", "-movflags", "+faststart", str(target)]


class Previews:
    """Copies made one at a time (the conversions share the machine with the models), each once."""

    def __init__(self):
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="preview")
        self._running: dict[Path, Future] = {}
        self._lock = threading.Lock()

    def start(self, video, folder: Path, name: str | None = None) -> Future:
        """The future of a browser-playable file for `video`: the video itself when a browser plays it, else
        its copy in folder/previews named after `name` (the upload's name; the file's own by default),
        started now unless it is made or being made."""
        video, name = Path(video), name or Path(video).name
        done: Future = Future()
        try:
            video_codec = codec(video)
        except VideoError as err:
            done.set_exception(PreviewError(f"{name} cannot be read: " + str(err).replace(f"{video}: ", "")))
            return done
        if (video.suffix.lower(), video_codec) in PLAYABLE:
            done.set_result(video)
            return done
        target = self.target(video, folder, name)
        with self._lock:
            if target in self._running:
                return self._running[target]
            if target.is_file():
                done.set_result(target)
                return done
            future = self._pool.submit(self._copy, video, target, video_codec, name)
            self._running[target] = future
        future.add_done_callback(lambda _: self._forget(target))
        return future

    @staticmethod
    def target(video: Path, folder: Path, name: str) -> Path:
        """Where the copy of this file goes: one folder per file (path, size and time stamp), the copy
        named as the upload, so that its download keeps the name."""
        stat = video.stat()
        digest = hashlib.sha256(f"{video.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}".encode()).hexdigest()
        return Path(folder) / PREVIEWS / digest[:16] / (Path(name).stem + ".mp4")

    def _forget(self, target: Path):
        with self._lock:
            self._running.pop(target, None)

    @staticmethod
    def _copy(video: Path, target: Path, video_codec: str, name: str) -> Path:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(".part-" + target.name)       # a half-made copy is never shown
        try:
            subprocess.run(copy_command(video, tmp, video_codec), check=True, capture_output=True,
                           timeout=COPY_TIMEOUT_S)
            os.replace(tmp, target)
        except subprocess.TimeoutExpired:
            raise PreviewError(f"converting {name} for the browser took more than {COPY_TIMEOUT_S:g} s") from None
        except subprocess.CalledProcessError as err:
            last = (err.stderr or b"").decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
            raise PreviewError(f"{name} could not be converted for the browser: "
                               f"{last[0].replace(str(video), name)}") from None
        finally:
            tmp.unlink(missing_ok=True)
        return target
