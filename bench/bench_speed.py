"""Seconds per megapixel of each model on this machine, beside its parameters and MACs per pixel.

    python bench/bench_speed.py [--models msrnet,neid,mirnet,mirnet_paper,msr] [--megapixels 2]
                                [--repeats 2] [--scale N] [--device cpu] [--threads 0]

Each model runs through :class:`lowlight_cli.inference.Enhancer` with its default tile and overlap,
as ``lowlight enhance`` runs it, on a dark photo of ``--megapixels`` input pixels made from the
shipped sample; the best of ``--repeats`` timed passes (after one untimed warm-up) is divided by the
input megapixels. Seconds do not depend on the weights' values, so a model without bundled weights
runs with random ones (said in the output). Reading and writing files is not included: see
``bench_enhance.py`` for the whole command with its peak memory. Give it the machine to itself.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

# Run as a script from a checkout: make the package importable without installing it.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lowlight_cli import registry  # noqa: E402
from lowlight_cli.errors import LowlightError  # noqa: E402
from lowlight_cli.evaluate import format_macs, format_params, model_rows  # noqa: E402
from lowlight_cli.images import read_image  # noqa: E402
from lowlight_cli.inference import Enhancer, RunOptions, load_enhancer  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[1] / "lowlight_cli" / "samples" / "coffee_dark.png"


def test_image(megapixels: float) -> np.ndarray:
    """The sample resized (bicubic) to about ``megapixels``: ``(H, W, 3)`` float32 in [0, 1]."""
    rgb = read_image(SAMPLE).rgb
    h, w = rgb.shape[:2]
    k = (megapixels * 1e6 / (h * w)) ** 0.5
    big = cv2.resize(rgb, (round(w * k), round(h * k)), interpolation=cv2.INTER_CUBIC)
    return np.clip(big, 0.0, 1.0).astype(np.float32)


def enhancer(name: str, options: RunOptions) -> tuple[Enhancer, str]:
    """The bundled weights where there are some, else the architecture with seeded random weights."""
    try:
        run = load_enhancer(name, options=options)
        return run, "baseline" if run.spec.kind == "baseline" else run.label
    except LowlightError:
        spec = registry.get(name)
        torch.manual_seed(0)
        return Enhancer(spec, spec.create(), options, spec.name), "random weights"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="msrnet,neid,mirnet,mirnet_paper,msr", help="comma-separated names")
    parser.add_argument("--megapixels", type=float, default=2.0, help="input size")
    parser.add_argument("--repeats", type=int, default=2, help="timed passes per model (the best is kept)")
    parser.add_argument("--scale", type=int, default=None, help="output scale (default: each model's native one)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    logging.getLogger("lowlight").setLevel(logging.ERROR)  # tiling warnings of non-tile-safe models
    rgb = test_image(args.megapixels)
    mp = rgb.shape[0] * rgb.shape[1] / 1e6
    rows = {row["name"]: row for row in model_rows(include_tests=True, macs=True)}
    print(f"input {rgb.shape[1]}x{rgb.shape[0]} ({mp:.2f} MP), device {args.device}, torch threads {torch.get_num_threads()}")
    print(f"| {'model':<13} | {'weights':<16} | {'params':>8} | {'MACs/px':>8} | {'scale':>5} | {'s/MP':>7} |")
    for name in [n.strip() for n in args.models.split(",") if n.strip()]:
        spec = registry.get(name)
        scale = args.scale if args.scale in spec.scales else spec.scale
        run, source = enhancer(name, RunOptions(device=args.device, scale=scale))
        run(rgb)  # warm-up: allocator, kernels, weights on the device
        best = min(_timed(run, rgb) for _ in range(args.repeats))
        row = rows[spec.name]
        print(f"| {spec.name:<13} | {source:<16} | {format_params(row['params']):>8} | {format_macs(row['macs_per_px']):>8} | {scale:>5} | {best / mp:7.2f} |",
              flush=True)


def _timed(run: Enhancer, rgb: np.ndarray) -> float:
    start = time.perf_counter()
    run(rgb)
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
