"""Throughput of the models alone (random weights, input already on the device): images/s for DDAMFN and
the CLIP image encoder, frames/s for the LSTM over windows of embeddings.

    python -m benchmarks.models                       # CPU, a couple of seconds per configuration
    python -m benchmarks.models --device cuda         # fp16 autocast, channels_last, larger batches

Inference runs as the pipeline should run it: eval mode, no_grad, core.device's inference_autocast (fp16
on GPU, off on CPU unless --amp), channels_last for the convolutional DDAMFN on GPU.
"""
from __future__ import annotations

import argparse
import time

import torch

from core.device import inference_autocast, pick_device, prepare
from core.models.clip import ClipExpression
from core.models.ddamfn import DDAMFN
from core.models.temporal import TemporalLSTM

DEFAULT_BATCHES = {"cpu": "1,8,32", "cuda": "64,256,1024"}
LSTM_WINDOW = 64


def throughput(fn, items: int, seconds: float, device: torch.device) -> float:
    """items/s of fn(): warm up, estimate the time of one call, then time enough calls to fill `seconds`."""
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(2):          # first calls pick kernels (cuDNN benchmark, oneDNN primitives per shape)
        fn()
    sync()
    start = time.perf_counter()
    fn()
    sync()
    calls = max(1, int(seconds / max(time.perf_counter() - start, 1e-6)))
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    sync()
    return items * calls / (time.perf_counter() - start)


def bench_model(name: str, build, make_input, batch_sizes, items_per_row: int, args, device) -> list[tuple]:
    channels_last = device.type == "cuda" and name == "DDAMFN"
    model = prepare(build(), device, channels_last=channels_last)
    amp = args.amp if args.amp is not None else device.type == "cuda"
    rows = []
    for batch in batch_sizes:
        x = make_input(batch).to(device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)

        @torch.no_grad()
        def run():
            with inference_autocast(device, amp):
                model(x)

        rate = throughput(run, batch * items_per_row, args.seconds, device)
        rows.append((name, device.type, "fp16 autocast" if amp else "fp32", batch, rate))
        print(f"| {name} | {device.type} | {rows[-1][2]} | {batch} | {rate:,.1f} |", flush=True)
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--batch-sizes", help="comma-separated (default 1,8,32 on CPU, 64,256,1024 on GPU)")
    parser.add_argument("--seconds", type=float, default=2.0, help="timed seconds per configuration")
    parser.add_argument("--models", default="ddamfn,lstm,clip")
    parser.add_argument("--clip-model", default="ViT-B-32")
    parser.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                        help="fp16 autocast (default: on for cuda, off for cpu)")
    args = parser.parse_args(argv)
    device = pick_device(args.device)
    batches = [int(b) for b in (args.batch_sizes or DEFAULT_BATCHES[device.type]).split(",")]
    torch.backends.cudnn.benchmark = True
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
          + (f", {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""))
    print("| model | device | precision | batch | items/s |\n|---|---|---|---|---|")
    wanted = args.models.split(",")
    if "ddamfn" in wanted:
        bench_model("DDAMFN", DDAMFN, lambda b: torch.randn(b, 3, 112, 112), batches, 1, args, device)
    if "lstm" in wanted:   # batch = windows of LSTM_WINDOW frames; items = frames
        bench_model(f"LSTM 512->256x2, T={LSTM_WINDOW}", lambda: TemporalLSTM(512, 256, 2),
                    lambda b: torch.randn(b, LSTM_WINDOW, 512), batches, LSTM_WINDOW, args, device)
    if "clip" in wanted:
        clip = ClipExpression(args.clip_model)
        size = clip.preprocessing["size"]
        bench_model(f"CLIP {args.clip_model} image encoder", lambda: clip.model.visual,
                    lambda b: torch.randn(b, 3, size, size), batches, 1, args, device)


if __name__ == "__main__":
    main()
