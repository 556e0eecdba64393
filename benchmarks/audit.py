"""How well do the audit's calibrated suggestions find planted annotation errors, beside a cleanlab baseline?

    nice -n 10 python -m benchmarks.audit [--out DIR] [--videos 32] [--frames 570] [--folds 5] [--seed 0]

Writes DIR/planted.json, DIR/ranking-{cleanlab,audit}-{noisy,clean}.csv, the audit folders and DIR/results.json;
prints the figures.

Data: Aff-Wild2-layout videos of every face in ../shared/media (tests/datagen.py's face crops and painted,
learnable state): WolfgangLanger_Pexels.mp4, single_face.mp4, the face parts of face_noface.mov and
noface_face.mov (each played forwards and back from a different start, so a video is longer than its
source), and slow pans along different paths over each face of multi_face.jpg and over single_face.jpg;
--videos videos of --frames frames each (32 x 570 frames: more than 10 minutes at their frame rates). Source
frames repeat across videos; the painted state, which is what the heads learn, never does. The true labels
change inside every video (an expression every 1-2 s, AUs on and off, VA drifting). The noisy set plants
stretch errors of 8 frames to 5 s (VA lag and stuck: 2-5 s) into the annotation files, at about --budget of
each task's frames: EXPR swapped to another class; one AU flipped or stuck on/off; VA offset by 0.5,
sign-flipped, lagged by 0.5-1.5 s, or stuck; the clean control plants none.

Rankings, each a list of (video, task, start_frame, end_frame, score):
  cleanlab: the baseline -- logistic regression (ridge for VA) on the same untrained-DDAMFN embeddings, out of
      fold over the audit's folds; cleanlab's find_label_issues (multi-label for AU; regression label quality
      below 1 - va_suspicious for VA); runs of flagged frames (gaps up to merge_gap merged) ranked by summed
      suspicion (1 - label quality);
  audit: python -m training audit, scores calibrated (core/audit_calibration.py).
Scores per task and planted kind: precision and recall at k (k = number planted; a hit overlaps a planted
stretch of its video and task with IoU >= 0.5, each planted stretch hit once) and average precision; the
audit's default threshold: measured precision on the noisy set beside the calibration's expected precision,
and suggestions at or above it per ten minutes of the clean control. The random-sample estimate
(core/audit_sample.py): for 10 seeds a stratified sample of the noisy audit's units, reviewed by an oracle
that counts the planted frames in each, and whether its interval covers the planted wrong frames.
The encoder is a DDAMFN with random weights (untrained).
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
from core.audit import AuditSettings, runs
from core.audit_sample import CLEAN
from core.jsonsafe import jsonable
from core.labels import AUS, CHALLENGE_DIRS, EXPRESSIONS, SPLIT_DIRS, TASKS
from tests import datagen

KINDS = {"expr": ("swap",), "au": ("flip", "stuck"), "va": ("offset", "sign", "lag", "stuck")}
VIDEO_SOURCES = {"WolfgangLanger_Pexels.mp4": (0, 472), "single_face.mp4": (0, 72), "face_noface.mov": (0, 50),
                 "noface_face.mov": (125, 44)}       # (first frame with the face, frames with it)
PHOTOS = ("multi_face.jpg", "single_face.jpg")


# -- data ----------------------------------------------------------------------------------------------


def _video_crops(source: str, start: int, n: int, media: Path) -> list:
    frames = datagen._read_frames(media / source, start, n)
    boxes = datagen._face_boxes(source, start, len(frames), media)
    return [datagen._square_crop(f, datagen._largest(b)[0]) for f, b in zip(frames, boxes) if len(b)]


def _ping_pong(crops: list, start: int, n: int) -> list:
    """n crops played forwards and back through `crops` from position `start`."""
    cycle = crops + crops[-2:0:-1]
    return [cycle[(start + t) % len(cycle)] for t in range(n)]


def _pan_crops(photo, box: np.ndarray, n: int, rng) -> list:
    """A slow pan over a still photo (a window of 70-90 % of it along a random sine path, the face always
    inside), following one face."""
    height, width = photo.shape[:2]
    scale = rng.uniform(0.7, 0.9)
    w, h = int(scale * width), int(scale * height)
    x0, x1 = max(0, int(box[2]) + 1 - w), min(width - w, int(box[0]))
    y0, y1 = max(0, int(box[3]) + 1 - h), min(height - h, int(box[1]))
    turns, phase = rng.uniform(0.5, 2), rng.uniform(0, 2 * np.pi)
    out = []
    for t in range(n):
        u = t / max(n - 1, 1)
        x = x0 + round((x1 - x0) * (0.5 + 0.5 * np.sin(2 * np.pi * turns * u + phase)))
        y = y0 + round((y1 - y0) * (0.5 + 0.5 * np.cos(2 * np.pi * turns * u / 2 + phase)))
        out.append(datagen._square_crop(np.ascontiguousarray(photo[y:y + h, x:x + w]), box - np.array([x, y, x, y])))
    return out


def faces(media: Path) -> list[tuple]:
    """Every face the media holds: ("video", source) or ("photo", source, face box)."""
    out = [("video", source) for source in VIDEO_SOURCES]
    for name in PHOTOS:
        photo = datagen._read_photo(media / name)
        (boxes,) = datagen._detect([photo], width=photo.shape[1])
        out += [("photo", name, box) for box in boxes[np.argsort(boxes[:, 0])]]
    return out


def make_videos(media: Path, count: int, frames: int, rng) -> dict[str, tuple[float, list]]:
    """ABAW-style name (with its frame rate) -> (fps, crops): the faces in turn until `count` videos."""
    found, crops = faces(media), {}
    out = {}
    for i in range(count):
        face = found[i % len(found)]
        if face[0] == "video":
            if face[1] not in crops:
                crops[face[1]] = _video_crops(face[1], *VIDEO_SOURCES[face[1]], media)
            fps = 24.0 if face[1].startswith("Wolfgang") else 30.0
            made = _ping_pong(crops[face[1]], int(rng.integers(len(crops[face[1]]))), frames)
        else:
            fps = 30.0
            made = _pan_crops(datagen._read_photo(media / face[1]), face[2], frames, rng)
        out[f"{100 + i}-{int(fps)}-640x360"] = (fps, made)
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


def _plant(rng, labels: pd.DataFrame, fps: float, budget: float) -> tuple[pd.DataFrame, list[dict]]:
    """The labels with stretch errors planted (non-overlapping per task, 5 frames apart), about `budget` of
    the video's frames per task, kinds in turn."""
    noisy, planted, n = labels.copy(), [], len(labels)
    for task, kinds in KINDS.items():
        used, left = np.zeros(n, bool), int(budget * n)
        for attempt in range(12):
            kind = kinds[int(rng.integers(len(kinds)))]
            least = 8 if kind not in ("lag", "stuck") or task != "va" else int(2 * fps)
            length = int(round(np.exp(rng.uniform(np.log(least), np.log(5 * fps)))))
            lag = int(round(fps * rng.uniform(0.5, 1.5)))
            free = [a for a in range(lag, n - length) if not used[max(0, a - 5):a + length + 5].any()]
            if length > left or not free:
                continue
            a = int(rng.choice(free))
            b = a + length - 1
            rows = slice(a, b + 1)
            if task == "expr":
                shown = set(labels["expression"].iloc[rows].astype(int))
                noisy.loc[a:b, "expression"] = int(rng.choice([k for k in range(len(EXPRESSIONS)) if k not in shown]))
            elif task == "au":
                au = AUS[int(rng.integers(len(AUS)))]
                v = labels[au].iloc[rows].to_numpy(int)
                noisy.loc[a:b, au] = 1 - v if kind == "flip" else int(v.mean() < 0.5)
            elif kind == "offset":
                d = ["valence", "arousal"][int(rng.integers(2))]
                v = labels[d].iloc[rows]
                noisy.loc[a:b, d] = np.round(np.clip(v + (0.5 if v.mean() < 0 else -0.5), -1, 1), 4)
            elif kind == "sign":
                noisy.loc[a:b, ["valence", "arousal"]] = -labels[["valence", "arousal"]].iloc[rows].to_numpy()
            elif kind == "lag":
                earlier = labels[["valence", "arousal"]].iloc[a - lag:b + 1 - lag]
                noisy.loc[a:b, ["valence", "arousal"]] = earlier.to_numpy()
            else:
                noisy.loc[a:b, ["valence", "arousal"]] = labels[["valence", "arousal"]].iloc[a].to_numpy()
            used[rows] = True
            left -= length
            planted.append({"task": task, "kind": kind, "start_frame": a, "end_frame": b})
    return noisy, planted


def make_sets(out: Path, media: Path, videos: int, frames: int, seed: int, budget: float) -> dict:
    """Write a noisy and a clean Aff-Wild2-layout set (same images, train split only); return the planted
    errors and frame counts."""
    rng = np.random.default_rng(seed)
    planted, counts = [], {}
    for name, (fps, crops) in make_videos(media, videos, frames, rng).items():
        truth = _truth(rng, len(crops), fps)
        noisy, found = _plant(rng, truth, fps, budget)
        planted += [{"video": name, **p} for p in found]
        counts[name] = len(crops)
        folder = out / "images" / name
        folder.mkdir(parents=True, exist_ok=True)
        for t, crop in enumerate(crops):
            cv2.imwrite(str(folder / image_name(t)), cv2.cvtColor(datagen.paint_state(crop, truth.iloc[t]),
                                                                 cv2.COLOR_RGB2BGR))
        for variant, labels in (("noisy", noisy), ("clean", truth)):
            for task in TASKS:
                write_annotation(labels, out / variant / CHALLENGE_DIRS[task][0] / SPLIT_DIRS["train"] / f"{name}.txt",
                                 task)
    for variant in ("noisy", "clean"):
        link = out / variant / "cropped_aligned"
        if not link.exists():
            link.symlink_to((out / "images").resolve())
    return {"planted": planted, "frames": counts}


# -- rankings ------------------------------------------------------------------------------------------


def _out_of_fold(make, x: np.ndarray, y: np.ndarray, folds: np.ndarray, predict) -> np.ndarray:
    """Per row, the prediction of a model fitted on the other folds' rows."""
    out = None
    for k in np.unique(folds):
        held = folds == k
        got = predict(make().fit(x[~held], y[~held]), x[held])
        out = np.zeros((len(x), *got.shape[1:])) if out is None else out
        out[held] = got
    return out


def _probabilities(classes: int):
    """predict_proba over all `classes` (a class a fold never saw: probability 0)."""
    def predict(model, x):
        out = np.zeros((len(x), classes))
        out[:, model.classes_] = model.predict_proba(x)
        return out
    return predict


class _Either:
    """A classifier from `make`, or where a fold's training rows hold one class only, that class always."""

    def __init__(self, make):
        self.make = make

    def fit(self, x, y):
        self.classes_ = np.unique(y)
        self.model = self.make().fit(x, y) if len(self.classes_) > 1 else None
        return self

    def predict_proba(self, x):
        return self.model.predict_proba(x) if self.model is not None else np.ones((len(x), 1))


def cleanlab_ranking(root: Path, audit_out: Path, cache: Path,
                     settings: AuditSettings = AuditSettings()) -> pd.DataFrame:
    """The baseline: logistic regression (ridge for VA) on the embeddings, out of fold over the audit's folds,
    cleanlab's find_label_issues, runs of flagged frames ranked by summed suspicion."""
    import torch
    from cleanlab.filter import find_label_issues
    from cleanlab.multilabel_classification.filter import find_label_issues as find_multilabel_issues
    from cleanlab.multilabel_classification.rank import get_label_quality_scores as multilabel_quality
    from cleanlab.rank import get_label_quality_scores
    from cleanlab.regression.rank import get_label_quality_scores as regression_quality
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from training.audit import audit_encoder
    from training.data import load_labels
    from training.extract import ensure_embeddings

    table = load_labels(root, TASKS, "train", corrections=False).table
    encoder = audit_encoder("untrained", torch.device("cpu"))
    emb, has = ensure_embeddings(cache, encoder, root, sorted(table["video"].unique()), 64, 0, False) \
        .table_embeddings(table)
    with np.load(audit_out / "oof.npz") as z:
        folds = z["fold"]
    n = len(table)
    suspicion = {t: np.zeros(n) for t in TASKS}

    def logistic():
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=300, C=0.1))

    expr = table["expression"].to_numpy(dtype="float64", na_value=np.nan)
    ok = has & ~np.isnan(expr)
    probs = _out_of_fold(logistic, emb[ok], expr[ok].astype(int), folds[ok], _probabilities(len(EXPRESSIONS)))
    probs = np.clip(probs, 1e-6, None) / np.clip(probs, 1e-6, None).sum(axis=1, keepdims=True)
    issues = find_label_issues(expr[ok].astype(int), probs)
    suspicion["expr"][ok] = np.where(issues, 1 - get_label_quality_scores(expr[ok].astype(int), probs), 0)
    au = table[list(AUS)].to_numpy(dtype="float64", na_value=np.nan)
    ok = has & ~np.isnan(au).any(axis=1)
    def binary():
        return _Either(logistic)

    p = np.column_stack([_out_of_fold(binary, emb[ok], au[ok, j].astype(int), folds[ok], _probabilities(2))[:, 1]
                         for j in range(len(AUS))])
    present = [list(np.flatnonzero(row > 0.5)) for row in au[ok]]
    p = np.clip(p, 1e-6, 1 - 1e-6)
    issues = find_multilabel_issues(present, p)
    suspicion["au"][ok] = np.where(issues, 1 - multilabel_quality(present, p), 0)
    va = table[["valence", "arousal"]].to_numpy(dtype="float64", na_value=np.nan)
    ok = has & ~np.isnan(va).any(axis=1)
    pred = _out_of_fold(lambda: make_pipeline(StandardScaler(), Ridge(alpha=10.0)), emb[ok], va[ok], folds[ok],
                        lambda m, x: m.predict(x))
    quality = np.minimum(*(regression_quality(va[ok, d], pred[:, d]) for d in range(2)))
    suspicion["va"][ok] = np.where(quality < 1 - settings.va_suspicious, 1 - quality, 0)
    rows = []
    for video, part in table.groupby("video", sort=False):
        r = part.index.to_numpy()
        frames = part["frame"].to_numpy()
        for task in TASKS:
            flagged = suspicion[task][r] > 0
            merged: list[list[int]] = []
            for a, b in runs(flagged):
                if merged and a - merged[-1][1] - 1 <= settings.merge_gap:
                    merged[-1][1] = b
                else:
                    merged.append([a, b])
            rows += [{"video": video, "task": task, "kind": "cleanlab", "start_frame": int(frames[a]),
                      "end_frame": int(frames[b]), "score": float(suspicion[task][r][a:b + 1].sum())}
                     for a, b in merged]
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


def at_threshold(ranking: pd.DataFrame, planted: list[dict], threshold: float) -> dict:
    """Suggestions at or above the threshold on the noisy set and the share that hit a planted stretch."""
    above = ranking[ranking["score"] >= threshold]
    hit = [any(p["video"] == r.video and p["task"] == r.task
               and _iou(r.start_frame, r.end_frame, p["start_frame"], p["end_frame"]) >= 0.5 for p in planted)
           for r in above.itertuples()]
    return {"above_threshold": len(above), "measured_precision": round(float(np.mean(hit)), 3) if hit else None}


def false_alarms(ranking: pd.DataFrame, frames: dict, threshold: float) -> dict:
    minutes = sum(n / float(v.split("-")[1]) for v, n in frames.items()) / 60
    above = int((ranking["score"] >= threshold).sum())
    return {"above_threshold": above, "clean_minutes": round(minutes, 2),
            "per_ten_minutes": round(above / minutes * 10, 2)}


def sample_coverage(segments: pd.DataFrame, planted: list[dict], frames: dict, seeds=range(10)) -> dict:
    """The random-sample estimate (core/audit_sample.py) for each seed, reviewed by an oracle that counts the
    planted frames in each sampled unit; whether its interval covers the planted wrong frames."""
    from core.audit_sample import SampleSettings, draw, estimate, frames_per_task, units

    wrong = {}
    for p in planted:
        wrong.setdefault((p["video"], p["task"]), set()).update(range(p["start_frame"], p["end_frame"] + 1))
    truth = {t: sum(len(v) for (_, task), v in wrong.items() if task == t) for t in TASKS}
    truth["all"] = sum(truth.values())
    annotated = {(v, t): np.arange(n) for v, n in frames.items() for t in TASKS}
    everything = units(segments, annotated)
    out = {"planted_wrong_frames": truth, "units": len(everything), "runs": []}
    for seed in seeds:
        sample = draw(everything, SampleSettings(seed=seed))
        said = pd.Series([sum(f in wrong.get((u.video, u.task), ()) for f in range(u.start_frame, u.end_frame + 1))
                          for u in sample.itertuples()], index=sample.index, dtype=float)
        # the oracle counts wrong frames among the unit's own frames only (overlaps count once)
        said = np.minimum(said, sample["own_frames"])
        est = estimate(sample, said, frames_per_task(everything))
        out["runs"].append({"seed": seed, "reviewed": len(sample),
                            **{t: [e["low"], e["wrong"], e["high"]] for t, e in est.items()}})
    out["covered"] = {t: sum(r[t][0] <= truth[t] <= r[t][2] for r in out["runs"]) for t in truth}
    return out


def suggestions(audit_out: Path) -> pd.DataFrame:
    """The audit's suggestions (segments.csv less the clean stretches drawn for the random sample)."""
    seg = pd.read_csv(audit_out / "segments.csv")
    return seg[seg["kind"] != CLEAN].reset_index(drop=True)


def run(out: Path, media: Path, videos: int, frames: int, folds: int, epochs: int, seed: int,
        budget: float = 0.05) -> dict:
    import torch

    from training import config
    from training.audit import audit

    torch.set_num_threads(1)          # shared cores: more threads only spin
    started = time.time()
    sets = make_sets(out, media, videos, frames, seed, budget)
    (out / "planted.json").write_text(json.dumps(sets, indent=1))
    made = time.time()
    results = {"planted": len(sets["planted"]), "videos": len(sets["frames"]),
               "frames": sum(sets["frames"].values()),
               "minutes": round(sum(n / float(v.split("-")[1]) for v, n in sets["frames"].items()) / 60, 2),
               "encoder": "DDAMFN, random weights (untrained)"}
    rankings, summaries = {}, {}
    for variant in ("noisy", "clean"):
        cfg = config.build(config.AuditConfig, root=str(out / variant), out=str(out / f"audit-{variant}"),
                           cache=str(out / "cache"), encoder="untrained", folds=folds, epochs=epochs,
                           batch_size=64, corrections=False, device="cpu", workers=0, progress=False,
                           write_db=False, seed=seed)
        summaries[variant] = audit(cfg)
        seg = suggestions(out / f"audit-{variant}")
        rankings[variant] = {"cleanlab": cleanlab_ranking(out / variant, out / f"audit-{variant}", out / "cache"),
                             "audit": seg[["video", "task", "kind", "start_frame", "end_frame", "score"]]}
    for variant, by_name in rankings.items():
        for name, ranking in by_name.items():
            ranking.to_csv(out / f"ranking-{name}-{variant}.csv", index=False)
    for name in ("cleanlab", "audit"):
        scores = {task: score_ranking(rankings["noisy"][name], sets["planted"], task) for task in TASKS}
        scores.update({f"{task}/{kind}": score_ranking(rankings["noisy"][name], sets["planted"], task, kind)
                       for task, kinds in KINDS.items() for kind in kinds})
        results[name] = scores
    noisy_cal, clean_cal = summaries["noisy"]["calibration"], summaries["clean"]["calibration"]
    results["audit"]["default_threshold"] = {
        "threshold": noisy_cal["threshold"], "expected_precision": noisy_cal["expected_precision"],
        **at_threshold(rankings["noisy"]["audit"], sets["planted"], noisy_cal["threshold"]),
        "calibration_recall": noisy_cal["recall"]}
    results["audit"]["clean_control"] = {"threshold": clean_cal["threshold"],
                                         **false_alarms(rankings["clean"]["audit"], sets["frames"],
                                                        clean_cal["threshold"])}
    results["sample"] = sample_coverage(suggestions(out / "audit-noisy"), sets["planted"], sets["frames"])
    results["oof_metrics"] = {v: s["metrics"] for v, s in summaries.items()}
    results["audit_timing"] = {v: s["timing"] for v, s in summaries.items()}
    results["planted_share"] = {t: round(sum(p["end_frame"] - p["start_frame"] + 1 for p in sets["planted"]
                                             if p["task"] == t) / results["frames"], 3) for t in TASKS}
    results["seconds"] = {"data": round(made - started, 1), "rest": round(time.time() - made, 1)}
    results = jsonable(results)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    return results


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.audit", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("runs/benchmark-audit"))
    p.add_argument("--media", type=Path, default=datagen.MEDIA_DIR)
    p.add_argument("--videos", type=int, default=32)
    p.add_argument("--frames", type=int, default=570, help="frames per video")
    p.add_argument("--budget", type=float, default=0.05, help="share of each task's frames planted per video")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    results = run(args.out, args.media, args.videos, args.frames, args.folds, args.epochs, args.seed, args.budget)
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
