"""Per-frame embeddings of a dataset's face images, cached on disk, reused and resumable.

Layout: <cache>/<encoder>-<key>/encoder.json (what made the embeddings) and one <video>.npz per video
(frames: 0-based frame numbers of the images, emb: (n, D) float32). The key hashes the encoder's weights
and preprocessing, so another checkpoint gets another folder, while a checkpoint that only differs in its
task heads (DDAMFN heads retrained, AU thresholds added) reuses the same embeddings. Each video's file is
written atomically once the video is done: an interrupted run loses at most the video in progress, and a
rerun skips every video whose file matches its current images. Under torchrun each process takes every
world_size-th video.
"""
from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from core.affwild2_index import AffWild2Index
from core.faces import read_face_image
from core.models import LoadedModel
from core.predict import encode
from core.registry import encoder_kinds
from training.data import split_videos

log = logging.getLogger(__name__)
_IMAGE = re.compile(r"^(\d+)\.jpg$")


@dataclass
class Encoder:
    """A frozen image encoder: uint8 face crops (B, H, W, 3) -> embeddings (B, dim), by core.predict.encode
    (the prediction path the app uses), so cached embeddings are the ones an analysis computes."""

    kind: str                  # ddamfn | clip | clip-adapter
    weights: str               # the spec it was loaded from
    loaded: LoadedModel        # eval mode, on its device
    dim: int
    key: str                   # content key of weights + preprocessing (the model's embedding_key)

    @property
    def device(self) -> torch.device:
        return self.loaded.device

    @property
    def input_size(self) -> int:
        """The side of the square face crops it takes (what the pipeline crops for it)."""
        return self.loaded.model.preprocessing["size"]

    @property
    def info(self) -> dict:
        """What a cache folder and an LSTM checkpoint record about the embeddings they hold."""
        return {"encoder": self.kind, "weights": self.weights, "key": self.key, "dim": self.dim,
                "preprocessing": dict(self.loaded.model.preprocessing)}

    def __call__(self, crops) -> np.ndarray:
        return encode(self.loaded, crops, self.kind)


def encoder_of(kind: str, weights: str, loaded: LoadedModel) -> Encoder:
    """The Encoder of an already loaded model ("clip" on an adapter: its frozen CLIP)."""
    return Encoder(kind, str(weights), loaded, loaded.model.embedding_dim(kind), loaded.model.embedding_key(kind))


def load_encoder(kind: str, weights: str | None, device="auto") -> Encoder:
    """The encoder behind a cache: "ddamfn" (DDAMFN 512-d embedding from our or an upstream checkpoint),
    "clip" (raw CLIP image embedding from an open_clip spec or from a clip-adapter checkpoint's CLIP),
    "clip-adapter" (the adapted CLIP embedding of a clip-adapter checkpoint)."""
    from core.models import create_model

    if not weights:
        raise ValueError(f"embeddings of a random {kind} model mean nothing: give --weights")
    if kind not in encoder_kinds():
        raise ValueError(f"unknown encoder {kind!r}; known: {', '.join(encoder_kinds())}")
    return encoder_of(kind, weights, create_model(kind, weights, device=device))


def video_images(index: AffWild2Index, video: str) -> tuple[np.ndarray, list[str]]:
    """0-based frame numbers and paths of a video's face images, in frame order."""
    folder = index.image_dir(video)
    if folder is None:
        return np.zeros(0, dtype=np.int64), []
    found = sorted((int(m.group(1)) - 1, name) for name in os.listdir(folder) if (m := _IMAGE.match(name)))
    return np.array([f for f, _ in found], dtype=np.int64), [str(folder / n) for _, n in found]


class _Images(Dataset):
    """Face images as the pipeline crops them for this encoder (core.faces.read_face_image)."""

    def __init__(self, paths, size: int):
        self.paths, self.size = paths, size

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        return torch.from_numpy(read_face_image(self.paths[i], self.size))


class EmbeddingCache:
    """One encoder's folder of per-video embeddings."""

    def __init__(self, cache_root, encoder_info: dict):
        self.info = encoder_info
        self.dir = Path(cache_root) / f"{encoder_info['encoder']}-{encoder_info['key']}"
        self.dir.mkdir(parents=True, exist_ok=True)
        meta = self.dir / "encoder.json"
        if not meta.exists():
            tmp = meta.with_suffix(".tmp")
            tmp.write_text(json.dumps(encoder_info, indent=1, default=str))
            os.replace(tmp, meta)

    def path(self, video: str) -> Path:
        return self.dir / f"{video}.npz"

    def load(self, video: str) -> tuple[np.ndarray, np.ndarray] | None:
        """(frames, emb) of a cached video, or None (not cached, or an unreadable file)."""
        path = self.path(video)
        if not path.exists():
            return None
        try:
            with np.load(path) as z:
                return z["frames"], z["emb"]
        except (OSError, ValueError, KeyError):
            log.warning("ignoring unreadable cache file %s", path)
            return None

    def is_current(self, video: str, frames: np.ndarray) -> bool:
        cached = self.load(video)
        return cached is not None and np.array_equal(cached[0], frames)

    def save(self, video: str, frames: np.ndarray, emb: np.ndarray) -> None:
        tmp = self.dir / f".{video}.npz.tmp"
        with open(tmp, "wb") as f:
            np.savez(f, frames=frames, emb=emb.astype(np.float32))
        os.replace(tmp, self.path(video))

    def fill(self, encoder: Encoder, index: AffWild2Index, videos, batch_size: int = 256, workers: int = 2,
             progress: bool = True, rank: int = 0, world: int = 1) -> int:
        """Embed every listed video not cached yet (this process's share); returns how many it embedded."""
        todo = []
        for video in list(videos)[rank::world]:
            frames, paths = video_images(index, video)
            if not self.is_current(video, frames):
                todo.append((video, frames, paths))
        total = sum(len(p) for _, _, p in todo)
        bar = tqdm(total=total, unit="img", desc=f"embed {encoder.kind}", disable=not progress or not total)
        for video, frames, paths in todo:
            chunks = []
            loader = DataLoader(_Images(paths, encoder.input_size), batch_size=batch_size,
                                num_workers=workers if len(paths) > batch_size else 0,
                                pin_memory=encoder.device.type == "cuda")
            for images in loader:
                chunks.append(encoder(images))
                bar.update(len(images))
            emb = np.concatenate(chunks) if chunks else np.zeros((0, encoder.dim), np.float32)
            self.save(video, frames, emb)
        bar.close()
        return len(todo)

    def table_embeddings(self, table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings aligned with a label table's rows: emb (N, D) (zeros without an image) and has (N,)."""
        emb = np.zeros((len(table), self.info["dim"]), dtype=np.float32)
        has = np.zeros(len(table), dtype=bool)
        for video, rows in table.groupby("video", sort=False).groups.items():
            rows = np.asarray(rows)
            cached = self.load(video)
            if cached is None:
                raise FileNotFoundError(f"{self.dir}: no embeddings of video {video}; run extract first")
            frames, values = cached
            where = pd.Index(frames).get_indexer(table["frame"].to_numpy()[rows])
            ok = where >= 0
            emb[rows[ok]] = values[where[ok]]
            has[rows[ok]] = True
        return emb, has


def videos_to_embed(index: AffWild2Index, which: str) -> list[str]:
    """all (every image folder and annotated video), train, val, or a file with one name per line."""
    if which == "all":
        folder = index.root / "cropped_aligned"
        names = {p.name for p in folder.iterdir() if p.is_dir()} if folder.is_dir() else set()
        return sorted(names | set(index.all_videos()))
    if which in ("train", "val"):
        return split_videos(index, ("va", "expr", "au"), which)
    path = Path(which)
    if not path.is_file():
        raise ValueError(f"videos must be all, train, val or a file of video names; {which!r} is none")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def ensure_embeddings(cache_root, encoder: Encoder, root, videos, batch_size=256, workers=2,
                      progress=True) -> EmbeddingCache:
    """The encoder's cache with every listed video embedded (shared out over torchrun processes)."""
    from training.distributed import barrier, rank_and_world

    cache = EmbeddingCache(cache_root, encoder.info)
    rank, world = rank_and_world()
    cache.fill(encoder, AffWild2Index(root), videos, batch_size, workers, progress and rank == 0, rank, world)
    barrier()
    return cache


def extract(cfg) -> EmbeddingCache:
    """The `extract` command."""
    from training.distributed import setup

    device = setup(cfg.device)
    encoder = load_encoder(cfg.encoder, cfg.weights, device)
    index = AffWild2Index(cfg.root)
    videos = videos_to_embed(index, cfg.videos)
    cache = ensure_embeddings(cfg.cache, encoder, cfg.root, videos, cfg.batch_size, cfg.workers, cfg.progress)
    log.info("%d videos embedded in %s", len(videos), cache.dir)
    return cache
