"""Plotly figures drawn from the per-frame predictions table (column names as in the team contract).

Every timeline shares one time axis (seconds), so a moment lines up across valence, arousal, the
expression strip and the AU heatmaps. Frames without a face are shaded grey in every row.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from sklearn.metrics import confusion_matrix as sklearn_confusion_matrix

from core.labels import AUS, EXPRESSION_COLORS, EXPRESSIONS

PRED_COLOR = "#1f77b4"
GT_COLOR = "#2ca02c"
FACELESS_COLOR = "rgba(120,120,120,0.25)"


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
    if "expr" in df:
        rows.append(("model", "expr"))
    for col in df.columns:
        if col.startswith("clip_") and col.endswith("_expr"):
            rows.append((f"CLIP {col[len('clip_'):-len('_expr')]}", col))
    if "gt_expr" in df:
        rows.append(("annotation", "gt_expr"))
    return rows


def timeline_figure(df: pd.DataFrame, title: str | None = None) -> go.Figure:
    """All per-frame tracks of one video on one shared time axis.

    Rows appear only for what the table holds: valence and arousal (prediction and ground truth),
    an expression strip (predictions above the annotation), AU probabilities, and with AU ground truth
    the annotated AUs and the disagreements between decisions and annotation.
    """
    t = _as_float(df["time_s"])
    frames = df["frame"].to_numpy()
    has_au_gt = all(f"gt_{au}" in df for au in AUS)
    rows: list[tuple[str, float]] = []  # (kind, relative height)
    rows += [(name, 1.0) for name in ("valence", "arousal") if name in df or f"gt_{name}" in df]
    expr_rows = expression_rows(df)
    if expr_rows:
        rows.append(("expression", 0.25 + 0.18 * len(expr_rows)))
    if all(f"p_{au}" in df for au in AUS):
        rows.append(("AU probability", 1.4))
    if has_au_gt:
        rows += [("AU annotation", 1.4)]
        if all(au in df for au in AUS):
            rows.append(("AU disagreement", 1.4))
    if not rows:
        raise ValueError("the table has no prediction or annotation columns to plot")

    fig = make_subplots(
        rows=len(rows), cols=1, shared_xaxes=True, vertical_spacing=0.03,
        row_heights=[h for _, h in rows], subplot_titles=[kind for kind, _ in rows],
    )
    for r, (kind, _) in enumerate(rows, start=1):
        if kind in ("valence", "arousal"):
            _add_va_row(fig, df, kind, t, frames, r)
        elif kind == "expression":
            _add_expression_row(fig, df, expr_rows, t, frames, r)
        else:
            _add_au_row(fig, df, kind, t, frames, r)

    if "face" in df:
        step = _frame_step(t)
        for start, end in _runs(~df["face"].astype(bool).to_numpy()):
            fig.add_vrect(
                x0=t[start] - step / 2, x1=t[end] + step / 2, fillcolor=FACELESS_COLOR,
                line_width=0, layer="below", row="all", col=1,
            )
    fig.update_xaxes(title_text="time (s)", row=len(rows), col=1)
    fig.update_layout(
        title=title, height=180 + 150 * sum(h for _, h in rows), hovermode="x unified",
        margin=dict(l=70, r=20, t=60 if title else 30, b=40),
        legend=dict(yanchor="top", y=1.0, x=1.01, tracegroupgap=4),
    )
    return fig


def _add_va_row(fig, df, name, t, frames, row):
    for col, label, color, dash in ((name, "prediction", PRED_COLOR, None),
                                    (f"gt_{name}", "annotation", GT_COLOR, "dot")):
        if col in df:
            fig.add_trace(go.Scatter(
                x=t, y=_as_float(df[col]), customdata=frames, mode="lines",
                name=f"{name} {label}", line=dict(color=color, dash=dash, width=1.5),
                hovertemplate=f"{name} {label}: %{{y:.2f}}<br>frame %{{customdata}}<extra></extra>",
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
        hovertemplate="%{y}: %{text}<br>frame %{customdata}<extra></extra>", name="expression",
    ), row=row, col=1)
    # A legend for the colours: one invisible marker per class.
    for name, color in zip(EXPRESSIONS, EXPRESSION_COLORS):
        fig.add_trace(go.Scatter(
            x=[None], y=[None], mode="markers", marker=dict(color=color, size=10, symbol="square"),
            name=name, legendgroup="expressions", showlegend=True, hoverinfo="skip",
        ), row=row, col=1)


def _add_au_row(fig, df, kind, t, frames, row):
    if kind == "AU probability":
        z = np.vstack([_as_float(df[f"p_{au}"]) for au in AUS])
        scale, zmax, fmt = "Blues", 1.0, "%{z:.2f}"
    elif kind == "AU annotation":
        z = np.vstack([_as_float(df[f"gt_{au}"]) for au in AUS])
        scale, zmax, fmt = "Greens", 1.0, "%{z:.0f}"
    else:  # decision != annotation; invalid annotation stays blank
        z = np.vstack([np.abs(_as_float(df[au]) - _as_float(df[f"gt_{au}"])) for au in AUS])
        scale, zmax, fmt = "Reds", 1.0, "%{z:.0f}"
    fig.add_trace(go.Heatmap(
        x=t, y=list(AUS), z=z, zmin=0.0, zmax=zmax, colorscale=scale, showscale=False,
        customdata=np.broadcast_to(frames, z.shape), name=kind,
        hovertemplate=f"%{{y}} {kind}: {fmt}<br>frame %{{customdata}}<extra></extra>",
    ), row=row, col=1)


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
    t = _as_float(df["time_s"])
    fig = make_subplots(rows=len(set_names), cols=1, shared_xaxes=True, vertical_spacing=0.06,
                        subplot_titles=[f"prompt set {name}" for name in set_names])
    for r, name in enumerate(set_names, start=1):
        for expr, color in zip(EXPRESSIONS, EXPRESSION_COLORS):
            fig.add_trace(go.Scatter(
                x=t, y=_as_float(df[f"clip_{name}_p_{expr}"]), mode="lines", name=expr,
                line=dict(color=color, width=1.2), legendgroup=expr, showlegend=r == 1,
                hovertemplate=f"{name} {expr}: %{{y:.2f}}<extra></extra>",
            ), row=r, col=1)
        fig.update_yaxes(range=[0, 1], title_text="p", row=r, col=1)
    fig.update_xaxes(title_text="time (s)", row=len(set_names), col=1)
    fig.update_layout(height=120 + 220 * len(set_names), hovermode="x unified",
                      margin=dict(l=60, r=20, t=50, b=40))
    return fig
