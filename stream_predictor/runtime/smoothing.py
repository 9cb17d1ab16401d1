"""Decision smoothing as pure functions: the caller keeps the previous value and passes it in."""

from __future__ import annotations

import numpy as np


def ema(prev: np.ndarray | None, probs: np.ndarray, alpha: float) -> np.ndarray:
    """Exponential moving average of probabilities; `alpha` is the weight of the past (0 turns it off)."""
    if prev is None or alpha <= 0:
        return probs
    return alpha * prev + (1.0 - alpha) * probs


def hysteresis(prev_class: int | None, probs: np.ndarray, margin: float) -> int:
    """Keep the current class unless another beats it by more than `margin` in probability."""
    best = int(np.argmax(probs))
    if prev_class is None or margin <= 0 or best == prev_class:
        return best
    return best if probs[best] - probs[prev_class] > margin else prev_class
