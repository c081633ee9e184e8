"""How values read from run folders are shown in the report's tables and lines."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def fixed(value: Any, decimals: int = 3) -> str:
    """A score in [-1, 1] (an AUC, a rank correlation) at fixed decimals, so 0.9998 reads 1.000, not 1."""
    if is_number(value) or isinstance(value, np.floating):
        return "-" if math.isnan(value) else f"{value:.{decimals}f}"
    return "-"


def fmt(value: Any, digits: int = 3) -> str:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return "-" if math.isnan(value) else f"{value:.{digits}g}"
    return "-" if value is None else str(value)
