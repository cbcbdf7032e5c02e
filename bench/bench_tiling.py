"""How far tiled inference drifts from one whole-image pass, per tile size and overlap, and its cost.

    python bench/bench_tiling.py --model NAME [--weights PATH] [--image PATH] [--size 1024x1536]
                                 [--tiles 256,384,512] [--overlaps 32,64] [--scale N] [--device cpu]
                                 [--threads 0] [--seed 0] [--save DIR]

Runs ``NAME`` once on the whole image and once per (tile, overlap) through
:class:`lowlight_cli.inference.Enhancer` (so through ``tiling.tiled_forward``, as ``lowlight enhance``
does), then prints PSNR (peak 1) and max absolute difference of each tiled output against the whole
one, with seconds per pass. Outputs are clamped to [0, 1] as users get them. ``resid SNR`` compares
the change the model makes to its input (whole pass) with the change tiling makes to the output:
it does not depend on how strong that change is, so it says more than PSNR for random weights.

For models that are not tile-safe (global pooling: MIRNet, NEID's attention) this sizes their
``default_tile`` and ``overlap``. Without ``--weights`` the network is randomly initialised (seeded):
its residual is small and its global statistics are not the trained ones, so the figures are only
indicative; rerun with trained weights before trusting them.

The image is ``--image`` if given, else the bundled ``coffee_dark.png`` (600x400) upsampled x2 and
mirror-tiled to ``--size`` (WIDTHxHEIGHT), so a large test image needs no data files.

``--save DIR`` writes the whole-image output and, per (tile, overlap), the tiled output and its
absolute difference from the whole one amplified x20 (``diff_T_O.png``): seams show as lines there.
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
from lowlight_cli.evaluate import save_grid as save  # noqa: E402 (8-bit, atomic)
from lowlight_cli.images import read_image  # noqa: E402
from lowlight_cli.inference import Enhancer, RunOptions, load_enhancer  # noqa: E402
from lowlight_cli.metrics import psnr  # noqa: E402
from lowlight_cli.tiling import tile_spans  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[1] / "lowlight_cli" / "samples" / "coffee_dark.png"


def parse_size(text: str) -> tuple[int, int]:
    """``"1024x1536"`` -> ``(1024, 1536)`` as (width, height)."""
    w, _, h = text.lower().partition("x")
    return int(w), int(h)


def parse_ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def test_image(path: Path | None, size: tuple[int, int]) -> np.ndarray:
    """``(H, W, 3)`` float32 in [0, 1]: ``path`` as it is, else the sample x2, mirror-tiled to ``size``."""
    if path is not None:
        return read_image(path).rgb
    rgb = read_image(SAMPLE).rgb
    rgb = cv2.resize(rgb, (rgb.shape[1] * 2, rgb.shape[0] * 2), interpolation=cv2.INTER_CUBIC)
    w, h = size
    # Symmetric padding mirrors the sample at its borders: a larger photo without seams.
    rgb = np.pad(rgb, ((0, max(0, h - rgb.shape[0])), (0, max(0, w - rgb.shape[1])), (0, 0)), mode="symmetric")
    return np.clip(rgb[:h, :w], 0.0, 1.0).astype(np.float32)


def timed(run: Enhancer, rgb: np.ndarray) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    out = run(rgb)
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a learned model, e.g. mirnet")
    parser.add_argument("--weights", type=Path, default=None, help="trained weights (default: random, seeded)")
    parser.add_argument("--image", type=Path, default=None, help="test image (default: the sample, mirror-tiled)")
    parser.add_argument("--size", type=parse_size, default=(1024, 1536), help="WIDTHxHEIGHT of the default image")
    parser.add_argument("--tiles", type=parse_ints, default=[256, 384, 512], help="tile sides in input pixels")
    parser.add_argument("--overlaps", type=parse_ints, default=[32, 64], help="tile overlaps in input pixels")
    parser.add_argument("--scale", type=int, default=None, help="output scale (default: the model's native one)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    parser.add_argument("--save", type=Path, default=None, help="folder for the outputs and x20 difference images")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    # The Enhancer warns on every tiled pass of a model that is not tile-safe; measuring that is the point.
    logging.getLogger("lowlight").setLevel(logging.ERROR)
    spec = registry.get(args.model)
    if spec.kind != "learned":
        parser.error(f"{spec.name} is a baseline: it is never tiled")
    rgb = test_image(args.image, args.size)
    h, w = rgb.shape[:2]

    def enhancer(tile: int, overlap: int) -> Enhancer:
        options = RunOptions(device=args.device, tile=tile, overlap=overlap, scale=args.scale)
        if args.weights is not None:
            return load_enhancer(args.model, weights=args.weights, options=options)
        torch.manual_seed(args.seed)  # the same random network for every pass
        return Enhancer(spec, spec.create(), options, spec.name)

    if args.weights is not None:
        print(f"{spec.name}: weights {args.weights}")
    else:
        print(f"{spec.name}: RANDOM weights (seed {args.seed}): indicative only, rerun with --weights")
    print(f"image {w}x{h} ({'sample x2, mirror-tiled' if args.image is None else args.image}), device {args.device}, "
          f"torch threads {torch.get_num_threads()}, spec tile {spec.default_tile} overlap {spec.overlap}, "
          f"tile_safe {spec.tile_safe}")
    whole, whole_s = timed(enhancer(max(h, w), 0), rgb)
    print(f"whole image: {whole_s:.2f} s")
    if args.save is not None:
        args.save.mkdir(parents=True, exist_ok=True)
        save(args.save / "whole.png", whole)
    # A x2 model's output is compared with its input enlarged the same way.
    reference = rgb if whole.shape == rgb.shape else cv2.resize(rgb, whole.shape[1::-1], interpolation=cv2.INTER_CUBIC)
    change = float(np.mean((whole - reference) ** 2))
    print(f"{'tile':>5} {'overlap':>7} {'tiles':>5} {'seconds':>8} {'PSNR dB':>8} {'max abs':>8} {'resid SNR dB':>12}")
    for tile in args.tiles:
        for overlap in args.overlaps:
            if overlap >= tile:
                continue
            run = enhancer(tile, overlap)  # the Enhancer caps the overlap at half a tile
            out, seconds = timed(run, rgb)
            spans = [tile_spans(n, tile, run.overlap, spec.size_multiple) for n in (h, w)]
            count = len(spans[0]) * len(spans[1])
            drift = float(np.mean((out - whole) ** 2))
            snr = 10 * np.log10(change / drift) if drift > 0 else float("inf")
            print(f"{tile:5d} {run.overlap:7d} {count:5d} {seconds:8.2f} {psnr(out, whole):8.2f} "
                  f"{float(np.abs(out - whole).max()):8.1e} {snr:12.1f}", flush=True)
            if args.save is not None:
                save(args.save / f"tiled_{tile}_{run.overlap}.png", out)
                save(args.save / f"diff_{tile}_{run.overlap}.png", np.clip(np.abs(out - whole) * 20.0, 0.0, 1.0))


if __name__ == "__main__":
    main()
