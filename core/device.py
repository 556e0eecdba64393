"""Where models run and how batches go through them: CUDA when present, CPU otherwise, bf16 autocast.

Autocast keeps fp32 weights and runs matmuls/convolutions in bf16 (fp16 on GPUs without bf16). Outputs
agree with fp32 to about 1e-2 relative on the models here (tests/test_models_device.py states the bound).
"""
from __future__ import annotations

import contextlib

import torch


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """"auto" -> cuda if available else cpu; "cpu"/"cuda"/"cuda:1" as given (cuda must be available)."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for but no CUDA GPU is available (use 'auto' or 'cpu')")
    return device


def amp_dtype(device: torch.device) -> torch.dtype:
    """bf16 where supported (CPU, Ampere and newer GPUs), fp16 on older GPUs."""
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def autocast(device: torch.device, enabled: bool = True):
    """Mixed-precision context for inference on `device` (a no-op context when disabled)."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=amp_dtype(device))


def prepare(model: torch.nn.Module, device: torch.device, channels_last: bool = False) -> torch.nn.Module:
    """Move a model to `device` in eval mode; channels_last speeds up convolutions on GPU."""
    model = model.to(device).eval()
    return model.to(memory_format=torch.channels_last) if channels_last else model


@torch.no_grad()
def run_batched(fn, x: torch.Tensor, batch_size: int = 256, amp: bool = True, channels_last: bool = False):
    """Run `fn` over `x` in batches on x's device under autocast; outputs (a tensor or a dict of
    tensors) are concatenated along dim 0 and returned as float32 on the CPU."""
    device = x.device
    outs = []
    for i in range(0, x.shape[0], batch_size):
        batch = x[i:i + batch_size]
        if channels_last and batch.ndim == 4:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with autocast(device, amp):
            outs.append(fn(batch))
    if not outs:
        raise ValueError("run_batched needs at least one input row")
    if isinstance(outs[0], dict):
        return {k: torch.cat([o[k].float().cpu() for o in outs]) for k in outs[0]}
    return torch.cat([o.float().cpu() for o in outs])
