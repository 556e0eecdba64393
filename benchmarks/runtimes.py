"""DDAMFN and the CLIP image encoder on this CPU: today's eager path beside OpenVINO fp32, OpenVINO int8
(NNCF post-training quantisation) and, for CLIP, PyTorch's dynamic int8 (torch.ao), side by side in one run.

    python -m benchmarks.runtimes [--rounds 5] [--weights ddamfn=runs/fidelity/ddamfn/best.pt]

Needs `pip install openvino nncf` (benchmark-only: not in requirements.txt while no runtime is adopted).
Inputs are real face crops of the Pexels clip (MTCNN as the pipeline runs it), batches of 16 as
core.predict.encode runs them (OpenVINO models are converted for that static shape: NNCF's int8 DDAMFN does
not compile with a dynamic batch); the eager path is core.predict.encode's (DDAMFN channels_last, fp32).
Per runtime: ms per face (median over rounds; the rounds interleave the runtimes, so load hits them
alike), the one-off conversion/compile seconds, and faithfulness against eager fp32: the largest absolute
difference of the embeddings and, when DDAMFN has trained heads (--weights), expression agreement and
valence/arousal CCC of the heads' outputs. The load average is printed with each round.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch

from core import faces as facelib
from core.metrics import ccc
from core.predict import CPU_BATCH, encode, load_models
from core.video import iter_frames
from tests.datagen import MEDIA_DIR


def face_crops(n: int, sizes: tuple[int, ...]) -> dict[int, np.ndarray]:
    """n face crops of the Pexels clip (every few frames over all of it, crying then smiling), per size."""
    frames = [f for b in iter_frames(MEDIA_DIR / "WolfgangLanger_Pexels.mp4") for f in b.frames]
    frames = frames[:: max(1, len(frames) // n)][:n]
    boxes = [b[0] for b, _ in facelib.FaceDetector("cpu").detect(frames)]
    return {s: facelib.crop_faces(frames, boxes, s) for s in sizes}


class _Embed(torch.nn.Module):
    """The function a runtime must reproduce: preprocessed batch -> embedding (model.<method>)."""

    def __init__(self, model: torch.nn.Module, method: str):
        super().__init__()
        self.model, self.method = model, method

    def forward(self, x):
        return getattr(self.model, self.method)(x)


def openvino_runtimes(module: torch.nn.Module, example: torch.Tensor, calibration: list[torch.Tensor],
                      transformer: bool, threads: int) -> dict:
    """name -> (callable on a preprocessed batch, seconds to convert/quantise and compile)."""
    import nncf
    import openvino as ov

    core = ov.Core()
    out = {}
    start = time.perf_counter()
    with torch.no_grad():
        model = ov.convert_model(module, example_input=example, input=[tuple(example.shape)])   # static batch
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads})
    out["OpenVINO fp32"] = (lambda x, c=compiled: torch.from_numpy(c(x.numpy())[0]), time.perf_counter() - start)
    start = time.perf_counter()
    quantised = nncf.quantize(model, nncf.Dataset([c.numpy() for c in calibration]), subset_size=len(calibration),
                              model_type=nncf.ModelType.TRANSFORMER if transformer else None)
    compiled8 = core.compile_model(quantised, "CPU", {"INFERENCE_NUM_THREADS": threads})
    out["OpenVINO int8 (NNCF)"] = (lambda x, c=compiled8: torch.from_numpy(c(x.numpy())[0]),
                                   time.perf_counter() - start)
    return out


def batched(fn, x: torch.Tensor) -> torch.Tensor:
    return torch.cat([fn(x[i:i + CPU_BATCH]) for i in range(0, len(x), CPU_BATCH)])


def heads_agreement(ddamfn, reference: torch.Tensor, other: torch.Tensor) -> str:
    """Expression agreement and VA CCC of trained heads on two sets of embeddings."""
    with torch.no_grad():
        a, b = ddamfn.heads(reference), ddamfn.heads(other)
    if "expr" not in a or "va" not in a:
        return ""
    agree = (a["expr"].argmax(-1) == b["expr"].argmax(-1)).float().mean().item()
    va = [ccc(a["va"][:, j].numpy(), b["va"][:, j].numpy()) for j in range(2)]
    diff = max((a[t] - b[t]).abs().max().item() for t in ("va", "expr", "au") if t in a)
    return (f"EXPR agreement {agree:.3f}, CCC valence {va[0]:.4f}, arousal {va[1]:.4f}, max abs diff of head "
            f"outputs {diff:.1e}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--faces", type=int, default=64, help="face crops timed per round (and used to calibrate)")
    p.add_argument("--models", default="ddamfn,clip")
    p.add_argument("--weights", action="append", default=[], metavar="NAME=SPEC")
    p.add_argument("--threads", type=int, help="threads for every runtime (default: all cores, as the pipeline; "
                   "on a machine busy with other jobs 1 thread each compares them more fairly)")
    args = p.parse_args(argv)
    weights = dict(w.split("=", 1) for w in args.weights)
    names = args.models.split(",")
    loaded = load_models(names, weights, "cpu")
    if args.threads:
        torch.set_num_threads(args.threads)
    crops = face_crops(args.faces, (112, loaded.clip_size or 224))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores, "
          f"{args.faces} real face crops, batches of {CPU_BATCH}, load {os.getloadavg()[0]:.1f}")
    for name in names:
        lm = loaded.models[name]
        size = 112 if name == "ddamfn" else loaded.clip_size
        x = lm.preprocess(crops[size])
        method, transformer = ("embed", False) if name == "ddamfn" else ("encode_images", True)
        runtimes = {"eager fp32 (today)": (lambda _x, lm=lm, c=crops[size]: torch.from_numpy(encode(lm, c)), 0.0)}
        module = _Embed(lm.model, method).eval()
        runtimes.update(openvino_runtimes(module, x[:CPU_BATCH].contiguous(), [x[i:i + CPU_BATCH].contiguous()
                                          for i in range(0, len(x), CPU_BATCH)], transformer,
                                          torch.get_num_threads()))
        if name == "clip":
            start = time.perf_counter()
            q = torch.ao.quantization.quantize_dynamic(lm.model, {torch.nn.Linear}, dtype=torch.qint8)
            runtimes["torch.ao dynamic int8"] = (lambda b, q=q: q.encode_images(b), time.perf_counter() - start)
        outputs = {k: batched(f, x.contiguous()) if k != "eager fp32 (today)" else f(x) for k, (f, _) in runtimes.items()}
        times = {k: [] for k in runtimes}
        for r in range(args.rounds):
            for k, (f, _) in runtimes.items():
                start = time.perf_counter()
                with torch.no_grad():
                    f(x) if k == "eager fp32 (today)" else batched(f, x.contiguous())
                times[k].append(1000 * (time.perf_counter() - start) / len(x))
            print(f"  {name} round {r + 1}: " + ", ".join(f"{k} {v[-1]:.1f}" for k, v in times.items())
                  + f" ms/face; load {os.getloadavg()[0]:.1f}", flush=True)
        ref = outputs["eager fp32 (today)"]
        print(f"\n| {name} | ms/face (median of {args.rounds}) | x eager | convert+compile s | max abs diff of "
              "embeddings | heads vs eager |\n|---|---|---|---|---|---|")
        base = statistics.median(times["eager fp32 (today)"])
        for k, (_, setup) in runtimes.items():
            ms = statistics.median(times[k])
            diff = (outputs[k] - ref).abs().max().item()
            heads = heads_agreement(lm.model, ref, outputs[k]) if name == "ddamfn" and "ddamfn" in weights else ""
            print(f"| {k} | {ms:.1f} | {base / ms:.2f} | {setup:.1f} | {diff:.2e} | {heads} |")
        print(f"largest |embedding| (eager): {ref.abs().max().item():.2e}; load after {name}: "
              f"{os.getloadavg()[0]:.1f}\n", flush=True)


if __name__ == "__main__":
    main()
