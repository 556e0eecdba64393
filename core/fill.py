"""Values for the frames that have none (no face, so no prediction): the one rule used everywhere.

"interpolate" (predictions: probabilities, valence, arousal) draws a straight line along the frame axis
between the nearest frames that have values and holds the first / last value beyond them; "nearest"
(class labels and 0/1 decisions in submission files) copies the nearest frame, the earlier on a tie.
Both keep NaN everywhere when no frame has a value.
"""
from __future__ import annotations

import numpy as np

METHODS = ("interpolate", "nearest")


def fill_gaps(values: np.ndarray, known: np.ndarray, frames: np.ndarray | None = None,
              method: str = "interpolate") -> np.ndarray:
    """values (N, k) or (N,), known (N,) bool, frames (N,) ascending frame numbers (default 0..N-1):
    a float64 copy in which rows not `known` are filled from the known rows by `method`."""
    if method not in METHODS:
        raise ValueError(f"fill method must be one of {', '.join(METHODS)}, got {method!r}")
    values = np.asarray(values, dtype=np.float64)
    flat = values.ndim == 1
    out = values.reshape(len(values), -1).copy()
    known = np.asarray(known, dtype=bool)
    frames = np.arange(len(out)) if frames is None else np.asarray(frames)
    out[~known] = np.nan
    if not known.any() or known.all():
        return out[:, 0] if flat else out
    have, gaps = np.flatnonzero(known), np.flatnonzero(~known)
    if method == "interpolate":
        for j in range(out.shape[1]):
            out[gaps, j] = np.interp(frames[gaps], frames[have], out[have, j])
    else:
        after = np.searchsorted(frames[have], frames[gaps])
        left = have[np.clip(after - 1, 0, len(have) - 1)]
        right = have[np.clip(after, 0, len(have) - 1)]
        take_right = np.abs(frames[right] - frames[gaps]) < np.abs(frames[left] - frames[gaps])
        out[gaps] = out[np.where(take_right, right, left)]
    return out[:, 0] if flat else out
