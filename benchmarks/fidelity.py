"""What an encoder stride costs: outputs of a trained checkpoint with strides beside the same on every frame.

    python -m benchmarks.fidelity [--work runs/fidelity] [--step 1] [--strides 2,3,4] [--epochs 30]

A --work folder that holds a finished run's checkpoints is reused as it is (steps 1-2 skipped): remove it
to build the set and train again.
1. An Aff-Wild2-layout set from the Pexels clip (it cries, then smiles from about 9.5 s on): every
   `step`-th frame's face (MTCNN and the square crop the pipeline cuts, 112 px) under cropped_aligned/, with
   labels that follow the clip: Sadness, valence -0.6, arousal 0.4, AU1/AU4/AU15 while crying; Happiness,
   valence 0.7, arousal 0.5, AU6/AU12/AU25 while smiling. The same video is the train and the validation
   split: the checkpoint is meant to carry the clip's real signal, not to generalise.
2. The encoder: a random DDAMFN whose final BatchNorm is calibrated on the set's faces, so that their
   embeddings differ by about their own size (calibrated_encoder). A DDAMFN fine-tuned end to end for 4
   steps (all a 2-core CPU affords), used before, left the faces' embeddings differing by only 1e-5 of
   their size: heads on it magnified float32 rounding 1e5-1e6 times, and the training recipe now refuses
   to save such heads. Its task heads are trained on its frozen embeddings for --epochs with our own
   command, `python -m training train --model ddamfn-heads` (the checkpoint is a whole DDAMFN). An LSTM
   on those embeddings (`--model lstm`, as the page's DDAMFN+LSTM) did not learn in a first try (its loss
   stayed flat at 2.1 for 150 epochs), so only DDAMFN's heads are measured for now.
3. The clip (its first --max-frames frames, the faces' frames of step 1) analysed by core.pipeline with
   DDAMFN on every frame and with each stride; EXPR agreement (same class), valence and arousal CCC and AU
   F1 (pooled over the 12 AUs, every-frame decisions as the reference) between the strided run's outputs
   and the every-frame run's, over face frames. The
   every-frame run's own scores against the clip's labels (core.metrics.score_table, as the page scores)
   show the signal is real.

Prints a Markdown table (and --json writes the figures). CLIP's strides are not measured here: no CLIP
checkpoint with a real signal can be had offline (its open_clip weights are not in this machine's cache).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from core.affwild2 import IMAGE_DIR, image_name, write_annotation
from core.labels import AUS, CHALLENGE_DIRS, EXPRESSIONS, SPLIT_DIRS
from core.metrics import ccc, score_table
from core.table import AU_DECISIONS, EXPR, VALENCE, AROUSAL
from tests.datagen import MEDIA_DIR

CLIP = MEDIA_DIR / "WolfgangLanger_Pexels.mp4"
SMILE_FROM_S = 9.5               # the clip's crying ends and the smile begins (seen frame by frame)
VIDEOS = {"train": "pexels_train", "val": "pexels_val"}
STATES = {"crying": ("Sadness", -0.6, 0.4, ("AU1", "AU4", "AU15")),
          "smiling": ("Happiness", 0.7, 0.5, ("AU6", "AU12", "AU25"))}


def clip_labels(n_frames: int, fps: float) -> pd.DataFrame:
    """Per frame of the clip: expression, valence, arousal and AUs as the module docstring says."""
    rows = []
    for frame in range(n_frames):
        name, valence, arousal, on = STATES["smiling" if frame / fps >= SMILE_FROM_S else "crying"]
        rows.append({"valence": valence, "arousal": arousal, "expression": EXPRESSIONS.index(name),
                     **{au: int(au in on) for au in AUS}})
    df = pd.DataFrame(rows)
    df["expression"] = df["expression"].astype("Int64")
    for au in AUS:
        df[au] = df[au].astype("Int64")
    df.index.name = "frame"
    return df


def make_dataset(root: Path, step: int, max_frames: int | None) -> pd.DataFrame:
    """The Aff-Wild2-layout set of step 1 under root; returns the labels of every frame of the clip."""
    from core.faces import FaceDetector, crop_faces
    from core.video import iter_frames, probe

    info = probe(CLIP)
    frames = [f for b in iter_frames(CLIP, max_frames=max_frames) for f in b.frames][::step]
    labels = clip_labels(info.frame_count, info.fps)
    kept = labels.iloc[: len(frames) * step : step].reset_index(drop=True)
    kept.index.name = "frame"
    found = FaceDetector("cpu").detect(frames)
    for split, video in VIDEOS.items():
        folder = root / "cropped_aligned" / video
        folder.mkdir(parents=True, exist_ok=True)
        for i, (frame, (boxes, _)) in enumerate(zip(frames, found)):
            if len(boxes):
                crop = crop_faces([frame], boxes[:1], 112)[0]
                cv2.imwrite(str(folder / image_name(i)), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
        for task in ("va", "expr", "au"):
            write_annotation(kept, root / CHALLENGE_DIRS[task][0] / SPLIT_DIRS[split] / f"{video}.txt", task)
    return labels


def calibrated_encoder(root: Path, path: Path) -> Path:
    """A random DDAMFN (fixed seed) whose final BatchNorm maps the embeddings of the set's faces to unit
    spread per dimension, saved as a checkpoint at `path`."""
    import torch

    from core.faces import read_face_image
    from core.models.ddamfn import DDAMFN, preprocess
    from core.weights import save_checkpoint

    torch.manual_seed(0)
    model = DDAMFN().eval()
    images = sorted((root / IMAGE_DIR / VIDEOS["train"]).glob("*.jpg"))
    seen = []
    bn = model.net.Linear.bn
    hook = bn.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].flatten(1).double()))
    with torch.no_grad():
        model.embed(preprocess(np.stack([read_face_image(p, 112) for p in images])))
        hook.remove()
        z = torch.cat(seen)
        bn.running_mean.copy_(z.mean(0))
        bn.running_var.copy_(z.var(0))
        bn.weight.copy_(((z.var(0) + bn.eps) / z.var(0)).sqrt())
    return save_checkpoint(path, model, {"note": "random DDAMFN, final BatchNorm calibrated on the fidelity set"})


def train(root: Path, work: Path, epochs: int, encoder: Path) -> Path:
    """The DDAMFN-heads checkpoint on `encoder`, with `python -m training train`."""
    args = ["--root", root, "--tasks", "va,expr,au", "--epochs", epochs, "--no-corrections", "--device", "cpu",
            "--workers", "0", "--no-progress", "--cache", work / "embeddings", "--model", "ddamfn-heads",
            "--weights", encoder, "--out", work / "ddamfn-heads", "--lr", 3e-3, "--batch-size", 64]
    env = {**os.environ, "AFFECTLENS_DB_URL": f"sqlite:///{work / 'no-database.db'}"}
    subprocess.run([sys.executable, "-m", "training", "train", *map(str, args)], check=True, env=env,
                   cwd=Path(__file__).resolve().parents[1], stdout=subprocess.DEVNULL)
    return work / "ddamfn-heads" / "best.pt"


def conditioned(checkpoint: Path) -> bool:
    """Whether `checkpoint` exists and was saved by the recipe that checks its heads' conditioning (it records
    heads_amplification): one saved before that check is trained again."""
    from core.weights import load_checkpoint

    return checkpoint.is_file() and "heads_amplification" in load_checkpoint(checkpoint).metadata


def agreement(strided: pd.DataFrame, every: pd.DataFrame) -> dict:
    """EXPR agreement, VA CCC and pooled AU F1 of strided outputs against every-frame ones (face frames)."""
    face = every["face"].to_numpy(bool) & strided["face"].to_numpy(bool)
    a, b = strided[face], every[face]
    au_a, au_b = a[AU_DECISIONS].to_numpy(bool), b[AU_DECISIONS].to_numpy(bool)
    tp, fp, fn = (au_a & au_b).sum(), (au_a & ~au_b).sum(), (~au_a & au_b).sum()
    return {"frames": int(face.sum()),
            "expr_agreement": float((a[EXPR].to_numpy() == b[EXPR].to_numpy()).mean()),
            "ccc_valence": ccc(a[VALENCE].to_numpy(float), b[VALENCE].to_numpy(float)),
            "ccc_arousal": ccc(a[AROUSAL].to_numpy(float), b[AROUSAL].to_numpy(float)),
            "au_f1": float(2 * tp / (2 * tp + fp + fn)) if tp + fp + fn else 1.0}


def against_labels(table: pd.DataFrame, labels: pd.DataFrame) -> dict:
    """The every-frame run's own scores against the clip's labels over its face frames (core.metrics)."""
    face = table[table["face"].to_numpy(bool)]
    scores = score_table(face, labels.iloc[face["frame"].to_numpy()])
    return {"ccc_valence": scores["va"].values["ccc_valence"], "ccc_arousal": scores["va"].values["ccc_arousal"],
            "p_expr": scores["expr"].main, "p_au": scores["au"].main}


def run(work: Path, step: int = 1, strides=(2, 3, 4), epochs: int = 30, max_frames: int | None = None) -> dict:
    """Steps 1-3 of the module docstring under `work`; the figures as a dict."""
    from core.pipeline import AnalysisConfig, analyze_video, load_models
    from core.video import probe

    work.mkdir(parents=True, exist_ok=True)
    heads = work / "ddamfn-heads" / "best.pt"
    if conditioned(heads):                               # a finished earlier run: its set and checkpoint
        labels = clip_labels(probe(CLIP).frame_count, probe(CLIP).fps)
    else:
        labels = make_dataset(work / "affwild2", step, max_frames)
        train(work / "affwild2", work, epochs, calibrated_encoder(work / "affwild2", work / "encoder.pt"))
    out = {"step": step, "max_frames": max_frames, "epochs": epochs, "checkpoint": str(heads), "models": {}}
    for name, models, weights in (("DDAMFN", ("ddamfn",), {"ddamfn": str(heads)}),):
        config = AnalysisConfig(models=models, weights=weights, device="cpu", max_frames=max_frames)
        loaded = load_models(config)
        every = analyze_video(CLIP, config, loaded=loaded).table
        rows = {"signal (every frame vs the clip's labels)": against_labels(every, labels)}
        for k in strides:
            strided = analyze_video(CLIP, AnalysisConfig(models=models, weights=weights, device="cpu",
                                                         max_frames=max_frames, ddamfn_every=k), loaded=loaded).table
            rows[k] = agreement(strided, every)
        out["models"][name] = rows
    return out


def print_table(result: dict) -> None:
    print("| model | DDAMFN every | face frames | EXPR agreement | CCC valence | CCC arousal | AU F1 (pooled) |")
    print("|---|---|---|---|---|---|---|")
    for name, rows in result["models"].items():
        for k, r in rows.items():
            if isinstance(k, int):
                print(f"| {name} | {k} | {r['frames']} | {r['expr_agreement']:.3f} | {r['ccc_valence']:.4f} | "
                      f"{r['ccc_arousal']:.4f} | {r['au_f1']:.3f} |")
        s = rows["signal (every frame vs the clip's labels)"]
        print(f"| {name}, every frame vs the clip's labels | 1 | | P_EXPR {s['p_expr']:.3f} | {s['ccc_valence']:.4f} "
              f"| {s['ccc_arousal']:.4f} | P_AU {s['p_au']:.3f} |")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", type=Path, default=Path("runs/fidelity"))
    p.add_argument("--step", type=int, default=1, help="every step-th frame of the clip goes into the set")
    p.add_argument("--strides", default="2,3,4")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--max-frames", type=int, help="only the clip's first frames (default: all 472)")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    result = run(args.work, args.step, tuple(int(k) for k in args.strides.split(",")), args.epochs, args.max_frames)
    print_table(result)
    print(f"load {os.getloadavg()[0]:.1f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
