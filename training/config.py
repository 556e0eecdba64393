"""Every setting of every command, as dataclasses with commented defaults; presets override them.

A command line is parsed straight into its dataclass: each field is an option (`--batch-size 64`,
booleans as `--amp / --no-amp`, task lists as `--tasks va,expr,au`). `--preset NAME` first applies a
small JSON file from training/presets/ (or any JSON path; several, comma separated, apply in order), then
the options given on the command line.
The resolved config is saved in every checkpoint and beside the CSV log.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path

from core import registry
from core.labels import TASKS
from core.models.clip import DEFAULT_MODEL as CLIP_MODEL
from core.models.temporal import LSTM_STRIDE, LSTM_WINDOW

PRESET_DIR = Path(__file__).parent / "presets"
MODEL_KINDS = registry.training_kinds()       # ddamfn, ddamfn-heads, lstm, clip-adapter
# evaluate / predict --weights UNTRAINED: a DDAMFN with random weights (seed 0), the baseline row.
UNTRAINED = "untrained"
ENCODERS = registry.encoder_kinds()           # ddamfn, clip, clip-adapter


def _help(text: str, **kw):
    return field(metadata={"help": text}, **kw)


@dataclass
class DataOptions:
    """Where the data is and which labels count (shared by every command)."""

    root: str = _help("Aff-Wild2-layout folder (cropped_aligned/, *_Challenge/)", default="")
    cache: str = _help("embedding cache folder (one subfolder per encoder)", default="data/embeddings")
    device: str = _help("auto, cpu, cuda or cuda:N (under torchrun each process takes its LOCAL_RANK GPU)",
                        default="auto")
    batch_size: int = _help("frames (or windows) per batch", default=256)
    workers: int = _help("data-loading worker processes", default=4)
    amp: bool = _help("autocast on CUDA: bf16 for training steps, fp16 for extraction and prediction (CPU "
                      "runs in fp32)", default=True)
    progress: bool = _help("show tqdm progress bars", default=True)


@dataclass
class LabelOptions(DataOptions):
    """Which labels count (train, evaluate, thresholds)."""

    tasks: tuple[str, ...] = _help("tasks, comma separated: va, expr, au (evaluate: those the checkpoint "
                                   "has among them)", default=TASKS)
    corrections: bool = _help("use the database's effective labels: accepted corrections applied, flagged "
                              "frames left out (--no-corrections: the annotation files only)", default=True)
    db: str | None = _help("database URL (default: AFFECTLENS_DB_URL or sqlite:///./data/affectlens.db)",
                           default=None)
    uploads: bool = _help("also train on the uploaded videos of the review database that have annotations (face "
                          "crops from their stored analyses, effective labels; split by video): with no --root, "
                          "on those alone", default=False)
    data: str = _help("the app's data folder, where uploads' kept copies and analyses are (default: "
                      "AFFECTLENS_DATA_DIR or ./data)", default="")


@dataclass
class ExtractConfig(DataOptions):
    """`extract`: per-frame embeddings of every image of the dataset, cached on disk and resumable."""

    encoder: str = _help(f"which embeddings: {', '.join(ENCODERS)}", default="ddamfn")
    weights: str | None = _help("encoder weights: a DDAMFN checkpoint (ours or upstream), an open_clip "
                                "spec such as ViT-B-32:openai, or a clip-adapter checkpoint", default=None)
    videos: str = _help("which videos: all (every cropped_aligned folder), train, val, or a text file "
                        "with one video name per line", default="all")


@dataclass
class TrainConfig(LabelOptions):
    """`train`: one model on the train split, validated on the val split after every epoch."""

    model: str = _help(f"what to train: {', '.join(MODEL_KINDS)}", default="ddamfn")
    encoder: str = _help("for ddamfn-heads / lstm: the embeddings to train on (ddamfn, clip, clip-adapter)",
                         default="ddamfn")
    weights: str | None = _help("ddamfn: initial weights (e.g. ddamfn:msceleb, the authors' backbone, which "
                                f"the ddamfn-* presets start from, ddamfn:affectnet8, or {UNTRAINED!r}: random); "
                                "ddamfn-heads / lstm: the encoder weights; clip-adapter: the open_clip spec",
                                default=None)
    out: str = _help("run folder: best.pt, last.pt, log.csv, config.json", default="runs/train")
    epochs: int = _help("passes over the training set", default=10)
    steps_per_epoch: int = _help("cap on optimiser steps per epoch (0: the whole training set)", default=0)
    lr: float = _help("Adam learning rate (DDAMFN upstream: 1e-4)", default=1e-4)
    lr_gamma: float = _help("ExponentialLR decay per epoch (DDAMFN upstream: 0.6)", default=0.6)
    weight_decay: float = _help("Adam weight decay", default=0.0)
    att_weight: float = _help("weight of DDAMFN's attention-divergence loss", default=0.1)
    class_weights: bool = _help("EXPR: cross-entropy weighted by inverse class frequency", default=True)
    pos_weight: bool = _help("AU: BCE positive weight = negatives / positives per AU", default=True)
    augment: bool = _help("DDAMFN: flip, random affine and random erasing as upstream", default=True)
    window: int = _help("lstm: frames per training window (and per prediction window)", default=LSTM_WINDOW)
    stride: int = _help("lstm: frames between window starts", default=LSTM_STRIDE)
    hidden: int = _help("lstm: hidden units", default=256)
    layers: int = _help("lstm: stacked layers", default=2)
    dropout: float = _help("lstm: dropout", default=0.1)
    clip_model: str = _help("clip-adapter: open_clip model name", default=CLIP_MODEL)
    seed: int = _help("random seed (model init, shuffling, augmentation)", default=0)
    resume: bool = _help("continue from out/last.pt", default=False)


@dataclass
class EvalConfig(LabelOptions):
    """`evaluate` / `thresholds`: a checkpoint's ABAW metrics on a split."""

    weights: str = _help(f"checkpoint to evaluate (evaluate: or {UNTRAINED!r}, a DDAMFN with random weights, "
                         "the baseline)", default="")
    split: str = _help("train or val", default="val")
    out: str | None = _help("evaluate: also write the metrics as JSON here; thresholds: write the updated "
                            "checkpoint here instead of in place", default=None)


@dataclass
class PredictConfig(DataOptions):
    """`predict`: ABAW submission files (one per task) for a list of videos."""

    weights: str = _help(f"checkpoint (or {UNTRAINED!r}: a DDAMFN with random weights, the baseline)", default="")
    videos: str = _help("val, train, all, or a text file with one video name per line", default="val")
    out: str = _help("folder for the submission files", default="submission")
    tasks: tuple[str, ...] = _help("tasks to write (those the checkpoint has among them)", default=TASKS)


@dataclass
class AuditConfig(LabelOptions):
    """`audit`: out-of-fold predictions of a split and the ranked suggestions of the annotation audit."""

    encoder: str | None = _help("DDAMFN weights whose embeddings the fold heads train on (a checkpoint of "
                                f"ours or upstream), {UNTRAINED!r} (random weights, the offline baseline) or "
                                "'clip' (open_clip's image tower with the default weights, which never saw the "
                                "labels)", default=None)
    in_sample: bool = _help("use an encoder whose training record includes audited videos anyway, every "
                            "suggestion marked in-sample (without it such an encoder is refused)", default=False)
    split: str = _help("which split's annotations to audit: train or val", default="train")
    folds: int = _help("K: folds of videos, grouped by subject", default=5)
    model: str = _help("what each fold trains: heads (frame heads, fast) or lstm (temporal)", default="heads")
    epochs: int = _help("passes over a fold's training frames (or windows)", default=20)
    lr: float = _help("Adam learning rate", default=1e-3)
    window: int = _help("lstm: frames per window", default=LSTM_WINDOW)
    stride: int = _help("lstm: frames between window starts", default=LSTM_STRIDE)
    hidden: int = _help("lstm: hidden units", default=128)
    seed: int = _help("random seed; fold k trains with seed + k", default=0)
    out: str = _help("folder of the fold files, oof.npz, segments.csv and audit.json", default="runs/audit")
    class_weights: bool = _help("EXPR: cross-entropy weighted by inverse class frequency", default=True)
    pos_weight: bool = _help("AU: BCE positive weight = negatives / positives per AU", default=True)
    write_db: bool = _help("write the run and its segments into the review database when there is one",
                           default=True)


# ---------------------------------------------------------------------------------------------------
# Presets and command-line parsing


def presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.json"))


def load_preset(name: str) -> dict:
    """A preset by name (training/presets/<name>.json) or path: a JSON object of field -> value."""
    path = Path(name) if name.endswith(".json") else PRESET_DIR / f"{name}.json"
    if not path.is_file():
        raise ValueError(f"unknown preset {name!r}; known: {', '.join(presets())}")
    values = json.loads(path.read_text())
    values.pop("_comment", None)
    return values


def _field_type(cls, f: dataclasses.Field):
    hint = typing.get_type_hints(cls)[f.name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args and typing.get_origin(hint) is not tuple else hint


def _parse_tasks(text) -> tuple[str, ...]:
    items = text.split(",") if isinstance(text, str) else list(text)
    tasks = tuple(t.strip().lower() for t in items if t.strip())
    unknown = [t for t in tasks if t not in TASKS]
    if unknown or not tasks:
        raise argparse.ArgumentTypeError(f"tasks must be a comma-separated subset of {','.join(TASKS)}")
    return tuple(t for t in TASKS if t in tasks)


def add_arguments(parser: argparse.ArgumentParser, cls) -> None:
    """One option per dataclass field; defaults are left out so that presets can tell what was given."""
    parser.add_argument("--preset", help="JSON preset(s) applied in order before the options, comma separated "
                                         f"({', '.join(presets())})")
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        kind = _field_type(cls, f)
        text = f"{f.metadata.get('help', '')} (default: {f.default!r})"
        if kind is bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction,
                                default=argparse.SUPPRESS, help=text)
        elif f.name == "tasks":
            parser.add_argument(flag, dest=f.name, type=_parse_tasks, default=argparse.SUPPRESS, help=text)
        else:
            parser.add_argument(flag, dest=f.name, type=kind, default=argparse.SUPPRESS, help=text)


def build(cls, preset: str | None = None, **overrides):
    """The dataclass from defaults <- preset <- overrides, checked."""
    values = {}
    for name in (preset or "").split(","):
        if name.strip():
            values.update(load_preset(name.strip()))
    values.update(overrides)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"{cls.__name__} has no setting(s) {', '.join(unknown)}")
    if "tasks" in values:
        values["tasks"] = _parse_tasks(values["tasks"])
    cfg = cls(**values)
    _check(cfg)
    return cfg


def from_args(cls, args: argparse.Namespace):
    given = {k: v for k, v in vars(args).items() if k not in ("command", "preset", "func")}
    return build(cls, getattr(args, "preset", None), **given)


def _check(cfg) -> None:
    if isinstance(cfg, TrainConfig):
        if cfg.model not in MODEL_KINDS:
            raise ValueError(f"model must be one of {', '.join(MODEL_KINDS)}, not {cfg.model!r}")
        if cfg.encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {', '.join(ENCODERS)}, not {cfg.encoder!r}")
        if cfg.model == "clip-adapter" and cfg.tasks != ("expr",):
            raise ValueError("the clip adapter learns expressions only: use --tasks expr")
        if cfg.model in ("ddamfn-heads",) and cfg.encoder != "ddamfn":
            raise ValueError("ddamfn-heads trains DDAMFN heads on DDAMFN embeddings: use --encoder ddamfn")
    if isinstance(cfg, ExtractConfig) and cfg.encoder not in ENCODERS:
        raise ValueError(f"encoder must be one of {', '.join(ENCODERS)}, not {cfg.encoder!r}")
    if isinstance(cfg, AuditConfig):
        if not cfg.encoder:
            raise ValueError("the audit trains on embeddings of an encoder: give --encoder WEIGHTS (a DDAMFN checkpoint)")
        if cfg.model not in ("heads", "lstm"):
            raise ValueError(f"model must be heads or lstm, not {cfg.model!r}")
        if cfg.folds < 2:
            raise ValueError("--folds must be at least 2")
    if getattr(cfg, "split", "val") not in ("train", "val"):
        raise ValueError("split must be train or val")


def to_dict(cfg) -> dict:
    out = dataclasses.asdict(cfg)
    if "tasks" in out:
        out["tasks"] = list(cfg.tasks)
    return out
