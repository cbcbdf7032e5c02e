"""Full-reference image quality metrics on RGB arrays in [0, 1], and the protocol they follow.

Papers on low-light enhancement report numbers under different protocols (plain or GT-mean, SSIM on
grey or on RGB), so every table this tool prints carries :data:`PROTOCOL`.
"""

from __future__ import annotations

import cv2
import numpy as np

from .errors import UsageError

SSIM_WINDOW, SSIM_SIGMA, SSIM_K1, SSIM_K2 = 11, 1.5, 0.01, 0.03

PROTOCOL = (
    "PSNR in dB (peak 1.0, MSE over all RGB values); SSIM on RGB, mean over channels, Gaussian window "
    f"(Wang et al. 2004: {SSIM_WINDOW}x{SSIM_WINDOW}, sigma {SSIM_SIGMA}, K1 {SSIM_K1}, K2 {SSIM_K2}, "
    "data range 1; = skimage structural_similarity(channel_axis=2, data_range=1, gaussian_weights=True, "
    "sigma=1.5, use_sample_covariance=False)). Outputs are rounded to 8 bits, as a written file would be. "
    "Plain: output against target as produced. GT-mean: output scaled so its mean grey level "
    "(mean of R, G, B) equals the target's, then clipped to [0, 1], before scoring."
)


def _check_pair(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(pred, np.float64), np.asarray(target, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"prediction {a.shape} and target {b.shape} differ in shape")
    return a, b


def psnr(pred: np.ndarray, target: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of ``(H, W, C)`` float arrays in [0, 1] (peak 1.0); inf when equal."""
    a, b = _check_pair(pred, target)
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)


def ssim(pred: np.ndarray, target: np.ndarray) -> float:
    """SSIM on RGB, mean over channels, Gaussian window, of ``(H, W, 3)`` float arrays in [0, 1].

    Wang et al. (2004): 11x11 Gaussian window with sigma 1.5, K1 = 0.01, K2 = 0.03, data range 1,
    population (not sample) covariances; the SSIM map is averaged away from a 5-pixel border, per
    channel, then over channels. Equal to ``skimage.metrics.structural_similarity(pred, target,
    channel_axis=2, data_range=1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)``.
    Returns a value in [-1, 1]; 1 for identical images. Sides must be at least 11 pixels.

    >>> x = np.random.default_rng(0).random((32, 48, 3))
    >>> round(ssim(x, x), 6)
    1.0
    """
    a, b = _check_pair(pred, target)
    if min(a.shape[:2]) < SSIM_WINDOW:
        raise UsageError(
            f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, got {a.shape[1]}x{a.shape[0]}",
            "use larger images",
        )
    # The 11-tap kernel scipy.ndimage (and so skimage) builds for sigma 1.5, truncate 3.5.
    r = SSIM_WINDOW // 2
    g = np.exp(-0.5 * (np.arange(-r, r + 1) / SSIM_SIGMA) ** 2)
    g /= g.sum()

    def blur(x: np.ndarray) -> np.ndarray:
        # Border pixels within r of an edge are cropped below, so the border mode never matters.
        return cv2.sepFilter2D(x, cv2.CV_64F, g, g, borderType=cv2.BORDER_REFLECT)

    c1, c2 = SSIM_K1**2, SSIM_K2**2
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    s = s.reshape(a.shape)[r:-r, r:-r]
    return float(s.reshape(-1, a.shape[2] if a.ndim == 3 else 1).mean(axis=0).mean())


def gt_mean(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``pred`` scaled so its mean grey level (mean of R, G, B) equals ``target``'s, clipped to [0, 1].

    The "GT-mean" protocol: it removes the global exposure error before scoring, which an enhancer
    cannot know without the reference. ``(H, W, 3)`` float in [0, 1] -> float32 of the same shape.
    An all-black ``pred`` cannot be scaled and is returned unchanged.
    """
    a, b = _check_pair(pred, target)
    mean = a.mean()
    scaled = a if mean == 0 else a * (b.mean() / mean)
    return np.clip(scaled, 0.0, 1.0).astype(np.float32)


def chroma(rgb: np.ndarray) -> float:
    """Mean colourfulness of an sRGB image in [0, 1]: the CIE Lab chroma ``sqrt(a*^2 + b*^2)`` of each pixel,
    averaged."""
    lab = cv2.cvtColor(np.clip(rgb, 0.0, 1.0).astype(np.float32), cv2.COLOR_RGB2LAB)
    return float(np.hypot(lab[..., 1], lab[..., 2]).mean())


def hue_shift(pred: np.ndarray, target: np.ndarray, *, min_chroma: float = 30.0, blur: float = 2.0) -> float:
    """How far ``pred`` turns the hues of ``target``'s saturated colours, in degrees: the mean absolute
    difference of CIE Lab hue angles over the pixels whose chroma in ``target`` is at least ``min_chroma``
    (a red hat, a green field; not skin or greys), weighted by that chroma. Pixels whose colour ``pred``
    has all but lost (chroma under a third of ``min_chroma``), whose hue means nothing, are left out:
    lost colour is :func:`chroma`'s to measure. Both images are blurred by ``blur`` px first (0: not)
    so that noise does not count. NaN when no pixel is left. A red turned orange is 10-15 degrees."""
    a, b = _check_pair(pred, target)

    def ab(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rgb = np.clip(rgb, 0.0, 1.0).astype(np.float32)
        lab = cv2.cvtColor(cv2.GaussianBlur(rgb, (0, 0), blur) if blur > 0 else rgb, cv2.COLOR_RGB2LAB)
        return lab[..., 1], lab[..., 2]

    (pa, pb), (ta, tb) = ab(a), ab(b)
    weight = np.hypot(ta, tb)
    weight = np.where((weight >= min_chroma) & (np.hypot(pa, pb) >= min_chroma / 3), weight, 0.0)
    if not weight.any():
        return float("nan")
    turn = np.angle(np.exp(1j * (np.arctan2(pb, pa) - np.arctan2(tb, ta))), deg=True)  # wrapped to +-180
    return float((np.abs(turn) * weight).sum() / weight.sum())
