"""The effective labels of a video (the annotation with accepted corrections applied, db.repo) as the
gt_ columns every tab shows, read once per video and kept until the video's next audit event or
annotation import. No Gradio here."""
from __future__ import annotations

import threading

import pandas as pd

from core.affwild2 import LABEL_COLUMNS
from core.labels import TASKS
from core.table import align_ground_truth, attach_ground_truth
from db import repo
from webapp.context import Context

KEEP = 32        # videos whose labels are kept


class Labels:
    def __init__(self, ctx: Context):
        self.ctx = ctx
        self._lock = threading.Lock()
        # key -> (stamp, frames, gt_ columns, per task the accepted correction that set each frame's label)
        self._kept: dict[str, tuple[tuple, int, pd.DataFrame | None, pd.DataFrame]] = {}

    def labelled(self, key: str, table: pd.DataFrame) -> pd.DataFrame:
        """The table with the video's effective labels as gt_ columns (replacing any it had) for each task
        whose annotation the database holds."""
        truth = self.truth(key, len(table))
        stale = [c for c in table.columns if c.startswith("gt_")]
        return attach_ground_truth(table.drop(columns=stale), truth)

    def truth(self, key: str, n_frames: int) -> pd.DataFrame | None:
        return self._read(key, n_frames)[0]

    def corrections(self, key: str, n_frames: int) -> pd.DataFrame:
        """Per frame (index) and task (column) the id of the accepted correction that set the label, <NA>
        where the annotation stands; a column for each task whose annotation the database holds."""
        return self._read(key, n_frames)[1]

    def _read(self, key: str, n_frames: int) -> tuple[pd.DataFrame | None, pd.DataFrame]:
        with self.ctx.read() as s:
            stamp = repo.labels_stamp(s, key)
            with self._lock:
                kept = self._kept.get(key)
            if kept is not None and kept[:2] == (stamp, n_frames):
                return kept[2:]
            parts, ids = [], {}
            for task in TASKS:
                if repo.latest_annotation_set(s, key, task) is not None:
                    labels = repo.effective_labels(s, key, task)
                    parts.append(align_ground_truth(labels[LABEL_COLUMNS[task]], n_frames))
                    ids[task] = labels["correction_id"].reindex(pd.RangeIndex(n_frames))
        truth = pd.concat(parts, axis=1) if parts else None
        corrections = pd.DataFrame(ids, index=pd.RangeIndex(n_frames))
        with self._lock:
            self._kept.pop(key, None)
            self._kept[key] = (stamp, n_frames, truth, corrections)
            while len(self._kept) > KEEP:
                self._kept.pop(next(iter(self._kept)))
        return truth, corrections
