"""How much of LOL eval15's plain PSNR is the exposure of its targets, and how much of that a model could know.

    python bench/bench_lol_exposure.py --data-dir ../shared/data/lol --models lantern,mirnet [--per-image]
                                       [--weights lantern=runs/x/export/lantern-mix.safetensors]

Each model runs on the 15 eval15 inputs (`lowlight enhance`'s path, scale 1); each output is scored three
ways against its target:

- ``plain``: as it is (the figure `lowlight eval` and the README report);
- ``remembered``: scaled so its mean grey level equals that of the *training* target of the same scene,
  the our485 target nearest to the eval15 target once both are shrunk to 60x40 and divided by their mean
  (LOL's README: all eval15 scenes but one have a near-identical neighbour in our485; for the one without,
  the nearest is another scene). This is what a model would print that had learnt the exposure of every
  training scene exactly and recognised the scene: an upper bound on what remembering exposures can buy;
- ``GT-mean``: scaled so its mean equals its own target's (the published protocol): no exposure error left.

The gap from ``remembered`` to ``GT-mean`` is exposure no model can know from the training data: LOL's
targets of one scene differ in brightness from shot to shot. The script prints that spread too: over
our485's scene groups (``scenes.csv``) with more than one distinct target, the standard deviation of the
log of their mean grey level, against the same over all targets.

It also prints how colourful LOL's targets are against their own inputs: over every eighth our485 pair, the
target's mean Lab chroma over that of its input brought to the target's mean by one gain (both blurred by
3 px so that the input's colour noise does not count), the median: 1 would be the input's colours, lit.

Only eval15's targets are read for scoring and for finding each scene's neighbour; nothing is fitted to
them. Prints per model the three means (and with ``--per-image`` each image's, with its nearest training
target and the two brightnesses).
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lowlight_cli.data import find_pairs  # noqa: E402
from lowlight_cli.images import read_image  # noqa: E402
from lowlight_cli.inference import RunOptions, load_enhancer  # noqa: E402
from lowlight_cli.metrics import chroma, gt_mean, psnr  # noqa: E402

THUMB = (60, 40)  # width, height: enough to tell LOL's scenes apart, too coarse for noise to matter


def thumb(rgb: np.ndarray) -> np.ndarray:
    return cv2.resize(rgb.astype(np.float32), THUMB, interpolation=cv2.INTER_AREA)


def remembered(out: np.ndarray, brightness: float) -> np.ndarray:
    """``out`` scaled so its mean grey level is ``brightness``, clipped to [0, 1]."""
    mean = float(out.mean())
    return np.clip(out * (brightness / mean) if mean > 0 else out, 0.0, 1.0).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, required=True, help="LOL root holding our485/, eval15/ and scenes.csv")
    ap.add_argument("--models", default="mirnet")
    ap.add_argument("--weights", action="append", default=[], help="NAME=FILE: run model NAME with this weights file")
    ap.add_argument("--per-image", action="store_true", help="also print each eval15 image's three scores")
    args = ap.parse_args()
    logging.disable(logging.WARNING)

    train = find_pairs(args.data_dir / "our485")
    train_thumbs = np.stack([thumb(read_image(p.high).rgb) for p in train])
    train_means = train_thumbs.mean(axis=(1, 2, 3))
    normalised = train_thumbs / train_means[:, None, None, None]

    scenes = {row["id"]: row["scene"] for row in csv.DictReader(open(args.data_dir / "scenes.csv"))}
    by_scene: dict[str, set[float]] = defaultdict(set)
    for p, m in zip(train, train_means):
        by_scene[scenes.get(p.stem, p.stem)].add(round(float(m), 5))
    spreads = [np.std(np.log(sorted(ms))) for ms in by_scene.values() if len(ms) > 1]
    print(f"our485 targets' brightness, std of log(mean grey): within a scene group {np.mean(spreads):.3f} "
          f"({len(spreads)} groups with several distinct targets), over all targets {np.std(np.log(train_means)):.3f}")

    ratios = []
    for p in train[::8]:
        low, high = (cv2.GaussianBlur(read_image(f).rgb.astype(np.float32), (0, 0), 3.0) for f in (p.low, p.high))
        lifted = low * (high.mean() / max(float(low.mean()), 1e-6))
        ratios.append(chroma(high) / max(chroma(lifted), 1e-6))
    print(f"our485 targets' colour: Lab chroma over their inputs' brought up by one gain, median {np.median(ratios):.2f} "
          f"({len(ratios)} pairs)")

    pairs = find_pairs(args.data_dir / "eval15")
    cases = []
    for p in pairs:
        low, high = read_image(p.low).rgb, read_image(p.high).rgb
        t = thumb(high)
        nearest = int(np.argmin(((normalised - t / t.mean()) ** 2).mean(axis=(1, 2, 3))))
        cases.append((p.stem, low, high, train[nearest].stem, float(train_means[nearest])))

    files = dict(w.split("=", 1) for w in args.weights)
    print(f"eval15, {len(cases)} pairs; PSNR in dB")
    print(f"{'model':32s} {'plain':>7s} {'remembered':>10s} {'GT-mean':>8s}")
    for name in args.models.split(","):
        enhancer = load_enhancer(name, weights=Path(files[name]) if name in files else None,
                                 options=RunOptions(device="cpu", scale=1))
        rows = []
        for stem, low, high, neighbour, brightness in cases:
            out = np.clip(enhancer(low), 0.0, 1.0)
            rows.append((psnr(out, high), psnr(remembered(out, brightness), high), psnr(gt_mean(out, high), high)))
            if args.per_image:
                print(f"  {stem:>5s} (nearest our485 target {neighbour:>5s}: brightness {brightness:.3f}, own "
                      f"{float(thumb(high).mean()):.3f}, output {float(out.mean()):.3f})  "
                      + "  ".join(f"{v:6.2f}" for v in rows[-1]))
        label = enhancer.label + (f" ({Path(files[name]).name})" if name in files else "")
        mean = np.mean(rows, axis=0)
        print(f"{label:32s} {mean[0]:7.2f} {mean[1]:10.2f} {mean[2]:8.2f}", flush=True)


if __name__ == "__main__":
    main()
