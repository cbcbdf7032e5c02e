"""Tiled inference with smooth overlap blending.

The whole image stays in CPU memory; only one tile at a time travels to the device. Each tile is
padded to the model's size multiple, run, cropped back, and accumulated with a weight window that is
zero within ``overlap // 4`` pixels of a tile's inner edges (where zero padding corrupts a
convolution's output), rises as a raised cosine over the next ``overlap // 2`` pixels and is one
inside. Two neighbours' windows sum to one across their overlap, so a model whose receptive-field
radius is at most ``overlap // 4`` gives the same result tiled as whole, and larger ones get a
smooth, seam-free transition. Image borders are not inner edges: there the window is one.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

Forward = Callable[[torch.Tensor], torch.Tensor]
Progress = Callable[[int, int], None]


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of size ``tile`` covering ``[0, length)`` with at least ``overlap`` shared."""
    if tile >= length:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


def edge_ramp(length: int, overlap: int, *, before: bool, after: bool) -> torch.Tensor:
    """1-D window of ``length``: tapered at the starts/ends flagged ``before``/``after``, else one."""
    w = torch.ones(length, dtype=torch.float32)
    margin, ramp = overlap // 4, overlap - 2 * (overlap // 4)
    d = torch.arange(length, dtype=torch.float32)
    taper = torch.clamp((d - margin + 0.5) / max(ramp, 1), 0.0, 1.0)
    taper = 0.5 - 0.5 * torch.cos(math.pi * taper)
    if before:
        w = w * taper
    if after:
        w = w * taper.flip(0)
    return w


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, int, int]:
    """Reflect-pad ``(B, C, H, W)`` at the bottom/right so H and W are multiples; returns (x, pad_h, pad_w)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, ph, pw


def run_padded(forward: Forward, x: torch.Tensor, *, multiple: int, scale: int) -> torch.Tensor:
    """Pad ``x`` to the size multiple, run ``forward``, crop the output back to ``scale`` x the input size."""
    h, w = x.shape[-2:]
    xp, _, _ = pad_to_multiple(x, multiple)
    return forward(xp)[..., : h * scale, : w * scale]


def tiled_forward(
    forward: Forward,
    image: torch.Tensor,
    *,
    tile: int,
    overlap: int,
    scale: int = 1,
    multiple: int = 1,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    progress: Progress | None = None,
) -> torch.Tensor:
    """Run ``forward`` over ``image`` tile by tile and blend.

    Args:
        forward: maps a device tensor ``(1, C, h, w)`` (h, w multiples of ``multiple``) to
            ``(1, C', h*scale, w*scale)``.
        image: CPU float tensor ``(1, C, H, W)``, values in [0, 1].
        tile: tile side in input pixels (a tile larger than the image means one pass).
        overlap: pixels shared by neighbouring tiles; must be smaller than ``tile``.
        scale: output scale of the model (NEID: 2).
    Returns:
        CPU float32 tensor ``(1, C', H*scale, W*scale)``.

    >>> out = tiled_forward(lambda t: t * 2, torch.rand(1, 3, 100, 70), tile=64, overlap=16)
    """
    if image.dim() != 4 or image.shape[0] != 1:
        raise ValueError(f"image must be (1, C, H, W), got {tuple(image.shape)}")
    if tile <= 0 or not 0 <= overlap < tile:
        raise ValueError(f"need tile > 0 and 0 <= overlap < tile, got tile={tile} overlap={overlap}")
    _, _, H, W = image.shape
    ys, xs = tile_starts(H, tile, overlap), tile_starts(W, tile, overlap)
    out = wsum = None
    total, done = len(ys) * len(xs), 0
    for y in ys:
        for x in xs:
            th, tw = min(tile, H), min(tile, W)
            crop = image[..., y : y + th, x : x + tw].to(device=device, dtype=dtype)
            pred = run_padded(forward, crop, multiple=multiple, scale=scale).float().cpu()
            if out is None:
                out = torch.zeros(1, pred.shape[1], H * scale, W * scale)
                wsum = torch.zeros(1, 1, H * scale, W * scale)
            wy = edge_ramp(th * scale, overlap * scale, before=y > 0, after=y + th < H)
            wx = edge_ramp(tw * scale, overlap * scale, before=x > 0, after=x + tw < W)
            win = wy[:, None] * wx[None, :]
            sy, sx = y * scale, x * scale
            out[..., sy : sy + th * scale, sx : sx + tw * scale] += pred * win
            wsum[..., sy : sy + th * scale, sx : sx + tw * scale] += win
            done += 1
            if progress is not None:
                progress(done, total)
    return out.div_(wsum)
