"""Deterministic random weights for model tests, in the formats real checkpoints use.

`fill_state` turns a list of (name, shape) into a reproducible state dict whose scales keep a deep
random network numerically tame; `calibrate_bn` then sets every BatchNorm's running statistics from one
batch, so that a random network's outputs depend on its input as a trained one's do.
tests/ddamfn_upstream_reference.json holds upstream DDAMNet's parameter names and shapes and the logits
upstream code computed for weights and input made by these two functions (see that file's "how").
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch

UPSTREAM_REFERENCE = Path(__file__).with_name("ddamfn_upstream_reference.json")


def fill_state(keys_shapes, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in keys_shapes:
        leaf = name.rsplit(".", 1)[-1]
        if leaf == "num_batches_tracked":
            out[name] = torch.tensor(0)
            continue
        if leaf == "running_mean":
            t = 0.1 * torch.randn(shape, generator=g)
        elif leaf == "running_var":
            t = 1.0 + 0.5 * torch.rand(shape, generator=g)
        elif leaf == "bias":
            t = 0.05 * torch.randn(shape, generator=g)
        elif "prelu" in name:
            t = 0.25 + 0.05 * torch.randn(shape, generator=g)
        elif len(shape) == 1:
            t = 1.0 + 0.1 * torch.randn(shape, generator=g)
        else:
            t = torch.randn(shape, generator=g) / math.sqrt(math.prod(shape[1:]))
        out[name] = t
    return out


def calibrate_bn(model: torch.nn.Module, x: torch.Tensor) -> None:
    """Running stats = the statistics of batch x (one train-mode pass, cumulative averaging)."""
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        model(x)
    model.eval()


def seeded_images(seed: int, batch: int) -> torch.Tensor:
    return torch.randn(batch, 3, 112, 112, generator=torch.Generator().manual_seed(seed))


def upstream_reference() -> dict:
    return json.loads(UPSTREAM_REFERENCE.read_text())


def upstream_state(module_prefix: bool = False) -> dict[str, torch.Tensor]:
    """A random upstream DDAMNet (AffectNet-8 classifier) state dict in upstream's key order."""
    ref = upstream_reference()
    state = fill_state(ref["state"], seed=ref["reference"]["state_seed"])
    return {("module." if module_prefix else "") + k: v for k, v in state.items()}
