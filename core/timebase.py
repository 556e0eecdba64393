"""Frame <-> time: the one rule every file format, export and page uses to turn a frame index into a time
and a time back into frames, frame-exact at the video's frame rate.

The frame rate of an analysed video is core.table.frame_rate(table) (the same number a registered video
keeps as Video.fps). Frame i (0-based) starts at i / fps and lasts until the next frame starts; an
interval of frames [first, last] (inclusive, as flags and corrections store them) is the time interval
[start(first), start(last + 1)).

Back from time: a time t falls to the frame whose start is nearest (a tie goes to the earlier frame),
so an interval [t0, t1) holds exactly the frames whose centre, (i + 0.5) / fps, lies in [t0, t1). Times
written by frame_ms() come back to the same frame for any rate under 1000 frames/s, since a millisecond
is then less than a frame.
"""
from __future__ import annotations

import math

from core.table import frame_rate

__all__ = ["frame_rate", "frame_start", "frame_ms", "frame_at", "frames_in"]


def frame_start(frame: int, fps: float) -> float:
    """Seconds from the start of the video to the start of frame `frame`."""
    return frame / fps


def frame_ms(frame: int, fps: float) -> int:
    """frame_start in whole milliseconds (ELAN's unit), rounded to the nearest."""
    return round(frame * 1000 / fps)


def frame_at(seconds: float, fps: float) -> int:
    """The frame whose start is nearest to `seconds` (a tie goes to the earlier frame); may be negative
    or past the last frame: the caller checks the video's range."""
    return math.ceil(seconds * fps - 0.5)


def frames_in(start_s: float, end_s: float, fps: float) -> tuple[int, int] | None:
    """The frames [first, last] (inclusive) of the time interval [start_s, end_s): those whose centre lies
    in it; None when it holds no frame (shorter than a frame and between two centres)."""
    first, stop = frame_at(start_s, fps), frame_at(end_s, fps)
    return (first, stop - 1) if stop > first else None
