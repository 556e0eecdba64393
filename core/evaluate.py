"""Score predictions against Aff-Wild2 ground truth with the ABAW metrics, from the command line.

    python -m core.evaluate --task {va,expr,au} --pred PRED --gt GT [--json]

GT is an annotation file or a folder of them (<video>.txt). PRED is the same, or a submission file
(image_location column) or a folder of such files. Videos are matched by name (two single annotation
files are matched to each other whatever their names); every ground-truth video needs a prediction for
every frame. Scores are pooled over all valid frames, as in the challenge.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from core.affwild2 import LABEL_COLUMNS, AnnotationError, image_name, read_annotation, read_submission
from core.labels import AUS, EXPRESSIONS, TASKS
from core.metrics import score_task


class EvaluationError(ValueError):
    """Predictions and ground truth do not fit together (missing videos, wrong lengths, missing values)."""


def _is_submission(path: Path) -> bool:
    with open(path, encoding="utf-8-sig", errors="replace") as f:
        return f.readline().strip().startswith("image_location")


def _files(path: Path) -> list[Path]:
    if not path.exists():
        raise EvaluationError(f"{path} does not exist")
    if path.is_file():
        return [path]
    files = sorted(p for p in path.glob("*.txt") if p.is_file())
    if not files:
        raise EvaluationError(f"{path} holds no .txt files")
    return files


def load_videos(path, task: str, allow_submission: bool = False) -> dict[str, pd.DataFrame]:
    """Video name -> frame-indexed label table, from an annotation file, a submission file or a folder."""
    videos: dict[str, pd.DataFrame] = {}
    for file in _files(Path(path)):
        if _is_submission(file):
            if not allow_submission:
                raise EvaluationError(f"{file} is a submission file; ground truth must be annotation files")
            found = {}
            for video, rows in read_submission(file, task).groupby("video", sort=False):
                frames = rows.set_index("frame").sort_index()
                if frames.index.has_duplicates:
                    dup = frames.index[frames.index.duplicated()][0]
                    raise EvaluationError(f"{file}: {video}/{image_name(dup)} is listed twice")
                found[video] = frames[LABEL_COLUMNS[task]]
        else:
            found = {file.stem: read_annotation(file, task)}
        for video, frames in found.items():
            if video in videos:
                raise EvaluationError(f"{path}: video {video} appears in more than one file")
            videos[video] = frames
    return videos


def _align(video: str, pred: pd.DataFrame, gt: pd.DataFrame) -> pd.DataFrame:
    """Predictions for exactly gt's frames; raises EvaluationError where they do not fit."""
    if len(pred) != len(gt) or not pred.index.equals(gt.index):
        extra = pred.index.difference(gt.index)
        lacking = gt.index.difference(pred.index)
        detail = f"; no prediction for {image_name(lacking[0])}" if len(lacking) else (
            f"; {image_name(extra[0])} is beyond the ground truth" if len(extra) else "")
        raise EvaluationError(
            f"video {video}: predictions have {len(pred)} frames, ground truth has {len(gt)}{detail}"
        )
    missing = pred.isna().any(axis=1).to_numpy() & gt.notna().any(axis=1).to_numpy()
    if missing.any():
        frame = gt.index[np.flatnonzero(missing)[0]]
        raise EvaluationError(
            f"video {video}: {missing.sum()} annotated frame(s) have no prediction (first {image_name(frame)});"
            " every frame needs one (core.affwild2.write_submission fills faceless frames)"
        )
    return pred


def evaluate(pred_path, gt_path, task: str) -> dict:
    """Scores of predictions against ground truth, plus n_videos, n_frames and n_valid (annotated frames)."""
    if task not in TASKS:
        raise EvaluationError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    gt = load_videos(gt_path, task)
    pred = load_videos(pred_path, task, allow_submission=True)
    single = Path(gt_path).is_file() and Path(pred_path).is_file() and len(gt) == len(pred) == 1
    if single and not _is_submission(Path(pred_path)):
        pred = {next(iter(gt)): next(iter(pred.values()))}
    lacking = [v for v in gt if v not in pred]
    if lacking:
        shown = ", ".join(lacking[:5]) + (f" and {len(lacking) - 5} more" if len(lacking) > 5 else "")
        raise EvaluationError(f"no predictions for {len(lacking)} of {len(gt)} video(s): {shown}")
    pred_all = pd.concat([_align(v, pred[v], gt[v]) for v in gt], ignore_index=True)
    gt_all = pd.concat(list(gt.values()), ignore_index=True)
    columns = LABEL_COLUMNS[task]
    scores = score_task(task, pred_all[columns], gt_all[columns])
    counts = {"n_videos": len(gt), "n_frames": len(gt_all), "n_valid": scores.frames}
    return {"task": task, **counts, **scores.values}


def format_scores(result: dict) -> str:
    """The scores as a short plain-text report."""
    lines = [f"{result['task'].upper()}: {result['n_videos']} video(s), {result['n_frames']} frames "
             f"({result['n_valid']} annotated)"]
    if result["task"] == "va":
        rows = [("CCC valence", result["ccc_valence"]), ("CCC arousal", result["ccc_arousal"]),
                ("P_VA", result["p_va"])]
    elif result["task"] == "expr":
        rows = [(f"F1 {n}", f) for n, f in zip(EXPRESSIONS, result["f1_per_class"] or ())] + [("P_EXPR", result["p_expr"])]
    else:
        rows = [(f"F1 {n}", f) for n, f in zip(AUS, result["f1_per_au"] or ())] + [("P_AU", result["p_au"])]
    lines += [f"  {name:<14}" + ("n/a" if value is None else f"{value:.4f}") for name, value in rows]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", required=True, choices=TASKS)
    parser.add_argument("--pred", required=True, help="annotation or submission file, or a folder of them")
    parser.add_argument("--gt", required=True, help="annotation file or folder of <video>.txt files")
    parser.add_argument("--json", action="store_true", help="print the scores as JSON")
    args = parser.parse_args(argv)
    try:
        result = evaluate(args.pred, args.gt, args.task)
    except (AnnotationError, EvaluationError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2) if args.json else format_scores(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
