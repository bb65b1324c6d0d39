"""Results as plain JSON: numpy scalars and arrays, tuples and other objects converted, and a
number that is not finite (a scenario without tasks has no mean) written as null, so that any
strict JSON reader takes the file."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["jsonable"]


def jsonable(value: Any) -> Any:
    """``value`` with dict keys as strings, numpy values as Python ones, NaN and infinities as
    None, anything else unknown as its ``str``."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())  # a 0-d array's tolist() is a scalar
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, int | str | bool) or value is None:
        return value
    return str(value)
