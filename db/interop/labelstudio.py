"""Label Studio, both ways: a video as a task JSON (Label Studio's documented import format) with the
labeling config that shows it, and a Label Studio JSON export of such a project read back as annotation
sets.

The task: data.video (the configured media URL and the file name: settings.media_url), the VA of the
annotation ("valence", "arousal") and of the models ("DDAMFN (untrained): valence") as a <TimeSeries>
synced with the video, its data inline (valueType="json": {"time": [...], name: [...]}); one `annotations`
entry with the reviewed annotation's EXPR and AU, its accepted corrections and open flags (the review
team's state, which an annotator edits and submits); one `predictions` entry per model with its EXPR and
AU together, model_version saying which of them are untrained ("DDAMFN+LSTM (AU untrained)").

The config: a <Video> with the frame rate, <TimelineLabels> "expr" (the eight expressions), "au" (the
twelve AUs and "AU unannotated": frames without AU labels, e.g. no face, which come back unannotated, not
as every AU off) and "review" ("correction EXPR", "flag AU", ...: the reviewers' remarks, their words in
the region's meta text; never read back as labels). A TimelineLabels result is {"from_name", "to_name",
"type": "timelinelabels", "value": {"ranges": [{"start", "end"}], "timelinelabels": [label]}}, ranges in
Label Studio's video frames, which count from 1 and include the end: our frames [first, last] are
{"start": first + 1, "end": last + 1}.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np

from core.labels import AUS, EXPRESSIONS, TASKS, VA_NAMES
from core.timebase import frame_start
from db.interop.mapping import AU_UNANNOTATED
from db.interop.tracks import Track, VideoTracks, line_numbers, media_link, refuse, runs, task_labels

VIDEO, EXPR_CONTROL, AU_CONTROL, REVIEW_CONTROL, VA_OBJECT = "video", "expr", "au", "review", "va"
KEY_FIELD = "affectlens_video"         # task data field naming the AffectLens video
REVIEW_LABELS = tuple(f"{kind} {task.upper()}" for kind in ("correction", "flag") for task in TASKS)


def _channels(tracks: VideoTracks) -> list[tuple[str, np.ndarray]]:
    return [(f"{t.label}: {name}" if t.source else name, t.values[:, j])
            for t in tracks.annotation + tracks.models if t.task == "va" for j, name in enumerate(VA_NAMES)]


def labeling_config(tracks: VideoTracks) -> str:
    """The project's labeling config (XML) for the tasks write_label_studio writes."""
    labels = lambda values: "".join(f"\n    <Label value={quoteattr(v)}/>" for v in values)      # noqa: E731
    channels = "".join(f"\n    <Channel column={quoteattr(name)}/>" for name, _ in _channels(tracks))
    series = (f'\n  <TimeSeries name="{VA_OBJECT}" value="${VA_OBJECT}" valueType="json" timeColumn="time" '
              f'sync="{VIDEO}">{channels}\n  </TimeSeries>') if channels else ""
    sync = f' sync="{VIDEO}"' if channels else ""
    return (f'<View>\n  <Video name="{VIDEO}" value="${VIDEO}" framerate="{tracks.fps!r}"{sync}/>\n'
            f'  <TimelineLabels name="{EXPR_CONTROL}" toName="{VIDEO}">{labels(EXPRESSIONS)}\n  </TimelineLabels>\n'
            f'  <TimelineLabels name="{AU_CONTROL}" toName="{VIDEO}">{labels((*AUS, AU_UNANNOTATED))}\n'
            f'  </TimelineLabels>\n'
            f'  <TimelineLabels name="{REVIEW_CONTROL}" toName="{VIDEO}">{labels(REVIEW_LABELS)}\n  </TimelineLabels>'
            f'{series}\n</View>\n')


class _Results:
    """Timeline results with ids unique over the task ("r1", "r2", ...)."""

    def __init__(self):
        self.n = 0

    def result(self, control: str, first: int, last: int, label: str, text: str | None = None) -> dict:
        self.n += 1
        out = {"id": f"r{self.n}", "from_name": control, "to_name": VIDEO, "type": "timelinelabels",
               "value": {"ranges": [{"start": first + 1, "end": last + 1}], "timelinelabels": [label]}}
        return {**out, "meta": {"text": [text]}} if text is not None else out

    def labels(self, track: Track) -> list[dict]:
        """An EXPR or AU track's regions: expression runs; per AU, where it is on; "AU unannotated" where
        the frame has no AU label."""
        if track.task == "expr":
            return [self.result(EXPR_CONTROL, first, last, EXPRESSIONS[int(v)]) for first, last, v in
                    runs(track.values[:, 0])]
        out = [self.result(AU_CONTROL, first, last, au) for j, au in enumerate(AUS)
               for first, last, v in runs(track.values[:, j]) if v == 1]
        unannotated = np.where(np.isnan(track.values).all(axis=1), 1.0, np.nan)
        return out + [self.result(AU_CONTROL, first, last, AU_UNANNOTATED) for first, last, _ in runs(unannotated)]


def _model_version(source: str, tracks: list[Track]) -> str:
    """The model as the page names it, saying which of its outputs have random weights."""
    untrained = [t.task.upper() for t in tracks if t.untrained]
    if not untrained:
        return source
    return f"{source} (untrained)" if len(untrained) == len(tracks) else f"{source} ({', '.join(untrained)} untrained)"


def task_json(tracks: VideoTracks, media_url: str | None = None) -> dict:
    """The Label Studio task of a video: data (video link, VA series), the reviewed annotation with the
    reviewers' remarks, one prediction per model."""
    data = {VIDEO: media_link(tracks, media_url) or tracks.name, KEY_FIELD: tracks.key}
    channels = _channels(tracks)
    if channels:
        data[VA_OBJECT] = {"time": [round(frame_start(i, tracks.fps), 6) for i in range(tracks.frames)],
                           **{name: [None if np.isnan(v) else float(v) for v in values] for name, values in channels}}
    results = _Results()
    reviewed = [r for t in tracks.annotation if t.task != "va" for r in results.labels(t)]   # VA: the time series
    reviewed += [results.result(REVIEW_CONTROL, r.first, r.last, f"{r.kind} {r.task.upper()}", r.text)
                 for r in tracks.remarks]
    by_model: dict[str, list[Track]] = {}
    for track in tracks.models:
        by_model.setdefault(track.source, []).append(track)
    predictions = []
    for source, model in by_model.items():
        result = [r for t in model if t.task != "va" for r in results.labels(t)]
        if result:
            predictions.append({"model_version": _model_version(source, [t for t in model if t.task != "va"]),
                                "result": result})
    task = {"data": data}
    if reviewed:
        task["annotations"] = [{"result": reviewed}]
    return {**task, "predictions": predictions}


def write_label_studio(tracks: VideoTracks, out_dir, stem: str, media_url: str | None = None) -> list[Path]:
    """<stem>_labelstudio.json (a list of one task, Label Studio's import format) and
    <stem>_labelstudio_config.xml (the labeling config to create the project with)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tasks, config = out_dir / f"{stem}_labelstudio.json", out_dir / f"{stem}_labelstudio_config.xml"
    tasks.write_text(json.dumps([task_json(tracks, media_url)]) + "\n", encoding="utf-8")   # one line: VA is long
    config.write_text(labeling_config(tracks), encoding="utf-8")
    return [tasks, config]


# -- import -----------------------------------------------------------------------------------------
def read_label_studio(path, frames: int, video_key: str | None = None, annotation_id=None
                      ) -> tuple[dict[str, np.ndarray], str]:
    """The labels a Label Studio JSON export gives a video of `frames` frames: {task: (frames, columns)
    float} for "expr" (NaN where no range) and "au" (0 outside the ranges, NaN in "AU unannotated"
    ranges) as far as the annotation labels them, EXPR and AU together, and a content key. The task is the
    one whose data names the video (or the only one); its one submitted annotation, or annotation_id's.
    The reviewers' remarks (the "review" control) are not labels and are passed over. Raises InteropError
    naming the file, line and result for malformed JSON, an unknown label or a range outside the video."""
    path = Path(path)
    raw = path.read_bytes()
    text = raw.decode("utf-8", errors="replace")
    try:
        tasks = json.loads(text)
    except json.JSONDecodeError as err:
        raise refuse(path, f"not JSON ({err.msg})", err.lineno) from None
    tasks = [tasks] if isinstance(tasks, dict) else tasks
    if not isinstance(tasks, list) or not all(isinstance(t, dict) for t in tasks):
        raise refuse(path, "not a Label Studio export: expected a list of tasks", 1)
    task = _pick_task(path, tasks, video_key)
    annotation = _pick_annotation(path, task, annotation_id)
    lines = line_numbers(text, r'"id"\s*:\s*"?([^",}\s]+)')
    labels: dict[str, np.ndarray] = {}
    unannotated: list[tuple[int, int]] = []
    for item in annotation.get("result") or []:
        if not isinstance(item, dict) or item.get("type") != "timelinelabels":
            continue
        if item.get("from_name") == REVIEW_CONTROL:       # the reviewers' remarks, not labels
            continue
        rid = str(item.get("id", "?"))
        line, where = lines.get(rid), f"result {rid}"
        value = item.get("value") or {}
        names, ranges = value.get("timelinelabels") or [], value.get("ranges")
        if not isinstance(ranges, list) or not ranges:
            raise refuse(path, "a timelinelabels result without value.ranges", line, where)
        for name in names:
            for span in ranges:
                first, last = _range(path, span, frames, line, where)
                if name == AU_UNANNOTATED:
                    unannotated.append((first, last))
                else:
                    _set(labels, path, str(name), first, last, frames, line, where)
    for first, last in unannotated:          # after the AUs' ranges: no AU label at all on these frames
        task_labels(labels, "au", frames)[first:last + 1] = np.nan
    if not labels:
        raise refuse(path, f"annotation {annotation.get('id')} has no timelinelabels result with an "
                           "expression or AU")
    return labels, hashlib.sha256(raw + f"|{annotation.get('id')}".encode()).hexdigest()


def _pick_task(path: Path, tasks: list, video_key: str | None) -> dict:
    mine = [t for t in tasks if (t.get("data") or {}).get(KEY_FIELD) == video_key] if video_key else []
    if len(mine) == 1 or (not mine and len(tasks) == 1):
        return (mine or tasks)[0]
    raise refuse(path, f"{len(tasks)} tasks, {len(mine)} of them for video {video_key!r}: export one task "
                       f"(data.{KEY_FIELD} names the video)")


def _pick_annotation(path: Path, task: dict, annotation_id) -> dict:
    done = [a for a in task.get("annotations") or [] if isinstance(a, dict) and not a.get("was_cancelled")]
    if annotation_id is not None:
        done = [a for a in done if str(a.get("id")) == str(annotation_id)]
    if len(done) == 1:
        return done[0]
    ids = ", ".join(str(a.get("id")) for a in done)
    raise refuse(path, f"task {task.get('id')} has {len(done)} submitted annotations"
                       + (f" ({ids}): choose one by its id" if done else ""))


def _range(path: Path, span, frames: int, line, where) -> tuple[int, int]:
    start, end = (span.get("start"), span.get("end")) if isinstance(span, dict) else (None, None)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end)) or end < start:
        raise refuse(path, f"range {span!r} is not whole frames start <= end", line, where)
    if start < 1 or end > frames:
        raise refuse(path, f"frames {start}-{end} leave the video (Label Studio frames 1-{frames})", line, where)
    return start - 1, end - 1


def _set(labels: dict, path: Path, name: str, first: int, last: int, frames: int, line, where) -> None:
    if name in AUS:
        task_labels(labels, "au", frames)[first:last + 1, AUS.index(name)] = 1.0
        return
    if name not in EXPRESSIONS:
        raise refuse(path, f"unknown label {name!r}; known: {', '.join((*EXPRESSIONS, *AUS, AU_UNANNOTATED))}",
                     line, where)
    expr = task_labels(labels, "expr", frames)[first:last + 1, 0]
    clash = ~np.isnan(expr) & (expr != EXPRESSIONS.index(name))
    if clash.any():
        raise refuse(path, f"frame {first + int(np.flatnonzero(clash)[0]) + 1} is labelled both "
                           f"{EXPRESSIONS[int(expr[clash][0])]} and {name}", line, where)
    expr[:] = EXPRESSIONS.index(name)
