"""The run summary in words for the page, and the run metadata as people may see it: files named by
their base names, never by where they lie on the server. No Gradio here."""
from __future__ import annotations

import dataclasses
import re
from datetime import datetime, timezone
from pathlib import Path

from core.analysis import ModelRun, RunInfo
from webapp import results


# An absolute server path inside a text (/home/x/y.mp4, C:\\data\\y): only its last part is shown.
_PATH = re.compile(r"(?<![\w/.:-])(?:[A-Za-z]:\\|/)(?:[^\s'\"(),:;]+[/\\])+([^\s'\"(),:;/\\]*)")


def readable(text: str) -> str:
    """A text for people: no server paths (a file is named by its name)."""
    return _PATH.sub(lambda m: m.group(1) or Path(m.group(0).rstrip("/\\")).name, str(text)).strip()


def base_names(models: dict[str, ModelRun]) -> dict[str, ModelRun]:
    """RunInfo.models (or LoadedModels.describe()) with each model's weights named by their base name."""
    return {name: dataclasses.replace(m, source=readable(m.source)) for name, m in models.items()}


def public_run(run: RunInfo) -> RunInfo:
    """The run as a download shows it: the video, the weights and the Aff-Wild2 folder by base name."""
    source = run.source
    return dataclasses.replace(
        run, models=base_names(run.models), fps_source=readable(run.fps_source),
        config=dataclasses.replace(run.config, weights={k: readable(v) for k, v in run.config.weights.items()}),
        source=dataclasses.replace(source, path=source.path and readable(source.path),
                                   root=source.root and readable(source.root)))


def run_time(run: RunInfo) -> str:
    """When the analysis ran, as the page says it ("2026-12-07 07:30 UTC")."""
    return datetime.fromisoformat(run.created).astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def run_summary(run: RunInfo, name: str, notes: list[str]) -> str:
    """Which weights ran, on what, how fast; `untrained` in plain words when weights are random."""
    lines = [f"**{name}**: {run.frames} frames, {run.face_frames} with a face; ran on `{run.device}` in "
             f"{run.timings.get('total', 0):.1f} s ({run.frames_per_s or 0:.1f} frames/s).", "",
             *results.weights_table(base_names(run.models))]
    if run.untrained:
        lines += ["", "Outputs from **untrained** models come from random weights: they show how the app "
                      "works, not what the face expresses."]
    if run.face_frames < run.frames:
        lines += ["", f"Frames without a face (shaded grey): {run.faceless_predictions}."]
    if run.embedding_note:
        lines += ["", f"Face frames: {run.embedding_note}."]
    lines += [f"\n{note}" for note in notes]
    return "\n".join(lines)
