import json
from datetime import datetime
from pathlib import Path

import numpy as np
import torch

from core.jsonsafe import jsonable


def test_everything_we_store_becomes_standard_json():
    value = {"ccc": np.float32(0.5), "nan": float("nan"), "inf": np.float64("inf"), "n": np.int64(3),
             "thresholds": np.array([0.25, np.nan]), "path": Path("runs/best.pt"), 7: (1, 2),
             "at": datetime(2026, 11, 24, 12, 0), "flag": np.bool_(True), "t": torch.tensor([1.5])}
    out = jsonable(value)
    assert json.loads(json.dumps(out, allow_nan=False)) == {
        "ccc": 0.5, "nan": None, "inf": None, "n": 3, "thresholds": [0.25, None], "path": "runs/best.pt",
        "7": [1, 2], "at": "2026-11-24 12:00:00", "flag": True, "t": [1.5]}
