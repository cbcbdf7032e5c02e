"""MIRNet: multi-scale residual learning (Zamir et al., ECCV 2020, arXiv 2003.06792).

The network keeps a full-resolution feature stream through its whole depth and lets lower-resolution
streams bring it context:

* a 3x3 conv lifts the image to ``channels`` features; ``groups`` recursive residual groups (RRG)
  follow, each ``blocks`` multi-scale residual blocks (MRB) then a 3x3 conv, with a skip over the
  group; a 3x3 conv maps back to 3 channels and the input is added (global residual);
* an MRB runs ``streams`` parallel streams at full, 1/2, 1/4... resolution with
  ``channels * growth**j`` features in stream ``j``. Each stream applies ``daus`` dual attention
  units (DAU) in sequence; between two consecutive DAUs every stream receives every other stream,
  resized to its own scale, through selective kernel feature fusion (SKFF). At the end all streams
  are brought to full resolution, fused by one more SKFF, passed through a 3x3 conv and added to
  the block's input;
* a DAU is ``x + conv1x1([SA(r), CA(r)])`` with ``r = conv3x3(PReLU(conv3x3(x)))``: channel
  attention (global average pooling, 1x1 down by ``reduction``, ReLU, 1x1 up, sigmoid) and spatial
  attention (channel-wise max and mean, a 5x5 conv, sigmoid);
* SKFF fuses by summing its inputs, global average pooling, a channel-downscaling 1x1 conv and
  PReLU, and selects with one 1x1 conv per stream to a descriptor, a softmax across streams and
  the sum of the inputs weighted by it;
* residual resizing modules change scale one octave at a time: downsampling is
  ``[1x1, PReLU, 3x3, PReLU, antialiased /2, 1x1] + [antialiased /2, 1x1]`` (the antialiasing
  filter is the binomial ``[1, 2, 1]`` of Zhang 2019 with reflect padding), upsampling is
  ``[1x1, PReLU, transposed 3x3 x2, PReLU, 1x1] + [bilinear x2, 1x1]``; the 1x1 convs change the
  channel count between streams.

What comes from the paper and what is ours:

* from the paper and its published code: everything above, bias-free convolutions, the published
  configuration (``mirnet_paper``: 64 channels, growth 2, 3 RRGs of 2 MRBs, 3 streams, 2 DAUs per
  stream, reduction 8), the Charbonnier loss with ``eps = 1e-3``, Adam at 2e-4, 128 px patches;
* from the published code, where the paper is silent: the 5x5 spatial-attention kernel; the
  resizing path that creates stream ``j`` from stream ``j - 1`` is the same module as the one that
  exchanges between them, while the final collection to full resolution has its own modules; the
  floor of 4 on the SKFF bottleneck width; ``share_dau_weights``: that code builds each stream's
  DAUs as one module applied ``daus`` times, and the paper's 31.8 M parameters count it so
  (independent DAUs would make the published configuration 42.3 M);
* ours: no batch normalization after the spatial-attention conv (the code has one, the paper
  does not mention it; a bias takes its place), one PReLU per place it is used (the code's single
  default-argument PReLU is shared by every DAU), the final fusion has its own SKFF (the code reuses
  the full-resolution exchange SKFF), the same floor of 4 on the channel-attention bottleneck (it
  only matters for narrow variants); the ``mirnet`` and ``mirnet_tiny`` variants and the training
  recipe (see ``_recipe``: the paper's cosine decay becomes step decays, our trainer's schedule).

Cost: ``mirnet_paper`` has 31.80 M parameters and 7.32 M multiply-accumulates per pixel, 479 GMACs at
256x256 (``evaluate.macs_per_pixel``). The paper's "785 GFLOPs" is reproduced (784 G) only by counting
each stride-2 transposed conv per output pixel, four times its real work, as thop releases of the time
did: the figure is MACs under that convention, not 2 x MACs.

Global pooling in the channel attention and in SKFF makes the output depend on the whole input,
so MIRNet is not tile-safe: it pools through ``context.GlobalMean`` and the tiler hands every tile the
whole image's values.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..context import GlobalMean
from ..registry import EXPOSURE_MIX, ModelSpec, TrainRecipe, register
from .gate import SCALES as GATE_SCALES
from .gate import ExposureGate, log_transform

SPATIAL_KERNEL = 5  # the spatial attention's conv, as in the published code
MIN_BOTTLENECK = 4  # attention bottlenecks never narrower than this (published code, SKFF)


def _conv(c_in: int, c_out: int, kernel: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=False)


def antialiased_downsample(x: torch.Tensor) -> torch.Tensor:
    """Halve ``(B, C, H, W)`` with the binomial filter ``[1, 2, 1]^T [1, 2, 1] / 16``, stride 2.

    Reflect padding keeps borders from darkening; the output is ``(B, C, ceil(H/2), ceil(W/2))``.
    Needs ``H, W >= 2``.

    >>> antialiased_downsample(torch.ones(1, 2, 6, 5)).shape
    torch.Size([1, 2, 3, 3])
    """
    taps = torch.tensor([1.0, 2.0, 1.0], dtype=x.dtype, device=x.device)
    kernel = (taps[:, None] * taps[None, :] / 16.0).expand(x.shape[1], 1, 3, 3)
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), kernel, stride=2, groups=x.shape[1])


class ChannelAttention(nn.Module):
    """Squeeze-excitation: ``x * sigmoid(W2 ReLU(W1 GAP(x)))``. ``(B, C, H, W)`` -> same."""

    def __init__(self, *, channels: int, reduction: int) -> None:
        super().__init__()
        hidden = max(channels // reduction, MIN_BOTTLENECK)
        self.down = nn.Conv2d(channels, hidden, 1, bias=False)
        self.up = nn.Conv2d(hidden, channels, 1, bias=False)
        self.pool = GlobalMean()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.up(torch.relu(self.down(self.pool(x))))
        return x * torch.sigmoid(w)


class SpatialAttention(nn.Module):
    """``x * sigmoid(conv([max_c x, mean_c x]))``: one weight per pixel. ``(B, C, H, W)`` -> same."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, SPATIAL_KERNEL, padding=SPATIAL_KERNEL // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.conv(pooled))


class DualAttentionUnit(nn.Module):
    """DAU: ``x + conv1x1([SA(r), CA(r)])`` with ``r = conv3x3(PReLU(conv3x3(x)))``. ``(B, C, H, W)`` -> same."""

    def __init__(self, *, channels: int, reduction: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv(channels, channels, 3), nn.PReLU(), _conv(channels, channels, 3))
        self.spatial = SpatialAttention()
        self.channel = ChannelAttention(channels=channels, reduction=reduction)
        self.fuse = _conv(2 * channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.body(x)
        return x + self.fuse(torch.cat([self.spatial(r), self.channel(r)], dim=1))


class SelectiveKernelFusion(nn.Module):
    """SKFF over ``inputs`` same-shaped ``(B, C, H, W)`` tensors -> one ``(B, C, H, W)`` tensor.

    Fuse: sum, global average pooling, a 1x1 conv down to ``max(C // reduction, 4)`` channels, PReLU.
    Select: one 1x1 conv per input back to ``C`` channels, softmax across the inputs (per channel),
    weighted sum of the inputs.
    """

    def __init__(self, *, channels: int, inputs: int, reduction: int) -> None:
        super().__init__()
        hidden = max(channels // reduction, MIN_BOTTLENECK)
        self.squeeze = nn.Sequential(nn.Conv2d(channels, hidden, 1, bias=False), nn.PReLU())
        self.select = nn.ModuleList([nn.Conv2d(hidden, channels, 1, bias=False) for _ in range(inputs)])
        self.pool = GlobalMean()

    def weights(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """Selection weights ``(B, S, C, 1, 1)`` for ``S`` inputs: non-negative, summing to one over ``S``."""
        z = self.squeeze(self.pool(sum(feats)))
        return torch.softmax(torch.stack([fc(z) for fc in self.select], dim=1), dim=1)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        return (torch.stack(feats, dim=1) * self.weights(feats)).sum(dim=1)


class ResidualDownsample(nn.Module):
    """Halve the resolution: ``(B, c_in, H, W)`` -> ``(B, c_out, H/2, W/2)`` (H, W even)."""

    def __init__(self, *, c_in: int, c_out: int) -> None:
        super().__init__()
        self.top = nn.Sequential(_conv(c_in, c_in, 1), nn.PReLU(), _conv(c_in, c_in, 3), nn.PReLU())
        self.top_out = _conv(c_in, c_out, 1)
        self.skip_out = _conv(c_in, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top = self.top_out(antialiased_downsample(self.top(x)))
        return top + self.skip_out(antialiased_downsample(x))


class ResidualUpsample(nn.Module):
    """Double the resolution: ``(B, c_in, H, W)`` -> ``(B, c_out, 2H, 2W)``."""

    def __init__(self, *, c_in: int, c_out: int) -> None:
        super().__init__()
        self.top = nn.Sequential(
            _conv(c_in, c_in, 1),
            nn.PReLU(),
            nn.ConvTranspose2d(c_in, c_in, 3, stride=2, padding=1, output_padding=1, bias=False),
            nn.PReLU(),
            _conv(c_in, c_out, 1),
        )
        self.skip_out = _conv(c_in, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        return self.top(x) + self.skip_out(skip)


def resize_path(widths: tuple[int, ...], src: int, dst: int) -> nn.Sequential:
    """Residual resizing modules from stream ``src`` to stream ``dst``, one octave at a time.

    Stream ``j`` has ``widths[j]`` channels at ``1 / 2**j`` resolution; each step moves to the
    neighbouring stream's width, so ``0 -> 2`` is ``64 -> 128 -> 256`` channels in the paper config.
    """
    step = 1 if dst > src else -1
    resize = ResidualDownsample if step > 0 else ResidualUpsample
    return nn.Sequential(*[resize(c_in=widths[j], c_out=widths[j + step]) for j in range(src, dst, step)])


class MultiScaleResidualBlock(nn.Module):
    """MRB: parallel streams with DAUs, SKFF exchange between them, fused back to full resolution.

    ``(B, widths[0], H, W)`` -> same; ``H`` and ``W`` must be multiples of ``2 ** (len(widths) - 1)``.
    """

    def __init__(self, *, widths: tuple[int, ...], daus: int, reduction: int, share_dau_weights: bool) -> None:
        super().__init__()
        n = len(widths)
        self.daus = daus
        per_stream = 1 if share_dau_weights else daus
        self.units = nn.ModuleList([
            nn.ModuleList([DualAttentionUnit(channels=c, reduction=reduction) for _ in range(per_stream)])
            for c in widths
        ])
        # Keys "src_dst" for every ordered pair of streams; "j-1_j" also creates stream j from j-1.
        self.resize = nn.ModuleDict({
            f"{src}_{dst}": resize_path(widths, src, dst) for src in range(n) for dst in range(n) if src != dst
        })
        self.exchange = nn.ModuleList([
            nn.ModuleList([SelectiveKernelFusion(channels=c, inputs=n, reduction=reduction) for c in widths])
            for _ in range(daus - 1)
        ])
        self.collect = nn.ModuleList([resize_path(widths, src, 0) for src in range(1, n)])
        self.fuse = SelectiveKernelFusion(channels=widths[0], inputs=n, reduction=reduction)
        self.out = _conv(widths[0], widths[0], 3)

    def _unit(self, stream: int, column: int) -> nn.Module:
        units = self.units[stream]
        return units[column % len(units)]  # one shared unit, or one per column

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        streams = [self._unit(0, 0)(x)]
        for j in range(1, len(self.units)):
            streams.append(self._unit(j, 0)(self.resize[f"{j - 1}_{j}"](streams[-1])))
        for column in range(1, self.daus):
            mixed = [
                fusion([s if k == j else self.resize[f"{k}_{j}"](s) for k, s in enumerate(streams)])
                for j, fusion in enumerate(self.exchange[column - 1])
            ]
            streams = [self._unit(j, column)(m) for j, m in enumerate(mixed)]
        full = [streams[0]] + [up(s) for up, s in zip(self.collect, streams[1:])]
        return x + self.out(self.fuse(full))


class RecursiveResidualGroup(nn.Module):
    """RRG: ``x + conv3x3(MRB_n(...MRB_1(x)))`` over the given ``blocks``. ``(B, channels, H, W)`` -> same."""

    def __init__(self, *, blocks: list[nn.Module], channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(*blocks, _conv(channels, channels, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def stream_widths(channels: int, growth: float, streams: int) -> tuple[int, ...]:
    """Channels of each stream: ``round(channels * growth ** j)``; ``(64, 128, 256)`` for the paper."""
    return tuple(int(round(channels * growth**j)) for j in range(streams))


class MIRNet(nn.Module):
    """MIRNet. ``(B, 3, H, W)`` low-light RGB in [0, 1] -> ``(B, 3, H, W)`` enhanced RGB.

    ``H`` and ``W`` must be multiples of ``2 ** (streams - 1)`` (the inference contract pads to it).
    The output is ``input + residual`` and not clamped; callers clamp to [0, 1].

    Args:
        channels: features of the full-resolution stream (paper: 64).
        growth: channel factor per halving of resolution (paper: 2).
        groups: recursive residual groups (paper: 3).
        blocks: multi-scale residual blocks per group (paper: 2).
        streams: parallel resolutions per block, full down to ``1 / 2**(streams-1)`` (paper: 3).
        daus: dual attention units per stream per block (paper: 2).
        reduction: channel reduction of the attention bottlenecks (paper: 8).
        share_dau_weights: one DAU per stream applied ``daus`` times, as the published code does.
        exposure_gate: blend the output with the input by how dark each part is (ours, :mod:`.gate`).

    >>> net = MIRNet(channels=8, growth=2.0, groups=1, blocks=1, streams=3, daus=2, reduction=4,
    ...              share_dau_weights=False)
    >>> net(torch.rand(1, 3, 16, 20)).shape
    torch.Size([1, 3, 16, 20])
    """

    def __init__(
        self,
        *,
        channels: int,
        growth: float,
        groups: int,
        blocks: int,
        streams: int,
        daus: int,
        reduction: int,
        share_dau_weights: bool,
        exposure_gate: bool = False,
    ) -> None:
        super().__init__()
        if min(channels, groups, blocks, streams, daus, reduction) < 1 or growth <= 0:
            raise ValueError(
                "channels, groups, blocks, streams, daus and reduction must be >= 1 and growth > 0, got "
                f"channels={channels} growth={growth} groups={groups} blocks={blocks} streams={streams} "
                f"daus={daus} reduction={reduction}"
            )
        widths = stream_widths(channels, growth, streams)

        def block() -> MultiScaleResidualBlock:
            return MultiScaleResidualBlock(
                widths=widths, daus=daus, reduction=reduction, share_dau_weights=share_dau_weights
            )

        self.conv_in = _conv(3, channels, 3)
        self.body = nn.Sequential(*[
            RecursiveResidualGroup(blocks=[block() for _ in range(blocks)], channels=channels) for _ in range(groups)
        ])
        self.conv_out = _conv(channels, 3, 3)
        self.gate = ExposureGate(3 * len(GATE_SCALES)) if exposure_gate else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x + self.conv_out(self.body(self.conv_in(x)))
        return y if self.gate is None else self.gate(log_transform(x, GATE_SCALES), x, y)


def charbonnier(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Mean of ``sqrt((pred - target)^2 + eps^2)``: a smooth L1. Same-shaped tensors -> scalar.

    >>> float(charbonnier(torch.zeros(4), torch.full((4,), 0.3), eps=0.4))
    0.5
    """
    return torch.sqrt((pred - target) ** 2 + eps * eps).mean()


class CharbonnierLoss(nn.Module):
    """The paper's objective, ``eps = 1e-3``. Called as ``loss(net, low, high) -> (scalar, {"charbonnier": ...})``."""

    def __init__(self, eps: float = 1e-3) -> None:
        super().__init__()
        self.eps = eps

    def forward(
        self, net: nn.Module, low: torch.Tensor, high: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss = charbonnier(net(low), high, self.eps)
        return loss, {"charbonnier": loss.detach()}


PAPER = (
    "Zamir et al., Learning Enriched Features for Real Image Restoration and Enhancement, ECCV 2020 (arXiv 2003.06792)"
)
_STREAMS = 3
_MULTIPLE = 2 ** (_STREAMS - 1)

# Overlap: tiles run with the whole image's global context (lowlight_cli.context), so only the
# convolutions' reach is left to cover. With the exact context, 512-px tiles of a 2304x1728 photo
# (mirnet.mix) reproduce one whole pass to 110 dB at this overlap (bench/bench_tiling.py).
_OVERLAP = 64

_PAPER_HPARAMS = {
    "channels": 64, "growth": 2.0, "groups": 3, "blocks": 2, "streams": _STREAMS, "daus": 2, "reduction": 8,
    "share_dau_weights": True,
}


def _recipe(
    *, batch: int, steps: int, lr: float = 2e-4, mix: dict[str, float] | None = None, ema: float = 0.0
) -> TrainRecipe:
    # The paper anneals 2e-4 with a cosine to 1e-6; our lr_at has step decays, so three x0.3 steps
    # at 50/75/90% follow that curve (1, 0.3, 0.09, 0.027 of the peak).
    return TrainRecipe(
        loss=CharbonnierLoss, lr=lr, patch=128, batch=batch, steps=steps, milestones=(0.5, 0.75, 0.9), gamma=0.3,
        ema=ema, **(mix or {}),
    )


register(
    ModelSpec(
        name="mirnet_paper",
        kind="learned",
        summary="MIRNet as published: 64 channels, 3 RRGs of 2 MRBs, 3 streams, 31.8 M params (a GPU model)",
        paper=PAPER,
        build=MIRNet,
        hparams=_PAPER_HPARAMS,
        size_multiple=_MULTIPLE,
        tile_safe=False,
        overlap=_OVERLAP,
        # Batch 16 of 128 px as in the paper; 7e5 iterations is our reading of it (unverified).
        recipe=_recipe(batch=16, steps=700_000),
    )
)

# Sized by timing one Adam step at batch 8 of 128 px on this project's 2-core CPU, interleaved with
# msrnet's step so both share the load of a concurrent run, then scaled by msrnet's uncontended 0.68 s:
# 12 channels, 1 RRG of 1 MRB is 1.44x msrnet, about 1.0 s/step, so 6000 steps take about 100 min.
# Depth costs more than width here (the attention, resizing and fusion ops are memory-bound: 8 channels
# x 2 MRBs cost as much as 16 x 1), so the variant keeps every part of one MRB and narrows it; 8
# channels (0.87x msrnet, ~0.6 s/step) is the fallback if the log shows fewer than ~8 img/s. Give the
# run the CPU to itself or one thread: with cores shared, each of those small ops' OpenMP threads wait
# on each other (a 2-thread step beside another 2-thread run took 15-24 s instead of ~1.3 s).
register(
    ModelSpec(
        name="mirnet",
        kind="learned",
        summary="MIRNet scaled to a CPU: 12 channels, 1 RRG of 1 MRB, 3 streams, 2 DAUs per stream, our exposure gate",
        paper=PAPER,
        build=MIRNet,
        hparams={**_PAPER_HPARAMS, "channels": 12, "groups": 1, "blocks": 1, "exposure_gate": True},
        size_multiple=_MULTIPLE,
        tile_safe=False,
        overlap=_OVERLAP,
        # lr: the paper's 2e-4 is for a 31.8 M-parameter net and 700k steps. This 0.19 M one learns
        # much faster at 1e-3: held-out val (42 whole our485 images) 19.42 dB at step 500 against
        # 18.79 at 2e-4, and 19.84 at step 1000, beyond what 2e-4 reached in 4000 steps (19.81).
        # 7000 steps: the first run behind the bundled mirnet.lol (val 21.10 dB at its best, step 6000;
        # 2 h 16 min), which `--init` then fine-tuned on 192-px and then 256-px crops (weights.toml has
        # the three commands).
        # ema 0.999: the same 1000-step fine-tune on the mixture (seed 0, bf16) with and without the
        # average validated at 21.266 / 28.04 / 17.18 dB (LOL / identity / mixed) against 21.226 / 27.23 /
        # 17.13 at step 1000 and a best selection score of 22.16 against 21.97 (README, Train).
        recipe=_recipe(batch=8, steps=7000, lr=1e-3, mix=EXPOSURE_MIX, ema=0.999),
    )
)

register(
    ModelSpec(
        name="mirnet_tiny",
        kind="learned",
        summary="MIRNet with 4 channels and independent DAUs: for tests only",
        paper=PAPER,
        build=MIRNet,
        hparams={
            **_PAPER_HPARAMS, "channels": 4, "groups": 1, "blocks": 1, "reduction": 2, "share_dau_weights": False,
            "exposure_gate": True,
        },
        size_multiple=_MULTIPLE,
        tile_safe=False,
        overlap=16,
        recipe=TrainRecipe(loss=CharbonnierLoss, lr=2e-4, patch=16, batch=2, steps=20, milestones=(0.5,), gamma=0.3),
    )
)
