"""Where models run and how batches go through them: CUDA when present, CPU otherwise, fp16 autocast on GPU.

Autocast keeps fp32 weights and runs convolutions and matmuls in float16. We use fp16 rather than bf16:
on DDAMFN it stays within about 1.5% of fp32 (bf16: 5-16%, with 1 in 16 expression decisions flipped;
measured on CPU with random weights calibrated on real video frames), at the same tensor-core speed. A
batch that overflows fp16 (inf/NaN) is recomputed in fp32. On CPU autocast is off by default: there
fp32 is the fastest path (fp16/bf16 autocast ran 2.5-5x slower on the 2-core dev machine).
tests/test_models_device.py checks the fp16 path against fp32 on CPU: embedding cosine >= 0.999 and
every output within 3% of its fp32 range.
"""
from __future__ import annotations

import contextlib

import torch

AMP_DTYPE = torch.float16


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """"auto" -> cuda if available else cpu; "cpu"/"cuda"/"cuda:1" as given (cuda must be available)."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for but no CUDA GPU is available (use 'auto' or 'cpu')")
    return device


def autocast(device: torch.device, enabled: bool | None = None):
    """fp16 autocast context on `device`; enabled=None means on for CUDA, off for CPU."""
    if enabled is None:
        enabled = device.type == "cuda"
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=AMP_DTYPE)


def prepare(model: torch.nn.Module, device: torch.device, channels_last: bool = False) -> torch.nn.Module:
    """Move a model to `device` in eval mode; channels_last speeds up convolutions on GPU."""
    model = model.to(device).eval()
    return model.to(memory_format=torch.channels_last) if channels_last else model


@torch.no_grad()
def run_batched(fn, x: torch.Tensor, batch_size: int = 256, amp: bool | None = None,
                channels_last: bool = False):
    """Run `fn` over `x` (on the model's device) in batches under autocast (see `autocast` for the
    default); outputs, a tensor or a dict of tensors, are concatenated along dim 0 as float32 on the CPU."""
    outs = []
    for i in range(0, x.shape[0], batch_size):
        batch = x[i:i + batch_size]
        if channels_last and batch.ndim == 4:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with autocast(x.device, amp):
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
