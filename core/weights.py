"""Where model weights come from, and the checkpoint format we write.

A weights spec is one of:
  - a local file path (our checkpoint, an upstream DDAMFN checkpoint, or an open_clip state dict),
  - `hf://<owner>/<repo>/<path in repo>`: a file on the Hugging Face Hub, downloaded once into the Hub
    cache and read from there offline (`HF_HUB_OFFLINE=1` is honoured when asked, not only at import),
  - for CLIP, `open_clip:<model name>:<pretrained tag>` (or `<model name>:<tag>`, e.g. `ViT-B-32:openai`),
  - `ddamfn:<name>`: a file the DDAMFN authors publish (core.upstream.NAMED: ddamfn:affectnet8, ...),
    downloaded once into the same cache folder, its git blob id checked, read from there offline.
Every failure is a WeightsError with one line naming what was asked for. Offline or with the Hub out of
reach, nothing waits on network retries: only the local cache is consulted.

Our checkpoints are `torch.save` dicts holding everything needed to rebuild the model: architecture,
constructor config, state dict, metadata (tasks, label order, preprocessing, training summary, metrics,
AU thresholds, ...) and optionally the optimizer state. Upstream DDAMFN checkpoints
(`{'model_state_dict', 'iter', 'optimizer_state_dict'}`, with or without DataParallel `module.` prefixes)
are recognised and read as architecture "ddamfn-upstream". Upstream's pretrained backbone
(`pretrained/MFN_msceleb.pth`, ddamfn:msceleb) is a whole pickled MixedFeatureNet module, not a state dict:
it is read without running any of the file's code (_read_pickled_module) as architecture
"ddamfn-backbone", the state of DDAMNet's `features`.
"""
from __future__ import annotations

import _compat_pickle
import datetime as _dt
import os
import pickle
import types
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from urllib.error import HTTPError
from urllib.parse import urlparse
from urllib.request import urlopen

import numpy as np
import torch

from core import settings, upstream
from core.labels import AUS, EXPRESSIONS, VA_NAMES

FORMAT = "affectlens-checkpoint"
FORMAT_VERSION = 1
UPSTREAM_DDAMFN = "ddamfn-upstream"
UPSTREAM_BACKBONE = "ddamfn-backbone"   # upstream's MixedFeatureNet (MFN_msceleb.pth): DDAMNet's `features`
HF_PREFIX = "hf://"
OPEN_CLIP_PREFIX = "open_clip:"
HUB_TIMEOUT_S = 3.0          # seconds to wait for the Hub before falling back to the cache
DEFAULT_CLIP_TAG = "openai"     # CLIP weights used when none are configured, where the Hub can be reached
DEFAULT_DDAMFN = "ddamfn:affectnet8"   # DDAMFN weights used when none are configured, where they can be had


class WeightsError(RuntimeError):
    """Weights could not be found, read or matched; the message is one line naming what was asked."""


@dataclass(frozen=True)
class WeightSource:
    """A resolved weights spec: `path` is a local file (for kind "file" and "hf", and for "open_clip"
    once its weights are in the cache); open_clip sources also carry the model name, tag and tag config."""

    kind: str                       # "file" | "hf" | "open_clip" | "named"
    spec: str                       # as asked for
    path: Path | None = None
    model_name: str | None = None
    pretrained: str | None = None
    tag_cfg: dict = field(default_factory=dict)


@dataclass
class Checkpoint:
    architecture: str               # "ddamfn", "lstm", "clip-adapter", "ddamfn-upstream" or "ddamfn-backbone"
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
    if text.startswith(upstream.PREFIX) and not os.path.exists(text):
        if upstream.lookup(text) is None:
            raise WeightsError(f"{text}: no such named weights (known: "
                               f"{', '.join(upstream.PREFIX + n for n in upstream.NAMED)})")
        return WeightSource("named", text)
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
    if src.kind == "named":
        return WeightSource("named", src.spec, path=_named_file(src.spec))
    return _resolve_open_clip(src)


def _named_file(spec: str) -> Path:
    """The verified local copy of a named upstream file, downloaded first when it is not in the cache;
    a file whose git blob id is not the table's is refused (a download of it is not kept)."""
    named = upstream.lookup(spec)
    path, url = upstream.cache_path(named), upstream.url(named)
    if path.is_file():
        found = upstream.blob_id(path.read_bytes())
        if found != named.blob:
            raise WeightsError(f"{spec}: {path} is not upstream's file (git blob id {found}, expected "
                               f"{named.blob}): delete it, or put {url} there")
        return path
    advice = f"download {url} and put it at {path}"
    if settings.hub_offline():
        raise WeightsError(f"{spec}: not in the local cache and HF_HUB_OFFLINE is set: {advice}")
    try:
        with urlopen(url, timeout=HUB_TIMEOUT_S) as response:
            data = response.read()
    except HTTPError as e:
        raise WeightsError(f"{spec}: {url} answers HTTP {e.code}: {advice}") from None
    except OSError as e:
        raise WeightsError(f"{spec}: not in the local cache and {urlparse(url).hostname} is unreachable "
                           f"({_first_line(e)}): {advice}") from None
    found = upstream.blob_id(data)
    if found != named.blob:
        raise WeightsError(f"{spec}: the file at {url} is not upstream's (git blob id {found}, expected "
                           f"{named.blob}); nothing was kept")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")     # two processes fetching at once never mix
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


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
    """The CLIP weights to use when none are configured, and a line for the log saying which:
    `open_clip:<model_name>:openai` (see _default)."""
    return _default("CLIP", f"{OPEN_CLIP_PREFIX}{model_name}:{DEFAULT_CLIP_TAG}")


def default_ddamfn_weights(_clip_model: str | None = None) -> tuple[str | None, str]:
    """The DDAMFN weights to use when none are configured, and a line for the log saying which: the
    authors' AffectNet-8 checkpoint (see _default), whose expression head is trained (va and au random)."""
    return _default("DDAMFN", DEFAULT_DDAMFN)


def _default(label: str, spec: str) -> tuple[str | None, str]:
    """`spec`, downloaded into the cache now when its server can be reached (or found there offline), so
    that a first visitor sees real predictions; otherwise None (random, reported as untrained) so that an
    offline machine still starts. The app and `core.analyze` both ask here (core.registry)."""
    try:
        resolve(spec)
    except WeightsError as e:
        return None, f"{label}: no weights configured and the default cannot be had ({e}): {label} is random, untrained"
    return spec, f"{label}: no weights configured: using the default {spec}"


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
    if src.kind == "named":
        _describe_named(ckpt, upstream.lookup(src.spec))
    kind = "ddamfn" if ckpt.architecture in (UPSTREAM_DDAMFN, UPSTREAM_BACKBONE) else ckpt.architecture
    if architecture is not None and kind != architecture:
        raise WeightsError(f"{src.spec} is a {ckpt.architecture} checkpoint, not a {architecture} one")
    return ckpt


def _describe_named(ckpt: Checkpoint, named: upstream.Named) -> None:
    """What the table knows of a named file, in the checkpoint read from it: the classifier's order (the
    file cannot say whether 7 classes are AffectNet's or RAF-DB's), the data and upstream's figure."""
    ckpt.metadata.update({"named": upstream.PREFIX + named.name, "trained_on": named.trained_on,
                          "upstream_figure": named.figure, "address": upstream.url(named)})
    if named.classes is not None:
        ckpt.config["fc_classes"] = list(named.classes)
        ckpt.metadata["classifier_order"] = list(named.classes)


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
    if isinstance(obj, _Pickled):
        return _backbone_checkpoint(obj, source)
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
    """The file's object, weights only; a whole pickled module (whose classes torch refuses) as _Pickled."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:   # truncated zip, pickle error, refused global, I/O error, ...
        error = e
    if "Unsupported global" in str(error):
        try:
            return _read_pickled_module(path)
        except Exception as e:
            error = e
    raise WeightsError(f"cannot read weights file {source}: corrupt, truncated or not a PyTorch "
                       f"checkpoint ({error.__class__.__name__}: {_first_line(error)})") from None


class _Pickled:
    """Stands in for every class a pickled module names: the class's code is never imported or run; the
    object only keeps the state pickle gives it (for an nn.Module: _parameters, _buffers, _modules)."""

    def __init__(self, *args):
        self.args = args
        self.state = {}

    def __setstate__(self, state):
        self.state = state if isinstance(state, dict) else {}


class _ModuleUnpickler(pickle.Unpickler):
    """Resolves what torch's weights-only loader allows (tensor and storage rebuilding, OrderedDict, ...);
    any other class becomes a _Pickled subclass of the same name."""

    def find_class(self, module, name):
        from torch._weights_only_unpickler import _get_allowed_globals

        if (module, name) in _compat_pickle.NAME_MAPPING:          # Python 2 names, as pickle maps them
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        allowed = _get_allowed_globals().get(f"{module}.{name}")
        return allowed if allowed is not None else type(name, (_Pickled,), {"pickled_as": f"{module}.{name}"})


_MODULE_PICKLE = types.SimpleNamespace(Unpickler=_ModuleUnpickler, __name__="affectlens_module_pickle",
                                       load=lambda f, **kw: _ModuleUnpickler(f, **kw).load())


def _read_pickled_module(path: Path):
    """A file written by torch.save(module) (zip or legacy format), as _Pickled objects. The legacy format
    also stores each class's source text, which torch compares with the stand-ins' (none): not a problem."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Couldn't retrieve source code for container")
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_MODULE_PICKLE)


def _module_state(obj: _Pickled, prefix: str = "") -> dict[str, torch.Tensor]:
    """A pickled module's state dict, named as its Module.state_dict() would name it."""
    state = obj.state
    skip = set(state.get("_non_persistent_buffers_set") or ())
    out = {prefix + k: v.detach() for k, v in (state.get("_parameters") or {}).items() if v is not None}
    out.update({prefix + k: v for k, v in (state.get("_buffers") or {}).items() if v is not None and k not in skip})
    for name, child in (state.get("_modules") or {}).items():
        if isinstance(child, _Pickled):
            out.update(_module_state(child, f"{prefix}{name}."))
    return out


def _backbone_checkpoint(obj: _Pickled, source: str) -> "Checkpoint":
    """Upstream's pickled MixedFeatureNet as the state of DDAMNet's `features`: upstream's DDAMNet keeps
    the module's children but its last four (`features.<i>` is the i-th child)."""
    children = list(obj.state.get("_modules") or {})
    state = _module_state(obj)
    needed = ("conv1.conv.weight", "conv_6_sep.conv.weight", "linear.weight")
    if not all(k in state for k in needed):
        raise WeightsError(f"{source} is a pickled {type(obj).pickled_as} module, not upstream's MixedFeatureNet "
                           "backbone: AffectLens cannot use it")
    index = {name: i for i, name in enumerate(children[:-4])}
    features = {f"features.{index[k.split('.', 1)[0]]}.{k.split('.', 1)[1]}": v for k, v in state.items()
                if k.split(".", 1)[0] in index}
    meta = {"architecture": UPSTREAM_BACKBONE, "upstream": "github.com/SainingZhang/DDAMFN",
            "pickled_as": type(obj).pickled_as}
    return Checkpoint(UPSTREAM_BACKBONE, {}, features, meta, source)


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
