"""One JSON-safe copy for everything AffectLens stores or writes as JSON (run metadata, checkpoint
metadata, job settings and metrics): numpy numbers and arrays become Python numbers and lists, paths and
datetimes strings, and NaN or infinite floats None (JSON has no NaN, and PostgreSQL refuses it)."""
from __future__ import annotations

import math
from datetime import date, datetime
from pathlib import PurePath

import numpy as np


def jsonable(value):
    """A copy of `value` that json.dumps writes as standard JSON; other objects become their str()."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, (PurePath, datetime, date)):
        return str(value)
    if hasattr(value, "tolist"):            # torch tensors
        return jsonable(value.tolist())
    return str(value)
