"""Training speed: DDAMFN fine-tuning steps (images/s, peak memory), LSTM steps on embedding windows
(frames/s), and the embedding extraction rate, with the time `extract` would take over Aff-Wild2.

    python -m benchmarks.training                      # CPU
    python -m benchmarks.training --device cuda        # bf16 autocast + channels_last, larger batches

A DDAMFN step is what training/loop.py does for `--model ddamfn`: uint8 crops normalised on the device,
forward with all three heads, the papers' losses (1 - CCC, weighted CE, BCE with pos_weight) + 0.1 x the
attention-divergence loss, backward, Adam step. Extraction is the eval forward `extract` runs (fp16
autocast on GPU) plus JPEG decoding of 112x112 crops, which runs in the loader's worker processes: the
estimate takes the slower of the GPU rate and decoding on --workers processes (decoding measured on one
core here and assumed to scale with worker processes).
"""
from __future__ import annotations

import argparse
import resource
import time

import cv2
import numpy as np
import torch

from core.device import autocast, inference_autocast, pick_device
from core.models.ddamfn import DDAMFN, attention_loss, preprocess
from core.models.temporal import TemporalLSTM
from training import losses

AFFWILD2_FRAMES = 2_800_000
DEFAULT_BATCHES = {"cpu": "8,32", "cuda": "64,256,512"}


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rate(step, items: int, seconds: float, device) -> float:
    """items/s of step(): two warm-up calls, then as many calls as fit in `seconds`."""
    for _ in range(2):
        step()
    _sync(device)
    start, calls = time.perf_counter(), 0
    while time.perf_counter() - start < seconds or calls < 2:
        step()
        calls += 1
        _sync(device)
    return items * calls / (time.perf_counter() - start)


def peak_memory(device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB (GPU, allocated)"
    return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB (process RSS)"


def batch_targets(batch: int, device) -> dict:
    g = torch.Generator().manual_seed(0)
    return {"va": (torch.rand(batch, 2, generator=g) * 2 - 1).to(device),
            "expr": torch.randint(0, 8, (batch,), generator=g).to(device),
            "au": (torch.rand(batch, 12, generator=g) < 0.3).float().to(device)}


def ddamfn_step(batch: int, device, amp: bool):
    model = DDAMFN().to(device).train()
    channels_last = device.type == "cuda"
    if channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    images = torch.randint(0, 256, (batch, 112, 112, 3), dtype=torch.uint8).to(device)
    target = batch_targets(batch, device)
    expr_w = torch.ones(8, device=device)
    au_pw = torch.full((12,), 2.0, device=device)

    def step():
        x = preprocess(images, device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device, amp):
            out = model(x)
            att = attention_loss(out["attention"].float())
        loss = sum(losses.task_losses(out, target, ("va", "expr", "au"), expr_w, au_pw).values()) + 0.1 * att
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def lstm_step(windows: int, length: int, device, amp: bool):
    model = TemporalLSTM(512).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    seq = torch.randn(windows, length, 512, device=device)
    mask = torch.ones(windows, length, dtype=torch.bool, device=device)
    target = batch_targets(windows * length, device)                     # one label set per frame

    def step():
        with autocast(device, amp):
            out = model(seq, mask)
        flat = {k: v.reshape(windows * length, -1) for k, v in out.items()}
        loss = sum(losses.task_losses(flat, target, ("va", "expr", "au")).values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def embed_step(batch: int, device, amp: bool):
    model = DDAMFN().to(device).eval()
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    images = torch.randint(0, 256, (batch, 112, 112, 3), dtype=torch.uint8).to(device)

    @torch.no_grad()
    def step():
        x = preprocess(images, device)
        if device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        with inference_autocast(device, amp):
            model.embed(x)

    return step


def jpeg_decode_rate(seconds: float) -> float:
    """112x112 face JPEGs decoded (and converted to RGB) per second on one core."""
    rng = np.random.default_rng(0)
    smooth = cv2.GaussianBlur(rng.integers(0, 256, (112, 112, 3), dtype=np.uint8), (9, 9), 3)
    data = cv2.imencode(".jpg", smooth, [cv2.IMWRITE_JPEG_QUALITY, 95])[1]
    start, n = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        n += 1
    return n / (time.perf_counter() - start)


def hours(frames: int, per_second: float) -> str:
    seconds = frames / per_second
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--batch-sizes", help="DDAMFN batch sizes, comma separated (default 8,32 on CPU, "
                                              "64,256,512 on GPU)")
    parser.add_argument("--seconds", type=float, default=3.0, help="timed seconds per configuration")
    parser.add_argument("--workers", type=int, default=8, help="decoding processes assumed for the estimate")
    parser.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                        help="autocast (default: on for cuda, off for cpu)")
    args = parser.parse_args(argv)
    device = pick_device(args.device)
    amp = device.type == "cuda" if args.amp is None else args.amp
    torch.backends.cudnn.benchmark = True
    batches = [int(b) for b in (args.batch_sizes or DEFAULT_BATCHES[device.type]).split(",")]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
          + f", autocast {'on' if amp else 'off'}")

    print("\n| step | batch | items/s | peak memory |\n|---|---|---|---|")
    train_rates = []
    for batch in batches:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        r = rate(ddamfn_step(batch, device, amp), batch, args.seconds, device)
        train_rates.append(r)
        print(f"| DDAMFN train step (VA+EXPR+AU + attention loss, Adam), img/s | {batch} | {r:,.1f} | "
              f"{peak_memory(device)} |", flush=True)
    windows, length = (64, 64) if device.type == "cuda" else (8, 64)
    r = rate(lstm_step(windows, length, device, amp), windows * length, args.seconds, device)
    print(f"| LSTM 512->256x2 train step, frames/s | {windows}x{length} | {r:,.0f} | {peak_memory(device)} |")

    embed_batch = max(batches)
    embed = rate(embed_step(embed_batch, device, amp), embed_batch, args.seconds, device)
    decode = jpeg_decode_rate(args.seconds)
    print(f"| DDAMFN embedding (extract), img/s | {embed_batch} | {embed:,.1f} | {peak_memory(device)} |")
    print(f"| JPEG 112x112 decode, img/s on one core | - | {decode:,.0f} | - |")
    overall = min(embed, decode * args.workers)
    print(f"\nAff-Wild2 ({AFFWILD2_FRAMES:,} frames): embedding alone {hours(AFFWILD2_FRAMES, embed)}, "
          f"decoding on {args.workers} processes {hours(AFFWILD2_FRAMES, decode * args.workers)}; "
          f"extract estimate {hours(AFFWILD2_FRAMES, overall)} ({overall:,.0f} img/s). One DDAMFN training "
          f"epoch over all of it at the best measured step rate: {hours(AFFWILD2_FRAMES, max(train_rates))}.")


if __name__ == "__main__":
    main()
