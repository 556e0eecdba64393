"""Proof that training learns, on small Aff-Wild2-layout data with a planted signal (CPU, cached embeddings).

The data: the shared generated copy (tests/datagen.py: real face crops, the real layout, invalid markers,
lines without images) with four extra copies of each training video under new names, so that a readout
of random features has enough frames to generalise. Every face image is repainted here (our own builder:
datagen's small AU marks are invisible to a random network) with a state drawn anew for every frame:

    expression k -> the whole crop tinted with the k-th corner of the RGB cube (FACE of the face kept),
    AU j (12)    -> cell j of a 4x4 grid of 28 px cells brightened (on) or darkened (off),
    valence, arousal -> cells 12-13 and 14-15 painted grey (v + 1) / 2 * 255.

"static": the labels are the state shown in the same frame. "temporal": the same images, but each
label is the state shown LAG frames earlier, so a frame model cannot know it and a sequence model can.
Both roots share the images and so one embedding cache.

The encoder is a random DDAMFN (no weights can be downloaded here) whose last BatchNorm is calibrated to
unit variance on a few images: in eval mode an untrained network's embeddings are ~1e-7 in scale, which
the LSTM's input LayerNorm would flatten; calibrating that one layer is what the first training steps of
a real model do. The frame model (DDAMFN heads on cached embeddings) standardises its input either way.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from core.affwild2 import LABEL_COLUMNS, image_name, read_submission, write_annotation
from core.affwild2_index import AffWild2Index
from core.faces import read_face_image
from core.labels import AUS, TASKS
from core.models import create_model
from core.models.ddamfn import DDAMFN, preprocess
from core.weights import load_checkpoint, save_checkpoint
from tests.datagen import SPLITS, TINTS, copy_affwild2
from training import config
from training.__main__ import main as cli
from training.data import load_labels, target_arrays
from training.evaluate import Predictor
from training.extract import extract
from training.loop import train

REPO = Path(__file__).resolve().parents[1]
CELL, FACE, LAG, COPIES = 28, 0.0, 2, 4


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def paint(crop: np.ndarray, state: pd.Series) -> np.ndarray:
    out = FACE * crop.astype(np.float32) + (1 - FACE) * TINTS[int(state["expression"])]
    for j, name in enumerate(AUS):
        r, c = divmod(j, 4)
        cell = (slice(r * CELL, (r + 1) * CELL), slice(c * CELL, (c + 1) * CELL))
        out[cell] = 0.6 * out[cell] + (100 if state[name] else 0)
    for j, name in ((12, "valence"), (13, "valence"), (14, "arousal"), (15, "arousal")):
        r, c = divmod(j, 4)
        out[r * CELL:(r + 1) * CELL, c * CELL:(c + 1) * CELL] = (state[name] + 1) / 2 * 255
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def random_states(rng: np.random.Generator, n: int) -> pd.DataFrame:
    df = pd.DataFrame({"valence": rng.uniform(-0.9, 0.9, n).round(3), "arousal": rng.uniform(-0.9, 0.9, n).round(3),
                       "expression": pd.array(rng.integers(0, 8, n), dtype="Int64")})
    for name in AUS:
        df[name] = pd.array((rng.random(n) < 0.4).astype(int), dtype="Int64")
    return df


def write_labels(root: Path, labels: dict[str, pd.DataFrame]) -> None:
    index = AffWild2Index(root)
    for video, df in labels.items():
        for task in TASKS:
            for split in ("train", "val"):
                if video in index.videos(task, split):
                    write_annotation(df, index.annotation_path(task, split, video), task)


def build_planted(base, root: Path, seed: int = 0) -> tuple[Path, Path]:
    """(static root, temporal root) as the module docstring describes."""
    static, temporal = root / "static", root / "temporal"
    data = copy_affwild2(base, static)
    originals = dict(data.labels)
    for k in range(COPIES):
        for video in base.labels:
            tasks = [t for t in TASKS if video in SPLITS[t]["train"]]
            if not tasks:
                continue
            copy = f"{k + 2}{video}"
            shutil.copytree(static / "cropped_aligned" / video, static / "cropped_aligned" / copy)
            originals[copy] = base.labels[video]
            for task in tasks:
                src = AffWild2Index(static).annotation_path(task, "train", video)
                shutil.copyfile(src, src.with_name(f"{copy}.txt"))
    rng = np.random.default_rng(seed)
    shown_labels, delayed_labels = {}, {}
    for video, original in originals.items():
        shown = random_states(rng, len(original))
        delayed = shown.shift(LAG)
        for df in (shown_labels.setdefault(video, shown.copy()), delayed):
            for task in TASKS:                   # keep datagen's invalid markers where they were
                cols = LABEL_COLUMNS[task]
                df.loc[original[cols].isna().any(axis=1).to_numpy(), cols] = np.nan if task == "va" else pd.NA
        delayed_labels[video] = delayed
        folder = static / "cropped_aligned" / video
        for frame in range(len(shown)):
            path = folder / image_name(frame)
            if path.exists():
                painted = paint(read_face_image(path, 112), shown.iloc[frame])
                cv2.imwrite(str(path), cv2.cvtColor(painted, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    write_labels(static, shown_labels)
    shutil.copytree(static, temporal, ignore=shutil.ignore_patterns("cropped_aligned", "videos"))
    (temporal / "cropped_aligned").symlink_to(static / "cropped_aligned")
    write_labels(temporal, delayed_labels)
    return static, temporal


def calibrated_encoder(root: Path, path: Path) -> Path:
    """A random DDAMFN whose final BatchNorm maps its embeddings to unit variance (see the docstring)."""
    torch.manual_seed(0)
    model = DDAMFN().eval()
    images = sorted((root / "cropped_aligned").glob("*/*.jpg"))[::20]
    x = preprocess(np.stack([read_face_image(p, 112) for p in images]))
    seen = []
    bn = model.net.Linear.bn
    hook = bn.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].flatten(1).double()))
    with torch.no_grad():
        model.embed(x)
        hook.remove()
        z = torch.cat(seen)
        bn.running_mean.copy_(z.mean(0))
        bn.running_var.copy_(z.var(0))
        bn.weight.copy_(((z.var(0) + bn.eps) / z.var(0)).sqrt())
    return save_checkpoint(path, model, {"note": "random DDAMFN, final BatchNorm calibrated (test encoder)"})


@pytest.fixture(scope="module")
def planted(affwild2_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("planted")
    static, temporal = build_planted(affwild2_data, root)
    weights = calibrated_encoder(static, root / "encoder.pt")
    cache = root / "cache"
    extract(config.build(config.ExtractConfig, root=str(static), weights=str(weights), cache=str(cache),
                         device="cpu", workers=0, batch_size=64, progress=False))
    return {"static": static, "temporal": temporal, "weights": weights, "cache": cache, "root": root}


def run(planted, root: str, out: str, **settings) -> Path:
    settings = {"corrections": False, "device": "cpu", "workers": 0, "progress": False, "lr_gamma": 1.0,
                **settings}
    cfg = config.build(config.TrainConfig, root=str(planted[root]), weights=str(planted["weights"]),
                       cache=str(planted["cache"]), out=str(planted["root"] / out), **settings)
    return train(cfg)


HEADS = dict(model="ddamfn-heads", epochs=15, lr=1e-3, batch_size=32)
LSTM = dict(model="lstm", epochs=12, lr=1e-3, batch_size=8, window=32, stride=8, hidden=256, layers=2)


def chance(root: Path) -> dict:
    """Scores of label-blind answers on the validation labels: VA 0 (CCC of any constant), EXPR the best
    of always one class, AU all positive (the best constant answer for F1)."""
    t = target_arrays(load_labels(root, TASKS, "val", corrections=False).table)
    expr = t["expr"][t["expr"] >= 0]
    share = np.bincount(expr, minlength=8) / len(expr)
    p = np.nanmean(t["au"], axis=0)
    return {"p_va": 0.0, "p_expr": float((2 * share / (1 + share)).max() / 8), "p_au": float(np.mean(2 * p / (1 + p)))}


@pytest.fixture(scope="module")
def frame_model(planted):
    return run(planted, "static", "heads", tasks=TASKS, **HEADS)


def test_frame_model_beats_chance_on_each_task(planted, frame_model):
    metrics = load_checkpoint(frame_model).metadata["metrics"]["val"]
    base = chance(planted["static"])
    assert metrics["p_va"] > 0.3 and min(metrics["ccc_valence"], metrics["ccc_arousal"]) > 0.1
    assert metrics["p_expr"] > 0.3 > 4 * base["p_expr"]
    assert metrics["p_au"] > base["p_au"] + 0.1


def test_evaluate_thresholds_and_predict_on_the_checkpoint(planted, frame_model, tmp_path):
    trained = load_checkpoint(frame_model).metadata["metrics"]["val"]
    common = ["--root", str(planted["static"]), "--cache", str(planted["cache"]), "--device", "cpu",
              "--workers", "0", "--no-progress", "--no-corrections"]
    assert cli(["evaluate", "--weights", str(frame_model), "--out", str(tmp_path / "m.json"), *common]) == 0
    result = json.loads((tmp_path / "m.json").read_text())
    for key in ("p_va", "p_expr", "p_au", "score"):       # images through the saved DDAMFN = cached heads
        assert result["metrics"][key] == pytest.approx(trained[key], abs=0.02)
    tuned = tmp_path / "tuned.pt"
    assert cli(["thresholds", "--weights", str(frame_model), "--out", str(tuned), *common]) == 0
    meta = load_checkpoint(tuned).metadata
    assert len(meta["au_thresholds"]) == 12 and meta["au_thresholds_fit"]["split"] == "val"
    assert meta["au_thresholds_fit"]["p_au_optimised"] >= meta["au_thresholds_fit"]["p_au_at_0.5"]
    assert "au_thresholds" not in load_checkpoint(frame_model).metadata          # original left alone
    loaded = create_model("ddamfn", str(tuned), device="cpu")                  # what the app does
    assert loaded.info.tasks == TASKS and not loaded.info.untrained
    assert loaded.info.metadata["au_thresholds"] == meta["au_thresholds"]
    assert cli(["predict", "--weights", str(tuned), "--root", str(planted["static"]), "--videos", "val",
                "--out", str(tmp_path / "sub"), "--device", "cpu", "--workers", "0", "--no-progress"]) == 0
    lines = (tmp_path / "sub" / "au.txt").read_text().splitlines()
    assert lines[0] == "image_location," + ",".join(AUS) and len(lines) == 1 + 3 * 40   # val videos of any task
    expr = (tmp_path / "sub" / "expr.txt").read_text().splitlines()
    assert expr[0].startswith("image_location,Neutral,Anger") and len(expr) == 121
    assert all(row.split(",")[1] in "01234567" and row.count(",") == 1 for row in expr[1:])


@pytest.fixture(scope="module")
def temporal_models(planted):
    """(frame model, LSTM) trained on the temporal labels (VA and EXPR)."""
    tasks = ("va", "expr")
    return run(planted, "temporal", "t-heads", tasks=tasks, **HEADS), run(planted, "temporal", "t-lstm", tasks=tasks, **LSTM)


def test_lstm_beats_the_frame_model_when_labels_depend_on_time(planted, temporal_models):
    frame, lstm = (load_checkpoint(p).metadata["metrics"]["val"] for p in temporal_models)
    assert frame["p_va"] < 0.2 and frame["p_expr"] < 0.25                   # a frame cannot know the past
    assert lstm["p_va"] > 0.3 and lstm["p_expr"] > 0.35
    assert lstm["score"] > frame["score"] + 0.4
    loaded = create_model("lstm", str(temporal_models[1]), device="cpu")
    assert loaded.info.tasks == ("va", "expr") and not loaded.info.untrained
    assert loaded.info.metadata["embedding"]["weights"] == str(planted["weights"])


def test_the_models_table_records_the_encoder_key_that_predictions_check(planted, temporal_models, tmp_path):
    from db.engine import init_db, make_session_factory
    from training.jobs import register_checkpoint

    sessions = make_session_factory(init_db(f"sqlite:///{tmp_path / 'review.db'}"))
    with sessions.begin() as s:
        model = register_checkpoint(s, temporal_models[1], "t-lstm", None, LSTM["epochs"], None)
    encoder = create_model("ddamfn", str(planted["weights"]), device="cpu")
    assert model.encoder_hash == encoder.model.embedding_key("ddamfn")


def test_retraining_with_corrections_moves_predictions_to_the_corrected_labels(planted, tmp_path):
    """Reviewers find that the training frames showing Anger should read Surprise: one accepted
    correction per such frame (plus a rejected proposal and a flagged segment). A retrain with the
    corrections calls validation faces showing Anger Surprise; one without them still says Anger. The
    checkpoint lists the accepted corrections it used."""
    from db import repo
    from db.engine import init_db, make_session_factory

    anger, surprise = 1, 6
    url = f"sqlite:///{tmp_path / 'review.db'}"
    sessions = make_session_factory(init_db(url))
    train_labels = load_labels(planted["static"], ("expr",), "train", corrections=False).table
    accepted = []
    with sessions.begin() as s:
        for name in ("ann", "bob"):
            repo.get_or_create_reviewer(s, name)
        for video, rows in train_labels.groupby("video"):
            repo.register_video(s, video, len(rows), 24.0)
            for frame in rows.loc[(rows["expression"] == anger).fillna(False), "frame"]:
                c = repo.add_correction(s, video, "expr", int(frame), int(frame), "Surprise", "ann")
                accepted.append(repo.decide_correction(s, c.id, video=video, reviewer="bob", accept=True).id)
        video = train_labels["video"].iloc[0]
        rejected = repo.add_correction(s, video, "expr", 0, 9, "Disgust", "bob")
        repo.decide_correction(s, rejected.id, video=video, reviewer="ann", accept=False)
        repo.add_flag(s, video, "expr", 30, 39, "other", "bob", note="occluded")
    val = load_labels(planted["static"], ("expr",), "val", corrections=False).table
    shows_anger = (val["expression"] == anger).to_numpy(dtype=bool, na_value=False)

    def retrain(corrections: bool) -> tuple[np.ndarray, dict]:
        best = run(planted, "static", f"corr-{corrections}", tasks=("expr",), **{**HEADS, "epochs": 8},
                   **({"corrections": True, "db": url} if corrections else {}))
        predictor = Predictor(str(best), config.build(config.EvalConfig, root=str(planted["static"]), device="cpu",
                                                      workers=0, progress=False))
        said = predictor.predict(val)["expr"][shows_anger]
        return said[~np.isnan(said).any(axis=1)].argmax(axis=1), load_checkpoint(best).metadata["training"]

    before, plain = retrain(False)
    after, fixed = retrain(True)
    assert len(before) >= 5
    assert (before == anger).mean() > 0.7 and (before == surprise).mean() < 0.2
    assert (after == surprise).mean() > 0.7 and (after == anger).mean() < 0.2
    assert plain["corrections"]["used"] is False and plain["corrections"]["ids"] == []
    info = fixed["corrections"]
    assert info["used"] and sorted(info["train_ids"]) == sorted(accepted) and rejected.id not in info["ids"]
    assert info["flagged_left_out"] == 10 and info["source"].startswith("database sqlite")


def test_trained_checkpoints_run_in_core_analyze(frame_model, temporal_models, media_dir, tmp_path):
    """DDAMFN (heads trained on its embeddings) and the LSTM trained on those embeddings, in the app's
    command-line analysis of a real video."""
    out = tmp_path / "preds.csv"
    proc = subprocess.run(
        [sys.executable, "-m", "core.analyze", str(media_dir / "single_face.mp4"), "--out", str(out),
         "--device", "cpu", "--max-frames", "6", "--models", "ddamfn,lstm", "--weights", f"ddamfn={frame_model}",
         "--weights", f"lstm={temporal_models[1]}"],
        cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "untrained" not in proc.stderr
    df = pd.read_csv(out)
    assert len(df) == 6 and df["face"].all() and df["valence"].between(-1, 1).all()
    run_info = json.loads(out.with_suffix(".run.json").read_text())
    assert run_info["main_outputs"] == "lstm"


def lstm_with_au(lstm_path: Path, out: Path) -> tuple[Path, np.ndarray]:
    """The trained LSTM with a seeded AU head added and tuned AU thresholds recorded (as `training
    thresholds` writes them), its embedding record kept: an LSTM that gives the AU outputs."""
    from core.models.temporal import TemporalLSTM

    ckpt = load_checkpoint(lstm_path)
    torch.manual_seed(5)
    model = TemporalLSTM(**{**ckpt.config, "tasks": ("va", "expr", "au")})
    model.load_state_dict(ckpt.state_dict, strict=False)            # the AU head stays as seeded
    thresholds = np.linspace(0.3, 0.7, len(AUS))
    meta = {k: v for k, v in ckpt.metadata.items() if k in ("embedding", "windows")}
    return save_checkpoint(out, model, {**meta, "au_thresholds": thresholds.tolist()}), thresholds


def test_the_app_and_training_predict_an_affwild2_video_alike(planted, temporal_models, tmp_path):
    """One prediction path: the same LSTM checkpoint through the app's command line (`core.analyze
    --affwild2`) and through `training predict` gives the same outputs on the same frames, faceless
    frames included -- AU decisions too, at the LSTM checkpoint's tuned thresholds (not 0.5)."""
    lstm, thresholds = lstm_with_au(temporal_models[1], tmp_path / "lstm_au.pt")
    root = planted["temporal"]
    index = AffWild2Index(root)
    video = next(v for v in index.all_videos() if index.video_frames(v)["image_path"].isna().any())
    (tmp_path / "videos.txt").write_text(video + "\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    app = subprocess.run(
        [sys.executable, "-m", "core.analyze", video, "--affwild2", str(root), "--weights", f"lstm={lstm}",
         "--device", "cpu", "--out", str(tmp_path / "app.csv"), "--abaw", str(tmp_path / "app")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert app.returncode == 0, app.stderr
    assert cli(["predict", "--weights", str(lstm), "--root", str(root), "--cache", str(planted["cache"]),
                "--videos", str(tmp_path / "videos.txt"), "--out", str(tmp_path / "training"), "--device", "cpu",
                "--workers", "0", "--no-progress"]) == 0
    for task in ("va", "expr", "au"):
        ours, theirs = (read_submission(tmp_path / d / f"{task}.txt", task) for d in ("app", "training"))
        assert len(ours) == len(index.video_frames(video)) and list(ours["frame"]) == list(theirs["frame"])
        columns = LABEL_COLUMNS[task]
        np.testing.assert_allclose(ours[columns].to_numpy(float), theirs[columns].to_numpy(float), atol=2e-5)
    app_table = pd.read_csv(tmp_path / "app.csv")
    probs = app_table[[f"p_{a}" for a in AUS]].to_numpy()
    decisions = app_table[list(AUS)].to_numpy(float)
    assert json.loads((tmp_path / "app.run.json").read_text())["au_thresholds"] == pytest.approx(thresholds.tolist())
    rows = ~np.isnan(probs).any(axis=1)
    assert np.array_equal(decisions[rows], (probs[rows] >= thresholds).astype(float))
    assert not np.array_equal(decisions[rows], (probs[rows] >= 0.5).astype(float))    # the thresholds mattered


def test_an_lstm_runs_only_on_the_encoder_it_was_trained_on(planted, temporal_models, media_dir, tmp_path):
    """Without DDAMFN weights the LSTM brings the encoder it recorded; other DDAMFN weights are refused
    with one line, before any video work."""
    lstm = temporal_models[1]
    common = [sys.executable, "-m", "core.analyze", str(media_dir / "single_face.mp4"), "--device", "cpu",
              "--max-frames", "4", "--models", "lstm", "--weights", f"lstm={lstm}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    own = subprocess.run([*common, "--out", str(tmp_path / "own.csv")], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=300)
    assert own.returncode == 0, own.stderr
    run_info = json.loads((tmp_path / "own.run.json").read_text())
    assert run_info["models"]["ddamfn"]["source"] == str(planted["weights"]) and run_info["outputs_from"]["va"] == "lstm"
    torch.manual_seed(1)
    other = save_checkpoint(tmp_path / "other.pt", DDAMFN())
    refused = subprocess.run([*common, "--weights", f"ddamfn={other}", "--out", str(tmp_path / "x.csv")], cwd=REPO,
                             env=env, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 1 and not (tmp_path / "x.csv").exists()
    assert refused.stderr.count("\n") == 1 and "use the encoder weights it was trained on" in refused.stderr
