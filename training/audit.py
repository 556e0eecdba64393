"""`python -m training audit`: out-of-fold predictions for every annotated frame of a split, then the
annotation audit (core/audit.py) over them.

Confident learning needs predictions from a model that never saw the frame: the split's videos are put
into K folds, grouped by subject (`<id>_left` and `<id>_right` share a recording, so they share a fold);
with fewer subjects than folds (one uploaded video) every video is cut into K blocks of frames instead (Folds),
and for each fold task heads are trained on the other folds' cached embeddings (training/extract.py's
cache; frame heads as ddamfn-heads trains them, or the LSTM) and predict the held-out fold.

Scores are calibrated on the user's own data (core/audit_calibration.py): the estimated probability that a
stretch is wrongly annotated, one scale across tasks and kinds, with a default threshold that keeps false
alarms under 1 per 10 clean minutes. A random sample for the error-rate estimate is drawn within score bands
and among clean stretches (core/audit_sample.py). An encoder trained on an audited video is refused (or,
with --in-sample, every suggestion says so).

Outputs in cfg.out: fold-<k>.npz per finished fold (a rerun skips every fold whose file holds the same
videos made with the same settings and encoder: resumable), then oof.npz (the predictions, each row's video,
frame and fold; core.audit.oof_frames reads one video), segments.csv (the suggestions, best first: score
calibrated, raw_score the scorer's; then the drawn clean stretches, kind "clean", score 0), audit.json
(settings with "calibration": threshold, expected_precision, recall per planted kind, false alarms per 10
clean minutes, and "sample": the drawn units; encoder with trained_on_audited; folds; out-of-fold metrics);
with a review database the run and its segments are also written there (db/repo/audit.py). Under torchrun
process r trains folds r, r + world, ...; process 0 gathers the fold files and scores.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import GroupKFold
from torch.utils.data import DataLoader, RandomSampler

from core import audit as scorer
from core import audit_calibration as calibration
from core import audit_sample as sampling
from core.models.heads import TASK_DIMS
from core.models.temporal import TemporalLSTM
from core.review import IN_SAMPLE
from training import distributed, losses
from training.batches import TrainingBatches
from training.data import EmbeddingWindows, FrameEmbeddings, load_labels, target_arrays, valid_mask, video_rows
from training.config import UNTRAINED, AuditConfig
from training.extract import encoder_of, ensure_embeddings, load_encoder
from training.predictions import abaw_metrics, predict_embeddings, predict_sequences
from training.recipes import EmbeddingHeads, standardisation
from training.uploads import with_uploads

log = logging.getLogger(__name__)
_ABAW_NAME = re.compile(r"^\d+-(\d+)-\d+x\d+")


def subject(video: str) -> str:
    """The recording a video belongs to: `_left` / `_right` views of one video are one subject."""
    return re.sub(r"_(left|right)$", "", video)


def video_fps(video: str, default: float = 30.0) -> float:
    """The frame rate an ABAW-style name carries ("<id>-<fps>-<w>x<h>"), else `default`."""
    m = _ABAW_NAME.match(video)
    return float(m.group(1)) if m else default


def assign_folds(videos, k: int) -> dict[str, int]:
    """Video -> fold 0..k-1, grouped by subject (sklearn's GroupKFold: folds balanced by video count)."""
    videos = sorted(videos)
    groups = [subject(v) for v in videos]
    if len(set(groups)) < k:
        raise ValueError(f"{k} folds need at least {k} subjects; the split has {len(set(groups))}: use fewer --folds")
    out = {}
    for fold, (_, held) in enumerate(GroupKFold(n_splits=k).split(videos, groups=groups)):
        out.update({videos[i]: fold for i in held})
    return out


@dataclasses.dataclass(frozen=True)
class Folds:
    """Which fold predicts each table row and which rows each fold's model may learn from.

    By subject when the split has at least K subjects (whole videos held out). With fewer -- one uploaded
    video -- by K contiguous blocks of frames within every video, and the `gap` frames either side of a held
    block are left out of that fold's training: neighbouring frames look alike and an LSTM window would
    otherwise reach into the held block."""
    of_row: np.ndarray            # (N,) fold of each table row
    by: str                       # "subject" or "blocks"
    gap: int                      # blocks: frames left out of training either side of the held block
    names: dict[str, list[str]]   # fold -> its videos, or its blocks as "video:first-last" (frames)
    near: np.ndarray              # (K, N) blocks: rows within gap frames of fold k's block in their video

    def train(self, k: int) -> np.ndarray:
        """Rows fold k's model may train on."""
        return (self.of_row != k) & ~self.near[k]

    def describe(self) -> str:
        if self.by == "subject":
            return f"{len(self.names)} folds of videos grouped by subject"
        return (f"{len(self.names)} folds of contiguous blocks of frames within each video (fewer subjects than "
                f"folds), {self.gap} frames either side of a held block left out of training")


def make_folds(table: pd.DataFrame, k: int, gap: int) -> Folds:
    """Folds by subject, or by blocks of frames within videos when the split has fewer than k subjects."""
    videos = table["video"].to_numpy()
    n = len(table)
    if len({subject(v) for v in videos}) >= k:
        by_video = assign_folds(set(videos), k)
        names = {str(f): sorted(v for v, g in by_video.items() if g == f) for f in range(k)}
        return Folds(pd.Series(videos).map(by_video).to_numpy(), "subject", 0, names, np.zeros((k, n), bool))
    frames = table["frame"].to_numpy()
    of_row, near = np.zeros(n, np.int64), np.zeros((k, n), bool)
    names: dict[str, list[str]] = {str(f): [] for f in range(k)}
    for video, rows in video_rows(table).items():
        for f, block in enumerate(np.array_split(np.arange(len(rows)), k)):
            if len(block):
                of_row[rows[block]] = f
                near[f, rows[max(0, block[0] - gap):block[-1] + gap + 1]] = True
                names[str(f)].append(f"{video}:{frames[rows[block[0]]]}-{frames[rows[block[-1]]]}")
    folds = Folds(of_row, "blocks", gap, names, near)
    if not all(folds.train(f).any() for f in range(k)):
        raise ValueError(f"{n} annotated frames are too few for {k} folds of blocks with {gap} frames left out "
                         f"either side of each: a fold would have no frame to learn from. Use fewer folds "
                         f"(--folds) or a longer video.")
    return folds


def _train_heads(cfg, table, emb, has, rows, tasks, device) -> torch.nn.Module:
    """Frame heads (ddamfn-heads' standardised DDAMFN task heads) on the rows' embeddings."""
    module = EmbeddingHeads(*standardisation(emb[rows]), tasks).to(device)
    data = FrameEmbeddings(table, rows, emb)
    return _fit(cfg, module, data, lambda net, b: net(b["emb"]), table.iloc[rows], tasks, device)


def _train_lstm(cfg, table, emb, has, rows, tasks, device) -> torch.nn.Module:
    """The temporal LSTM on windows of the training rows; each contiguous run of rows is its own sequence,
    so that no window spans a held-out block."""
    rows = np.sort(rows)
    sub = table.iloc[rows].reset_index(drop=True)
    video = sub["video"].to_numpy()
    piece = np.cumsum(np.r_[True, (np.diff(rows) != 1) | (video[1:] != video[:-1])])
    sub["video"] = sub["video"] + "#" + pd.Series(piece).astype(str)
    module = TemporalLSTM(input_dim=emb.shape[1], hidden=cfg.hidden, layers=1, tasks=tasks).to(device)
    data = EmbeddingWindows(sub, emb[rows], has[rows], cfg.window, cfg.stride)

    def forward(net, b):
        out = net(b["emb"], b["mask"])
        keep = b["row"] >= 0
        for t in ("va", "expr", "au"):
            b[t] = b[t][keep]
        return {t: v[keep] for t, v in out.items()}
    return _fit(cfg, module, data, forward, sub, tasks, device)


def _fit(cfg, module, data, forward, train_table, tasks, device) -> torch.nn.Module:
    """Adam over `data` for cfg.epochs with the training code's task losses and weights."""
    t = target_arrays(train_table)
    expr_w = torch.tensor(losses.class_weights(t["expr"]), dtype=torch.float32, device=device) \
        if cfg.class_weights else None
    au_w = torch.tensor(losses.pos_weights(t["au"]), dtype=torch.float32, device=device) if cfg.pos_weight else None
    sampler = RandomSampler(data, generator=torch.Generator().manual_seed(cfg.seed))
    loader = DataLoader(data, batch_sampler=TrainingBatches(sampler, cfg.batch_size))
    optimizer = torch.optim.Adam(module.parameters(), lr=cfg.lr)
    module.train()
    for _ in range(cfg.epochs):
        for batch in loader:
            batch = {k: v.to(device) for k, v in batch.items()}
            out = forward(module, batch)
            loss = sum(losses.task_losses(out, batch, tasks, expr_w, au_w).values())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return module.eval()


def run_fold(cfg, table, emb, has, folds: Folds, k: int, tasks, device) -> dict[str, np.ndarray]:
    """Predictions of fold k's rows by a model trained on the rows folds.train(k) allows: {task: (rows in
    fold, dim)}."""
    torch.manual_seed(cfg.seed + k)
    labelled = np.zeros(len(table), dtype=bool)
    for task in tasks:
        labelled |= valid_mask(table, task)
    held = np.flatnonzero(folds.of_row == k)
    train = folds.train(k)
    if cfg.model == "lstm":
        train_rows = np.flatnonzero(train)
        module = _train_lstm(cfg, table, emb, has, train_rows, tasks, device)
        videos = sorted(set(table["video"].to_numpy()[held]))
        rows, preds = predict_sequences(module, table, videos, emb, has, tasks, cfg.window, cfg.stride)
        order = pd.Index(rows).get_indexer(held)
        return {t: v[order] for t, v in preds.items()}
    train_rows = np.flatnonzero(train & labelled & has)
    module = _train_heads(cfg, table, emb, has, train_rows, tasks, device)
    out = {t: np.full((len(held), TASK_DIMS[t]), np.nan, np.float32) for t in tasks}
    seen = has[held]
    got = predict_embeddings(module, emb[held[seen]], tasks, device)
    for t in tasks:
        out[t][seen] = got[t]
    return out


def audit_encoder(weights: str, device):
    """The encoder whose embeddings the folds train on: a DDAMFN checkpoint; "untrained": a DDAMFN with random
    weights (core.models' fixed seed), said so in every output; "clip": open_clip's image tower with the
    default weights (never saw any affect label), refused in words where they cannot be had."""
    from core.models import create_model

    if weights == UNTRAINED:
        return encoder_of("ddamfn", UNTRAINED, create_model("ddamfn", None, device=device))
    if weights == "clip":
        from core.models.clip import DEFAULT_MODEL
        from core.weights import default_clip_weights

        spec, note = default_clip_weights(DEFAULT_MODEL)
        if spec is None:
            raise ValueError(f"--encoder clip: {note}; use --encoder {UNTRAINED} offline")
        return load_encoder("clip", spec, device)
    return load_encoder("ddamfn", weights, device)


def leaked_videos(encoder, table: pd.DataFrame, root) -> list[str] | None:
    """The audited videos the encoder's checkpoint was trained on (its training record, core.review.
    trained_videos: layout names and the uploads' database keys), [] for none; None where no record says
    (random weights, upstream checkpoints)."""
    from core.review import trained_videos
    from training.uploads import database_keys

    seen = trained_videos(encoder.loaded.info.metadata)
    if seen is None:
        return None
    keys = database_keys(root)
    return sorted(v for v in table["video"].unique() if v in seen or keys.get(v) in seen)


def check_leakage(cfg: AuditConfig, encoder, table: pd.DataFrame) -> list[str] | None:
    """Refuse (ValueError, one line naming the videos) an encoder trained on audited videos, unless
    cfg.in_sample; returns the leaked videos ([] none, None unknown)."""
    leaked = leaked_videos(encoder, table, cfg.root)
    if leaked and not cfg.in_sample:
        raise ValueError(f"--encoder {cfg.encoder} was trained on {len(leaked)} of the audited videos "
                         f"({', '.join(leaked)}): its embeddings have learnt their annotation, so the audit would "
                         "miss their errors; use an encoder trained on other videos, --encoder clip or "
                         f"--encoder {UNTRAINED}, or --in-sample to mark every suggestion in-sample")
    return leaked


def _fold_file(out: Path, k: int) -> Path:
    return out / f"fold-{k}.npz"


# settings that change what a fold predicts: a fold file made with others is redone
FOLD_SETTINGS = ("root", "tasks", "corrections", "db", "encoder", "split", "folds", "model", "epochs", "lr",
                 "batch_size", "window", "stride", "hidden", "seed", "class_weights", "pos_weight")


def _fold_key(cfg: AuditConfig, encoder_key: str) -> str:
    return json.dumps({**{k: getattr(cfg, k) for k in FOLD_SETTINGS}, "encoder_key": encoder_key}, default=str)


def _fold_done(path: Path, videos: list[str], key: str) -> bool:
    """Whether the fold file holds this fold's videos, made with these settings (resumable runs)."""
    if not path.exists():
        return False
    try:
        with np.load(path) as z:
            return list(z["videos"]) == videos and str(z["key"]) == key
    except (OSError, ValueError, KeyError):
        return False


def audit(cfg: AuditConfig) -> dict:
    """The `audit` command; returns what it reports (process 0: the summary; others: {})."""
    device = distributed.setup(cfg.device)
    rank, world = distributed.rank_and_world()
    if cfg.uploads:                         # the team's uploads too, laid out as training lays them out
        cfg, _ = with_uploads(cfg, write=rank == 0)
    tasks = tuple(cfg.tasks)
    labels = load_labels(cfg.root, tasks, cfg.split, cfg.corrections, cfg.db)
    table = labels.table
    encoder = audit_encoder(cfg.encoder, device)
    leaked = check_leakage(cfg, encoder, table)
    cache = ensure_embeddings(cfg.cache, encoder, cfg.root, sorted(table["video"].unique()), cfg.batch_size,
                              cfg.workers, cfg.progress)
    emb, has = cache.table_embeddings(table)
    folds = make_folds(table, cfg.folds, cfg.window)
    if folds.by == "blocks":
        log.warning("audit: %s", folds.describe())
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    key = _fold_key(cfg, encoder.key)
    for k in range(rank, cfg.folds, world):
        videos = folds.names[str(k)]
        path = _fold_file(out, k)
        if _fold_done(path, videos, key):
            log.info("fold %d already done (%s)", k, path)
            continue
        started = time.perf_counter()
        preds = run_fold(cfg, table, emb, has, folds, k, tasks, device)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, videos=np.array(videos), rows=np.flatnonzero(folds.of_row == k), **preds,
                 seconds=time.perf_counter() - started, trained=int((folds.train(k) & has).sum()), key=key)
        tmp.replace(path)
    distributed.barrier()
    if rank != 0:
        return {}
    return _score(cfg, labels, folds, encoder, tasks, out, leaked)


def _score(cfg, labels, folds: Folds, encoder, tasks, out: Path, leaked: list[str] | None) -> dict:
    table = labels.table
    preds = {t: np.full((len(table), TASK_DIMS[t]), np.nan, np.float32) for t in tasks}
    seconds, trained = 0.0, 0
    for k in range(cfg.folds):
        with np.load(_fold_file(out, k)) as z:
            for t in tasks:
                preds[t][z["rows"]] = z[t]
            seconds, trained = seconds + float(z["seconds"]), trained + int(z["trained"])
    np.savez(out / "oof.npz", fold=folds.of_row, video=table["video"].to_numpy(dtype=str),
             frame=table["frame"].to_numpy(), **preds)
    settings = scorer.AuditSettings()
    scores = scorer.frame_scores(table, preds, folds.of_row, settings)
    fps = {v: video_fps(v) for v in table["video"].unique()}
    segments = scorer.find_segments(table, preds, scores, fps, settings)
    cal = calibration.calibrate(table, preds, folds.of_row, fps, settings,
                                calibration.CalibrationSettings(seed=cfg.seed))
    segments = calibration.rescore(segments, cal)
    if leaked:
        segments["detail"] = segments["detail"] + f"; {IN_SAMPLE}"
    segments, sample = _random_sample(table, tasks, segments, cfg.seed)
    segments.assign(suggested=segments["suggested"].map(json.dumps)).to_csv(out / "segments.csv", index=False)
    metrics = abaw_metrics(table, preds, tasks)
    frames = table.groupby("video")["frame"].max()
    run = {"split": cfg.split, "tasks": list(tasks),
           "settings": {**{k: v for k, v in dataclasses.asdict(cfg).items() if k != "db"},
                        "audit": dataclasses.asdict(settings), "calibration": cal.summary, "sample": sample},
           "encoder": {**encoder.info, "untrained": encoder.loaded.info.untrained,
                       "trained_on_audited": leaked},
           "folds": folds.names, "folding": folds.describe(),
           "metrics": {k: v for k, v in metrics.items() if not isinstance(v, list)},
           "annotated_frames": labels.summary()["labelled"],
           "timing": {"fold_seconds": round(seconds, 2), "device": str(encoder.device),
                      "frame_epochs_per_s": round(trained * cfg.epochs / max(seconds, 1e-9), 1)},
           "videos": {v: {"frames": int(n) + 1, "fps": fps[v]} for v, n in frames.items()}}
    (out / "audit.json").write_text(json.dumps(run, indent=1, default=str))
    real = segments["kind"] != sampling.CLEAN
    summary = {"out": str(out), "folding": folds.describe(), "segments": int(real.sum()),
               "above_report": int((real & (segments["score"] >= cal.threshold)).sum()), "calibration": cal.summary,
               "metrics": run["metrics"], "encoder_untrained": run["encoder"]["untrained"],
               "encoder_trained_on_audited": leaked, "timing": run["timing"]}
    if cfg.write_db:
        summary["audit_run"] = _write_db(cfg, run, segments)
    return summary


def _random_sample(table: pd.DataFrame, tasks, segments: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, dict]:
    """The random sample for the error-rate estimate (core/audit_sample.py): the segments with the drawn clean
    stretches added (kind sampling.CLEAN, score 0, so a reviewer can open and decide them), and what the estimate
    needs: settings, annotated frames per task, and each drawn unit (video, task, frames, own frames,
    stratum and its size N)."""
    settings = sampling.SampleSettings(seed=seed)
    order = table.sort_values(["video", "frame"], kind="stable")
    annotated = {(v, t): part["frame"].to_numpy()[valid_mask(part, t)] for v, part in order.groupby("video")
                 for t in tasks}
    everything = sampling.units(segments, annotated, settings)
    drawn = sampling.draw(everything, settings)
    clean = drawn[drawn["segment"] < 0]
    added = pd.DataFrame({"video": clean["video"], "task": clean["task"], "kind": sampling.CLEAN,
                          "start_frame": clean["start_frame"], "end_frame": clean["end_frame"],
                          "frames": clean["end_frame"] - clean["start_frame"] + 1, "score": 0.0,
                          "suggested": [{} for _ in range(len(clean))],
                          "detail": "a random stretch no suggestion covers, drawn for the error-rate estimate",
                          "raw_score": np.nan})
    units = drawn[["video", "task", "start_frame", "end_frame", "own_frames", "stratum", "N"]]
    return (pd.concat([segments, added], ignore_index=True),
            {"settings": dataclasses.asdict(settings), "frames": sampling.frames_per_task(everything),
             "units": units.to_dict("records")})


def _write_db(cfg, run: dict, segments: pd.DataFrame) -> int | None:
    """The run's id in the review database (None without one)."""
    from db.engine import make_session_factory, write
    from training.data import review_engine

    engine = review_engine(cfg.db, "the audit is not written to the database")
    if engine is None:
        return None
    from db.repo.audit import write_audit
    from training.uploads import database_keys

    # An upload's layout name (upload-<hex>) is not a video of the database: its suggestions belong to the
    # uploaded video itself, under its database key.
    keys = database_keys(cfg.root)

    def key(name: str) -> str:
        return keys.get(name, name)

    settings = run["settings"]
    if settings.get("sample"):               # the random sample's units name their videos too
        units = [{**u, "video": key(u["video"])} for u in settings["sample"]["units"]]
        settings = {**settings, "sample": {**settings["sample"], "units": units}}
    run = {**run, "settings": settings, "videos": {key(name): info for name, info in run["videos"].items()}}
    segments = segments.assign(video=segments["video"].map(key))
    return write(make_session_factory(engine), lambda s: write_audit(s, run, segments).id)
