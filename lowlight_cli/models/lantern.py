"""Lantern (ours): the whole picture seen once at low resolution, local edge-aware colour transforms
applied at full resolution, and a light full-resolution denoiser. Built for 12-50 MP photos on a CPU.

Three parts:

* **glance** (:class:`..context.Glance`): the whole picture area-averaged to ``glance`` x ``glance``
  pixels (256), whatever its size or aspect;
* **grid** (global part): a small CNN on the glance's log transforms (four stride-2 3x3 convolutions
  down to 1/16, then a local path of two 3x3 convolutions and a global path of two more stride-2
  convolutions, a mean and a linear layer, summed) predicts a bilateral grid of ``glance / 16``
  x ``glance / 16`` cells x ``bins`` brightness bins, each holding a colour transform of 13 numbers:
  a log gain ``s``, a 3x3 matrix ``M`` (as ``M - I``) and an offset ``b``. With ``hist`` > 0 the
  global path also reads the glance's grey-level histogram (FLW-Net's cue for the exposure, there from
  the V channel into an MLP);
* **slice and apply**: a per-pixel guide (a learned 1x1 map of the pixel's log-transformed colour,
  clamped to [0, 1]) and the pixel's place in the picture pick a transform from the grid by trilinear
  interpolation; the graded pixel is ``exp(s) * M x + b``. The guide's axis makes it edge-aware: a
  dark face and the bright sky beside it fall in different bins of the same cell, so the face can be
  lifted and the sky kept (how far the trained weights lift it: ``bench/bench_exposure.py``'s ``backlit x``);
* **denoiser** (full resolution, bounded reach): the graded image and its log gain, pixel-unshuffled
  by 2, go through ``depth`` 3x3 convolutions of ``width`` channels (ReLU) whose last layer, shuffled
  back, is added to the graded image. Receptive field: ``depth`` pixels at half resolution, 2 x depth
  + 1 at full resolution. With ``coarse`` > 0, a quarter-resolution branch (a stride-2 convolution to
  ``coarse`` channels, two more, a 1x1 convolution shuffled back and added after the first layer) reaches
  farther for the blotchy noise of deep shadows: 19 px at ``depth`` 3; inputs then are multiples of 4.

From the papers (``../shared/design/fast-models.md``): the bilateral grid of affine colour transforms
computed on a fixed-size copy of the whole image, sliced by a learned full-resolution guide
(HDRNet, Gharbi et al., SIGGRAPH 2017: 256 px input, 16 px cells, 8 luma bins, a local and a global
path); a tiny full-resolution CNN for the noise that colour transforms amplify (MobileIE, ICCV 2025;
DeepUPE's 14 dB on LOL shows a grid alone cannot denoise). Ours: the transform parameterised as a
log gain times a matrix plus an offset (a 30x lift is ``s = 3.4``, not a matrix of 30s), the multi-scale
log transform as the grid's and the guide's input (MSR-net's, :func:`.gate.log_transform`), the denoiser
at half resolution after a pixel unshuffle and fed the log gain (how much the noise was amplified),
the exact-identity start (every transform ``I``, the denoiser's last layer zero: a fresh network returns
its input, so a well-exposed photo can come back as it was and ``--strength`` blends from there), and
tiling through the glance (every tile gets the whole picture's glance and its own place in it, so tiles
reproduce one pass exactly once the overlap covers the denoiser's reach).

Trained re-parameterised (MobileIE's training trick, after RepVGG, Ding et al. CVPR 2021): from scratch,
each of the denoiser's 3x3 convolutions but the last trains as three branches, a 3x3 convolution, a 1x1
convolution and the identity, each batch-normalised, and :meth:`Lantern.fold` sums them into the one 3x3
convolution inference runs (``reparam=True``, the recipe's ``train_hparams``; exported weights are folded).
Same network at inference, a better one trained: held-out LOL 20.86 against 20.32 dB for the same run plain.

Ours too: at inference the grid is predicted for the glance seen eight ways (quarter turns, mirrored)
and averaged, each turned back (:meth:`Lantern.predict`, ``views``): the exposure choice no longer hangs
on the picture's orientation. On the held-out sets (``bench/bench_holdout.py``) it took run B's (the
lantern.mix of the time) worst well-exposed photo from 24.42 to 26.76 dB and mixed exposure from 17.93
to 18.16, for 0.07 dB of held-out LOL (20.47 to 20.40). Tiles share the one prediction
(:meth:`..context.Glance.once`).

Cost at full resolution: about 4.2 k multiply-accumulates per pixel (``lowlight models --macs``, the
global part included at 12 MP: it is a fixed 1.6 GMAC for the eight views whatever the photo's size).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..context import Glance
from ..registry import ModelSpec, TrainRecipe, register
from .gate import log_transform

PAPER = ("ours, after HDRNet (Gharbi et al., Deep Bilateral Learning for Real-Time Image Enhancement, "
         "SIGGRAPH 2017) and MobileIE (ICCV 2025)")
LOG_SCALES = (1.0, 10.0, 100.0, 300.0)
GUIDE_SCALE = 100.0
GAINS = 4  # sliced per pixel: an overall log gain, then one per channel
DOWN = 16  # the grid's cell in glance pixels: four stride-2 convolutions
# The grid's and the colour transform's outputs are the last layers' times this. Adam moves a weight by
# about the learning rate per step whatever its gradient, so an unscaled head would need some thousand
# steps at 2e-3 to reach the log gain of a LOL frame (ln 10 = 2.3); one batch of LOL crops is fitted to
# 22 dB in 150 steps unscaled, 24.5 dB in 60 and 27.3 in 150 scaled (bf16, lr 2e-3, one thread).
HEAD_GAIN = 8.0


def _conv(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1)


def histogram(glance: torch.Tensor, bins: int) -> torch.Tensor:
    """``(B, 3, S, S)`` in [0, 1] -> ``(B, bins)``: the share of the glance's pixels at each level of grey
    (the channels' mean, log-transformed at :data:`GUIDE_SCALE` so deep shadows spread over the levels),
    counted softly: a pixel between two levels counts for both, in proportion."""
    z = log_transform(glance.mean(dim=1, keepdim=True), (GUIDE_SCALE,)).clamp(0.0, 1.0) * (bins - 1)
    levels = torch.arange(bins, dtype=glance.dtype, device=glance.device)[:, None, None]
    return F.relu(1.0 - (z - levels).abs()).mean(dim=(2, 3))


class RepConv(nn.Module):
    """A 3x3 convolution as it trains: the sum of a 3x3 convolution, a 1x1 convolution and (when the
    widths match) the identity, each followed by batch normalisation. Linear in its input once the
    normalisation's statistics are fixed, so :meth:`folded` is one 3x3 convolution that computes the
    same in eval mode."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.b3 = nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out))
        self.b1 = nn.Sequential(nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out))
        self.bid = nn.BatchNorm2d(c_out) if c_in == c_out else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.b3(x) + self.b1(x)
        return y if self.bid is None else y + self.bid(x)

    @torch.no_grad()
    def folded(self) -> nn.Conv2d:
        """The one 3x3 convolution (with bias) equal to this module in eval mode."""
        def fold(kernel: torch.Tensor, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
            scale = bn.weight / (bn.running_var + bn.eps).sqrt()
            return kernel * scale[:, None, None, None], bn.bias - bn.running_mean * scale

        conv3 = self.b3[0]
        weight, bias = fold(conv3.weight, self.b3[1])
        w1, b1 = fold(F.pad(self.b1[0].weight, (1, 1, 1, 1)), self.b1[1])
        weight, bias = weight + w1, bias + b1
        if self.bid is not None:
            eye = torch.zeros_like(conv3.weight)
            eye[range(conv3.out_channels), range(conv3.in_channels), 1, 1] = 1.0
            wi, bi = fold(eye, self.bid)
            weight, bias = weight + wi, bias + bi
        out = _conv(conv3.in_channels, conv3.out_channels).to(weight.device)
        out.weight.copy_(weight)
        out.bias.copy_(bias)
        return out


class GridNet(nn.Module):
    """Glance ``(B, 3, S, S)`` in [0, 1] -> ``(grid (B, 4 * bins, S/16, S/16), affine (B, 12))``: the local
    log gains (overall, then per channel) of every cell and brightness bin, and one colour transform
    for the picture (a 3x3 matrix minus the identity, then an offset). All zero at the start.

    With ``hist`` > 0 the global path also reads the glance's grey-level histogram of ``hist`` levels
    through two linear layers: the distribution of brightness an exposure is chosen from, which a mean
    of a few convolutions' features gives only roughly."""

    def __init__(self, *, width: int, bins: int, hist: int = 0) -> None:
        super().__init__()
        c_in = 3 * len(LOG_SCALES)
        widths = (width, 2 * width, 4 * width, 4 * width)
        down, prev = [], c_in
        for w in widths:
            down += [_conv(prev, w, 2), nn.ReLU(inplace=True)]
            prev = w
        self.down = nn.Sequential(*down)
        top = widths[-1]
        self.local = nn.Sequential(_conv(top, top), nn.ReLU(inplace=True), _conv(top, top))
        self.glob = nn.Sequential(_conv(top, top, 2), nn.ReLU(inplace=True), _conv(top, top, 2), nn.ReLU(inplace=True))
        self.glob_fc = nn.Linear(top, top)
        self.hist = hist
        self.hist_fc = nn.Sequential(nn.Linear(hist, top), nn.ReLU(inplace=True), nn.Linear(top, top)) if hist else None
        self.head = nn.Conv2d(top, GAINS * bins, 1)
        self.affine = nn.Linear(top, 12)
        for layer in (self.head, self.affine):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, glance: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.down(log_transform(glance, LOG_SCALES))
        g = self.glob_fc(self.glob(f).mean(dim=(2, 3)))
        if self.hist_fc is not None:
            g = g + self.hist_fc(histogram(glance, self.hist))
        fused = F.relu(self.local(f) + g[:, :, None, None])
        return HEAD_GAIN * self.head(fused), HEAD_GAIN * self.affine(g)


def interpolation_rows(start: torch.Tensor, count: int, total: torch.Tensor, cells: int) -> torch.Tensor:
    """``(B, count, cells)``: row ``i`` weighs the grid's cells for pixel ``start + i`` of a side of
    ``total`` pixels, linearly between the two nearest cell centres (the edge cells held beyond them).
    ``start`` and ``total``: ``(B, 1)``."""
    pos = (start + torch.arange(count, dtype=start.dtype, device=start.device) + 0.5) / total * cells - 0.5
    pos = pos.clamp(0.0, cells - 1.0)
    centres = torch.arange(cells, dtype=start.dtype, device=start.device)
    return F.relu(1.0 - (pos[..., None] - centres).abs())


class Lantern(nn.Module):
    """``(B, 3, H, W)`` in [0, 1] (H, W even; multiples of 4 with ``coarse``) -> ``(B, 3, H, W)``, unclamped; see
    the module docstring.

    >>> net = Lantern(glance=64, grid_width=4, bins=4, width=8, depth=2)
    >>> x = torch.rand(1, 3, 32, 48)
    >>> bool(torch.equal(net(x), x))  # a fresh network is the identity
    True
    """

    def __init__(self, *, glance: int = 256, grid_width: int = 16, bins: int = 8, width: int = 24, depth: int = 4,
                 coarse: int = 0, hist: int = 0, reparam: bool = False, views: int = 8) -> None:
        super().__init__()
        if glance % DOWN or glance < 4 * DOWN:
            raise ValueError(f"glance must be a multiple of {DOWN} and at least {4 * DOWN}, got {glance}")
        if not 1 <= views <= 8:
            raise ValueError(f"views must be 1 to 8 (the glance's flips and quarter turns), got {views}")
        self.views = views
        if depth < 2:
            raise ValueError(f"depth must be at least 2, got {depth}")
        self.bins, self.cells = bins, glance // DOWN
        self.glance = Glance(glance)
        self.grid = GridNet(width=grid_width, bins=bins, hist=hist)
        self.guide = nn.Conv2d(3, 1, 1)
        nn.init.constant_(self.guide.weight, 1.0 / 3.0)
        nn.init.zeros_(self.guide.bias)
        layers: list[nn.Module] = [_conv(4 * 4, width), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers += [_conv(width, width), nn.ReLU(inplace=True)]
        layers.append(_conv(width, 4 * 3))
        self.denoise = nn.Sequential(*layers)
        nn.init.zeros_(layers[-1].weight)
        nn.init.zeros_(layers[-1].bias)
        if reparam:  # the training form: every 3x3 convolution but the zero-initialised last as branches
            for i, layer in enumerate(layers[:-1]):
                if isinstance(layer, nn.Conv2d):
                    self.denoise[i] = RepConv(layer.in_channels, layer.out_channels)
        # Optional quarter-resolution branch after the first layer: a stride-2 convolution to ``coarse``
        # channels, two more, and a 1x1 convolution shuffled back to half resolution and added (zero at
        # the start). It reaches 4x farther per layer, for the blotchy low-frequency noise of deep shadows.
        self.coarse: nn.Sequential | None = None
        if coarse:
            self.coarse = nn.Sequential(_conv(width, coarse, stride=2), nn.ReLU(inplace=True), _conv(coarse, coarse),
                                        nn.ReLU(inplace=True), _conv(coarse, coarse), nn.ReLU(inplace=True),
                                        nn.Conv2d(coarse, 4 * width, 1), nn.PixelShuffle(2))
            nn.init.zeros_(self.coarse[-2].weight)
            nn.init.zeros_(self.coarse[-2].bias)

    def fold(self) -> Lantern:
        """The training form made the inference form, in place: each :class:`RepConv` becomes the one 3x3
        convolution it equals in eval mode, so the state dict is that of ``reparam=False``."""
        for i, layer in enumerate(self.denoise):
            if isinstance(layer, RepConv):
                self.denoise[i] = layer.folded()
        return self

    def predict(self, glance: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The grid network's ``(grid, affine)`` for a glance. In eval mode, their mean over the glance
        seen in ``views`` ways (quarter turns, then the same mirrored; each grid turned back): the
        averaged exposure choice is steadier, and the grid network costs ``views`` times its 0.2 GMAC,
        once per picture. Training steps see the glance once, as it is."""
        if self.training or self.views == 1:
            return self.grid(glance)
        grids, affines = [], []
        for t in range(self.views):
            turn, mirrored = t % 4, t >= 4
            seen = torch.rot90(glance, turn, (2, 3))
            grid, affine = self.grid(seen.flip(3) if mirrored else seen)
            grids.append(torch.rot90(grid.flip(3) if mirrored else grid, -turn, (2, 3)))
            affines.append(affine)
        return torch.stack(grids).mean(0), torch.stack(affines).mean(0)

    def log_gains(self, x: torch.Tensor, grid: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
        """Each pixel's log gains ``(B, 4, H, W)``: the grid sliced at its place and brightness.

        Bin by bin: the bin's cells interpolated to the pixels by two small matrix products (rows then
        columns: 16 multiply-adds per value), weighted by the bin's hat function of the guide value (only
        the two bins around it weigh), summed. One bin at a time keeps 4 channels at full resolution
        alive, not 4 x bins."""
        h, w = x.shape[-2:]
        rows = interpolation_rows(box[:, 0:1], h, box[:, 2:3], self.cells)[:, None]
        cols = interpolation_rows(box[:, 1:2], w, box[:, 3:4], self.cells)[:, None].transpose(-1, -2)
        z = self.guide(log_transform(x, (GUIDE_SCALE,))).clamp(0.0, 1.0) * (self.bins - 1)
        total = torch.zeros_like(x[:, :1]).expand(-1, GAINS, -1, -1)
        for k in range(self.bins):
            # Channel g * bins + k of the grid holds gain g of bin k.
            total = total + (rows @ grid[:, k :: self.bins] @ cols) * F.relu(1.0 - (z - k).abs())
        return total

    def grade(self, x: torch.Tensor, grid: torch.Tensor, affine: torch.Tensor,
              box: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The colour transform alone: ``(graded (B, 3, H, W), log gains (B, 4, H, W))`` for a grid and a
        picture's colour transform, whether the grid network predicted them or not."""
        s = self.log_gains(x, grid, box)
        lifted = torch.exp(s[:, :1] + s[:, 1:]) * x
        m = (affine[:, :9].view(-1, 3, 3) + torch.eye(3, dtype=x.dtype, device=x.device))[..., None, None]
        # Channel by channel rather than one batched product: each pixel's arithmetic then does not
        # depend on the crop's size, so a tile reproduces one pass to the bit.
        graded = torch.cat([(m[:, i, 0:1] * lifted[:, 0:1] + m[:, i, 1:2] * lifted[:, 1:2] + m[:, i, 2:3] * lifted[:, 2:3])
                            for i in range(3)], dim=1) + affine[:, 9:, None, None]
        return graded, s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        glance, box = self.glance(x)
        # The tiles of a picture (run one by one) share its glance: the grid is predicted once per picture.
        grid, affine = self.glance.once(("grid", x.dtype, self.training), lambda: self.predict(glance))
        graded, s = self.grade(x, grid, affine, box)
        feats = F.pixel_unshuffle(torch.cat([graded, s[:, :1]], dim=1), 2)
        h = self.denoise[:2](feats)
        if self.coarse is not None:
            h = h + self.coarse(h)
        return graded + F.pixel_shuffle(self.denoise[2:](h), 2)


class L1Loss(nn.Module):
    """Mean absolute error. Called as ``loss(net, low, high) -> (scalar, {"l1": ...})``."""

    def forward(self, net: nn.Module, low: torch.Tensor, high: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss = (net(low) - high).abs().mean()
        return loss, {"l1": loss.detach()}


# The denoiser reaches 2 x depth + 1 = 9 px (19 with a quarter-resolution branch of three layers);
# tiles equal one pass where the overlap's dead margin (overlap // 4, lowlight_cli.tiling) covers it: 12 px.
_OVERLAP = 48

# Whole LOL frames and the photos are 400-1000 px: 256-px crops give the grid a picture with a scene
# in it while a step stays near a second on 2 cores. Mixture: more identity and spatial pairs than
# the older models' (EXPOSURE_MIX), since the whole point of the grid is to lift where it is dark only.
_MIX = {"mix_identity": 0.2, "mix_global": 0.15, "mix_spatial": 0.25}

register(
    ModelSpec(
        name="lantern",
        kind="learned",
        summary="ours: a bilateral grid of local gains from a 256-px glance at the whole photo, a half-res denoiser; 4.2 k MAC/px",
        paper=PAPER,
        build=Lantern,
        hparams={"glance": 256, "grid_width": 16, "bins": 8, "width": 24, "depth": 4},
        size_multiple=2,
        tile_safe=False,
        overlap=_OVERLAP,
        recipe=TrainRecipe(loss=L1Loss, lr=2e-3, patch=256, batch=8, steps=4000, schedule="cosine", gamma=0.01,
                           ema=0.999, train_hparams={"reparam": True}, **_MIX),
    )
)

register(
    ModelSpec(
        name="lantern_tiny",
        kind="learned",
        summary="Lantern with a 64-px glance and 8 channels: for tests only",
        paper=PAPER,
        build=Lantern,
        hparams={"glance": 64, "grid_width": 4, "bins": 4, "width": 8, "depth": 2, "coarse": 8, "hist": 8},
        size_multiple=4,
        tile_safe=False,
        overlap=72,  # reach 17 px (5 without the quarter-resolution branch): a dead margin of 72 // 4 = 18
        recipe=TrainRecipe(loss=L1Loss, lr=1e-3, patch=32, batch=2, steps=20, train_hparams={"reparam": True}),
    )
)
