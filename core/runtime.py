"""Where the face encoders (DDAMFN, CLIP's image tower) run on a CPU: eager torch, or OpenVINO fp32, which
ran DDAMFN 2.4-2.8x and CLIP 1.7x faster than eager torch here (benchmarks/RESULTS.md) with outputs that pass
the fidelity rule of benchmarks/runtimes.py. AFFECTLENS_RUNTIME says which:

    auto      OpenVINO on the CPU when it is installed; eager torch until an encoder's model is ready (default)
    torch     eager torch
    openvino  OpenVINO on the CPU; the first batch waits for the model; an error when OpenVINO is missing

A GPU always runs eager torch. An encoder's OpenVINO model is made once per weights: converted from the
torch module and kept in the data folder (runtimes/<encoder>-<content key>-openvino-<version>.xml/.bin; the
content key is core.weights.state_key of the weights and preprocessing, as a trained LSTM records it), then
read back from there by every later load. Conversion takes 9-110 s on a small CPU, so start() does it in a
background thread while eager torch serves. fp32 only: the CPU plugin is told f32 (it would pick bf16 by
itself on CPUs that have it) and weights are saved without fp16 compression. int8 is not offered: it failed
the fidelity rule on a checkpoint with a real signal (expression agreement 0.14).
"""
from __future__ import annotations

import atexit
import copy
import logging
import os
import tempfile
import threading
import weakref
from collections.abc import Callable, Mapping
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch

from core.settings import data_dir

RUNTIME_ENV = "AFFECTLENS_RUNTIME"
RUNTIMES = ("auto", "torch", "openvino")
TORCH = "torch"
FOLDER = "runtimes"                      # in the data folder

log = logging.getLogger(__name__)


def runtime_setting(env: Mapping[str, str] | None = None) -> str:
    """AFFECTLENS_RUNTIME (default auto); ValueError for anything else than auto, torch or openvino."""
    value = (os.environ if env is None else env).get(RUNTIME_ENV, "").strip().lower() or "auto"
    if value not in RUNTIMES:
        raise ValueError(f"{RUNTIME_ENV}={value!r} is not a runtime: use auto, torch or openvino")
    return value


def raw_encoder(model: torch.nn.Module) -> tuple[torch.nn.Module, str]:
    """The module and method that give an encoder's raw embeddings from a preprocessed batch (what a
    runtime must reproduce): DDAMFN.embed, or the CLIP image tower of a CLIP model or adapter."""
    if hasattr(model, "zero_shot_clip"):
        return model.zero_shot_clip, "encode_images"
    return model, "embed"


class Method(torch.nn.Module):
    """module.<method> as a module's forward, for conversion."""

    def __init__(self, module: torch.nn.Module, method: str):
        super().__init__()
        self.module, self.method = module, method

    def forward(self, x):
        return getattr(self.module, self.method)(x)


class Accelerated:
    """One encoder's OpenVINO model: made in a background thread (read from the disk cache, else converted
    and saved there), then run on preprocessed batches. `name` says what runs once it is ready."""

    def __init__(self, model: torch.nn.Module, size: int, folder: Path):
        self.ready = threading.Event()
        self.name = "openvino"
        self.error: str | None = None
        self.origin = ""                 # "cache" or "converted", once ready
        self.path: Path | None = None
        self._compiled = None
        self._lock = threading.Lock()    # one inference request, shared by the analyses of this process
        self._thread = threading.Thread(target=self._make, args=(model, size, folder), name="openvino-convert",
                                        daemon=True)
        self._thread.start()

    def _make(self, model: torch.nn.Module, size: int, folder: Path) -> None:
        try:
            import openvino as ov

            self.name = f"openvino {version('openvino')} fp32"
            kind = model.encoder_kind(adapted=False)
            self.path = folder / f"{kind}-{model.embedding_key(kind)}-openvino-{version('openvino')}.xml"
            with _START_LOCK:
                made = _MADE.setdefault(self.path, self)
            if made is not self:            # the same weights loaded again in this process: one model serves both
                made.ready.wait()
                self._compiled, self._lock = made._compiled, made._lock
                self.origin, self.error = made.origin, made.error
                return
            core = ov.Core()
            if self.path.exists() and self.path.with_suffix(".bin").exists():
                ov_model, self.origin = core.read_model(self.path), "cache"
            else:
                module, method = raw_encoder(copy.deepcopy(model).cpu().float().eval())
                example = torch.zeros(2, 3, size, size)
                with _CONVERT_LOCK, torch.no_grad():    # two conversions at once: a tracing of one failed
                    ov_model = ov.convert_model(Method(module, method).eval(), example_input=example,
                                                input=[ov.PartialShape([-1, 3, size, size])])
                self.origin = "converted"
                try:
                    _save(ov, ov_model, self.path)
                except OSError as err:      # a read-only data folder: this process runs it all the same
                    log.warning("the OpenVINO model could not be kept in %s (%s): it is converted again next time",
                                self.path.parent, err)
            self._compiled = core.compile_model(ov_model, "CPU", {"INFERENCE_PRECISION_HINT": "f32",
                                                                  "PERFORMANCE_HINT": "LATENCY",
                                                                  "INFERENCE_NUM_THREADS": torch.get_num_threads()})
            log.info("%s ready for %s (%s: %s)", self.name, kind, self.origin, self.path)
        except ImportError:
            self.error = "OpenVINO is not installed"
        except Exception as err:        # the encoder keeps running on eager torch, and says why
            self.error = f"OpenVINO could not run this encoder: {type(err).__name__}: {err}"
            log.warning(self.error)
        finally:
            self.ready.set()

    @property
    def usable(self) -> bool:
        return self.ready.is_set() and self._compiled is not None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Raw embeddings (B, D) float32 of a preprocessed batch (B, 3, S, S)."""
        batch = np.ascontiguousarray(x.detach().cpu().float().numpy())
        with self._lock:
            out = self._compiled(batch)[0]
        return torch.from_numpy(np.array(out, np.float32))


def _save(ov, model, path: Path) -> None:
    """The model as path (.xml) and its .bin, fp32, written under temporary names and renamed into place
    (the .xml last: it is what readers look for), so that a reader never meets half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        part = Path(tmp) / "model.xml"
        ov.save_model(model, part, compress_to_fp16=False)
        os.replace(part.with_suffix(".bin"), path.with_suffix(".bin"))
        os.replace(part, path)


def _finish() -> None:
    """At exit, let conversions under way end and be saved, so that the next run reads them (a short command
    line analysis ends before its encoders' conversion does)."""
    for _, handle in list(_STARTED.values()):
        if not handle.ready.is_set():
            log.warning("finishing the OpenVINO conversion for later runs (%s=torch skips it)", RUNTIME_ENV)
            handle.ready.wait()


# The encoders start() was called on, by model object: what encode() asks; and each OpenVINO model made in
# this process, by its file: a second load of the same weights (the page's overview, then an analysis) shares it.
_MADE: dict[Path, Accelerated] = {}
_CONVERT_LOCK = threading.Lock()
_STARTED: "weakref.WeakKeyDictionary[torch.nn.Module, tuple[str, Accelerated]]" = weakref.WeakKeyDictionary()
_START_LOCK = threading.Lock()


def start(model: torch.nn.Module, device: torch.device, size: int, setting: str | None = None,
          folder: Path | None = None) -> None:
    """Begin making `model`'s OpenVINO model in the background (once per model object), as the setting
    (default: AFFECTLENS_RUNTIME) asks: nothing for "torch" or a GPU. size: the side of its input."""
    setting = setting or runtime_setting()
    if setting == TORCH or device.type != "cpu":
        return
    with _START_LOCK:
        if not _STARTED:
            atexit.register(_finish)
        if model not in _STARTED:
            _STARTED[model] = (setting, Accelerated(model, size, Path(folder or data_dir()) / FOLDER))


def accelerated(model: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """What runs `model`'s raw embeddings now: its OpenVINO model when ready, else None (eager torch).
    With AFFECTLENS_RUNTIME=openvino this waits for the model, and raises RuntimeError if it cannot run."""
    setting, handle = _STARTED.get(model, (TORCH, None))
    if handle is None:
        return None
    if setting == "openvino":
        handle.ready.wait()
        if handle.error:
            raise RuntimeError(f"{RUNTIME_ENV}=openvino: {handle.error}")
    return handle if handle.usable else None


def wait(model: torch.nn.Module, timeout: float | None = None) -> bool:
    """Wait until `model`'s OpenVINO model is made (or failed); True when it can run."""
    _, handle = _STARTED.get(model, (TORCH, None))
    return handle is not None and handle.ready.wait(timeout) and handle.usable


def current(model: torch.nn.Module) -> str:
    """In words, what runs `model` from now on: "torch", "openvino <version> fp32", or torch while
    OpenVINO is being made or could not run (and why)."""
    _, handle = _STARTED.get(model, (TORCH, None))
    if handle is None:
        return TORCH
    if handle.usable:
        return handle.name
    if not handle.ready.is_set():
        return f"{TORCH} (OpenVINO being prepared)"
    return f"{TORCH} ({handle.error})"


def used(counts: Mapping[str, int]) -> str:
    """In words, what ran an encoder's faces in one analysis, from runtime -> faces ("" for none)."""
    counts = {k: v for k, v in counts.items() if v}
    if len(counts) == 1:
        return next(iter(counts))
    return ", ".join(f"{name} ({n} faces)" for name, n in counts.items())


def handle(model: torch.nn.Module) -> Accelerated | None:
    """The background work start() began for `model` (its origin, path and error), or None."""
    return _STARTED.get(model, (TORCH, None))[1]
