"""The exposure gate (ours, not in any of the papers): how much of a network's change to keep, per pixel.

A network trained to brighten LOL frames brightens whatever it is shown. The gate blends its output
with its input, ``Y = X + g * (net(X) - X)``, where ``g`` in (0, 1) is the sigmoid of a per-image term
(a two-layer MLP on the whole picture's mean of the features, pooled through
:class:`..context.GlobalMean` so tiles get the whole picture's value) plus a per-pixel term (a 1x1 conv
of the features). The features are the multi-scale log transform of the input (:func:`log_transform`),
which spreads dark values apart: a lit photo can be left alone (``g -> 0``) and a lamp in a dark scene
kept as it is while its surround is lifted. The gate starts near 1 (logit 4, per-pixel weights 0), so
fine-tuning a gateless file starts where that file was. The logit is the gate's convolutions times
:data:`GAIN`: Adam moves a parameter by about the learning rate per step whatever its gradient, so at a
fine-tune's 2e-4 an unscaled gate would need some 40 000 steps to go from open (logit 4) to closed (-4);
the gain gives the gate ten times the network's learning rate instead.

MSR-net computes the log transform anyway and hands its own to the gate; MIRNet gives it
:data:`SCALES`, MSR-net's four.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..context import GlobalMean

SCALES = (1.0, 10.0, 100.0, 300.0)
HIDDEN = 16
START = 4.0  # initial logit: sigmoid(4) = 0.98, the network's output almost as it was
GAIN = 10.0  # logit = GAIN * (per-pixel + per-image term): the gate's own learning-rate factor


def log_transform(x: torch.Tensor, scales: tuple[float, ...]) -> torch.Tensor:
    """Multi-scale logarithmic transform ``log(1 + v x) / log(1 + v)`` for each ``v`` in ``scales``.

    ``(B, C, H, W)`` in [0, 1] -> ``(B, C * len(scales), H, W)`` in [0, 1], scales stacked in order.
    Each curve maps 0 to 0 and 1 to 1; a larger ``v`` lifts dark values more.

    >>> log_transform(torch.full((1, 3, 2, 2), 0.5), (1.0, 100.0)).shape
    torch.Size([1, 6, 2, 2])
    """
    # Negative inputs (padding artefacts, noise) would make log1p undefined below -1/v.
    x = x.clamp(min=0.0)
    return torch.cat([torch.log1p(v * x) / math.log1p(v) for v in scales], dim=1)


class ExposureGate(nn.Module):
    """``gate(m, x, y) = x + g(m) * (y - x)`` for features ``m`` ``(B, features, H, W)``, input ``x`` and
    network output ``y`` ``(B, 3, H, W)``; see the module docstring.

    >>> gate = ExposureGate(6)
    >>> x, y = torch.zeros(1, 3, 4, 4), torch.ones(1, 3, 4, 4)
    >>> round(gate(log_transform(x, (1.0, 100.0)), x, y).mean().item(), 3)
    0.982
    """

    def __init__(self, features: int) -> None:
        super().__init__()
        self.pool = GlobalMean()
        self.image = nn.Sequential(nn.Conv2d(features, HIDDEN, 1), nn.ReLU(), nn.Conv2d(HIDDEN, 1, 1))
        self.pixel = nn.Conv2d(features, 1, 1)
        nn.init.zeros_(self.pixel.weight)
        nn.init.constant_(self.pixel.bias, START / GAIN)
        # The per-image term starts at 0 too, so g starts at sigmoid(START) everywhere.
        nn.init.zeros_(self.image[-1].weight)
        nn.init.zeros_(self.image[-1].bias)

    def forward(self, m: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        g = torch.sigmoid(GAIN * (self.pixel(m) + self.image(self.pool(m))))
        return x + g * (y - x)
