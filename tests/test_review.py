"""The per-video review queue scores model-vs-annotation stretches with the annotation audit's scorer,
and says so when the model was trained on the very annotations it is checking (in-sample)."""
import numpy as np
import pandas as pd

from core.labels import AUS, EXPRESSIONS
from core.review import IN_SAMPLE, suspicious_segments, trained_on


def table(n=300):
    """A video whose annotation is right but for a swapped expression at 100-159 and AU12 stuck on at
    200-259; the model predicts the truth with probabilities."""
    t = np.arange(n)
    df = pd.DataFrame({"frame": t, "time_s": t / 30.0, "face": True})
    truth = np.repeat([0, 1, 4, 3, 0], 60)
    df["gt_expr"] = pd.array(np.where((t >= 100) & (t < 160), 6, truth), dtype="Int64")
    df["expr"] = pd.array(truth, dtype="Int64")
    for k, name in enumerate(EXPRESSIONS):
        df[f"p_{name}"] = np.where(truth == k, 0.9, 0.1 / 7)
    for j, au in enumerate(AUS):
        df[f"gt_{au}"] = pd.array(((au == "AU12") & (t >= 200) & (t < 260)).astype(int), dtype="Int64")
        df[f"p_{au}"] = 0.05
    return df


def test_the_audit_scorer_finds_each_stretch_and_in_sample_evidence_is_marked():
    out = suspicious_segments(table(), fps=30.0)
    assert [(r.task, r.kind, r.start_frame, r.end_frame) for r in out.itertuples()] == [
        ("expr", "label", 100, 159), ("au", "stuck", 200, 259)]
    assert out["detail"].tolist() == [f"annotated {EXPRESSIONS[6]}, predicted {EXPRESSIONS[4]}",   # most of it
                                      "AU12 annotated 1, predicted probability 0.05"]
    marked = suspicious_segments(table(), fps=30.0, in_sample=True)
    assert marked["detail"].tolist() == [d + f"; {IN_SAMPLE}" for d in out["detail"]]


def test_trained_on_reads_the_checkpoints_training_record(affwild2_root):
    meta = {"training": {"config": {"root": str(affwild2_root), "tasks": ["va", "expr"]}}}
    assert trained_on(meta, "10-24-640x360") is True           # a train-split video
    assert trained_on(meta, "11-24-640x360") is False          # validation only
    assert trained_on({}, "10-24-640x360") is None             # upstream weights: no record
    assert trained_on({"training": {"config": {"root": "/nowhere"}}}, "10-24-640x360") is None
