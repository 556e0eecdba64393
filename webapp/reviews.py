"""The review loop in the database: the videos and what waits for a decision, flags, corrections,
decisions, the audit history, agreement figures, the review queue and exports. No Gradio here."""
from __future__ import annotations

import re
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from core.labels import AUS, EXPRESSIONS, TASKS
from core.analysis import RunInfo
from core.registry import label
from core.review import suspicious_segments, trained_on
from core.table import AROUSAL, AU_DECISIONS, EXPR, FACE, FRAME, TIME, VALENCE, frame_rate, gt
from db import export, repo
from db.agreement import agreement_report
from db.interop import export_video
from db.limits import HISTORY_PAGE
from db.repo import ValidationError
from webapp.context import Context
from webapp.labels import Labels
from webapp.results import DECIMALS, output_names, rounded
from webapp.state import OpenVideo
from webapp.summary import readable, run_time

HISTORY_COLUMNS = ("at", "reviewer", "action", "subject", "detail")
WAITING_COLUMNS = ["id", "video", "task", "frames", "seconds", "correction", "proposed by", "note"]
AGREEMENT_COLUMNS = ["compared", "output", "model", "weights", "run", "task", "measure", "value", "frames",
                     "missing"]
VIDEO_COLUMNS = ["name", "frames", "runs", "open flags", "waiting for a decision", "last activity"]
CORRECTION_TABLE = ["id", "task", "frames", "seconds", "correction", "status", "proposed by", "decided by",
                    "comment", "note"]
FLAG_TABLE = ["id", "task", "frames", "seconds", "reason", "note", "flagged by", "resolution",
              "fixed by correction", "resolved by", "resolution note"]


# -- labels in words -------------------------------------------------------------------------------------
def _number(v) -> str:
    return f"{round(float(v), DECIMALS):g}"


def _frames(n: int) -> str:
    return f"{n} frame" if n == 1 else f"{n} frames"


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def value_words(task: str, value: dict) -> str:
    """A correction's label as people say it: "valence 0.6, arousal 0.3", "Happiness", "AU12 on"."""
    if task == "va":
        return ", ".join(f"{k} {_number(value[k])}" for k in ("valence", "arousal") if k in value)
    if task == "expr":
        return EXPRESSIONS[int(value["expression"])]
    on = [au for au in AUS if value.get(au) == 1]
    off = [au for au in AUS if value.get(au) == 0]
    if len(on) + len(off) == len(AUS):          # every AU given (the page sends all twelve)
        return f"{_and(on)} on, the other AUs off" if on else "no AU on"
    return ", ".join([f"{au} on" for au in on] + [f"{au} off" for au in off])


def _spread(values: list, show) -> str:
    known = [v for v in values if v is not None]
    missing = len(values) - len(known)
    if not known:
        return "not annotated"
    if all(isinstance(v, float) for v in known) and len(set(known)) > 1:
        text = f"{_number(min(known))} to {_number(max(known))}"
    else:
        counts = Counter(show(v) for v in known)
        text = next(iter(counts)) if len(counts) == 1 else ", ".join(
            f"{k} ({_frames(n)})" for k, n in counts.most_common())
    return text + (f" ({_frames(missing)} not annotated)" if missing else "")


def original_words(task: str, value: dict, original: dict | None) -> str:
    """What a correction replaced, from its stored `original` (per-frame values of the corrected label
    columns; None: not annotated): "off", "Neutral (8 frames), Happiness (3 frames)", "valence 0.1 to 0.4"."""
    original = original or {}
    if task == "va":
        return ", ".join(f"{k} {_spread(original[k], _number)}" for k in ("valence", "arousal") if k in original)
    if task == "expr":
        return _spread(original.get("expression", []), lambda v: EXPRESSIONS[int(v)])

    def au_state(values):
        known = [v for v in values if v is not None]
        n_on = sum(int(v == 1) for v in known)
        state = ("not annotated" if not known else "off" if n_on == 0 else "on" if n_on == len(known)
                 else f"on in {n_on} of {len(known)} frames")
        return state + (f" ({_frames(len(values) - len(known))} not annotated)" if known and len(known) < len(values)
                        else "")

    changed = [au for au in AUS if au in original and au_state(original[au]) != ("on" if value.get(au) else "off")]
    if len(value) == 1:
        return au_state(original.get(next(iter(value)), []))
    return ", ".join(f"{au} {au_state(original[au])}" for au in changed) if changed else "the same"


def correction_words(task: str, start: int, end: int, value: dict, original: dict | None) -> str:
    """ "AU12 on, frames 100-150, was off" """
    return f"{value_words(task, value)}, frames {start}-{end}, was {original_words(task, value, original)}"


def seconds(start: int, end: int, fps: float) -> str:
    """A frame range as times (the start of the first frame to the end of the last)."""
    return f"{start / fps:.{DECIMALS}f}-{(end + 1) / fps:.{DECIMALS}f} s" if fps else ""


def event_words(action: str, detail: dict, correction=None) -> str:
    """An audit event as a sentence, label names instead of indices."""
    d = detail or {}
    if action == "flagged":
        note = f": {d['note']}" if d.get("note") else ""
        return f"{d.get('task', '').upper()} frames {d.get('start_frame')}-{d.get('end_frame')} flagged as " \
               f"{d.get('reason')}{note}"
    if action == "proposed":
        task = d.get("task", "")
        original = correction.original if correction is not None else None
        text = f"{task.upper()} " + (correction_words(task, d.get("start_frame"), d.get("end_frame"), d.get("value", {}),
                                                      original) if original is not None else
                                     f"{value_words(task, d.get('value', {}))}, frames {d.get('start_frame')}-"
                                     f"{d.get('end_frame')}")
        return text + (f"; note: {d['note']}" if d.get("note") else "")
    if action in ("accepted", "rejected"):
        return f"{action.capitalize()}" + (f": {d['comment']}" if d.get("comment") else " (no comment)")
    if action == "revised":
        return f"Changed from {d.get('before')} to {d.get('after')}: {d.get('reason')}"
    if action == "resolved":
        how = d.get("resolution", "")
        if d.get("correction_id") is not None:
            how = f"fixed by correction {d['correction_id']}"
        return f"Resolved: {how}" + (f"; note: {d['note']}" if d.get("note") else "")
    return ", ".join(f"{k} {v}" for k, v in d.items())


class Reviews:
    def __init__(self, ctx: Context, labels: Labels):
        self.ctx, self.labels = ctx, labels

    def _videos(self) -> list[dict]:
        with self.ctx.read() as s:
            return repo.list_videos(s)

    def video_list(self) -> pd.DataFrame:
        """Every video in the database by file name with its runs, open flags, pending corrections and last
        activity (the key stays out of sight: video_choices maps names to keys)."""
        rows = self._videos()
        out = pd.DataFrame(rows, columns=["name", "key", "frame_count", "runs", "open_flags", "pending_corrections",
                                          "last_activity"])
        out["name"] = [label for label, _ in self._labels(rows)]
        out["last_activity"] = [t.strftime("%Y-%m-%d %H:%M:%S") if t else "" for t in out["last_activity"]]
        return out.rename(columns={"frame_count": "frames", "open_flags": "open flags",
                                   "pending_corrections": "waiting for a decision",
                                   "last_activity": "last activity"})[VIDEO_COLUMNS]

    @staticmethod
    def _labels(rows: list[dict]) -> list[tuple[str, str]]:
        """(label, key): the file name; two videos with one name are told apart by when they came."""
        names = Counter(r["name"] for r in rows)
        return [(r["name"] if names[r["name"]] == 1 else
                 f"{r['name']} ({r['frame_count']} frames, last activity {r['last_activity']:%Y-%m-%d %H:%M:%S})",
                 r["key"]) for r in rows]

    def video_choices(self) -> list[tuple[str, str]]:
        """(file name, key) pairs for the "open a video" list: people see names, the page keeps keys."""
        return self._labels(self._videos())

    def video_name(self, key: str) -> str:
        """The file name of a video in the database."""
        with self.ctx.read() as s:
            return repo.get_video(s, key).name

    @contextmanager
    def named(self, key: str | None):
        """Messages of the review rules name the video by its file name, not by its key."""
        try:
            yield
        except ValidationError as err:
            text = str(err)
            if key and key in text:
                try:
                    text = text.replace(repr(key), repr(self.video_name(key))).replace(key, self.video_name(key))
                except ValidationError:
                    pass
            raise type(err)(text) from None

    def waiting_for(self, user: str) -> pd.DataFrame:
        """Corrections proposed by others that wait for a decision."""
        with self.ctx.read() as s:
            rows = [{"id": c.id, "video": c.video.name, "task": c.task.upper(),
                     "frames": f"{c.start_frame}-{c.end_frame}",
                     "seconds": seconds(c.start_frame, c.end_frame, c.video.fps),
                     "correction": correction_words(c.task, c.start_frame, c.end_frame, c.value, c.original),
                     "proposed by": c.reviewer.name, "note": c.note} for c in repo.waiting_for(s, user)]
        return pd.DataFrame(rows, columns=WAITING_COLUMNS)

    def flag(self, key, task, start, end, reason, note, user) -> int:
        def work(s):
            repo.get_or_create_reviewer(s, user)
            return repo.add_flag(s, key, task, start, end, reason, user, note=note).id
        with self.named(key):
            return self.ctx.write(work)

    def correct(self, key, task, start, end, value, note, user) -> int:
        def work(s):
            repo.get_or_create_reviewer(s, user)
            return repo.add_correction(s, key, task, start, end, value, user, note=note).id
        with self.named(key):
            return self.ctx.write(work)

    def decide(self, key: str | None, correction_id, accept: bool, comment: str, user: str) -> None:
        """Accept or reject a correction of the open video; every rule is checked before anything is written."""
        with self.named(key):
            self.ctx.write(lambda s: repo.decide_correction(s, correction_id, video=key, reviewer=user, accept=accept,
                                                            comment=comment or ""))

    def revise(self, key: str | None, correction_id, accept: bool, reason: str, user: str) -> None:
        with self.named(key):
            self.ctx.write(lambda s: repo.revise_decision(s, correction_id, video=key, reviewer=user, accept=accept,
                                                          reason=reason or ""))

    def flags(self, key: str) -> pd.DataFrame:
        """The video's flags, one sentence-like row each."""
        with self.ctx.read() as s:
            rows = [{"id": f.id, "task": f.task.upper(), "frames": f"{f.start_frame}-{f.end_frame}",
                     "seconds": seconds(f.start_frame, f.end_frame, f.video.fps), "reason": f.reason,
                     "note": f.note or "", "flagged by": f.reviewer.name, "resolution": f.resolution or "open",
                     "fixed by correction": f.resolved_by_correction_id,
                     "resolved by": f.resolved_by.name if f.resolved_by else "",
                     "resolution note": f.resolution_note or ""} for f in repo.list_flags(s, key)]
        return pd.DataFrame(rows, columns=FLAG_TABLE).astype({"fixed by correction": "Int64"})

    def resolve_flag(self, key: str | None, flag_id, resolution: str, correction_id, note: str, user: str) -> None:
        with self.named(key):
            self.ctx.write(lambda s: repo.resolve_flag(s, flag_id, video=key, reviewer=user, resolution=resolution,
                                                       correction_id=correction_id, note=note or ""))

    def agreement(self, video: OpenVideo, table: pd.DataFrame) -> tuple[pd.DataFrame, str]:
        """The open video's agreement figures (db.agreement) as one readable table, and a sentence when no
        two reviewers labelled the same frames. A model row names what it compares: the output as the page
        names it, its model, that model's weights (trained or untrained) and when the analysis ran; a
        reviewer row names the reviewers."""
        with self.ctx.read() as s:
            report = agreement_report(s, video.key, table)
        run, names = video.run, output_names(video.run)
        ran = run_time(run)
        rows = []

        def add(compared, task, scores, output="", model="", weights="", when=""):
            for measure, value in scores.items():
                if measure not in ("frames", "missing"):
                    rows.append({"compared": compared, "output": output, "model": model, "weights": weights,
                                 "run": when, "task": task.upper(), "measure": measure.replace("_", " "),
                                 "value": rounded(value), "frames": scores.get("frames"),
                                 "missing": scores.get("missing")})

        for output, stages in report.get("model", {}).items():
            card = run.outputs_from.get(output)
            model = run.models.get(card)
            weights = "" if model is None else f"{readable(model.source)}, " + (
                "untrained" if run.untrained_outputs().get(output) else "trained")
            for stage, scores in stages.items():
                add(f"model vs annotation, {stage} corrections", output if output in TASKS else "expr", scores,
                    names.get(output, output), label(card) if card else "", weights, ran)
        for name, counts in report["reviewers"].items():
            add(f"reviewer {name}", "all", {"share of own corrections accepted": counts.get("share_accepted"),
                                            "frames": counts.get("proposed")})
        for pair in report["pairs"]:
            for task in TASKS:
                if pair[task].get("frames"):
                    add(f"reviewer {pair['reviewers'][0]} vs reviewer {pair['reviewers'][1]}", task, pair[task])
        note = "" if report["pairs"] else ("No two reviewers labelled the same frames of this video: there is no "
                                           "reviewer-against-reviewer figure.")
        return pd.DataFrame(rows, columns=AGREEMENT_COLUMNS), note

    def corrected(self, video: OpenVideo) -> dict[str, list[tuple[int, int, int]]]:
        """Per task the runs of frames whose label an accepted correction set, as (first frame, last
        frame, correction id): what the timeline marks on the annotation rows."""
        if video.key is None:
            return {}
        out = {}
        for task, ids in self.labels.corrections(video.key, len(video.table)).items():
            values = ids.fillna(0).to_numpy(dtype=np.int64)
            edges = np.flatnonzero(np.diff(values, prepend=0, append=0))
            out[task] = [(int(a), int(b) - 1, int(values[a])) for a, b in zip(edges[:-1], edges[1:]) if values[a]]
        return out

    def frame_corrections(self, video: OpenVideo, frame: int) -> list[tuple[str, str]]:
        """(what, value) rows for "This frame": each label at the frame that an accepted correction set,
        "corrected by correction 1 (proposed by alice, accepted by bob), was Anger"."""
        if video.key is None:
            return []
        ids = self.labels.corrections(video.key, len(video.table))
        found = {task: int(ids.at[frame, task]) for task in ids if pd.notna(ids.at[frame, task])}
        if not found:
            return []
        rows = []
        with self.ctx.read() as s:
            by_id = {c.id: c for c in repo.list_corrections(s, video.key)}
            for task, correction_id in found.items():
                c = by_id[correction_id]
                at = frame - c.start_frame
                was = {k: v[at:at + 1] for k, v in (c.original or {}).items()}
                rows.append((f"{task.upper()} label", f"corrected by correction {c.id} (proposed by {c.reviewer.name}, "
                             f"accepted by {c.reviewed_by.name if c.reviewed_by else '?'}), was "
                             f"{original_words(task, c.value, was)}"))
        return rows

    def corrections(self, key: str) -> pd.DataFrame:
        """The video's newest HISTORY_PAGE corrections, each written as a sentence with label names ("AU12
        on, frames 100-150, was off")."""
        with self.ctx.read() as s:
            rows = [{"id": c.id, "task": c.task.upper(), "frames": f"{c.start_frame}-{c.end_frame}",
                     "seconds": seconds(c.start_frame, c.end_frame, c.video.fps),
                     "correction": correction_words(c.task, c.start_frame, c.end_frame, c.value, c.original),
                     "status": c.status, "proposed by": c.reviewer.name,
                     "decided by": c.reviewed_by.name if c.reviewed_by else "", "comment": c.decision_comment or "",
                     "note": c.note or ""} for c in repo.list_corrections(s, key, last=HISTORY_PAGE)]
        return pd.DataFrame(rows, columns=CORRECTION_TABLE)

    def history(self, key: str) -> pd.DataFrame:
        """The video's audit trail, each event a sentence: the newest HISTORY_PAGE events."""
        with self.ctx.read() as s:
            corrections = {c.id: c for c in repo.list_corrections(s, key)}
            flags = {f.id: f for f in repo.list_flags(s, key)}

            def subject(e):
                if e.correction_id:
                    c = corrections.get(e.correction_id)
                    return f"correction {e.correction_id}" + (f" ({c.task.upper()} frames {c.start_frame}-"
                                                              f"{c.end_frame})" if c else "")
                f = flags.get(e.flag_id)
                return f"flag {e.flag_id}" + (f" ({f.task.upper()} frames {f.start_frame}-{f.end_frame})" if f else "")

            rows = [{"at": e.created_at.strftime("%Y-%m-%d %H:%M:%S"), "reviewer": e.reviewer.name,
                     "action": e.action, "subject": subject(e),
                     "detail": event_words(e.action, e.detail, corrections.get(e.correction_id))}
                    for e in repo.history(s, video=key, last=HISTORY_PAGE)]
        return pd.DataFrame(rows, columns=list(HISTORY_COLUMNS))

    def export(self, key: str, out_dir: Path) -> list[Path]:
        """Corrections and flags with their audit trail (JSON), and the effective labels of every task
        with a stored annotation as Aff-Wild2 files (flagged frames written as invalid); the files are
        named after the video's file name."""
        out_dir.mkdir(parents=True, exist_ok=True)
        stem = re.sub(r"[^\w.-]+", "_", Path(self.video_name(key)).stem) or "video"
        with self.ctx.read() as s:
            paths = [export.export_corrections(s, out_dir / f"{stem}_corrections.json", key),
                     export.export_flags(s, out_dir / f"{stem}_flags.json", key)]
            for task in TASKS:
                if repo.latest_annotation_set(s, key, task) is not None:
                    paths.append(export.export_annotations(s, key, task, out_dir / f"{stem}_{task.upper()}.txt"))
        return paths

    def export_interop(self, key: str, out_dir: Path, media: str | None) -> tuple[list[Path], list[str]]:
        """The video for ELAN (.eaf, and its VA CSV when there is VA) and Label Studio (tasks JSON and
        labelling config), with notes (e.g. no stored analysis: no model tiers); db.interop.export_video."""
        with self.ctx.read() as s:
            files, notes = export_video(s, key, out_dir, data_dir=self.ctx.config.data_dir, media=media)
        return list(files.values()), notes

    # -- review queue -----------------------------------------------------------------------------------
    def review_queue(self, table: pd.DataFrame, run: RunInfo, key: str | None) -> pd.DataFrame:
        """Suspicious segments, most suspicious first (times and scores to 3 decimals); a model trained on
        this video's annotations marks its segments in-sample (core.review.trained_on)."""
        queue = suspicious_segments(table, frame_rate(table), in_sample=in_sample(run, key))
        for col in ("start_s", "end_s", "score"):
            queue[col] = queue[col].astype(float).round(DECIMALS)
        return queue

    @staticmethod
    def segment_labels(part: pd.DataFrame) -> pd.DataFrame:
        """Per-frame labels and predictions of a segment, readable (names instead of class indices)."""
        out = pd.DataFrame({FRAME: part[FRAME], TIME: part[TIME].round(DECIMALS), FACE: part[FACE]})
        for col in (VALENCE, gt(VALENCE), AROUSAL, gt(AROUSAL)):
            if col in part:
                out[col] = part[col].round(DECIMALS)
        for col in (EXPR, gt(EXPR)):
            if col in part:
                out[col] = [EXPRESSIONS[int(v)] if pd.notna(v) else "" for v in part[col]]
        for col, cols in (("AUs", AU_DECISIONS), ("gt_AUs", [gt(au) for au in AU_DECISIONS])):
            if all(c in part for c in cols):
                values = part[cols].to_numpy(dtype="float64", na_value=np.nan)
                out[col] = [" ".join(au for au, v in zip(AUS, row) if v == 1) for row in values]
        return out


def in_sample(run: RunInfo, key: str | None) -> bool | None:
    """Whether any model of the run was trained on this video's annotations: True when one says so,
    False when every one says not, None when a checkpoint's record does not say."""
    said = [trained_on(m.metadata, key) for m in run.models.values()] if key else [None]
    return True if True in said else (None if None in said else False)
