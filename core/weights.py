"""Where model weights come from, and the checkpoint format we write.

A weights spec is one of:
  - a local file path (our checkpoint, an upstream DDAMFN checkpoint, or an open_clip state dict),
  - `hf://<owner>/<repo>/<path in repo>`: a file on the Hugging Face Hub, downloaded once into the Hub
    cache and read from there offline (`HF_HUB_OFFLINE=1` is honoured when asked, not only at import),
  - for CLIP, `open_clip:<model name>:<pretrained tag>` (or `<model name>:<tag>`, e.g. `ViT-B-32:openai`).
Every failure is a WeightsError with one line naming what was asked for. Offline or with the Hub out of
reach, nothing waits on network retries: only the local cache is consulted.

Our checkpoints are `torch.save` dicts holding everything needed to rebuild the model: architecture,
constructor config, state dict, metadata (tasks, label order, preprocessing, training summary, metrics,
AU thresholds, ...) and optionally the optimizer state. Upstream DDAMFN checkpoints
(`{'model_state_dict', 'iter', 'optimizer_state_dict'}`, with or without DataParallel `module.` prefixes)
are recognised and read as architecture "ddamfn-upstream".
"""
from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import torch

from core import settings
from core.cards import UPSTREAM_DDAMFN
from core.labels import AUS, EXPRESSIONS, VA_NAMES

FORMAT = "affectlens-checkpoint"
FORMAT_VERSION = 1
HF_PREFIX = "hf://"
OPEN_CLIP_PREFIX = "open_clip:"
HUB_TIMEOUT_S = 3.0          # seconds to wait for the Hub before falling back to the cache
DEFAULT_CLIP_TAG = "openai"     # CLIP weights used when none are configured, where the Hub can be reached


class WeightsError(RuntimeError):
    """Weights could not be found, read or matched; the message is one line naming what was asked."""


@dataclass(frozen=True)
class WeightSource:
    """A resolved weights spec: `path` is a local file (for kind "file" and "hf", and for "open_clip"
    once its weights are in the cache); open_clip sources also carry the model name, tag and tag config."""

    kind: str                       # "file" | "hf" | "open_clip"
    spec: str                       # as asked for
    path: Path | None = None
    model_name: str | None = None
    pretrained: str | None = None
    tag_cfg: dict = field(default_factory=dict)


@dataclass
class Checkpoint:
    architecture: str               # "ddamfn", "lstm", "clip-adapter", or "ddamfn-upstream"
    config: dict                    # constructor keyword arguments
    state_dict: dict
    metadata: dict
    source: str                     # the spec it was loaded from
    optimizer_state_dict: dict | None = None


# ---------------------------------------------------------------------------------------------------
# Resolving a spec to a local file

def parse_spec(spec: str | os.PathLike) -> WeightSource:
    """Classify a spec without touching disk or network."""
    text = str(spec).strip()
    if not text:
        raise WeightsError("empty weights spec")
    if text.startswith(HF_PREFIX):
        parts = text[len(HF_PREFIX):].split("/", 2)
        if len(parts) < 3 or not all(parts):
            raise WeightsError(f"Hub weights must look like hf://owner/repo/file.pt, got {text!r}")
        return WeightSource("hf", text)
    if text.startswith(OPEN_CLIP_PREFIX):
        name, _, tag = text[len(OPEN_CLIP_PREFIX):].partition(":")
        return WeightSource("open_clip", text, model_name=name, pretrained=tag or None)
    name, sep, tag = text.partition(":")
    if sep and not os.path.exists(text) and _is_open_clip_model(name):
        return WeightSource("open_clip", text, model_name=name, pretrained=tag or None)
    return WeightSource("file", text, path=Path(text).expanduser())


def resolve(spec: str | os.PathLike) -> WeightSource:
    """Find the local file behind a spec, downloading Hub files into the Hub cache when online."""
    src = parse_spec(spec)
    if src.kind == "file":
        if not src.path.is_file():
            raise WeightsError(f"weights file not found: {src.spec}")
        return src
    if src.kind == "hf":
        owner, repo, filename = src.spec[len(HF_PREFIX):].split("/", 2)
        path = _hub_file(f"{owner}/{repo}", filename, src.spec)
        return WeightSource("hf", src.spec, path=path)
    return _resolve_open_clip(src)


def _hub_file(repo_id: str, filename: str, spec: str) -> Path:
    """One file from the Hub cache; when it is not there and the Hub is not declared offline, downloaded.
    huggingface_hub answers both: the cache lookup touches no network, and one metadata request without
    retries (hf_hub_download alone retries an unreachable Hub for about 20 s) says whether it can be had."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url
    from huggingface_hub.errors import EntryNotFoundError, HFValidationError

    try:
        return Path(hf_hub_download(repo_id, filename, local_files_only=True))
    except EntryNotFoundError:      # not in the cache (LocalEntryNotFoundError), or cached as missing
        pass
    except HFValidationError as e:  # a repository id the Hub cannot have: say so, not "not in the cache"
        raise WeightsError(f"{spec}: not a Hugging Face repository file ({_first_line(e)})") from None
    if settings.hub_offline():
        raise WeightsError(f"{spec}: not in the local Hugging Face cache and the Hub is offline "
                           "(HF_HUB_OFFLINE is set)")
    endpoint = settings.hub_endpoint()
    try:
        get_hf_file_metadata(hf_hub_url(repo_id, filename, endpoint=endpoint), timeout=HUB_TIMEOUT_S)
    except Exception as e:
        if _is_connection_error(e):
            raise WeightsError(f"{spec}: not in the local Hugging Face cache and {urlparse(endpoint).hostname} is "
                               f"unreachable ({_first_line(e)})") from None
        raise WeightsError(f"{spec}: the Hugging Face Hub refuses it ({e.__class__.__name__}: "
                           f"{_first_line(e)})") from None
    try:
        return Path(hf_hub_download(repo_id, filename, endpoint=endpoint, etag_timeout=HUB_TIMEOUT_S))
    except Exception as e:
        raise WeightsError(f"{spec}: cannot download from the Hugging Face Hub "
                           f"({e.__class__.__name__}: {_first_line(e)})") from None


def _is_connection_error(e: BaseException) -> bool:
    """Whether huggingface_hub failed to reach the endpoint at all (as opposed to an answer such as 404,
    which comes as HfHubHTTPError)."""
    from huggingface_hub.errors import HfHubHTTPError

    return not isinstance(e, HfHubHTTPError)


def state_key(modules, extra) -> str:
    """Content key of some modules' tensors (names, shapes, bytes) and a JSON-able extra: the same
    weights and preprocessing give the same key whatever file or heads they came with."""
    import hashlib
    import json

    h = hashlib.blake2b(digest_size=8)
    h.update(json.dumps(extra, sort_keys=True, default=str).encode())
    for module in modules:
        for name, t in sorted(module.state_dict().items()):
            t = t.detach().cpu().contiguous()
            h.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def check_loaded(ckpt: "Checkpoint", tasks, options) -> None:
    """Constructor options only apply to random models; asked-for tasks must exist in the checkpoint."""
    if options:
        raise TypeError(f"options {sorted(options)} apply when building without weights, not to {ckpt.source}")
    have = ckpt.config.get("tasks") or ()
    lacking = [t for t in (tasks or ()) if t not in have]
    if lacking:
        raise WeightsError(f"{ckpt.source} has no {', '.join(lacking)} head (its tasks: {', '.join(have)})")


def default_clip_weights(model_name: str) -> tuple[str | None, str]:
    """The CLIP weights to use when none are configured, and a line for the log saying which.

    `open_clip:<model_name>:openai`, downloaded into the Hub cache now when the Hub can be reached (or found
    there offline), so that a first visitor sees real CLIP predictions; otherwise None (random CLIP, reported
    as untrained) so that an offline machine still starts. The app and `core.analyze` both ask here.
    """
    spec = f"{OPEN_CLIP_PREFIX}{model_name}:{DEFAULT_CLIP_TAG}"
    try:
        resolve(spec)
    except WeightsError as e:
        return None, f"CLIP: no weights configured and the default cannot be had ({e}): CLIP is random, untrained"
    return spec, f"CLIP: no weights configured: using the default {spec}"


def _is_open_clip_model(name: str) -> bool:
    import open_clip

    return name in open_clip.list_models()


def _resolve_open_clip(src: WeightSource) -> WeightSource:
    """open_clip name + tag -> the tag's weight file in the Hub cache (or a local file given as tag)."""
    import open_clip

    name, tag = src.model_name, src.pretrained
    if name not in open_clip.list_models():
        raise WeightsError(f"{src.spec}: unknown open_clip model {name!r} (open_clip's own hf-hub: names are not "
                           f"supported; give a known architecture and an hf:// weight file)")
    if tag is None:
        return src
    if os.path.isfile(tag):
        return WeightSource("open_clip", src.spec, path=Path(tag), model_name=name, pretrained=tag)
    cfg = open_clip.get_pretrained_cfg(name, tag)
    if not cfg:
        known = ", ".join(open_clip.list_pretrained_tags_by_model(name)) or "none"
        raise WeightsError(f"{src.spec}: open_clip has no pretrained tag {tag!r} for {name} (known: {known})")
    hub = cfg.get("hf_hub")
    if not hub:
        raise WeightsError(f"{src.spec}: open_clip names no Hugging Face Hub file for this tag")
    if hub.endswith("/"):   # open_clip's convention: a repo id alone means its default file names
        repo_id, candidates = hub.rstrip("/"), ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
    else:
        repo_id, filename = os.path.split(hub)
        candidates = list(dict.fromkeys([str(Path(filename).with_suffix(".safetensors")), filename]))
    errors = []
    for candidate in candidates:
        try:
            path = _hub_file(repo_id, candidate, src.spec)
            return WeightSource("open_clip", src.spec, path=path, model_name=name, pretrained=tag, tag_cfg=cfg)
        except WeightsError as e:
            errors.append(str(e))
    raise WeightsError(errors[-1])


# ---------------------------------------------------------------------------------------------------
# Reading and writing checkpoints

def load_checkpoint(spec: str | os.PathLike, architecture: str | None = None) -> Checkpoint:
    """Resolve `spec` and read it as a checkpoint; with `architecture` ("ddamfn", "lstm",
    "clip-adapter") a checkpoint of another kind is an error (an upstream DDAMFN one counts as ddamfn)."""
    src = resolve(spec)
    if src.path is None:
        raise WeightsError(f"{src.spec} names open_clip weights, not a checkpoint file")
    ckpt = read_checkpoint(src.path, source=src.spec)
    kind = "ddamfn" if ckpt.architecture == UPSTREAM_DDAMFN else ckpt.architecture
    if architecture is not None and kind != architecture:
        raise WeightsError(f"{src.spec} is a {ckpt.architecture} checkpoint, not a {architecture} one")
    return ckpt


def read_checkpoint(path: Path, source: str | None = None) -> Checkpoint:
    """Read one checkpoint file (weights only: no code from the file runs)."""
    source = source or str(path)
    obj = _torch_load(path, source)
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        if obj.get("format_version", 0) > FORMAT_VERSION:
            raise WeightsError(f"{source} was written by a newer AffectLens "
                               f"(format {obj['format_version']} > {FORMAT_VERSION})")
        try:
            return Checkpoint(obj["architecture"], dict(obj["config"]), obj["model_state_dict"],
                              dict(obj.get("metadata") or {}), source, obj.get("optimizer_state_dict"))
        except KeyError as e:
            raise WeightsError(f"{source} is an incomplete AffectLens checkpoint (no {e.args[0]!r})") from None
    state = _upstream_ddamfn_state(obj)
    if state is not None:
        num_class = state["fc.weight"].shape[0]
        num_head = len({k.split(".")[0] for k in state if k.startswith("cat_head")})
        meta = {"architecture": UPSTREAM_DDAMFN, "upstream": "github.com/SainingZhang/DDAMFN",
                "classifier_classes": num_class, "iter": obj.get("iter") if "model_state_dict" in obj else None}
        return Checkpoint(UPSTREAM_DDAMFN, {"num_class": num_class, "num_head": num_head}, state, meta, source,
                          obj.get("optimizer_state_dict"))
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return Checkpoint("state_dict", {}, obj, {}, source)
    keys = list(obj)[:5] if isinstance(obj, dict) else type(obj).__name__
    raise WeightsError(f"{source} is not a checkpoint AffectLens knows (found {keys})")


def save_checkpoint(path: str | os.PathLike, model: torch.nn.Module, metadata: dict | None = None,
                    optimizer: torch.optim.Optimizer | None = None) -> Path:
    """Write `model` (which has ARCH and config) with its metadata; atomic (temp file then rename).

    Architecture, config, tasks, label order and preprocessing are filled in from the model; `metadata`
    adds the rest (training summary, metrics, AU thresholds, embedding source, ...). numpy values are
    stored as plain lists and numbers so the file loads with torch.load(weights_only=True).
    """
    path = Path(path)
    config = dict(model.config)
    tasks = tuple(config.get("tasks") or ())
    meta = {
        "architecture": model.ARCH,
        "tasks": list(tasks),
        "label_order": label_order(tasks),
        "preprocessing": getattr(model, "preprocessing", None),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "torch_version": torch.__version__,
        **(metadata or {}),
    }
    state = model.checkpoint_state_dict() if hasattr(model, "checkpoint_state_dict") else model.state_dict()
    obj = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "architecture": model.ARCH,
        "config": _plain(config),
        "model_state_dict": {k: v.detach().cpu() for k, v in state.items()},
        "metadata": _plain(meta),
    }
    if optimizer is not None:
        obj["optimizer_state_dict"] = optimizer.state_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)
    return path


def load_state(model: torch.nn.Module, state_dict: dict, source: str) -> None:
    """Strict load; a mismatch is one WeightsError line with the first differing names and shapes."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    wrong = [f"{k} {tuple(state_dict[k].shape)} vs {tuple(own[k].shape)}"
             for k in own if k in state_dict and state_dict[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        parts = [f"{label} {len(items)} ({', '.join(items[:3])}{', ...' if len(items) > 3 else ''})"
                 for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
                 if items]
        raise WeightsError(f"{source} does not fit {type(model).__name__}: {'; '.join(parts)}")
    model.load_state_dict(state_dict, strict=True)


def label_order(tasks) -> dict[str, list[str]]:
    """The output order of each task head, as stored in checkpoint metadata."""
    names = {"va": VA_NAMES, "expr": EXPRESSIONS, "au": AUS}
    return {t: list(names[t]) for t in tasks if t in names}


def _torch_load(path: Path, source: str):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:   # truncated zip, pickle error, refused global, I/O error, ...
        raise WeightsError(f"cannot read weights file {source}: corrupt, truncated or not a PyTorch "
                           f"checkpoint ({e.__class__.__name__}: {_first_line(e)})") from None


def _upstream_ddamfn_state(obj) -> dict | None:
    """The DDAMNet state dict inside an upstream checkpoint (without `module.`), or None."""
    if not isinstance(obj, dict):
        return None
    state = obj.get("model_state_dict", obj.get("state_dict", obj))
    if not isinstance(state, dict) or not state:
        return None
    if all(isinstance(k, str) and k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    needed = ("features.0.conv.weight", "cat_head0.CoordAtt.conv1.weight", "Linear.conv.weight", "fc.weight")
    return state if all(k in state for k in needed) else None


def _plain(obj):
    """Metadata as plain Python (lists, dicts, str, numbers, None): numpy/tensor values converted."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (np.ndarray, torch.Tensor)):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, str):
        return str(obj)   # plain str: subclasses such as torch's TorchVersion do not load weights-only
    if obj is None or isinstance(obj, (int, float, bool)):
        return obj
    raise TypeError(f"checkpoint metadata value of type {type(obj).__name__} is not plain data: {obj!r}")


def _first_line(e: BaseException) -> str:
    """The informative part of an exception message, on one line (torch's weights-only refusal buries
    its reason after a paragraph of advice)."""
    text = " ".join(str(e).split())
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1].split("Check the documentation", 1)[0].strip()
    return text[:200]
