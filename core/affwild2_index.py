"""A local Aff-Wild2 copy: which videos each task annotates in each split, their aligned face images and raw
videos (the file formats themselves are core.affwild2's)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from core.affwild2 import (IMAGE_DIR, LABEL_COLUMNS, VIDEO_EXTENSIONS, check_task, image_name, raw_video_name,
                           read_annotation)
from core.labels import CHALLENGE_DIRS, SPLIT_DIRS, TASKS


def _split_key(split: str) -> str:
    """"train" / "val" from either that key or the folder name (Train_Set / Validation_Set)."""
    for key, folder in SPLIT_DIRS.items():
        if split in (key, folder):
            return key
    raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLIT_DIRS)}")


class AffWild2Index:
    """What a local Aff-Wild2 copy holds: annotated videos per task and split, their images, raw videos.

    Scanning never crashes on an incomplete copy; what is absent is listed in `missing` (readable
    sentences), and frames without an image get image_path None.
    """

    def __init__(self, root):
        self.root = Path(root)
        self.missing: list[str] = []
        self._annotations: dict[tuple[str, str], dict[str, Path]] = {}
        self._image_dirs: dict[str, Path] = {}
        self._raw_videos: dict[str, Path] | None = None
        if not self.root.is_dir():
            self.missing.append(f"{self.root} does not exist or is not a folder")
            return
        self._scan_images()
        for task in TASKS:
            self._scan_task(task)

    def _scan_images(self) -> None:
        image_root = self.root / IMAGE_DIR
        if not image_root.is_dir():
            self.missing.append(f"no {IMAGE_DIR}/ folder in {self.root}: frames have no images")
            return
        with os.scandir(image_root) as entries:
            self._image_dirs = {e.name: Path(e.path) for e in entries if e.is_dir()}

    def _scan_task(self, task: str) -> None:
        challenge = next((self.root / d for d in CHALLENGE_DIRS[task] if (self.root / d).is_dir()), None)
        if challenge is None:
            self.missing.append(f"{task.upper()}: no {' or '.join(d + '/' for d in CHALLENGE_DIRS[task])} folder")
            return
        for split, split_name in SPLIT_DIRS.items():
            folder = challenge / split_name
            if not folder.is_dir():
                self.missing.append(f"{task.upper()}: no {challenge.name}/{split_name}/ folder")
                continue
            videos = {p.stem: p for p in sorted(folder.glob("*.txt"))}
            self._annotations[(task, split)] = videos
            for video in videos:
                if self._image_dirs and video not in self._image_dirs:
                    self.missing.append(
                        f"{task.upper()} {split_name}: {video} has no {IMAGE_DIR}/{video}/ folder (no images)"
                    )

    def videos(self, task: str, split: str) -> list[str]:
        """Annotated videos of a task in a split ("train"/"val" or the folder name), sorted."""
        check_task(task)
        return list(self._annotations.get((task, _split_key(split)), {}))

    def all_videos(self) -> list[str]:
        """Every video annotated for any task, sorted."""
        return sorted({v for videos in self._annotations.values() for v in videos})

    def splits(self, video: str) -> dict[str, str]:
        """Task -> split ("train"/"val") of each task that annotates this video."""
        return {task: split for (task, split), videos in self._annotations.items() if video in videos}

    def annotation_path(self, task: str, split: str, video: str) -> Path:
        """The video's annotation file; KeyError with a clear message if the index has none."""
        check_task(task)
        try:
            return self._annotations[(task, _split_key(split))][video]
        except KeyError:
            raise KeyError(f"no {task.upper()} {SPLIT_DIRS[_split_key(split)]} annotation for video {video!r}") from None

    def image_dir(self, video: str) -> Path | None:
        """cropped_aligned/<video>/, or None if the copy has no images for this video."""
        return self._image_dirs.get(video)

    def frames(self, task: str, split: str, video: str) -> pd.DataFrame:
        """One row per annotated frame: frame, image_path (str, or None without a face image), labels."""
        labels = read_annotation(self.annotation_path(task, split, video), task)
        return self._with_images(video, labels)

    def video_frames(self, video: str) -> pd.DataFrame:
        """All tasks' labels of one video side by side (outer join on frame); unannotated tasks are NA.

        attrs["splits"] holds task -> split of the annotations found.
        """
        splits = self.splits(video)
        if not splits:
            raise KeyError(f"no annotation for video {video!r} in {self.root}")
        tables = [read_annotation(self.annotation_path(t, s, video), t) for t, s in splits.items()]
        labels = pd.concat(tables, axis=1, join="outer").sort_index()
        for task in TASKS:
            if task not in splits:
                for name in LABEL_COLUMNS[task]:
                    labels[name] = pd.Series(np.nan if task == "va" else pd.NA, index=labels.index,
                                             dtype="float64" if task == "va" else "Int64")
        labels = labels[[c for t in TASKS for c in LABEL_COLUMNS[t]]]
        df = self._with_images(video, labels)
        df.attrs["splits"] = splits
        return df

    def _with_images(self, video: str, labels: pd.DataFrame) -> pd.DataFrame:
        folder = self.image_dir(video)
        names = set(os.listdir(folder)) if folder is not None else set()
        frames = labels.index.to_numpy()
        paths = [str(folder / image_name(f)) if image_name(f) in names else None for f in frames]
        out = labels.reset_index(drop=True)
        out.insert(0, "image_path", pd.Series(paths, dtype=object))
        out.insert(0, "frame", frames.astype("int64"))
        return out

    def raw_video_path(self, video: str) -> Path | None:
        """The raw video file of an annotated video (_left/_right stripped), searched in the root and the
        folders one level below it (videos/, batch1/, ...); None if the copy has no such file."""
        if self._raw_videos is None:
            self._raw_videos = self._scan_raw_videos()
        return self._raw_videos.get(raw_video_name(video))

    def _scan_raw_videos(self) -> dict[str, Path]:
        skip = {IMAGE_DIR, *(d for dirs in CHALLENGE_DIRS.values() for d in dirs)}
        found: dict[str, Path] = {}
        if not self.root.is_dir():
            return found
        folders = [self.root] + sorted(p for p in self.root.iterdir() if p.is_dir() and p.name not in skip)
        for folder in folders:
            for p in sorted(folder.iterdir()):
                if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS:
                    found.setdefault(p.stem, p)
        return found
