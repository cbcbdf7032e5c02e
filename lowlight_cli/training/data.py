"""The training data: images decoded into memory, the split by scene, and random batches.

Batches are cropped from uint8 images held in memory by one seeded ``numpy.random.Generator`` per
rank, in the main process (no DataLoader workers): cropping is cheap next to the network, and a single
generator whose state goes into the checkpoint makes a resumed run bit-identical to an uninterrupted one.
The dataset layouts themselves (LOL's ``low/`` and ``high/``) are read by :mod:`lowlight_cli.data`.
"""

from __future__ import annotations

import csv
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from ..data import IMAGE_SUFFIXES, default_lol_roots, find_pairs
from ..errors import DatasetError, UsageError
from ..inference import downscale as _downscale
from .config import TrainConfig
from .pairs import Variants, pick_kind, synthesize


def read_rgb(path: Path) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB. Raises DatasetError when the file cannot be decoded."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise DatasetError(f"cannot decode {path}", "remove or replace the file")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


@dataclass
class Images:
    """Decoded images kept in memory: ``high[i]`` always; ``low[i]`` for real pairs, None for synthetic;
    ``target[i]`` what a real pair trains towards when it is not ``high[i]`` (``--targets``), else None."""

    stems: list[str]
    high: list[np.ndarray]
    low: list[np.ndarray] | None
    target: list[np.ndarray] | None = None

    def subset(self, idx: list[int]) -> Images:
        pick = lambda images: None if images is None else [images[i] for i in idx]  # noqa: E731
        return Images([self.stems[i] for i in idx], [self.high[i] for i in idx], pick(self.low), pick(self.target))


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


def load_targets(folder: Path, images: Images) -> list[np.ndarray]:
    """``--targets``: for each pair, the image named as its stem in ``folder`` (any image suffix), which
    must have its ``high/`` image's size."""
    if not folder.is_dir():
        raise DatasetError(f"{folder} is not a folder", "--targets takes a folder with one image per LOL pair, named as the pair")
    found = {p.stem: p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES}
    missing = [s for s in images.stems if s not in found]
    if missing:
        raise DatasetError(f"{folder} has no target for {len(missing)} of the {len(images.stems)} pairs (first: {missing[0]})",
                           "make one per pair, e.g. lowlight enhance DATA/our485/low -o FOLDER --suffix '' --ext png")
    targets = _decode_all([found[s] for s in images.stems])
    for stem, t, h in zip(images.stems, targets, images.high):
        if t.shape != h.shape:
            raise DatasetError(f"target {found[stem]} is {t.shape[1]}x{t.shape[0]}, its pair {h.shape[1]}x{h.shape[0]}",
                               "a target must have its pair's size")
    return targets


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


@dataclass
class Split:
    """A run's images: what it trains on and what it holds out (whole scene groups) for validation.

    ``train``, ``val``: the LOL pairs (or the ``--synthetic`` photos); ``photos``, ``val_photos``: the
    ``--photos`` folder's, None without one.
    """

    train: Images
    val: Images
    photos: Images | None
    val_photos: Images | None

    def val_stems(self) -> list[str]:
        return self.val.stems + ([f"photos/{s}" for s in self.val_photos.stems] if self.val_photos is not None else [])


def load_split(config: TrainConfig) -> Split:
    """Decode the images ``config`` names (kept in memory as uint8) and split each set by scene."""
    if config.synthetic is not None:
        images = load_photos(Path(config.synthetic))
        scenes = read_scenes(Path(config.synthetic) / "scenes.csv")
    else:
        root = _lol_root(config)
        images = load_lol(root)
        scenes = read_scenes(root / "scenes.csv")
        if config.targets is not None:
            images.target = load_targets(Path(config.targets), images)
    train_idx, val_idx = split_by_scene(images.stems, scenes, fraction=config.val_fraction, seed=config.split_seed)
    photos = val_photos = None
    if config.photos is not None:
        photos_all = load_photos(Path(config.photos))
        p_train, p_val = split_by_scene(photos_all.stems, {}, fraction=config.val_fraction, seed=config.split_seed)
        photos, val_photos = photos_all.subset(p_train), photos_all.subset(p_val)
    return Split(images.subset(train_idx), images.subset(val_idx), photos, val_photos)


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


def to_float(a: np.ndarray) -> np.ndarray:
    """uint8 -> float32 in [0, 1]; float arrays pass unchanged."""
    return a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else a


def _dihedral(a: np.ndarray, rot: int, flip: int) -> np.ndarray:
    a = np.rot90(a, rot)
    return a[:, ::-1] if flip else a


def _to_tensor(arrays: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(np.stack(arrays).transpose(0, 3, 1, 2)))


def _pick(images: Images, pool: list[np.ndarray], rng: np.random.Generator, mixture: dict[str, float] | None,
          variants: Variants) -> tuple[str, bool, int]:
    """An item's kind of pair, whether it is a real LOL pair, and its image's index in ``pool``. With the
    shares of ``variants``, an identity pair becomes a ``lowkey`` one made from one of the photos (which
    follow the LOL images in ``pool``), a global pair a ``clean`` one (its darkening without noise) and a
    spatial pair a ``backlit`` one (a subject in shadow in a lit frame), each of the same image but the
    low-key one."""
    kind = pick_kind(mixture, rng)
    real = kind == "lol" and images.low is not None
    # The index is drawn before the variant choice, so runs without a variant keep their batches and the
    # bundled lantern.mix's command (trained this way) reproduces it.
    i = int(rng.integers(len(images.high) if real else len(pool)))
    n = len(images.high)
    if kind == "identity" and variants.lowkey > 0 and len(pool) > n and rng.random() < variants.lowkey:
        return "lowkey", False, n + int(rng.integers(len(pool) - n))
    if kind == "global" and variants.clean > 0 and rng.random() < variants.clean:
        return "clean", False, i
    if kind == "spatial" and variants.backlit > 0 and rng.random() < variants.backlit:
        return "backlit", False, i
    return kind, real, i


def _region(images: Images, pool: list[np.ndarray], i: int, real: bool, kind: str, rng: np.random.Generator,
            rh: int, rw: int, variants: Variants) -> tuple[np.ndarray, np.ndarray]:
    """``(low, high)`` float32 for a random ``rh`` x ``rw`` region of image ``i``, turned by one of the 8
    flips/rotations: the real LOL input, or one made by :func:`pairs.synthesize` for the whole region."""
    h, w = pool[i].shape[:2]
    y, x = int(rng.integers(h - rh + 1)), int(rng.integers(w - rw + 1))
    rot, flip = int(rng.integers(4)), int(rng.integers(2))

    def cut(image: np.ndarray) -> np.ndarray:
        return to_float(_dihedral(image[y : y + rh, x : x + rw], rot, flip))

    if real:
        return cut(images.low[i]), cut(pool[i] if images.target is None else images.target[i])
    return synthesize(cut(pool[i]), kind, rng, variants.backlit_clean)


def _check_size(image: np.ndarray, crop: int, stem: str) -> None:
    h, w = image.shape[:2]
    if h < crop or w < crop:
        raise DatasetError(f"image {stem} is {w}x{h}, smaller than the {crop} px crop", "lower --patch")


def sample_batch(
    images: Images, rng: np.random.Generator, *, batch: int, patch: int, downscale: int,
    mixture: dict[str, float] | None = None, photos: Images | None = None, variants: Variants = Variants(),
) -> tuple[torch.Tensor, torch.Tensor]:
    """A random batch: ``low (B, 3, patch, patch)`` and ``high (B, 3, patch*k, patch*k)``, float in [0, 1].

    Each item: its kind drawn from ``mixture`` (see :meth:`TrainConfig.mixture`; a real pair when
    absent), an image drawn uniformly (with replacement; synthetic kinds draw from ``images`` and
    ``photos`` together; ``variants`` turns shares of the identity, global and spatial pairs into low-key,
    clean and backlit ones, and of the backlit ones into clean ones, see :class:`pairs.Variants`), a
    random ``patch * k`` crop, one of the 8 flips/90-degree rotations, the input of a synthetic pair
    made fresh by :func:`pairs.synthesize`, and when ``k = downscale > 1`` a bicubic downsampling of the
    input crop by ``k`` (the target keeps the full crop).
    """
    crop = patch * downscale
    pool = images.high + (photos.high if photos is not None else [])
    stems = images.stems + (photos.stems if photos is not None else [])
    lows, highs = [], []
    for _ in range(batch):
        kind, real, i = _pick(images, pool, rng, mixture, variants)
        _check_size(pool[i], crop, stems[i])
        low, high = _region(images, pool, i, real, kind, rng, crop, crop, variants)
        if downscale > 1:
            low = _downscale(low, downscale)
        lows.append(np.ascontiguousarray(low))
        highs.append(np.ascontiguousarray(high))
    return _to_tensor(lows), _to_tensor(highs)


def sample_views(
    images: Images, rng: np.random.Generator, *, batch: int, patch: int, view: int,
    mixture: dict[str, float] | None = None, photos: Images | None = None, variants: Variants = Variants(),
) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor], torch.Tensor]:
    """A batch for a network that glances at the whole picture (:class:`..context.Glance`): as
    :func:`sample_batch`, but each crop is cut from a *view*, and the view's input is returned too so
    the glance can be taken from it as inference takes it from the whole photo.

    Returns ``low (B, 3, patch, patch)``, ``high`` (same), the views' inputs (``B`` tensors
    ``(1, 3, h, w)``) and the crops' boxes in them ``(B, 4)``: ``(top, left, h, w)``. A view is the
    whole image when both sides are at most ``view`` (a LOL frame), else a random ``view`` x ``view``
    part of it; it is flipped or rotated as a whole, a synthetic pair's darkening (its shadow, its
    noise) is made for the whole view, and the crop is drawn inside it.
    """
    pool = images.high + (photos.high if photos is not None else [])
    stems = images.stems + (photos.stems if photos is not None else [])
    lows, highs, views, boxes = [], [], [], []
    for _ in range(batch):
        kind, real, i = _pick(images, pool, rng, mixture, variants)
        _check_size(pool[i], patch, stems[i])
        h, w = pool[i].shape[:2]
        low_view, high_view = _region(images, pool, i, real, kind, rng, min(h, view), min(w, view), variants)
        vh, vw = high_view.shape[:2]
        y, x = int(rng.integers(vh - patch + 1)), int(rng.integers(vw - patch + 1))
        lows.append(np.ascontiguousarray(low_view[y : y + patch, x : x + patch]))
        highs.append(np.ascontiguousarray(high_view[y : y + patch, x : x + patch]))
        views.append(_to_tensor([low_view]))
        boxes.append([y, x, vh, vw])
    return _to_tensor(lows), _to_tensor(highs), views, torch.tensor(boxes, dtype=torch.float32)
