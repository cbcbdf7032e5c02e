import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

# One thread: tests are tiny, and OpenMP threads spinning against each other on 2 busy cores made
# small forwards 100x slower. Seeded so any random init is reproducible.
torch.set_num_threads(1)
torch.manual_seed(0)


def _find_lol() -> Path | None:
    here = Path(__file__).resolve()
    for root in (here.parents[1].parent / "shared", here.parents[2] / "shared"):
        if (root / "data" / "lol" / "eval15").is_dir():
            return root / "data" / "lol"
    return None


LOL = _find_lol()


@pytest.fixture
def lol_dir() -> Path:
    if LOL is None:
        pytest.skip("LOL data (../shared/data/lol) not present")
    return LOL


def dark_image(h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    """A dark uint8 BGR test image with structure (gradients + noise), made here."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x / w, y / h, (x + y) / (h + w)], axis=-1) * 40
    return np.clip(base + rng.normal(0, 3, (h, w, 3)) + 5, 0, 255).astype(np.uint8)


@pytest.fixture
def write_dark():
    def make(path: Path, h: int = 48, w: int = 64, seed: int = 0) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(path), dark_image(h, w, seed))
        return path

    return make


@pytest.fixture
def cli(monkeypatch, capsys):
    """Run `lowlight ARGS...` in-process; returns (exit code, stdout, stderr)."""
    from lowlight_cli.cli import main

    def invoke(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["lowlight", *map(str, args)])
        code = 0
        try:
            main()
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return invoke
