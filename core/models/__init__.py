"""The front door to AffectLens models: `create_model(name, weights, device)` returns the model in eval
mode on its device, the preprocessing that feeds it, and what it is (ModelInfo).

    loaded = create_model("ddamfn", weights="hf://owner/repo/ddamfn.pt")
    out = loaded.model(loaded.preprocess(face_crops_uint8))     # dict: embedding, va, expr, au, ...

Names (see MODEL_NAMES): "ddamfn"; "lstm" (aliases "ddamfn-lstm", "clip-lstm"); "clip" (zero-shot, or a
trained adapter checkpoint); "clip-adapter" (alias "clip-prompted"). `weights=None` builds random weights
and info.untrained is True; see core/weights for the accepted specs.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from core.device import pick_device, prepare
from core.labels import TASKS
from core.models.clip import DEFAULT_MODEL as DEFAULT_CLIP_MODEL, ClipAdapter, ClipExpression
from core.models.ddamfn import DDAMFN
from core.models.temporal import TemporalLSTM
from core.weights import (UPSTREAM_DDAMFN, WeightsError, label_order, load_checkpoint, load_state, parse_spec,
                          read_checkpoint, resolve)


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


def _check_loaded(ckpt, tasks, options) -> None:
    """Constructor options only apply to random models; asked-for tasks must exist in the checkpoint."""
    if options:
        raise TypeError(f"options {sorted(options)} apply when building without weights, not to {ckpt.source}")
    have = ckpt.config.get("tasks") or ()
    lacking = [t for t in (tasks or ()) if t not in have]
    if lacking:
        raise WeightsError(f"{ckpt.source} has no {', '.join(lacking)} head (its tasks: {', '.join(have)})")


def _build_ddamfn(weights, tasks=None, **options):
    """Random DDAMFN, one of our checkpoints, or an upstream DDAMNet checkpoint (AffectNet/RAF-DB order
    classifier mapped to Aff-Wild2 expressions; va/au heads only when asked for, and then random)."""
    if weights is None:
        model = DDAMFN(tasks=tasks or TASKS, **options)
        return model, "random", model.tasks, {}
    ckpt = load_checkpoint(weights, architecture="ddamfn")
    if ckpt.architecture == UPSTREAM_DDAMFN:
        if options:
            raise TypeError(f"options {sorted(options)} do not apply to the upstream checkpoint {ckpt.source}")
        tasks = tasks or ("expr",)
        model = DDAMFN(tasks=tasks, expr_from_fc="expr" in tasks, **ckpt.config)
        load_state(model.net, ckpt.state_dict, ckpt.source)
        random_tasks = tuple(t for t in model.tasks if t != "expr")
        meta = {**ckpt.metadata, "expr_source": "upstream fc, AffectNet order mapped to Aff-Wild2 by "
                "core.labels.AFFECTNET8_TO_AFFWILD2; Contempt dropped; Other has no source (scored as "
                "the row minimum, never predicted)"}
        return model, ckpt.source, random_tasks, meta
    _check_loaded(ckpt, tasks, options)
    model = DDAMFN(**ckpt.config)
    load_state(model, ckpt.state_dict, ckpt.source)
    return model, ckpt.source, (), ckpt.metadata


def _build_lstm(weights, tasks=None, **options):
    if weights is None:
        model = TemporalLSTM(tasks=tasks or TASKS, **options)
        return model, "random", model.tasks, {}
    ckpt = load_checkpoint(weights, architecture="lstm")
    _check_loaded(ckpt, tasks, options)
    model = TemporalLSTM(**ckpt.config)
    load_state(model, ckpt.state_dict, ckpt.source)
    return model, ckpt.source, (), ckpt.metadata


def _build_clip(weights, model_name: str = DEFAULT_CLIP_MODEL, prompts="basic"):
    """Zero-shot CLIP (random, an open_clip tag such as "openai" or "ViT-B-32:openai", or an open_clip
    weight file), or a trained ClipAdapter when `weights` is one of our clip-adapter checkpoints."""
    import open_clip

    if weights is None:
        model = ClipExpression(model_name, None, prompts)
        return model, "random", model.tasks, {}
    src = parse_spec(weights)
    bare_tag = src.kind == "file" and not src.path.exists()
    if bare_tag and src.spec in open_clip.list_pretrained_tags_by_model(model_name):
        src = parse_spec(f"open_clip:{model_name}:{src.spec}")
    if src.kind == "open_clip":
        model = ClipExpression(src.model_name, src.pretrained, prompts)
        meta = {"open_clip": {"model_name": src.model_name, "pretrained": src.pretrained}}
        return model, src.spec, model.tasks if model.untrained else (), meta
    path = resolve(src.spec).path
    ckpt = read_checkpoint(path, source=src.spec)
    if ckpt.architecture == ClipAdapter.ARCH:
        return _adapter_from_checkpoint(ckpt)
    if ckpt.architecture != "state_dict":
        raise WeightsError(f"{src.spec} is a {ckpt.architecture} checkpoint, not CLIP weights")
    model = ClipExpression(model_name, str(path), prompts)
    return model, src.spec, (), {"open_clip": {"model_name": model_name, "pretrained": src.spec}}


def _adapter_from_checkpoint(ckpt):
    model = ClipAdapter(**ckpt.config)
    missing, unexpected = model.load_checkpoint_state_dict(ckpt.state_dict)
    if missing or unexpected:
        raise WeightsError(f"{ckpt.source} does not fit ClipAdapter: missing {missing[:3]}, "
                           f"unexpected {unexpected[:3]}")
    return model, ckpt.source, (), ckpt.metadata


def _build_clip_adapter(weights, model_name: str = DEFAULT_CLIP_MODEL, pretrained: str | None = None,
                        **options):
    """A fresh adapter on CLIP `model_name`/`pretrained` (zero-initialised: it predicts like zero-shot
    CLIP until trained, so it is untrained only when CLIP itself is random), or one of our checkpoints."""
    if weights is None:
        model = ClipAdapter(model_name, pretrained, **options)
        return model, "random", model.tasks if model.untrained else (), {}
    ckpt = load_checkpoint(weights, architecture=ClipAdapter.ARCH)
    if options or pretrained is not None:
        raise TypeError(f"options apply when building without weights, not to {ckpt.source}")
    return _adapter_from_checkpoint(ckpt)


def _face_input(model, device) -> Callable:
    """uint8 face crops -> the model's normalised input on `device`."""
    return lambda frames: model.preprocess(frames, device)


def _embedding_input(model, device) -> Callable:
    """Per-frame embeddings (N, D), numpy or torch -> float32 tensor on `device`."""
    def to_device(emb):
        emb = emb if torch.is_tensor(emb) else torch.from_numpy(np.asarray(emb, dtype=np.float32))
        return emb.to(device=device, dtype=torch.float32)
    return to_device


# name -> (builder, input preparation factory (model, device) -> callable)
_REGISTRY: dict[str, tuple[Callable, Callable]] = {
    "ddamfn": (_build_ddamfn, _face_input),
    "lstm": (_build_lstm, _embedding_input),
    "clip": (_build_clip, _face_input),
    "clip-adapter": (_build_clip_adapter, _face_input),
}
_ALIASES = {"ddamfn-lstm": "lstm", "clip-lstm": "lstm", "clip-prompted": "clip-adapter"}
MODEL_NAMES = tuple(_REGISTRY) + tuple(_ALIASES)


def create_model(name: str, weights=None, device: str | torch.device = "auto", **options) -> LoadedModel:
    """Build model `name` with `weights` (None: random, untrained) on `device` ("auto": cuda if present).

    `options` go to the constructor when building from scratch (e.g. tasks=("va",), input_dim=...);
    `tasks` also picks the outputs of an upstream DDAMFN checkpoint. Raises WeightsError (one line)
    when the weights cannot be had or do not fit, ValueError for an unknown name.
    """
    key = _ALIASES.get(name, name)
    if key not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(MODEL_NAMES)}")
    builder, make_preprocess = _REGISTRY[key]
    dev = pick_device(device)
    model, source, random_tasks, metadata = builder(weights, **options)
    model = prepare(model, dev)
    tasks = tuple(getattr(model, "tasks", ()))
    info = ModelInfo(name=key, source=source, untrained=bool(random_tasks), tasks=tasks,
                     label_order=label_order(tasks), metadata=metadata, untrained_tasks=tuple(random_tasks))
    return LoadedModel(model=model, preprocess=make_preprocess(model, dev), info=info, device=dev)


__all__ = ["MODEL_NAMES", "ClipAdapter", "ClipExpression", "DDAMFN", "LoadedModel", "ModelInfo", "TemporalLSTM",
           "WeightsError", "create_model"]
