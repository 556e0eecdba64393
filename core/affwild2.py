"""Aff-Wild2 / ABAW file formats: annotation files, the multi-task CSV and submissions (a local copy's index:
core.affwild2_index).

Invalid markers (-5 for VA, -1 for EXPR and AU) are turned into missing values (NaN / <NA>) the moment a
file is read, so no marker can reach a metric or a loss as a number. A malformed file raises
AnnotationError naming the file (by its base name: an upload's server-side path means nothing to the
user and should not be shown) and the line, instead of yielding silently shifted frames. Files are read
line by line, so a file longer than its video is refused at its first surplus line, not after parsing.

Frame numbering: annotation line i after the header (i = 0, 1, ...) is frame i, image f"{i+1:05d}.jpg"
in cropped_aligned/<video>/.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from core.fill import fill_gaps
from core.labels import (
    ANNOTATION_HEADER,
    AUS,
    EXPRESSIONS,
    INVALID_AU,
    INVALID_EXPR,
    INVALID_VA,
    TASKS,
    VA_NAMES,
)

log = logging.getLogger(__name__)

# Label columns of the DataFrames this module reads and writes, per task.
LABEL_COLUMNS = {"va": list(VA_NAMES), "expr": ["expression"], "au": list(AUS)}
MTL_COLUMNS = ["image", *VA_NAMES, "expression", *AUS]
# The multi-task CSV header: as in DESIGN.md, or the short form the challenge files use for the 12 AUs.
MTL_HEADERS = (",".join(MTL_COLUMNS), "image,valence,arousal,expression,aus")
IMAGE_DIR = "cropped_aligned"
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v")
_IMAGE_NAME = re.compile(r"^(?P<video>.+)/(?P<number>\d+)\.jpg$")
_SIDES = ("_left", "_right")


class AnnotationError(ValueError):
    """A malformed annotation, multi-task or submission file; the message names the file and the line."""

    def __init__(self, path, line: int | None, message: str):
        self.path, self.line = str(path), line
        name = Path(path).name
        where = f"{name}, line {line}" if line is not None else name
        super().__init__(f"{where}: {message}")


class AnnotationTooLong(AnnotationError):
    """An annotation file with more frames than allowed, refused at its first surplus line."""


def image_name(frame: int) -> str:
    """Aff-Wild2 image file name of a 0-based frame."""
    return f"{frame + 1:05d}.jpg"


def raw_video_name(video: str) -> str:
    """Name of the raw video a (possibly two-subject) annotation belongs to: strips _left / _right."""
    for side in _SIDES:
        if video.endswith(side):
            return video[: -len(side)]
    return video


def check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")


# ---------------------------------------------------------------------------------------------------
# Parsing: text lines -> validated columns.


def _read_lines(path: Path, max_lines: int | None = None) -> list[str]:
    """The header and data lines, trailing blank lines dropped. With max_lines, a data line past that
    many raises at once (blank lines after the last allowed one are tolerated and dropped)."""
    lines: list[str] = []
    try:
        with open(path, encoding="utf-8-sig") as f:
            for number, line in enumerate(f, start=1):
                line = line.rstrip("\n")
                if max_lines is not None and number > max_lines + 1:
                    if line.strip():
                        raise AnnotationTooLong(path, number, f"more frames than the video's {max_lines:,} "
                                                            "(one line per frame after the header)")
                    continue
                lines.append(line)
    except UnicodeDecodeError as err:
        raise AnnotationError(path, None, f"not a text file ({err.reason})") from None
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise AnnotationError(path, 1, "empty file (no header)")
    return lines


def _check_header(path: Path, line: str, allowed: tuple[str, ...], what: str) -> None:
    header = ",".join(part.strip() for part in line.split(","))
    if header not in allowed:
        raise AnnotationError(path, 1, f"header {line.strip()!r} is not the {what} header {allowed[0]!r}")


def _split_fields(path: Path, lines: list[str], n_fields: int) -> pd.DataFrame:
    """Split data lines (file line 2 onwards) into n_fields stripped string columns."""
    rows = pd.Series(lines, dtype=object).str.strip()
    counts = rows.str.count(",") + 1
    bad = np.flatnonzero((counts != n_fields).to_numpy())
    if len(bad):
        i = int(bad[0])
        found = "an empty line" if rows.iloc[i] == "" else str(counts.iloc[i])
        raise AnnotationError(path, i + 2, f"expected {n_fields} values, found {found}")
    if rows.empty:
        return pd.DataFrame({k: pd.Series(dtype=object) for k in range(n_fields)})
    fields = rows.str.split(",", expand=True)
    return fields.apply(lambda col: col.str.strip())


def _parse_column(path: Path, raw: pd.Series, kind: str, name: str) -> pd.Series:
    """Validate one column of a task ("va", "expr" or "au") and turn its invalid marker into NA."""
    values = pd.to_numeric(raw, errors="coerce")
    problem = values.isna()
    if problem.any():
        i = int(np.flatnonzero(problem.to_numpy())[0])
        raise AnnotationError(path, i + 2, f"{name}: {raw.iloc[i]!r} is not a number")
    values = values.astype("float64")
    if kind == "va":
        ok = values.between(-1.0, 1.0) | (values == INVALID_VA)
        rule = f"in [-1, 1] or {INVALID_VA:g} (invalid)"
    else:
        top = len(EXPRESSIONS) - 1 if kind == "expr" else 1
        marker = INVALID_EXPR if kind == "expr" else INVALID_AU
        ok = (values == np.round(values)) & (values.between(0, top) | (values == marker))
        rule = f"an integer 0..{top} or {marker} (invalid)"
    if not ok.all():
        i = int(np.flatnonzero(~ok.to_numpy())[0])
        raise AnnotationError(path, i + 2, f"{name}: {raw.iloc[i]!r} is not {rule}")
    if kind == "va":
        return values.mask(values == INVALID_VA).rename(name)
    marker = INVALID_EXPR if kind == "expr" else INVALID_AU
    return values.mask(values == marker).astype("Int64").rename(name)


def _parse_task_columns(path: Path, fields: pd.DataFrame, task: str) -> pd.DataFrame:
    columns = [
        _parse_column(path, fields[k], task, name) for k, name in zip(fields.columns, LABEL_COLUMNS[task])
    ]
    return pd.concat(columns, axis=1)


def _split_image_names(images: pd.Series) -> tuple[pd.Series, pd.Series, int | None]:
    """Split "<video>/<number>.jpg" names into video and 0-based frame; also the first bad row, if any."""
    parts = images.str.extract(_IMAGE_NAME)
    bad = np.flatnonzero(parts["video"].isna().to_numpy())
    if len(bad):
        return parts["video"], parts["number"], int(bad[0])
    return parts["video"], parts["number"].astype("int64") - 1, None


def _image_columns(path: Path, images: pd.Series) -> tuple[pd.Series, pd.Series]:
    video, frame, bad = _split_image_names(images)
    if bad is not None:
        raise AnnotationError(path, bad + 2, f"{images.iloc[bad]!r} is not a '<video>/<number>.jpg' image name")
    return video, frame


# ---------------------------------------------------------------------------------------------------
# Annotation files (one per video and task).


def read_annotation(path, task: str, max_frames: int | None = None) -> pd.DataFrame:
    """Read one Aff-Wild2 annotation file.

    Returns one row per frame (index "frame", 0-based): va -> valence, arousal (float64, NaN invalid);
    expr -> expression (Int64, <NA> invalid); au -> AU1..AU26 (Int64, <NA> invalid).
    A header-only file gives an empty table. Raises AnnotationError for a malformed file, and with
    max_frames (the video's frame count, plus any tolerance) for a file with more lines than that, as
    soon as its first surplus line is read.
    """
    check_task(task)
    path = Path(path)
    lines = _read_lines(path, max_frames)
    _check_header(path, lines[0], (ANNOTATION_HEADER[task],), task.upper())
    n_fields = 1 if task == "expr" else len(LABEL_COLUMNS[task])
    fields = _split_fields(path, lines[1:], n_fields)
    df = _parse_task_columns(path, fields, task)
    df.index = pd.RangeIndex(len(df), name="frame")
    return df


def _label_frame(df: pd.DataFrame, task: str, path) -> pd.DataFrame:
    """The task's label columns of df, validated as a file of that task would be (raises ValueError)."""
    missing = [c for c in LABEL_COLUMNS[task] if c not in df.columns]
    if missing:
        raise ValueError(f"cannot write {path}: missing column(s) {', '.join(missing)}")
    out = df[LABEL_COLUMNS[task]].reset_index(drop=True)
    for name in out.columns:
        values = pd.to_numeric(out[name], errors="coerce").astype("float64")
        missing = out[name].isna()
        if task == "va":
            ok = missing | values.between(-1.0, 1.0)
        else:
            top = len(EXPRESSIONS) - 1 if task == "expr" else 1
            ok = missing | ((values == np.round(values)) & values.between(0, top))
        if not ok.all():
            i = int(np.flatnonzero(~ok.to_numpy())[0])
            raise ValueError(f"cannot write {path}: row {i}, {name} = {out[name].iloc[i]} is not a valid {task.upper()} value")
        out[name] = values
    return out


def _format_labels(values: pd.DataFrame, task: str) -> pd.DataFrame:
    """Label columns as file text: invalid markers for missing values, integers for EXPR and AU."""
    if task == "va":
        return values.fillna(INVALID_VA).astype(str)
    marker = INVALID_EXPR if task == "expr" else INVALID_AU
    return values.fillna(marker).astype("int64").astype(str)


def _write_table(path, header: str, body: pd.DataFrame) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = [body[c].astype(str) for c in body.columns]
    lines = columns[0].str.cat(columns[1:], sep=",") if len(body) else pd.Series([], dtype=object)
    path.write_text(header + "\n" + "".join(line + "\n" for line in lines), encoding="utf-8")


def write_annotation(df: pd.DataFrame, path, task: str) -> None:
    """Write df's label columns (as read_annotation returns them) as an Aff-Wild2 annotation file.

    Rows are written in order, one line per frame; NaN / <NA> become the task's invalid marker.
    """
    check_task(task)
    values = _label_frame(df, task, path)
    _write_table(path, ANNOTATION_HEADER[task], _format_labels(values, task))


# ---------------------------------------------------------------------------------------------------
# 7th ABAW multi-task CSV (s-Aff-Wild2).


def read_mtl_csv(path) -> pd.DataFrame:
    """Read a 7th ABAW multi-task annotation file (one per split).

    Columns: image ("<video>/<number>.jpg"), video, frame (0-based), valence, arousal (float64, NaN
    invalid), expression and AU1..AU26 (Int64, <NA> invalid).
    """
    path = Path(path)
    lines = _read_lines(path)
    _check_header(path, lines[0], MTL_HEADERS, "multi-task")
    fields = _split_fields(path, lines[1:], len(MTL_COLUMNS))
    images = fields[0].astype(str)
    video, frame = _image_columns(path, images)
    parts = [images.rename("image"), video.rename("video"), frame.rename("frame")]
    kinds = ["va", "va", "expr", *["au"] * len(AUS)]
    for k, (name, kind) in enumerate(zip(MTL_COLUMNS[1:], kinds), start=1):
        parts.append(_parse_column(path, fields[k], kind, name))
    return pd.concat(parts, axis=1)


def write_mtl_csv(df: pd.DataFrame, path) -> None:
    """Write a multi-task annotation file (header as in DESIGN.md) from a table like read_mtl_csv's."""
    if "image" not in df.columns:
        raise ValueError(f"cannot write {path}: missing column image")
    images = df["image"].astype(str).reset_index(drop=True)
    _, _, bad = _split_image_names(images)
    if bad is not None:
        raise ValueError(f"cannot write {path}: row {bad}, {images[bad]!r} is not a '<video>/<number>.jpg' name")
    parts = [images] + [_format_labels(_label_frame(df, task, path), task) for task in TASKS]
    _write_table(path, MTL_HEADERS[0], pd.concat(parts, axis=1))


# ---------------------------------------------------------------------------------------------------
# Test-set submission files (one per task).


def read_submission(path, task: str) -> pd.DataFrame:
    """Read a submission file: columns image_location, video, frame, then the task's label columns."""
    check_task(task)
    path = Path(path)
    lines = _read_lines(path)
    _check_header(path, lines[0], ("image_location," + ANNOTATION_HEADER[task],), f"{task.upper()} submission")
    n_labels = 1 if task == "expr" else len(LABEL_COLUMNS[task])
    fields = _split_fields(path, lines[1:], 1 + n_labels)
    images = fields[0].astype(str)
    video, frame = _image_columns(path, images)
    labels = _parse_task_columns(path, fields.iloc[:, 1:], task)
    return pd.concat([images.rename("image_location"), video.rename("video"), frame.rename("frame"), labels], axis=1)


def write_submission(df: pd.DataFrame, path, task: str) -> int:
    """Write an ABAW test-set submission file for one task; returns how many rows had to be filled.

    df has an image_location column ("<video>/<number>.jpg") and the task's label columns. Every listed
    frame needs a value: a row without one (a frame with no face) takes the values of the nearest frame
    of the same video that has them. A video with no value at all gets the neutral answer
    (valence = arousal = 0, Neutral, no AU) and a logged warning.
    """
    check_task(task)
    if "image_location" not in df.columns:
        raise ValueError(f"cannot write {path}: missing column image_location")
    images = df["image_location"].astype(str).reset_index(drop=True)
    video, frame, bad = _split_image_names(images)
    if bad is not None:
        raise ValueError(f"cannot write {path}: row {bad}, {images[bad]!r} is not a '<video>/<number>.jpg' name")
    values = _label_frame(df, task, path).to_numpy(dtype="float64")
    valid = ~np.isnan(values).any(axis=1)
    filled = values.copy()
    for name, rows in video.groupby(video, sort=False).groups.items():
        rows = np.asarray(rows)
        if valid[rows].all():
            continue
        if not valid[rows].any():
            log.warning("%s: video %s has no prediction at all; writing the neutral answer", path, name)
            filled[rows] = 0.0
            continue
        order = rows[np.argsort(frame.to_numpy()[rows], kind="stable")]
        filled[order] = fill_gaps(values[order], valid[order], frame.to_numpy()[order], method="nearest")
    body = _format_labels(pd.DataFrame(filled, columns=LABEL_COLUMNS[task]), task)
    body.insert(0, "image_location", images)
    _write_table(path, "image_location," + ANNOTATION_HEADER[task], body)
    return int((~valid).sum())
