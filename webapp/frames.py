"""What the page shows of an open video's frames: face crops, the whole frame with its face box, DDAMFN's
attention over the crop and a segment's gallery, through a small cache of decoded frames. No Gradio here."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from core.attention import face_attention, is_flat, overlay
from core.faces import crop_face, crop_faces, resize_face
from core.models.ddamfn import INPUT_SIZE as DDAMFN_SIZE
from core.table import BOX_COLUMNS, BOX_DETECTED, FACE, FRAME
from core.video import FrameCache, VideoError, read_frames
from db.limits import FRAME_CACHE_MB
from webapp.context import Context
from webapp.inputs import InputError, video_message
from webapp.state import OpenVideo

CROP_SIZE = 224
GALLERY_MAX = 24      # crops shown for a segment; longer segments are sampled evenly
FULL_FRAME_WIDTH = 640  # the whole frame in the frame view is shrunk to at most this width
BOX_COLORS = {"detected": (40, 200, 40), "interpolated": (255, 160, 0)}   # RGB, as the timeline's shading


@dataclass
class FrameView:
    """What the page shows of one frame."""

    crop: np.ndarray | None              # the face crop (CROP_SIZE), or without a face the shrunk frame
    full: np.ndarray | None              # the whole frame with the face box drawn (None: Aff-Wild2 images)
    model_crop: np.ndarray | None        # the 112x112 crop DDAMFN sees (None without a face)
    box: str | None                      # "detected" / "interpolated" (by the tracker), None without a box


class Frames:
    def __init__(self, ctx: Context):
        self.ctx = ctx
        self._decoded = FrameCache(FRAME_CACHE_MB * 2**20)

    def face_crops(self, video: OpenVideo, frames: list[int]) -> dict[int, np.ndarray]:
        """Face crops (or, without a face, the shrunk whole frame) of the given frames."""
        table = video.table.set_index(FRAME)
        frames = [f for f in frames if f in table.index]
        if video.path is None:   # Aff-Wild2: the aligned face images themselves
            return self._aligned_images(video, frames)
        out = {}
        for f, image in self._frames(video.path, frames).items():
            out[f] = crop_face(image, _box(table, f), CROP_SIZE) if table.loc[f, FACE] else _shrink(image, CROP_SIZE)
        return out

    def encoder_crops(self, video: OpenVideo, frames: list[int], size: int) -> np.ndarray:
        """The face crops an encoder reads at these face frames, cut as the pipeline cuts them
        (core.faces: crop_faces from the frame and its box, resize_face for Aff-Wild2's aligned images)."""
        if video.path is None:
            images = self._aligned_images(video, frames)
            return np.stack([resize_face(images[f], size) for f in frames])
        table = video.table.set_index(FRAME)
        images = self._frames(video.path, frames)
        return crop_faces([images[f] for f in frames], table.loc[frames, BOX_COLUMNS].to_numpy("float64"), size)

    def frame_view(self, video: OpenVideo, frame: int) -> FrameView:
        """The crop, the whole frame with its face box, the crop DDAMFN sees and how the box was found."""
        table = video.table.set_index(FRAME)
        if frame not in table.index:
            return FrameView(None, None, None, None)
        face = bool(table.loc[frame, FACE])
        if video.path is None:
            image = self._aligned_images(video, [frame]).get(frame)
            model_crop = resize_face(image, DDAMFN_SIZE) if image is not None and face else None
            return FrameView(image, None, model_crop, None)
        image = self._frames(video.path, [frame]).get(frame)
        if image is None:
            return FrameView(None, None, None, None)
        if not face:
            return FrameView(_shrink(image, CROP_SIZE), _shrink(image, FULL_FRAME_WIDTH), None, None)
        box = _box(table, frame)
        detected = table.loc[frame, BOX_DETECTED] if BOX_DETECTED in table else None
        kind = None if detected is None or pd.isna(detected) else "detected" if bool(detected) else "interpolated"
        return FrameView(crop_face(image, box, CROP_SIZE), draw_box(image, box, kind),
                         crop_face(image, box, DDAMFN_SIZE), kind)

    def attention(self, video: OpenVideo, view: FrameView) -> tuple[np.ndarray | None, str]:
        """DDAMFN's fused attention over the frame's face crop (one forward pass of the DDAMFN the analysis
        ran, on the CPU: the Context's cached model) and a sentence saying what it is, "untrained" for
        random weights."""
        if view.model_crop is None:
            return None, "No face in this frame: no attention map."
        model = self.ctx.analysis_model(video.run, "ddamfn")
        if model is None:
            return None, "DDAMFN was not part of this analysis: no attention map."
        amap = face_attention(model.model, view.model_crop)
        square = view.crop is not None and view.crop.shape[0] == view.crop.shape[1]
        display = view.crop if square else view.model_crop
        words = (f"DDAMFN's fused attention (max over its {model.model.net.num_head} heads, mean over 512 "
                 f"channels; 7x7 over the face) from {amap.min():.3f} to {amap.max():.3f}")
        words += (": flat, drawn as one tint on the 0-1 scale." if is_flat(amap) else
                  ", stretched: blue low, red high.")
        if model.info.untrained:
            words = "**untrained** (random weights: the map means nothing). " + words
        return overlay(display, amap), words

    def gallery(self, video: OpenVideo, start: int, end: int) -> list[tuple[np.ndarray, str]]:
        """Crops of a segment (at most GALLERY_MAX frames, evenly spaced), captioned by frame."""
        frames = sorted({int(f) for f in np.linspace(start, end, min(GALLERY_MAX, end - start + 1))})
        crops = self.face_crops(video, frames)
        return [(crops[f], f"frame {f}") for f in frames if f in crops]

    def _aligned_images(self, video: OpenVideo, frames: list[int]) -> dict[int, np.ndarray]:
        """Aff-Wild2's aligned face images (RGB) of the given frames that have one."""
        images = self.ctx.affwild2_index().video_frames(video.name).set_index("frame")["image_path"]
        return {f: cv2.cvtColor(cv2.imread(images[f]), cv2.COLOR_BGR2RGB) for f in frames
                if isinstance(images.get(f), str)}

    def _frames(self, path: str, frames: list[int]) -> dict[int, np.ndarray]:
        """The requested frames (RGB) through a cache of decoded frames bounded in bytes (core.video.FrameCache)."""
        return self._decoded.frames(path, frames, _read_frames)

def _read_frames(path: str, frames: list[int]) -> dict[int, np.ndarray]:
    """The requested frames (RGB), each decoded from the keyframe before it (core.video.read_frames)."""
    try:
        return read_frames(path, frames)
    except VideoError as err:
        raise InputError(video_message(err, path)) from None
    except IndexError:
        raise InputError(f"{Path(path).name} has fewer frames than its analysis: analyse it again.") from None


def _box(table: pd.DataFrame, frame: int) -> np.ndarray:
    return table.loc[frame, BOX_COLUMNS].to_numpy(dtype="float64")


def _shrink(image: np.ndarray, width: int) -> np.ndarray:
    """The image at most `width` wide, aspect kept."""
    h, w = image.shape[:2]
    if w <= width:
        return image
    return cv2.resize(image, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)


def draw_box(image: np.ndarray, box, kind: str | None) -> np.ndarray:
    """The whole frame (shrunk to FULL_FRAME_WIDTH) with the face box drawn: green where MTCNN detected
    it, amber where the tracker interpolated it between detections, with the word beside it."""
    small = _shrink(image, FULL_FRAME_WIDTH).copy()
    scale = small.shape[1] / image.shape[1]
    x1, y1, x2, y2 = (np.asarray(box, np.float64) * scale).round().astype(int)
    color = BOX_COLORS.get(kind or "detected")
    thick = max(2, small.shape[1] // 200)
    cv2.rectangle(small, (x1, y1), (x2, y2), color, thick)
    if kind:
        cv2.putText(small, kind, (x1, max(14, y1 - 6)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, color, 1 + thick // 2,
                    cv2.LINE_AA)
    return small
