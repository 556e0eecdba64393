"""Training runs of every model kind for a couple of steps on CPU: DDAMFN end to end (with the attention
loss, checkpoints, CSV log, resume, upstream initial weights), the same under torchrun with two processes
(gloo), and the CLIP adapter followed by CLIP+LSTM. Their checkpoints load through core.models."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from core.labels import EXPRESSIONS, TASKS
from core.models import create_model
from core.models.clip import ClipAdapter, PromptSet
from core.models.ddamfn import DDAMFN, DDAMNet
from core.weights import load_checkpoint, save_checkpoint
from tests.datagen import make_affwild2
from training import config
from training.loop import train
from training.recipes import ddamfn_from

REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny(root, out, **settings):
    return config.build(config.TrainConfig, "tiny", root=str(root), out=str(out), corrections=False,
                        batch_size=4, **settings)


def read_log(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_ddamfn_trains_end_to_end_writes_checkpoints_and_resumes(affwild2_root, tmp_path):
    out = tmp_path / "run"
    best = train(tiny(affwild2_root, out, model="ddamfn", tasks="va,expr,au", lr=1e-3, lr_gamma=0.5))
    assert best == out / "best.pt" and (out / "last.pt").exists()
    assert json.loads((out / "config.json").read_text())["tasks"] == list(TASKS)
    rows = read_log(out / "log.csv")
    assert len(rows) == 1 and rows[0]["steps"] == "2" and float(rows[0]["loss_attention"]) > 0
    assert {"loss_va", "loss_expr", "loss_au", "val_p_va", "val_p_expr", "val_p_au", "val_score"} <= set(rows[0])

    ckpt = load_checkpoint(best)
    meta = ckpt.metadata
    assert ckpt.architecture == "ddamfn" and meta["tasks"] == list(TASKS) and meta["preprocessing"]["size"] == 112
    assert meta["label_order"]["expr"] == list(EXPRESSIONS)
    assert meta["metrics"]["val"]["score"] == pytest.approx(float(rows[0]["val_score"]), abs=1e-5)
    assert meta["training"]["corrections"]["used"] is False and meta["training"]["data"]["train"]["videos"] == 4
    assert (meta["training"]["steps"], meta["training"]["frames_seen"]) == (2, 8)
    kept = f"first validated epoch (score {meta['metrics']['val']['score']:.4f})"
    assert meta["training"]["kept"] == {"epoch": 1, "why": kept}
    assert ckpt.optimizer_state_dict is not None
    torch.manual_seed(0)
    start = DDAMFN(tasks=TASKS).state_dict()                 # the loop's seed 0 builds the same model
    changed = [k for k, v in ckpt.state_dict.items() if v.dtype.is_floating_point and not torch.equal(v, start[k])]
    assert any(k.startswith("net.features.") for k in changed) and any(k.startswith("task_heads.") for k in changed)
    loaded = create_model("ddamfn", str(best), device="cpu")
    assert loaded.info.tasks == TASKS and not loaded.info.untrained

    train(tiny(affwild2_root, out, model="ddamfn", tasks="va,expr,au", lr=1e-3, lr_gamma=0.5, epochs=2,
               resume=True))
    rows = read_log(out / "log.csv")
    assert [r["epoch"] for r in rows] == ["1", "2"] and float(rows[1]["lr"]) == pytest.approx(5e-4)
    resumed = load_checkpoint(out / "last.pt").metadata["training"]
    assert resumed["epoch"] == 1 and (resumed["steps"], resumed["frames_seen"]) == (4, 16)   # counted on


def test_ddamfn_starts_from_an_upstream_checkpoint(tmp_path):
    torch.manual_seed(3)
    net = DDAMNet(num_class=8)
    path = tmp_path / "affectnet8_epoch5_acc0.6.pth"
    torch.save({"iter": 5, "model_state_dict": net.state_dict()}, path)
    model = ddamfn_from(str(path), ("va",))
    assert model.tasks == ("va",) and model.net.fc.out_features == 8
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in model.net.state_dict().items())


def test_torchrun_two_cpu_processes(affwild2_root, tmp_path):
    """DistributedDataParallel over gloo: each process trains on half of every batch list and predicts
    half of the validation videos; process 0 writes the checkpoint."""
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "training",
         "train", "--preset", "ddamfn-va,tiny", "--root", str(affwild2_root), "--out", str(out),
         "--no-corrections", "--batch-size", "2", "--weights", "untrained"],   # offline: not the preset's backbone
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    meta = load_checkpoint(out / "best.pt").metadata
    assert meta["training"]["world_size"] == 2 and meta["tasks"] == ["va"]
    assert (meta["training"]["steps"], meta["training"]["frames_seen"]) == (2, 8)    # 2 steps of 2 frames each
    assert meta["metrics"]["val"]["va_frames"] == 80                           # both processes' videos
    assert len(read_log(out / "log.csv")) == 1


@pytest.fixture(scope="module")
def small_root(tmp_path_factory, media_dir):
    return make_affwild2(tmp_path_factory.mktemp("small"), n_frames=8, raw_videos=False, media_dir=media_dir).root


def test_clip_adapter_then_clip_lstm(small_root, tmp_path):
    """The adapter trains on cached CLIP embeddings (random ViT-S-32 here, kept in its checkpoint); the
    LSTM then trains on the adapted embeddings (CLIP+LSTM). Both load as the app loads them."""
    prompts = PromptSet("tiny", ("a {} face.",), {e: (e.lower(),) for e in EXPRESSIONS})
    start = save_checkpoint(tmp_path / "clip.pt", ClipAdapter("ViT-S-32", None, prompts))
    cache = tmp_path / "cache"
    adapter = train(tiny(small_root, tmp_path / "adapter", model="clip-adapter", tasks="expr", weights=str(start),
                         cache=str(cache), lr=1e-2))
    ckpt = load_checkpoint(adapter)
    assert ckpt.architecture == "clip-adapter" and ckpt.metadata["embedding"]["encoder"] == "clip"
    before = load_checkpoint(start).state_dict
    assert not torch.equal(ckpt.state_dict["down.weight"], before["down.weight"])
    assert create_model("clip-adapter", str(adapter), device="cpu").info.tasks == ("expr",)

    lstm = train(tiny(small_root, tmp_path / "clip-lstm", model="lstm", encoder="clip-adapter", tasks="expr",
                      weights=str(adapter), cache=str(cache), window=4, stride=2, hidden=16, layers=1))
    meta = load_checkpoint(lstm).metadata
    assert meta["embedding"]["encoder"] == "clip-adapter" and meta["embedding"]["dim"] == 384
    loaded = create_model("clip-lstm", str(lstm), device="cpu")
    assert loaded.model.input_dim == 384 and loaded.info.tasks == ("expr",)
    assert len(list(cache.iterdir())) == 2                  # raw CLIP and adapted CLIP embeddings
