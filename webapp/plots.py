"""Plotly figures drawn from the per-frame predictions table (column names from core.table).

Every timeline shares one time axis (seconds), so a moment lines up across valence, arousal, the
expression strip and the AU heatmaps. Frames without a face are shaded grey over every row; stretches
where the face box was interpolated between detected frames (the table's box_detected, as the run
recorded it) are shaded amber behind the lines. A red cursor line marks the current
frame; the page's script (webapp/page.js) moves it (it finds the shape by CURSOR_NAME and reads the
frame rate from layout.meta).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from sklearn.metrics import confusion_matrix as sklearn_confusion_matrix

from core.labels import AUS, EXPRESSION_COLORS, EXPRESSIONS
from core.registry import output_label
from core.table import (AROUSAL, AU_DECISIONS, AU_PROBS, BOX_DETECTED, EXPR, FACE, FRAME, TIME, VALENCE, expr_outputs,
                        frame_rate, gt, output_expr, output_probs, prompt_output, prompt_set_of)

# Valence and arousal each have their own hue; the annotation is a darker shade, dashed.
LINE_STYLES = {
    (VALENCE, "prediction"): dict(color="#1f77b4", dash="solid"),
    (VALENCE, "annotation"): dict(color="#0b3c6b", dash="dash"),
    (AROUSAL, "prediction"): dict(color="#e6550d", dash="solid"),
    (AROUSAL, "annotation"): dict(color="#7f2704", dash="dash"),
}
FACELESS_COLOR = "rgba(90,90,90,0.28)"
INTERPOLATED_COLOR = "rgba(255,170,0,0.28)"
# No face: over every row (its values are not the face's). Box interpolated: behind the lines, as at the
# default cadence most of a video is read so and the lines stay legible over it.
SHADE_LAYERS = {"no face": "above", "box interpolated": "below"}
CURSOR_COLOR = "#e31a1c"
CORRECTED_COLOR = "#7b2cbf"     # the outline of labels an accepted correction set
CURSOR_NAME = "cursor"
ROW_GAP_PX = 38          # between rows: room for the row's title above it
AU_SCALES = {"AU probability": ("Blues", "p", None),
             "AU annotation": ("Greens", "", (["absent", "present"])),
             "AU disagreement": ("Reds", "", (["agree", "disagree"]))}


def _expression_colorscale() -> list[list]:
    """A stepped colour scale: value k in [k-0.5, k+0.5] gets EXPRESSION_COLORS[k]."""
    n = len(EXPRESSIONS)
    scale = []
    for k, color in enumerate(EXPRESSION_COLORS):
        scale += [[k / n, color], [(k + 1) / n, color]]
    return scale


def _as_float(series: pd.Series) -> np.ndarray:
    return pd.to_numeric(series, errors="coerce").astype("float64").to_numpy()


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Start and end (inclusive) positions of the runs of True in a boolean array."""
    padded = np.concatenate([[False], mask.astype(bool), [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return [(int(s), int(e) - 1) for s, e in zip(edges[::2], edges[1::2])]


def _frame_step(time_s: np.ndarray) -> float:
    steps = np.diff(time_s)
    return float(np.median(steps)) if steps.size else 1.0


def expression_rows(df: pd.DataFrame) -> list[tuple[str, str]]:
    """(row label, column) for each expression track in the table: prediction, CLIP sets, ground truth."""
    rows = []
    if EXPR in df:
        rows.append(("model", EXPR))
    rows += [(output_label(o, prompt_set=prompt_set_of(o)), output_expr(o)) for o in expr_outputs(df)]
    if gt(EXPR) in df:
        rows.append(("annotation", gt(EXPR)))
    return rows


def shaded_spans(df: pd.DataFrame) -> list[tuple[str, int, int]]:
    """(kind, first, last row position) of the spans shaded on the timeline: "no face" (predictions there
    are interpolated from the face frames around, or empty), and "box interpolated": face frames whose box
    was interpolated between two detected frames (box_detected False), one span across the detected frames
    of the cadence (MTCNN on every k-th frame: k-1 interpolated, 1 detected), so that a stretch read at the
    cadence is one span and a stretch where every frame was detected (the detections disagreed) is none."""
    spans = []
    if FACE in df:
        face = df[FACE].astype(bool).to_numpy()
        spans += [("no face", s, e) for s, e in _runs(~face)]
        if BOX_DETECTED in df:
            tracked = face & (df[BOX_DETECTED].astype("boolean").fillna(True).to_numpy() == False)  # noqa: E712
            merged: list[list[int]] = []
            for s, e in _runs(tracked):
                if merged and s - merged[-1][1] <= 2:          # one detected frame between: the cadence
                    merged[-1][1] = e
                else:
                    merged.append([s, e])
            spans += [("box interpolated", s, e) for s, e in merged]
    return spans


def timeline_figure(df: pd.DataFrame, title: str | None = None, frame: int | None = None,
                    total_frames: int | None = None, corrected: dict | None = None) -> go.Figure:
    """All per-frame tracks of one video on one shared time axis, with the cursor at `frame` (default:
    the first frame with a face). `total_frames`: the video's length when the table holds only its first
    frames (an analysis under way): the axis spans the whole video all the same. `corrected`: per task the
    (first frame, last frame, correction id) runs whose label an accepted correction set, outlined on that
    task's annotation rows (webapp.reviews.Reviews.corrected).

    Rows appear only for what the table holds: valence and arousal (prediction and ground truth),
    an expression strip (predictions above the annotation), AU probabilities, and with AU ground truth
    the annotated AUs and the disagreements between decisions and annotation. layout.meta carries the
    frame rate, the first timestamp and the frame count for the page's script.
    """
    t = _as_float(df[TIME])
    frames = df[FRAME].to_numpy()
    has_au_gt = all(gt(au) in df for au in AUS)
    rows: list[tuple[str, float]] = []  # (kind, relative height)
    rows += [(name, 1.0) for name in (VALENCE, AROUSAL) if name in df or gt(name) in df]
    expr_rows = expression_rows(df)
    if expr_rows:
        rows.append(("expression", 0.25 + 0.18 * len(expr_rows)))
    if all(c in df for c in AU_PROBS):
        rows.append(("AU probability", 1.4))
    if has_au_gt:
        rows += [("AU annotation", 1.4)]
        if all(au in df for au in AU_DECISIONS):
            rows.append(("AU disagreement", 1.4))
    if not rows:
        raise ValueError("the table has no prediction or annotation columns to plot")

    plot_px = 150 * sum(h for _, h in rows)
    height = int(plot_px + 170 + ROW_GAP_PX * (len(rows) - 1))
    fig = make_subplots(
        rows=len(rows), cols=1, shared_xaxes=True, vertical_spacing=ROW_GAP_PX / (plot_px + ROW_GAP_PX * len(rows)),
        row_heights=[h for _, h in rows], subplot_titles=[kind for kind, _ in rows],
    )
    for r, (kind, _) in enumerate(rows, start=1):
        if kind in (VALENCE, AROUSAL):
            _add_va_row(fig, df, kind, t, frames, r)
        elif kind == "expression":
            _add_expression_row(fig, df, expr_rows, t, frames, r)
        else:
            _add_au_row(fig, df, kind, t, frames, r)
    for annotation in fig.layout.annotations:      # row titles: left, just above their row
        annotation.update(x=0, xanchor="left", font=dict(size=13))

    step = _frame_step(t)
    colors = {"no face": FACELESS_COLOR, "box interpolated": INTERPOLATED_COLOR}
    spans = shaded_spans(df)
    # One shape per span over every row (x shared, y the whole plot), set at once: plotly's add_vrect
    # re-validates every earlier shape on each call, minutes for a few hundred spans.
    fig.update_layout(shapes=[*fig.layout.shapes, *(
        dict(type="rect", xref="x", yref="paper", x0=t[start] - step / 2, x1=t[end] + step / 2, y0=0, y1=1,
             fillcolor=colors[kind], line_width=0, layer=SHADE_LAYERS[kind]) for kind, start, end in spans)])
    for kind in sorted({kind for kind, _, _ in spans}):      # a legend entry per shading
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=f"{kind} (shaded)",
                                 marker=dict(color=colors[kind], size=12, symbol="square"), hoverinfo="skip",
                                 ), row=1, col=1)
    _mark_corrected(fig, rows, corrected or {}, t, frames, step)
    if frame is None:
        faces = np.flatnonzero(df[FACE].astype(bool).to_numpy()) if FACE in df else []
        frame = int(frames[faces[0]]) if len(faces) else int(frames[0])
    at = float(t[np.searchsorted(frames, frame).clip(0, len(t) - 1)])
    fig.add_shape(type="line", name=CURSOR_NAME, x0=at, x1=at, xref="x", yref="paper", y0=0, y1=1,
                  line=dict(color=CURSOR_COLOR, width=2), layer="above")
    fig.update_xaxes(title_text="time (s)", row=len(rows), col=1)
    if total_frames and len(t):
        fig.update_xaxes(range=[float(t[0]) - step / 2, float(t[0]) + (total_frames - 0.5) / frame_rate(df)])
    fig.update_xaxes(ticksuffix=" s", hoverformat=".2f", showspikes=False,
                     unifiedhovertitle=dict(text="%{x:.2f} s"))
    top = 52 if title else 26         # the title first, then the legend (about three lines) above the rows
    fig.update_layout(
        title=dict(text=title, x=0.01, xanchor="left", y=1 - 24 / height, yanchor="top", yref="container"),
        height=height, hovermode="x unified", clickmode="event",
        margin=dict(l=70, r=90, t=top + 86, b=40),
        legend=dict(orientation="h", yanchor="top", y=1 - top / height, yref="container", x=0, xanchor="left",
                    tracegroupgap=0),
        meta={"fps": frame_rate(df), "t0": float(t[0]) if len(t) else 0.0, "frames": int(len(df)),
              "first_frame": int(frames[0]) if len(frames) else 0},
    )
    return fig


def _mark_corrected(fig, rows, corrected: dict, t, frames, step):
    """An outline named "corrected <task> <id>" around the corrected frames on each annotation row of
    their task (VA: the valence and arousal rows; EXPR: the annotation line of the expression strip; AU:
    the AU annotation row), labelled with the correction's id, and one legend entry."""
    where = {"va": [(r, None) for r, (kind, _) in enumerate(rows, 1) if kind in (VALENCE, AROUSAL)],
             "expr": [(r, (-0.5, 0.5)) for r, (kind, _) in enumerate(rows, 1) if kind == "expression"],
             "au": [(r, None) for r, (kind, _) in enumerate(rows, 1) if kind == "AU annotation"]}
    shapes = []
    for task, runs in corrected.items():
        for row, span in where.get(task, []):
            axis = "" if row == 1 else row
            for first, last, correction in runs:
                if last < frames[0] or first > frames[-1]:         # outside the frames drawn (a segment)
                    continue
                a, b = np.searchsorted(frames, [max(first, frames[0]), min(last, frames[-1])])
                y0, y1 = span or (0, 1)
                shapes.append(dict(type="rect", name=f"corrected {task} {correction}", xref=f"x{axis}",
                                   yref=f"y{axis}" + ("" if span else " domain"), x0=t[a] - step / 2,
                                   x1=t[b] + step / 2, y0=y0, y1=y1, line=dict(color=CORRECTED_COLOR, width=2),
                                   fillcolor="rgba(0,0,0,0)", layer="above",
                                   label=dict(text=f"correction {correction}", textposition="top left",
                                              font=dict(size=10, color=CORRECTED_COLOR))))
    if shapes:
        fig.update_layout(shapes=[*fig.layout.shapes, *shapes])
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name="corrected label (outlined)",
                                 marker=dict(color="rgba(0,0,0,0)", size=12, symbol="square",
                                             line=dict(color=CORRECTED_COLOR, width=2)), hoverinfo="skip"),
                      row=1, col=1)


def _add_va_row(fig, df, name, t, frames, row):
    for col, label in ((name, "prediction"), (gt(name), "annotation")):
        if col in df:
            fig.add_trace(go.Scatter(
                x=t, y=_as_float(df[col]), customdata=frames, mode="lines", name=f"{name} {label}",
                line=dict(width=2, **LINE_STYLES[(name, label)]),
                hovertemplate=f"{name} {label}: %{{y:.3f}} (frame %{{customdata}})<extra></extra>",
            ), row=row, col=1)
    fig.update_yaxes(range=[-1.05, 1.05], title_text=name, row=row, col=1)


def _add_expression_row(fig, df, expr_rows, t, frames, row):
    labels = [label for label, _ in expr_rows][::-1]  # first row (the model) drawn on top
    z = np.vstack([_as_float(df[col]) for _, col in expr_rows][::-1])
    names = np.array(list(EXPRESSIONS) + ["-"])
    text = names[np.where(np.isnan(z), len(EXPRESSIONS), np.nan_to_num(z, nan=0)).astype(int)]
    fig.add_trace(go.Heatmap(
        x=t, y=labels, z=z, text=text, customdata=np.broadcast_to(frames, z.shape),
        zmin=-0.5, zmax=len(EXPRESSIONS) - 0.5, colorscale=_expression_colorscale(), showscale=False,
        hovertemplate="%{y}: %{text} (frame %{customdata})<extra></extra>", name="expression",
    ), row=row, col=1)
    # A legend for the colours: one invisible marker per class.
    for name, color in zip(EXPRESSIONS, EXPRESSION_COLORS):
        fig.add_trace(go.Scatter(
            x=[None], y=[None], mode="markers", marker=dict(color=color, size=10, symbol="square"),
            name=name, showlegend=True, hoverinfo="skip",
        ), row=row, col=1)


def _add_au_row(fig, df, kind, t, frames, row):
    if kind == "AU probability":
        z = np.vstack([_as_float(df[c]) for c in AU_PROBS])
        fmt = "%{z:.3f}"
    elif kind == "AU annotation":
        z = np.vstack([_as_float(df[gt(au)]) for au in AUS])
        fmt = "%{z:.0f}"
    else:  # decision != annotation; invalid annotation stays blank
        z = np.vstack([np.abs(_as_float(df[au]) - _as_float(df[gt(au)])) for au in AUS])
        fmt = "%{z:.0f}"
    scale, title, ticks = AU_SCALES[kind]
    domain = fig.get_subplot(row, 1).yaxis.domain           # the colour bar stands beside its own row
    colorbar = dict(title=dict(text=title, side="right"), thickness=12, x=1.01, xanchor="left",
                    y=(domain[0] + domain[1]) / 2, len=domain[1] - domain[0], yanchor="middle")
    if ticks:
        colorbar.update(tickvals=[0, 1], ticktext=ticks)
    fig.add_trace(go.Heatmap(
        x=t, y=list(AUS), z=z, zmin=0.0, zmax=1.0, colorscale=scale, showscale=True, colorbar=colorbar,
        customdata=np.broadcast_to(frames, z.shape), name=kind,
        hovertemplate=f"%{{y}} {kind}: {fmt} (frame %{{customdata}})<extra></extra>",
    ), row=row, col=1)
    if np.isnan(z).all():          # a blank panel says why it is blank
        why = {"AU probability": "no AU predictions: the models that ran have no AU head",
               "AU annotation": "no AU annotation for these frames"}.get(
            kind, "no frame with both a decision and an annotation")
        fig.add_annotation(text=why, showarrow=False, font=dict(size=13), xref="x domain", yref="y domain", x=0.5,
                           y=0.5, row=row, col=1)


def confusion_matrix(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """8x8 counts, rows = annotation, columns = prediction; frames where either is missing or invalid are
    skipped (scikit-learn refuses NaN, and refuses an empty input where the page shows zeros)."""
    pred = np.asarray(pd.to_numeric(pd.Series(pred), errors="coerce"), dtype="float64")
    gt = np.asarray(pd.to_numeric(pd.Series(gt), errors="coerce"), dtype="float64")
    ok = ~np.isnan(pred) & ~np.isnan(gt) & (gt >= 0) & (pred >= 0)
    n = len(EXPRESSIONS)
    if not ok.any():
        return np.zeros((n, n), dtype=int)
    return sklearn_confusion_matrix(gt[ok].astype(int), pred[ok].astype(int), labels=np.arange(n))


def confusion_figure(pred, gt, title: str) -> go.Figure:
    counts = confusion_matrix(pred, gt)
    fig = go.Figure(go.Heatmap(
        z=counts, x=list(EXPRESSIONS), y=list(EXPRESSIONS), text=counts, texttemplate="%{text}",
        colorscale="Blues", showscale=False,
        hovertemplate="annotation %{y}<br>predicted %{x}<br>%{z} frames<extra></extra>",
    ))
    fig.update_layout(
        title=title, height=420, margin=dict(l=90, r=20, t=50, b=80),
        xaxis_title="predicted", yaxis_title="annotation", yaxis_autorange="reversed",
    )
    return fig


def prompt_probabilities_figure(df: pd.DataFrame, set_names: list[str]) -> go.Figure:
    """Per-frame class probabilities of several CLIP prompt sets, one row each, on one time axis."""
    t = _as_float(df[TIME])
    fig = make_subplots(rows=len(set_names), cols=1, shared_xaxes=True, vertical_spacing=0.06,
                        subplot_titles=[f"prompt set {name}" for name in set_names])
    for r, name in enumerate(set_names, start=1):
        for expr, color, col in zip(EXPRESSIONS, EXPRESSION_COLORS, output_probs(prompt_output(name))):
            fig.add_trace(go.Scatter(
                x=t, y=_as_float(df[col]), mode="lines", name=expr,
                line=dict(color=color, width=1.2), legendgroup=expr, showlegend=r == 1,
                hovertemplate=f"{name} {expr}: %{{y:.3f}}<extra></extra>",
            ), row=r, col=1)
        fig.update_yaxes(range=[0, 1], title_text="p", row=r, col=1)
    fig.update_xaxes(title_text="time (s)", row=len(set_names), col=1)
    fig.update_layout(height=120 + 220 * len(set_names), hovermode="x unified",
                      margin=dict(l=60, r=20, t=50, b=40))
    return fig
