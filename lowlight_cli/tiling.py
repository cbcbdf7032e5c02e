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


def tile_spans(length: int, tile: int, overlap: int, multiple: int = 1) -> list[tuple[int, int]]:
    """``(start, end)`` of tiles covering ``[0, length)``, neighbours sharing at least ``overlap``.

    Starts are multiples of ``multiple``, so a network that pools by that factor sees every tile on
    the same grid as the whole image; the last tile therefore runs to the end and may be up to
    ``multiple - 1`` pixels longer than ``tile``.
    """
    if tile >= length:
        return [(0, length)]
    stride = max(multiple, (tile - overlap) // multiple * multiple)
    starts = list(range(0, length - tile, stride))
    last = (length - tile) // multiple * multiple
    if last > starts[-1]:
        starts.append(last)
    return [(s, s + tile) for s in starts[:-1]] + [(starts[-1], length)]


def owned_cells(spans: list[tuple[int, int]], multiple: int = 1) -> list[tuple[float, float]]:
    """The part of each span that it alone owns, as fractions of the span padded to ``multiple``.

    Neighbours split their overlap in the middle, on the ``multiple`` grid, and the last span owns its
    padding: the cells partition the padded length, and each boundary falls on a whole pixel of a
    feature map pooled by any factor dividing ``multiple`` (used to add up global statistics tile by
    tile, :mod:`lowlight_cli.context`).
    """
    bounds = [0] + [(s + e_prev) // 2 // multiple * multiple for (_, e_prev), (s, _) in zip(spans, spans[1:])]
    last_start, last_end = spans[-1]
    bounds.append(last_start + -(-(last_end - last_start) // multiple) * multiple)
    cells = []
    for (start, end), lo, hi in zip(spans, bounds, bounds[1:]):
        padded = -(-(end - start) // multiple) * multiple
        cells.append(((lo - start) / padded, (hi - start) / padded))
    return cells


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
    place: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Run ``forward`` over ``image`` tile by tile and blend.

    Args:
        forward: maps a device tensor ``(1, C, h, w)`` (h, w multiples of ``multiple``) to
            ``(1, C', h*scale, w*scale)``.
        image: CPU float tensor ``(1, C, H, W)``, values in [0, 1].
        tile: tile side in input pixels (a tile larger than the image means one pass).
        overlap: pixels shared by neighbouring tiles; must be smaller than ``tile``.
        scale: output scale of the model (NEID: 2).
        place: called with each tile's ``(top, left)`` in ``image`` before ``forward`` runs it (a model
            that places its crop in the picture, :class:`lowlight_cli.context.Glance`).
    Returns:
        CPU float32 tensor ``(1, C', H*scale, W*scale)``.

    >>> out = tiled_forward(lambda t: t * 2, torch.rand(1, 3, 100, 70), tile=64, overlap=16)
    """
    if image.dim() != 4 or image.shape[0] != 1:
        raise ValueError(f"image must be (1, C, H, W), got {tuple(image.shape)}")
    if tile <= 0 or not 0 <= overlap < tile:
        raise ValueError(f"need tile > 0 and 0 <= overlap < tile, got tile={tile} overlap={overlap}")
    _, _, H, W = image.shape
    rows, cols = tile_spans(H, tile, overlap, multiple), tile_spans(W, tile, overlap, multiple)
    out = wsum = None
    total, done = len(rows) * len(cols), 0
    for y0, y1 in rows:
        for x0, x1 in cols:
            crop = image[..., y0:y1, x0:x1].to(device=device, dtype=dtype).contiguous()
            if place is not None:
                place(y0, x0)
            pred = run_padded(forward, crop, multiple=multiple, scale=scale).float().cpu()
            if out is None:
                out = torch.zeros(1, pred.shape[1], H * scale, W * scale)
                wsum = torch.zeros(1, 1, H * scale, W * scale)
            wy = edge_ramp((y1 - y0) * scale, overlap * scale, before=y0 > 0, after=y1 < H)
            wx = edge_ramp((x1 - x0) * scale, overlap * scale, before=x0 > 0, after=x1 < W)
            win = wy[:, None] * wx[None, :]
            out[..., y0 * scale : y1 * scale, x0 * scale : x1 * scale] += pred * win
            wsum[..., y0 * scale : y1 * scale, x0 * scale : x1 * scale] += win
            done += 1
            if progress is not None:
                progress(done, total)
    return out.div_(wsum)
