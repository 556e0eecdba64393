"""The training loop, one for every model: setup, then epochs of (train, validate with the ABAW metrics,
checkpoint), top to bottom.

Outputs in cfg.out: last.pt (every epoch, with the optimiser state: `--resume` continues from it), best.pt
(the epoch with the best validation score = sum of the tasks' ABAW P; on a tie the later epoch, so a flat score
keeps the most trained weights, not epoch 1; the checkpoint says which epoch it is and why it was kept), log.csv
(one row per epoch), config.json, and with uploads uploads.json (how they were split, also in the checkpoint).
Under torchrun every process trains on its share of each epoch (DistributedSampler) and predicts its share of
the validation videos; process 0 scores, logs and writes checkpoints.
"""
from __future__ import annotations

import csv
import json
import logging
import math
import random
import shutil
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler
from tqdm import tqdm

from core.device import autocast
from core.weights import load_checkpoint, save_checkpoint
from training import distributed
from training.batches import TrainingBatches
from training.config import TrainConfig, to_dict
from training.data import LabelSet, load_labels
from training.predictions import abaw_metrics, merge
from training.recipes import Recipe, make_recipe
from training.uploads import with_uploads

log = logging.getLogger(__name__)
DATA_FILE = "uploads.json"     # in the run folder: the uploads' summary (training.uploads.build_root), split included


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def validate(recipe: Recipe, labels: LabelSet) -> dict:
    """ABAW metrics of the current weights on a split; every process predicts a share of the videos."""
    rank, world = distributed.rank_and_world()
    videos = sorted(labels.table["video"].unique())[rank::world]
    recipe.module.eval()
    part = recipe.predict(labels, videos)
    parts = distributed.gather(part)
    preds = merge(parts, len(labels.table), recipe.tasks)
    return abaw_metrics(labels.table, preds, recipe.tasks)


class CsvLog:
    """log.csv: one row per epoch; the header comes from the first row (appends when resuming)."""

    def __init__(self, path: Path):
        self.path = path

    def write(self, row: dict) -> None:
        new = not self.path.exists()
        with open(self.path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)


SCORE_TIE = 1e-6    # validation scores this close are a tie: the later epoch wins it


def keep_epoch(score: float, best_score: float, best_epoch: int | None, epoch: int) -> tuple[bool, str]:
    """Whether this epoch's checkpoint becomes best.pt, and why (said in the checkpoint and the log). Ties go to
    the later epoch: a validation score that stays flat (P_EXPR 0 while one class is predicted) must not keep
    epoch 1 after more training ran."""
    if best_epoch is None:
        return True, f"first validated epoch (score {score:.4f})"
    if score > best_score + SCORE_TIE:
        return True, f"score {score:.4f} above epoch {best_epoch + 1}'s {best_score:.4f}"
    if score >= best_score - SCORE_TIE:
        return True, f"score {score:.4f} tied with epoch {best_epoch + 1}'s: the later epoch is kept"
    return False, f"score {score:.4f} below epoch {best_epoch + 1}'s {best_score:.4f}"


class StepClock:
    """Seconds left, from measured times: a moving average of the training step (the first step of an epoch,
    which waits for the loader, is left out) and the last validation's duration for each epoch to come."""

    def __init__(self):
        self.step_s, self.validation_s = None, 0.0

    def step(self, seconds: float, first_of_epoch: bool) -> None:
        if first_of_epoch and self.step_s is not None:
            return
        self.step_s = seconds if self.step_s is None else 0.8 * self.step_s + 0.2 * seconds

    def eta(self, steps_left: int, validations_left: int) -> float:
        return round((self.step_s or 0.0) * steps_left + self.validation_s * validations_left, 1)


def _scalar_metrics(metrics: dict) -> dict:
    return {k: round(v, 6) if isinstance(v, float) else v for k, v in metrics.items() if not isinstance(v, list)}


def train(cfg: TrainConfig, on_progress: Callable[..., None] | None = None) -> Path:
    """Train cfg.model; returns the path of the best checkpoint. on_progress(epoch=, epochs=, step=, steps=,
    loss=, eta_s=) is called by process 0 after every step (a training job reports it to the database)."""
    # -- setup ------------------------------------------------------------------------------------------
    device = distributed.setup(cfg.device)
    rank, world = distributed.rank_and_world()
    main = rank == 0
    seed_everything(cfg.seed)
    uploads = None
    if cfg.uploads:
        cfg, uploads = with_uploads(cfg, write=main)
    out = Path(cfg.out)
    if main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(to_dict(cfg), indent=1))
        if uploads is not None:            # how the uploads were split, for the job's page before a checkpoint exists
            (out / DATA_FILE).write_text(json.dumps(uploads, indent=1))
            tqdm.write(f"uploads split: {uploads['split']}", file=sys.stderr)
    train_labels = load_labels(cfg.root, cfg.tasks, "train", cfg.corrections, cfg.db)
    val_labels = load_labels(cfg.root, cfg.tasks, "val", cfg.corrections, cfg.db)
    recipe = make_recipe(cfg, train_labels, val_labels, device)
    module = recipe.module
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=cfg.lr_gamma)
    start_epoch, best_score, best_epoch, kept_why = 0, -math.inf, None, ""
    total_steps, frames_seen = 0, 0      # over all epochs: a checkpoint says how far it was trained
    if cfg.resume and (out / "last.pt").exists():
        ckpt = load_checkpoint(out / "last.pt")
        recipe.load_checkpoint_model(ckpt)
        optimizer.load_state_dict(ckpt.optimizer_state_dict)
        state = ckpt.metadata["training"]
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, best_score, best_epoch = state["epoch"] + 1, state["best_score"], state["best_epoch"]
        kept_why = state.get("kept", {}).get("why", "")
        total_steps, frames_seen = state.get("steps", 0), state.get("frames_seen", 0)
        if main:
            log.info("resuming %s after epoch %d", out / "last.pt", state["epoch"])
    net = module
    if world > 1:
        net = DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None,
                                      find_unused_parameters=True)   # DDAMFN keeps unused upstream layers
    sampler = DistributedSampler(recipe.train_set, shuffle=True, seed=cfg.seed) if world > 1 else \
        RandomSampler(recipe.train_set, generator=torch.Generator().manual_seed(cfg.seed))
    loader = DataLoader(recipe.train_set, batch_sampler=TrainingBatches(sampler, cfg.batch_size),
                        num_workers=cfg.workers, pin_memory=device.type == "cuda", persistent_workers=False)
    steps = len(loader) if not cfg.steps_per_epoch else min(len(loader), cfg.steps_per_epoch)
    use_amp = cfg.amp and device.type == "cuda"
    corrections = {"used": cfg.corrections, "source": train_labels.source,
                   "ids": sorted(set(train_labels.corrections) | set(val_labels.corrections)),
                   "train_ids": train_labels.corrections, "flagged_left_out": train_labels.flagged}
    csv_log = CsvLog(out / "log.csv")
    clock = StepClock()

    # -- epochs -----------------------------------------------------------------------------------------
    for epoch in range(start_epoch, cfg.epochs):
        if world > 1:
            sampler.set_epoch(epoch)
        module.train()
        started, sums, count = time.time(), defaultdict(float), 0
        bar = tqdm(loader, total=steps, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not (main and cfg.progress),
                   leave=False)
        step_started = time.time()
        for step, batch in enumerate(bar):
            if step >= steps:
                break
            with autocast(device, use_amp):
                output, target, extra = recipe.forward(net, batch)
            parts = recipe.losses(output, target)
            loss = sum(parts.values()) + (extra if extra is not None else 0.0)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            count += 1
            total_steps += 1
            frames_seen += int((batch["row"] >= 0).sum()) * world    # "row" -1: window padding
            sums["loss"] += loss.item()
            for name, value in parts.items():
                sums[f"loss_{name}"] += value.item()
            if extra is not None:
                sums["loss_attention"] += extra.item()
            bar.set_postfix(loss=f"{sums['loss'] / count:.4f}")
            clock.step(time.time() - step_started, first_of_epoch=count == 1)
            step_started = time.time()
            if main and on_progress is not None:
                left = steps - count + (cfg.epochs - epoch - 1) * steps
                on_progress(epoch=epoch + 1, epochs=cfg.epochs, step=count, steps=steps, loss=sums["loss"] / count,
                            eta_s=clock.eta(left, cfg.epochs - epoch))
        bar.close()
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        validation_started = time.time()
        metrics = validate(recipe, val_labels)
        clock.validation_s = time.time() - validation_started
        if main:
            improved, why = keep_epoch(metrics["score"], best_score, best_epoch, epoch)
            if improved:
                best_score, best_epoch, kept_why = metrics["score"], epoch, why
            model = recipe.checkpoint_model()          # first: it may add to extra_metadata (heads_amplification)
            meta = {
                "metrics": {"val": metrics},
                "training": {"config": to_dict(cfg), "epoch": epoch, "best_score": best_score,
                             "best_epoch": best_epoch, "kept": {"epoch": best_epoch + 1, "why": kept_why},
                             "scheduler": scheduler.state_dict(), "world_size": world,
                             "steps": total_steps, "frames_seen": frames_seen,
                             "data": {"train": train_labels.summary(), "val": val_labels.summary(),
                                      "uploads": uploads},
                             "corrections": corrections},
                **recipe.extra_metadata,
            }
            save_checkpoint(out / "last.pt", model, meta, optimizer)
            if improved:
                shutil.copyfile(out / "last.pt", out / "best.pt")
            row = {"epoch": epoch + 1, "lr": lr, "steps": count, "seconds": round(time.time() - started, 2),
                   **{k: round(v / max(count, 1), 6) for k, v in sums.items()},
                   **{f"val_{k}": v for k, v in _scalar_metrics(metrics).items()}, "best": improved}
            csv_log.write(row)
            tqdm.write(f"epoch {epoch + 1}: loss {row.get('loss', float('nan')):.4f}  val score "
                       f"{metrics['score']:.4f}{'  (best)' if improved else ''}", file=sys.stderr)  # stdout: the result
        distributed.barrier()
    distributed.teardown()
    return out / "best.pt"
