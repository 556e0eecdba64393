"""Agreement figures: how well a model matches the annotation before and after reviewers' accepted
corrections, and how well reviewers agree with each other.

- model_agreement: each output of a predictions table against a video's imported annotation ("before")
  and against its effective labels ("after": accepted corrections applied, frames flags keep out left
  out) -- CCC for valence and arousal, P_EXPR and P_AU, scored by core.metrics.score_table as the
  Analyse tab scores them, with the labelled frames and those of them without a prediction.
- reviewer_agreement: each reviewer's share of decided corrections that were accepted, and, for every
  two reviewers whose corrections label the same frames of the same task, CCC (VA) and Cohen's kappa
  (EXPR; AU pooled over the AUs both labelled) on those frames.

A figure computed from fewer than MIN_FRAMES frames (core.metrics; or undefined, like kappa when both
reviewers used one class only) is None -- "n/a" -- never NaN.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
from sklearn.metrics import cohen_kappa_score
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.affwild2 import LABEL_COLUMNS
from core.labels import TASKS
from core.metrics import MIN_FRAMES, TaskScore, ccc, score_table
from core.table import FRAME
from db.models import Correction, Video
from db.repo import annotation_frame, effective_labels, get_video, latest_annotation_set



def _figure(value: float, frames: int) -> float | None:
    return None if frames < MIN_FRAMES or value is None or math.isnan(value) else round(float(value), 6)


# ---------------------------------------------------------------------------------------------------
# Model against annotation


def model_scores(score: TaskScore) -> dict:
    """A core.metrics TaskScore as the report gives it: the figures (CCC valence / arousal and P_VA, or
    "f1": P_EXPR / P_AU), "frames": the labelled frames, "missing": those without a prediction (left out)."""
    figures = ({k: score.values[k] for k in ("ccc_valence", "ccc_arousal", "p_va")} if score.task == "va"
               else {"f1": score.main})
    return {**{k: None if v is None else round(float(v), 6) for k, v in figures.items()},
            "frames": score.frames, "missing": score.missing}


def model_agreement(session: Session, video: Video | str, predictions: pd.DataFrame) -> dict:
    """{output: {"before": scores, "after": scores}} for each output of `predictions` (core.pipeline's
    per-frame table: va, expr, au and each further expression output, keyed as core.metrics.score_table
    keys them; frames it lacks count as missing) whose task has an imported annotation, scored by
    core.metrics.score_table (the table's AU decisions, at its run's thresholds). Scores as model_scores()."""
    video = get_video(session, video)
    if FRAME not in predictions.columns:
        raise ValueError(f"the predictions table needs a '{FRAME}' column")
    out = {}
    for task in TASKS:
        annotation_set = latest_annotation_set(session, video, task)
        if annotation_set is None:
            continue
        before = annotation_frame(annotation_set)
        after = effective_labels(session, video, task, before)
        after.loc[after["flagged"], LABEL_COLUMNS[task]] = np.nan
        scores = {when: score_table(predictions, labels[LABEL_COLUMNS[task]], (task,))
                  for when, labels in (("before", before), ("after", after))}
        for output, score in scores["before"].items():
            before = model_scores(score)
            after = scores["after"].get(output)      # None: flags keep every labelled frame out
            out[output] = {"before": before, "after": model_scores(after) if after else
                           {**{k: None for k in before}, "frames": 0, "missing": 0}}
    return out


# ---------------------------------------------------------------------------------------------------
# Reviewers


def _reviewer_labels(session: Session, videos: list[Video]) -> dict[tuple[int, str], dict[str, np.ndarray]]:
    """(video id, task) -> {reviewer name: (frames, columns) labels from their corrections, NaN where
    they labelled nothing}. Every correction counts, whatever its status: it is what its author saw."""
    out: dict[tuple[int, str], dict[str, np.ndarray]] = {}
    frames = {v.id: v.frame_count for v in videos}
    query = select(Correction).where(Correction.video_id.in_(frames)).order_by(Correction.id)
    for c in session.scalars(query):
        columns = LABEL_COLUMNS[c.task]
        by_reviewer = out.setdefault((c.video_id, c.task), {})
        values = by_reviewer.setdefault(c.reviewer.name, np.full((frames[c.video_id], len(columns)), np.nan))
        for column, v in c.value.items():
            values[c.start_frame:c.end_frame + 1, columns.index(column)] = v
    return out


def pair_scores(task: str, a: np.ndarray, b: np.ndarray) -> dict:
    """Agreement of two reviewers' labels (frames, columns), NaN where one labelled nothing, on the
    frames both labelled: CCC per VA dimension, Cohen's kappa for EXPR and for AU (pooled over every
    (frame, AU) both labelled)."""
    both = ~np.isnan(a) & ~np.isnan(b)
    if task == "va":
        keep = both.all(axis=1)
        n = int(keep.sum())
        return {"ccc_valence": _figure(ccc(a[keep, 0], b[keep, 0]), n),
                "ccc_arousal": _figure(ccc(a[keep, 1], b[keep, 1]), n), "frames": n}
    n = int(both.any(axis=1).sum())
    x, y = a[both].astype(int), b[both].astype(int)
    if len(np.union1d(x, y)) < 2:         # one class only: chance agreement is 1 and kappa undefined
        return {"kappa": None, "frames": n}
    return {"kappa": _figure(cohen_kappa_score(x, y), n), "frames": n}


def reviewer_agreement(session: Session, video: Video | str | None = None) -> dict:
    """For one video or (None) all: {"reviewers": {name: {proposed, accepted, rejected, pending,
    share_accepted}}, "pairs": [{"reviewers": [a, b], "va": ..., "expr": ..., "au": ...}]}.

    share_accepted = accepted / decided (None while none is decided). A pair is listed when the two
    labelled a frame of the same task in common; tasks they did not share have frames 0 and None figures.
    Over several videos the frames are pooled, as ABAW pools a split.
    """
    videos = [get_video(session, video)] if video is not None else list(session.scalars(select(Video)))
    query = select(Correction).where(Correction.video_id.in_([v.id for v in videos]))
    counts: dict[str, dict] = {}
    for c in session.scalars(query):
        row = counts.setdefault(c.reviewer.name, {"proposed": 0, "accepted": 0, "rejected": 0, "pending": 0})
        row["proposed"] += 1
        row["pending" if c.status == "proposed" else c.status] += 1
    for row in counts.values():
        decided = row["accepted"] + row["rejected"]
        row["share_accepted"] = round(row["accepted"] / decided, 6) if decided else None

    shared: dict[tuple[str, str], dict[str, list]] = {}
    for (_, task), by_reviewer in _reviewer_labels(session, videos).items():
        for r1, r2 in itertools.combinations(sorted(by_reviewer), 2):
            a, b = by_reviewer[r1], by_reviewer[r2]
            rows = (~np.isnan(a) & ~np.isnan(b)).any(axis=1)
            if rows.any():
                parts = shared.setdefault((r1, r2), {}).setdefault(task, [[], []])
                parts[0].append(a[rows])
                parts[1].append(b[rows])
    pairs = []
    for (r1, r2), tasks in sorted(shared.items()):
        pair = {"reviewers": [r1, r2]}
        for task in TASKS:
            a, b = tasks.get(task, ([np.empty((0, len(LABEL_COLUMNS[task])))],) * 2)
            pair[task] = pair_scores(task, np.concatenate(a), np.concatenate(b))
        pairs.append(pair)
    return {"reviewers": dict(sorted(counts.items())), "pairs": pairs}


def agreement_report(session: Session, video: Video | str | None = None,
                     predictions: pd.DataFrame | None = None) -> dict:
    """What `python -m db report` prints: reviewer agreement for the video (or all videos) and, given a
    video's predictions table, the model against its annotation before and after corrections."""
    report = {"video": get_video(session, video).key if video is not None else None,
              **reviewer_agreement(session, video)}
    if predictions is not None:
        if video is None:
            raise ValueError("model agreement needs the video the predictions are for")
        report["model"] = model_agreement(session, video, predictions)
    return report
