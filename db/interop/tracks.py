"""What an exported file shows of one video, gathered once from the review database and the stored
analysis for every outside format (ELAN, Label Studio): the effective annotation, the model outputs
(each marked untrained where its weights were random), accepted corrections and open flags, all as
per-frame arrays or inclusive frame ranges -- and the helpers that turn them into intervals and back.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pandas as pd
from sqlalchemy.orm import Session

from core import settings
from core.affwild2 import LABEL_COLUMNS
from core.labels import AUS, EXPRESSIONS, TASKS
from core.table import AROUSAL, AU_DECISIONS, EXPR, VALENCE, expr_outputs, output_expr, prompt_set_of
from db.models import Video
from db.repo import (
    ValidationError,
    effective_labels,
    get_video,
    latest_annotation_set,
    latest_run,
    list_corrections,
    list_flags,
)

MODEL_COLUMNS = {"va": [VALENCE, AROUSAL], "expr": [EXPR], "au": AU_DECISIONS}


class InteropError(ValidationError):
    """A file that cannot be read as labels of the video: the message names the file and, where it can,
    the line and the annotation (one line, for the page and the command line)."""


def refuse(path, message: str, line: int | None = None, where: str = "") -> InteropError:
    place = Path(path).name + (f" line {line}" if line else "") + (f" ({where})" if where else "")
    return InteropError(f"{place}: {message}")


def task_labels(labels: dict, task: str, frames: int) -> np.ndarray:
    """The (frames, columns) array of "expr" or "au" being read from a file, made on first use: every
    frame unannotated (NaN) for EXPR, every AU off (0) for AUs (a file marks where an AU is on)."""
    if task not in labels:
        labels[task] = np.full((frames, 1), np.nan) if task == "expr" else np.zeros((frames, len(AUS)))
    return labels[task]


def line_numbers(text: str, pattern: str) -> dict[str, int]:
    """{first group of `pattern`: the 1-based line it first occurs on} over a file's text."""
    found: dict[str, int] = {}
    line, at = 1, 0
    for match in re.finditer(pattern, text):
        line, at = line + text.count("\n", at, match.start()), match.start()
        found.setdefault(match.group(1), line)
    return found


@dataclass
class Track:
    """One task of one source over every frame: (frames, columns) float, NaN where it has no label."""

    task: str
    values: np.ndarray
    source: str = ""                 # "" for the annotation, else the output as the page names it
    untrained: bool = False

    @property
    def label(self) -> str:
        """How a file names the source: the model, with "(untrained)" when its weights were random."""
        return self.source + (" (untrained)" if self.untrained else "")


@dataclass
class Remark:
    """An accepted correction or an open flag: frames [first, last] of one task, said in words."""

    kind: str                        # "correction" or "flag"
    task: str
    first: int
    last: int
    text: str


@dataclass
class VideoTracks:
    key: str
    name: str
    fps: float
    frames: int
    media: Path | None               # the video file, when this machine has it
    annotation: list[Track] = field(default_factory=list)
    models: list[Track] = field(default_factory=list)
    remarks: list[Remark] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def video_tracks(session: Session, video: Video | str, data_dir=None, media=None) -> VideoTracks:
    """Everything an export shows of a video; data_dir (default: the configured one) holds its newest
    analysis and the kept copy of an upload; media overrides where the video file is."""
    video = get_video(session, video)
    data_dir = Path(data_dir) if data_dir is not None else settings.data_dir()
    media = Path(media) if media is not None else settings.kept_video(data_dir, video.key)
    out = VideoTracks(video.key, video.name, video.fps, video.frame_count, media)
    for task in TASKS:
        labels = effective_labels(session, video, task)
        values = labels[LABEL_COLUMNS[task]].to_numpy(dtype="float64", na_value=np.nan)
        if latest_annotation_set(session, video, task) is not None or labels["correction_id"].notna().any():
            out.annotation.append(Track(task, values))
    run = latest_run(session, video)
    table_path = data_dir / run.table_path if run is not None else None
    if table_path is not None and table_path.is_file():
        from core.analysis import RunInfo          # loads torch (the model cards): only when there are outputs

        out.models = model_tracks(pd.read_parquet(table_path), RunInfo.from_dict(run.details), video.frame_count)
    elif run is not None:
        out.notes.append(f"the stored analysis of {video.name} ({run.table_path}) is missing: the files hold no "
                         "model outputs")
    out.remarks = remarks(session, video)
    return out


def model_tracks(table: pd.DataFrame, run, frames: int) -> list[Track]:
    """The analysis table's outputs, one track per output (va, expr, au, prompt sets', the CLIP models'
    own), named as the page names them (core.registry.output_label: "DDAMFN+LSTM", "CLIP basic") and
    marked untrained where RunInfo.untrained_outputs says its weights were random."""
    from core.registry import output_label

    untrained = run.untrained_outputs()

    def column_values(columns) -> np.ndarray:
        values = np.full((frames, len(columns)), np.nan)
        rows = table[columns].to_numpy(dtype="float64", na_value=np.nan)[:frames]
        values[:len(rows)] = rows
        return values

    tracks = []
    for task in TASKS:
        if all(c in table for c in MODEL_COLUMNS[task]) and table[MODEL_COLUMNS[task]].notna().any().any():
            tracks.append(Track(task, column_values(MODEL_COLUMNS[task]), output_label(task, run.outputs_from[task]),
                                untrained[task]))
    for output in expr_outputs(table):          # prompt sets ("CLIP basic") and the CLIP models' own outputs
        tracks.append(Track("expr", column_values([output_expr(output)]),
                            output_label(output, run.outputs_from[output], prompt_set_of(output)), untrained[output]))
    return tracks


def _value_text(task: str, value: dict) -> str:
    if task == "expr":
        return EXPRESSIONS[int(value["expression"])]
    return " ".join(f"{k}={v:g}" for k, v in value.items())


def remarks(session: Session, video: Video) -> list[Remark]:
    """Accepted corrections ("<value> by <author>, accepted by <reviewer>: <note>") and open flags
    ("<reason> by <reviewer>: <note>")."""
    out = []
    for c in list_corrections(session, video, status="accepted"):
        text = f"{_value_text(c.task, c.value)} by {c.reviewer.name}, accepted by {c.reviewed_by.name}"
        out.append(Remark("correction", c.task, c.start_frame, c.end_frame, text + (f": {c.note}" if c.note else "")))
    for f in list_flags(session, video, open_only=True):
        out.append(Remark("flag", f.task, f.start_frame, f.end_frame,
                          f"{f.reason} by {f.reviewer.name}" + (f": {f.note}" if f.note else "")))
    return out


def media_name(tracks: VideoTracks) -> str | None:
    """The video's file name as its user has it (an upload's own name; the kept copy's otherwise); None
    for a video without a file (an Aff-Wild2 video known by its id only)."""
    if Path(tracks.name).suffix:
        return tracks.name
    return tracks.media.name if tracks.media is not None else None


def media_link(tracks: VideoTracks, media_url: str | None) -> str | None:
    """How an outside tool reaches the video: the configured media URL (a prefix, settings.media_url)
    followed by its file name, URL-quoted; without one, the bare file name (beside the exported files).
    Never a path on the server, which the user's machine does not have."""
    name = media_name(tracks)
    if name is None:
        return None
    return media_url + quote(name) if media_url else name


def file_stem(name: str) -> str:
    """A file name for a video's exports: its own name without extension (the database key stays out of
    sight; a command exporting several videos of one name numbers them)."""
    stem = Path(name).stem if Path(name).suffix else name
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "video"


def runs(values: np.ndarray) -> list[tuple[int, int, float]]:
    """Stretches of equal labels in a per-frame column as (first, last, value), NaN stretches left out."""
    v = np.asarray(values, dtype="float64")
    if len(v) == 0:
        return []
    same = (v[1:] == v[:-1]) | (np.isnan(v[1:]) & np.isnan(v[:-1]))
    starts = np.r_[0, np.flatnonzero(~same) + 1]
    ends = np.r_[starts[1:], len(v)] - 1
    return [(int(s), int(e), float(v[s])) for s, e in zip(starts, ends) if not np.isnan(v[s])]


def lanes(spans: list[tuple[int, int]]) -> list[int]:
    """A lane (0, 1, ...) per frame range such that ranges in one lane never overlap: ELAN lets no two
    annotations of a tier overlap, so overlapping flags go to a second tier."""
    ends: list[int] = []
    out = [0] * len(spans)
    for i in sorted(range(len(spans)), key=lambda i: spans[i]):
        first, last = spans[i]
        lane = next((k for k, end in enumerate(ends) if end < first), len(ends))
        ends[lane:lane + 1] = [last]
        out[i] = lane
    return out
