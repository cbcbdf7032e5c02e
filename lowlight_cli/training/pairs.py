"""Synthetic exposure pairs: a low-light input made from a normal-light image, which is the target.

The darkening model (:func:`darken`) works in approximately linear light (``rgb ** 2.2``), where a
shorter exposure is a gain ``k`` and noise behaves like a sensor's: the light is scaled by ``k``
(LOL-dark: 1/50 to 1/5), Poisson shot noise and Gaussian read noise are added, and a random tone
curve and 8-bit quantization bring it back to a camera file. With ``spatial``, ``k`` is a map that
stays high where :func:`lit_mask` (lamps, lit subjects, a sky) is 1.

A batch mixes kinds of pair (:func:`synthesize`, drawn by :func:`pick_kind`): ``identity`` (a
well-exposed image is its own input), ``global`` (one exposure from LOL-dark to unchanged),
``spatial`` (lamps and skies stay lit), ``backlit`` (a subject in shadow in a lit frame) and ``lol``
(LOL-dark, or the real LOL input where there is one).
A share of the identity pairs may be ``lowkey`` (:func:`lowkey`): a photo graded darker but still
correctly exposed, its own target, so that dark-toned does not read as under-exposed. A share of the
global pairs may be ``clean``: the same darkening without the sensor noise, as a phone's denoised JPEG
of a dark scene is, so that its colours come back with its light; so may a share of the backlit pairs,
as a phone's HDR-processed backlit photo is.

Plain numpy on ``(H, W, 3)`` float32 arrays in [0, 1]; every random number comes from the
``numpy.random.Generator`` passed in, so the same generator state gives the same pair. Example::

    rng = np.random.default_rng(0)
    low = darken(high, rng, spatial=True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

LOL_EXPOSURE = (0.02, 0.2)   # LOL-dark: 1/50 to 1/5 of the light
WIDE_EXPOSURE = (0.02, 1.0)  # from LOL-dark to unchanged
LIT_EXPOSURE = (0.5, 1.0)    # the lit part of a spatially varying exposure
BACKLIT_EXPOSURE = (0.03, 0.25)  # a subject in shadow: 2 to 5 stops under the full light (its frame: 0 to 1)
LINEARIZE = 2.2  # a well-exposed image's values to the power of this: approximately linear light
LOWKEY_GAMMA = (1.2, 2.2)    # the low-key grade's exponent


def lit_mask(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A smooth ``(H, W, 1)`` float32 mask in [0, 1]: 1 where a scene is lit, 0 where it is dark.

    One to three lamps or lit subjects (Gaussian blobs of 5-40 % of the short side) and, half the
    time, a lit sky: a soft horizontal edge with the bright side up. Every draw comes from ``rng``.
    """
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    side = float(min(h, w))
    mask = np.zeros((h, w), np.float32)
    for _ in range(int(rng.integers(1, 4))):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(0.05, 0.4) * side
        mask = np.maximum(mask, np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r)))
    if rng.random() < 0.5:
        horizon, soft = rng.uniform(0.2, 0.8) * h, rng.uniform(0.02, 0.2) * h
        mask = np.maximum(mask, 1.0 / (1.0 + np.exp((yy - horizon) / soft)))
    return mask[..., None]


def shadow_mask(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A smooth ``(H, W, 1)`` float32 mask in [0, 1] for a backlit scene: 0 on one or two subjects in
    shadow, 1 on the lit frame around them.

    Each subject is a soft-edged ellipse, flat inside, 40-90 % of the short side tall and 0.4-1 times as
    wide, anywhere in the frame (a person before a bright window, a building against the sky). Every
    draw comes from ``rng``.
    """
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    side = float(min(h, w))
    shade = np.zeros((h, w), np.float32)
    for _ in range(int(rng.integers(1, 3))):
        ry = rng.uniform(0.2, 0.45) * side
        rx = ry * rng.uniform(0.4, 1.0)
        cy, cx = rng.uniform(0.2, 0.9) * h, rng.uniform(0.1, 0.9) * w
        d2 = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2
        shade = np.maximum(shade, np.exp(-0.5 * d2 ** rng.uniform(1.0, 3.0)))
    return (1.0 - shade)[..., None]


@dataclass(frozen=True)
class Darkening:
    """What one :func:`darken` drew: the exposure ``k`` (a number, or an ``(H, W, 1)`` map with ``spatial``)
    and the tone curve's exponent ``gamma``."""

    exposure: float | np.ndarray
    gamma: float

    def undo(self, low: np.ndarray) -> np.ndarray:
        """The exact inverse of the exposure and the tone curve, ``clip(low ** gamma / k, 0, 1) ** (1 / 2.2)``
        (not of the noise, the clipping or the quantization): what a model that knew the darkening would
        give back without denoising; a blind model must find the map and the curve itself."""
        linear = np.power(low.astype(np.float64), self.gamma) / self.exposure
        return np.power(np.clip(linear, 0.0, 1.0), 1.0 / LINEARIZE).astype(np.float32)


def darken(
    rgb: np.ndarray, rng: np.random.Generator, *, exposure: tuple[float, float] = LOL_EXPOSURE, spatial: bool = False,
    noise: bool = True, backlit: bool = False,
) -> np.ndarray:
    """Synthesize a low-light shot from a normal-light one: ``(H, W, 3)`` float32 [0, 1] -> same, darker.
    :func:`darken_traced` also returns what it drew."""
    return darken_traced(rgb, rng, exposure=exposure, spatial=spatial, noise=noise, backlit=backlit)[0]


def darken_traced(
    rgb: np.ndarray, rng: np.random.Generator, *, exposure: tuple[float, float] = LOL_EXPOSURE, spatial: bool = False,
    noise: bool = True, backlit: bool = False,
) -> tuple[np.ndarray, Darkening]:
    """:func:`darken`'s image and the :class:`Darkening` that made it.

    The model, applied in (approximately) linear light so that noise behaves like a sensor's:

    1. linearize: ``L = rgb ** 2.2``;
    2. exposure: ``E = L * k`` with ``k`` log-uniform in ``exposure`` (default [0.02, 0.2], 1/50 to 1/5
       of the light); with ``spatial``, ``k`` is a map that rises (log-linearly) from that value in the
       dark to one log-uniform in [0.5, 1] where :func:`lit_mask` is 1: a lamp or a sky stays lit; with
       ``backlit``, the same with :func:`shadow_mask`: the frame stays lit and only its subjects are dark;
    3. Poisson-Gaussian noise: ``N = Poisson(E * P) / P + Normal(0, s)`` with ``P`` (photons at full
       scale) log-uniform in [300, 3000] and read noise ``s`` uniform in [0.001, 0.01] (drawn, and
       skipped, when ``noise`` is False: a clean dark photo, as a camera's own denoising leaves one);
    4. back to display with a random tone curve: ``clip(N, 0, 1) ** (1 / g)``, ``g`` uniform in [1.8, 2.6];
    5. quantize to 8 bits, as a camera file would be.

    Every random number comes from ``rng``, so the same generator state gives the same image.
    """
    k = math.exp(rng.uniform(math.log(exposure[0]), math.log(exposure[1])))
    photons = math.exp(rng.uniform(math.log(300.0), math.log(3000.0)))
    read = rng.uniform(0.001, 0.01)
    g = rng.uniform(1.8, 2.6)
    if spatial or backlit:
        lit = math.exp(rng.uniform(math.log(LIT_EXPOSURE[0]), math.log(LIT_EXPOSURE[1])))
        m = (shadow_mask if backlit else lit_mask)(rgb.shape[0], rgb.shape[1], rng).astype(np.float64)
        k = np.exp(math.log(k) + m * (math.log(max(lit, k)) - math.log(k)))
    linear = np.power(rgb.astype(np.float64), LINEARIZE) * k
    noisy = rng.poisson(linear * photons) / photons + rng.normal(0.0, read, size=rgb.shape) if noise else linear
    out = np.power(np.clip(noisy, 0.0, 1.0), 1.0 / g)
    return (np.round(out * 255.0) / 255.0).astype(np.float32), Darkening(k, g)


def lowkey(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A low-key grade of a well-exposed image: ``rgb ** g``, ``g`` uniform in :data:`LOWKEY_GAMMA`, in 8 bits.

    Mid-tones and shadows go darker while white stays white and no noise is added: what a dark-toned
    photo that is correctly exposed looks like (a black shirt in a studio, a canal at dusk), where an
    under-exposed one has dim highlights and noise.
    """
    graded = np.power(rgb, rng.uniform(*LOWKEY_GAMMA))
    return (np.round(graded * 255.0) / 255.0).astype(np.float32)


def synthesize(high: np.ndarray, kind: str, rng: np.random.Generator,
               backlit_clean: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """``(input, target)`` of a synthetic pair of ``kind`` (``identity``, ``lowkey``, ``global``, ``clean``,
    ``spatial``, ``backlit``, ``lol``) made from ``high``: the target is ``high`` itself but for ``lowkey``,
    whose grade is both. A ``backlit`` pair is noisy but for a share ``backlit_clean`` of them (as a phone's
    HDR-processed backlit photo is), drawn here; ``clean`` is the other noise-free darkening."""
    if kind == "identity":
        return high, high
    if kind == "lowkey":
        graded = lowkey(high, rng)
        return graded, graded
    if kind in ("global", "clean"):
        return darken(high, rng, exposure=WIDE_EXPOSURE, noise=kind == "global"), high
    if kind == "backlit":
        noisy = not (backlit_clean > 0 and rng.random() < backlit_clean)
        return darken(high, rng, exposure=BACKLIT_EXPOSURE, backlit=True, noise=noisy), high
    return darken(high, rng, spatial=kind == "spatial"), high


@dataclass(frozen=True)
class Variants:
    """The shares of the mixture's kinds drawn as a variant of themselves (``lowlight train --lowkey``,
    ``--clean``, ``--backlit``, ``--backlit-clean``): ``lowkey`` of the identity pairs (:func:`lowkey`,
    from the photos), ``clean`` of the global ones (no sensor noise), ``backlit`` of the spatial ones (:func:`shadow_mask`),
    ``backlit_clean`` of the backlit ones (no sensor noise; drawn by :func:`synthesize`). A share of 0
    draws nothing extra, so a run without it keeps the batches it always had."""

    lowkey: float = 0.0
    clean: float = 0.0
    backlit: float = 0.0
    backlit_clean: float = 0.0


def pick_kind(mixture: dict[str, float] | None, rng: np.random.Generator) -> str:
    """A kind of pair drawn with the probabilities of ``mixture`` (see :meth:`TrainConfig.mixture`)."""
    if not mixture or mixture["lol"] >= 1.0:
        return "lol"  # no draw: LOL-only runs keep the batches they always had
    u, edge = rng.random(), 0.0
    for kind in ("identity", "global", "spatial"):
        edge += mixture[kind]
        if u < edge:
            return kind
    return "lol"
