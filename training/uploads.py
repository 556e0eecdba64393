"""Uploaded videos as training data.

A team's own videos reach training the way Aff-Wild2 does: each upload that the review database holds with
annotations, a stored analysis (its face boxes) and a kept copy (core.settings.kept_video) is written as an
Aff-Wild2-layout video -- face crops from the stored boxes with the analysis's own crop (core.faces.crop_face,
112 px, saved as JPEG like Aff-Wild2's cropped_aligned), and its newest annotation files. The one training
path then reads it; the effective labels (accepted corrections applied, flagged frames left out) come from the
database at read time through `database_keys.json`, which maps each layout name to the video's database key.
An Aff-Wild2 folder given beside is linked into the same layout, so both train together.

Uploads are split by video, each by its own content hash (one in VAL_EVERY is a validation video), so adding a
video never moves another. While that leaves a side empty (a team with one video, or a few that all hash alike) and
no Aff-Wild2 folder gives one, validation is instead the last VAL_FRACTION of each upload's frames, with a gap of
one LSTM window before it so that no training window reaches into it: HOLDOUT_FILE in the layout says where, and
training.data cuts the train and val splits there (training and the before/after evaluation alike). The audit's
layout has no such file: it folds the frames itself and must judge every one of them.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from sqlalchemy import select

from core.affwild2 import IMAGE_DIR, image_name, write_annotation
from core.affwild2_index import AffWild2Index
from core.faces import crop_face
from core.labels import CHALLENGE_DIRS, SPLIT_DIRS, TASKS
from core.models.temporal import LSTM_WINDOW
from core.settings import data_dir, kept_video
from core.table import BOX_COLUMNS, FACE
from core.video import iter_frames

KEYS_FILE = "database_keys.json"     # layout video name -> review-database key (read by training.data)
HOLDOUT_FILE = "held_out.json"    # layout video name -> first validation frame, and the gap (read by training.data)
VAL_EVERY = 5
VAL_FRACTION = 0.2                # of each video's frames, held out at its end when splitting by video cannot
HOLDOUT_GAP = LSTM_WINDOW         # frames left out between training and held-out validation frames
CROP_SIZE = 112
JPEG_QUALITY = 95


@dataclass(frozen=True)
class Upload:
    """One upload that can be trained on: its database key, layout name, split and where its parts are."""

    key: str
    name: str
    shown: str                     # the name the page shows
    split: str
    video_path: Path
    table_path: Path
    tasks: tuple[str, ...]


def layout_name(key: str) -> str:
    """The Aff-Wild2-layout folder name of an upload: a prefix of its content hash (no ':' in file names)."""
    return "upload-" + key.removeprefix("sha256:")[:16]


def video_side(key: str) -> str:
    """An upload's split by its content hash alone ("val" for one hash in VAL_EVERY): never changed by others."""
    return "val" if int(key.removeprefix("sha256:"), 16) % VAL_EVERY == 0 else "train"


def trainable_uploads(session, data: Path, tasks) -> tuple[list[Upload], list[str]]:
    """The uploads that can be trained on for `tasks`, and a sentence for each one left out (why)."""
    from db import repo
    from db.models import AnnotationSet, Video

    found, skipped = [], []
    videos = session.scalars(select(Video).where(Video.key.startswith("sha256:")).order_by(Video.key)).all()
    for video in videos:
        annotated = tuple(t for t in TASKS if t in tasks and session.scalar(
            select(AnnotationSet.id).where(AnnotationSet.video_id == video.id, AnnotationSet.task == t).limit(1)))
        if not annotated:
            continue
        run, path = repo.latest_run(session, video), kept_video(data, video.key)
        table = data / run.artifacts_dir / "table.parquet" if run is not None and run.artifacts_dir else None
        if path is None or table is None or not table.is_file():
            skipped.append(f"{video.name}: {'no kept copy of the video' if path is None else 'no stored analysis'}"
                           " in the data folder, so its faces cannot be cropped")
            continue
        found.append(Upload(video.key, layout_name(video.key), video.name or layout_name(video.key),
                            video_side(video.key), path, table, annotated))
    return found, skipped


def write_crops(upload: Upload, folder: Path) -> int:
    """cropped_aligned/<name>/<frame+1:05d>.jpg for every face frame of the stored analysis (kept when
    already written: the crops of one content and one analysis never change); returns how many."""
    table = pd.read_parquet(upload.table_path, columns=[FACE, *BOX_COLUMNS])
    faces = np.flatnonzero(table[FACE].to_numpy(dtype=bool))
    boxes = table[BOX_COLUMNS].to_numpy(dtype=np.float64)
    done = folder / ".complete"
    if done.exists() and done.read_text() == upload.table_path.name + str(len(faces)):
        return len(faces)
    folder.mkdir(parents=True, exist_ok=True)
    wanted, start = set(faces.tolist()), 0
    for batch in iter_frames(upload.video_path, batch_size=32):
        for i, frame in enumerate(batch.frames, start):
            if i in wanted:
                crop = crop_face(frame, boxes[i], CROP_SIZE)
                cv2.imwrite(str(folder / image_name(i)), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        start += len(batch.frames)
    done.write_text(upload.table_path.name + str(len(faces)))
    return len(faces)


def _link(target: Path, link: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(target.resolve())


def with_uploads(cfg, write: bool = True):
    """cfg with its root replaced by the combined layout of build_root (cfg.root, if set, linked in), and the
    summary. Under torchrun every process asks; only process 0 writes (`write`), the others wait for it.
    The audit holds no frames out: it folds one split itself, and must see every annotated frame."""
    from training import distributed
    from training.config import AuditConfig

    root, summary = build_root(cfg.db, Path(cfg.data) if cfg.data else data_dir(), cfg.tasks, cfg.root or None,
                               write=write, hold_out=not isinstance(cfg, AuditConfig))
    distributed.barrier()
    return replace(cfg, root=str(root)), summary


def build_root(db_url: str | None, data: Path, tasks, affwild2_root: str | None = None,
               write: bool = True, hold_out: bool = True) -> tuple[Path, dict]:
    """An Aff-Wild2-layout folder under data/training (data: the app's data folder) holding the trainable uploads
    (and, linked, the Aff-Wild2 copy at affwild2_root); returns it with a summary (videos per split, what was left
    out, how they were split).
    write=False only says where it is. When the uploads cannot be split by video, all are training videos, and
    with `hold_out` their last frames validate (HOLDOUT_FILE). Raises ValueError when there is nothing to train on."""
    from db import repo
    from db.engine import make_engine, make_session_factory

    sessions = make_session_factory(make_engine(db_url))
    with sessions() as session:
        uploads, skipped = trainable_uploads(session, data, tasks)
        sets = {(u.key, t): repo.annotation_frame(repo.latest_annotation_set(session, u.key, t))
                for u in uploads for t in u.tasks}
    if not uploads and not affwild2_root:
        why = "; ".join(skipped) or "no uploaded video has annotation files stored with it"
        raise ValueError(f"nothing to train on: {why}")
    by_video = bool(affwild2_root) or {u.split for u in uploads} == {"train", "val"}
    if not by_video:
        uploads = [replace(u, split="train") for u in uploads]
    held = _held_out(uploads, sets) if hold_out and not by_video else {}
    layout = [affwild2_root, [u.key for u in uploads], bool(held)]
    digest = hashlib.sha256(json.dumps(layout).encode()).hexdigest()[:12]
    root = data / "training" / f"root-{digest}"
    crops = data / "training" / "crops"
    summary = {"uploads": {s: sorted(u.name for u in uploads if u.split == s) for s in SPLIT_DIRS},
               "affwild2_root": affwild2_root, "left_out": skipped,
               "split": split_sentence(uploads, held, bool(affwild2_root))}
    if not write:
        return root, summary
    for u in uploads:
        write_crops(u, crops / u.name)
        _link(crops / u.name, root / IMAGE_DIR / u.name)
        for task in u.tasks:
            path = root / CHALLENGE_DIRS[task][0] / SPLIT_DIRS[u.split] / f"{u.name}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            write_annotation(sets[(u.key, task)], path, task)
    if affwild2_root:
        _link_affwild2(AffWild2Index(affwild2_root), root)
    root.mkdir(parents=True, exist_ok=True)
    (root / KEYS_FILE).write_text(json.dumps({u.name: u.key for u in uploads}, indent=1))
    if held:
        (root / HOLDOUT_FILE).write_text(json.dumps({"gap": HOLDOUT_GAP, "first_val_frame": held}, indent=1))
    return root, summary


def _held_out(uploads: list[Upload], sets: dict) -> dict[str, int]:
    """Layout name -> first validation frame: the last VAL_FRACTION of each upload's annotated frames, after
    a gap of HOLDOUT_GAP frames; ValueError, in words, for a video too short for a window of training frames."""
    held = {}
    for u in uploads:
        frames = max(len(sets[(u.key, t)]) for t in u.tasks)
        if frames < MIN_HELD_OUT_FRAMES:
            raise ValueError(f"{u.shown} is too short to hold frames out for validation: it has {frames} annotated "
                             f"frames and needs at least {MIN_HELD_OUT_FRAMES} ({HOLDOUT_GAP} to train on, "
                             f"{HOLDOUT_GAP} left out, then the last {VAL_FRACTION:.0%} to validate on); upload a "
                             "longer video, or a second one")
        held[u.name] = _first_val_frame(frames)
    return held


def _first_val_frame(frames: int) -> int:
    return frames - math.ceil(frames * VAL_FRACTION)


MIN_HELD_OUT_FRAMES = next(n for n in range(1, 100_000) if _first_val_frame(n) - HOLDOUT_GAP >= HOLDOUT_GAP
                           and _first_val_frame(n) < n)


def split_sentence(uploads: list[Upload], held: dict[str, int], affwild2: bool) -> str:
    """How the uploads are split into training and validation, in words (job log, page, checkpoint record)."""
    if held:
        return (f"validation is the last {VAL_FRACTION:.0%} of each video's frames and training the frames before "
                f"them, {HOLDOUT_GAP} frames (one LSTM window) left out between, because "
                f"{'one uploaded video' if len(uploads) == 1 else f'{len(uploads)} uploaded videos'} cannot be "
                "split by video: "
                + ", ".join(f"{u.shown} validates on frames {held[u.name]}+" for u in uploads))
    if not uploads:
        return "no uploaded video with annotations: the Aff-Wild2 folder's own training and validation splits"
    val = sum(u.split == "val" for u in uploads)
    beside = ", beside the Aff-Wild2 folder's own splits" if affwild2 else ""
    return f"by video: {len(uploads) - val} uploaded video(s) train, {val} validate{beside}"


def _link_affwild2(index: AffWild2Index, root: Path) -> None:
    """The Aff-Wild2 copy's image folders and annotation files as links in the combined layout."""
    for video in index.all_videos():
        if index.image_dir(video) is not None:
            _link(index.image_dir(video), root / IMAGE_DIR / video)
        for task, split in index.splits(video).items():
            _link(index.annotation_path(task, split, video),
                  root / CHALLENGE_DIRS[task][0] / SPLIT_DIRS[split] / f"{video}.txt")


def database_keys(root) -> dict[str, str]:
    """Layout video name -> review-database key for a root that build_root wrote ({} for a plain copy)."""
    path = Path(root) / KEYS_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def held_out(root) -> tuple[dict[str, int], int]:
    """(layout video name -> first validation frame, gap) for a root whose validation is held-out frames
    ({}, 0 otherwise)."""
    path = Path(root) / HOLDOUT_FILE
    if not path.is_file():
        return {}, 0
    values = json.loads(path.read_text())
    return values["first_val_frame"], values["gap"]

