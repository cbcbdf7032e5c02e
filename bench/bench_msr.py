"""Speed and accuracy of the Retinex baselines and their pyramid Gaussian blur.

    python bench/bench_msr.py [--megapixels 12] [--check-megapixels 1] [--repeat 3] [--seed 0]

1. Times ``msr`` and ``msrcr`` on a synthetic dark photo of ``--megapixels`` (best of ``--repeat``).
2. On a ``--check-megapixels`` image, compares ``gaussian_blur_large`` with the exact
   ``cv2.GaussianBlur`` for each Retinex sigma, then the whole ``msr`` / ``msrcr`` output computed
   with either blur: max absolute error and PSNR (peak 1) of the approximation.
The images are made here from a seeded generator: no data files needed.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

# Run as a script from a checkout: make the package importable without installing it.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lowlight_cli.baselines import MSR_SIGMAS, gaussian_blur_large, msr, msrcr  # noqa: E402


def synthetic_dark_photo(megapixels: float, *, seed: int) -> np.ndarray:
    """A 4:3 ``(H, W, 3)`` float32 RGB image in [0, 1], mean about 0.08: smooth colour fields,
    hard-edged shapes and sensor-like noise, so blurs see both flat areas and edges."""
    rng = np.random.default_rng(seed)
    h = int(math.sqrt(megapixels * 1e6 * 3 / 4))
    w = h * 4 // 3
    fields = cv2.resize(rng.random((max(h // 64, 2), max(w // 64, 2), 3), dtype=np.float32), (w, h))
    for _ in range(20):
        centre = (int(rng.integers(w)), int(rng.integers(h)))
        colour = tuple(float(c) for c in rng.random(3))
        cv2.circle(fields, centre, int(rng.integers(h // 40, h // 6)), colour, -1)
    noise = rng.standard_normal((h, w, 3), dtype=np.float32) * 0.01
    return np.clip(fields * 0.15 + noise, 0.0, 1.0)


def exact_blur(img: np.ndarray, *, sigma: float) -> np.ndarray:
    """The reference: cv2.GaussianBlur at full resolution (slow for large sigma)."""
    return cv2.GaussianBlur(img, (0, 0), sigma)


def timed(fn: Callable[..., np.ndarray], *args: Any, **kwargs: Any) -> tuple[np.ndarray, float]:
    """``fn(*args, **kwargs)`` and its wall time in seconds."""
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def errors(approx: np.ndarray, exact: np.ndarray) -> str:
    diff = approx.astype(np.float64) - exact
    mse = float(np.mean(diff**2))
    psnr = 10 * math.log10(1 / mse) if mse > 0 else math.inf
    return f"max abs {np.abs(diff).max():.2e}  mean abs {np.abs(diff).mean():.2e}  PSNR {psnr:6.1f} dB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--megapixels", type=float, default=12.0, help="size of the timed image")
    parser.add_argument("--check-megapixels", type=float, default=1.0, help="size of the accuracy image")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per method (best is shown)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    big = synthetic_dark_photo(args.megapixels, seed=args.seed)
    print(f"timing on {big.shape[1]}x{big.shape[0]} ({big.shape[0] * big.shape[1] / 1e6:.1f} MP), "
          f"cv2 threads {cv2.getNumThreads()}")
    for fn in (msr, msrcr):
        times = [timed(fn, big)[1] for _ in range(args.repeat)]
        print(f"  {fn.__name__:6s} best {min(times):.2f} s  (runs: {', '.join(f'{t:.2f}' for t in times)})")
    del big

    small = synthetic_dark_photo(args.check_megapixels, seed=args.seed + 1)
    print(f"accuracy on {small.shape[1]}x{small.shape[0]}, pyramid vs exact cv2.GaussianBlur")
    for sigma in MSR_SIGMAS:
        exact, t_exact = timed(exact_blur, small, sigma=sigma)
        approx, t_approx = timed(gaussian_blur_large, small, sigma=sigma)
        print(f"  blur sigma {sigma:5.0f}: {errors(approx, exact)}  ({t_approx:.3f} s vs exact {t_exact:.3f} s)")
    for fn in (msr, msrcr):
        print(f"  {fn.__name__:6s} output  : {errors(fn(small), fn(small, blur=exact_blur))}")


if __name__ == "__main__":
    main()
