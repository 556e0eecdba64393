"""Where models run and how batches go through them: CUDA when present, CPU otherwise, mixed precision.

Two autocast flavours, both keeping fp32 weights:
  - `autocast`: bfloat16, for training (no loss scaling needed) and anything generic; off on GPUs
    without bf16 support.
  - `inference_autocast` (used by `run_batched`): float16, which carries 3 more mantissa bits. On DDAMFN
    it stays within about 1.5% of fp32 where bf16 drifts 5-16% and flips 1 expression decision in 16
    (measured on CPU, random weights with BatchNorm statistics from real video frames), at the same
    tensor-core speed. A batch that overflows fp16 (inf/NaN) is recomputed in fp32.
Both default to on for CUDA and off for CPU: on CPU fp32 is the fastest path (bf16/fp16 autocast ran
2.5-5x slower on the 2-core dev machine). tests/test_models_device.py checks on CPU: fp16 embeddings
at cosine >= 0.999 with every output within 3% of its fp32 range; bf16 embeddings at cosine >= 0.99.
"""
from __future__ import annotations

import contextlib
import math
import os

import torch

TRAIN_DTYPE = torch.bfloat16
INFERENCE_DTYPE = torch.float16


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """"auto" -> cuda if available else cpu; "cpu"/"cuda"/"cuda:1" as given (cuda must be available)."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for but no CUDA GPU is available (use 'auto' or 'cpu')")
    return device


def use_all_cores() -> int:
    """Give torch one thread per core this process may use (a container's CPU set, not the host's
    count, which torch's default can take and then oversubscribe), unless OMP_NUM_THREADS says how
    many; returns torch's thread count."""
    if "OMP_NUM_THREADS" not in os.environ:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        if torch.get_num_threads() != cores:
            torch.set_num_threads(cores)
    return torch.get_num_threads()


def autocast(device: torch.device, enabled: bool | None = None):
    """bf16 autocast on `device` (training and general use); enabled=None means on for CUDA, off for CPU.
    A no-op on GPUs without bf16, where fp16 would need loss scaling to train."""
    if enabled is None:
        enabled = device.type == "cuda"
    if not enabled or (device.type == "cuda" and not torch.cuda.is_bf16_supported()):
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=TRAIN_DTYPE)


def inference_autocast(device: torch.device, enabled: bool | None = None):
    """fp16 autocast for inference on `device`; enabled=None means on for CUDA, off for CPU."""
    if enabled is None:
        enabled = device.type == "cuda"
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=INFERENCE_DTYPE)


def prepare(model: torch.nn.Module, device: torch.device, channels_last: bool = False) -> torch.nn.Module:
    """Move a model to `device` in eval mode; channels_last speeds up convolutions on GPU."""
    model = model.to(device).eval()
    return model.to(memory_format=torch.channels_last) if channels_last else model


@torch.no_grad()
def run_batched(fn, x: torch.Tensor, batch_size: int = 256, amp: bool | None = None,
                channels_last: bool = False):
    """Run `fn` over `x` (on the model's device) in batches of at most batch_size, split evenly (a batch of
    one costs twice as much per image on a CPU), under fp16 inference autocast (default: on for CUDA, off
    for CPU). Outputs, a tensor or a dict of tensors, come back concatenated along dim 0,
    float32, on the CPU."""
    outs = []
    chunks = max(1, math.ceil(x.shape[0] / batch_size))
    batch_size = max(1, math.ceil(x.shape[0] / chunks))          # 17 rows at 16: 9 + 8, not 16 + 1
    for i in range(0, x.shape[0], batch_size):
        batch = x[i:i + batch_size]
        if channels_last and batch.ndim == 4:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with inference_autocast(x.device, amp):
            out = _to_float_cpu(fn(batch))
        if not all(torch.isfinite(v).all() for v in (out.values() if isinstance(out, dict) else [out])):
            out = _to_float_cpu(fn(batch))                     # fp16 overflow: this batch again in fp32
        outs.append(out)
    if not outs:
        raise ValueError("run_batched needs at least one input row")
    if isinstance(outs[0], dict):
        return {k: torch.cat([o[k] for o in outs]) for k in outs[0]}
    return torch.cat(outs)


def _to_float_cpu(out):
    if isinstance(out, dict):
        return {k: v.float().cpu() for k, v in out.items()}
    return out.float().cpu()
