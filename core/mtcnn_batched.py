"""MTCNN's three stages with batched crops (opt-in for core.faces.FaceDetector: `batched_crops`).

Stock facenet-pytorch crops and resizes every candidate box for RNet and ONet one at a time (a Python
loop over thousands of boxes per batch: most of the detector's time on a GPU). Here the same stages run on
MTCNN's own networks and weights with every crop of a stage taken at once by torchvision's roi_align
(averaging bilinear samples, close to the stock area resampling). Constants and order of operations follow
facenet-pytorch's detect_face.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

def _nms_per_image(boxes: torch.Tensor, scores: torch.Tensor, image: torch.Tensor, threshold: float):
    from torchvision.ops import batched_nms

    return batched_nms(boxes, scores, image, threshold)


def _square(boxes: torch.Tensor) -> torch.Tensor:
    """Boxes made square around their centre (side = the longer side)."""
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = torch.maximum(w, h)
    x1 = boxes[:, 0] + w / 2 - side / 2
    y1 = boxes[:, 1] + h / 2 - side / 2
    return torch.stack([x1, y1, x1 + side, y1 + side], dim=1)


def _crops(images: torch.Tensor, boxes: torch.Tensor, image: torch.Tensor, size: int):
    """size x size crops of the (truncated, clipped) boxes, normalised as MTCNN expects; and which boxes
    were not empty."""
    from torchvision.ops import roi_align

    h, w = images.shape[2:]
    b = boxes.trunc()
    x1, y1 = b[:, 0].clamp(min=1) - 1, b[:, 1].clamp(min=1) - 1
    x2, y2 = b[:, 2].clamp(max=w), b[:, 3].clamp(max=h)
    ok = (x2 > x1) & (y2 > y1)
    rois = torch.stack([image.to(images.dtype), x1, y1, x2, y2], dim=1)[ok].to(images.dtype)
    out = roi_align(images, rois, (size, size), spatial_scale=1.0, sampling_ratio=-1, aligned=True)
    return (out - 127.5) * 0.0078125, ok


def _refine(boxes: torch.Tensor, reg: torch.Tensor) -> torch.Tensor:
    """Apply RNet/ONet box regression (offsets in units of pixel-inclusive box size)."""
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    return boxes[:, :4] + reg * torch.stack([w, h, w, h], dim=1)


@torch.no_grad()
def mtcnn_detect_batched(mtcnn, images: torch.Tensor) -> list[np.ndarray]:
    """MTCNN on a batch (B, H, W, 3) (uint8 or float, on the networks' device): per image (k, 5) arrays
    of x1, y1, x2, y2, probability, in MTCNN's final order."""
    from facenet_pytorch.models.utils.detect_face import batched_nms_numpy

    dtype = next(mtcnn.pnet.parameters()).dtype
    imgs = images.permute(0, 3, 1, 2).to(dtype)
    n, _, h, w = imgs.shape
    t0, t1, t2 = mtcnn.thresholds
    # image pyramid + PNet
    scale, side, scales = 12.0 / mtcnn.min_face_size, min(h, w) * 12.0 / mtcnn.min_face_size, []
    while side >= 12:
        scales.append(scale)
        scale *= mtcnn.factor
        side *= mtcnn.factor
    found = []
    for s in scales:
        x = F.interpolate(imgs, size=(int(h * s + 1), int(w * s + 1)), mode="area")
        reg, prob = mtcnn.pnet((x - 127.5) * 0.0078125)
        mask = prob[:, 1] >= t0
        where = mask.nonzero()
        image, yx = where[:, 0], where[:, 1:].to(dtype)
        q1 = ((2 * yx.flip(1) + 1) / s).floor()
        q2 = ((2 * yx.flip(1) + 12) / s).floor()
        cand = torch.cat([q1, q2, prob[:, 1][mask].unsqueeze(1), reg.permute(0, 2, 3, 1)[mask]], dim=1)
        keep = _nms_per_image(cand[:, :4], cand[:, 4], image, 0.5)
        found.append((cand[keep], image[keep]))
    cand = torch.cat([c for c, _ in found]) if found else imgs.new_zeros((0, 9))
    image = torch.cat([i for _, i in found]) if found else torch.zeros(0, dtype=torch.long, device=imgs.device)
    keep = _nms_per_image(cand[:, :4], cand[:, 4], image, 0.7)
    cand, image = cand[keep], image[keep]
    wh = torch.stack([cand[:, 2] - cand[:, 0], cand[:, 3] - cand[:, 1]] * 2, dim=1)
    boxes = _square(cand[:, :4] + cand[:, 5:9] * wh)
    # RNet
    if len(boxes):
        x, ok = _crops(imgs, boxes, image, 24)
        boxes, image = boxes[ok], image[ok]
        reg, prob = mtcnn.rnet(x) if len(x) else (x.new_zeros((0, 4)), x.new_zeros((0, 2)))
        passed = prob[:, 1] > t1
        boxes, image, reg, score = boxes[passed], image[passed], reg[passed], prob[passed, 1]
        keep = _nms_per_image(boxes, score, image, 0.7)
        boxes = _square(_refine(boxes[keep], reg[keep]))
        image, score = image[keep], score[keep]
    # ONet
    result = torch.zeros((0, 5), device=imgs.device)
    if len(boxes):
        x, ok = _crops(imgs, boxes, image, 48)
        boxes, image = boxes[ok], image[ok]
        reg, _, prob = mtcnn.onet(x) if len(x) else (x.new_zeros((0, 4)), None, x.new_zeros((0, 2)))
        passed = prob[:, 1] > t2
        boxes, image, reg, score = boxes[passed], image[passed], reg[passed], prob[passed, 1]
        boxes = _refine(boxes, reg)
        # stock MTCNN's last NMS: overlap = intersection / the smaller box (float64: exact per-image offsets)
        keep = batched_nms_numpy(boxes.double(), score.double(), image, 0.7, "Min")
        result, image = torch.cat([boxes[keep], score[keep].unsqueeze(1)], dim=1), image[keep]
    result, image = result.float().cpu().numpy(), image.cpu().numpy() if len(result) else np.zeros(0, np.int64)
    return [result[image == i] for i in range(n)]


