"""Training: a :class:`TrainConfig` in, a run folder that describes itself out.

``fit(config)`` reads top to bottom: resolve the config from the model's recipe, load the pairs into
memory, split off whole scene groups for validation, build net + loss + Adam, (resume,) then loop:
``lr_at(step)`` -> batch -> loss -> step -> log -> validate -> checkpoint. At the end the best
checkpoint (by validation PSNR, never by eval15) is exported to safetensors.

Run folder::

    RUN_DIR/config.json    the resolved TrainConfig, the command line, versions, hardware
    RUN_DIR/train.log      one plain line per log step and per validation
    RUN_DIR/last.pt        weights, optimizer, step, every RNG state, config: resume from here
    RUN_DIR/best.pt        weights with the best validation PSNR so far
    RUN_DIR/export/<model>.safetensors

Batches are cropped from uint8 images held in memory by one seeded ``numpy.random.Generator`` per
rank, in the main process (no DataLoader workers): cropping is cheap next to the network, and a single
generator whose state goes into the checkpoint makes a resumed run bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import platform
import shlex
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.distributed as dist
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn

from . import registry, weights
from .data import IMAGE_SUFFIXES, default_lol_roots, find_pairs
from .errors import DatasetError, TrainingError, UsageError
from .inference import downscale as _downscale
from .inference import pick_device
from .metrics import psnr
from .tiling import run_padded
from .weights import save_weights

CKPT_VERSION = 1
# Non-finite gradient steps skipped in one process before a run is declared diverged.
MAX_SKIPPED = 10
# TrainConfig fields that default to the model's TrainRecipe when left None.
RECIPE_FIELDS = (
    "steps", "batch", "patch", "lr", "weight_decay", "milestones", "gamma", "input_downscale", "clip_grad",
    "schedule", "ema", "mix_identity", "mix_global", "mix_spatial",
)
SCHEDULES = ("step", "cosine")
ENGINES = ("auto", "fp32", "channels_last", "bf16")
# Identity PSNR above this adds nothing to the checkpoint choice (see ``selection_score``).
IDENTITY_CAP_DB = 32.0
# Held-out images per extra validation set (identity, mixed), each at half the LOL size.
EXTRA_VAL_IMAGES = 12


@dataclass(kw_only=True)
class TrainConfig:
    """Everything that determines a run. ``None`` fields are filled from the model's :class:`TrainRecipe`.

    ``data_dir``: the LOL root (holding ``our485/`` and ``scenes.csv``); ``None`` searches
    :func:`data.default_lol_roots`. ``synthetic``: a folder of normal-light photos; pairs are then made
    by :func:`darken` and ``data_dir`` is unused. ``photos``: normal-light photos added to the LOL
    targets as sources of the mixture's synthetic pairs. ``steps`` counts optimizer steps; ``batch`` is per
    process. ``engine``: how a CPU step runs (``auto``: the fastest this CPU has, see :func:`pick_engine`). ``val_crop``: 0 validates on whole images, N on their centre N x N crop.
    ``threads``: torch CPU threads per process (0: torch's default, divided among local DDP ranks).
    """

    model: str
    out: Path
    dataset: str = "lol"
    data_dir: Path | None = None
    synthetic: Path | None = None
    photos: Path | None = None
    steps: int | None = None
    batch: int | None = None
    patch: int | None = None
    lr: float | None = None
    weight_decay: float | None = None
    milestones: tuple[float, ...] | None = None
    gamma: float | None = None
    input_downscale: int | None = None
    clip_grad: float | None = None
    schedule: str | None = None
    ema: float | None = None
    mix_identity: float | None = None
    mix_global: float | None = None
    mix_spatial: float | None = None
    engine: str = "auto"
    init: Path | None = None
    train_only: str = ""
    warmup: int = 0
    seed: int = 0
    split_seed: int = 0
    val_fraction: float = 0.1
    val_crop: int = 0
    val_every: int = 250
    ckpt_every: int = 250
    log_every: int = 10
    threads: int = 0
    device: str = "auto"
    resume: bool = False

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for k, v in d.items():
            if isinstance(v, Path):
                d[k] = str(v)
            elif isinstance(v, tuple):
                d[k] = list(v)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        d = dict(d)
        for k in ("out", "data_dir", "synthetic", "photos", "init"):
            if d.get(k) is not None:
                d[k] = Path(d[k])
        if d.get("milestones") is not None:
            d["milestones"] = tuple(d["milestones"])
        # Runs saved before clipping existed trained without it; a resume keeps it that way.
        d.setdefault("clip_grad", 0.0)
        # Runs saved before these existed: step decays, no average, LOL pairs only.
        for k, v in (("schedule", "step"), ("ema", 0.0), ("mix_identity", 0.0), ("mix_global", 0.0), ("mix_spatial", 0.0),
                     ("train_only", "")):
            d.setdefault(k, v)
        return cls(**d)

    def mixture(self) -> dict[str, float]:
        """The batch mixture: fraction of each kind of pair (``lol`` is the rest)."""
        mix = {"identity": self.mix_identity, "global": self.mix_global, "spatial": self.mix_spatial}
        return mix | {"lol": round(1.0 - sum(mix.values()), 6)}


def resolve(config: TrainConfig) -> TrainConfig:
    """``config`` with every ``None`` recipe field taken from the model's recipe, and checked."""
    spec = registry.get(config.model)
    if spec.recipe is None:
        raise UsageError(f"{spec.name} has no training recipe", "`lowlight models` lists the learned models")
    filled = {f: getattr(spec.recipe, f) if getattr(config, f) is None else getattr(config, f) for f in RECIPE_FIELDS}
    c = dataclasses.replace(config, model=spec.name, **filled)
    for name in ("steps", "batch", "patch", "val_every", "ckpt_every", "log_every", "input_downscale"):
        if getattr(c, name) < 1:
            raise UsageError(f"{name} must be >= 1, got {getattr(c, name)}", None)
    if not 0.0 < c.val_fraction < 1.0:
        raise UsageError(f"val_fraction must be in (0, 1), got {c.val_fraction}", None)
    if c.lr <= 0:
        raise UsageError(f"lr must be > 0, got {c.lr}", None)
    if c.clip_grad < 0:
        raise UsageError(f"clip_grad must be >= 0 (0: no clipping), got {c.clip_grad}", None)
    if c.schedule not in SCHEDULES:
        raise UsageError(f"unknown schedule {c.schedule!r}", f"use one of {', '.join(SCHEDULES)}")
    if not 0.0 <= c.ema < 1.0:
        raise UsageError(f"ema must be in [0, 1), got {c.ema}", "0 turns the weight average off; 0.999 is typical")
    fractions = (c.mix_identity, c.mix_global, c.mix_spatial)
    if any(f < 0 for f in fractions) or sum(fractions) > 1.0 + 1e-9:
        raise UsageError(f"mixture fractions must be >= 0 and sum to at most 1, got {fractions}", None)
    if c.engine not in ENGINES:
        raise UsageError(f"unknown engine {c.engine!r}", f"use one of {', '.join(ENGINES)}")
    if c.train_only and c.init is None:
        raise UsageError(f"--train-only {c.train_only}: the rest of the network would stay random", "give --init FILE")
    return c


def lr_at(step: int, config: TrainConfig) -> float:
    """Learning rate for optimizer step ``step`` (0-based): a pure function of the step and the config.

    Linear warmup over ``config.warmup`` steps, then either ``lr * gamma ** k`` where ``k`` counts the
    milestones (fractions of ``config.steps``) already passed (``schedule="step"``), or a half cosine
    from ``lr`` at the end of warm-up to ``lr * gamma`` at the last step (``"cosine"``).
    ``config`` must be resolved.
    """
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    if config.schedule == "cosine":
        t = (step - config.warmup) / max(1, config.steps - 1 - config.warmup)
        floor = config.lr * config.gamma
        return floor + (config.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))
    passed = sum(step >= round(m * config.steps) for m in config.milestones)
    return config.lr * config.gamma**passed


# ---------------------------------------------------------------- data


def read_rgb(path: Path) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB. Raises DatasetError when the file cannot be decoded."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise DatasetError(f"cannot decode {path}", "remove or replace the file")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


@dataclass
class Images:
    """Decoded images kept in memory: ``high[i]`` always; ``low[i]`` for real pairs, None for synthetic."""

    stems: list[str]
    high: list[np.ndarray]
    low: list[np.ndarray] | None

    def subset(self, idx: list[int]) -> Images:
        return Images([self.stems[i] for i in idx], [self.high[i] for i in idx],
                      None if self.low is None else [self.low[i] for i in idx])


def _decode_all(paths: list[Path]) -> list[np.ndarray]:
    # cv2 releases the GIL while decoding, so two threads halve the start-up wait.
    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(read_rgb, paths))


def load_lol(root: Path) -> Images:
    pairs = find_pairs(root / "our485")
    return Images([p.stem for p in pairs], _decode_all([p.high for p in pairs]), _decode_all([p.low for p in pairs]))


def load_photos(folder: Path) -> Images:
    if not folder.is_dir():
        raise DatasetError(f"{folder} is not a folder", "--synthetic takes a folder of normal-light photos")
    paths = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if len(paths) < 2:
        raise DatasetError(f"{folder} holds {len(paths)} images", "synthetic training needs at least 2 (train + validation)")
    # Stems are paths below the folder, so kodak/01 and city/01 stay apart.
    return Images([p.relative_to(folder).with_suffix("").as_posix() for p in paths], _decode_all(paths), None)


def read_scenes(path: Path) -> dict[str, str]:
    """``id -> scene`` from a ``scenes.csv`` with columns ``id,scene``; empty when the file is absent."""
    if not path.is_file():
        return {}
    with open(path, newline="") as f:
        return {row["id"]: row["scene"] for row in csv.DictReader(f)}


def split_by_scene(stems: list[str], scenes: dict[str, str], *, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices ``(train, val)``: a seeded choice of ``ceil(fraction * groups)`` whole scene groups is held out.

    Near-identical shots of one scene would leak between a random split's halves, so whole groups
    move together. Stems missing from ``scenes`` form a group of their own.
    """
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(stems):
        groups.setdefault(scenes.get(s, f"stem:{s}"), []).append(i)
    names = sorted(groups)
    n_val = min(len(names) - 1, max(1, math.ceil(fraction * len(names))))
    if n_val < 1:
        raise DatasetError("a validation split needs at least two scene groups", "add images or scenes")
    order = np.random.default_rng(seed).permutation(len(names))
    val_groups = {names[i] for i in order[:n_val]}
    train = [i for g in names if g not in val_groups for i in groups[g]]
    val = [i for g in names if g in val_groups for i in groups[g]]
    return sorted(train), sorted(val)


LOL_EXPOSURE = (0.02, 0.2)   # LOL-dark: 1/50 to 1/5 of the light
WIDE_EXPOSURE = (0.02, 1.0)  # from LOL-dark to unchanged
LIT_EXPOSURE = (0.5, 1.0)    # the lit part of a spatially varying exposure


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


def darken(
    rgb: np.ndarray, rng: np.random.Generator, *, exposure: tuple[float, float] = LOL_EXPOSURE, spatial: bool = False
) -> np.ndarray:
    """Synthesize a low-light shot from a normal-light one: ``(H, W, 3)`` float32 [0, 1] -> same, darker.

    The model, applied in (approximately) linear light so that noise behaves like a sensor's:

    1. linearize: ``L = rgb ** 2.2``;
    2. exposure: ``E = L * k`` with ``k`` log-uniform in ``exposure`` (default [0.02, 0.2], 1/50 to 1/5
       of the light); with ``spatial``, ``k`` is a map that rises (log-linearly) from that value in the
       dark to one log-uniform in [0.5, 1] where :func:`lit_mask` is 1: a lamp or a sky stays lit;
    3. Poisson-Gaussian noise: ``N = Poisson(E * P) / P + Normal(0, s)`` with ``P`` (photons at full
       scale) log-uniform in [300, 3000] and read noise ``s`` uniform in [0.001, 0.01];
    4. back to display with a random tone curve: ``clip(N, 0, 1) ** (1 / g)``, ``g`` uniform in [1.8, 2.6];
    5. quantize to 8 bits, as a camera file would be.

    Every random number comes from ``rng``, so the same generator state gives the same image.
    """
    k = math.exp(rng.uniform(math.log(exposure[0]), math.log(exposure[1])))
    photons = math.exp(rng.uniform(math.log(300.0), math.log(3000.0)))
    read = rng.uniform(0.001, 0.01)
    g = rng.uniform(1.8, 2.6)
    if spatial:
        lit = math.exp(rng.uniform(math.log(LIT_EXPOSURE[0]), math.log(LIT_EXPOSURE[1])))
        m = lit_mask(rgb.shape[0], rgb.shape[1], rng).astype(np.float64)
        k = np.exp(math.log(k) + m * (math.log(max(lit, k)) - math.log(k)))
    linear = np.power(rgb.astype(np.float64), 2.2) * k
    noisy = rng.poisson(linear * photons) / photons + rng.normal(0.0, read, size=rgb.shape)
    out = np.power(np.clip(noisy, 0.0, 1.0), 1.0 / g)
    return (np.round(out * 255.0) / 255.0).astype(np.float32)


def _dihedral(a: np.ndarray, rot: int, flip: int) -> np.ndarray:
    a = np.rot90(a, rot)
    return a[:, ::-1] if flip else a


def _to_float(a: np.ndarray) -> np.ndarray:
    return a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else a


def _to_tensor(arrays: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(np.stack(arrays).transpose(0, 3, 1, 2)))


def synthesize(high: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """The input of a synthetic pair of ``kind`` (``identity``, ``global``, ``spatial``, ``lol``) for ``high``."""
    if kind == "identity":
        return high
    if kind == "global":
        return darken(high, rng, exposure=WIDE_EXPOSURE)
    return darken(high, rng, spatial=kind == "spatial")


def _pick_kind(mixture: dict[str, float] | None, rng: np.random.Generator) -> str:
    if not mixture or mixture["lol"] >= 1.0:
        return "lol"  # no draw: LOL-only runs keep the batches they always had
    u, edge = rng.random(), 0.0
    for kind in ("identity", "global", "spatial"):
        edge += mixture[kind]
        if u < edge:
            return kind
    return "lol"


def sample_batch(
    images: Images, rng: np.random.Generator, *, batch: int, patch: int, downscale: int,
    mixture: dict[str, float] | None = None, photos: Images | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A random batch: ``low (B, 3, patch, patch)`` and ``high (B, 3, patch*k, patch*k)``, float in [0, 1].

    Each item: its kind drawn from ``mixture`` (see :meth:`TrainConfig.mixture`; a real pair when
    absent), an image drawn uniformly (with replacement; synthetic kinds draw from ``images`` and
    ``photos`` together), a random ``patch * k`` crop, one of the 8 flips/90-degree rotations, the
    input of a synthetic pair made fresh by :func:`synthesize`, and when ``k = downscale > 1`` a
    bicubic downsampling of the input crop by ``k`` (the target keeps the full crop).
    """
    crop = patch * downscale
    pool = images.high + (photos.high if photos is not None else [])
    stems = images.stems + (photos.stems if photos is not None else [])
    lows, highs = [], []
    for _ in range(batch):
        kind = _pick_kind(mixture, rng)
        real = kind == "lol" and images.low is not None
        i = int(rng.integers(len(images.high) if real else len(pool)))
        h, w = pool[i].shape[:2]
        if h < crop or w < crop:
            raise DatasetError(f"image {stems[i]} is {w}x{h}, smaller than the {crop} px crop", "lower --patch")
        y, x = int(rng.integers(h - crop + 1)), int(rng.integers(w - crop + 1))
        rot, flip = int(rng.integers(4)), int(rng.integers(2))
        high = _to_float(_dihedral(pool[i][y : y + crop, x : x + crop], rot, flip))
        if real:
            low = _to_float(_dihedral(images.low[i][y : y + crop, x : x + crop], rot, flip))
        else:
            low = synthesize(high, kind, rng)
        if downscale > 1:
            low = _downscale(low, downscale)
        lows.append(np.ascontiguousarray(low))
        highs.append(np.ascontiguousarray(high))
    return _to_tensor(lows), _to_tensor(highs)


def validation_pairs(images: Images, *, seed: int, crop: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Fixed ``(low, high)`` float32 pairs for validation; synthetic lows are darkened once, per-image seeded."""
    pairs = []
    for j, high in enumerate(images.high):
        high = _to_float(high)
        low = darken(high, np.random.default_rng([seed, 1, j])) if images.low is None else _to_float(images.low[j])
        if crop:
            h, w = high.shape[:2]
            c = min(crop, h, w)
            y, x = (h - c) // 2, (w - c) // 2
            low, high = low[y : y + c, x : x + c], high[y : y + c, x : x + c]
        pairs.append((low, high))
    return pairs


Pairs = list[tuple[np.ndarray, np.ndarray]]


def extra_validation_sets(highs: list[np.ndarray], *, seed: int) -> dict[str, Pairs]:
    """The held-out sets that see the over-brightening failure, made from held-out normal-light images.

    ``identity``: each image against itself (a well-exposed photo must come back as it was);
    ``mixed``: a spatially varying darkening (:func:`darken` with ``spatial``) against the original.
    Up to :data:`EXTRA_VAL_IMAGES` images, evenly spaced, each at half size (even sides) to keep a
    validation pass short. Seeded per image, so every pass sees the same pairs.
    """
    step = max(1, len(highs) // EXTRA_VAL_IMAGES)
    picked = [_to_float(h) for h in highs[::step][:EXTRA_VAL_IMAGES]]
    half = [_downscale(h[: h.shape[0] // 4 * 4, : h.shape[1] // 4 * 4], 2) for h in picked]
    return {
        "identity": [(h, h) for h in half],
        "mixed": [(darken(h, np.random.default_rng([seed, 2, j]), spatial=True), h) for j, h in enumerate(half)],
    }


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


# ---------------------------------------------------------------- engine


def cpu_features() -> set[str]:
    """The CPU flags that matter for training speed (``avx512_bf16``, ``amx_bf16``, ``avx512f``, ``avx2``)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return {f for f in flags if f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")}


def pick_engine(name: str, device: torch.device) -> str:
    """The engine ``auto`` means here: bf16 autocast where the CPU computes bf16 natively (AVX-512 BF16 or
    AMX), else channels-last fp32 (``bench/bench_train.py``: faster than contiguous fp32 for mirnet and
    msrnet on every CPU measured, for neid on two of three, 0.93x on the EPYC without AVX-512 where nothing
    beat 1.11x); CUDA keeps plain fp32. An explicit ``bf16`` without native support is refused.
    """
    native_bf16 = bool(cpu_features() & {"avx512_bf16", "amx_bf16"})
    if name == "bf16" and device.type == "cpu" and not native_bf16:
        raise UsageError("--engine bf16: this CPU has no native bf16 (AVX-512 BF16 or AMX)", "use --engine auto")
    if name != "auto":
        return name
    if device.type != "cpu":
        return "fp32"
    return "bf16" if native_bf16 else "channels_last"


class EngineForward(nn.Module):
    """``net`` run the way ``engine`` says; outputs are always fp32 in the default memory layout, so
    the loss (and the weights, the optimizer) stay fp32 whatever the engine."""

    def __init__(self, net: nn.Module, engine: str) -> None:
        super().__init__()
        self.net, self.engine = net, engine
        if engine in ("channels_last", "bf16"):
            net.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor, **kwargs: Any) -> Any:
        if self.engine in ("channels_last", "bf16"):
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.engine == "bf16"):
            y = self.net(x, **kwargs)
        return tuple(t.float().contiguous() for t in y) if isinstance(y, tuple) else y.float().contiguous()


@torch.no_grad()
def ema_update(avg: nn.Module, net: nn.Module, decay: float) -> None:
    """``avg = decay * avg + (1 - decay) * net``, parameters and float buffers alike."""
    for a, p in zip(avg.state_dict().values(), net.state_dict().values()):
        if a.dtype.is_floating_point:
            a.lerp_(p, 1.0 - decay)
        else:
            a.copy_(p)


# ---------------------------------------------------------------- checkpoints


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file in the same folder, then ``os.replace``: never a partial file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _hardware(device: torch.device, world: int, threads: int) -> str:
    if device.type == "cuda":
        return f"{world}x {torch.cuda.get_device_name(device)}"
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"CPU {name}, {world} process(es) x {threads} thread(s)"


def _pick_device(name: str, local_rank: int) -> torch.device:
    device = pick_device(name)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
    return device


def _load_checkpoint(path: Path) -> dict[str, Any]:
    # weights_only: a checkpoint is plain tensors, numbers, strings and lists; nothing executable.
    return torch.load(path, map_location="cpu", weights_only=True)


# ---------------------------------------------------------------- training


def _lol_root(config: TrainConfig) -> Path:
    if config.dataset != "lol":
        raise UsageError(f"unknown dataset {config.dataset!r}", "use --dataset lol, or --synthetic DIR for your own photos")
    candidates = [Path(config.data_dir)] if config.data_dir is not None else default_lol_roots()
    for root in candidates:
        if (root / "our485").is_dir():
            return root
    raise DatasetError(
        f"no LOL training split (our485/) in {', '.join(map(str, candidates))}",
        "pass --data-dir pointing at the folder that holds our485/ and scenes.csv",
    )


def _warn_ignored(given: TrainConfig, saved: TrainConfig) -> None:
    """Say which explicitly given options a resume ignores (the saved config wins)."""
    defaults = TrainConfig(model=given.model, out=given.out)
    ignored = [
        f.name for f in dataclasses.fields(TrainConfig)
        if f.name not in ("resume", "out", "model", "device", "threads", "engine", "steps")
        and getattr(given, f.name) is not None
        and getattr(given, f.name) != getattr(defaults, f.name)
        and getattr(given, f.name) != getattr(saved, f.name)
    ]
    if ignored:
        Console(stderr=True).print(
            f"resuming with the saved config; ignoring {', '.join(ignored)}", highlight=False, markup=False
        )


def _with_steps(saved: TrainConfig, steps: int, *, done: int) -> TrainConfig:
    """``saved`` with a new step count, allowed only while it leaves the learning rates already used unchanged.

    Milestones are fractions of ``steps``, so a new count moves them; before the first one is reached
    the resumed run is then exactly the run a fresh ``--steps`` would have given (batches do not depend
    on ``steps``). After it, the change would rewrite history, and is refused.
    """
    changed = dataclasses.replace(saved, steps=steps)
    if steps < done or any(lr_at(s, changed) != lr_at(s, saved) for s in range(done)):
        raise UsageError(
            f"cannot change --steps from {saved.steps} to {steps} at step {done}: the learning rates already used would change",
            "resume without --steps, or start a new run",
        )
    return changed


def _command_line() -> str:
    # Under `python -m lowlight_cli.cli` or torchrun argv[0] is cli.py; users type `lowlight`.
    prog = Path(sys.argv[0]).name
    return shlex.join(["lowlight" if prog in ("cli.py", "lowlight") else prog, *sys.argv[1:]])


def _cli_command(config: TrainConfig) -> str:
    """The ``lowlight train`` command that reproduces ``config`` from scratch, however the run was resumed."""
    args = ["lowlight", "train", "--model", config.model]
    if config.synthetic is not None:
        args += ["--synthetic", str(config.synthetic)]
    else:
        args += ["--dataset", config.dataset] + (["--data-dir", str(config.data_dir)] if config.data_dir else [])
    args += ["--photos", str(config.photos)] if config.photos is not None else []
    args += ["--out", str(config.out)] + (["--init", str(config.init)] if config.init is not None else [])
    args += ["--train-only", config.train_only] if config.train_only else []
    names = ["steps", "batch", "patch", "lr", "clip_grad", "seed", "val_every", "ckpt_every"]
    names += ["schedule", "ema", "mix_identity", "mix_global", "mix_spatial"] if config.mixture()["lol"] < 1.0 or config.ema or config.schedule != "step" else []
    for name in names:
        args += [f"--{name.replace('_', '-')}", str(getattr(config, name))]
    return shlex.join(args)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _toml(value: Any) -> str:
    """A TOML value for the few types a weights entry holds (JSON string escapes are valid TOML)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML form for {type(value).__name__}")


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{round(seconds)}s"
    m = int(round(seconds / 60))
    return f"{m // 60}h{m % 60:02d}m" if m >= 60 else f"{m}m"


def fit(config: TrainConfig) -> Path:
    """Train as ``config`` says; returns the run folder. ``config.resume`` continues from ``last.pt``.

    Under ``torchrun`` (``WORLD_SIZE > 1``) every rank trains on its own batches (generators seeded by
    rank) through DistributedDataParallel; rank 0 alone logs, validates, checkpoints and exports.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    run_dir = Path(config.out)
    last_path, best_path = run_dir / "last.pt", run_dir / "best.pt"

    # The saved config wins on resume: changing steps or lr mid-run would change lr_at's schedule.
    resumed: dict[str, Any] | None = None
    if config.resume:
        if not last_path.is_file():
            raise UsageError(f"nothing to resume: {last_path} does not exist", "drop --resume to start a new run")
        resumed = _load_checkpoint(last_path)
        saved = TrainConfig.from_dict(resumed["config"])
        _warn_ignored(config, saved)
        if config.steps is not None and config.steps != saved.steps:
            saved = _with_steps(saved, config.steps, done=resumed["step"])
        # Where and on what to run may change between sessions; nothing that shapes the run may.
        config = dataclasses.replace(saved, resume=True, out=config.out, device=config.device, threads=config.threads,
                                     engine=config.engine)
    elif last_path.exists():
        raise UsageError(f"{run_dir} already holds a run", "add --resume to continue it, or pick another --out")
    config = resolve(config)
    spec = registry.get(config.model)
    device = _pick_device(config.device, local_rank)
    threads = config.threads or max(1, (os.cpu_count() or 1) // local_world)
    torch.set_num_threads(threads)
    # Tiny gradients late in training (after lr decays) produce denormal floats, which made CPU steps
    # 6x slower here; flushing them to zero changes nothing measurable in the result.
    torch.set_flush_denormal(True)
    if world > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    main = rank == 0
    console = Console(stderr=True, soft_wrap=True)  # log lines stay whole in a log file
    try:
        # Data: decoded once, kept in memory as uint8; validation holds out whole scene groups.
        if config.synthetic is not None:
            images = load_photos(Path(config.synthetic))
            scenes = read_scenes(Path(config.synthetic) / "scenes.csv")
        else:
            root = _lol_root(config)
            images = load_lol(root)
            scenes = read_scenes(root / "scenes.csv")
        train_idx, val_idx = split_by_scene(images.stems, scenes, fraction=config.val_fraction, seed=config.split_seed)
        train_set = images.subset(train_idx)
        val_stems = [images.stems[i] for i in val_idx]
        val_sets: dict[str, Pairs] = {}
        if main:
            val_sets["lol"] = validation_pairs(images.subset(val_idx), seed=config.split_seed, crop=config.val_crop)
        photos = None
        if config.photos is not None:
            photos_all = load_photos(Path(config.photos))
            p_train, p_val = split_by_scene(photos_all.stems, {}, fraction=config.val_fraction, seed=config.split_seed)
            photos = photos_all.subset(p_train)
            # Half LOL targets, half photos: both kinds of well-exposed image are judged.
            lol_highs = [images.high[i] for i in val_idx]
            half = EXTRA_VAL_IMAGES // 2
            held_out_highs = lol_highs[:: max(1, len(lol_highs) // half)][:half] + [photos_all.high[i] for i in p_val][:half]
            val_stems = val_stems + [f"photos/{photos_all.stems[i]}" for i in p_val]
        else:
            held_out_highs = [images.high[i] for i in val_idx]
        mixture = config.mixture()
        if main and mixture["lol"] < 1.0:
            val_sets |= extra_validation_sets(held_out_highs, seed=config.split_seed)
        del images, held_out_highs

        # Model, objective, optimizer. Weight decay (the paper's L2 term) on conv/linear weights only.
        torch.manual_seed(config.seed)
        net = spec.create().to(device)
        loss_fn = spec.recipe.loss().to(device)
        engine = pick_engine(config.engine, device)
        # --train-only PREFIX: the rest of the network (from --init) is frozen, so backward stops at the part trained.
        trained = [p for n, p in net.named_parameters() if n.startswith(config.train_only)]
        if not trained:
            names = sorted({n.split(".")[0] for n, _ in net.named_parameters()})
            raise UsageError(f"--train-only {config.train_only}: no parameter of {spec.name} starts with it", f"its parts: {', '.join(names)}")
        for n, p in net.named_parameters():
            p.requires_grad_(n.startswith(config.train_only))
        decay = [p for p in trained if p.ndim > 1]
        no_decay = [p for p in trained if p.ndim <= 1]
        opt = torch.optim.Adam(
            [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=config.lr,
        )
        rng = np.random.default_rng([config.seed, rank])
        step, best_psnr, trained_s, init_sha = 0, -math.inf, 0.0, None
        if resumed is not None:
            if len(resumed["loader_rng"]) != world:
                raise UsageError(
                    f"the run was saved by {len(resumed['loader_rng'])} process(es), not {world}",
                    "resume with the same --nproc_per_node",
                )
            net.load_state_dict(resumed["model"])
            opt.load_state_dict(resumed["optimizer"])
            if config.ema:
                avg_state = resumed["ema"]
            rng.bit_generator.state = resumed["loader_rng"][rank]
            torch.set_rng_state(resumed["torch_rng"])
            step, best_psnr, trained_s = resumed["step"], resumed["best_psnr"], resumed["trained_seconds"]
        elif config.init is not None:
            # Fine-tuning: trained weights replace the random ones; the optimizer and schedule start fresh.
            init_sha, fresh = weights.init_from(net, config.init, arch=spec.name)
        # The weight average starts as a copy and follows net; it is what validation and export see.
        avg = None
        if config.ema:
            avg = spec.create().to(device)
            avg.load_state_dict(avg_state if resumed is not None else net.state_dict())
            avg.eval()
        del resumed
        fast = EngineForward(net, engine)
        model = nn.parallel.DistributedDataParallel(fast, device_ids=[device] if device.type == "cuda" else None) if world > 1 else fast
        model.train()

        hardware = _hardware(device, world, threads) + f", engine {engine}"
        if main:
            run_dir.mkdir(parents=True, exist_ok=True)
            meta_path = run_dir / "config.json"
            meta = {
                "train_config": config.to_dict(),
                "command": _command_line(),
                "model_hparams": _jsonable(spec.hparams),
                "world_size": world,
                "hardware": hardware,
                "torch": torch.__version__,
                "train_images": len(train_set.stems),
                "train_photos": len(photos.stems) if photos is not None else 0,
                "mixture": mixture,
                "val_stems": val_stems,
            }
            if init_sha is not None:
                meta["init_sha256"] = init_sha
                meta["init_fresh"] = fresh
            if step and meta_path.is_file():
                # Keep the command that started the run (export reports it); note each resume.
                first = json.loads(meta_path.read_text())
                first.setdefault("resumed", []).append({"step": step, "command": meta["command"], "hardware": hardware})
                first["train_config"] = meta["train_config"]
                meta = first
            meta_path.write_text(json.dumps(meta, indent=2) + "\n")
        def log(line: str) -> None:
            if main:
                console.print(line, highlight=False, markup=False)
                # Opened per line (a few times a minute) so a killed run leaves a complete log.
                with open(run_dir / "train.log", "a") as f:
                    f.write(line + "\n")

        log(f"# {'resumed' if step else 'started'} {time.strftime('%Y-%m-%d %H:%M:%S')} model={config.model} "
            f"step={step}/{config.steps} train_images={len(train_set.stems)} val_images={len(val_idx)} {hardware}")
        if not step and init_sha is not None and fresh:
            log(f"# --init {config.init.name}: {len(fresh)} tensors it lacks start fresh: {', '.join(fresh)}")
        progress = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                            TextColumn("{task.fields[info]}"), console=console, disable=not main)
        def run_validation() -> tuple[dict[str, float], float]:
            t0 = time.perf_counter()
            judged = avg if avg is not None else net
            scores = {k: validate(judged, pairs, spec=spec, downscale=config.input_downscale, device=device)
                      for k, pairs in val_sets.items()}
            score = selection_score(scores)
            parts = "".join(f" {k} {v:.3f}" for k, v in scores.items() if k != "lol")
            log(f"val step {step} psnr {scores['lol']:.3f}{parts} score {score:.3f} ({time.perf_counter() - t0:.1f}s)")
            return scores, score

        if main and step == 0 and config.init is not None:
            run_validation()  # where the fine-tune starts, on every validation set
        with progress:
            task = progress.add_task("train", total=config.steps, completed=step, info="")
            window_t, window_steps, window_loss, window_parts = time.perf_counter(), 0, 0.0, {}
            window_gnorm, skipped = 0.0, 0
            run_t0, trained_before = window_t, trained_s
            while step < config.steps:
                lr = lr_at(step, config)
                for group in opt.param_groups:
                    group["lr"] = lr
                low, high = sample_batch(train_set, rng, batch=config.batch, patch=config.patch, downscale=config.input_downscale,
                                         mixture=mixture, photos=photos)
                loss, parts = loss_fn(model, low.to(device), high.to(device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                # The norm before clipping is logged (its window maximum): a spike warns of divergence.
                gnorm = float(nn.utils.clip_grad_norm_(net.parameters(), config.clip_grad or math.inf))
                if not math.isfinite(gnorm):
                    # One bad batch must not poison Adam's moments: skip it, count it, and stop if it persists.
                    skipped += 1
                    log(f"step {step + 1} skipped: gradient norm {gnorm}")
                    if skipped >= MAX_SKIPPED:
                        raise TrainingError(
                            f"{skipped} steps had non-finite gradients; the run has diverged",
                            "resume from an earlier checkpoint copy, or start a new run with a lower --lr or a --clip-grad",
                        )
                    continue
                opt.step()
                if avg is not None:
                    # Warm-up of the decay: early on the average must not hold on to the random start.
                    ema_update(avg, net, min(config.ema, (1 + step) / (10 + step)))
                step += 1
                window_steps += 1
                window_gnorm = max(window_gnorm, gnorm)
                window_loss += float(loss.detach())
                for k, v in parts.items():
                    window_parts[k] = window_parts.get(k, 0.0) + float(v)
                progress.update(task, completed=step)

                if step % config.log_every == 0 or step == config.steps:
                    now = time.perf_counter()
                    ips = window_steps * config.batch * world / max(now - window_t, 1e-9)
                    extra = " ".join(f"{k} {v / window_steps:.5f}" for k, v in window_parts.items())
                    log(f"step {step} loss {window_loss / window_steps:.5f} {extra} gnorm {window_gnorm:.3g} lr {lr:.3g} img/s {ips:.1f}")
                    progress.update(task, info=f"loss {window_loss / window_steps:.4f}")
                    window_t, window_steps, window_loss, window_parts, window_gnorm = now, 0, 0.0, {}, 0.0

                if main and (step % config.val_every == 0 or step == config.steps):
                    t0 = time.perf_counter()
                    scores, score = run_validation()
                    if score > best_psnr:
                        best_psnr = score
                        atomic_save({"model": (avg if avg is not None else net).state_dict(), "step": step,
                                     "val_psnr": scores["lol"], "val": scores, "val_score": score,
                                     "config": config.to_dict()}, best_path)
                        log(f"best step {step} score {score:.3f}")
                    window_t += time.perf_counter() - t0  # validation time is not training throughput

                if step % config.ckpt_every == 0 or step == config.steps:
                    # Collective: every rank hands its generator state to rank 0, which alone writes.
                    states = [None] * world
                    if world > 1:
                        dist.all_gather_object(states, rng.bit_generator.state)
                    else:
                        states = [rng.bit_generator.state]
                    trained_s = trained_before + time.perf_counter() - run_t0
                    if main:
                        atomic_save({
                            "version": CKPT_VERSION, "model": net.state_dict(), "optimizer": opt.state_dict(),
                            "step": step, "loader_rng": states, "torch_rng": torch.get_rng_state(),
                            "best_psnr": best_psnr, "trained_seconds": trained_s, "config": config.to_dict(),
                        } | ({"ema": avg.state_dict()} if avg is not None else {}), last_path)
        if main:
            path, sha, toml = export(run_dir)
            print(f"exported {path}\nsha256 {sha}\n\n{toml}", flush=True)
        if world > 1:
            # No rank tears the group down while another still uses it (rank 0 exports alone above).
            dist.barrier()
    finally:
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()
    return run_dir


# ---------------------------------------------------------------- export


def export(run_dir: Path) -> tuple[Path, str, str]:
    """Write ``run_dir/export/<model>.safetensors`` from ``best.pt`` and a weights.toml entry for it.

    Returns ``(path, sha256, toml_text)``. ``license`` and ``hub`` are placeholders to fill in before
    the entry is pasted: a file's license and its Hub commit are not known at training time.
    """
    run_dir = Path(run_dir)
    best_path = run_dir / "best.pt"
    if not best_path.is_file():
        raise UsageError(f"{best_path} does not exist", "train until at least one validation has run")
    best = _load_checkpoint(best_path)
    last = _load_checkpoint(run_dir / "last.pt") if (run_dir / "last.pt").is_file() else {}
    meta = json.loads((run_dir / "config.json").read_text()) if (run_dir / "config.json").is_file() else {}
    # last.pt holds the run's final config (a resume may have changed --steps after best.pt was written).
    config = TrainConfig.from_dict((last or best)["config"])
    spec = registry.get(config.model)
    hparams = _jsonable(dict(spec.hparams))
    mixture = config.mixture()
    # Named after what the run learned from: the exposure mixture, a --synthetic folder, or the dataset.
    tag = "mix" if mixture["lol"] < 1.0 else "synthetic" if config.synthetic is not None else config.dataset
    filename = f"{spec.name}-{tag}.safetensors"
    path = run_dir / "export" / filename
    sha = save_weights(best["model"], path, arch=spec.name, hparams=hparams)
    entry = {
        "arch": spec.name,
        "default": True,
        "bundled": f"weights/{filename}",
        "sha256": sha,
        "license": "TODO",
        "hub": {"repo_id": "TODO", "filename": filename, "revision": "TODO"},
        "train_command": _cli_command(config),
        "trained": {
            "duration": _duration(last.get("trained_seconds", 0.0)),
            "hardware": meta.get("hardware", ""),
            "steps": int(last.get("step", best["step"])),
        },
        "hparams": hparams,
        "metrics": {"val_psnr": round(float(best["val_psnr"]), 3)}
        | {f"val_{k}_psnr": round(float(v), 3) for k, v in best.get("val", {}).items() if k != "lol"},
    }
    if mixture["lol"] < 1.0:
        entry["mixture"] = mixture
    lines = [f'[weights."{spec.name}.{tag}"]'] + [f"{k} = {_toml(v)}" for k, v in entry.items()]
    held_out = "darkened held-out photos" if config.synthetic is not None else "held-out our485 scene groups"
    lines.append(f"# best.pt: step {best['step']} of {config.steps}; val_psnr: plain PSNR on {held_out}")
    return path, sha, "\n".join(lines) + "\n"
