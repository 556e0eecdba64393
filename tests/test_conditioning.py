"""Checkpoints of heads trained on cached embeddings answer the same at any batch size and thread count
(issue 31.1): the recipe floors each dimension's spread at a share of the embedding's own scale, and
refuses to save heads that would still magnify float32 rounding of the embedding."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks import fidelity
from core.affwild2 import IMAGE_DIR
from core.faces import read_face_image
from core.models import create_model
from core.weights import save_checkpoint

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def face_set(tmp_path_factory):
    """The fidelity benchmark's set on the clip's first 64 frames (crying), and its calibrated encoder."""
    work = tmp_path_factory.mktemp("conditioning")
    fidelity.make_dataset(work / "affwild2", step=1, max_frames=64)
    encoder = fidelity.calibrated_encoder(work / "affwild2", work / "encoder.pt")
    crops = np.stack([read_face_image(p, 112) for p in
                      sorted((work / "affwild2" / IMAGE_DIR / fidelity.VIDEOS["train"]).glob("*.jpg"))])
    return work, encoder, crops


def offset_encoder(encoder: Path, path: Path, channels: slice) -> Path:
    """The encoder with some embedding dimensions turned into a constant 1 plus a spread of 1e-6: dimensions
    whose size dwarfs their spread, as a briefly fine-tuned DDAMFN gives."""
    model = create_model("ddamfn", str(encoder), device="cpu").model
    with torch.no_grad():
        model.net.Linear.bn.weight[channels] = 1e-6
        model.net.Linear.bn.bias[channels] = 1.0
    return save_checkpoint(path, model, {"note": "test encoder with offset dimensions"})


def train_heads(work: Path, encoder: Path, out: str) -> subprocess.CompletedProcess:
    args = ["--root", work / "affwild2", "--tasks", "va,expr,au", "--epochs", 1, "--no-corrections", "--device",
            "cpu", "--workers", 0, "--no-progress", "--cache", work / f"cache-{out}", "--model", "ddamfn-heads",
            "--weights", encoder, "--out", work / out, "--lr", 3e-3, "--batch-size", 64]
    env = {"AFFECTLENS_DB_URL": f"sqlite:///{work / 'no-database.db'}", "HF_HUB_OFFLINE": "1",
           "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "training", "train", *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True)


def outputs(model, x: torch.Tensor, batch: int, threads: int) -> dict[str, torch.Tensor]:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.no_grad():
            parts = [model(x[i:i + batch]) for i in range(0, len(x), batch)]
    finally:
        torch.set_num_threads(before)
    return {t: torch.cat([p[t] for p in parts]) for t in ("va", "expr", "au")}


def test_trained_heads_answer_alike_at_any_batch_size_and_thread_count(face_set):
    work, encoder, crops = face_set
    run = train_heads(work, offset_encoder(encoder, work / "half-offset.pt", slice(0, 256)), "half")
    assert run.returncode == 0, run.stderr
    loaded = create_model("ddamfn", str(work / "half" / "best.pt"), device="cpu")
    x = loaded.preprocess(crops)
    assert len(x) == 64
    reference = outputs(loaded.model, x, 64, 1)
    for batch, threads in ((1, 1), (16, 1), (64, 2), (1, 2), (16, 2)):
        other = outputs(loaded.model, x, batch, threads)
        for task, ref in reference.items():
            spread = ref.max(0).values - ref.min(0).values
            assert ((other[task] - ref).abs() / spread).max().item() < 1e-4, (task, batch, threads)


def test_heads_that_would_magnify_rounding_are_not_saved(face_set):
    """Every dimension a constant plus 1e-6: whatever heads fit the labels answer float32 rounding."""
    work, encoder, _ = face_set
    run = train_heads(work, offset_encoder(encoder, work / "all-offset.pt", slice(None)), "all")
    assert run.returncode == 1
    assert "error: the trained heads are ill-conditioned: they magnify float32 rounding of the embedding" in run.stderr
    assert not (work / "all" / "best.pt").exists() and not (work / "all" / "last.pt").exists()


def test_checkpoints_saved_before_the_check_still_load_and_the_fidelity_benchmark_retrains_its_own(tmp_path):
    """A DDAMFN-heads checkpoint as the recipe saved it before the check (weights of 1e6 on a dimension, no
    heads_amplification record) loads as it was; benchmarks/fidelity.py trains its checkpoint again."""
    model = create_model("ddamfn", None, device="cpu").model
    with torch.no_grad():
        model.task_heads.layers["va"].weight[:, 7] = 1e6
    path = save_checkpoint(tmp_path / "best.pt", model, {"note": "saved before issue 31.1"})
    loaded = create_model("ddamfn", str(path), device="cpu")
    assert loaded.info.source == str(path) and loaded.info.untrained_tasks == ()
    assert torch.equal(loaded.model.task_heads.layers["va"].weight, model.task_heads.layers["va"].weight)
    assert not fidelity.conditioned(path)
    assert not fidelity.conditioned(tmp_path / "missing.pt")
    fixed = save_checkpoint(tmp_path / "fixed.pt", model, {"heads_amplification": {"va": 12.0}})
    assert fidelity.conditioned(fixed)
