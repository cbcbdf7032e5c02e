"""Validation and checkpoint selection: which checkpoint is kept, and why.

Every validation pass scores the net (its weight average when there is one) on fixed held-out sets:
``lol``, the held-out scene groups (real LOL pairs, or darkened ``--synthetic`` photos), and for
mixture runs ``identity`` and ``mixed``, which see the over-brightening failure LOL alone never shows.
``best.pt`` keeps the pass with the highest :func:`selection_score`; the eval15 split is never used.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .. import registry
from ..inference import downscale as _downscale
from ..metrics import psnr
from ..tiling import run_padded
from .config import TrainConfig
from .data import Images, Split, to_float
from .pairs import Darkening, darken, darken_traced

# Identity PSNR above this adds nothing to the checkpoint choice (see ``selection_score``).
IDENTITY_CAP_DB = 32.0
# Held-out images per extra validation set (identity, mixed), each at half the LOL size.
EXTRA_VAL_IMAGES = 12

Pairs = list[tuple[np.ndarray, np.ndarray]]


def validation_sets(split: Split, config: TrainConfig) -> dict[str, Pairs]:
    """Every set a validation pass of this run scores: ``lol``, and for mixture runs the extra sets.

    With ``--photos`` the extra sets are made half from LOL targets and half from held-out photos, so
    both kinds of well-exposed image are judged.
    """
    sets = {"lol": validation_pairs(split.val, seed=config.split_seed, crop=config.val_crop)}
    if config.mixture()["lol"] < 1.0:
        highs = split.val.high
        if split.val_photos is not None:
            half = EXTRA_VAL_IMAGES // 2
            highs = highs[:: max(1, len(highs) // half)][:half] + split.val_photos.high[:half]
        sets |= extra_validation_sets(highs, seed=config.split_seed)
    return sets


def validation_pairs(images: Images, *, seed: int, crop: int) -> Pairs:
    """Fixed ``(low, high)`` float32 pairs for validation; synthetic lows are darkened once, per-image seeded."""
    pairs = []
    for j, high in enumerate(images.high):
        high = to_float(high)
        low = darken(high, np.random.default_rng([seed, 1, j])) if images.low is None else to_float(images.low[j])
        if crop:
            h, w = high.shape[:2]
            c = min(crop, h, w)
            y, x = (h - c) // 2, (w - c) // 2
            low, high = low[y : y + c, x : x + c], high[y : y + c, x : x + c]
        pairs.append((low, high))
    return pairs


def extra_validation_sets(highs: list[np.ndarray], *, seed: int) -> dict[str, Pairs]:
    """The held-out sets that see the over-brightening failure, made from held-out normal-light images.

    ``identity``: each image against itself (a well-exposed photo must come back as it was);
    ``mixed``: a spatially varying darkening (:func:`pairs.darken` with ``spatial``) against the original.
    Up to :data:`EXTRA_VAL_IMAGES` images, evenly spaced, each at half size (even sides) to keep a
    validation pass short. Seeded per image, so every pass sees the same pairs.
    """
    step = max(1, len(highs) // EXTRA_VAL_IMAGES)
    picked = [to_float(h) for h in highs[::step][:EXTRA_VAL_IMAGES]]
    half = [_downscale(h[: h.shape[0] // 4 * 4, : h.shape[1] // 4 * 4], 2) for h in picked]
    return {
        "identity": [(h, h) for h in half],
        "mixed": [(mixed_pair(h, seed=seed, index=j)[0], h) for j, h in enumerate(half)],
    }


def mixed_pair(high: np.ndarray, *, seed: int, index: int) -> tuple[np.ndarray, Darkening]:
    """The ``mixed`` set's input for its ``index``-th image, and the :class:`pairs.Darkening` that made it."""
    return darken_traced(high, np.random.default_rng([seed, 2, index]), spatial=True)


def selection_score(scores: dict[str, float]) -> float:
    """The number the best checkpoint maximises: the mean of LOL validation PSNR, mixed-exposure PSNR
    and identity PSNR capped at :data:`IDENTITY_CAP_DB` (past it, keeping a lit photo lit is good enough
    and must not be bought with LOL quality). LOL-only runs (no extra sets) use LOL PSNR alone."""
    parts = [scores["lol"]] + [min(scores["identity"], IDENTITY_CAP_DB) if k == "identity" else scores[k]
                               for k in ("identity", "mixed") if k in scores]
    return float(np.mean(parts))


@torch.no_grad()
def validate(net: nn.Module, pairs: Pairs, *, spec: registry.ModelSpec, downscale: int, device: torch.device) -> float:
    """Mean plain PSNR (dB, output clamped to [0, 1], peak 1) of ``net`` over whole validation images.

    Inputs are downsampled by ``downscale`` first, as in training. Restores the net's train/eval mode.
    """
    was_training = net.training
    net.eval()
    try:
        scores = []
        for low, high in pairs:
            if downscale > 1:
                low = _downscale(low, downscale)
            x = torch.from_numpy(np.ascontiguousarray(low.transpose(2, 0, 1)))[None].to(device)
            y = run_padded(net, x, multiple=spec.size_multiple, scale=spec.scale)
            out = y[0].float().clamp(0.0, 1.0).permute(1, 2, 0).cpu().numpy()
            scores.append(psnr(out, high[: out.shape[0], : out.shape[1]]))
        return float(np.mean(scores))
    finally:
        net.train(was_training)
