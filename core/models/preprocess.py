"""Turn face crops (uint8 RGB, numpy or torch) into normalised model input, on the model's device.

The pipeline hands over crops as uint8 HxWx3 arrays; normalising after the upload (on the GPU when there
is one) moves a quarter of the bytes that float input would.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def uint8_batch(frames, device=None) -> torch.Tensor:
    """Stack frames into a uint8 tensor (B, 3, H, W) on `device`.

    Accepts one HxWx3 image or a batch: a (B, H, W, 3) numpy array or tensor, or a list of HxWx3 arrays of
    equal size. Channels last in, channels first out.
    """
    if isinstance(frames, Sequence) and not isinstance(frames, (np.ndarray, torch.Tensor)):
        frames = np.stack([np.asarray(f) for f in frames]) if len(frames) else np.zeros((0, 1, 1, 3), np.uint8)
    x = torch.as_tensor(frames)
    if x.ndim == 3:
        x = x.unsqueeze(0)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected RGB images shaped (B, H, W, 3), got {tuple(x.shape)}")
    if x.dtype != torch.uint8:
        raise ValueError(f"expected uint8 images, got {x.dtype}")
    return x.to(device, non_blocking=True).permute(0, 3, 1, 2)


def normalize_images(frames, size: int, mean, std, device=None, center_crop: bool = False,
                     interpolation: str = "bilinear") -> torch.Tensor:
    """uint8 RGB frames -> float32 (B, 3, size, size), scaled to [0, 1] then normalised by mean/std.

    Without `center_crop` the image is resized to size x size (upstream DDAMFN's `Resize((112, 112))`);
    with it the shorter side is resized to `size` and the centre cut out (CLIP's eval transform). Frames
    already at the target size are not resampled.
    """
    x = uint8_batch(frames, device).float().div_(255.0)
    h, w = x.shape[-2:]
    if (h, w) != (size, size) and x.shape[0]:
        if center_crop:
            scale = size / min(h, w)
            new_hw = (max(size, round(h * scale)), max(size, round(w * scale)))
        else:
            new_hw = (size, size)
        x = F.interpolate(x, size=new_hw, mode=interpolation, align_corners=False, antialias=True)
        if center_crop:
            top, left = (new_hw[0] - size) // 2, (new_hw[1] - size) // 2
            x = x[..., top:top + size, left:left + size]
        if interpolation == "bicubic":
            x = x.clamp_(0.0, 1.0)
    mean_t = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean_t) / std_t
