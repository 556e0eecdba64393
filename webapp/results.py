"""Shape a predictions table for people: ground truth beside it, ABAW metrics, files to download.

No Gradio here: these functions take and return tables and paths, so tests call them directly.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from core import metrics
from core.labels import AUS, EXPRESSIONS
from core.analysis import Analysis, ModelRun, RunInfo
from core.registry import output_label
from core.table import (AROUSAL, AU_DECISIONS, BOX_DETECTED, EXPR, FACE, FILLED, FRAME, TIME, VALENCE, expr_outputs,
                        gt, output_expr, output_probs, prompt_output, prompt_set_of, write_submissions)

DECIMALS = 3          # every number a table on the page shows is rounded to this
NA = "n/a"            # a figure that could not be computed (no prediction to score)


def rounded(value) -> float | None:
    """A number for a table: DECIMALS places, no "-0.0", None for a missing value."""
    if value is None or pd.isna(value):
        return None
    return round(float(value), DECIMALS) + 0.0


def output_names(run: RunInfo | None) -> dict[str, str]:
    """Output (va, expr, au, prompt sets', the CLIP models' own) -> how the page names it (core.registry),
    marked "(untrained)" when it comes from random weights."""
    names = {}
    for output, card in (run.outputs_from if run else {}).items():
        label = output_label(output, card, prompt_set_of(output))
        names[output] = f"{label} (untrained)" if run.untrained_outputs()[output] else label
    return names


METRICS_COLUMNS = ["output", "metric", "value", "frames", "missing"]
PROMPT_F1_COLUMNS = ["prompt set", "P_EXPR (F1, 8 classes)", "missing"]


def metrics_table(df: pd.DataFrame, run: RunInfo | None = None) -> pd.DataFrame:
    """ABAW metrics of every output in the table against its gt_ columns (core.metrics.score_table; rows:
    output, metric, value ("n/a" when nothing could be scored, e.g. a model without that head), frames:
    annotated frames, missing: those of them without a prediction, left out of the value); outputs are
    named by output_names(run), and P_AU says at which thresholds its decisions were made. Empty when the
    table has no ground truth."""
    names = output_names(run)
    au = f"P_AU (F1 at {metrics.au_policy(run.au_thresholds)})" if run else "P_AU (F1)"
    labels = {"va": [("ccc_valence", "CCC valence"), ("ccc_arousal", "CCC arousal"), ("p_va", "P_VA")],
              "expr": [("p_expr", "P_EXPR (F1, 8 classes)")], "au": [("p_au", au)]}
    rows = [{"output": names.get(output, output), "metric": label, "value": NA if s.values[key] is None
             else rounded(s.values[key]), "frames": s.frames, "missing": s.missing}
            for output, s in metrics.score_table(df).items() for key, label in labels[s.task]]
    return pd.DataFrame(rows, columns=METRICS_COLUMNS)


def prompt_f1_table(df: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """P_EXPR of each CLIP prompt set's output against gt_expr (None without annotation, "n/a" when
    nothing could be scored), and how many annotated frames had no prediction (no face) and were left out."""
    scores = metrics.score_table(df, tasks=("expr",))
    found = [scores.get(prompt_output(n)) for n in names]
    return pd.DataFrame({"prompt set": names,
                         "P_EXPR (F1, 8 classes)": [None if s is None else NA if s.main is None else rounded(s.main)
                                                    for s in found],
                         "missing": [s.missing if s else None for s in found]},
                        columns=PROMPT_F1_COLUMNS)


def write_downloads(analysis: Analysis, video: str, out_dir: Path) -> list[Path]:
    """The predictions table as CSV (with its `untrained` column), the run metadata as JSON beside it,
    and one ABAW submission file per task the table holds."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{video}_predictions.csv", out_dir / f"{video}_run.json"]
    analysis.export_table().to_csv(paths[0], index=False)
    paths[1].write_text(analysis.run_json())
    return paths + write_submissions({video: analysis.table}, out_dir, name=f"{video}_{{TASK}}_submission.txt")


BOX_KINDS = {True: "detected (MTCNN ran on this frame)", False: "interpolated between detected frames"}


FRAME_COLUMNS = ("what", "value")


def frame_summary(df: pd.DataFrame, frame: int, faceless: str | None = None,
                  corrections: list[tuple[str, str]] = ()) -> pd.DataFrame:
    """One frame's predictions and labels as a two-column table (what, value) for the page; `faceless`:
    how the run filled frames without a face (its run metadata's faceless_predictions), said on such a frame;
    `corrections`: (what, value) rows saying which accepted correction set a label here and what it was."""
    row = df.loc[df[FRAME] == frame]
    if row.empty:
        raise ValueError(f"frame {frame} is not in the table (0..{len(df) - 1})")
    row = row.iloc[0]
    items = [("frame", str(int(row[FRAME]))), ("time (s)", f"{row[TIME]:.3f}"),
             ("face", str(bool(row.get(FACE, False))))]
    if bool(row.get(FACE, False)) and BOX_DETECTED in row and pd.notna(row[BOX_DETECTED]):
        items.append(("face box", BOX_KINDS[bool(row[BOX_DETECTED])]))
    if FILLED in row and bool(row[FILLED]):
        items.append(("note", f"no face: prediction {faceless or 'filled from the face frames around'}"))
    for name in (VALENCE, AROUSAL):
        for col in (name, gt(name)):
            if col in row and pd.notna(row[col]):
                items.append((col, f"{row[col]:+.3f}"))
    for col in [EXPR, *[output_expr(o) for o in expr_outputs(df)], gt(EXPR)]:
        if col in row and pd.notna(row[col]):
            items.append((col, EXPRESSIONS[int(row[col])]))
    active = [au for au in AU_DECISIONS if au in row and pd.notna(row[au]) and int(row[au]) == 1]
    if any(au in row for au in AU_DECISIONS):
        items.append(("AUs predicted", ", ".join(active) or "none"))
    if all(gt(au) in row for au in AUS):
        gt_active = [au for au in AUS if pd.notna(row[gt(au)]) and int(row[gt(au)]) == 1]
        items.append(("AUs annotated", ", ".join(gt_active) or "none"))
    return pd.DataFrame([*items, *corrections], columns=list(FRAME_COLUMNS))


CLIP_FRAME_COLUMNS = ["prompt set", "expression", "prompts", "p"]


def clip_frame_table(df: pd.DataFrame, frame: int, phrases: dict[str, dict[str, list[str]]] | None = None
                     ) -> pd.DataFrame:
    """CLIP's probability of each expression's prompts at one frame, per CLIP output in the table
    (prompt sets, adapter, LSTM), most probable first. `phrases`: set name -> expression -> the class
    phrases its prompts are built from (shown when known)."""
    row = df.loc[df[FRAME] == frame]
    rows = []
    for output in expr_outputs(df):
        name = prompt_set_of(output) or output_label(output)
        known = (phrases or {}).get(name, {})
        probs = [] if row.empty else [(e, row.iloc[0][c]) for e, c in zip(EXPRESSIONS, output_probs(output))]
        for expr, p in sorted(probs, key=lambda item: -np.nan_to_num(float(item[1]), nan=-1.0)):
            rows.append({"prompt set": name, "expression": expr, "prompts": " | ".join(known.get(expr, [])),
                         "p": rounded(p)})
    return pd.DataFrame(rows, columns=CLIP_FRAME_COLUMNS)


def weights_table(models: dict[str, ModelRun]) -> list[str]:
    """Markdown table of where each model's weights came from and, task by task, whether they are trained,
    from RunInfo.models or LoadedModels.describe(): the run summary and the page's weights box say it the same
    way. Named upstream weights (core.upstream) add what they were trained on and upstream's own figure."""
    lines = ["| model | weights | state |", "|---|---|---|"]
    for model, info in models.items():
        trained = [t for t in info.tasks if t not in info.untrained_tasks]
        origin = (f" ({info.metadata['trained_on']}; upstream: {info.metadata['upstream_figure']})"
                  if info.metadata.get("upstream_figure") else "")
        if info.untrained_tasks and trained:
            state = (f"{', '.join(trained)} trained{origin}; **untrained**: {', '.join(info.untrained_tasks)} "
                     "(random heads, fixed seed)")
        elif info.untrained:
            state = ("**untrained** (random weights, fixed seed)" if info.source == "random" else
                     f"**untrained** (random heads, fixed seed, on a backbone{origin})")
        else:
            state = f"trained{origin}"
        lines.append(f"| {model} | `{info.source}` | {state} |")
    return lines
