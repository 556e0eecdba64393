"""The front door to AffectLens models: `create_model(name, weights, device)` returns the model in eval
mode on its device, the preprocessing that feeds it, and what it is (ModelInfo).

    loaded = create_model("ddamfn", weights="hf://owner/repo/ddamfn.pt")
    out = loaded.model(loaded.preprocess(face_crops_uint8))     # dict: embedding, va, expr, au, ...

Each model file registers its builder (and the model cards an analysis runs) in core.registry beside its
class: "ddamfn"; "lstm" (aliases "ddamfn-lstm", "clip-lstm"); "clip" (zero-shot, or a trained adapter
checkpoint); "clip-adapter" (alias "clip-prompted"). `weights=None` builds random weights and
info.untrained is True; see core/weights for the accepted specs.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from core import registry
from core.device import pick_device, prepare
from core.models.ddamfn import DDAMFN                       # registers first: cards list in import order
from core.models.temporal import TemporalLSTM               # isort: skip
from core.models.clip import ClipAdapter, ClipExpression    # isort: skip
from core.weights import WeightsError, label_order


@dataclass(frozen=True)
class ModelInfo:
    name: str                         # registry name, e.g. "ddamfn"
    source: str                       # weights spec it was loaded from, or "random"
    untrained: bool                   # True when any output of the model comes from random weights
    tasks: tuple[str, ...]
    label_order: dict                 # task -> output names in order
    metadata: dict = field(default_factory=dict)   # the checkpoint's metadata (training, metrics, ...)
    untrained_tasks: tuple[str, ...] = ()           # the tasks whose heads are random


@dataclass
class LoadedModel:
    model: torch.nn.Module            # eval mode, on `device`
    preprocess: Callable              # uint8 face crops (embeddings for "lstm") -> model input on device
    info: ModelInfo
    device: torch.device


def _face_input(model, device) -> Callable:
    """uint8 face crops -> the model's normalised input on `device`."""
    return lambda frames: model.preprocess(frames, device)


def _embedding_input(model, device) -> Callable:
    """Per-frame embeddings (N, D), numpy or torch -> float32 tensor on `device`."""
    def to_device(emb):
        emb = emb if torch.is_tensor(emb) else torch.from_numpy(np.asarray(emb, dtype=np.float32))
        return emb.to(device=device, dtype=torch.float32)
    return to_device


def create_model(name: str, weights=None, device: str | torch.device = "auto", **options) -> LoadedModel:
    """Build model `name` with `weights` (None: random, untrained) on `device` ("auto": cuda if present).

    `options` go to the constructor when building from scratch (e.g. tasks=("va",), input_dim=...);
    `tasks` also picks the outputs of an upstream DDAMFN checkpoint. Raises WeightsError (one line)
    when the weights cannot be had or do not fit, ValueError for an unknown name.
    """
    arch = registry.architecture(name)
    dev = pick_device(device)
    model, source, random_tasks, metadata = arch.build(weights, **options)
    model = prepare(model, dev)
    tasks = tuple(getattr(model, "tasks", ()))
    info = ModelInfo(name=arch.name, source=source, untrained=bool(random_tasks), tasks=tasks,
                     label_order=label_order(tasks), metadata=metadata, untrained_tasks=tuple(random_tasks))
    preprocess = (_embedding_input if arch.reads_embeddings else _face_input)(model, dev)
    return LoadedModel(model=model, preprocess=preprocess, info=info, device=dev)


__all__ = ["ClipAdapter", "ClipExpression", "DDAMFN", "LoadedModel", "ModelInfo", "TemporalLSTM", "WeightsError",
           "create_model"]
