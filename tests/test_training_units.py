"""training/ pieces on their own: config parsing, the losses against the metric definitions, label tables
(annotation files and the review database), windows, neighbour filling, folded heads, the embedding cache."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from core.affwild2_index import AffWild2Index
from core.labels import AUS, TASKS
from core.metrics import ccc
from core.models.ddamfn import DDAMFN
from core.weights import save_checkpoint
from tests.datagen import INVALID_FRAMES, REMOVED_IMAGES
from training import config, losses
from training.__main__ import COMMANDS, parser
from core.faces import read_face_image
from training.data import EmbeddingWindows, load_labels, target_arrays, valid_mask
from training.extract import EmbeddingCache, load_encoder, video_images
from training.predictions import fill_faceless
from training.recipes import EmbeddingHeads

REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# -- config ---------------------------------------------------------------------------------------------

def test_presets_then_options_build_the_dataclass():
    cfg = config.build(config.TrainConfig, "ddamfn-au,tiny", lr=0.01)
    assert cfg.model == "ddamfn" and cfg.tasks == ("au",) and cfg.steps_per_epoch == 2 and cfg.lr == 0.01
    args = parser().parse_args(["train", "--preset", "ddamfn-va", "--tasks", "au,va", "--no-corrections",
                                "--batch-size", "4", "--db", "sqlite:///x.db"])
    cfg = config.from_args(config.TrainConfig, args)
    assert cfg.tasks == ("va", "au") and not cfg.corrections and cfg.batch_size == 4 and cfg.db == "sqlite:///x.db"
    assert cfg.lr_gamma == 0.6 and cfg.out == "runs/ddamfn-va"          # from the preset
    assert config.from_args(config.TrainConfig, parser().parse_args(["train"])).corrections   # default on


@pytest.mark.parametrize("values, message", [
    ({"learning_rate": 1}, r"no setting\(s\) learning_rate"),
    ({"model": "resnet"}, "model must be one of"),
    ({"model": "clip-adapter", "tasks": "va"}, "expressions only"),
])
def test_bad_settings_are_refused(values, message):
    with pytest.raises(ValueError, match=message):
        config.build(config.TrainConfig, **values)
    with pytest.raises(ValueError, match="unknown preset"):
        config.build(config.TrainConfig, "no-such-preset")


def test_every_command_has_help():
    proc = subprocess.run([sys.executable, "-m", "training", "--help"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0 and all(c in proc.stdout for c in COMMANDS)
    for command in COMMANDS:
        with pytest.raises(SystemExit) as exit_:
            parser().parse_args([command, "--help"])
        assert exit_.value.code == 0


# -- losses ---------------------------------------------------------------------------------------------

def test_ccc_loss_is_one_minus_abaw_ccc_on_valid_rows():
    rng = np.random.default_rng(0)
    gt = rng.uniform(-1, 1, (50, 2)).astype(np.float32)
    pred = (gt * 0.5 + rng.normal(0, 0.2, gt.shape)).astype(np.float32)
    gt[[3, 7]] = np.nan
    expected = 1 - (ccc(pred[:, 0], gt[:, 0]) + ccc(pred[:, 1], gt[:, 1])) / 2
    assert losses.ccc_loss(torch.tensor(pred), torch.tensor(gt)).item() == pytest.approx(expected, abs=1e-5)
    assert losses.ccc_loss(torch.tensor(np.nan_to_num(gt)), torch.tensor(gt)).item() == pytest.approx(0, abs=1e-5)
    none = torch.full((4, 2), float("nan"))
    p = torch.zeros(4, 2, requires_grad=True)
    out = losses.ccc_loss(p, none)
    out.backward()
    assert out.item() == 0 and p.grad is not None


def test_expr_and_au_losses_skip_missing_labels_and_use_weights():
    logits = torch.randn(6, 8)
    target = torch.tensor([0, -1, 3, 3, -1, 7])
    w = torch.tensor(losses.class_weights(np.array([0, 3, 3, 7, np.nan])), dtype=torch.float32)
    assert w[3] < w[0] == w[7] and w[1] == 1
    keep = target >= 0
    assert losses.expr_loss(logits, target, w).item() == pytest.approx(
        F.cross_entropy(logits[keep], target[keep], weight=w).item(), rel=1e-6)
    au_logits = torch.randn(5, 12)
    au = torch.tensor(np.where(np.random.default_rng(1).random((5, 12)) < 0.3, 1.0, 0.0), dtype=torch.float32)
    au[0] = float("nan")
    pw = torch.tensor(losses.pos_weights(au.numpy()), dtype=torch.float32)
    per = F.binary_cross_entropy_with_logits(au_logits[1:], au[1:], pos_weight=pw, reduction="none")
    assert losses.au_loss(au_logits, au, pw).item() == pytest.approx(per.mean().item(), rel=1e-6)
    labels = np.array([[1, 0], [0, 0], [0, np.nan], [1, 0]] + [[0, 0]] * 4, dtype=float)
    padded = np.hstack([labels, np.zeros((8, 10))])
    assert losses.pos_weights(padded)[0] == pytest.approx(6 / 2) and losses.pos_weights(padded)[1] == 1.0


# -- label tables ---------------------------------------------------------------------------------------

def test_label_table_joins_tasks_with_images_and_invalid_frames(affwild2_data):
    labels = load_labels(affwild2_data.root, TASKS, "train", corrections=False)
    t = labels.table
    assert labels.source == "annotation files" and labels.corrections == []
    train_videos = sorted({v for task in TASKS for v in affwild2_data.splits[task]["train"]})
    assert sorted(t["video"].unique()) == train_videos and len(t) == 40 * len(train_videos)
    v10 = t[t["video"] == "10-24-640x360"].set_index("frame")
    assert v10.loc[list(REMOVED_IMAGES["10-24-640x360"]), "image_path"].isna().all()
    assert Path(v10.loc[0, "image_path"]).name == "00001.jpg"
    assert v10.loc[list(INVALID_FRAMES["va"]["10-24-640x360"]), "valence"].isna().all()
    right = t[t["video"] == "14-30-960x640_right"]           # annotated for VA and AU only
    assert right["expression"].isna().all() and valid_mask(right, "va").any()
    tg = target_arrays(t)
    assert (tg["expr"][t["expression"].isna().to_numpy()] == -1).all() and tg["au"].shape == (len(t), len(AUS))


def _review_db(tmp_path, video: str, n_frames: int):
    """A migrated SQLite review database with one accepted correction, one rejected, one open flag."""
    from db import repo
    from db.engine import init_db, make_session_factory

    url = f"sqlite:///{tmp_path / 'review.db'}"
    sessions = make_session_factory(init_db(url))
    with sessions.begin() as s:
        repo.register_video(s, video, n_frames, 24.0)
        for name in ("ann", "bob"):
            repo.get_or_create_reviewer(s, name)
        good = repo.add_correction(s, video, "expr", 10, 14, 4, "ann")
        bad = repo.add_correction(s, video, "expr", 20, 24, 6, "ann")
        repo.decide_correction(s, good.id, video=video, reviewer="bob", accept=True)
        repo.decide_correction(s, bad.id, video=video, reviewer="bob", accept=False)
        repo.add_flag(s, video, "expr", 30, 31, "other", "bob", note="blurred")
        return url, good.id


def test_effective_labels_from_the_database_and_the_switch_that_turns_them_off(affwild2_data, tmp_path):
    video = "10-24-640x360"
    url, good = _review_db(tmp_path, video, 40)
    files = load_labels(affwild2_data.root, ("expr",), "train", corrections=False).table
    used = load_labels(affwild2_data.root, ("expr",), "train", corrections=True, db=url)
    assert used.corrections == [good] and used.flagged == 2 and used.source.startswith("database sqlite")
    a = files[files["video"] == video].set_index("frame")["expression"]
    b = used.table[used.table["video"] == video].set_index("frame")["expression"]
    assert (b.loc[10:14] == 4).all() and b.loc[30:31].isna().all()                 # applied / left out
    assert b.loc[20:24].equals(a.loc[20:24])                                       # rejected: unchanged
    rest = [f for f in a.index if not (10 <= f <= 14 or 30 <= f <= 31)]
    assert b.loc[rest].equals(a.loc[rest])
    other = used.table[used.table["video"] != video]
    assert other.reset_index(drop=True).equals(files[files["video"] != video].reset_index(drop=True))
    missing = load_labels(affwild2_data.root, ("expr",), "train", corrections=True,
                          db=f"sqlite:///{tmp_path / 'none.db'}")
    assert missing.corrections == [] and "no review database" in missing.source
    assert not (tmp_path / "none.db").exists()


# -- windows, filling, heads ----------------------------------------------------------------------------

def test_windows_cover_each_video_and_pad_short_ones():
    table = pd.DataFrame({"video": ["a"] * 5 + ["b"] * 3, "frame": list(range(5)) + [0, 1, 2],
                          "image_path": ["x"] * 8, "valence": np.linspace(-1, 1, 8), "arousal": 0.0,
                          "expression": pd.array([1] * 8, dtype="Int64"),
                          **{a: pd.array([0] * 8, dtype="Int64") for a in AUS}})
    emb = np.arange(8 * 3, dtype=np.float32).reshape(8, 3)
    ds = EmbeddingWindows(table, emb, np.ones(8, bool), window=4, stride=2)
    assert [item.tolist() for item in ds.items] == [[0, 1, 2, 3], [1, 2, 3, 4], [5, 6, 7]]
    short = ds[2]
    assert short["row"].tolist() == [5, 6, 7, -1] and short["mask"].tolist() == [True, True, True, False]
    assert short["expr"][-1] == -1 and torch.isnan(short["va"][-1]).all()
    assert torch.equal(short["emb"][:3], torch.from_numpy(emb[5:8]))


def test_rows_without_prediction_are_filled_from_their_video_as_the_app_fills_them():
    table = pd.DataFrame({"video": ["a"] * 5 + ["b"] * 2, "frame": [0, 1, 2, 3, 4, 0, 1]})
    va = np.array([[0.1, 0], [np.nan, np.nan], [np.nan, np.nan], [np.nan, np.nan], [0.5, 0],
                   [np.nan, np.nan], [np.nan, np.nan]], dtype=np.float32)
    filled, n = fill_faceless(table, {"va": va})
    assert filled["va"][:5, 0].tolist() == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5]) and n == 3
    assert np.isnan(filled["va"][5:]).all()                                   # nothing to copy from


def test_folded_heads_are_the_same_function_on_raw_embeddings():
    torch.manual_seed(0)
    emb = torch.randn(20, 512) * 0.3 + 0.2
    mean, std = emb.mean(0).numpy(), emb.std(0).numpy()
    heads = EmbeddingHeads(mean, std, TASKS)
    model = DDAMFN(tasks=TASKS)
    model.task_heads.load_state_dict(heads.folded())
    with torch.no_grad():
        a, b = heads(emb), model.heads(emb)
        for t in TASKS:
            assert torch.allclose(a[t], b[t], atol=1e-4)
        again = EmbeddingHeads(mean, std, TASKS)
        again.unfold(model.task_heads.state_dict())
        assert torch.allclose(again(emb)["au"], a["au"], atol=1e-4)


# -- embedding cache ------------------------------------------------------------------------------------

def test_extract_resumes_after_being_killed_and_reuses_finished_videos(affwild2_data, tmp_path):
    """`extract` killed after its first video: a rerun keeps the finished files and completes the rest;
    the result equals the embeddings of the images computed directly."""
    torch.manual_seed(0)
    weights = save_checkpoint(tmp_path / "enc.pt", DDAMFN())
    cache_root = tmp_path / "cache"
    videos = sorted(affwild2_data.labels)[:3]
    (tmp_path / "videos.txt").write_text("\n".join(videos) + "\n")
    cmd = [sys.executable, "-m", "training", "extract", "--root", str(affwild2_data.root), "--weights", str(weights),
           "--cache", str(cache_root), "--videos", str(tmp_path / "videos.txt"), "--device", "cpu", "--workers", "0", "--batch-size", "16", "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and not list(cache_root.glob("*/*.npz")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = {p.name: p.stat().st_mtime_ns for p in cache_root.glob("*/*.npz")}
    assert 1 <= len(first) < len(videos), "the run should have been interrupted after its first video"

    encoder = load_encoder("ddamfn", str(weights), "cpu")
    cache = EmbeddingCache(cache_root, encoder.info)
    index = AffWild2Index(affwild2_data.root)
    assert cache.fill(encoder, index, videos, batch_size=32, workers=0, progress=False) == len(videos) - len(first)
    assert all(cache.path(v).stat().st_mtime_ns == first[cache.path(v).name] for v in videos
               if cache.path(v).name in first)
    assert cache.fill(encoder, index, videos, progress=False) == 0                # all reused
    assert json.loads((cache.dir / "encoder.json").read_text())["key"] == encoder.key
    video = videos[0]
    frames, paths = video_images(index, video)
    images = np.stack([read_face_image(p, 112) for p in paths[:8]])
    cached_frames, emb = cache.load(video)
    assert np.array_equal(cached_frames, frames)
    assert np.allclose(emb[:8], encoder(images), rtol=1e-4, atol=1e-9)


def test_a_flat_validation_score_keeps_the_last_epoch_and_says_why():
    from training.loop import keep_epoch

    best_score, best_epoch, kept = float("-inf"), None, []
    for epoch, score in enumerate([0.0, 0.0, 0.2, 0.1, 0.2 + 1e-9]):
        keep, why = keep_epoch(score, best_score, best_epoch, epoch)
        kept.append((keep, why))
        if keep:
            best_score, best_epoch = score, epoch
    assert kept == [(True, "first validated epoch (score 0.0000)"),
                    (True, "score 0.0000 tied with epoch 1's: the later epoch is kept"),
                    (True, "score 0.2000 above epoch 2's 0.0000"),
                    (False, "score 0.1000 below epoch 3's 0.2000"),
                    (True, "score 0.2000 tied with epoch 3's: the later epoch is kept")]
    assert best_epoch == 4


def test_the_eta_comes_from_measured_step_and_validation_times():
    from training.loop import StepClock

    clock = StepClock()
    clock.step(5.0, first_of_epoch=True)       # the first step ever is all there is to go on
    assert clock.eta(10, 1) == 50.0
    clock.step(1.0, first_of_epoch=False)      # 0.8 * 5 + 0.2 * 1
    clock.validation_s = 3.0
    assert clock.eta(10, 2) == pytest.approx(4.2 * 10 + 6.0)
    clock.step(30.0, first_of_epoch=True)      # a later epoch's first step waits for the loader: left out
    assert clock.step_s == pytest.approx(4.2)
