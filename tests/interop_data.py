"""A reviewed video for the interop tests: an upload registered at 29.97 frames/s with VA, EXPR and AU
annotation files imported, an accepted correction, two overlapping open flags, a resolved flag, and a
stored analysis (a real core.table built from per-frame outputs) whose run says which model gave what."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core.affwild2 import write_annotation
from core.analysis import AnalysisConfig, ModelRun, RunInfo, Source
from core.labels import AUS, EXPRESSIONS
from core.predict import Predictions
from core.table import build
from db import repo

FPS, FRAMES = 29.97, 90
HEX = "ab" * 32
KEY = f"sha256:{HEX}"
RUN = RunInfo(           # as the page stores it: DDAMFN's heads random; the LSTM's EXPR head trained, AU random
    config=AnalysisConfig(models=("ddamfn", "lstm", "clip")), device="cpu",
    models={"ddamfn": ModelRun("random", True, ("va", "expr", "au"), ("va", "expr", "au")),
            "lstm": ModelRun("lstm.pt", True, ("expr", "au"), ("au",)),
            "clip": ModelRun("ViT-B-32:openai", False, ("expr",))},
    outputs_from={"va": "ddamfn", "expr": "lstm", "au": "lstm", "clip_basic": "clip"}, au_thresholds=(0.5,) * 12,
    windows={}, expr_outputs=("clip_basic",), frames=FRAMES, face_frames=FRAMES, faceless="interpolated",
    timings={"total": 1.0}, source=Source("video"), fps=FPS, fps_source="video")
RUN_DETAILS = RUN.to_dict()


@dataclass
class Reviewed:
    data_dir: Path
    media: Path
    va: np.ndarray
    expr: np.ndarray
    au: np.ndarray
    table: pd.DataFrame


def _write(path: Path, task: str, values: np.ndarray) -> Path:
    columns = {"va": ["valence", "arousal"], "expr": ["expression"], "au": list(AUS)}[task]
    write_annotation(pd.DataFrame(values.reshape(len(values), -1), columns=columns), path, task)
    return path


FACELESS = slice(60, 66)     # frames without a face in the analysis: no outputs (an analysis with fill "none")


def analysis_table() -> pd.DataFrame:
    """A table as core.pipeline builds it: outputs change in runs; frames 60-65 have no face, no outputs."""
    rng = np.random.default_rng(7)
    expr_class = np.repeat([0, 4, 4, 6, 1, 0], FRAMES // 6)
    expr = np.full((FRAMES, 8), 0.02)
    expr[np.arange(FRAMES), expr_class] = 0.86
    au = np.where(rng.random((FRAMES // 5, 12)) < 0.3, 0.9, 0.1).repeat(5, axis=0)
    clip = np.roll(expr, 1, axis=1)
    va = np.round(rng.uniform(-1, 1, (FRAMES, 2)), 4)
    outputs = {"va": va, "expr": expr, "au": au, "clip_basic": clip}
    face = np.ones(FRAMES, bool)
    face[FACELESS] = False
    for values in outputs.values():
        values[FACELESS] = np.nan
    predictions = Predictions(outputs, face, np.zeros(FRAMES, bool), RUN_DETAILS["outputs_from"])
    return build(predictions, np.arange(FRAMES) / FPS, 0.5)


def make_reviewed_video(sessions, tmp_path: Path) -> Reviewed:
    rng = np.random.default_rng(0)
    va = np.round(rng.uniform(-1, 1, (FRAMES, 2)), 3)
    va[:3] = np.nan
    expr = np.repeat([0, 4, 3, 6, 5, 1], FRAMES // 6).astype(float)
    expr[50:52] = np.nan
    au = (rng.random((FRAMES, 12)) < 0.3).astype(float)
    au[80:] = np.nan
    data_dir = tmp_path / "data"
    media = data_dir / "videos" / f"{HEX}.mp4"
    media.parent.mkdir(parents=True)
    media.write_bytes(b"not decoded by an export")
    table = analysis_table()
    (data_dir / "analyses" / "run1").mkdir(parents=True)       # what an export reads: the stored table
    table.to_parquet(data_dir / "analyses" / "run1" / "table.parquet", index=False)
    files = {task: _write(tmp_path / f"{task}.txt", task, values)
             for task, values in (("va", va), ("expr", expr), ("au", au))}
    with sessions.begin() as s:
        for name in ("alice", "bob", "carol", "dave"):
            repo.get_or_create_reviewer(s, name)
        repo.register_video(s, KEY, FRAMES, FPS, name="clip one.mp4")
        for task, path in files.items():
            repo.import_annotations(s, KEY, task, path)
        correction = repo.add_correction(s, KEY, "expr", 10, 14, "Happiness", "alice", note="smiling")
        repo.add_flag(s, KEY, "au", 20, 30, "occluded", "carol", note="hand")
        repo.add_flag(s, KEY, "au", 25, 35, "ambiguous", "dave")
        resolved = repo.add_flag(s, KEY, "expr", 60, 61, "wrong label", "carol")
        repo.add_prediction_run(s, KEY, models=RUN_DETAILS["models"], device="cpu",
                                table_path="analyses/run1/table.parquet", untrained=True, details=RUN_DETAILS,
                                artifacts_dir="analyses/run1")
    with sessions.begin() as s:
        repo.decide_correction(s, correction.id, video=KEY, reviewer="bob", accept=True)
        repo.resolve_flag(s, resolved.id, video=KEY, reviewer="bob", resolution="annotation is right")
    expr[10:15] = EXPRESSIONS.index("Happiness")       # the effective labels
    return Reviewed(data_dir, media, va, expr, au, table)
