"""The review loop in the database: the videos and what waits for a decision, flags, corrections,
decisions, the audit history, agreement figures, the review queue and exports. No Gradio here."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from core.affwild2 import LABEL_COLUMNS
from core.labels import AUS, EXPRESSIONS, TASKS
from core.review import suspicious_segments
from core.table import (AROUSAL, AU_DECISIONS, EXPR, FACE, FRAME, TIME, VALENCE, align_ground_truth,
                        frame_rate, gt)
from db import export, repo
from db.agreement import agreement_report
from webapp.context import Context

HISTORY_COLUMNS = ("at", "reviewer", "action", "subject", "detail")
WAITING_COLUMNS = ["id", "video", "task", "frames", "proposed by", "note"]
AGREEMENT_COLUMNS = ["who", "task", "measure", "value", "frames"]


class Reviews:
    def __init__(self, ctx: Context):
        self.ctx = ctx

    def video_list(self) -> pd.DataFrame:
        """Every video in the database with its runs, open flags, pending corrections and last activity."""
        with self.ctx.read() as s:
            rows = repo.list_videos(s)
        out = pd.DataFrame(rows, columns=["name", "key", "frame_count", "runs", "open_flags", "pending_corrections",
                                          "last_activity"])
        out["last_activity"] = [t.strftime("%Y-%m-%d %H:%M:%S") if t else "" for t in out["last_activity"]]
        return out.rename(columns={"frame_count": "frames", "open_flags": "open flags",
                                   "pending_corrections": "waiting for a decision", "last_activity": "last activity"})

    def video_choices(self) -> list[tuple[str, str]]:
        """(file name, key) pairs for the "open a video" list: people see names, the page keeps keys."""
        videos = self.video_list()
        return [(f"{n} ({k.removeprefix('sha256:')[:8]})" if k.startswith("sha256:") else n, k)
                for n, k in zip(videos["name"], videos["key"])]

    def waiting_for(self, user: str) -> pd.DataFrame:
        """Corrections proposed by others that wait for a decision."""
        with self.ctx.read() as s:
            rows = [{"id": c.id, "video": c.video.name, "task": c.task, "frames": f"{c.start_frame}-{c.end_frame}",
                     "proposed by": c.reviewer.name, "note": c.note} for c in repo.waiting_for(s, user)]
        return pd.DataFrame(rows, columns=WAITING_COLUMNS)

    def labelled_table(self, key: str, table: pd.DataFrame) -> pd.DataFrame:
        """The table with the effective labels (accepted corrections applied) as gt_ columns for each task
        whose annotation the database holds."""
        out = table.copy()
        with self.ctx.read() as s:
            for task in TASKS:
                if repo.latest_annotation_set(s, key, task) is None:
                    continue
                labels = repo.effective_labels(s, key, task)
                truth = align_ground_truth(labels[LABEL_COLUMNS[task]], len(table))
                for col in truth.columns:
                    out[col] = truth[col].to_numpy()
        return out

    def flag(self, key, task, start, end, reason, note, user) -> int:
        with self.ctx.write() as s:
            repo.get_or_create_reviewer(s, user)
            return repo.add_flag(s, key, task, start, end, reason, user, note=note).id

    def correct(self, key, task, start, end, value, note, user) -> int:
        with self.ctx.write() as s:
            repo.get_or_create_reviewer(s, user)
            return repo.add_correction(s, key, task, start, end, value, user, note=note).id

    def decide(self, key: str | None, correction_id, accept: bool, comment: str, user: str) -> None:
        """Accept or reject a correction of the open video; every rule is checked before anything is written."""
        with self.ctx.write() as s:
            repo.decide_correction(s, correction_id, video=key, reviewer=user, accept=accept, comment=comment or "")

    def revise(self, key: str | None, correction_id, accept: bool, reason: str, user: str) -> None:
        with self.ctx.write() as s:
            repo.revise_decision(s, correction_id, video=key, reviewer=user, accept=accept, reason=reason or "")

    def flags(self, key: str) -> pd.DataFrame:
        with self.ctx.read() as s:
            return export.flags_table(s, key).drop(columns=["video"], errors="ignore")

    def resolve_flag(self, key: str | None, flag_id, resolution: str, correction_id, note: str, user: str) -> None:
        with self.ctx.write() as s:
            repo.resolve_flag(s, flag_id, video=key, reviewer=user, resolution=resolution,
                              correction_id=correction_id, note=note or "")

    def agreement(self, key: str, table: pd.DataFrame) -> pd.DataFrame:
        """The model against the annotation before and after accepted corrections, and the reviewers
        against each other, for the open video (db.agreement) as one readable table."""
        with self.ctx.read() as s:
            report = agreement_report(s, key, table)
        rows = []

        def add(who, task, scores):
            for measure, value in scores.items():
                if measure != "frames":
                    rows.append({"who": who, "task": task, "measure": measure.replace("_", " "),
                                 "value": None if value is None else round(float(value), 3),
                                 "frames": scores.get("frames")})

        for task, stages in report.get("model", {}).items():
            for stage, scores in stages.items():
                add(f"model vs annotation, {stage} corrections", task, scores)
        for name, counts in report["reviewers"].items():
            add(name, "all", {"share of own corrections accepted": counts.get("share_accepted"),
                              "frames": counts.get("proposed")})
        for pair in report["pairs"]:
            for task in TASKS:
                if pair[task].get("frames"):
                    add(" and ".join(pair["reviewers"]), task, pair[task])
        return pd.DataFrame(rows, columns=AGREEMENT_COLUMNS)

    def corrections(self, key: str) -> pd.DataFrame:
        with self.ctx.read() as s:
            return export.corrections_table(s, key).drop(columns=["video"])

    def history(self, key: str) -> pd.DataFrame:
        with self.ctx.read() as s:
            rows = [{"at": e.created_at.strftime("%Y-%m-%d %H:%M:%S"), "reviewer": e.reviewer.name,
                     "action": e.action,
                     "subject": f"correction {e.correction_id}" if e.correction_id else f"flag {e.flag_id}",
                     "detail": json.dumps(e.detail)} for e in repo.history(s, video=key)]
        return pd.DataFrame(rows, columns=list(HISTORY_COLUMNS))

    def export(self, key: str, name: str, out_dir: Path) -> list[Path]:
        """Corrections and flags with their audit trail (JSON), and the effective labels of every task
        with a stored annotation as Aff-Wild2 files (flagged frames written as invalid)."""
        out_dir.mkdir(parents=True, exist_ok=True)
        stem = Path(name).stem
        with self.ctx.read() as s:
            paths = [export.export_corrections(s, out_dir / f"{stem}_corrections.json", key),
                     export.export_flags(s, out_dir / f"{stem}_flags.json", key)]
            for task in TASKS:
                if repo.latest_annotation_set(s, key, task) is not None:
                    paths.append(export.export_annotations(s, key, task, out_dir / f"{stem}_{task.upper()}.txt"))
        return paths

    # -- review queue -----------------------------------------------------------------------------------
    def review_queue(self, table: pd.DataFrame) -> pd.DataFrame:
        return suspicious_segments(table, fps=frame_rate(table))

    @staticmethod
    def segment_labels(part: pd.DataFrame) -> pd.DataFrame:
        """Per-frame labels and predictions of a segment, readable (names instead of class indices)."""
        out = pd.DataFrame({FRAME: part[FRAME], TIME: part[TIME].round(3), FACE: part[FACE]})
        for col in (VALENCE, gt(VALENCE), AROUSAL, gt(AROUSAL)):
            if col in part:
                out[col] = part[col].round(3)
        for col in (EXPR, gt(EXPR)):
            if col in part:
                out[col] = [EXPRESSIONS[int(v)] if pd.notna(v) else "" for v in part[col]]
        for col, cols in (("AUs", AU_DECISIONS), ("gt_AUs", [gt(au) for au in AU_DECISIONS])):
            if all(c in part for c in cols):
                values = part[cols].to_numpy(dtype="float64", na_value=np.nan)
                out[col] = [" ".join(au for au, v in zip(AUS, row) if v == 1) for row in values]
        return out

