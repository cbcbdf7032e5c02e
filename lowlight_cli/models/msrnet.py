"""MSR-net: multi-scale Retinex as a feed-forward CNN (Shen et al. 2017, arXiv 1711.02488).

The network is the composition ``f3(f2(f1(X)))`` of

* ``f1``, multi-scale logarithmic transform: ``M_j = log(1 + v_j X) / log(1 + v_j)`` for each scale
  ``v_j``, concatenated to ``3n`` channels, then conv -> ReLU -> conv down to 3 channels (``X_1``);
* ``f2``, difference of convolution: ``K`` conv + ReLU layers ``H_1..H_K`` applied in sequence to
  ``X_1`` (the learned counterpart of MSR's cascaded Gaussian surrounds), concatenated, a 1x1 conv
  to 3 channels, subtracted from ``X_1`` (``X_2 = X_1 - H_{K+1}``);
* ``f3``, colour restoration: a 1x1 conv to 3 channels.

Trained with the Frobenius (mean squared) error plus ``lambda * sum ||W||^2`` over the conv weights.

What comes from the paper and what is ours (the ``msrnet`` variant):

* from the paper: the three-stage structure above, the log-transform formula, the 1x1 kernels of
  ``W_{K+1}`` and of the colour restoration, ReLU placement, the MSE + L2-on-weights objective;
* from the paper as we read it (the search tool could only reach the paper's abstract and
  method section, not its experiment section, so these are our reading of the paper, unverified):
  ``n = 4`` scales with ``v = (1, 10, 100, 300)``, ``K = 10`` difference-of-convolution layers of
  32 filters of 3x3;
* our choices: 3x3 kernels for the two ``f1`` convolutions and a 3-channel hidden layer between
  them (the notes only say the first conv "shrinks 3n channels to 3"); zero padding so output and
  input have the same size; PyTorch's default initialisation; the training recipe (see ``RECIPE``:
  the paper's training schedule was sized for a GPU and synthetic data, ours for a shared CPU and LOL).

Receptive field: two 3x3 convs in ``f1`` and ``K`` in ``f2``, so a radius of ``K + 2`` pixels
(12 for the paper config); the spec's tile overlap is 4x that, which makes tiled output equal
the whole-image output (see :mod:`..tiling`).

The exposure gate (ours, ``exposure_gate=True``, the ``msrnet`` variant; not in the paper; see
:mod:`.gate`). A 25-pixel window cannot tell a shadow in a lit photo from a LOL frame, so the paper's
network lifts both: fine-tuned on the exposure mixture it reached 14.4 dB on identity pairs. The gate
reads the ``M_j`` and blends the Retinex output with the input.
"""

from __future__ import annotations

import torch
from torch import nn

from ..registry import EXPOSURE_MIX, ModelSpec, TrainRecipe, register
from .gate import ExposureGate, log_transform

__all__ = ["MSRNet", "MSELoss", "log_transform"]


class MSRNet(nn.Module):
    """MSR-net. ``(B, 3, H, W)`` low-light RGB in [0, 1] -> ``(B, 3, H, W)`` enhanced RGB.

    The output is not clamped (training regresses on the raw output); callers clamp to [0, 1].
    """

    def __init__(self, *, scales: tuple[float, ...], depth: int, width: int, exposure_gate: bool = False) -> None:
        super().__init__()
        if not scales or any(v <= 0 for v in scales):
            raise ValueError(f"scales must be positive, got {scales!r}")
        if depth < 1 or width < 1:
            raise ValueError(f"depth and width must be >= 1, got depth={depth}, width={width}")
        self.scales = tuple(float(v) for v in scales)
        n = len(self.scales)
        # f1: 3n log-transformed channels -> 3 (paper: conv, ReLU, conv, both with 3 outputs)
        self.log_reduce = nn.Conv2d(3 * n, 3, 3, padding=1)
        self.log_out = nn.Conv2d(3, 3, 3, padding=1)
        # f2: H_1..H_K, each conv + ReLU on the previous one, then a 1x1 conv over all of them
        self.doc = nn.ModuleList(
            [nn.Conv2d(3 if i == 0 else width, width, 3, padding=1) for i in range(depth)]
        )
        self.doc_fuse = nn.Conv2d(width * depth, 3, 1)
        # f3: colour restoration, a 1x1 conv
        self.color = nn.Conv2d(3, 3, 1)
        self.gate = ExposureGate(3 * n) if exposure_gate else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = log_transform(x, self.scales)
        x1 = self.log_out(torch.relu(self.log_reduce(m)))
        h, hs = x1, []
        for conv in self.doc:
            h = torch.relu(conv(h))
            hs.append(h)
        x2 = x1 - self.doc_fuse(torch.cat(hs, dim=1))
        y = self.color(x2)
        return y if self.gate is None else self.gate(m, x, y)


class MSELoss(nn.Module):
    """Mean squared error of ``net(low)`` against ``high``: the paper's Frobenius term, averaged.

    Called as ``loss(net, low, high) -> (scalar, {"mse": detached scalar})``. The paper's
    ``lambda * sum ||W||^2`` term is not here: the trainer applies it as Adam weight decay on
    conv weights only (see ``training/loop.py``), so every model's loss keeps the same call shape.
    """

    def forward(self, net: nn.Module, low: torch.Tensor, high: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        mse = torch.mean((net(low) - high) ** 2)
        return mse, {"mse": mse.detach()}


PAPER = "Shen et al., MSR-net: Low-light Image Enhancement Using Deep Convolutional Network, arXiv 1711.02488 (2017)"


def _overlap(depth: int) -> int:
    """Tile overlap: 4x the receptive-field radius (``depth + 2``), so tiled output equals whole-image output."""
    return 4 * (depth + 2)


# Our recipe, not the paper's (its schedule targeted a GPU and synthetic pairs). lr 1e-3 with two
# decays converges in the ~1-2k steps a shared CPU allows; weight_decay 1e-4 is Adam's L2 term,
# i.e. lambda = 5e-5 in the paper's loss (the gradient of lambda ||W||^2 is 2 lambda W).
RECIPE = TrainRecipe(
    loss=MSELoss, lr=1e-3, weight_decay=1e-4, patch=128, batch=8, steps=20_000, milestones=(0.6, 0.85), gamma=0.2,
    **EXPOSURE_MIX,
)

register(
    ModelSpec(
        name="msrnet",
        kind="learned",
        summary="MSR-net: learned multi-scale Retinex (log transforms, difference of convolution, colour "
        "restoration), with our exposure gate. Not tile-safe (the gate pools globally)",
        paper=PAPER,
        build=MSRNet,
        hparams={"scales": (1.0, 10.0, 100.0, 300.0), "depth": 10, "width": 32, "exposure_gate": True},
        tile_safe=False,
        overlap=_overlap(10),
        recipe=RECIPE,
    )
)

register(
    ModelSpec(
        name="msrnet_tiny",
        kind="learned",
        summary="MSR-net with 2 scales, 2 layers of 4 filters: for tests only",
        paper=PAPER,
        build=MSRNet,
        hparams={"scales": (1.0, 100.0), "depth": 2, "width": 4},
        overlap=_overlap(2),
        recipe=TrainRecipe(loss=MSELoss, lr=1e-3, weight_decay=1e-4, patch=16, batch=2, steps=20, milestones=(0.5,), gamma=0.1),
    )
)
