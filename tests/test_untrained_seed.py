"""Untrained means reproducible: random weights come from a fixed seed per architecture, so two processes
loading the same untrained configuration get the same weights (the content keys that name a stored
analysis, and so reuse it after a restart) and the same outputs; the caller's random state is left alone."""
import json
import subprocess
import sys
from pathlib import Path

import torch

from core.models import create_model, random_seed
from core.predict import load_models

REPO = Path(__file__).resolve().parents[1]
PROBE = """
import json, torch
from core.predict import load_models
loaded = load_models(("lstm", "clip"), device="cpu")
x = torch.linspace(0, 1, 2 * 3 * 112 * 112).reshape(2, 3, 112, 112)
emb = loaded.models["ddamfn"].model.embed(x)
print(json.dumps({"keys": loaded.weight_keys(), "embedding": emb.flatten()[:16].tolist()}))
"""


def _in_a_new_process() -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, check=True,
                         env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1",
                              "AFFECTLENS_RUNTIME": "torch"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_two_processes_draw_the_same_untrained_weights_and_outputs():
    first, second = _in_a_new_process(), _in_a_new_process()
    assert first == second and set(first["keys"]) == {"ddamfn", "lstm", "clip"}
    here = load_models(("lstm", "clip"), device="cpu").weight_keys()
    assert here == first["keys"]


def test_the_seed_is_per_architecture_and_leaves_the_callers_random_state_alone():
    assert len({random_seed(n) for n in ("ddamfn", "lstm", "clip", "clip-adapter")}) == 4
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    create_model("ddamfn", None, device="cpu")
    assert torch.equal(torch.rand(3), expected)
