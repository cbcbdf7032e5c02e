"""Full-reference image quality metrics on RGB arrays in [0, 1]."""

from __future__ import annotations

import numpy as np


def psnr(pred: np.ndarray, target: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of ``(H, W, C)`` float arrays in [0, 1] (peak 1.0)."""
    mse = float(np.mean((np.asarray(pred, np.float64) - np.asarray(target, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)
