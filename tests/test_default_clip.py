"""CLIP's default weights: ViT-B-32 `openai` from the Hugging Face cache when nothing is configured, random
(reported untrained) within seconds when the Hub cannot be reached. No test reaches a network."""
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import open_clip
import pytest
import torch

from core.analyze import main as analyze
from core.models import create_model
from core.weights import default_clip_weights
from webapp.config import AppConfig

REPO = Path(__file__).resolve().parents[1]
SPEC = "open_clip:ViT-B-32:openai"


def fill_hub_cache(cache: Path) -> dict[str, torch.Tensor]:
    """ViT-B-32 weights (random, fp16) where huggingface_hub keeps open_clip's `openai` tag of ViT-B-32:
    <cache>/models--timm--vit_base_patch32_clip_224.openai/{refs/main, snapshots/<commit>/<file>}."""
    from safetensors.torch import save_file

    repo_id = open_clip.get_pretrained_cfg("ViT-B-32", "openai")["hf_hub"].rstrip("/")
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    state = {k: v.half().contiguous() for k, v in open_clip.create_model("ViT-B-32").state_dict().items()}
    save_file(state, repo / "snapshots" / commit / "open_clip_model.safetensors")
    return state


def run_analyze(media_dir: Path, out: Path, capsys) -> tuple[dict, str]:
    code = analyze([str(media_dir / "single_face.mp4"), "--out", str(out), "--models", "clip", "--device", "cpu",
                    "--max-frames", "4"])
    err = capsys.readouterr().err
    assert code == 0, err
    return json.loads(out.with_suffix(".run.json").read_text())["models"]["clip"], err


def test_default_clip_comes_from_the_hub_cache(tmp_path, monkeypatch, media_dir, capsys):
    import huggingface_hub.constants

    written = fill_hub_cache(tmp_path / "hub")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")          # the cache alone must do

    spec, note = default_clip_weights("ViT-B-32")
    assert spec == SPEC and note == f"CLIP: no weights configured: using the default {SPEC}"
    config = AppConfig.from_env({})
    assert config.weights["clip"] == SPEC and note in config.startup_log()
    loaded = create_model("clip", weights=spec, device="cpu")
    assert loaded.info.source == SPEC and not loaded.info.untrained
    conv = loaded.model.model.visual.conv1.weight
    assert torch.equal(conv, written["visual.conv1.weight"].float())     # the cached file's weights

    clip, err = run_analyze(media_dir, tmp_path / "preds.csv", capsys)
    assert clip["source"] == SPEC and clip["untrained"] is False and note in err


def test_offline_with_an_empty_cache_falls_back_to_random_quickly(tmp_path, monkeypatch, media_dir, capsys):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    spec, note = default_clip_weights("ViT-B-32")
    assert time.monotonic() - start < 5
    assert spec is None and note.endswith("CLIP is random, untrained") and "HF_HUB_OFFLINE is set" in note
    config = AppConfig.from_env({})
    assert config.weights["clip"] is None and note in config.startup_log()

    clip, err = run_analyze(media_dir, tmp_path / "preds.csv", capsys)
    assert clip["source"] == "random" and clip["untrained"] is True
    assert note in err and "untrained (random) models: clip" in err


def test_no_network_falls_back_to_random_quickly(tmp_path):
    """Offline not declared, the Hub endpoint refusing connections: a fresh process, as a Space or a
    laptop on a train starts."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items()
           if k not in ("HF_HUB_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")}
    env.update(HF_HUB_CACHE=str(tmp_path / "hub"), HF_ENDPOINT=f"http://127.0.0.1:{closed_port}")
    script = ("import json, time, open_clip\n"
              "from core.weights import default_clip_weights\n"
              "start = time.monotonic()\n"
              "spec, note = default_clip_weights('ViT-B-32')\n"
              "print(json.dumps([spec, note, time.monotonic() - start]))\n")
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    spec, note, seconds = json.loads(proc.stdout.splitlines()[-1])
    assert spec is None and seconds < 5, (note, seconds)
    assert "127.0.0.1 is unreachable" in note and note.endswith("CLIP is random, untrained")
