"""The one path from an RGB array to an enhanced RGB array. ``enhance``, ``eval`` and ``compare`` all use it.

Contract: float32 ``(H, W, 3)`` in [0, 1] in, float32 ``(H*s, W*s, 3)`` in [0, 1] out, where ``s`` is the
requested output scale. Learned models run through :func:`tiling.tiled_forward` (pad -> run -> clamp ->
crop, tiles blended); baselines run on the whole image.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import torch

from . import registry
from .errors import LowlightError, UsageError
from .registry import ModelSpec
from .tiling import Progress, tiled_forward

log = logging.getLogger("lowlight")

Precision = Literal["fp32", "fp16", "bf16"]
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
MIN_TILE = 128
FALLBACK_MODEL = "gamma_auto"  # the default until a learned model with bundled weights and an eval15 score exists


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """How to run a model. ``tile=0`` picks a tile from free memory; ``overlap=None`` uses the model's.
    ``strength``: 1 is the model's output, 0 the input, in between a blend in linear light (:func:`blend`)."""

    device: str = "auto"
    tile: int = 0
    overlap: int | None = None
    precision: Precision = "fp32"
    scale: int | None = None
    strength: float = 1.0


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda asked for, but torch sees no CUDA GPU", "use --device cpu or auto")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise UsageError(f"unknown device {name!r}", "use auto, cpu or cuda")
    return torch.device(name)


def free_memory_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def run_with_hooks(net: torch.nn.Module, x: torch.Tensor, modules: list[torch.nn.Module], hook) -> None:
    """``net(x)`` without gradients, calling ``hook(module, inputs, output)`` after each of ``modules``."""
    handles = [m.register_forward_hook(hook) for m in modules]
    try:
        with torch.no_grad():
            net(x)
    finally:
        for h in handles:
            h.remove()


def activation_bytes_per_pixel(net: torch.nn.Module, spec: ModelSpec) -> int:
    """A conservative per-input-pixel memory estimate: every leaf module's output alive at once.

    Measured once with forward hooks on a small probe, so it follows the model's real widths.
    """
    side = 8 * spec.size_multiple
    probe = torch.zeros(1, 3, side, side, device=next(net.parameters()).device)
    total = 0

    def hook(_m, _i, out):
        nonlocal total
        if isinstance(out, torch.Tensor):
            total += out.numel()

    run_with_hooks(net, probe, [m for m in net.modules() if not list(m.children())], hook)
    return max(1, 4 * total // (side * side))


def auto_tile(net: torch.nn.Module, spec: ModelSpec, device: torch.device) -> int:
    """The spec's default tile, or less (a multiple of 64, at least 128) when its activations would
    not fit in half the free memory."""
    budget = free_memory_bytes(device) // 2
    side = int((budget / activation_bytes_per_pixel(net, spec)) ** 0.5)
    return int(min(spec.default_tile, max(MIN_TILE, side // 64 * 64)))


def srgb_to_linear(v: np.ndarray) -> np.ndarray:
    """The sRGB transfer function, inverted: display values in [0, 1] -> linear light in [0, 1]."""
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(v: np.ndarray) -> np.ndarray:
    """Linear light in [0, 1] -> sRGB display values in [0, 1]."""
    return np.where(v <= 0.0031308, v * 12.92, 1.055 * np.power(np.maximum(v, 0.0031308), 1 / 2.4) - 0.055)


def blend(before: np.ndarray, after: np.ndarray, strength: float) -> np.ndarray:
    """``(1 - s) * before + s * after`` in linear light, back in sRGB: ``(H, W, 3)`` float32 in [0, 1].

    Linear light because that is where light adds: half strength is the light halfway between the
    two exposures, so a lift of two stops at full strength is a lift of about one at half, with no
    hue shift from mixing gamma-encoded values. Every value moves monotonically from ``before``
    (``s = 0``, returned exactly) to ``after`` (``s = 1``, exactly).
    """
    if strength >= 1.0:
        return after
    if strength <= 0.0:
        return before.astype(np.float32)
    mixed = (1.0 - strength) * srgb_to_linear(before) + strength * srgb_to_linear(after)
    return np.clip(linear_to_srgb(mixed), 0.0, 1.0).astype(np.float32)


def downscale(rgb: np.ndarray, factor: int) -> np.ndarray:
    """Bicubic downsampling of ``(H, W, C)`` by an integer factor (sizes rounded down), as in NEID's protocol."""
    h, w = rgb.shape[0] // factor, rgb.shape[1] // factor
    if h < 1 or w < 1:
        raise UsageError(f"image of {rgb.shape[1]}x{rgb.shape[0]} is too small to downscale by {factor}", None)
    return np.clip(cv2.resize(rgb, (w, h), interpolation=cv2.INTER_CUBIC), 0.0, 1.0)


class Enhancer:
    """A model ready to run: the spec, its network (None for baselines) and the run options."""

    def __init__(self, spec: ModelSpec, net: torch.nn.Module | None, options: RunOptions, label: str) -> None:
        self.spec, self.net, self.options, self.label = spec, net, options, label
        self.scale = options.scale or spec.scale
        if not 0.0 <= options.strength <= 1.0:
            raise UsageError(f"--strength must be in [0, 1], got {options.strength}", "0 gives the input back, 1 the model's full output")
        if self.scale not in spec.scales:
            raise UsageError(
                f"{spec.name} cannot give scale {self.scale}",
                f"it supports --scale {', '.join(map(str, spec.scales))}",
            )
        self.device = pick_device(options.device)
        self.dtype = DTYPES[options.precision]
        if self.dtype != torch.float32:
            if self.device.type != "cuda":
                raise UsageError(f"--precision {options.precision} needs CUDA", "use --precision fp32 on CPU")
            if not spec.half_safe:
                log.warning("%s is not safe in reduced precision; running fp32", spec.name)
                self.dtype = torch.float32
        if options.tile < 0 or (options.overlap or 0) < 0:
            raise UsageError("--tile and --overlap must be >= 0", "--tile 0 picks a tile size from free memory")
        if net is not None and 0 < options.tile < 2 * spec.overlap:
            raise UsageError(
                f"--tile {options.tile} is below {spec.name}'s useful minimum of {2 * spec.overlap} px "
                f"(twice its {spec.overlap}-px overlap): tiles would be mostly overlap and take many times longer",
                f"use --tile {2 * spec.overlap} or more, or --tile 0 to let lowlight choose",
            )
        if options.tile and options.overlap is not None and options.overlap >= options.tile:
            raise UsageError(f"--overlap {options.overlap} must be smaller than --tile {options.tile}", None)
        if net is not None:
            self.net = net.to(self.device).eval()
            self.tile = options.tile or auto_tile(self.net, spec, self.device)
            # The model's own overlap shrinks to fit a small tile; one given by the user is kept.
            self.overlap = min(spec.overlap, self.tile // 2) if options.overlap is None else options.overlap

    def __call__(self, rgb: np.ndarray, progress: Progress | None = None) -> np.ndarray:
        """Enhance ``(H, W, 3)`` float32 in [0, 1]; returns ``(H*s, W*s, 3)`` float32 in [0, 1]."""
        strength = self.options.strength
        if strength == 0.0 and self.scale == 1:
            return rgb.astype(np.float32)  # nothing of the model's output is wanted: skip the work
        out = self._enhance(rgb, progress)
        if strength >= 1.0:
            return out
        before = rgb if self.scale == 1 else np.clip(
            cv2.resize(rgb, (out.shape[1], out.shape[0]), interpolation=cv2.INTER_CUBIC), 0.0, 1.0)
        return blend(before, out, strength)

    def _enhance(self, rgb: np.ndarray, progress: Progress | None) -> np.ndarray:
        if self.net is None:
            return np.clip(self.spec.enhance(rgb), 0.0, 1.0).astype(np.float32)
        out_h, out_w = rgb.shape[0] * self.scale, rgb.shape[1] * self.scale
        native = self.spec.scale
        if self.scale < native:
            # Edge-replicated to a multiple of the factor first, so that odd sizes come back whole.
            k = native // self.scale
            rgb = downscale(np.pad(rgb, ((0, -rgb.shape[0] % k), (0, -rgb.shape[1] % k), (0, 0)), mode="edge"), k)
        x = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))[None].float()
        h, w = rgb.shape[:2]
        if not self.spec.tile_safe and max(h, w) > self.tile:
            log.warning(
                "%s uses global image statistics; tiles of %d px may differ slightly from one whole pass",
                self.spec.name, self.tile,
            )
        out = self._run(x, progress)
        return out[0, :, :out_h, :out_w].clamp_(0.0, 1.0).permute(1, 2, 0).numpy()

    @torch.no_grad()
    def _forward(self, t: torch.Tensor) -> torch.Tensor:
        y = self.net(t)
        if self.dtype != torch.float32 and not torch.isfinite(y).all():
            log.warning("non-finite output in %s; tile recomputed in fp32", self.options.precision)
            y = self.net.float()(t.float())
            self.net.to(self.dtype)
        return y

    def _run(self, x: torch.Tensor, progress: Progress | None) -> torch.Tensor:
        self.net.to(self.dtype)
        kwargs = dict(
            overlap=self.overlap, scale=self.spec.scale, multiple=self.spec.size_multiple,
            device=self.device, dtype=self.dtype, progress=progress,
        )
        try:
            return tiled_forward(self._forward, x, tile=self.tile, **kwargs)
        except torch.OutOfMemoryError:
            smaller = max(MIN_TILE // 2, self.tile // 2)
            log.warning("out of memory with --tile %d; retrying once with --tile %d", self.tile, smaller)
            torch.cuda.empty_cache()
            self.tile, self.overlap = smaller, min(self.overlap, smaller // 2)
            kwargs["overlap"] = self.overlap
            try:
                return tiled_forward(self._forward, x, tile=smaller, **kwargs)
            except torch.OutOfMemoryError:
                raise LowlightError(
                    f"out of memory on {self.device} even with --tile {smaller}",
                    "try a smaller --tile, --precision fp16 on CUDA, or --device cpu",
                ) from None


def default_model_name() -> str:
    """The bundled learned model with the best measured eval15 PSNR, else the classical fallback."""
    from .weights import entries

    scored = [e for e in entries() if e.default and e.metrics.get("eval15_psnr") and e.bundled]
    return max(scored, key=lambda e: e.metrics["eval15_psnr"]).arch if scored else FALLBACK_MODEL


def load_enhancer(name: str, *, weights: Path | None = None, options: RunOptions = RunOptions()) -> Enhancer:
    """Resolve ``name`` (baseline, ``arch`` or ``arch.tag``) to a ready :class:`Enhancer`."""
    spec = registry.get(name)
    if spec.kind == "baseline":
        if weights is not None:
            raise UsageError(f"{spec.name} is a classical baseline and takes no --weights", None)
        return Enhancer(spec, None, options, spec.name)
    from .weights import load_model

    spec, net, entry = load_model(name, weights=weights)
    label = entry.name if entry is not None and weights is None else spec.name
    return Enhancer(spec, net, options, label)
