"""Make the shipped sample dark photo from a public-domain (CC0) image in scikit-image.

    python bench/make_sample.py     # needs the test extra (scikit-image)

Source: ``skimage.data.coffee()``, "Coffee cup", photograph by Rachel Michetti, courtesy of Pikolo
Espresso Bar, CC0 ("No copyright restrictions" in scikit-image's data docs). It is darkened with the
same documented model `lowlight train --synthetic` uses (``lowlight_cli.training.pairs.darken``: exposure
scaling, Poisson-Gaussian sensor noise, a gamma tone curve, 8-bit quantization), with a fixed seed.
"""

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
from skimage import data

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lowlight_cli.training.pairs import darken  # noqa: E402

SEED = 2
OUT = Path(__file__).resolve().parents[1] / "lowlight_cli" / "samples" / "coffee_dark.png"



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=OUT, help="where to write the sample")
    args = parser.parse_args()
    rgb = data.coffee().astype(np.float32) / 255.0
    dark = darken(rgb, np.random.default_rng(SEED))
    cv2.imwrite(str(args.out), cv2.cvtColor(np.round(dark * 255).astype(np.uint8), cv2.COLOR_RGB2BGR))
    print(f"{args.out}: {dark.shape[1]}x{dark.shape[0]}, mean level {dark.mean() * 255:.1f}/255")


if __name__ == "__main__":
    main()
