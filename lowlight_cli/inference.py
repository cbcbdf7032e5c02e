"""The one path from an RGB array to an enhanced RGB array. ``enhance``, ``eval``, ``compare`` and the
Python API (:mod:`lowlight_cli.api`) all use it.

Contract: float32 ``(H, W, 3)`` in [0, 1] in, float32 ``(H*s, W*s, 3)`` in [0, 1] out, where ``s`` is the
requested output scale. Learned models run through :func:`tiling.tiled_forward` (pad -> run -> clamp ->
crop, tiles blended); baselines run on the whole image.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from . import context, registry
from .arrays import ImageInput, to_picture
from .errors import LowlightError, UsageError
from .images import Picture
from .registry import ModelSpec
from .tiling import Progress, owned_cells, pad_to_multiple, run_padded, tile_spans, tiled_forward

log = logging.getLogger("lowlight")

Precision = Literal["fp32", "fp16", "bf16"]
Backend = Literal["torch", "onnx", "auto"]
BACKENDS = ("torch", "onnx", "auto")
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
MIN_TILE = 128
# A model that tiles exactly (it glances at the whole picture, context.Glance) gains nothing but memory
# from a bigger tile, and on torch it even runs slower (its full-resolution maps leave the caches):
# lantern at 12 MP, whole command, 2 threads: one pass 9.7 s and 3.4 GB (ONNX Runtime); on torch
# 1024-px tiles 9.2-10.6 s, 768 7.1, 640 6.1-6.4 (three runs), 512 6.5-7.4, 384 6.6 s; 0.75 GB at 640.
EXACT_TILE = 640
FALLBACK_MODEL = "gamma_auto"  # the default until a learned model with bundled weights and an eval15 score exists


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """How to run a model. ``tile=0``: one pass when the image fits ``memory_gb`` (default: see
    :func:`memory_budget_bytes`), else the largest tile that does; ``overlap=None`` uses the model's.
    ``strength``: 1 is the model's output, 0 the input, in between a blend in linear light (:func:`blend`).
    ``backend``: ``torch``; ``onnx``, ONNX Runtime on CPU in fp32 (:mod:`lowlight_cli.onnx_graph`; the
    graphs exported once and cached); ``auto``, onnx where it can run (CPU, fp32) and gains, else torch
    (a model that glances at the whole picture, :class:`context.Glance`, runs on torch). Default: :func:`default_backend`."""

    device: str = "auto"
    tile: int = 0
    overlap: int | None = None
    precision: Precision = "fp32"
    scale: int | None = None
    strength: float = 1.0
    memory_gb: float | None = None
    backend: Backend = field(default_factory=lambda: default_backend())


BACKEND_ENV = "LOWLIGHT_BACKEND"


def default_backend() -> str:
    """``$LOWLIGHT_BACKEND`` if set, else ``auto``: ONNX Runtime is 2-4x faster than eager torch on
    CPU for every bundled model, with the same output (bench/bench_speed.py)."""
    return os.environ.get(BACKEND_ENV) or "auto"


def set_threads(n: int) -> None:
    """Torch's CPU threads: ``n``, or for 0 this process's cores less those other processes keep busy
    now (:func:`busy_cores`). A thread on a core another process holds makes every step of these narrow
    networks wait for it: Lantern at 12 MP beside a one-thread training on 2 cores took 27 s with two
    threads, 7.5 s with one (5.2-5.7 s on the idle machine)."""
    if n < 0:
        raise UsageError(f"--threads must be >= 0, got {n}", "0 uses the cores not already busy")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    busy = busy_cores() if not n else None
    torch.set_num_threads(n or max(1, cores - round(busy or 0.0)))
    log.debug("torch threads: %d (%s cores, %s busy)", torch.get_num_threads(), cores, busy)


def busy_cores(sample: float = 0.1) -> float | None:
    """How many of this process's cores other processes keep busy, from two readings of ``/proc/stat``
    ``sample`` seconds apart (the busy share of each core, summed); None where it cannot be read."""
    try:
        mine = os.sched_getaffinity(0)
        with open("/proc/stat") as f:
            before = cpu_times(f.read())
        time.sleep(sample)
        with open("/proc/stat") as f:
            after = cpu_times(f.read())
    except (OSError, AttributeError, ValueError):
        return None
    busy = 0.0
    for cpu in mine & before.keys() & after.keys():
        total, idle = (a - b for a, b in zip(after[cpu], before[cpu]))
        busy += 1.0 - idle / total if total > 0 else 0.0
    return busy


def cpu_times(stat: str) -> dict[int, tuple[int, int]]:
    """``/proc/stat``'s text -> ``{cpu: (all ticks, idle and iowait ticks)}`` per core (the ``cpuN`` lines)."""
    times = {}
    for line in stat.splitlines():
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit():
            ticks = [int(v) for v in fields]
            times[int(name[3:])] = (sum(ticks[:8]), ticks[3] + ticks[4])  # user .. steal; guest is in user
    return times


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda asked for, but torch sees no CUDA GPU", "use --device cpu or auto")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise UsageError(f"unknown device {name!r}", "use auto, cpu or cuda")
    return torch.device(name)


def memory_budget_bytes(device: torch.device, gb: float | None) -> int:
    """The working memory one image may use: ``gb`` if given, else a quarter of :func:`ram_bytes` (CPU:
    2 GiB on an 8 GiB laptop) or half of the GPU's memory. Fixed per machine, so the tiling and the
    output are too. A run's peak is this, plus the decoded image and a fixed overhead (README)."""
    if gb is not None:
        return int(gb * 2**30)
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory) // 2
    return ram_bytes() // 4


def ram_bytes() -> int:
    """The memory this process may have: the machine's RAM, or a container's limit where lower (cgroup
    v2 ``memory.max``, v1 ``memory.limit_in_bytes``); 8 GiB where neither can be read."""
    found = []
    with contextlib.suppress(AttributeError, ValueError, OSError):  # no os.sysconf on Windows
        found.append(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    for limit in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        with contextlib.suppress(OSError, ValueError):  # "max": no limit
            found.append(int(Path(limit).read_text().split()[0]))
    return min(found) if found else 8 * 2**30


class _PeakTensorBytes(TorchDispatchMode):
    """Tracks the bytes of tensor storage alive during the ops run under it, and their peak."""

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # False: torch then leaves __torch_dispatch__ unwrapped by torch._dynamo.disable, whose first call
        # imports torch._dynamo (1 s of every `lowlight enhance`). Never run under torch.compile.
        return False

    def __init__(self) -> None:
        super().__init__()
        self.alive: dict[int, int] = {}
        self.now = self.peak = 0

    def _free(self, key: int) -> None:
        self.now -= self.alive.pop(key, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in self.alive:
                key, size = t.untyped_storage().data_ptr(), t.untyped_storage().nbytes()
                self.alive[key] = size
                self.now += size
                self.peak = max(self.peak, self.now)
                weakref.finalize(t, self._free, key)
        return out


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
    """Peak bytes of activations per input pixel of one forward pass.

    Measured on a probe of ``16 * size_multiple`` px by following every tensor the pass allocates
    and frees, so it tracks the model's real widths and the order its buffers die in; the peak
    grows with the pixel count, so the ratio holds for large tiles (``bench/bench_tiling.py`` prints
    it beside the measured peak RSS). Cached per spec and parameter count.
    """
    key = (spec.name, sum(p.numel() for p in net.parameters()))
    if key not in _BYTES_PER_PIXEL:
        side = 16 * spec.size_multiple if spec.size_multiple > 1 else 128
        if context.glances(net):
            # Its glance's network is a fixed cost that a small probe counts per pixel: Lantern
            # measures 7680 bytes per pixel at 32 px, 480 at 128 and 104-107 from 512 px on.
            side = 512
        probe = torch.zeros(1, 3, side, side, device=next(net.parameters()).device)
        tracker = _PeakTensorBytes()
        with torch.no_grad(), tracker:
            net(probe)
        _BYTES_PER_PIXEL[key] = max(1, tracker.peak // (side * side))
    return _BYTES_PER_PIXEL[key]


_BYTES_PER_PIXEL: dict[tuple[str, int], int] = {}


def image_bytes_per_pixel(scale: int) -> int:
    """Bytes per input pixel the engine keeps besides the net's activations: the float32 RGB input
    (the tiler reads its tiles from it, no copy) and 12 more (without them mirnet's 4 MP run at --memory 1
    peaked 1 % over, bench/bench_memory.py), the blended output and its weight sum, and the output array
    (when the image is written, the output and its rounded copies, beside what ONNX Runtime's arena still
    holds)."""
    return 2 * 12 + scale * scale * (12 + 4 + 12)


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
        if options.precision not in DTYPES:
            raise UsageError(f"unknown precision {options.precision!r}", "use fp32, fp16 or bf16")
        self.dtype = DTYPES[options.precision]
        if self.dtype != torch.float32:
            if self.device.type != "cuda":
                raise UsageError(f"--precision {options.precision} needs CUDA", "use --precision fp32 on CPU")
            if not spec.half_safe:
                log.warning("%s is not safe in reduced precision; running fp32", spec.name)
                self.dtype = torch.float32
        if options.tile < 0 or (options.overlap or 0) < 0:
            raise UsageError("--tile and --overlap must be >= 0", "--tile 0 picks a tile size from the memory budget")
        if options.memory_gb is not None and options.memory_gb <= 0:
            raise UsageError(f"--memory must be > 0 GB, got {options.memory_gb}", "e.g. --memory 4")
        if net is not None and 0 < options.tile < 2 * spec.overlap:
            raise UsageError(
                f"--tile {options.tile} is below {spec.name}'s useful minimum of {2 * spec.overlap} px "
                f"(twice its {spec.overlap}-px overlap): tiles would be mostly overlap and take many times longer",
                f"use --tile {2 * spec.overlap} or more, or --tile 0 to let lowlight choose",
            )
        if options.tile and options.overlap is not None and options.overlap >= options.tile:
            raise UsageError(f"--overlap {options.overlap} must be smaller than --tile {options.tile}", None)
        self.backend = "torch" if net is None else self._pick_backend(options.backend)
        if net is not None:
            self.net = net.to(self.device).eval()
            self.budget = memory_budget_bytes(self.device, options.memory_gb)

    def _pick_backend(self, asked: str) -> str:
        if asked not in BACKENDS:
            raise UsageError(f"unknown backend {asked!r}", f"use {', '.join(BACKENDS)}")
        if asked == "torch":
            return asked
        from .onnx_graph import EXTRA_HINT, require

        why_not = ("it runs on CPU only" if self.device.type != "cpu" else
                   "it runs fp32 only" if self.dtype != torch.float32 else "")
        if asked == "auto" and not why_not and context.glances(self.net):
            # A glancing model (Lantern) is light enough that eager torch is nearly as fast (12 MP: 8.8
            # against 7.7 s; 48 MP: 22 against 19 s) and needs neither the export (8 s) nor the memory
            # probes (3 s) that ONNX Runtime's first run on a machine pays.
            why_not = "a glancing model runs nearly as fast on torch, with no export on its first run"
        if asked == "auto":
            try:
                require("onnxruntime", "onnx", "onnxscript")
            except UsageError:
                why_not = why_not or f"ONNX Runtime is not installed ({EXTRA_HINT})"
            if why_not:
                log.debug("--backend auto: torch, not ONNX Runtime: %s", why_not)
            return "torch" if why_not else "onnx"
        if why_not:
            raise UsageError(f"--backend onnx cannot run on {self.device} in {self.options.precision}: {why_not}",
                             "use --device cpu --precision fp32, or --backend torch")
        require("onnxruntime", "onnx", "onnxscript")
        return asked

    @functools.cached_property
    def _onnx(self):
        """ONNX Runtime over this net's graph, exported into the cache on first use."""
        from .onnx_graph import OnnxForward

        return OnnxForward(self.spec, self.net, self.label, torch.get_num_threads())

    @functools.cached_property
    def bytes_per_pixel(self) -> int:
        """The net's peak activation bytes per input pixel on this backend, measured once, when a plan
        first needs it: torch's tensors followed op by op; ONNX Runtime's peak resident size on two
        probes (its arena and fused layers hold more: 1833 against torch's 600 for MIRNet), else 3
        times torch's where that cannot be read (not Linux)."""
        torch_bytes = activation_bytes_per_pixel(self.net, self.spec)
        if self.backend != "onnx":
            return torch_bytes
        measured = self._onnx.bytes_per_pixel()
        return measured if measured is not None else 3 * torch_bytes

    def one_pass_pixels(self, h: int, w: int) -> int:
        """The most input pixels one pass over an ``h`` x ``w`` input of the net may have: the memory
        budget less the image's own buffers (:func:`image_bytes_per_pixel`), over the net's bytes per
        pixel. Tiles and the downscaled copy of :meth:`global_context` are sized by it alike."""
        fits = self.budget - image_bytes_per_pixel(self.spec.scale) * h * w
        return max(1, fits // self.bytes_per_pixel)

    def plan(self, h: int, w: int) -> tuple[int, int]:
        """``(tile, overlap)`` for an ``h`` x ``w`` input of the net: ``--tile`` if given, else one pass
        when it fits the budget, else the largest square tile (a multiple of 64) that does. Tiles get
        at least a quarter of the budget when the image's buffers take the rest (a 48 MP photo's take
        1.9 GB: they are there whatever the tile, and tiny tiles only cost time), and a model that
        tiles exactly at most :data:`EXACT_TILE` px. Depends on the image, the model and the budget
        only, so the same command gives the same file."""
        tile = self.options.tile
        if not tile:
            fits = max(self.one_pass_pixels(h, w), self.budget // 4 // self.bytes_per_pixel)
            if context.glances(self.net):
                fits = min(fits, EXACT_TILE**2)
            if fits >= h * w:
                tile = max(h, w)
            else:
                side = int(fits**0.5) // 64 * 64
                tile = max(side, 2 * self.spec.overlap, MIN_TILE)
        # The model's own overlap shrinks to fit a small tile; one given by the user is kept.
        overlap = min(self.spec.overlap, tile // 2) if self.options.overlap is None else self.options.overlap
        return tile, overlap

    def enhance(self, image: ImageInput, progress: Progress | None = None, *,
                pooled: Sequence[torch.Tensor] | None = None, measured: list[torch.Tensor] | None = None):
        """Enhance ``image``; returns the same kind, ``s`` times larger for output scale ``s``.

        ``image``: a NumPy array, uint8, uint16 or float32/float64 in [0, 1], ``(H, W)`` grey, ``(H, W, 3)``
        RGB or ``(H, W, 4)`` RGBA, channels in RGB order (OpenCV's ``imread`` gives BGR:
        ``cv2.cvtColor(a, cv2.COLOR_BGR2RGB)``); a PIL image; or a path, read as ``lowlight enhance``
        reads it, which gives a NumPy array in the file's depth (uint8 or uint16) and layout. The result
        has the input's dtype, layout and PIL mode; alpha is carried through (resized with a x2 result).
        :class:`errors.ImageArrayError` says what is taken when something else is given
        (:mod:`lowlight_cli.arrays`). Callable as ``enhancer(image)`` too.

        For a model that pools globally (:mod:`lowlight_cli.context`): ``pooled`` replaces the image's
        own global context (one float32 tensor ``(1, C_k, 1, 1)`` per pooling call ``k``); ``measured``,
        a list, receives the image's own as this pass computes it, with ``pooled`` in place
        (:func:`context.measuring`). A video runs each frame with its predecessors' average and
        measures the frame for the next one, in one pass (``video.py``)."""
        picture, give_back = to_picture(image)
        return give_back(self.enhance_picture(picture, progress, pooled=pooled, measured=measured))

    __call__ = enhance

    def enhance_picture(self, picture: Picture, progress: Progress | None = None, *,
                        pooled: Sequence[torch.Tensor] | None = None, measured: list[torch.Tensor] | None = None) -> Picture:
        """``picture`` with its pixels enhanced, alpha and metadata kept: the step every image of
        :meth:`enhance` and of ``lowlight enhance`` goes through."""
        return picture.with_rgb(self._enhance_rgb(picture.rgb, progress, pooled, measured))

    def _enhance_rgb(self, rgb: np.ndarray, progress: Progress | None, pooled: Sequence[torch.Tensor] | None,
                     measured: list[torch.Tensor] | None) -> np.ndarray:
        """``(H, W, 3)`` float32 in [0, 1] -> ``(H*s, W*s, 3)`` float32 in [0, 1], the strength applied."""
        strength = self.options.strength
        if strength == 0.0 and self.scale == 1:
            return rgb.astype(np.float32)  # nothing of the model's output is wanted: skip the work
        out = self._enhance(rgb, progress, pooled, measured)
        if strength >= 1.0:
            return out
        before = rgb if self.scale == 1 else np.clip(
            cv2.resize(rgb, (out.shape[1], out.shape[0]), interpolation=cv2.INTER_CUBIC), 0.0, 1.0)
        return blend(before, out, strength)

    def _enhance(self, rgb: np.ndarray, progress: Progress | None, pooled: Sequence[torch.Tensor] | None,
                 measured: list[torch.Tensor] | None) -> np.ndarray:
        if self.net is None:
            return np.clip(self.spec.enhance(rgb), 0.0, 1.0).astype(np.float32)
        out_h, out_w = rgb.shape[0] * self.scale, rgb.shape[1] * self.scale
        native = self.spec.scale
        if self.scale < native:
            # Edge-replicated to a multiple of the factor first, so that odd sizes come back whole.
            k = native // self.scale
            rgb = downscale(np.pad(rgb, ((0, -rgb.shape[0] % k), (0, -rgb.shape[1] % k), (0, 0)), mode="edge"), k)
        # A view, not a copy (a 48 MP photo's float copy is 576 MB): the tiler copies one tile at a time.
        x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float()
        out = self._run(x, progress, pooled, measured)
        return out[0, :, :out_h, :out_w].clamp_(0.0, 1.0).permute(1, 2, 0).numpy()

    @torch.no_grad()
    def _forward(self, t: torch.Tensor) -> torch.Tensor:
        if self.backend == "onnx":  # global context included (OnnxForward's context graphs)
            return self._onnx(t)
        y = self.net(t)
        if self.dtype != torch.float32 and not torch.isfinite(y).all():
            log.warning("non-finite output in %s; tile recomputed in fp32", self.options.precision)
            y = self.net.float()(t.float())
            self.net.to(self.dtype)
        return y

    def _run(self, x: torch.Tensor, progress: Progress | None, pooled: Sequence[torch.Tensor] | None,
             measured: list[torch.Tensor] | None) -> torch.Tensor:
        self.net.to(self.dtype)
        tile, overlap = self.plan(*x.shape[-2:])
        try:
            return self._tiled(x, tile, overlap, progress, pooled, measured)
        except torch.OutOfMemoryError:
            smaller = max(MIN_TILE // 2, tile // 2)
            log.warning("out of memory with --tile %d; retrying once with --tile %d", tile, smaller)
            torch.cuda.empty_cache()
            try:
                return self._tiled(x, smaller, min(overlap, smaller // 2), progress, pooled, measured)
            except torch.OutOfMemoryError:
                raise LowlightError(
                    f"out of memory on {self.device} even with --tile {smaller}",
                    "try a smaller --tile or --memory, --precision fp16 on CUDA, or --device cpu",
                ) from None

    def _tiled(self, x: torch.Tensor, tile: int, overlap: int, progress: Progress | None,
               pooled: Sequence[torch.Tensor] | None, measured: list[torch.Tensor] | None) -> torch.Tensor:
        """Tiles blended. A model that pools globally gets ``pooled`` if given, else the whole image's
        context when the image takes more than one tile (:mod:`lowlight_cli.context`); ``measured``
        receives the image's own (see :meth:`__call__`)."""
        h, w = x.shape[-2:]
        kwargs = dict(overlap=overlap, scale=self.spec.scale, multiple=self.spec.size_multiple,
                      device=self.device, dtype=self.dtype)
        whole = tile >= max(h, w)
        if context.glances(self.net):
            return self._glanced(x, tile, progress, pooled, measured, kwargs)
        if self.spec.tile_safe or (whole and pooled is None and measured is None):
            return tiled_forward(self._forward, x, tile=tile, progress=progress, **kwargs)
        if whole and measured is not None:  # one pass measures its own context as it runs
            with context.measuring(self.net, pooled) as means:
                y = tiled_forward(self._forward, x, tile=tile, progress=progress, **kwargs)
            measured[:] = means
            return y
        if not whole and (pooled is None or measured is not None):
            own = self.global_context(x, tile, overlap, progress)
            if measured is not None:
                measured[:] = own
            pooled = own if pooled is None else pooled
        with context.replaying(self.net, pooled):
            return tiled_forward(self._forward, x, tile=tile, progress=progress, **kwargs)

    def _glanced(self, x: torch.Tensor, tile: int, progress: Progress | None, pooled: Sequence[torch.Tensor] | None,
                 measured: list[torch.Tensor] | None, kwargs: dict) -> torch.Tensor:
        """Tiles (or one pass) of a model that glances at the whole picture (:class:`context.Glance`):
        the glance of the picture, padded as one pass pads it, is taken once and handed to every tile
        with the tile's place, so tiles equal one pass. ``pooled`` (a video's average) replaces it,
        ``measured`` receives it, each as a one-item list."""
        [module] = context.glances(self.net)
        padded, _, _ = pad_to_multiple(x, self.spec.size_multiple)
        own = [context.glance_of(padded, module.size)]
        if measured is not None:
            measured[:] = own
        given = own if pooled is None else pooled
        with context.glancing(self.net, given[0], *padded.shape[-2:]) as seen:
            return tiled_forward(self._forward, x, tile=tile, progress=progress, place=seen.place, **kwargs)

    def global_context(self, x: torch.Tensor, tile: int, overlap: int, progress: Progress | None) -> list[torch.Tensor]:
        """Every global pooling's whole-image value for ``x`` ``(1, 3, H, W)``.

        One pass over ``x`` gives it exactly when ``x`` fits the memory budget (tiles were asked for
        with ``--tile``). Otherwise a pass over a copy downscaled to fit gives a first estimate and one
        sweep over the tiles measures it on the full-resolution features
        (:func:`context.whole_image_context`): the downscaled estimate alone is not enough, a dark
        photo's context from a copy at 1/1.85 of its side left tiles 34 dB from the whole pass
        (bench/bench_tiling.py), the sweep 57 dB and more.
        """
        h, w = x.shape[-2:]
        m = self.spec.size_multiple
        k = min(1.0, (self.one_pass_pixels(h, w) / (h * w)) ** 0.5)
        small_h, small_w = max(m, round(h * k) // m * m), max(m, round(w * k) // m * m)
        small = torch.nn.functional.interpolate(x, size=(small_h, small_w), mode="area") if k < 1 else x

        def run(crop: torch.Tensor) -> None:
            run_padded(self._forward, crop.to(device=self.device, dtype=self.dtype), multiple=m, scale=self.spec.scale)

        rows, cols = tile_spans(h, tile, overlap, m), tile_spans(w, tile, overlap, m)
        tiles = [(x[..., y0:y1, x0:x1], (cy, cx)) for (y0, y1), cy in zip(rows, owned_cells(rows, m))
                 for (x0, x1), cx in zip(cols, owned_cells(cols, m))]
        sweeps = 0 if k == 1.0 else 1
        return context.whole_image_context(self.net, run, small, tiles, sweeps=sweeps, progress=progress)


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
