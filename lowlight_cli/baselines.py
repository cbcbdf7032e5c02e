"""Weight-free baselines: classical enhancement methods registered as models.

Each enhancer maps an ``(H, W, 3)`` float32 RGB image in ``[0, 1]`` to the same shape, dtype and
range. They use global image statistics (histograms, percentiles, large blurs), so their specs say
``tile_safe=False`` and the inference engine runs them on the whole image; all are cheap.

>>> img = np.full((2, 2, 3), 0.25, np.float32)
>>> round(float(gamma_correction(img)[0, 0, 0]), 4)  # 0.25 ** (1 / 2.2)
0.5325
"""

from __future__ import annotations

import math
from collections.abc import Callable

import cv2
import numpy as np

from .registry import ModelSpec, register

LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], np.float32)  # BT.601, the Y of cv2's YCrCb
# Added before every log: the classic ``log(I + 1)`` on 8-bit values, so black pixels stay finite
# and the noise floor of a dark image is not blown up.
EPS = 1.0 / 255.0
# Below this spread a stretch treats its input as flat (gain at most 1000).
MIN_SPAN = 1e-3
# gaussian_blur_large blurs directly up to this sigma; above it, on a pyramid level where the
# remaining sigma is about 4 to 8 pixels, which keeps cv2's kernel short.
PYRAMID_SIGMA = 8.0
MSR_SIGMAS = (15.0, 80.0, 250.0)  # Jobson et al. 1997: small, medium and large surrounds
# CLAHE histogram: uint16 luminance binned by its top 10 bits (bit shift 6). Four times finer than
# 8 bits, so stretched shadows do not band, while OpenCV's clip limit, counted per bin and truncated
# to an integer, keeps its usual meaning down to LOL-sized (600x400) images; at 12 or 16 bits that
# truncation changes it on small images.
CLAHE_BIT_SHIFT = 6

Blur = Callable[..., np.ndarray]


def _rgb(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img, dtype=np.float32)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(
            f"expected an (H, W, 3) RGB image, got shape {img.shape}; "
            "repeat a grey image into three channels with np.repeat(img[..., None], 3, axis=2)"
        )
    return img


def _luminance(img: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` RGB -> ``(H, W)`` BT.601 luma, same range."""
    return img @ LUMA_WEIGHTS


def _stretch(x: np.ndarray, ref: np.ndarray, *, low_pct: float, high_pct: float) -> np.ndarray:
    """Map the ``low_pct``/``high_pct`` percentiles of ``ref`` linearly onto 0 and 1 in ``x``, clip.

    One gain and offset for the whole array, so channels keep their relation. A flat ``ref``
    (spread below MIN_SPAN) is centred on 0.5 instead of being divided by zero.
    """
    lo, hi = (float(v) for v in np.percentile(ref, (low_pct, high_pct)))
    return np.clip((x - (lo + hi) / 2) / max(hi - lo, MIN_SPAN) + 0.5, 0.0, 1.0)


def autocontrast(img: np.ndarray, *, low_pct: float = 0.5, high_pct: float = 99.5) -> np.ndarray:
    """Linear stretch putting the ``low_pct``/``high_pct`` luminance percentiles at 0 and 1.

    ``(H, W, 3)`` float32 RGB in [0, 1] -> same. Every channel gets the same gain and offset, so
    greys stay grey; a flat image becomes mid-grey.
    """
    img = _rgb(img)
    return _stretch(img, _luminance(img), low_pct=low_pct, high_pct=high_pct)


def equalize_histogram(img: np.ndarray, *, bins: int = 4096) -> np.ndarray:
    """Global histogram equalization of Y (YCrCb) on a ``bins``-level histogram; chroma kept.

    ``(H, W, 3)`` float32 RGB in [0, 1] -> same. Each level maps to the middle of the ranks its
    pixels occupy, so the output Y is uniform in (0, 1) and a flat image becomes mid-grey. The
    default 12-bit histogram keeps the deep shadows of dark images from banding.
    """
    ycc = cv2.cvtColor(_rgb(img), cv2.COLOR_RGB2YCrCb)
    levels = np.minimum((ycc[..., 0] * bins).astype(np.int32), bins - 1)
    counts = np.bincount(levels.ravel(), minlength=bins)
    lut = ((np.cumsum(counts) - counts / 2) / levels.size).astype(np.float32)
    ycc[..., 0] = lut[levels]
    return np.clip(cv2.cvtColor(ycc, cv2.COLOR_YCrCb2RGB), 0.0, 1.0)


def clahe(img: np.ndarray, *, clip_limit: float = 2.0, tiles: int = 8) -> np.ndarray:
    """Contrast-limited adaptive histogram equalization of L (CIE Lab); a and b kept.

    ``(H, W, 3)`` float32 RGB in [0, 1] -> same. ``clip_limit`` is OpenCV's (a multiple of the mean
    bin count), on a ``tiles`` x ``tiles`` grid; L runs through a 10-bit histogram (see
    CLAHE_BIT_SHIFT). Needs OpenCV >= 4.13 for ``CLAHE.setBitShift``.
    """
    lab = cv2.cvtColor(_rgb(img), cv2.COLOR_RGB2Lab)
    l16 = np.clip(np.round(lab[..., 0] * (65535 / 100)), 0, 65535).astype(np.uint16)
    op = cv2.createCLAHE(clipLimit=clip_limit, tileGridSize=(tiles, tiles))
    op.setBitShift(CLAHE_BIT_SHIFT)
    lab[..., 0] = op.apply(l16) * np.float32(100 / 65535)
    return np.clip(cv2.cvtColor(lab, cv2.COLOR_Lab2RGB), 0.0, 1.0)


def gamma_correction(img: np.ndarray, *, gamma: float = 2.2) -> np.ndarray:
    """``img ** (1 / gamma)`` per channel: ``(H, W, 3)`` float32 in [0, 1] -> same."""
    return np.clip(_rgb(img), 0.0, 1.0) ** (1.0 / gamma)


def gamma_auto(
    img: np.ndarray, *, target: float = 0.5, exponent_range: tuple[float, float] = (0.1, 2.0)
) -> np.ndarray:
    """``img ** e`` with ``e = log(target) / log(mean luminance)``, so the mean maps to ``target``.

    ``(H, W, 3)`` float32 RGB in [0, 1] -> same. ``e`` is clipped to ``exponent_range``: at 0.1 a
    nearly black frame (mean below 0.1 %) is lifted without turning its noise into a white sheet;
    at 2.0 a bright frame is darkened at most like gamma 0.5. The output mean luminance lands near
    ``target`` (a little below it, since the mean of a concave power is below the power of the mean).
    """
    img = np.clip(_rgb(img), 0.0, 1.0)
    mean = min(max(float(_luminance(img).mean()), 1e-6), 1.0 - 1e-6)
    exponent = min(max(math.log(target) / math.log(mean), exponent_range[0]), exponent_range[1])
    return img**exponent


def gaussian_blur_large(img: np.ndarray, *, sigma: float) -> np.ndarray:
    """Gaussian blur with standard deviation ``sigma`` pixels, fast for any ``sigma``.

    ``img``: ``(H, W)`` or ``(H, W, C)`` float32; returns the same shape. Borders reflect
    (BORDER_REFLECT_101) as in cv2.GaussianBlur, which this is up to PYRAMID_SIGMA. Above it the
    image goes ``k`` levels down a Gaussian pyramid, is blurred there and comes back up; pyrDown and
    pyrUp each filter with the 5-tap binomial (variance 1 px² at the finer level), so the round trip
    adds ``2 (4**k - 1) / 3`` px² at full resolution and the level blur supplies the rest. Cost is a
    few full-resolution passes whatever ``sigma``; ``bench/bench_msr.py`` measures the error
    against the exact blur (about 1e-4 mean absolute on [0, 1] images).
    """
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    if sigma <= PYRAMID_SIGMA:
        return cv2.GaussianBlur(img, (0, 0), sigma)
    k = math.ceil(math.log2(sigma / PYRAMID_SIGMA))
    h, w = img.shape[:2]
    # pyrDown keeps the even pixels, so the top/left reflection axis is the same at every level but
    # the bottom/right one drifts by up to 2**k pixels; padding those sides by 3 sigma (reflected)
    # puts the drift where the kernel no longer reaches the image.
    pad = math.ceil(3 * sigma)
    level = cv2.copyMakeBorder(img, 0, pad, 0, pad, cv2.BORDER_REFLECT_101)
    sizes = []
    for _ in range(k):
        sizes.append((level.shape[1], level.shape[0]))
        level = cv2.pyrDown(level)
    level_sigma = math.sqrt(sigma**2 - 2 * (4**k - 1) / 3) / 2**k
    level = cv2.GaussianBlur(level, (0, 0), level_sigma)
    for size in reversed(sizes):
        level = cv2.pyrUp(level, dstsize=size)
    return level[:h, :w]


def multiscale_retinex(
    img: np.ndarray, *, sigmas: tuple[float, ...] = MSR_SIGMAS, blur: Blur = gaussian_blur_large
) -> np.ndarray:
    """Jobson's multi-scale Retinex before any stretch: ``mean_n [log I - log(G_n * I)]``.

    ``img``: ``(H, W, 3)`` float32 RGB in [0, 1], each channel on its own; ``I = img + EPS``.
    ``G_n`` is a Gaussian surround of std ``sigmas[n]`` pixels (equal weights), computed by
    ``blur(x, sigma=...)``: pass an exact blur for a reference result. Returns ``(H, W, 3)`` float32
    log-ratios, 0 where a pixel equals its surrounds, roughly within [-3, 3].
    """
    i = _rgb(img) + EPS
    surrounds = sum(np.log(blur(i, sigma=s)) for s in sigmas)
    return np.log(i) - surrounds / len(sigmas)


def msr(
    img: np.ndarray,
    *,
    sigmas: tuple[float, ...] = MSR_SIGMAS,
    clip_pct: float = 1.0,
    blur: Blur = gaussian_blur_large,
) -> np.ndarray:
    """Multi-scale Retinex, stretched for display: ``(H, W, 3)`` float32 RGB in [0, 1] -> same.

    The ``clip_pct`` and ``100 - clip_pct`` percentiles of the Retinex output, taken over all
    channels together, map to 0 and 1 (one gain for all channels, so the colour balance Retinex
    produced is kept); a flat image becomes mid-grey. See :func:`multiscale_retinex`.
    """
    r = multiscale_retinex(img, sigmas=sigmas, blur=blur)
    return _stretch(r, r, low_pct=clip_pct, high_pct=100.0 - clip_pct)


def colour_restoration(img: np.ndarray, *, alpha: float = 125.0, beta: float = 46.0) -> np.ndarray:
    """MSRCR's colour restoration ``C = beta [log(alpha I) - log sum_c I]``, ``I = img + EPS``.

    ``(H, W, 3)`` float32 RGB in [0, 1] -> ``(H, W, 3)`` float32 weights, larger for the channels
    that dominate a pixel. ``alpha = 125``, ``beta = 46`` are Jobson et al.'s values (1997).
    """
    i = _rgb(img) + EPS
    return beta * (np.log(alpha * i) - np.log(i.sum(axis=2, keepdims=True)))


def msrcr(
    img: np.ndarray,
    *,
    sigmas: tuple[float, ...] = MSR_SIGMAS,
    alpha: float = 125.0,
    beta: float = 46.0,
    clip_pct: float = 1.0,
    blur: Blur = gaussian_blur_large,
) -> np.ndarray:
    """Multi-scale Retinex with colour restoration: ``(H, W, 3)`` float32 RGB in [0, 1] -> same.

    ``C * MSR`` (see :func:`colour_restoration`, :func:`multiscale_retinex`), then the same
    percentile stretch as :func:`msr`. The paper's final gain and offset (G = 192, b = -30 for
    8-bit output) are an affine map that this stretch absorbs, so they are left out; for the same
    reason ``beta`` only sets the scale of ``C`` and does not change the result.
    """
    r = colour_restoration(img, alpha=alpha, beta=beta) * multiscale_retinex(img, sigmas=sigmas, blur=blur)
    return _stretch(r, r, low_pct=clip_pct, high_pct=100.0 - clip_pct)


def _register(name: str, enhance: Callable[[np.ndarray], np.ndarray], summary: str, paper: str = "") -> None:
    register(ModelSpec(name=name, kind="baseline", summary=summary, paper=paper, enhance=enhance, tile_safe=False))


_JOBSON = (
    "Jobson, Rahman, Woodell: A multiscale retinex for bridging the gap between color images "
    "and the human observation of scenes, IEEE TIP 6(7), 1997"
)
_register("autocontrast", autocontrast, "linear stretch of the 0.5-99.5 % luminance range, same gain per channel")
_register(
    "he",
    equalize_histogram,
    "global histogram equalization of luminance (Y of YCrCb), colour kept",
    "Hummel: Image enhancement by histogram transformation, CGIP 6(2), 1977",
)
_register(
    "clahe",
    clahe,
    "contrast-limited adaptive histogram equalization of Lab L (clip 2.0, 8x8 tiles)",
    "Zuiderveld: Contrast limited adaptive histogram equalization, Graphics Gems IV, 1994",
)
_register("gamma", gamma_correction, "fixed gamma 2.2: out = in ** (1 / 2.2)")
_register("gamma_auto", gamma_auto, "gamma chosen so the mean luminance maps to 0.5")
_register("msr", msr, "multi-scale Retinex (sigma 15, 80, 250), 1-99 % stretch", _JOBSON)
_register("msrcr", msrcr, "multi-scale Retinex with colour restoration (alpha 125, beta 46)", _JOBSON)
