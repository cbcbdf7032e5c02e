"""The README's x2 picture: the shipped sample through a x2 model, whole and as a close-up.

    python bench/make_x2_figure.py [--model neid] [--weights PATH] [--out docs/neid_x2.jpg]

Top row: the 600x400 dark sample, and the model's 1200x800 output at ``--scale 2``, both shown at the
same width. Bottom row: one 100x100 region of the input, enlarged x4 by pixel repetition (what a
plain resize shows), by bicubic interpolation of the brightened input (``gamma_auto`` then bicubic
x2, the classical route to a larger bright photo), and the model's x2 output of that region enlarged
x2 the same way, so that all three show the same area at the same size.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lowlight_cli.evaluate import compare_grid, save_grid  # noqa: E402
from lowlight_cli.images import read_image  # noqa: E402
from lowlight_cli.inference import RunOptions, load_enhancer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "lowlight_cli" / "samples" / "coffee_dark.png"
REGION = (150, 250, 100)  # y, x, side of the close-up, in input pixels


def nearest(rgb: np.ndarray, k: int) -> np.ndarray:
    return np.repeat(np.repeat(rgb, k, axis=0), k, axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="neid")
    parser.add_argument("--weights", type=Path, default=None, help="a weights file (default: the bundled ones)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "neid_x2.jpg")
    args = parser.parse_args()

    picture = read_image(SAMPLE)
    rgb = picture.rgb
    x2 = load_enhancer(args.model, weights=args.weights, options=RunOptions(device="cpu", scale=2))
    out = x2(rgb)
    bright = load_enhancer("gamma_auto")(rgb)
    bicubic = np.clip(cv2.resize(bright, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC), 0.0, 1.0)
    y, x, side = REGION
    crops = [
        nearest(rgb[y : y + side, x : x + side], 4),
        nearest(bicubic[2 * y : 2 * (y + side), 2 * x : 2 * (x + side)], 2),
        nearest(out[2 * y : 2 * (y + side), 2 * x : 2 * (x + side)], 2),
    ]
    top = compare_grid([rgb, out], [f"input {rgb.shape[1]}x{rgb.shape[0]}",
                                    f"{x2.label} --scale 2: {out.shape[1]}x{out.shape[0]}"], tile_width=600, columns=2)
    bottom = compare_grid(crops, ["input 100x100 region, x4 pixels", "gamma_auto + bicubic x2, then x2 pixels",
                                  f"{x2.label} x2, then x2 pixels"], tile_width=400, columns=3)
    width = max(top.shape[1], bottom.shape[1])
    pad = lambda a: np.pad(a, ((0, 0), (0, width - a.shape[1]), (0, 0)))  # noqa: E731
    figure = np.concatenate([pad(top), pad(bottom)], axis=0)
    save_grid(args.out, figure)
    print(f"wrote {args.out} ({figure.shape[1]}x{figure.shape[0]})")


if __name__ == "__main__":
    main()
