"""Training data: the labels of a split (annotation files, or the database's effective labels), and the
datasets the loop reads (face images, cached embeddings per frame, windows of embeddings per video).

A split's label table has one row per annotated frame of every video that any asked-for task annotates
in that split: video, frame, image_path (None where Aff-Wild2 has no face image), valence, arousal,
expression, AU1..AU26 (NaN / <NA> where a task has no usable label: invalid marker, flagged by a
reviewer, or not annotated for that task). Predictions are aligned with its rows.
"""
from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from core.affwild2 import LABEL_COLUMNS, image_name, read_annotation
from core.affwild2_index import AffWild2Index
from core.faces import read_face_image
from core.labels import AUS, TASKS, VA_NAMES
from core.models.temporal import window_starts
from training.uploads import database_keys, held_out

log = logging.getLogger(__name__)
IMAGE_SIZE = 112
IMAGENET_MEAN_UINT8 = (124, 116, 104)   # upstream erases with 0 after normalisation: the mean colour


@dataclass
class LabelSet:
    """The labels of one split, and where they came from (recorded in checkpoints)."""

    table: pd.DataFrame
    split: str
    tasks: tuple[str, ...]
    source: str                                       # "annotation files" or "database <url>"
    corrections: list[int] = field(default_factory=list)   # ids of accepted corrections applied
    flagged: int = 0                                  # task labels left out because a reviewer flagged them

    def summary(self) -> dict:
        t = self.table
        return {"split": self.split, "source": self.source, "videos": int(t["video"].nunique()),
                "frames": int(len(t)), "frames_with_image": int(t["image_path"].notna().sum()),
                "labelled": {task: int(valid_mask(t, task).sum()) for task in self.tasks},
                "corrections_applied": len(self.corrections), "flagged_left_out": self.flagged}


def split_videos(index: AffWild2Index, tasks, split: str) -> list[str]:
    """Videos annotated in `split` for any of `tasks`, sorted."""
    return sorted({v for t in tasks for v in index.videos(t, split)})


def _empty_labels(task: str, index: pd.Index) -> pd.DataFrame:
    if task == "va":
        return pd.DataFrame({c: pd.Series(np.nan, index=index, dtype="float64") for c in LABEL_COLUMNS[task]})
    return pd.DataFrame({c: pd.Series(pd.NA, index=index, dtype="Int64") for c in LABEL_COLUMNS[task]})


def load_labels(root, tasks, split: str, corrections: bool = True, db: str | None = None) -> LabelSet:
    """The label table of a split. With `corrections`, every task's labels come from the database's
    effective labels (accepted corrections applied, flagged frames left out); without, from the files.
    In a layout of uploads whose validation is held-out frames (training.uploads.held_out), each such
    video's files are its training ones: "train" keeps the frames before the gap, "val" those from the cut."""
    index = AffWild2Index(root)
    tasks = tuple(t for t in TASKS if t in tasks)
    keys = database_keys(root)             # uploads: their database key differs from the layout's name
    held, gap = held_out(root)
    files = {v: split for v in split_videos(index, tasks, split)}     # video -> the split its files are in
    if split == "val":
        files.update({v: "train" for v in held})
    if not files:
        raise ValueError(_no_videos(root, index, tasks, split, bool(keys)))
    reader = _DatabaseLabels.open(db) if corrections else None
    parts = []
    for video in sorted(files):
        per_task = []
        for task in tasks:
            if video in index.videos(task, files[video]):
                path = index.annotation_path(task, files[video], video)
                per_task.append(reader.labels(path, task, keys.get(video, video)) if reader
                                else read_annotation(path, task))
        frames = pd.Index(sorted(set().union(*(p.index for p in per_task))), name="frame")
        if video in held:
            frames = frames[frames >= held[video]] if split == "val" else frames[frames < held[video] - gap]
        labels = pd.concat([p.reindex(frames) for p in per_task], axis=1)
        for task in TASKS:
            if LABEL_COLUMNS[task][0] not in labels.columns:
                labels = pd.concat([labels, _empty_labels(task, frames)], axis=1)
        labels = labels[_label_columns()]
        table = labels.reset_index()
        table.insert(0, "video", video)
        table["image_path"] = image_paths(index, video, table["frame"].to_numpy())
        parts.append(table)
    table = pd.concat(parts, ignore_index=True)[["video", "frame", "image_path", *_label_columns()]]
    if reader is None:
        source = "annotation files" + (" (no review database found)" if corrections else "")
        return LabelSet(table, split, tasks, source)
    return LabelSet(table, split, tasks, reader.source, sorted(reader.applied), reader.flagged)


def _no_videos(root, index: AffWild2Index, tasks, split: str, uploads: bool) -> str:
    """Why a split is empty: for a layout of uploads in the words of the page (no server path, no Aff-Wild2
    folder names); for an Aff-Wild2 copy, its folder and what is missing in it."""
    names = "/".join(t.upper() for t in tasks)
    purpose = "validation" if split == "val" else "training"
    if uploads:
        return (f"no uploaded video with {names} annotation files is set aside for {purpose}; "
                "see the README's \"Retraining\" for how many videos each split needs")
    problems = "; ".join(index.missing) or "no annotation files"
    return f"{root}: no {'/'.join(tasks)} videos in the {split} split ({problems})"


def image_paths(index: AffWild2Index, video: str, frames: np.ndarray) -> pd.Series:
    """cropped_aligned/<video>/<frame+1:05d>.jpg per frame, None where the copy has no such image."""
    folder = index.image_dir(video)
    names = set(os.listdir(folder)) if folder is not None else set()
    paths = [str(folder / image_name(f)) if image_name(f) in names else None for f in frames]
    return pd.Series(paths, dtype=object)


def _label_columns() -> list[str]:
    return [c for t in TASKS for c in LABEL_COLUMNS[t]]


@functools.cache
def _warn_once(message: str) -> None:
    """Log a warning the first time only: every split (train, val) opens the database again."""
    log.warning(message)


def review_engine(url: str | None, otherwise: str):
    """The review database at `url` (default: the app's), or None (warned once, saying what happens
    `otherwise`) when there is none: a SQLite file that does not exist, or a database without our schema,
    is not created here."""
    from sqlalchemy.engine import make_url

    from core.settings import db_url
    from db.engine import current_revision, make_engine

    parsed = make_url(url or db_url())
    shown = parsed.render_as_string(hide_password=True)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:") \
            and not Path(parsed.database).expanduser().exists():
        _warn_once(f"no review database at {shown}: {otherwise}")
        return None
    engine = make_engine(url)
    if current_revision(engine) is None:
        _warn_once(f"{shown} has no AffectLens schema: {otherwise}")
        return None
    return engine


class _DatabaseLabels:
    """Effective labels from the review database (db.repo), remembering which corrections were used."""

    def __init__(self, engine):
        from db.engine import make_session_factory

        self.sessions = make_session_factory(engine, read_only=True)     # reads never wait for writers
        self.source = f"database {engine.url.render_as_string(hide_password=True)}"
        self.applied: set[int] = set()
        self.flagged = 0

    @classmethod
    def open(cls, url: str | None):
        """The database at `url` (default: the app's), or None when there is none."""
        engine = review_engine(url, "training on the annotation files")
        return cls(engine) if engine is not None else None

    def labels(self, path: Path, task: str, video: str) -> pd.DataFrame:
        from db import repo

        annotation = read_annotation(path, task)
        with self.sessions() as session:
            eff = repo.effective_labels(session, video, task, annotation)
        flagged = eff["flagged"].to_numpy(dtype=bool)
        self.flagged += int(flagged.sum())
        ids = eff["correction_id"].dropna()
        self.applied.update(int(i) for i in ids)
        labels = eff[LABEL_COLUMNS[task]].copy()
        for c in labels.columns:
            labels.loc[flagged, c] = np.nan if task == "va" else pd.NA
        return labels


# ---------------------------------------------------------------------------------------------------
# Label arrays


def valid_mask(table: pd.DataFrame, task: str) -> np.ndarray:
    """Rows with a usable label for `task` (VA: both values; AU: any AU; the loss masks per AU)."""
    values = table[LABEL_COLUMNS[task]].to_numpy(dtype="float64", na_value=np.nan)
    return ~np.isnan(values).all(axis=1) if task == "au" else ~np.isnan(values).any(axis=1)


def target_arrays(table: pd.DataFrame) -> dict[str, np.ndarray]:
    """Loss targets for every row: va (N,2) float32 NaN, expr (N,) int64 -1, au (N,12) float32 NaN."""
    va = table[list(VA_NAMES)].to_numpy(dtype="float32", na_value=np.nan, copy=True)
    va[np.isnan(va).any(axis=1)] = np.nan
    expr = table["expression"].to_numpy(dtype="float64", na_value=np.nan)
    return {"va": va, "expr": np.where(np.isnan(expr), -1, expr).astype(np.int64),
            "au": table[list(AUS)].to_numpy(dtype="float32", na_value=np.nan, copy=True)}


def labelled_rows(table: pd.DataFrame, tasks) -> np.ndarray:
    """Rows with an image and a label for at least one of `tasks` (what a frame model trains on)."""
    has = np.zeros(len(table), dtype=bool)
    for task in tasks:
        has |= valid_mask(table, task)
    return np.flatnonzero(has & table["image_path"].notna().to_numpy())


# ---------------------------------------------------------------------------------------------------
# Datasets


def augmentation():
    """Upstream DDAMFN's training augmentation on uint8 tensors: horizontal flip, RandomAffine(20,
    scale 0.8-1, translate 0.2) with p 0.7, RandomErasing (filled with the mean colour)."""
    from torchvision.transforms import v2

    return v2.Compose([
        v2.RandomHorizontalFlip(),
        v2.RandomApply([v2.RandomAffine(20, translate=(0.2, 0.2), scale=(0.8, 1.0))], p=0.7),
        v2.RandomErasing(value=list(IMAGENET_MEAN_UINT8)),
    ])


class FrameImages(Dataset):
    """Face images of the given table rows with their targets: image uint8 (3,112,112), va, expr, au, row."""

    def __init__(self, table: pd.DataFrame, rows: np.ndarray, augment: bool = False):
        self.paths = table["image_path"].to_numpy()
        self.rows = np.asarray(rows, dtype=np.int64)
        self.targets = target_arrays(table)
        self.transform = augmentation() if augment else None

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        row = int(self.rows[i])
        image = torch.from_numpy(read_face_image(self.paths[row], IMAGE_SIZE)).permute(2, 0, 1)
        if self.transform is not None:
            image = self.transform(image)
        return {"image": image, "row": row, **{t: torch.as_tensor(v[row]) for t, v in self.targets.items()}}


class FrameEmbeddings(Dataset):
    """Cached embeddings of the given rows with their targets: emb (D,), va, expr, au, row."""

    def __init__(self, table: pd.DataFrame, rows: np.ndarray, embeddings: np.ndarray):
        self.rows = np.asarray(rows, dtype=np.int64)
        self.emb = torch.from_numpy(np.ascontiguousarray(embeddings[self.rows], dtype=np.float32))
        self.targets = {t: torch.from_numpy(v[self.rows]) for t, v in target_arrays(table).items()}

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        return {"emb": self.emb[i], "row": int(self.rows[i]), **{t: v[i] for t, v in self.targets.items()}}


class EmbeddingWindows(Dataset):
    """Windows of `window` consecutive frames of each video: emb (T,D), mask (T,) face seen, targets per
    frame, row (T,) into the table (-1 past a short video's end, where targets are invalid)."""

    def __init__(self, table: pd.DataFrame, embeddings: np.ndarray, has_embedding: np.ndarray,
                 window: int, stride: int):
        self.window = window
        self.emb = torch.from_numpy(np.ascontiguousarray(embeddings, dtype=np.float32))
        self.mask = torch.from_numpy(np.asarray(has_embedding, dtype=bool))
        self.targets = {t: torch.from_numpy(v) for t, v in target_arrays(table).items()}
        self.items: list[np.ndarray] = []
        for _, rows in video_rows(table).items():
            for start in window_starts(len(rows), window, stride):
                self.items.append(rows[start:start + window])

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        rows = torch.from_numpy(self.items[i])
        pad = self.window - len(rows)
        item = {"emb": self.emb[rows], "mask": self.mask[rows], "row": rows,
                **{t: v[rows] for t, v in self.targets.items()}}
        if pad:
            fill = {"emb": 0.0, "mask": False, "row": -1, "va": float("nan"), "expr": -1, "au": float("nan")}
            for k, v in item.items():
                item[k] = torch.cat([v, torch.full((pad, *v.shape[1:]), fill[k], dtype=v.dtype)])
        return item


def video_rows(table: pd.DataFrame) -> dict[str, np.ndarray]:
    """Video -> its table rows in frame order."""
    order = table.sort_values(["video", "frame"], kind="stable")
    return {v: np.array(rows, dtype=np.int64) for v, rows in order.groupby("video", sort=False).groups.items()}
