"""Paired low/normal-light datasets in the LOL layout: ``<split>/low/<stem>.*`` and ``<split>/high/<stem>.*``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .errors import DatasetError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")


@dataclass(frozen=True)
class Pair:
    stem: str
    low: Path
    high: Path


def _by_stem(folder: Path) -> dict[str, Path]:
    files = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
            if p.stem in files:
                raise DatasetError(f"two images share the stem {p.stem!r} in {folder}", "keep one file per stem")
            files[p.stem] = p
    return files


def _stem_key(stem: str) -> tuple[int, str]:
    return (int(stem), stem) if stem.isdigit() else (1 << 62, stem)


def find_pairs(split_dir: Path) -> list[Pair]:
    """Pairs of ``split_dir/low`` and ``split_dir/high`` matched by file stem, whatever the extension.

    Sorted numerically by stem when stems are numbers. Raises DatasetError when the layout is wrong
    or a low image has no target.
    """
    split_dir = Path(split_dir)
    low_dir, high_dir = split_dir / "low", split_dir / "high"
    if not low_dir.is_dir() or not high_dir.is_dir():
        raise DatasetError(
            f"{split_dir} does not have low/ and high/ folders",
            "point --data-dir at a folder in the LOL layout (<split>/low, <split>/high)",
        )
    lows, highs = _by_stem(low_dir), _by_stem(high_dir)
    missing = sorted(set(lows) - set(highs))
    if missing:
        raise DatasetError(f"{len(missing)} low images in {low_dir} have no target (first: {missing[0]})", None)
    if not lows:
        raise DatasetError(f"no images in {low_dir}", None)
    return [Pair(s, lows[s], highs[s]) for s in sorted(lows, key=_stem_key)]


def default_lol_roots() -> list[Path]:
    """Where ``--dataset lol`` looks when no --data-dir is given, in order."""
    roots = []
    if os.environ.get("LOWLIGHT_DATA"):
        roots.append(Path(os.environ["LOWLIGHT_DATA"]))
    cache = Path(os.environ.get("LOWLIGHT_CACHE", Path.home() / ".cache" / "lowlight"))
    roots.append(cache / "datasets" / "lol")
    return roots
