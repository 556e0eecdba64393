"""Check what a user hands the app before any model runs: video files, annotation files, prompt-set text.

Each check raises InputError with one sentence a person can act on; the page shows it as is.
"""
from __future__ import annotations

import re
from pathlib import Path

from core.labels import ANNOTATION_HEADER, EXPRESSIONS
from core.video import VideoError, container, probe
from db.limits import MAX_FRAME_PIXELS, MAX_HEADER_CHARS

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
MIN_VIDEO_FRAMES = 2       # one frame is a photo: nothing moves, and the timeline and the player have no span


class InputError(ValueError):
    """Bad user input; the message is meant for the page."""


def check_video(path: str | Path | None, max_mb: float, max_duration_s: float, max_frames: int | None = None,
                max_pixels: int = MAX_FRAME_PIXELS):
    """The video's VideoInfo if it is a readable video (not a still image, at least MIN_VIDEO_FRAMES
    frames) within the size, frame-size, duration and frame-count limits, all read from the container
    before any model runs (a short video at a thousand frames a second passes the duration limit but not
    the frame limit; the frame size is checked before anything decodes a frame: one 8K frame is 192 MiB
    once converted)."""
    if not path:
        raise InputError("Choose a video first: upload one, pick the example or an Aff-Wild2 video.")
    path = Path(path)
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise InputError(f"{path.name} is not a video file: expected one of {', '.join(VIDEO_SUFFIXES)}.")
    size_mb = path.stat().st_size / 2**20   # MiB, as Gradio's max_file_size counts
    if size_mb > max_mb:
        raise InputError(f"{path.name} is {size_mb:.1f} MB; this app accepts videos up to {max_mb:g} MB.")
    try:
        stated = container(path)
        if stated.is_image:
            raise InputError(f"{path.name} is an image file ({stated.format.removesuffix('_pipe').upper()}), not "
                             "a video, whatever its name says. Upload a video file.")
        if stated.width * stated.height > max_pixels:
            raise InputError(f"{path.name}'s frames are {stated.width} x {stated.height} pixels; this app accepts "
                             f"frames up to {max_pixels:,} pixels (4096 x 2160 by default). Scale it down and "
                             "upload it again.")
        info = probe(path)
    except VideoError as err:
        raise InputError(video_message(err, path)) from None
    if info.frame_count < MIN_VIDEO_FRAMES:
        raise InputError(f"{path.name} holds {info.frame_count} frame: it is a still picture, not a video. This "
                         f"app analyses videos of at least {MIN_VIDEO_FRAMES} frames.")
    if info.duration_s > max_duration_s:
        raise InputError(f"{path.name} lasts {info.duration_s:.0f} s; this app accepts videos up to "
                         f"{max_duration_s:g} s. Cut it shorter and upload it again.")
    if max_frames is not None and info.frame_count > max_frames:
        raise InputError(f"{path.name} has {info.frame_count} frames ({info.fps:.0f} frames/s); this app "
                         f"analyses up to {max_frames} frames per video. Cut it shorter or lower its frame rate.")
    return info


def whole(value, what: str, low: int | None = None, high: int | None = None) -> int:
    """A whole number from the page or the API (7 and 7.0 are 7; 7.5, text or nothing are refused, never
    rounded), within [low, high] when given."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not number.is_integer():
        raise InputError(f"The {what} must be a whole number; {value!r} is not.")
    number = int(number)
    if (low is not None and number < low) or (high is not None and number > high):
        bounds = (f"from {low} to {high}" if low is not None and high is not None
                  else f"{low} or more" if low is not None else f"{high} or less")
        raise InputError(f"The {what} must be {bounds}; {number} is not.")
    return number


def video_message(err: VideoError, path: str | Path) -> str:
    """A VideoError for the page: the file's name instead of its server-side path."""
    return f"{Path(path).name} cannot be read as a video: " + str(err).replace(f"{path}: ", "")


def annotation_task(path: str | Path) -> str:
    """Which task an Aff-Wild2 annotation file holds, read from its header line (at most MAX_HEADER_CHARS
    characters are read: a file of one endless line costs no memory)."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8-sig") as f:
            line = f.readline(MAX_HEADER_CHARS + 1)
    except UnicodeDecodeError:
        raise InputError(f"{path.name} is not a text file, so not an Aff-Wild2 annotation file.") from None
    if len(line) > MAX_HEADER_CHARS:
        raise InputError(f"{path.name} is not an Aff-Wild2 annotation file: its first line is longer than "
                         f"{MAX_HEADER_CHARS:,} characters.")
    header = ",".join(part.strip() for part in line.split(","))
    for task, expected in ANNOTATION_HEADER.items():
        if header == expected:
            return task
    raise InputError(f"{path.name} is not an Aff-Wild2 annotation file: its first line should be one of "
                     + "; ".join(ANNOTATION_HEADER.values()) + ".")


def annotation_files(paths: list[str] | None) -> dict[str, str]:
    """task -> path for uploaded annotation files, one per task at most."""
    files: dict[str, str] = {}
    for path in paths or []:
        task = annotation_task(path)
        if task in files:
            raise InputError(f"Two {task.upper()} annotation files: {Path(files[task]).name} and "
                             f"{Path(path).name}. Upload one per task.")
        files[task] = path
    return files


# Prompt sets as text in the page: templates one per line with "{}" where the class phrase goes, and
# one line per expression, "Happiness: happy | smiling".
_CLASS_LINE = re.compile(r"^\s*([A-Za-z]+)\s*:\s*(.+)$")


PROMPT_SET_NAME_RULE = "1-40 letters, digits or _ (it becomes a column name)"   # the page's Name box says it


def parse_prompt_text(name: str, templates_text: str, classes_text: str) -> tuple[str, list[str], dict]:
    """(name, templates, classes) from the page's text fields; every expression needs a phrase."""
    name = (name or "").strip()
    if not re.fullmatch(r"[A-Za-z0-9_]{1,40}", name):
        raise InputError(f"A prompt set name uses {PROMPT_SET_NAME_RULE}.")
    templates = [t.strip() for t in (templates_text or "").splitlines() if t.strip()]
    if not templates:
        raise InputError(f"Prompt set {name}: give at least one template, e.g. 'a photo of a {{}} face'.")
    bad = [t for t in templates if t.count("{}") != 1]
    if bad:
        raise InputError(f"Prompt set {name}: each template needs exactly one {{}} for the class phrase; "
                         f"{bad[0]!r} has {bad[0].count('{}')}.")
    classes: dict[str, list[str]] = {}
    for line in (classes_text or "").splitlines():
        if not line.strip():
            continue
        match = _CLASS_LINE.match(line)
        if not match or match.group(1) not in EXPRESSIONS:
            raise InputError(f"Prompt set {name}: {line.strip()!r} should read 'Expression: phrase | phrase' "
                             f"with an expression from {', '.join(EXPRESSIONS)}.")
        phrases = [p.strip() for p in match.group(2).split("|") if p.strip()]
        classes[match.group(1)] = phrases
    missing = [e for e in EXPRESSIONS if not classes.get(e)]
    if missing:
        raise InputError(f"Prompt set {name}: no phrase for {', '.join(missing)}.")
    return name, templates, {e: classes[e] for e in EXPRESSIONS}


def format_prompt_text(templates: list[str], classes: dict[str, list[str]]) -> tuple[str, str]:
    """The page's text fields for a prompt set (inverse of parse_prompt_text)."""
    return "\n".join(templates), "\n".join(f"{e}: {' | '.join(classes[e])}" for e in EXPRESSIONS)
