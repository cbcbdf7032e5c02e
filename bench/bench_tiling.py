"""How far tiled inference drifts from one whole-image pass, and whether the memory estimate holds.

    python bench/bench_tiling.py --model NAME [--weights PATH] [--image PATH] [--size 2304x1728]
                                 [--darken 0.1] [--tiles 512,1024] [--memory 1,2] [--scale N]
                                 [--threads 1] [--peak] [--save DIR]

Runs ``NAME`` (bundled weights unless ``--weights``) once on the whole image and then tiled, through
:class:`lowlight_cli.inference.Enhancer` as ``lowlight enhance`` does: once per ``--tiles`` size (the
global context then comes from one pass over the whole image when it fits the
default memory budget) and once per ``--memory`` budget in GB (the tile the budget gives, and the
context measured tile by tile, "swept", after a first estimate from a downscaled copy). Prints PSNR (peak 1) and max absolute difference against the whole pass, and seconds.

``--peak`` also runs the whole pass in a child process and prints its measured peak RSS above the
process's start beside the engine's estimate (activations from the tensor tracker plus the image
buffers), the figure the tiling plan is made from.

The image is ``--image`` (resized to ``--size`` if given, bicubic) or the bundled ``coffee_dark.png``
x2, mirror-tiled to ``--size``; ``--darken F`` scales its linear light by F first (a dark photo).
``--sheet FILE`` writes a contact sheet: input, whole pass, the first tiled run and its difference x20.
``--save DIR`` writes the whole output and, per run, the tiled output and ``diff_*.png``, the
absolute difference amplified x20: blocks and seams show there.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

# Run as a script from a checkout: make the package importable without installing it.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lowlight_cli.evaluate import compare_grid, save_grid as save  # noqa: E402 (8-bit, atomic)
from lowlight_cli.images import read_image  # noqa: E402
from lowlight_cli.inference import (  # noqa: E402
    Enhancer, RunOptions, image_bytes_per_pixel, linear_to_srgb, load_enhancer, srgb_to_linear,
)
from lowlight_cli.metrics import psnr  # noqa: E402
from lowlight_cli.tiling import tile_spans  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[1] / "lowlight_cli" / "samples" / "coffee_dark.png"


def parse_size(text: str) -> tuple[int, int]:
    """``"1024x1536"`` -> ``(1024, 1536)`` as (width, height)."""
    w, _, h = text.lower().partition("x")
    return int(w), int(h)


def parse_numbers(text: str, kind=int) -> list:
    return [kind(v) for v in text.split(",") if v.strip()]


def test_image(path: Path | None, size: tuple[int, int] | None, darken: float | None) -> np.ndarray:
    """``(H, W, 3)`` float32 in [0, 1]; see the module docstring."""
    if path is not None:
        rgb = read_image(path).rgb
        if size is not None:
            rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_CUBIC)
    else:
        rgb = read_image(SAMPLE).rgb
        rgb = cv2.resize(rgb, (rgb.shape[1] * 2, rgb.shape[0] * 2), interpolation=cv2.INTER_CUBIC)
        w, h = size or (1024, 1536)
        # Symmetric padding mirrors the sample at its borders: a larger photo without seams.
        rgb = np.pad(rgb, ((0, max(0, h - rgb.shape[0])), (0, max(0, w - rgb.shape[1])), (0, 0)), mode="symmetric")[:h, :w]
    rgb = np.clip(rgb, 0.0, 1.0)
    if darken is not None:
        rgb = linear_to_srgb(srgb_to_linear(rgb) * darken)
    return np.ascontiguousarray(rgb, dtype=np.float32)


PEAK_CHILD = """
import json, sys, numpy as np, torch
sys.path.insert(0, {root!r})
from pathlib import Path
from lowlight_cli.inference import RunOptions, load_enhancer
torch.set_num_threads({threads})
rgb = np.load({path!r})
e = load_enhancer({model!r}, weights={weights!r}, options=RunOptions(device="cpu", tile=max(rgb.shape[:2]), scale={scale!r},
                  backend={backend!r}))
e.bytes_per_pixel
def status(key):
    return next(int(l.split()[1]) * 1024 for l in Path("/proc/self/status").read_text().splitlines() if l.startswith(key))
Path("/proc/self/clear_refs").write_text("5")  # the peak (VmHWM) starts afresh
base = status("VmRSS:")
e(rgb)
print(json.dumps({{"peak": status("VmHWM:") - base, "bpp": e.bytes_per_pixel}}))
"""


def measured_peak(args, rgb: np.ndarray, scale: int) -> dict:
    """Peak RSS of one whole pass in a fresh process, above its state once the model is loaded."""
    path = Path("/tmp") / f"bench_tiling_{rgb.shape[0]}x{rgb.shape[1]}.npy"
    np.save(path, rgb)
    code = PEAK_CHILD.format(root=str(Path(__file__).resolve().parents[1]), threads=torch.get_num_threads(),
                             path=str(path), model=args.model, weights=None if args.weights is None else str(args.weights),
                             scale=args.scale, backend=args.whole_backend or args.backend)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    path.unlink()
    return json.loads(result.stdout.strip().splitlines()[-1])


def timed(run: Enhancer, rgb: np.ndarray) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    out = run(rgb)
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a learned model, e.g. mirnet or neid.lol")
    parser.add_argument("--weights", type=Path, default=None, help="weights file (default: the bundled ones)")
    parser.add_argument("--image", type=Path, default=None, help="test image (default: the sample, mirror-tiled)")
    parser.add_argument("--size", type=parse_size, default=None, help="WIDTHxHEIGHT to resize or tile to")
    parser.add_argument("--darken", type=float, default=None, help="scale the linear light by this first")
    parser.add_argument("--tiles", type=parse_numbers, default=[512, 1024], help="tile sides in input pixels")
    parser.add_argument("--memory", type=lambda t: parse_numbers(t, float), default=[], help="budgets in GB")
    parser.add_argument("--scale", type=int, default=None, help="output scale (default: the model's native one)")
    parser.add_argument("--threads", type=int, default=1, help="torch and ONNX Runtime CPU threads")
    parser.add_argument("--backend", default="auto", help="auto, onnx or torch (as enhance --backend)")
    parser.add_argument("--whole-backend", default=None,
                        help="backend of the whole pass (default: --backend); torch holds less memory for MIRNet")
    parser.add_argument("--peak", action="store_true", help="measure the whole pass's peak RSS in a child process")
    parser.add_argument("--save", type=Path, default=None, help="folder for the outputs and x20 difference images")
    parser.add_argument("--sheet", type=Path, default=None, help="contact sheet: input, whole, first tiled run, x20 difference")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    logging.getLogger("lowlight").setLevel(logging.ERROR)
    rgb = test_image(args.image, args.size, args.darken)
    h, w = rgb.shape[:2]

    def enhancer(**options) -> Enhancer:
        return load_enhancer(args.model, weights=args.weights,
                             options=RunOptions(device="cpu", scale=args.scale, backend=args.backend, **options))

    base = load_enhancer(args.model, weights=args.weights, options=RunOptions(
        device="cpu", scale=args.scale, backend=args.whole_backend or args.backend, memory_gb=1e6))
    spec = base.spec
    net_h, net_w = (h, w) if base.scale == spec.scale else (h // (spec.scale // base.scale), w // (spec.scale // base.scale))
    print(f"{base.label} x{base.scale}: image {w}x{h} ({args.image or 'sample x2, mirror-tiled'}"
          f"{f', darkened x{args.darken}' if args.darken else ''}); net input {net_w}x{net_h}; "
          f"backend {base.backend}, threads {torch.get_num_threads()}; overlap {spec.overlap}; global context {not spec.tile_safe}")
    estimate = (base.bytes_per_pixel + image_bytes_per_pixel(spec.scale)) * net_h * net_w
    print(f"memory estimate of one pass: {base.bytes_per_pixel} B/px activations + "
          f"{image_bytes_per_pixel(spec.scale)} B/px image buffers = {estimate / 2**30:.2f} GiB")
    if args.peak:
        peak = measured_peak(args, rgb, base.scale)
        print(f"measured peak RSS of one pass: {peak['peak'] / 2**30:.2f} GiB (estimate / measured {estimate / peak['peak']:.2f})")
    whole, whole_s = timed(base, rgb)
    print(f"whole image: {whole_s:.1f} s", flush=True)
    if args.save is not None:
        args.save.mkdir(parents=True, exist_ok=True)
        save(args.save / "whole.png", whole)
    print(f"{'run':>14} {'tile':>5} {'tiles':>5} {'context':>9} {'seconds':>8} {'PSNR dB':>8} {'max abs':>8}")
    sheet: list[tuple[np.ndarray, str]] = [(rgb, "input"), (whole, "one whole pass")]
    runs = [(f"tile {t}", dict(tile=t)) for t in args.tiles] + [(f"memory {m:g} GB", dict(memory_gb=m)) for m in args.memory]
    for name, options in runs:
        run = enhancer(**options)
        tile, overlap = run.plan(net_h, net_w)
        count = len(tile_spans(net_h, tile, overlap, spec.size_multiple)) * len(tile_spans(net_w, tile, overlap, spec.size_multiple))
        shrink = max(1.0, (net_h * net_w / run.one_pass_pixels(net_h, net_w)) ** 0.5)
        how = "-" if count == 1 or spec.tile_safe else "swept" if shrink > 1 else "one pass"
        out, seconds = timed(run, rgb)
        print(f"{name:>14} {tile:5d} {count:5d} {how:>9} {seconds:8.1f} {psnr(out, whole):8.2f} "
              f"{float(np.abs(out - whole).max()):8.1e}", flush=True)
        if len(sheet) == 2:
            sheet += [(out, f"{name}: {count} tiles, {psnr(out, whole):.1f} dB"), (np.clip(np.abs(out - whole) * 20.0, 0, 1), "|tiled - whole| x20")]
        if args.save is not None:
            tag = name.replace(" ", "")
            save(args.save / f"tiled_{tag}.png", out)
            save(args.save / f"diff_{tag}.png", np.clip(np.abs(out - whole) * 20.0, 0.0, 1.0))

    if args.sheet is not None and len(sheet) == 4:
        save(args.sheet, compare_grid([p for p, _ in sheet], [c for _, c in sheet], tile_width=480, columns=2))


if __name__ == "__main__":
    main()
