"""What DDAMFN looked at: its fused attention map over a face crop.

DDAMNet's coordinate-attention heads each give a (512, 7, 7) map; the maps are fused by element-wise max
and multiply the 7x7 backbone features before GDConv pools them (core.models.ddamfn). Averaged over the
512 channels this is one 7x7 map of how strongly each region of the face passes into the embedding;
`face_attention` computes it for one crop with one forward pass and `overlay` draws it as a heat map
over the crop. With random weights the map is noise around one value: the page says "untrained".
"""
from __future__ import annotations

import cv2
import numpy as np
import torch

from core.models.ddamfn import DDAMFN


def face_attention(model: DDAMFN, crop: np.ndarray) -> np.ndarray:
    """The fused attention (7, 7) float32, averaged over channels, for one uint8 RGB face crop (any
    square size; resized to 112 as DDAMFN's preprocessing does). Values are the sigmoid gates, in [0, 1]."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            fused = model.net.fused_attention(model.preprocess(crop, device=device))   # (1, 512, 7, 7)
    finally:
        model.train(was_training)
    return fused[0].mean(dim=0).float().cpu().numpy()


FLAT = 1e-3          # a map whose values span less than this has no structure worth stretching


def is_flat(attention: np.ndarray) -> bool:
    return float(np.ptp(attention)) < FLAT


def overlay(crop: np.ndarray, attention: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """The crop (uint8 RGB, H x W) with the attention map blended over it as a heat map (OpenCV's JET:
    low blue, high red). The map is stretched to its own range; a flat map (is_flat, e.g. random
    weights) is drawn on the absolute 0..1 scale instead, one even tint, rather than stretching noise."""
    h, w = crop.shape[:2]
    a = np.asarray(attention, np.float32)
    low, span = (0.0, 1.0) if is_flat(a) else (float(a.min()), float(np.ptp(a)))
    scaled = cv2.resize((a - low) / span, (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 1)
    heat = cv2.cvtColor(cv2.applyColorMap((scaled * 255).astype(np.uint8), cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    return cv2.addWeighted(crop, 1 - alpha, heat, alpha, 0)


__all__ = ["FLAT", "face_attention", "is_flat", "overlay"]
