"""Uploaded videos as training data.

A team's own videos reach training the way Aff-Wild2 does: each upload that the review database holds with
annotations, a stored analysis (its face boxes) and a kept copy (core.settings.kept_video) is written as an
Aff-Wild2-layout video -- face crops from the stored boxes with the analysis's own crop (core.faces.crop_face,
112 px, saved as JPEG like Aff-Wild2's cropped_aligned), and its newest annotation files. The one training
path then reads it; the effective labels (accepted corrections applied, flagged frames left out) come from the
database at read time through `database_keys.json`, which maps each layout name to the video's database key.
An Aff-Wild2 folder given beside is linked into the same layout, so both train together.

Uploads are split by video: every VAL_EVERY-th upload, in the order of their content hashes, is a validation
video (one at least once there are two), so the split never changes when a video is added elsewhere.
"""
from __future__ import annotations

import hashlib
import json
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
from core.settings import data_dir, kept_video
from core.table import BOX_COLUMNS, FACE
from core.video import iter_frames

KEYS_FILE = "database_keys.json"     # layout video name -> review-database key (read by training.data)
VAL_EVERY = 5
CROP_SIZE = 112
JPEG_QUALITY = 95


@dataclass(frozen=True)
class Upload:
    """One upload that can be trained on: its database key, layout name, split and where its parts are."""

    key: str
    name: str
    split: str
    video_path: Path
    table_path: Path
    tasks: tuple[str, ...]


def layout_name(key: str) -> str:
    """The Aff-Wild2-layout folder name of an upload: a prefix of its content hash (no ':' in file names)."""
    return "upload-" + key.removeprefix("sha256:")[:16]


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
        found.append(Upload(video.key, layout_name(video.key), "train", path, table, annotated))
    val = {u.key for i, u in enumerate(found) if len(found) > 1 and i % VAL_EVERY == VAL_EVERY - 1} \
        or ({found[-1].key} if len(found) > 1 else set())
    return [Upload(u.key, u.name, "val" if u.key in val else "train", u.video_path, u.table_path, u.tasks)
            for u in found], skipped


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
    summary. Under torchrun every process asks; only process 0 writes (`write`), the others wait for it."""
    from training import distributed

    root, summary = build_root(cfg.db, Path(cfg.data) if cfg.data else data_dir(), cfg.tasks, cfg.root or None,
                               write=write)
    distributed.barrier()
    return replace(cfg, root=str(root)), summary


def build_root(db_url: str | None, data: Path, tasks, affwild2_root: str | None = None,
               write: bool = True) -> tuple[Path, dict]:
    """An Aff-Wild2-layout folder under data/training (data: the app's data folder) holding the trainable uploads (and, linked, the
    Aff-Wild2 copy at affwild2_root); returns it with a summary (videos per split, what was left out).
    write=False only says where it is. Raises ValueError when there is nothing to train on."""
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
    digest = hashlib.sha256(json.dumps([affwild2_root, [u.key for u in uploads]]).encode()).hexdigest()[:12]
    root = data / "training" / f"root-{digest}"
    crops = data / "training" / "crops"
    summary = {"uploads": {s: sorted(u.name for u in uploads if u.split == s) for s in SPLIT_DIRS},
               "affwild2_root": affwild2_root, "left_out": skipped}
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
    return root, summary


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

