"""ELAN, both ways: one .eaf per video (written with pympi-ling), linked to the video file, and its VA as
a time series in a linked CSV (ELAN's way for continuous values: Linked Secondary Files, shown in the
Timeseries Viewer); and an .eaf (with its CSV) read back as annotation sets of a video.

Tiers written: the annotation's "EXPR" (intervals of one expression each), one tier per AU ("AU12":
intervals where it is on) and "AU unannotated" (frames without AU labels); the same for every model
output, prefixed by the model as the page names it ("DDAMFN (untrained): AU12"); accepted corrections
("corrections EXPR") and open flags ("flags AU") as intervals whose text gives the value or reason and
the reviewers. Times
follow core.timebase: frames [first, last] are [frame_ms(first), frame_ms(last + 1)) and come back
frame for frame.
"""
from __future__ import annotations

import hashlib
import json
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pandas as pd
from pympi import Eaf

from core.labels import AUS, EXPRESSIONS, VA_NAMES
from core.timebase import frame_at, frame_ms, frame_start, frames_in
from db.interop.mapping import AU_UNANNOTATED, EXPR_VALUES, load_mapping
from db.interop.tracks import (InteropError, VideoTracks, lanes, line_numbers, media_link, media_name, refuse, runs,
                               task_labels)

KEY_PROPERTY = "AffectLens video"
TIME_COLUMN = "time_s"
CSV_DECIMALS = 6                     # VA comes back within 0.5e-6
AU_ON = ("", "1", "on")              # an AU tier's annotation values (or the AU's name)
EXPRESSION_TYPE = "expression"       # tier type (and controlled vocabulary) of EXPR tiers
EXPRESSION_INDEX = {e.lower(): i for i, e in enumerate(EXPRESSIONS)}


# -- export -----------------------------------------------------------------------------------------
def write_eaf(tracks: VideoTracks, out_dir, stem: str, media_url: str | None = None) -> list[Path]:
    """<stem>.eaf and, when there is VA, <stem>_va.csv in out_dir; returns the paths written. The .eaf
    links the video as media_url + its file name when a media URL is configured, else as the file beside
    the .eaf (ELAN asks for it when it is elsewhere), and the CSV as the file beside it."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fps = tracks.fps
    eaf = Eaf(author="AffectLens")
    eaf.remove_tier("default")
    eaf.add_property(KEY_PROPERTY, tracks.key)
    video_file = media_name(tracks)
    if video_file is not None:
        mime = {".mp4": "video/mp4", ".mov": "video/quicktime", ".avi": "video/x-msvideo",
                ".webm": "video/webm", ".mkv": "video/x-matroska"}.get(Path(video_file).suffix.lower(), "video/*")
        url = media_link(tracks, media_url) if media_url else f"file:./{quote(video_file)}"
        eaf.add_linked_file(url, relpath=f"./{video_file}", mimetype=mime)

    _expression_type(eaf)

    def interval_tier(name: str, annotator: str, intervals, ling: str = "default-lt") -> None:
        eaf.add_tier(name, ling=ling, ann=annotator or "annotation")
        for first, last, text in intervals:
            eaf.add_annotation(name, frame_ms(first, fps), frame_ms(last + 1, fps), text)

    for track in tracks.annotation + tracks.models:
        prefix = f"{track.label}: " if track.source else ""
        if track.task == "expr":
            expressions = [(s, e, EXPRESSIONS[int(v)]) for s, e, v in runs(track.values[:, 0])]
            interval_tier(prefix + "EXPR", track.label, expressions, EXPRESSION_TYPE)
        elif track.task == "au":
            for j, au in enumerate(AUS):
                on = [(s, e, "on") for s, e, v in runs(track.values[:, j]) if v == 1]
                interval_tier(prefix + au, track.label, on)
            unannotated = np.where(np.isnan(track.values).all(axis=1), 1.0, np.nan)
            if not np.isnan(unannotated).all():
                interval_tier(prefix + AU_UNANNOTATED, track.label, [(s, e, "") for s, e, _ in runs(unannotated)])
    groups: dict[str, list] = {}
    for r in tracks.remarks:
        groups.setdefault(f"{r.kind}s {r.task.upper()}", []).append(r)
    for name, remarks in groups.items():
        lane = lanes([(r.first, r.last) for r in remarks])
        for k in range(max(lane) + 1):
            interval_tier(name + (f" {k + 1}" if k else ""), "reviewers",
                          [(r.first, r.last, r.text) for r, n in zip(remarks, lane) if n == k])
    written = [out_dir / f"{stem}.eaf"]
    va = [t for t in tracks.annotation + tracks.models if t.task == "va"]
    if va:
        written.append(out_dir / f"{stem}_va.csv")
        _va_table(va, tracks.frames, fps).to_csv(written[1], index=False, float_format=f"%.{CSV_DECIMALS}f",
                                                 na_rep="NaN")      # a number to ELAN (Java) and pandas
        eaf.add_secondary_linked_file(f"file:./{quote(written[1].name)}", relpath=f"./{written[1].name}",
                                      mimetype="text/csv")
    _order_time_slots(eaf)
    last_id = max((int(aid[1:]) for aligned, *_ in eaf.tiers.values() for aid in aligned), default=0)
    eaf.properties = [(k, v) for k, v in eaf.properties if k != "lastUsedAnnotation"] + \
        [("lastUsedAnnotation", last_id)]          # where ELAN numbers the annotations a user adds
    eaf.to_file(str(written[0]))
    return written


def _expression_type(eaf: Eaf) -> None:
    """A tier type whose values come from a controlled vocabulary of the eight expressions: ELAN then
    offers them as a list when a user annotates or corrects an EXPR tier."""
    eaf.add_language("eng", "http://cdb.iso.org/lg/CDB-00138502-001", "English (eng)")
    eaf.add_controlled_vocabulary(EXPRESSION_TYPE)
    eaf.add_cv_description(EXPRESSION_TYPE, "eng", "Aff-Wild2 expression classes")
    for i, name in enumerate(EXPRESSIONS):
        eaf.add_cv_entry(EXPRESSION_TYPE, f"cveid{i}", [(name, "eng", None)])
    eaf.add_linguistic_type(EXPRESSION_TYPE, param_dict={
        "LINGUISTIC_TYPE_ID": EXPRESSION_TYPE, "TIME_ALIGNABLE": "true", "GRAPHIC_REFERENCES": "false",
        "CONTROLLED_VOCABULARY_REF": EXPRESSION_TYPE})


def _va_table(tracks, frames: int, fps: float) -> pd.DataFrame:
    """One row per frame: its start time, then valence and arousal of each source (the annotation's
    unprefixed, models' as "<model>: valence")."""
    columns = {TIME_COLUMN: [round(frame_start(i, fps), CSV_DECIMALS) for i in range(frames)]}
    for track in tracks:
        for j, name in enumerate(VA_NAMES):
            columns[f"{track.label}: {name}" if track.source else name] = track.values[:, j]
    return pd.DataFrame(columns)


def _order_time_slots(eaf: Eaf) -> None:
    """One time slot per distinct time, numbered in time order (ELAN's own files are; pympi numbers
    them in the order annotations were added)."""
    times = sorted(set(eaf.timeslots.values()))
    new_id = {t: f"ts{i + 1}" for i, t in enumerate(times)}
    old_time = dict(eaf.timeslots)
    for aligned, *_ in eaf.tiers.values():
        for aid, (ts1, ts2, value, svg) in list(aligned.items()):
            aligned[aid] = (new_id[old_time[ts1]], new_id[old_time[ts2]], value, svg)
    eaf.timeslots = {i: t for t, i in new_id.items()}


# -- import -----------------------------------------------------------------------------------------
def read_eaf(path, fps: float, frames: int, mapping=None, video_key: str | None = None
             ) -> tuple[dict[str, np.ndarray], str, list[str]]:
    """The labels an .eaf (and its linked CSV) gives a video of `frames` frames at `fps`: {task:
    (frames, columns) float, NaN unannotated} for each task the mapping finds, a content key of what
    was read (file bytes and mapping), and notes (the tiers left out). Raises InteropError, naming the
    file, line and annotation, for a malformed file, an unknown label or an interval outside the video.
    """
    path, mapping = Path(path), load_mapping(mapping)
    raw = path.read_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            eaf = Eaf(str(path), suppress_version_warning=True)
        except Exception as err:         # pympi raises a bare Exception for XML it cannot parse
            raise _malformed(path, raw, err) from None
    written_for = dict(eaf.properties).get(KEY_PROPERTY)
    if video_key is not None and written_for not in (None, video_key):
        raise refuse(path, f"written for video {written_for!r}, not {video_key!r}")
    text = raw.decode("utf-8", errors="replace")
    lines = line_numbers(text, r'ANNOTATION_ID="([^"]+)"')
    labels, used = {}, []
    tiers = {name: target for name, target in mapping.items() if name in eaf.tiers}
    for name, target in sorted(tiers.items(), key=lambda item: item[1] == AU_UNANNOTATED):   # that one last
        aligned, refs = eaf.tiers[name][0], eaf.tiers[name][1]
        if refs:
            raise refuse(path, f"tier {name!r} is a dependent (symbolic) tier; map its time-aligned parent")
        if target in AUS:                # an AU tier without intervals: that AU is off throughout
            task_labels(labels, "au", frames)
        for aid, (ts1, ts2, value, _) in aligned.items():
            where = f"annotation {aid}, tier {name!r}"
            first, last = _frames(path, eaf.timeslots.get(ts1), eaf.timeslots.get(ts2), fps, frames,
                                  lines.get(aid), where)
            _set_label(labels, path, target, value, first, last, frames, lines.get(aid), where)
        used.append(name)
    va = _read_va(path, eaf, mapping, fps, frames)
    if va is not None:
        labels["va"], csv_bytes = va
        raw += csv_bytes
    if not labels:
        raise refuse(path, f"no tier of the mapping found (mapped: {', '.join(mapping)}; the file has: "
                           f"{', '.join(eaf.tiers) or 'no tiers'})")
    if "au" in labels:                   # an AU without a tier in the file is unannotated, not off
        labels["au"][:, [j for j, au in enumerate(AUS) if au not in tiers.values()]] = np.nan
    notes = [f"{path.name}: tiers left out (not in the mapping): {', '.join(t for t in eaf.tiers if t not in used)}"] \
        if set(eaf.tiers) - set(used) else []
    key = hashlib.sha256(raw + json.dumps(mapping, sort_keys=True).encode()).hexdigest()
    return labels, key, notes


def _malformed(path: Path, raw: bytes, err: Exception) -> InteropError:
    """Why pympi could not read a file, with the line where the XML breaks when it does."""
    try:
        root = ET.fromstring(raw)
    except ET.ParseError as parse_error:
        return refuse(path, f"not an ELAN file ({parse_error})", parse_error.position[0])
    if root.tag != "ANNOTATION_DOCUMENT":
        return refuse(path, f"not an ELAN file: its root element is <{root.tag}>, not <ANNOTATION_DOCUMENT>", 1)
    return refuse(path, f"not a complete ELAN file ({type(err).__name__}: {err})")


def _frames(path, start_ms, end_ms, fps: float, frames: int, line, where) -> tuple[int, int]:
    if start_ms is None or end_ms is None:
        raise refuse(path, "the annotation has no time (unaligned time slot)", line, where)
    span = frames_in(start_ms / 1000, end_ms / 1000, fps)
    if span is None:
        raise refuse(path, f"{start_ms}-{end_ms} ms holds no frame at {fps:g} frames/s (a frame is in an "
                           "interval when its centre is)", line, where)
    if span[0] < 0 or span[1] >= frames:
        raise refuse(path, f"{start_ms}-{end_ms} ms leaves the video (frames 0-{frames - 1}, "
                           f"0-{frame_ms(frames, fps)} ms)", line, where)
    return span


def _set_label(labels: dict, path, target: str, value: str, first: int, last: int, frames: int, line, where) -> None:
    """Write one interval into the task arrays (created on first use: EXPR unannotated, AUs off)."""
    value = (value or "").strip()
    if target in AUS or target == AU_UNANNOTATED:
        au = task_labels(labels, "au", frames)
        if target == AU_UNANNOTATED:
            au[first:last + 1] = np.nan
            return
        if value.lower() not in AU_ON + (target.lower(),):
            raise refuse(path, f"value {value!r} on a tier mapped to {target}: its intervals mark where the "
                               "AU is on (value empty, 'on', '1' or the AU's name)", line, where)
        au[first:last + 1, AUS.index(target)] = 1.0
        return
    if target == EXPR_VALUES:
        if value.lower() not in EXPRESSION_INDEX:
            raise refuse(path, f"unknown expression {value!r}; known: {', '.join(EXPRESSIONS)}", line, where)
        label = EXPRESSION_INDEX[value.lower()]
    else:
        label = EXPRESSIONS.index(target)
    expr = task_labels(labels, "expr", frames)
    span = expr[first:last + 1, 0]
    clash = ~np.isnan(span) & (span != label)
    if clash.any():
        frame = first + int(np.flatnonzero(clash)[0])
        raise refuse(path, f"frame {frame} is already {EXPRESSIONS[int(span[clash][0])]} from another "
                           f"interval, not {EXPRESSIONS[label]}", line, where)
    span[:] = label


def _read_va(path: Path, eaf: Eaf, mapping: dict, fps: float, frames: int):
    """(VA (frames, 2), the CSV's bytes) from the linked CSV's columns mapped to valence and arousal,
    or None when the file links no CSV or the mapping names no VA column."""
    columns = {name: target for name, target in mapping.items() if target in VA_NAMES}
    linked = [f for f in eaf.get_secondary_linked_files() if str(f.get("LINK_URL", "")).lower().endswith(".csv")]
    if not columns or not linked:
        return None
    relative = linked[0].get("RELATIVE_LINK_URL")
    csv = path.parent / Path(relative or linked[0]["LINK_URL"]).name
    if not csv.is_file():
        raise refuse(path, f"its linked VA file {csv.name} is not beside it: put it there, or import without "
                           "valence/arousal in the mapping")
    try:
        table = pd.read_csv(csv)
    except (ValueError, pd.errors.ParserError) as err:
        raise refuse(csv, f"not a CSV table ({err})") from None
    found = {target: name for name, target in columns.items() if name in table.columns}
    if len(found) < len(VA_NAMES):
        raise refuse(csv, f"no column for {', '.join(v for v in VA_NAMES if v not in found)} (mapped: "
                          f"{', '.join(columns)}; the file has: {', '.join(map(str, table.columns))})", 1)
    times = pd.to_numeric(table.iloc[:, 0], errors="coerce")
    if times.isna().any():
        row = int(np.flatnonzero(times.isna())[0])
        raise refuse(csv, f"time {table.iloc[row, 0]} is not a number of seconds", row + 2)
    rows = np.array([frame_at(t, fps) for t in times], dtype=np.int64)
    outside, repeated = (rows < 0) | (rows >= frames), pd.Series(rows).duplicated().to_numpy()
    if outside.any():
        row = int(np.flatnonzero(outside)[0])
        raise refuse(csv, f"time {times[row]:g} s is outside the video (0-{frames / fps:g} s)", row + 2)
    if repeated.any():
        row = int(np.flatnonzero(repeated)[0])
        raise refuse(csv, f"a second row for frame {rows[row]} ({times[row]:g} s)", row + 2)
    out = np.full((frames, 2), np.nan)
    for j, name in enumerate(VA_NAMES):
        values = pd.to_numeric(table[found[name]], errors="coerce")
        bad = (values.isna() & table[found[name]].notna()) | (values.abs() > 1)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise refuse(csv, f"{found[name]} = {table[found[name]].iloc[row]} is not a number in [-1, 1]", row + 2)
        out[rows, j] = values.to_numpy(dtype="float64")
    return out, csv.read_bytes()
