"""Vectorised reward helpers shared by the variants (and so by the single and batched envs)."""

from __future__ import annotations

import numpy as np

__all__ = ["GRASP_FORCE", "SUCCESS_DISTANCE", "closeness", "distance", "grasped", "within"]

SUCCESS_DISTANCE = 0.05
"""Metres: success threshold of every variant."""
GRASP_FORCE = 0.5
"""Newtons of contact force on each finger pad that count as holding the object."""


def distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distance along the last axis: (N, k), (N, k) -> (N,)."""
    diff = a - b
    return np.sqrt((diff * diff).sum(axis=-1))


def closeness(d: np.ndarray, scale: float = 10.0) -> np.ndarray:
    """1 - tanh(scale * d): 1 at zero distance, 0.24 at 1/scale, -> 0 far away."""
    return 1.0 - np.tanh(scale * d)


def within(d: np.ndarray, threshold: float = SUCCESS_DISTANCE) -> np.ndarray:
    """(N,) 0.0/1.0: distance below the success threshold."""
    return (d < threshold).astype(np.float64)


def grasped(touch: np.ndarray) -> np.ndarray:
    """(N,) 0/1: both finger pads press on something (touch (N, 2) in newtons)."""
    return ((touch[:, 0] > GRASP_FORCE) & (touch[:, 1] > GRASP_FORCE)).astype(np.float64)
