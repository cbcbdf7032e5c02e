"""Models on the held-out sets `lowlight train` validates on: LOL scene groups, identity and mixed exposure.

    python bench/bench_holdout.py --data-dir ../shared/data/lol --photos ../shared/data/photos \
        --models mirnet,lantern [--weights lantern=runs/x/export/lantern-mix.safetensors]

The sets are the ones a mixture run with these folders holds out (``training.validate.validation_sets``,
split seed 0 as every bundled run): ``lol``, the real pairs of the held-out scene groups (whole frames);
``identity``, held-out LOL targets and photos against themselves; ``mixed``, the same darkened by a
spatially varying exposure (a soft shadow of several stops with lit areas in it, sensor noise) against
the original. Each model runs through the inference engine (`lowlight enhance`'s path, at scale 1).
Printed per model and set: mean PSNR, and for identity the median and the worst image.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lowlight_cli.inference import RunOptions, load_enhancer  # noqa: E402
from lowlight_cli.metrics import psnr  # noqa: E402
from lowlight_cli.training.config import TrainConfig, resolve  # noqa: E402
from lowlight_cli.training.data import load_split  # noqa: E402
from lowlight_cli.training.validate import validation_sets  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, required=True)
    ap.add_argument("--photos", type=Path, default=None)
    ap.add_argument("--models", default="mirnet")
    ap.add_argument("--weights", action="append", default=[], help="NAME=FILE: run model NAME with this weights file")
    args = ap.parse_args()
    logging.disable(logging.WARNING)
    # Any mixture recipe makes the same sets: they depend on the folders and the split seed only.
    config = resolve(TrainConfig(model="lantern", out=Path("-"), data_dir=args.data_dir, photos=args.photos))
    sets = validation_sets(load_split(config), config)
    files = dict(w.split("=", 1) for w in args.weights)
    print(f"held out: {', '.join(f'{k} {len(v)} images' for k, v in sets.items())}")
    print(f"{'model':32s} {'lol':>7s} {'identity mean':>14s} {'median':>7s} {'worst':>6s} {'mixed':>7s}")
    for name in args.models.split(","):
        enhancer = load_enhancer(name, weights=Path(files[name]) if name in files else None,
                                 options=RunOptions(device="cpu", scale=1))
        scores = {k: [psnr(enhancer(low), high) for low, high in pairs] for k, pairs in sets.items()}
        label = enhancer.label + (f" ({Path(files[name]).name})" if name in files else "")
        ident = scores.get("identity", [float("nan")])
        print(f"{label:32s} {np.mean(scores['lol']):7.2f} {np.mean(ident):14.2f} {np.median(ident):7.2f} "
              f"{min(ident):6.2f} {np.mean(scores.get('mixed', [float('nan')])):7.2f}", flush=True)


if __name__ == "__main__":
    main()
