"""The per-frame table: its columns, how predictions become its rows, the ground truth beside them, the
ABAW submission files written from it (core.analysis keeps it with its run metadata).

One row per decoded frame (or per annotation line of an Aff-Wild2 video). Every module reads columns
through the names here, never by spelling them or by prefix.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from core.affwild2 import AnnotationError, AnnotationTooLong, image_name, read_annotation, write_submission
from core.labels import AUS, EXPRESSIONS, TASKS

# -- columns ----------------------------------------------------------------------------------------
FRAME, TIME, FACE, FACE_PROB, FILLED = "frame", "time_s", "face", "face_prob", "filled"
BOX_COLUMNS = ["box_x1", "box_y1", "box_x2", "box_y2"]
BOX_DETECTED = "box_detected"          # True: MTCNN ran on this frame; False: the box was interpolated
DDAMFN_SCORED = "ddamfn_scored"        # True: DDAMFN ran on this face; False: its embedding was interpolated
CLIP_SCORED = "clip_scored"            # the same for CLIP; <NA> without a face or without the model
VALENCE, AROUSAL = "valence", "arousal"
EXPR, EXPR_NAME = "expr", "expr_name"
EXPR_PROBS = [f"p_{e}" for e in EXPRESSIONS]
AU_PROBS = [f"p_{a}" for a in AUS]
AU_DECISIONS = list(AUS)
GT_PREFIX = "gt_"
# prediction columns -> the annotation columns of core.affwild2 they are scored against
TASK_COLUMNS = {"va": [VALENCE, AROUSAL], "expr": [EXPR], "au": AU_DECISIONS}
UNTRAINED = "untrained"                # exported CSVs: untrained_<output> says it comes from random weights


def untrained_column(output: str) -> str:
    """The exported CSV's column saying whether an output (va, expr, au, clip_basic, ...) is untrained."""
    return f"{UNTRAINED}_{output}"


def gt(column: str) -> str:
    """The ground-truth twin of a prediction column (gt_valence, gt_expr, gt_AU12)."""
    return GT_PREFIX + column


GT_RENAME = {"valence": gt(VALENCE), "arousal": gt(AROUSAL), "expression": gt(EXPR), **{a: gt(a) for a in AUS}}


# Expression outputs beside the main one are keyed: a prompt set's by prompt_output(name) ("clip_basic"),
# a model's own by its card (core.registry: "clip-adapter", "clip-lstm"). Prompt set names are letters,
# digits and _, so no prompt set's key is ever a model's.
PROMPT_PREFIX = "clip_"


def prompt_output(name: str) -> str:
    """The output key of a CLIP prompt set."""
    return PROMPT_PREFIX + name


def prompt_set_of(output: str) -> str | None:
    """The prompt set an output key is of (None: a model's own output)."""
    return output[len(PROMPT_PREFIX):] if output.startswith(PROMPT_PREFIX) else None


def output_expr(output: str) -> str:
    """The class column of an expression output ("clip_basic_expr", "clip-lstm_expr")."""
    return f"{output}_expr"


def output_probs(output: str) -> list[str]:
    return [f"{output}_p_{e}" for e in EXPRESSIONS]


def expr_outputs(df: pd.DataFrame) -> list[str]:
    """The expression outputs the table holds beside the main one, in column order."""
    return [c[:-len("_expr")] for c in df.columns if c.endswith("_expr") and not c.startswith(GT_PREFIX)]


def prediction_columns(outputs=()) -> list[str]:
    """The table's prediction columns in order (before any ground truth), with expression outputs."""
    cols = [FRAME, TIME, FACE, FACE_PROB, *BOX_COLUMNS, BOX_DETECTED, DDAMFN_SCORED, FILLED, VALENCE, AROUSAL, EXPR, EXPR_NAME,
            *EXPR_PROBS, *AU_PROBS, *AU_DECISIONS]
    for output in outputs:
        cols += [output_expr(output), *output_probs(output)]
    return cols + [CLIP_SCORED] * bool(outputs)


# -- decisions --------------------------------------------------------------------------------------
def expr_classes(probs: np.ndarray) -> pd.arrays.IntegerArray:
    """Int64 argmax class, <NA> where the probabilities are NaN."""
    probs = np.asarray(probs, dtype=np.float64)
    valid = ~np.isnan(probs).any(axis=1)
    label = pd.array(np.where(valid, np.nan_to_num(probs).argmax(axis=1), 0), dtype="Int64")
    label[~valid] = pd.NA
    return label


def au_decisions(probs: np.ndarray, thresholds) -> pd.DataFrame:
    """Int64 0/1 per AU at the given thresholds (scalar or one per AU), <NA> where no probability."""
    probs = np.asarray(probs, dtype=np.float64)
    thr = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (len(AUS),))
    out = pd.DataFrame(probs >= thr, columns=AU_DECISIONS).astype("Int64")
    out[np.isnan(probs)] = pd.NA
    return out


def expr_column_values(probs: np.ndarray, output: str | None = None) -> dict:
    """The class and probability columns of one expression output (None: the main expr)."""
    if output is None:
        return {EXPR: expr_classes(probs), **{c: probs[:, i] for i, c in enumerate(EXPR_PROBS)}}
    return {output_expr(output): expr_classes(probs), **{c: probs[:, i] for i, c in enumerate(output_probs(output))}}


def decision_columns(outputs: dict[str, np.ndarray], au_thresholds) -> dict:
    """The va / expr / au columns (values, classes, probabilities, AU decisions) of activated outputs."""
    cols = {VALENCE: outputs["va"][:, 0], AROUSAL: outputs["va"][:, 1], **expr_column_values(outputs["expr"])}
    cols[EXPR_NAME] = np.array([EXPRESSIONS[int(i)] if i is not pd.NA else None for i in cols[EXPR]], dtype=object)
    cols.update({c: outputs["au"][:, i] for i, c in enumerate(AU_PROBS)})
    decisions = au_decisions(outputs["au"], au_thresholds)
    cols.update({a: decisions[a].array for a in AU_DECISIONS})
    return cols


def build(predictions, time_s: np.ndarray, au_thresholds, face_prob: np.ndarray | None = None,
          boxes: np.ndarray | None = None, box_detected: np.ndarray | None = None,
          ddamfn_scored: np.ndarray | None = None, clip_scored: np.ndarray | None = None) -> pd.DataFrame:
    """The table from core.predict.Predictions (n rows) and per-frame face data (NaN / <NA> without);
    ddamfn_scored / clip_scored say per face frame whether the encoder ran on it (the clip column only
    in a table with CLIP outputs)."""
    out, face = predictions.outputs, predictions.face
    n = len(face)
    nan = lambda k: np.full((n, k), np.nan)                                           # noqa: E731
    boxes = nan(4) if boxes is None else boxes
    cols = {FRAME: np.arange(n, dtype=np.int64), TIME: np.asarray(time_s, np.float64), FACE: face,
            FACE_PROB: nan(1)[:, 0] if face_prob is None else face_prob,
            **{c: boxes[:, i] for i, c in enumerate(BOX_COLUMNS)},
            BOX_DETECTED: pd.array([pd.NA] * n if box_detected is None else box_detected, dtype="boolean"),
            FILLED: predictions.filled, **decision_columns(out, au_thresholds),
            DDAMFN_SCORED: pd.array([pd.NA] * n if ddamfn_scored is None else ddamfn_scored, dtype="boolean"),
            CLIP_SCORED: pd.array([pd.NA] * n if clip_scored is None else clip_scored, dtype="boolean")}
    extra = [key for key in out if key not in TASK_COLUMNS]
    for key in extra:
        cols.update(expr_column_values(out[key], key))
    return pd.DataFrame(cols)[prediction_columns(extra)]


def set_expr_output(table: pd.DataFrame, output: str, probs: np.ndarray) -> pd.DataFrame:
    """A copy of the table with expression output `output` (probabilities over every row) set."""
    table = table.copy()
    for column, values in expr_column_values(probs, output).items():
        table[column] = values
    return table


# -- ground truth -----------------------------------------------------------------------------------
# How far an annotation file's line count may differ from the decoded frame count: OpenCV and the
# annotators' tools sometimes disagree by a frame at the end. More than this means the wrong file.
LENGTH_TOLERANCE = 2


def _length_note(n_labels: int, n_frames: int, what: str, tolerance: int = LENGTH_TOLERANCE) -> list[str]:
    """Raise when an annotation clearly belongs to another video; a note when it is off by a frame or two."""
    diff = n_labels - n_frames
    if abs(diff) > tolerance:
        raise AnnotationError(what, None, f"{n_labels} annotated frames, but the video has {n_frames}: "
                                          "this annotation does not belong to this video")
    if diff > 0:
        return [f"{what}: {n_labels} annotated frames for {n_frames} video frames; its last {diff} line(s) are "
                "left out"]
    if diff < 0:
        return [f"{what}: {n_labels} annotated frames for {n_frames} video frames; the last {-diff} frame(s) "
                "are left unannotated"]
    return []


def ground_truth_from_files(files: dict[str, str | Path], n_frames: int, tolerance: int = LENGTH_TOLERANCE
                            ) -> tuple[pd.DataFrame, list[str]]:
    """Annotation files (task -> path) of a video of n_frames frames as gt_ columns, and notes.
    Raises AnnotationError when a file is malformed or its length is off by more than tolerance (a
    longer file at its first line too many, without reading the rest)."""
    tables, notes = [], []
    for task, path in files.items():
        what = f"{Path(path).name} ({task.upper()})"
        try:
            labels = read_annotation(path, task, max_frames=n_frames + tolerance)
        except AnnotationTooLong:
            raise AnnotationError(what, None, f"more than {n_frames + tolerance} annotated frames, but the video has "
                                              f"{n_frames}: this annotation does not belong to this video") from None
        notes += _length_note(len(labels), n_frames, what, tolerance)
        tables.append(labels)
    return align_ground_truth(pd.concat(tables, axis=1), n_frames), notes


def ground_truth_from_labels(labels: pd.DataFrame, n_frames: int, what: str) -> tuple[pd.DataFrame, list[str]]:
    """Like ground_truth_from_files for labels already read (e.g. AffWild2Index.video_frames)."""
    notes = _length_note(len(labels), n_frames, f"annotation of {what}")
    return align_ground_truth(labels, n_frames), notes


def align_ground_truth(labels: pd.DataFrame, n_frames: int) -> pd.DataFrame:
    """Annotation columns (as core.affwild2 reads them, indexed by frame) as gt_ columns of frames
    0..n_frames-1."""
    out = labels.rename(columns=GT_RENAME)
    out = out[[c for c in GT_RENAME.values() if c in out]].reindex(pd.RangeIndex(n_frames))
    out.index.name = FRAME
    return out


def attach_ground_truth(table: pd.DataFrame, truth: pd.DataFrame | None) -> pd.DataFrame:
    """The table with gt_ columns (replacing any it had) joined by frame."""
    if truth is None or truth.empty:
        return table
    return table.drop(columns=[c for c in truth.columns if c in table]).join(truth, on=FRAME)


# -- files ------------------------------------------------------------------------------------------
def frame_rate(table: pd.DataFrame) -> float:
    """Frames per second of an analysed video, from its time column (30 for a single frame)."""
    return float(1.0 / np.median(np.diff(table[TIME]))) if len(table) > 1 else 30.0


def write_submissions(tables: dict[str, pd.DataFrame], out_dir, name: str = "{task}.txt",
                      tasks=TASKS) -> list[Path]:
    """One ABAW submission file per task that has predictions, over the given videos' tables (video ->
    table with frame and the task's decision columns; rows <video>/<frame+1:05d>.jpg). Faceless frames
    take the nearest frame's values (core.affwild2.write_submission): ABAW needs a value for every frame."""
    out_dir = Path(out_dir)
    written = []
    for task in tasks:
        parts = []
        for video, table in tables.items():
            values = table[TASK_COLUMNS[task]].rename(columns={EXPR: "expression"})
            values.insert(0, "image_location", [f"{video}/{image_name(int(f))}" for f in table[FRAME]])
            parts.append(values)
        values = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
        if values.empty or not values.iloc[:, 1:].notna().any().any():
            continue
        path = out_dir / name.format(task=task, TASK=task.upper())
        out_dir.mkdir(parents=True, exist_ok=True)
        write_submission(values, path, task)
        written.append(path)
    return written
