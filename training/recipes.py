"""What differs between the models the loop trains: the module, its data, its forward pass and loss, how
it predicts a split, and the model a checkpoint stores. The loop itself (training/loop.py) is shared.

- ddamfn:        DDAMFN fine-tuned end to end on face images (per task or multi-task), task losses +
                 att_weight x attention-divergence.
- ddamfn-heads:  DDAMFN's task heads on cached embeddings of a frozen DDAMFN (fast); the checkpoint is a
                 whole DDAMFN (the encoder's network + the new heads).
- lstm:          TemporalLSTM on windows of cached embeddings (DDAMFN, CLIP or adapted CLIP).
- clip-adapter:  ClipAdapter on cached CLIP image embeddings, contrastive loss against the prompts.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from core.labels import TASKS
from core.models import LoadedModel, ModelInfo
from core.models.clip import ClipAdapter, contrastive_loss
from core.models.ddamfn import DDAMFN, EMBED_DIM, attention_loss, load_upstream, preprocess
from core.models.heads import TaskHeads
from core.models.temporal import TemporalLSTM
from core.weights import UPSTREAM_BACKBONE, UPSTREAM_DDAMFN, load_checkpoint, load_state
from training import losses
from training.config import UNTRAINED
from training.data import (EmbeddingWindows, FrameEmbeddings, FrameImages, LabelSet, labelled_rows, target_arrays,
                           valid_mask, video_rows)
from training.extract import encoder_of, ensure_embeddings, load_encoder
from training.predictions import predict_embeddings, predict_images, predict_sequences


def _to(batch: dict, device) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


class Recipe:
    """Base: frame-level targets, the papers' task losses with weights from the training labels."""

    def __init__(self, cfg, train: LabelSet, val: LabelSet, device: torch.device):
        self.cfg, self.train_labels, self.val_labels, self.device = cfg, train, val, device
        self.tasks = tuple(cfg.tasks)
        self.module: nn.Module
        self.train_set = None
        self.extra_metadata: dict = {}

    def _loss_weights(self, rows: np.ndarray) -> None:
        t = target_arrays(self.train_labels.table.iloc[rows])
        self.expr_weights = torch.tensor(losses.class_weights(t["expr"]), dtype=torch.float32) \
            if self.cfg.class_weights else None
        self.au_pos_weight = torch.tensor(losses.pos_weights(t["au"]), dtype=torch.float32) \
            if self.cfg.pos_weight else None
        self.extra_metadata["loss"] = {
            "va": "1 - CCC", "expr": "cross-entropy" + (" with class weights" if self.cfg.class_weights else ""),
            "au": "BCE" + (" with pos_weight" if self.cfg.pos_weight else ""),
            "expr_class_weights": None if self.expr_weights is None else self.expr_weights.tolist(),
            "au_pos_weight": None if self.au_pos_weight is None else self.au_pos_weight.tolist()}

    def forward(self, net, batch: dict):
        """(outputs per frame, targets per frame, extra loss or None) for one training batch."""
        raise NotImplementedError

    def losses(self, out: dict, target: dict) -> dict:
        return losses.task_losses(out, target, self.tasks, self.expr_weights, self.au_pos_weight)

    def predict(self, labels: LabelSet, videos) -> tuple[np.ndarray, dict]:
        """(rows, predictions) for the listed videos of a split, with the current weights."""
        raise NotImplementedError

    def checkpoint_model(self) -> nn.Module:
        """The model a checkpoint stores (has ARCH and config; create_model rebuilds it)."""
        return self.module

    def load_checkpoint_model(self, ckpt) -> None:
        """Resume: put a checkpoint written by checkpoint_model back into the trained module."""
        load_state(self.module, ckpt.state_dict, ckpt.source)


def _rows_of_videos(labels: LabelSet, videos) -> np.ndarray:
    by_video = video_rows(labels.table)
    return np.concatenate([by_video[v] for v in videos]) if len(videos) else np.zeros(0, np.int64)


# ---------------------------------------------------------------------------------------------------


def ddamfn_from(weights: str | None, tasks) -> DDAMFN:
    """A DDAMFN with our task heads, its network from `weights` (an upstream DDAMNet checkpoint, upstream's
    backbone alone, or one of ours; heads of the asked tasks are taken over when the checkpoint has them),
    else (none, or `untrained` over a preset's) random."""
    if not weights or weights == UNTRAINED:
        return DDAMFN(tasks=tasks)
    ckpt = load_checkpoint(weights, architecture="ddamfn")
    model = DDAMFN(tasks=tasks, num_class=ckpt.config.get("num_class", 7), num_head=ckpt.config.get("num_head", 2))
    if ckpt.architecture in (UPSTREAM_DDAMFN, UPSTREAM_BACKBONE):
        load_upstream(model.net, ckpt)          # the backbone alone (ddamfn:msceleb): as upstream's recipes start
        return model
    load_state(model.net, {k[4:]: v for k, v in ckpt.state_dict.items() if k.startswith("net.")}, ckpt.source)
    if model.task_heads is not None:
        own = model.task_heads.state_dict()
        heads = {k[len("task_heads."):]: v for k, v in ckpt.state_dict.items() if k.startswith("task_heads.")}
        model.task_heads.load_state_dict({k: heads.get(k, v) for k, v in own.items()})
    return model


class DDAMFNRecipe(Recipe):
    def __init__(self, cfg, train, val, device):
        super().__init__(cfg, train, val, device)
        self.module = ddamfn_from(cfg.weights, self.tasks).to(device)
        self.channels_last = device.type == "cuda"          # faster convolutions on GPUs
        if self.channels_last:
            self.module.to(memory_format=torch.channels_last)
        rows = labelled_rows(train.table, self.tasks)
        self._loss_weights(rows)
        self.train_set = FrameImages(train.table, rows, augment=cfg.augment)
        self.extra_metadata["init_weights"] = cfg.weights

    def forward(self, net, batch):
        batch = _to(batch, self.device)
        x = preprocess(batch["image"].permute(0, 2, 3, 1), self.device)
        out = net(x.contiguous(memory_format=torch.channels_last) if self.channels_last else x)
        return out, batch, self.cfg.att_weight * attention_loss(out["attention"].float())

    def predict(self, labels, videos):
        rows = _rows_of_videos(labels, videos)
        rows = rows[labels.table["image_path"].notna().to_numpy()[rows]]
        cfg = self.cfg
        return rows, predict_images(self.module, labels.table, rows, self.tasks, self.device, cfg.batch_size,
                                    cfg.workers, cfg.amp)


# ---------------------------------------------------------------------------------------------------


class _CachedEmbeddings(Recipe):
    """Recipes that train on an encoder's cached embeddings (extracted first if missing)."""

    def _embeddings(self, encoder):
        cfg = self.cfg
        self.encoder = encoder
        videos = sorted(set(self.train_labels.table["video"]) | set(self.val_labels.table["video"]))
        cache = ensure_embeddings(cfg.cache, self.encoder, cfg.root, videos, cfg.batch_size, cfg.workers,
                                  cfg.progress)
        self.train_emb = cache.table_embeddings(self.train_labels.table)
        self.val_emb = cache.table_embeddings(self.val_labels.table)
        self.extra_metadata["embedding"] = self.encoder.info
        return cache

    def val_embeddings(self, labels: LabelSet):
        return self.val_emb if labels is self.val_labels else self.cache.table_embeddings(labels.table)


class EmbeddingHeads(nn.Module):
    """DDAMFN task heads on standardised embeddings: heads((emb - mean) / std). The standardisation is
    folded into the linear heads when saved, so the checkpoint is a plain DDAMFN."""

    def __init__(self, mean: np.ndarray, std: np.ndarray, tasks):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))
        self.heads = TaskHeads(EMBED_DIM, tasks)

    def forward(self, emb):
        return self.heads((emb - self.mean) / self.std)

    def folded(self) -> dict[str, torch.Tensor]:
        """TaskHeads weights acting on raw embeddings: W' = W / std, b' = b - W' mean (computed in float64)."""
        out = {}
        mean, std = self.mean.double(), self.std.double()
        for t, layer in self.heads.layers.items():
            w = layer.weight.double() / std
            out[f"layers.{t}.weight"] = w.float()
            out[f"layers.{t}.bias"] = (layer.bias.double() - w @ mean).float()
        return out

    def unfold(self, state: dict[str, torch.Tensor]) -> None:
        """Inverse of folded(): load raw-embedding head weights into the standardised heads."""
        mean, std = self.mean.double(), self.std.double()
        with torch.no_grad():
            for t, layer in self.heads.layers.items():
                w = state[f"layers.{t}.weight"].double()
                layer.weight.copy_(w * std)
                layer.bias.copy_(state[f"layers.{t}.bias"].double() + w @ mean)


class DDAMFNHeadsRecipe(_CachedEmbeddings):
    def __init__(self, cfg, train, val, device):
        super().__init__(cfg, train, val, device)
        self.cache = self._embeddings(load_encoder(cfg.encoder, cfg.weights, device))
        emb, has = self.train_emb
        rows = labelled_rows(train.table, self.tasks)
        self._loss_weights(rows)
        mean, std = emb[has].mean(axis=0), emb[has].std(axis=0) + 1e-12
        self.module = EmbeddingHeads(mean, std, self.tasks).to(device)
        self.train_set = FrameEmbeddings(train.table, rows, emb)

    def forward(self, net, batch):
        batch = _to(batch, self.device)
        return net(batch["emb"]), batch, None

    def predict(self, labels, videos):
        emb, has = self.val_embeddings(labels)
        rows = _rows_of_videos(labels, videos)
        rows = rows[has[rows]]
        return rows, predict_embeddings(self.module, emb[rows], self.tasks, self.device)

    def checkpoint_model(self):
        enc = self.encoder.loaded.model
        model = DDAMFN(tasks=self.tasks, num_class=enc.net.fc.out_features, num_head=enc.net.num_head)
        model.net.load_state_dict(enc.net.state_dict())
        model.task_heads.load_state_dict(self.module.folded())
        return model

    def load_checkpoint_model(self, ckpt):
        self.module.unfold({k[len("task_heads."):]: v for k, v in ckpt.state_dict.items()
                            if k.startswith("task_heads.")})


# ---------------------------------------------------------------------------------------------------


class LSTMRecipe(_CachedEmbeddings):
    def __init__(self, cfg, train, val, device):
        super().__init__(cfg, train, val, device)
        self.cache = self._embeddings(load_encoder(cfg.encoder, cfg.weights, device))
        emb, has = self.train_emb
        labelled = np.zeros(len(train.table), dtype=bool)
        for t in self.tasks:
            labelled |= valid_mask(train.table, t)
        self._loss_weights(np.flatnonzero(labelled))
        self.module = TemporalLSTM(input_dim=self.encoder.dim, hidden=cfg.hidden, layers=cfg.layers,
                                   tasks=self.tasks, dropout=cfg.dropout).to(device)
        self.train_set = EmbeddingWindows(train.table, emb, has, cfg.window, cfg.stride)
        self.extra_metadata["windows"] = {"window": cfg.window, "stride": cfg.stride}

    def forward(self, net, batch):
        batch = _to(batch, self.device)
        out = net(batch["emb"], batch["mask"])
        keep = batch["row"] >= 0                                       # (B, T): drop padding
        return ({t: v[keep] for t, v in out.items()}, {t: batch[t][keep] for t in TASKS}, None)

    def predict(self, labels, videos):
        emb, has = self.val_embeddings(labels)
        return predict_sequences(self.module, labels.table, videos, emb, has, self.tasks, self.cfg.window,
                                 self.cfg.stride)


# ---------------------------------------------------------------------------------------------------


class _AdapterOnEmbeddings(nn.Module):
    """ClipAdapter's trainable part as one forward (so DistributedDataParallel sees every parameter)."""

    def __init__(self, adapter: ClipAdapter):
        super().__init__()
        self.adapter = adapter

    def forward(self, clip_emb):
        out = self.adapter.forward_embeddings(clip_emb)
        return {**out, "class_emb": self.adapter.class_embeddings(), "scale": self.adapter.scale()}


def clip_adapter_from(weights: str, model_name: str) -> ClipAdapter:
    """An adapter to train: from one of our clip-adapter checkpoints (continues it), or a fresh one on
    the open_clip weights `weights` ("ViT-B-32:openai", "openai", or a local open_clip file)."""
    from core.models import create_model
    from core.weights import parse_spec

    if not weights:
        raise ValueError("the clip adapter needs CLIP weights: --weights ViT-B-32:openai (or an adapter checkpoint)")
    src = parse_spec(weights)
    if src.kind == "file" and src.path.is_file():
        return create_model("clip-adapter", weights, device="cpu").model.train()
    name, tag = (src.model_name, src.pretrained) if src.kind == "open_clip" else (model_name, weights)
    return ClipAdapter(name, tag)


class ClipAdapterRecipe(_CachedEmbeddings):
    def __init__(self, cfg, train, val, device):
        super().__init__(cfg, train, val, device)
        self.adapter = clip_adapter_from(cfg.weights, cfg.clip_model).to(device)
        frozen_clip = LoadedModel(self.adapter, lambda frames: self.adapter.preprocess(frames, device),
                                  ModelInfo("clip-adapter", str(cfg.weights), False, ("expr",), {}), device)
        self.cache = self._embeddings(encoder_of("clip", str(cfg.weights), frozen_clip))
        emb, _ = self.train_emb
        rows = labelled_rows(train.table, ("expr",))
        self.expr_weights = self.au_pos_weight = None
        self.extra_metadata["loss"] = {"expr": "CLIP contrastive (image->prompt CE + prompt->image)"}
        self.module = _AdapterOnEmbeddings(self.adapter)
        self.train_set = FrameEmbeddings(train.table, rows, emb)

    def forward(self, net, batch):
        batch = _to(batch, self.device)
        return net(batch["emb"]), batch, None

    def losses(self, out, target):
        keep = target["expr"] >= 0
        if not keep.any():
            return {"expr": out["expr"].sum() * 0.0}
        return {"expr": contrastive_loss(out["embedding"][keep], out["class_emb"], target["expr"][keep],
                                         out["scale"])}

    def predict(self, labels, videos):
        emb, has = self.val_embeddings(labels)
        rows = _rows_of_videos(labels, videos)
        rows = rows[has[rows]]
        return rows, predict_embeddings(self.adapter.forward_embeddings, emb[rows], ("expr",), self.device)

    def checkpoint_model(self):
        return self.adapter

    def load_checkpoint_model(self, ckpt):
        missing, unexpected = self.adapter.load_checkpoint_state_dict(ckpt.state_dict)
        if missing or unexpected:
            raise ValueError(f"{ckpt.source} does not fit this adapter: missing {missing[:3]}, unexpected {unexpected[:3]}")


RECIPES = {"ddamfn": DDAMFNRecipe, "ddamfn-heads": DDAMFNHeadsRecipe, "lstm": LSTMRecipe,
           "clip-adapter": ClipAdapterRecipe}


def make_recipe(cfg, train: LabelSet, val: LabelSet, device) -> Recipe:
    return RECIPES[cfg.model](cfg, train, val, device)


