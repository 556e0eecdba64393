"""Decode a video file into upright RGB frames, in batches, with each frame's index and true timestamp;
count its frames and read single frames without decoding the whole file.

OpenCV's FFmpeg backend decodes; ffprobe (FFmpeg, packages.txt) lists the container's packets. Four facts
shape this module:
- The container's frame count is only an estimate (no_face.mp4 says 98 and holds 95; variable-frame-rate
  WebM can be off several times over). The packets say exactly: one per frame, less those the container
  marks to discard (an edit list's lead-in). probe() counts them without decoding (tens of milliseconds
  for a 20 s clip) and so refuses a truncated file before any model work.
- Reading frame N seeks to the keyframe at or before it and decodes forward. OpenCV's own frame seek
  misses on variable frame rate (face_noface.mov), so frames are recognised by their timestamps, which the
  packet list gives for every frame.
- Timestamps come from the decoder (CAP_PROP_POS_MSEC is the frame's presentation time), so variable
  frame rate gives true times instead of index / fps.
- Rotation metadata (a phone's portrait video) is applied by OpenCV itself (CAP_PROP_ORIENTATION_AUTO is
  on by default); the frames match what FFmpeg shows, and VideoInfo.rotation reports the angle.
A file that cannot be opened, holds no frame, or stops decoding well before its stated duration
(truncated) raises VideoError with a one-line message; so does an ffprobe call that gets no answer within
FFPROBE_TIMEOUT_S (a file on a stalled disk, a named pipe nobody writes to).
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import functools
import shutil
import subprocess

import cv2
import numpy as np

# A decode that ends this long before the container's duration (and more than this fraction of it) is a
# truncated file, not the usual off-by-a-few-frames estimate.
TRUNCATION_MIN_S = 1.0
TRUNCATION_MIN_FRACTION = 0.1
SEEK_EARLY_S = 0.25          # read_frames aims this much before a keyframe (see _Seeker._seek)
# ffprobe lists a ten-minute video's packets in about a second; far longer means it is stuck waiting for input.
FFPROBE_TIMEOUT_S = 60.0
# FFmpeg's demuxers for still images (and the *_pipe ones): such a file is a picture, whatever its name says.
IMAGE_FORMATS = {"image2", "image2pipe", "gif", "apng", "alias_pix", "brender_pix", "fits"}


class VideoError(ValueError):
    """The file is not a readable video; the message is one line that names the file."""


@dataclass(frozen=True)
class VideoInfo:
    """A video's facts. width/height are of the upright frames; rotation is the clockwise angle (0, 90,
    180, 270) OpenCV applied; frame_count: the frames iter_frames yields, counted from the packets;
    duration_s: from the first frame's start to the last frame's end, from the packets;
    frame_count_estimate: what the container's header says."""

    path: str
    fps: float
    width: int
    height: int
    rotation: int
    frame_count_estimate: int
    duration_s: float
    codec: str
    frame_count: int

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class FrameBatch:
    """Consecutive decoded frames: index (int64, 0-based), time_s (float64), frames (HxWx3 uint8 RGB)."""

    index: np.ndarray
    time_s: np.ndarray
    frames: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.frames)


def _must_have_bytes(path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise VideoError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise VideoError(f"{path}: empty file")
    return path


def _open(path) -> cv2.VideoCapture:
    path = _must_have_bytes(path)
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if not cap.isOpened():
        cap.release()
        raise VideoError(f"{path}: cannot open as a video (not a video, unsupported, or truncated)")
    return cap


def _codec(cap: cv2.VideoCapture) -> str:
    fourcc = int(cap.get(cv2.CAP_PROP_FOURCC))
    text = fourcc.to_bytes(4, "little").decode("ascii", errors="replace").strip("\x00 ")
    return text or "unknown"


def _header(path, cap: cv2.VideoCapture) -> dict:
    fps = float(cap.get(cv2.CAP_PROP_FPS))
    fps = fps if np.isfinite(fps) and fps > 0 else 0.0
    count = int(max(cap.get(cv2.CAP_PROP_FRAME_COUNT), 0))
    return dict(path=str(path), fps=fps, width=int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
                height=int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
                rotation=int(cap.get(cv2.CAP_PROP_ORIENTATION_META)) % 360, frame_count_estimate=count,
                duration_s=count / fps if fps else 0.0, codec=_codec(cap))


@dataclass(frozen=True)
class _Packets:
    """The video stream's frames from its packets: time_s (n,) presentation times from the first frame,
    ascending; keyframes: indices of the frames that start a GOP (0 always); duration_s."""

    time_s: np.ndarray
    keyframes: np.ndarray
    duration_s: float


def _packets(path, fps: float) -> _Packets:
    """List the packets with ffprobe (no decoding). Discarded packets are dropped; a packet without a
    presentation time takes its decode time. Cached per file version."""
    stat = Path(path).stat()
    return _packets_cached(str(path), stat.st_size, stat.st_mtime_ns, fps)


@functools.lru_cache(maxsize=16)
def _packets_cached(path: str, _size: int, _mtime: int, fps: float) -> _Packets:
    out = ffprobe(path, "-select_streams", "v:0", "-show_entries", "packet=pts_time,dts_time,duration_time,flags",
                  "-of", "csv=p=0")
    times, durations, keys = [], [], []
    for line in out.splitlines():      # blank lines and extra fields: side data (a WebM's alpha channel)
        pts, dts, duration, flags = (line.split(",") + ["", "", "", ""])[:4]
        time_s = _seconds(pts) if _seconds(pts) is not None else _seconds(dts)
        if "D" in flags or time_s is None:
            continue
        times.append(time_s)
        durations.append(_seconds(duration) or 0.0)
        keys.append("K" in flags)
    if not times:
        return _Packets(np.zeros(0), np.zeros(1, np.int64), 0.0)
    order = np.argsort(times, kind="stable")
    t = np.asarray(times)[order]
    t -= t[0]
    step = durations[order[-1]] or (1.0 / fps if fps else 0.0)
    keyframes = np.union1d([0], np.flatnonzero(np.asarray(keys)[order]))
    return _Packets(t, keyframes.astype(np.int64), float(t[-1] + step))


def _seconds(text: str) -> float | None:
    """A time from ffprobe's CSV; None for a blank or N/A field."""
    try:
        return float(text)
    except ValueError:
        return None


def ffprobe(path, *args: str, timeout_s: float | None = None) -> str:
    """ffprobe's quiet output for `path`: every ffprobe call of the project goes through here. Raises
    VideoError when it has not answered within timeout_s (FFPROBE_TIMEOUT_S unless given): a request
    thread must never wait on it for ever."""
    timeout_s = FFPROBE_TIMEOUT_S if timeout_s is None else timeout_s
    program = shutil.which("ffprobe")
    if program is None:
        raise RuntimeError("ffprobe is needed to read videos: install FFmpeg (apt-get install ffmpeg)")
    try:
        return subprocess.run([program, "-v", "quiet", *args, str(path)], capture_output=True, text=True,
                              timeout=timeout_s).stdout
    except subprocess.TimeoutExpired:
        raise VideoError(f"{path}: reading the file gave no answer within {timeout_s:g} s (a stalled disk or a "
                         "pipe rather than a file)") from None


@dataclass(frozen=True)
class Container:
    """What the container states, read without decoding: FFmpeg's name for its format and the first
    video stream's frame size."""

    format: str
    width: int
    height: int

    @property
    def is_image(self) -> bool:
        """An image's container (a JPEG renamed .mp4 is one; an animated GIF too), not a video's."""
        return self.format in IMAGE_FORMATS or self.format.endswith("_pipe")


def container(path) -> Container:
    """The container's format and frame size, read by ffprobe without decoding a frame or opening a
    decoder: check them before anything decodes a frame of unknown size."""
    _must_have_bytes(path)
    out = ffprobe(path, "-select_streams", "v:0", "-show_entries", "stream=width,height:format=format_name",
                  "-of", "default=noprint_wrappers=1")
    fields = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    try:
        return Container(fields["format_name"], int(fields["width"]), int(fields["height"]))
    except (KeyError, ValueError):
        raise VideoError(f"{path}: no video stream with a frame size (not a video, or corrupt)") from None


def probe(path) -> VideoInfo:
    """The video's facts from its header and packets, without decoding it. Raises VideoError for a file
    that cannot be opened, holds no frame, or whose packets end well before its stated duration
    (truncated); a 20 s clip takes well under a second."""
    cap = _open(path)
    try:
        header = _header(path, cap)
    finally:
        cap.release()
    packets = _packets(path, header["fps"])
    if not len(packets.time_s):
        raise VideoError(f"{path}: the file holds no video frame (corrupt or not a video)")
    info = VideoInfo(**{**header, "duration_s": packets.duration_s, "frame_count": len(packets.time_s)})
    _check_complete(path, header["duration_s"], info.frame_count, packets.duration_s, "the file ends")
    return info


def iter_frames(path, batch_size: int = 64, max_frames: int | None = None) -> Iterator[FrameBatch]:
    """Decode the whole video (or its first max_frames frames) as batches of upright RGB frames.

    Only one batch is in memory at a time. A timestamp that is missing or goes backwards is replaced by
    the previous one plus 1/fps. Raises VideoError for an unreadable, frameless or truncated file
    (truncation is only known at the end, after the frames before it were yielded).
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    cap = _open(path)
    try:
        info = _header(path, cap)
        step = 1.0 / (info["fps"] or 30.0)  # only used to repair a bad timestamp
        n, last_t = 0, None
        while max_frames is None or n < max_frames:
            want = batch_size if max_frames is None else min(batch_size, max_frames - n)
            frames, times = [], []
            for _ in range(want):
                ok, bgr = cap.read()
                if not ok:
                    break
                t = cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
                if last_t is None:
                    t = t if np.isfinite(t) else 0.0
                elif not (np.isfinite(t) and t > last_t):
                    t = last_t + step
                frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
                times.append(t)
                last_t = t
            if frames:
                yield FrameBatch(np.arange(n, n + len(frames), dtype=np.int64), np.asarray(times), frames)
                n += len(frames)
            if len(frames) < want:
                break
        if n == 0:
            raise VideoError(f"{path}: no frame could be decoded (corrupt or not a video)")
        if max_frames is None or n < max_frames:
            _check_complete(path, info["duration_s"], n, last_t + step, "decoding stopped")
    finally:
        cap.release()


def _check_complete(path, stated_s: float, n: int, found_s: float, what: str) -> None:
    missing = stated_s - found_s
    if missing > max(TRUNCATION_MIN_S, TRUNCATION_MIN_FRACTION * stated_s):
        raise VideoError(f"{path}: {what} after {n} frames ({found_s:.1f} s of {stated_s:.1f} s): "
                         "the file is truncated or corrupt")


def read_frames(path, indices) -> dict[int, np.ndarray]:
    """Frames by index (upright RGB, the pixels iter_frames gives) without decoding from frame 0: each
    comes from the keyframe at or before it, decoded forward (frames close after the previous one are
    reached by decoding on). Raises VideoError for an unreadable file, IndexError for an index outside
    the video."""
    wanted = sorted({int(i) for i in indices})
    if not wanted:
        return {}
    cap = _open(path)
    try:
        packets = _packets(path, _header(path, cap)["fps"])
        n = len(packets.time_s)
        if wanted[0] < 0 or wanted[-1] >= n:
            raise IndexError(f"{path}: frame {wanted[0] if wanted[0] < 0 else wanted[-1]} is outside its {n} frames")
        reader = _Seeker(path, cap, packets)
        return {i: cv2.cvtColor(reader.frame(i), cv2.COLOR_BGR2RGB) for i in wanted}
    finally:
        cap.release()


def read_frame(path, index: int) -> np.ndarray:
    """One frame (upright RGB) by index; see read_frames."""
    return read_frames(path, [index])[int(index)]


class FrameCache:
    """Decoded frames kept by (file, index), the least recently used dropped first, bounded in bytes (a
    4K frame is 24 MiB, an 8K one 96; a count would bound nothing). Safe for threads; a frame larger than
    the whole bound is handed out but not kept."""

    def __init__(self, max_bytes: int):
        self.max_bytes = int(max_bytes)
        self.bytes = 0
        self._frames: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def frames(self, path, indices, read: Callable[[object, list[int]], dict[int, np.ndarray]]) -> dict[int, np.ndarray]:
        """The frames at `indices`: kept ones, and the others from read(path, missing indices), then kept."""
        key = str(path)
        with self._lock:
            found = {i: self._frames[(key, i)] for i in indices if (key, i) in self._frames}
            for i in found:
                self._frames.move_to_end((key, i))
        missing = [i for i in indices if i not in found]
        if missing:
            decoded = read(path, missing)
            found.update(decoded)
            with self._lock:
                for i, image in decoded.items():
                    self._put((key, i), image)
        return found

    def _put(self, key: tuple[str, int], image: np.ndarray) -> None:
        if image.nbytes > self.max_bytes:
            return
        old = self._frames.pop(key, None)
        self.bytes += image.nbytes - (old.nbytes if old is not None else 0)
        self._frames[key] = image
        while self.bytes > self.max_bytes:
            self.bytes -= self._frames.popitem(last=False)[1].nbytes


class _Seeker:
    """A capture positioned by frame index. OpenCV seeks by time; where it lands is read from the
    decoded frame's timestamp, matched against the packet times (calibrated on frame 0)."""

    def __init__(self, path, cap: cv2.VideoCapture, packets: _Packets):
        self.path, self.cap, self.packets = path, cap, packets
        self.current = -1                  # index of the frame last grabbed
        self._grab()
        self.offset = self._time() - packets.time_s[0]
        gaps = np.diff(packets.time_s)
        self.tolerance = 0.5 * (gaps[gaps > 0].min() if (gaps > 0).any() else 1.0)

    def _grab(self) -> None:
        if not self.cap.grab():
            raise VideoError(f"{self.path}: decoding stopped at frame {self.current + 1}: the file is truncated or corrupt")
        self.current += 1

    def _time(self) -> float:
        return self.cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0

    def _seek(self, key: int) -> bool:
        """Seek near keyframe `key`; True when it landed on a known frame at or before `key`. OpenCV maps
        time to frames at the average rate, which misses on variable frame rate: aim a little early."""
        self.cap.set(cv2.CAP_PROP_POS_MSEC, 1000.0 * max(self.packets.time_s[key] - SEEK_EARLY_S, 0.0))
        if not self.cap.grab():
            return False
        t = self._time() - self.offset
        found = int(np.searchsorted(self.packets.time_s, t - self.tolerance))
        if found >= len(self.packets.time_s) or abs(self.packets.time_s[found] - t) > self.tolerance or found > key:
            return False
        self.current = found
        return True

    def frame(self, index: int) -> np.ndarray:
        keys = self.packets.keyframes
        key = int(keys[np.searchsorted(keys, index, side="right") - 1])
        if not key <= self.current <= index:
            earlier = [int(k) for k in keys[keys <= key][::-1][:3] if k > 0]
            if not any(self._seek(k) for k in earlier):     # from the start: reopen
                self.cap.release()
                self.cap.open(str(self.path), cv2.CAP_FFMPEG)
                self.current = -1
                self._grab()
        while self.current < index:
            self._grab()
        ok, bgr = self.cap.retrieve()
        if not ok:
            raise VideoError(f"{self.path}: frame {index} could not be decoded")
        return bgr
