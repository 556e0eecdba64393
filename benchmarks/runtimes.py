"""DDAMFN and the CLIP image encoder on this CPU, per runtime: speed, and the fair fidelity rule.

    python -m benchmarks.runtimes [--weights ddamfn=runs/fidelity/ddamfn-heads/best.pt] [--rounds 5] [--int8]

The fidelity rule a runtime must pass to be used by default:
  1. its outputs differ from eager fp32 torch's by at most 3x eager's own spread: what eager torch itself
     moves by across batch sizes (1, 16, 64) and thread counts (1, 2) (floored at float32's resolution of the
     outputs' size, so that an eager path that happens to repeat itself bit for bit does not ask for more);
     measured on the embeddings and, with trained heads, on the heads' activated outputs;
  2. on a checkpoint with a real signal (benchmarks/fidelity.py trains one: pass it with --weights), its
     decisions agree with eager's: expression agreement >= 0.999, AU decision agreement (the checkpoint's
     thresholds) >= 0.999, valence and arousal CCC >= 0.999.

Runtimes: eager fp32 (core.predict.encode with AFFECTLENS_RUNTIME=torch), OpenVINO fp32 as core.runtime runs
it (its cached model in the data folder, converted first when missing) and, with --int8, OpenVINO int8 (NNCF
post-training quantisation on the faces below, a static batch of 16: NNCF's int8 DDAMFN does not compile with a
dynamic one; needs `pip install nncf`) and, for CLIP, PyTorch's dynamic int8 (torch.ao). Inputs are real face
crops of the Pexels clip (MTCNN as the pipeline runs it), in batches of 16 as core.predict.encode runs them.
Per runtime: ms per face (median over rounds that interleave the runtimes, so that load hits them alike), the
one-off seconds to have it (conversion or cache read, and compile), its largest difference from eager, and the
rule's verdict. The load average is printed with each round: take figures on a quiet machine only.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from core import runtime
from core.metrics import ccc
from core.predict import CPU_BATCH, activate, load_models

BATCHES, THREADS = (1, 16, 64), (1, 2)
SPREAD_FACTOR = 3.0
MIN_AGREEMENT = 0.999       # expression agreement, AU decision agreement and VA CCC


def face_crops(n: int, sizes: tuple[int, ...]) -> dict[int, np.ndarray]:
    """n face crops of the Pexels clip (every few frames over all of it, crying then smiling), per size."""
    from core import faces as facelib
    from core.video import iter_frames
    from tests.datagen import MEDIA_DIR

    frames = [f for b in iter_frames(MEDIA_DIR / "WolfgangLanger_Pexels.mp4") for f in b.frames]
    frames = frames[:: max(1, len(frames) // n)][:n]
    boxes = [b[0] for b, _ in facelib.FaceDetector("cpu").detect(frames)]
    return {s: facelib.crop_faces(frames, boxes, s) for s in sizes}


def batched(fn: Callable, x: torch.Tensor, batch: int = CPU_BATCH) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([fn(x[i:i + batch]).float() for i in range(0, len(x), batch)])


def with_threads(threads: int, fn: Callable, *args):
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return fn(*args)
    finally:
        torch.set_num_threads(before)


@dataclass
class Outputs:
    """What the rule compares: embeddings, and the heads' activated outputs when the model has them."""

    embeddings: torch.Tensor
    heads: dict[str, np.ndarray]


@torch.no_grad()
def outputs(model: torch.nn.Module, emb: torch.Tensor) -> Outputs:
    """Embeddings and, for a DDAMFN with heads, their activated va / expr / au outputs."""
    heads = activate(model.heads(emb)) if hasattr(model, "heads") else {}
    return Outputs(emb, heads)


def largest_difference(a: Outputs, b: Outputs) -> dict[str, float]:
    """Largest absolute difference per output (embeddings, va, expr, au)."""
    out = {"embeddings": (a.embeddings - b.embeddings).abs().max().item()}
    out.update({t: float(np.abs(a.heads[t] - b.heads[t]).max()) for t in a.heads})
    return out


def eager_spread(reference: Outputs, variants: list[Outputs]) -> dict[str, float]:
    """Eager torch's own spread per output: its largest difference from the reference over the variants,
    floored at float32's resolution of the output's largest magnitude."""
    spread = {k: max(largest_difference(v, reference)[k] for v in variants) for k in largest_difference(reference,
                                                                                                        reference)}
    size = {"embeddings": reference.embeddings.abs().max().item(),
            **{t: float(np.abs(v).max()) for t, v in reference.heads.items()}}
    return {k: max(v, float(np.finfo(np.float32).eps) * size[k]) for k, v in spread.items()}


def decisions(reference: Outputs, other: Outputs, au_thresholds: np.ndarray) -> dict[str, float]:
    """Expression agreement, AU decision agreement (pooled over the AUs) and the lower VA CCC."""
    a, b = reference.heads, other.heads
    out = {}
    if "expr" in a:
        out["expr_agreement"] = float((a["expr"].argmax(-1) == b["expr"].argmax(-1)).mean())
    if "au" in a:
        out["au_agreement"] = float(((a["au"] >= au_thresholds) == (b["au"] >= au_thresholds)).mean())
    if "va" in a:
        out["va_ccc"] = min(ccc(a["va"][:, j], b["va"][:, j]) for j in range(2))
    return out


def verdict(difference: dict[str, float], spread: dict[str, float], agree: dict[str, float] | None) -> list[str]:
    """The rule's failures in words (none: it passes). agree: decisions() on a checkpoint with a real
    signal, or None where there is none (part 2 of the rule not tested)."""
    failed = [f"{k} differs by {v:.2e} > {SPREAD_FACTOR:g} x eager's spread {spread[k]:.2e}"
              for k, v in difference.items() if v > SPREAD_FACTOR * spread[k]]
    failed += [f"{k} {v:.4f} < {MIN_AGREEMENT}" for k, v in (agree or {}).items() if not v >= MIN_AGREEMENT]
    return failed


def openvino_fp32(model: torch.nn.Module, size: int) -> tuple[Callable, float, str]:
    """core.runtime's OpenVINO model of `model` (the data folder's cache, converted when missing): the
    callable, the seconds to have it, and its name and origin."""
    start = time.perf_counter()
    runtime.start(model, torch.device("cpu"), size, "openvino")
    if not runtime.wait(model):
        raise SystemExit(f"OpenVINO fp32: {runtime.handle(model).error}")
    handle = runtime.handle(model)
    return handle, time.perf_counter() - start, f"{handle.name} ({handle.origin})"


def int8_runtimes(module: torch.nn.Module, method: str, x: torch.Tensor, transformer: bool) -> dict:
    """name -> (callable on a batch of CPU_BATCH, seconds to quantise and compile): NNCF int8 and, for CLIP,
    torch.ao dynamic int8."""
    try:
        import nncf
    except ImportError:
        raise SystemExit("--int8 needs NNCF: pip install nncf (benchmark only, not in requirements.txt)") from None
    import openvino as ov

    out = {}
    start = time.perf_counter()
    wrapped = runtime.Method(module, method).eval()
    example = x[:CPU_BATCH].contiguous()
    with torch.no_grad():
        model = ov.convert_model(wrapped, example_input=example, input=[tuple(example.shape)])
    calibration = [x[i:i + CPU_BATCH].numpy() for i in range(0, len(x) - CPU_BATCH + 1, CPU_BATCH)]
    quantised = nncf.quantize(model, nncf.Dataset(calibration), subset_size=len(calibration),
                              model_type=nncf.ModelType.TRANSFORMER if transformer else None)
    compiled = ov.Core().compile_model(quantised, "CPU", {"INFERENCE_NUM_THREADS": torch.get_num_threads()})
    out["OpenVINO int8 (NNCF)"] = (lambda b, c=compiled: torch.from_numpy(c(b.contiguous().numpy())[0]),
                                   time.perf_counter() - start)
    if transformer:
        start = time.perf_counter()
        q = torch.ao.quantization.quantize_dynamic(module, {torch.nn.Linear}, dtype=torch.qint8)
        out["torch.ao dynamic int8"] = (getattr(q, method), time.perf_counter() - start)
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--faces", type=int, default=64, help="face crops timed per round (a multiple of 16)")
    p.add_argument("--models", default="ddamfn,clip")
    p.add_argument("--weights", action="append", default=[], metavar="NAME=SPEC")
    p.add_argument("--int8", action="store_true", help="also OpenVINO int8 (needs nncf) and torch.ao int8 (CLIP)")
    args = p.parse_args(argv)
    os.environ[runtime.RUNTIME_ENV] = "torch"        # load_models starts nothing: each runtime is made below
    weights = dict(w.split("=", 1) for w in args.weights)
    names = args.models.split(",")
    loaded = load_models(names, weights, "cpu")
    crops = face_crops(args.faces, (112, loaded.clip_size or 224))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores, "
          f"{args.faces} real face crops, batches of {CPU_BATCH}, load {os.getloadavg()[0]:.1f}")
    for name in names:
        lm = loaded.models[name]
        size = lm.model.preprocessing["size"]
        module, method = runtime.raw_encoder(lm.model)
        x = lm.preprocess(crops[size]).contiguous()
        kind = lm.model.encoder_kind(adapted=False)
        eager = lambda b, m=lm.model, k=kind: m.embeddings(b, k, len(b), False)    # noqa: E731  (encode's path)
        trained = name == "ddamfn" and "ddamfn" in weights and "expr" not in lm.info.untrained_tasks
        reference = outputs(lm.model, batched(eager, x))
        variants = [outputs(lm.model, with_threads(t, batched, eager, x, b)) for b in BATCHES for t in THREADS]
        spread = eager_spread(reference, variants)
        fp32, seconds, label = openvino_fp32(lm.model, size)
        runtimes = {"eager fp32 torch": (eager, 0.0), f"OpenVINO fp32: {label}": (fp32, seconds)}
        if args.int8:
            runtimes.update(int8_runtimes(module, method, x, transformer=name != "ddamfn"))
        results = {}
        for k, (fn, _) in runtimes.items():
            fixed_batch = "int8 (NNCF)" in k
            got = [outputs(lm.model, batched(fn, x, CPU_BATCH if fixed_batch else b))
                   for b in ((CPU_BATCH,) if fixed_batch else BATCHES)]
            difference = {o: max(largest_difference(g, reference)[o] for g in got) for o in spread}
            agree = decisions(reference, got[0], loaded.au_thresholds) if trained else None
            results[k] = (difference, agree, verdict(difference, spread, agree))
        times = {k: [] for k in runtimes}
        for r in range(args.rounds):
            for k, (fn, _) in runtimes.items():
                start = time.perf_counter()
                batched(fn, x)
                times[k].append(1000 * (time.perf_counter() - start) / len(x))
            print(f"  {name} round {r + 1}: " + ", ".join(f"{k} {v[-1]:.1f}" for k, v in times.items())
                  + f" ms/face; load {os.getloadavg()[0]:.1f}", flush=True)
        base = statistics.median(times["eager fp32 torch"])
        print(f"\n{name}: eager's own spread over batch sizes {BATCHES} and threads {THREADS}: "
              + ", ".join(f"{k} {v:.2e}" for k, v in spread.items())
              + ("" if trained else "; no trained heads given: decisions not tested (part 2 of the rule)"))
        print(f"| {name} | ms/face (median of {args.rounds}) | x eager | set-up s | largest difference from eager | "
              "decisions vs eager | fidelity rule |\n|---|---|---|---|---|---|---|")
        for k, (_, setup) in runtimes.items():
            difference, agree, failed = results[k]
            ms = statistics.median(times[k])
            decided = ", ".join(f"{a} {v:.4f}" for a, v in agree.items()) if agree else ""
            print(f"| {k} | {ms:.1f} | {base / ms:.2f} | {setup:.1f} | "
                  + ", ".join(f"{o} {v:.1e}" for o, v in difference.items())
                  + f" | {decided} | {'passes' if not failed else 'fails: ' + '; '.join(failed)} |")
        print(f"load after {name}: {os.getloadavg()[0]:.1f}\n", flush=True)


if __name__ == "__main__":
    main()
