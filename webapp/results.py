"""Shape a predictions table for people: ground truth beside it, ABAW metrics, files to download.

No Gradio here: these functions take and return tables and paths, so tests call them directly.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from core import metrics
from core.affwild2 import AnnotationError, image_name, read_annotation, write_submission
from core.labels import AUS, EXPRESSIONS, TASKS

# How far an annotation file's line count may differ from the decoded frame count: OpenCV and the
# annotators' tools sometimes disagree by a frame at the end. More than this means the wrong file.
LENGTH_TOLERANCE = 2

GT_RENAME = {"valence": "gt_valence", "arousal": "gt_arousal", "expression": "gt_expr",
             **{au: f"gt_{au}" for au in AUS}}


def _length_note(n_labels: int, n_frames: int, what: str, tolerance: int = LENGTH_TOLERANCE) -> list[str]:
    """Raise when an annotation clearly belongs to another video; a note when it is off by a frame or two."""
    diff = n_labels - n_frames
    if abs(diff) > tolerance:
        raise AnnotationError(what, None, f"{n_labels} annotated frames, but the video has {n_frames}: "
                                          "this annotation does not belong to this video")
    if diff:
        return [f"{what}: {n_labels} annotated frames for {n_frames} video frames; "
                "the difference is left unannotated"]
    return []


def ground_truth_from_files(files: dict[str, str | Path], n_frames: int, tolerance: int = LENGTH_TOLERANCE
                            ) -> tuple[pd.DataFrame, list[str]]:
    """Read annotation files (task -> path) for a video of n_frames frames.

    Returns the gt_ columns (one row per frame 0..n_frames-1) and notes for the page. Raises
    AnnotationError when a file is malformed or its length differs from n_frames by more than tolerance.
    """
    tables, notes = [], []
    for task, path in files.items():
        labels = read_annotation(path, task)
        notes += _length_note(len(labels), n_frames, f"{Path(path).name} ({task.upper()})", tolerance)
        tables.append(labels)
    return align_ground_truth(pd.concat(tables, axis=1), n_frames), notes


def ground_truth_from_labels(labels: pd.DataFrame, n_frames: int, what: str) -> tuple[pd.DataFrame, list[str]]:
    """Like ground_truth_from_files for labels already read (e.g. AffWild2Index.video_frames)."""
    notes = _length_note(len(labels), n_frames, f"annotation of {what}")
    return align_ground_truth(labels, n_frames), notes


def align_ground_truth(labels: pd.DataFrame, n_frames: int) -> pd.DataFrame:
    """Annotation columns (as core.affwild2 reads them, indexed by frame) renamed with gt_ and aligned
    to frames 0..n_frames-1."""
    gt = labels.rename(columns=GT_RENAME)
    gt = gt[[c for c in GT_RENAME.values() if c in gt]].reindex(pd.RangeIndex(n_frames))
    gt.index.name = "frame"
    return gt


def join_ground_truth(predictions: pd.DataFrame, gt: pd.DataFrame | None) -> pd.DataFrame:
    """The predictions table with gt_ columns added by frame; the run metadata is kept."""
    if gt is None or gt.empty:
        return predictions
    out = predictions.drop(columns=[c for c in gt.columns if c in predictions]).join(gt, on="frame")
    out.attrs = predictions.attrs
    return out


def clip_sets(df: pd.DataFrame) -> list[str]:
    """Names of the CLIP prompt sets whose outputs the table holds."""
    return [c[len("clip_"):-len("_expr")] for c in df.columns if c.startswith("clip_") and c.endswith("_expr")]


def metrics_table(df: pd.DataFrame) -> pd.DataFrame:
    """ABAW metrics of every output in the table against its gt_ columns (rows: output, metric, value,
    frames). Empty when the table has no ground truth."""
    rows = []

    def add(output, metric, value, frames):
        rows.append({"output": output, "metric": metric, "value": round(float(value), 4), "frames": int(frames)})

    if {"valence", "arousal", "gt_valence", "gt_arousal"} <= set(df.columns):
        scores = metrics.va_scores(df[["valence", "arousal"]], df[["gt_valence", "gt_arousal"]])
        n = int(df[["gt_valence", "gt_arousal"]].notna().all(axis=1).sum())
        add("DDAMFN+LSTM", "CCC valence", scores["ccc_valence"], n)
        add("DDAMFN+LSTM", "CCC arousal", scores["ccc_arousal"], n)
        add("DDAMFN+LSTM", "P_VA", scores["p_va"], n)
    if "gt_expr" in df:
        n = int(df["gt_expr"].notna().sum())
        outputs = ([("DDAMFN+LSTM", "expr")] if "expr" in df else []) + [
            (f"CLIP {name}", f"clip_{name}_expr") for name in clip_sets(df)]
        for output, col in outputs:
            add(output, "P_EXPR (F1, 8 classes)", metrics.expr_scores(df[col], df["gt_expr"])["p_expr"], n)
    gt_au = [f"gt_{au}" for au in AUS]
    if set(gt_au) <= set(df.columns) and all(f"p_{au}" in df for au in AUS):
        probs = df[[f"p_{au}" for au in AUS]].to_numpy(dtype="float64")
        gt = df[gt_au].to_numpy(dtype="float64", na_value=np.nan)
        n = int((~np.isnan(gt)).any(axis=1).sum())
        add("DDAMFN+LSTM", "P_AU (F1 at 0.5)", metrics.au_scores(probs, gt)["p_au"], n)
    return pd.DataFrame(rows, columns=["output", "metric", "value", "frames"])


def expr_f1(df: pd.DataFrame, column: str) -> float | None:
    """P_EXPR of one expression column against gt_expr, or None without annotation."""
    if "gt_expr" not in df or not df["gt_expr"].notna().any():
        return None
    return round(metrics.expr_scores(df[column], df["gt_expr"])["p_expr"], 4)


def write_downloads(df: pd.DataFrame, video: str, out_dir: Path) -> list[Path]:
    """The predictions table as CSV and one ABAW submission file per task the table holds."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{video}_predictions.csv"]
    df.to_csv(paths[0], index=False)
    locations = [f"{video}/{image_name(int(f))}" for f in df["frame"]]
    task_columns = {"va": ["valence", "arousal"], "expr": ["expr"], "au": list(AUS)}
    for task in TASKS:
        if not set(task_columns[task]) <= set(df.columns):
            continue
        table = df[task_columns[task]].rename(columns={"expr": "expression"})
        table.insert(0, "image_location", locations)
        path = out_dir / f"{video}_{task.upper()}_submission.txt"
        write_submission(table, path, task)
        paths.append(path)
    return paths


def frame_summary(df: pd.DataFrame, frame: int) -> pd.DataFrame:
    """One frame's predictions and labels as a two-column table (what, value) for the page."""
    row = df.loc[df["frame"] == frame]
    if row.empty:
        raise ValueError(f"frame {frame} is not in the table (0..{len(df) - 1})")
    row = row.iloc[0]
    items = [("time (s)", f"{row['time_s']:.3f}"), ("face", str(bool(row.get("face", False))))]
    if "filled" in row and bool(row["filled"]):
        items.append(("note", "no face: prediction copied from neighbouring frames"))
    for name in ("valence", "arousal"):
        for col in (name, f"gt_{name}"):
            if col in row and pd.notna(row[col]):
                items.append((col, f"{row[col]:+.3f}"))
    for col in ["expr", *[f"clip_{s}_expr" for s in clip_sets(df)], "gt_expr"]:
        if col in row and pd.notna(row[col]):
            items.append((col, EXPRESSIONS[int(row[col])]))
    active = [au for au in AUS if au in row and pd.notna(row[au]) and int(row[au]) == 1]
    if any(au in row for au in AUS):
        items.append(("AUs predicted", ", ".join(active) or "none"))
    if all(f"gt_{au}" in row for au in AUS):
        gt_active = [au for au in AUS if pd.notna(row[f"gt_{au}"]) and int(row[f"gt_{au}"]) == 1]
        items.append(("AUs annotated", ", ".join(gt_active) or "none"))
    return pd.DataFrame(items, columns=["what", "value"])


def weights_table(models: dict[str, dict]) -> list[str]:
    """Markdown table of where each model's weights came from and whether they are trained, from
    LoadedModels.describe(): the run summary and the page's weights box say it the same way."""
    lines = ["| model | weights | state |", "|---|---|---|"]
    for model, info in models.items():
        if info.get("untrained_tasks") and len(info["untrained_tasks"]) < len(info.get("tasks", [])):
            state = f"**untrained** ({', '.join(info['untrained_tasks'])} heads random)"
        else:
            state = "**untrained** (random weights)" if info.get("untrained") else "trained"
        lines.append(f"| {model} | `{info.get('source', '?')}` | {state} |")
    return lines
