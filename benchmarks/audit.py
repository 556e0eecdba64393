"""How well do the suggestions find planted annotation errors? Three rankings side by side.

    python -m benchmarks.audit [--out DIR] [--clip 96] [--pan 240] [--folds 5] [--seed 0]

Writes DIR/planted.json, DIR/ranking-{a,b,c}-{noisy,clean}.csv and the audit folders; prints the scores.

Data: Aff-Wild2-layout sets of real faces from ../shared/media (tests/datagen.py's face crops and
painted, learnable state): WolfgangLanger_Pexels.mp4 cut into clips of --clip frames, single_face.mp4,
the face part of face_noface.mov, and slow pans of --pan frames over each face of multi_face.jpg and over
single_face.jpg; every source frame is in one video only. The true labels change inside every video
(an expression every 1-2 s, AUs on and off, VA drifting), so "the label changes here" finds nothing. The
noisy set plants stretch errors into the annotation files: EXPR class swapped over 1-3 s, one AU stuck
on or off over 1-3 s, VA offset by 0.5, sign-flipped, or lagged by 1 s over 2-3 s, at 5-20 % of the
annotated frames; the clean control plants none.

Rankings, each a list of (video, task, frames, score):
  (a) core.review.suspicious_segments per video on in-sample predictions (frame heads trained on all of
      the noisy annotations, as when the analysing model was trained on them);
  (b) cleanlab at frame level on the audit's out-of-fold predictions (find_label_issues for EXPR and,
      multi-label, AU; cleanlab.regression's quality < 1 - va_suspicious for VA), merged into segments by
      core.audit.stretches (the same rule as the audit), scored by the median of 1 - cleanlab's quality;
  (c) the audit (python -m training audit).
Scores: per task and per planted kind, precision and recall at k (k = number planted; a hit overlaps a
planted stretch of its video and task with IoU >= 0.5, each planted stretch hit once), average precision;
false alarms on the clean control: suggestions at or above the default report threshold per ten minutes.
The encoder is a DDAMFN with random weights (untrained): the painted state is what the heads learn.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from core.affwild2 import image_name, write_annotation
from core.audit import AuditSettings, stretches
from core.labels import AUS, CHALLENGE_DIRS, EXPRESSIONS, SPLIT_DIRS, TASKS
from tests import datagen

KINDS = {"expr": ("swap",), "au": ("stuck",), "va": ("offset", "sign", "lag")}


# -- data ----------------------------------------------------------------------------------------------


def _video_crops(source: str, start: int, n: int, media: Path) -> list:
    frames = datagen._read_frames(media / source, start, n)
    boxes = datagen._face_boxes(source, start, len(frames), media)
    return [datagen._square_crop(f, datagen._largest(b)[0]) if len(b) else None for f, b in zip(frames, boxes)]


def _pan_crops(photo_name: str, face: int, n: int, media: Path) -> list:
    """A slow pan (a window of 80 % of the photo, left to right, up and down) over a still photo,
    following its face number `face` (left to right)."""
    photo = datagen._read_photo(media / photo_name)
    (boxes,) = datagen._detect([photo], width=photo.shape[1])
    box = boxes[np.argsort(boxes[:, 0])][face]
    height, width = photo.shape[:2]
    w, h = int(0.8 * width), int(0.8 * height)
    out = []
    for t in range(n):
        phase = t / max(n - 1, 1)
        x, y = round((width - w) * phase), round((height - h) * (0.5 + 0.5 * np.sin(2 * np.pi * phase)))
        out.append(datagen._square_crop(np.ascontiguousarray(photo[y:y + h, x:x + w]),
                                        box - np.array([x, y, x, y])))
    return out


def sources(media: Path, clip: int, pan: int) -> dict[str, tuple]:
    """Video name (ABAW style, with its frame rate) -> how to make its crops; no source frame twice."""
    out = {}
    for i in range(472 // clip):
        out[f"{20 + i}-24-640x360"] = ("video", "WolfgangLanger_Pexels.mp4", i * clip, clip)
    out["40-30-640x360"] = ("video", "single_face.mp4", 0, 72)
    out["41-26-960x540"] = ("video", "face_noface.mov", 0, 48)
    if pan:
        photo = datagen._read_photo(media / "multi_face.jpg")
        faces = len(datagen._detect([photo], width=photo.shape[1])[0])
        for k in range(faces):
            out[f"5{k}-30-960x640"] = ("pan", "multi_face.jpg", k, pan)
        out["60-30-960x640"] = ("pan", "single_face.jpg", 0, pan)
    return out


def _truth(rng, n: int, fps: float) -> pd.DataFrame:
    """Labels that change inside the video: an expression every 1-2 s, AUs in 1-2 s runs, VA drifting
    with an amplitude that keeps it away from zero most of the time."""
    expr, aus, t = np.empty(n, np.int64), np.empty((n, len(AUS)), np.int64), 0
    while t < n:
        run = int(rng.integers(int(fps), int(2 * fps) + 1))
        expr[t:t + run] = rng.integers(0, len(EXPRESSIONS)) if t == 0 else \
            (expr[t - 1] + rng.integers(1, len(EXPRESSIONS))) % len(EXPRESSIONS)
        aus[t:t + run] = rng.random(len(AUS)) < 0.35
        t += run
    s = np.arange(n) / fps
    va = np.stack([0.6 * np.sin(2 * np.pi * s / rng.uniform(3, 6) + rng.uniform(0, 6)),
                   0.5 * np.sin(2 * np.pi * s / rng.uniform(3, 6) + rng.uniform(0, 6))], axis=1)
    return datagen._state_table(np.round(va, 4), expr, aus)


def _plant(rng, labels: pd.DataFrame, fps: float, left: dict[str, int]) -> tuple[pd.DataFrame, list[dict]]:
    """The labels with stretch errors planted (non-overlapping, 5 frames apart, inside the video's first and
    last second), at most left[task] frames per task (the dataset's budget still open; decremented)."""
    noisy, planted, n = labels.copy(), [], len(labels)
    for task, kinds in KINDS.items():
        used = np.zeros(n, bool)
        for kind in rng.permutation(kinds):
            seconds = rng.uniform(2, 3) if kind == "lag" else rng.uniform(1, 3)
            length = int(round(fps * seconds))
            free = [a for a in range(int(fps), n - length - int(fps)) if not used[max(0, a - 5):a + length + 5].any()]
            if length > left[task] or not free:
                continue
            a = int(rng.choice(free))
            b = a + length - 1
            rows = slice(a, b + 1)
            if task == "expr":
                shown = set(labels["expression"].iloc[rows].astype(int))
                noisy.loc[a:b, "expression"] = int(rng.choice([k for k in range(len(EXPRESSIONS)) if k not in shown]))
            elif task == "au":
                au = AUS[int(rng.integers(len(AUS)))]
                noisy.loc[a:b, au] = int(labels[au].iloc[rows].mean() < 0.5)
            elif kind == "offset":
                d = ["valence", "arousal"][int(rng.integers(2))]
                v = labels[d].iloc[rows]
                noisy.loc[a:b, d] = np.round(np.clip(v + (0.5 if v.mean() < 0 else -0.5), -1, 1), 4)
            elif kind == "sign":
                noisy.loc[a:b, ["valence", "arousal"]] = -labels[["valence", "arousal"]].iloc[rows].to_numpy()
            else:
                lag = int(round(fps))
                noisy.loc[a:b, ["valence", "arousal"]] = labels[["valence", "arousal"]].iloc[a - lag:b + 1 - lag].to_numpy()
            used[rows] = True
            left[task] -= length
            planted.append({"task": task, "kind": kind, "start_frame": a, "end_frame": b})
    return noisy, planted


def make_sets(out: Path, media: Path, clip: int, pan: int, seed: int, budget: float = 0.15) -> dict:
    """Write a noisy and a clean Aff-Wild2-layout set (same images, train split only) with up to `budget`
    of all frames planted per task, videos taken in random order; return the planted errors and frame
    counts."""
    rng = np.random.default_rng(seed)
    planted, frames = [], {}
    made = sources(media, clip, pan)
    left = {task: int(budget * sum(n for *_, n in made.values())) for task in KINDS}
    for name in rng.permutation(list(made)):
        kind, source, start, n = made[name]
        fps = float(name.split("-")[1])
        crops = _video_crops(source, start, n, media) if kind == "video" else _pan_crops(source, start, n, media)
        truth = _truth(rng, len(crops), fps)
        noisy, found = _plant(rng, truth, fps, left)
        planted += [{"video": str(name), **p} for p in found]
        frames[str(name)] = len(crops)
        for variant, labels in (("noisy", noisy), ("clean", truth)):
            root = out / variant
            folder = root / "cropped_aligned" / str(name)
            folder.mkdir(parents=True, exist_ok=True)
            for t, crop in enumerate(crops):
                if crop is not None:
                    image = datagen.paint_state(crop, truth.iloc[t])
                    cv2.imwrite(str(folder / image_name(t)), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            for task in TASKS:
                write_annotation(labels, root / CHALLENGE_DIRS[task][0] / SPLIT_DIRS["train"] / f"{name}.txt", task)
    return {"planted": planted, "frames": frames}


# -- rankings ------------------------------------------------------------------------------------------


def in_sample_ranking(root: Path, cache: Path, epochs: int) -> pd.DataFrame:
    """(a) the per-video queue on predictions of heads trained on every noisy annotation."""
    import torch

    from core.review import suspicious_segments
    from core.table import AU_PROBS, EXPR_PROBS
    from training import config
    from training.audit import _train_heads, audit_encoder, video_fps
    from training.data import load_labels, valid_mask
    from training.extract import ensure_embeddings
    from training.predictions import predict_embeddings

    cfg = config.build(config.AuditConfig, root=str(root), encoder="untrained", epochs=epochs, batch_size=64,
                       corrections=False, device="cpu", workers=0, progress=False)
    table = load_labels(root, TASKS, "train", corrections=False).table
    encoder = audit_encoder("untrained", torch.device("cpu"))
    emb, has = ensure_embeddings(cache, encoder, root, sorted(table["video"].unique()), 64, 0, False) \
        .table_embeddings(table)
    labelled = np.zeros(len(table), bool)
    for task in TASKS:
        labelled |= valid_mask(table, task)
    torch.manual_seed(0)
    heads = _train_heads(cfg, table, emb, has, np.flatnonzero(labelled & has), TASKS, torch.device("cpu"))
    preds = predict_embeddings(heads, emb, TASKS, torch.device("cpu"))
    rows = []
    for video, part in table.groupby("video", sort=False):
        r = part.index.to_numpy()
        df = pd.DataFrame({"frame": part["frame"].to_numpy(), "face": has[r]})
        df["time_s"] = df["frame"] / video_fps(video)
        keep = has[r]
        df["valence"] = np.where(keep, preds["va"][r, 0], np.nan)
        df["arousal"] = np.where(keep, preds["va"][r, 1], np.nan)
        for cols, values in ((EXPR_PROBS, preds["expr"][r]), (AU_PROBS, preds["au"][r])):
            for j, c in enumerate(cols):
                df[c] = np.where(keep, values[:, j], np.nan)
        df["expr"] = np.where(keep, preds["expr"][r].argmax(axis=1), np.nan)
        df["gt_valence"], df["gt_arousal"] = part["valence"].to_numpy(), part["arousal"].to_numpy()
        df["gt_expr"] = part["expression"].to_numpy(dtype="float64", na_value=np.nan)
        for au in AUS:
            df[f"gt_{au}"] = part[au].to_numpy(dtype="float64", na_value=np.nan)
        queue = suspicious_segments(df, fps=video_fps(video), in_sample=True)
        rows += [{"video": video, **q} for q in queue.to_dict("records")]
    return pd.DataFrame(rows, columns=["video", "task", "kind", "start_frame", "end_frame", "score"])


def cleanlab_ranking(root: Path, audit_out: Path, settings: AuditSettings = AuditSettings()) -> pd.DataFrame:
    """(b) cleanlab's frame-level issues on the out-of-fold predictions, merged by core.audit.stretches."""
    from cleanlab.filter import find_label_issues
    from cleanlab.multilabel_classification.filter import find_label_issues as find_multilabel_issues
    from cleanlab.multilabel_classification.rank import get_label_quality_scores as multilabel_quality
    from cleanlab.rank import get_label_quality_scores
    from cleanlab.regression.rank import get_label_quality_scores as regression_quality

    from training.data import load_labels

    table = load_labels(root, TASKS, "train", corrections=False).table
    oof = np.load(audit_out / "oof.npz")
    n = len(table)
    suspicion = {t: np.full(n, np.nan) for t in TASKS}
    expr = table["expression"].to_numpy(dtype="float64", na_value=np.nan)
    ok = ~np.isnan(expr) & ~np.isnan(oof["expr"]).any(axis=1)
    probs = oof["expr"][ok] / oof["expr"][ok].sum(axis=1, keepdims=True)
    issues = find_label_issues(expr[ok].astype(int), probs)
    suspicion["expr"][ok] = np.where(issues, 1 - get_label_quality_scores(expr[ok].astype(int), probs), 0)
    au = table[list(AUS)].to_numpy(dtype="float64", na_value=np.nan)
    ok = ~np.isnan(au).any(axis=1) & ~np.isnan(oof["au"]).any(axis=1)
    present = [list(np.flatnonzero(row > 0.5)) for row in au[ok]]
    p = np.clip(oof["au"][ok], 1e-6, 1 - 1e-6)
    issues = find_multilabel_issues(present, p)
    suspicion["au"][ok] = np.where(issues, 1 - multilabel_quality(present, p), 0)
    va = table[["valence", "arousal"]].to_numpy(dtype="float64", na_value=np.nan)
    ok = ~np.isnan(va).any(axis=1) & ~np.isnan(oof["va"]).any(axis=1)
    quality = np.minimum(*(regression_quality(va[ok, d], oof["va"][ok, d].astype(np.float64)) for d in range(2)))
    suspicion["va"][ok] = np.where(quality < 1 - settings.va_suspicious, 1 - quality, 0)
    rows = []
    for video, part in table.groupby("video", sort=False):
        r = part.index.to_numpy()
        frames = part["frame"].to_numpy()
        for task in TASKS:
            for a, b, score in stretches(suspicion[task][r], 0.0, settings):
                rows.append({"video": video, "task": task, "kind": "cleanlab", "start_frame": int(frames[a]),
                             "end_frame": int(frames[b]), "score": score})
    return pd.DataFrame(rows, columns=["video", "task", "kind", "start_frame", "end_frame", "score"])


# -- scores --------------------------------------------------------------------------------------------


def _iou(a0, a1, b0, b1) -> float:
    inter = min(a1, b1) - max(a0, b0) + 1
    return max(0, inter) / (max(a1, b1) - min(a0, b0) + 1)


def score_ranking(ranking: pd.DataFrame, planted: list[dict], task: str, kind: str | None = None) -> dict:
    """Precision and recall at k and average precision of one task's ranking against its planted
    stretches (of one kind: suggestions that hit a planted stretch of another kind are left out)."""
    targets = [p for p in planted if p["task"] == task and (kind is None or p["kind"] == kind)]
    others = [p for p in planted if p["task"] == task and kind is not None and p["kind"] != kind]
    ranked = ranking[ranking["task"] == task].sort_values("score", ascending=False, kind="stable")
    found, hits, precisions = set(), [], []

    def hit(row, pool):
        return [i for i, p in enumerate(pool) if p["video"] == row.video
                and _iou(row.start_frame, row.end_frame, p["start_frame"], p["end_frame"]) >= 0.5]

    for row in ranked.itertuples():
        if others and hit(row, others) and not hit(row, targets):
            continue
        new = [i for i in hit(row, targets) if i not in found]
        if new:
            found.add(new[0])
        hits.append(bool(new))
        if new:
            precisions.append(sum(hits) / len(hits))
    k = len(targets)
    top = sum(hits[:k]) if k else 0
    return {"planted": k, "suggested": len(hits), "precision_at_k": top / k if k else None,
            "recall_at_k": top / k if k else None, "recall_all": len(found) / k if k else None,
            "average_precision": sum(precisions) / k if k else None}


def false_alarms(ranking: pd.DataFrame, frames: dict, threshold: float) -> dict:
    minutes = sum(n / float(v.split("-")[1]) for v, n in frames.items()) / 60
    above = int((ranking["score"] >= threshold).sum())
    return {"above_threshold": above, "clean_minutes": round(minutes, 2),
            "per_ten_minutes": round(above / minutes * 10, 2)}


def run(out: Path, media: Path, clip: int, pan: int, folds: int, epochs: int, seed: int) -> dict:
    from training import config
    from training.audit import audit

    started = time.time()
    sets = make_sets(out, media, clip, pan, seed)
    (out / "planted.json").write_text(json.dumps(sets, indent=1))
    made = time.time()
    results = {"planted": len(sets["planted"]), "videos": len(sets["frames"]),
               "frames": sum(sets["frames"].values()), "encoder": "DDAMFN, random weights (untrained)"}
    rankings, summaries = {}, {}
    for variant in ("noisy", "clean"):
        cfg = config.build(config.AuditConfig, root=str(out / variant), out=str(out / f"audit-{variant}"),
                           cache=str(out / "cache"), encoder="untrained", folds=folds, epochs=epochs,
                           batch_size=64, corrections=False, device="cpu", workers=0, progress=False,
                           write_db=False)
        summaries[variant] = audit(cfg)
        seg = pd.read_csv(out / f"audit-{variant}" / "segments.csv")
        rankings[variant] = {"a": in_sample_ranking(out / variant, out / "cache", epochs),
                             "b": cleanlab_ranking(out / variant, out / f"audit-{variant}"),
                             "c": seg[["video", "task", "kind", "start_frame", "end_frame", "score"]]}
    report = AuditSettings().report
    for variant, by_name in rankings.items():
        for name, ranking in by_name.items():
            ranking.to_csv(out / f"ranking-{name}-{variant}.csv", index=False)
    for name in ("a", "b", "c"):
        scores = {task: score_ranking(rankings["noisy"][name], sets["planted"], task) for task in TASKS}
        scores.update({f"{task}/{kind}": score_ranking(rankings["noisy"][name], sets["planted"], task, kind)
                       for task, kinds in KINDS.items() for kind in kinds})
        scores["clean_control"] = false_alarms(rankings["clean"][name], sets["frames"], report)
        results[name] = scores
    results["oof_metrics"] = {v: s["metrics"] for v, s in summaries.items()}
    results["audit_timing"] = {v: s["timing"] for v, s in summaries.items()}
    results["planted_share"] = {t: round(sum(p["end_frame"] - p["start_frame"] + 1 for p in sets["planted"]
                                             if p["task"] == t) / results["frames"], 3) for t in TASKS}
    results["seconds"] = {"data": round(made - started, 1), "rest": round(time.time() - made, 1)}
    return results


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.audit", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("runs/benchmark-audit"))
    p.add_argument("--media", type=Path, default=datagen.MEDIA_DIR)
    p.add_argument("--clip", type=int, default=96, help="frames per clip of the Pexels video")
    p.add_argument("--pan", type=int, default=240, help="frames per pan over a photo's face (0: none)")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    results = run(args.out, args.media, args.clip, args.pan, args.folds, args.epochs, args.seed)
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
