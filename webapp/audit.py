"""The annotation audit's dataset queue for the page: suggestions of all videos from the newest audit run
(python -m training audit), best first; one suggestion's stretch with the annotation beside the
out-of-fold prediction; a reviewer's confirm (a flag, optionally a proposed correction with the
suggested label) or dismiss; how far the team is, with the estimate of how much is wrongly annotated.
No Gradio here: the repo's audit calls (db/repo/audit.py) in the page's words."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from sqlalchemy import select

from core.affwild2 import LABEL_COLUMNS
from core.audit import oof_frames
from core.audit_sample import CLEAN, estimate
from core.labels import AUS, EXPRESSIONS, VA_NAMES
from core.table import AU_PROBS, EXPR_PROBS
from db import repo
from db.models import AuditSuggestion
from webapp.context import Context
from webapp.inputs import InputError, whole
from webapp.results import DECIMALS
from webapp.reviews import seconds, value_words

QUEUE_COLUMNS = ["id", "video", "task", "kind", "frames", "seconds", "score", "suggested", "detail"]
BEST_FIRST, RANDOM_SAMPLE = "best first", "random sample"
QUEUE_PAGE = 200            # suggestions listed at once, best first
CONTEXT_S = 2.0             # seconds shown either side of a suggested stretch
ALL = "all"
NO_RUN = ("No audit run in the database yet: press \"Audit this dataset\" on the Models tab (or run "
          "`python -m training audit`).")


@dataclass(frozen=True)
class Stretch:
    """One suggestion opened: where it is, and its frames' annotation beside the out-of-fold prediction."""

    id: int
    key: str                    # the video's database key
    name: str
    task: str
    start: int
    end: int
    table: pd.DataFrame         # frame, time_s, annotation and out-of-fold columns of the stretch and its context
    figure: go.Figure
    words: str


def _filters(task: str | None, kind: str | None) -> dict:
    return {"task": None if task in (None, "", ALL) else task, "kind": None if kind in (None, "", ALL) else kind}


class Audit:
    def __init__(self, ctx: Context):
        self.ctx = ctx

    def queue(self, task: str | None, kind: str | None, order: str = BEST_FIRST) -> tuple[pd.DataFrame, list[str], str]:
        """(open suggestions under the filters -- best first, or the random sample's in random order --, the
        kinds the run found, what the scores mean and the progress with the random-sample estimate)."""
        with self.ctx.read() as s:
            run = repo.latest_audit_run(s)
            if run is None:
                return pd.DataFrame(columns=QUEUE_COLUMNS), [], NO_RUN
            sample = repo.sample_units(s)
            if order == RANDOM_SAMPLE:
                ids = sample.loc[sample["status"] == "open", "id"].dropna().astype(int).tolist()
                ids = [ids[i] for i in np.random.default_rng(run.id).permutation(len(ids))]
                picked = {x.id: x for x in s.scalars(select(AuditSuggestion).where(AuditSuggestion.id.in_(ids)))}
                f = _filters(task, kind)
                listed = [picked[i] for i in ids if f["task"] in (None, picked[i].task)
                          and f["kind"] in (None, picked[i].kind)][:QUEUE_PAGE]
            else:
                listed = [x for x in repo.list_suggestions(s, **_filters(task, kind), limit=QUEUE_PAGE)
                          if x.kind != CLEAN or kind == CLEAN]      # drawn clean stretches: the sample's order
            rows = [{"id": x.id, "video": x.video.name or x.video.key, "task": x.task, "kind": x.kind,
                     "frames": f"{x.start_frame}-{x.end_frame}",
                     "seconds": seconds(x.start_frame, x.end_frame, x.video.fps),
                     "score": round(x.score, DECIMALS), "suggested": _suggested(x),
                     "detail": x.detail} for x in listed]
            kinds = sorted(s.scalars(select(AuditSuggestion.kind).distinct().where(AuditSuggestion.run_id == run.id)))
            progress = repo.audit_progress(s, **_filters(task, kind))
            words = " ".join([calibration_words(run.settings.get("calibration")), progress_words(progress),
                              sample_words(sample, (run.settings.get("sample") or {}).get("frames") or {})])
        return pd.DataFrame(rows, columns=QUEUE_COLUMNS), kinds, words

    def open(self, suggestion_id) -> Stretch:
        """A suggestion's stretch with CONTEXT_S either side: the video's effective annotation of the task
        and the audit's out-of-fold prediction, frame by frame."""
        sid = whole(suggestion_id, "suggestion id", 1)
        with self.ctx.read() as s:
            x = s.get(AuditSuggestion, sid)
            if x is None:
                raise InputError(f"No audit suggestion {sid}: refresh the dataset queue.")
            video, task, out = x.video, x.task, x.run.settings.get("out")
            context = round(CONTEXT_S * video.fps)
            lo, hi = max(0, x.start_frame - context), min(video.frame_count - 1, x.end_frame + context)
            labels = repo.effective_labels(s, video.key, task)[LABEL_COLUMNS[task]].iloc[lo:hi + 1]
            stretch = dict(id=x.id, key=video.key, name=video.name or video.key, task=task, start=x.start_frame,
                           end=x.end_frame)
            words = (f"Suggestion {x.id}: {task.upper()} frames {x.start_frame}-{x.end_frame} of "
                     f"**{stretch['name']}**, {x.kind} (score {x.score:.3f}): {x.detail}."
                     + (f" Suggested: {_suggested(x)}." if x.suggested else ""))
            fps = video.fps
        table = pd.DataFrame({"frame": np.arange(lo, hi + 1)})
        table["time_s"] = (table["frame"] / fps).round(DECIMALS)
        table = table.join(annotation_columns(task, labels).set_axis(table.index))
        try:
            oof = oof_frames(out, stretch["key"]) if out else None
        except FileNotFoundError:
            oof = None
        if oof is None or oof.empty:
            words += " The audit's out-of-fold predictions of this video are not on this server: only the annotation."
        else:
            table = table.merge(prediction_columns(task, oof), on="frame", how="left")
        return Stretch(**stretch, table=table, figure=stretch_figure(table, stretch["start"], stretch["end"]),
                       words=words)

    def confirm(self, suggestion_id, user: str, note: str, propose: bool) -> str:
        sid = whole(suggestion_id, "suggestion id", 1)
        return self.ctx.write(lambda s: _said(repo.confirm_suggestion(s, sid, reviewer=user, note=note or "",
                                                                      propose_correction=bool(propose))))

    def dismiss(self, suggestion_id, user: str, note: str) -> str:
        sid = whole(suggestion_id, "suggestion id", 1)
        return self.ctx.write(lambda s: _said(repo.dismiss_suggestion(s, sid, reviewer=user, note=note or "")))


def _suggested(x: AuditSuggestion) -> str:
    """The suggested label in words ("" for a drawn clean stretch, which suggests none)."""
    return value_words(x.task, x.suggested) if x.suggested else ""


def _said(x: AuditSuggestion) -> str:
    """A decided suggestion in words (made inside the write, while its rows are at hand)."""
    if x.status == "dismissed":
        return f"Suggestion {x.id} dismissed by {x.reviewed_by.name}: the annotation stays as it is."
    words = f"Suggestion {x.id} confirmed by {x.reviewed_by.name}: flag {x.flag_id}"
    if x.correction_id is not None:
        words += f" and proposed correction {x.correction_id} (a second reviewer accepts or rejects it)"
    return words + "."


def calibration_words(cal: dict | None) -> str:
    """What a score means, from the run's calibration (core/audit_calibration.py)."""
    if not cal:
        return "This run's scores are not calibrated (made by an older AffectLens): rank only."
    if cal.get("expected_precision") is None:
        return (f"Scores are the estimated probability that a stretch is wrongly annotated, calibrated on "
                f"{cal['plants']} errors planted into a copy of your videos' labels; no score reached a threshold "
                "with under 1 false alarm per 10 clean minutes there, so none is recommended.")
    recall = ", ".join(f"{k} {v:.0%}" for k, v in cal["recall"].items())
    return (f"Scores are the estimated probability that a stretch is wrongly annotated, calibrated on "
            f"{cal['plants']} errors planted into a copy of your videos' labels. From the default threshold "
            f"**{cal['threshold']:.2f}**: expected precision **{cal['expected_precision']:.0%}**, "
            f"{cal['false_alarms_per_10_min']:.2f} false alarms per 10 clean minutes; found there of the "
            f"planted errors: {recall}.")


def progress_words(p: dict) -> str:
    """How far the team is."""
    return (f"Reviewed **{p['reviewed']} of {p['total']}** suggestions ({p['confirmed']} confirmed, "
            f"{p['dismissed']} dismissed).")


def sample_words(sample: pd.DataFrame, frames: dict) -> str:
    """The random sample's progress and, once every stratum has a review, the stratified Horvitz-Thompson
    estimate of wrongly annotated frames (core/audit_sample.py); best-first reviews do not enter it unless
    the unit was drawn."""
    if sample.empty:
        return "This run drew no random sample: no estimate of the dataset's wrong annotation."
    decided = sample[sample["status"].isin(["confirmed", "dismissed"])]
    words = (f"Random sample for the estimate: **{len(decided)} of {len(sample)}** reviewed (choose the order "
             "'random sample').")
    wrong = pd.Series(np.where(decided["status"] == "confirmed", decided["own_frames"], 0), index=decided.index,
                      dtype=float)
    found = estimate(sample, wrong, frames)
    parts = [f"{task.upper()} {e['wrong']:.0f} of {e['frames']} frames ({e['low']:.0f}-{e['high']:.0f})"
             for task, e in found.items() if task != "all" and e["wrong"] is not None]
    if not parts:
        return words + " No estimate yet: every score band needs a review."
    return words + " Estimated wrongly annotated (95% interval): " + "; ".join(parts) + "."


def annotation_columns(task: str, labels: pd.DataFrame) -> pd.DataFrame:
    """The annotation of a stretch, readable: VA values, the expression's name, the AUs on."""
    if task == "va":
        return labels.rename(columns=lambda c: f"annotated {c}").astype("float64").round(DECIMALS)
    if task == "expr":
        return pd.DataFrame({"annotated": [EXPRESSIONS[int(v)] if pd.notna(v) else "" for v in labels.iloc[:, 0]]})
    values = labels.to_numpy(dtype="float64", na_value=np.nan)
    return pd.DataFrame({"annotated AUs": [" ".join(au for au, v in zip(AUS, row) if v == 1) for row in values]})


def prediction_columns(task: str, oof: pd.DataFrame) -> pd.DataFrame:
    """The out-of-fold prediction of a stretch, readable, by frame (with the fold it was held out in)."""
    out = oof[["frame", "fold"]].copy()
    if task == "va":
        for col in VA_NAMES:
            out[f"out-of-fold {col}"] = oof[col].round(DECIMALS)
    elif task == "expr":
        probs = oof[EXPR_PROBS].to_numpy()
        out["out-of-fold"] = [EXPRESSIONS[i] for i in probs.argmax(axis=1)]
        out["p"] = probs.max(axis=1).round(DECIMALS)
    else:
        probs = oof[AU_PROBS].to_numpy()
        out["out-of-fold AUs"] = [" ".join(au for au, p in zip(AUS, row) if p >= 0.5) for row in probs]
    return out


def stretch_figure(table: pd.DataFrame, start: int, end: int) -> go.Figure:
    """The annotation against the out-of-fold prediction over the stretch (shaded) and its context."""
    fig = go.Figure()
    categorical = {"annotated": EXPRESSIONS, "out-of-fold": EXPRESSIONS}
    for col in table.columns:
        if col in ("frame", "time_s", "fold", "p"):
            continue
        if col in categorical:
            y = [categorical[col].index(v) if v in categorical[col] else None for v in table[col]]
        elif col.endswith("AUs"):
            y = [len(v.split()) if isinstance(v, str) else None for v in table[col]]
            col = f"{col} (count on)"
        else:
            y = table[col]
        fig.add_trace(go.Scatter(x=table["frame"], y=y, mode="lines", name=col, line_shape="hv"))
    fig.add_vrect(x0=start - 0.5, x1=end + 0.5, fillcolor="orange", opacity=0.15, line_width=0)
    if "annotated" in table:
        fig.update_yaxes(tickvals=list(range(len(EXPRESSIONS))), ticktext=list(EXPRESSIONS))
    fig.update_layout(height=260, margin=dict(l=40, r=10, t=10, b=30), xaxis_title="frame",
                      legend=dict(orientation="h"))
    return fig
