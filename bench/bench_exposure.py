"""Does a model leave lit photos lit? Identity, mixed-exposure and colour-cast figures, and a contact sheet.

    python bench/bench_exposure.py [--models mirnet,neid,msrnet] [--weights mirnet=runs/x/export/mirnet-lol.safetensors]
                                   [--lol ../shared/data/lol] [--sheet docs/exposure.jpg]   # needs the test extra (scikit-image)

Images, all ones the project may ship: four well-exposed photos distributed with scikit-image
(``astronaut``: NASA, public domain; ``coffee``: Rachel Michetti / Pikolo Espresso Bar, CC0; ``chelsea``:
Stefan van der Walt, CC0; ``rocket``: NASA / SpaceX, public domain) and a neutral grey chart made here
(grey steps and a ramp with fine texture, a* = b* = 0).

With ``--lol DIR``, the well-exposed targets (mean grey >= 0.4, the issue's measure) of the scene groups
``lowlight train`` holds out for validation (``evaluate.validation_stems``; one per distinct target, at
full size) are identity images too; dimmer targets are a model's to brighten.

Printed per model, at scale 1:
- ``identity``: PSNR of the output against the input for each well-exposed photo and the chart (median
  and worst), and with ``--lol`` for the held-out LOL targets and for both sets together; a model that
  leaves a lit photo alone scores high;
- ``mixed``: PSNR against the original of each photo darkened with a spatially varying exposure
  (``pairs.darken(spatial=True)``, seed 7): lamps and skies lit, the rest LOL-dark;
- ``cast``: the mean chroma shift (CIE Lab a*, b*, output minus input, averaged over pixels) on the grey
  chart as it is and darkened (``pairs.darken``, seed 3), and on the well-exposed photos; a neutral
  input must stay neutral: |a*|, |b*| < 3;
- ``backlit x``: on the backlit portrait below, the output's mean brightness on the shaded subject over the
  lit original's there (1: the subject lifted back to its light; the input's own figure is printed first);
  ``clean``: the same on the portrait without sensor noise, as a phone's processed backlit photo is.
The sheet has one row per scene (a backlit portrait: ``astronaut`` with 4 stops of shadow over the
subject, :func:`backlit`; a well-exposed photo; a half-lit scene; the shipped dark sample, noisy as LOL's
inputs are; ``chelsea`` with 0.08 of the light and no noise, as a phone's denoised photo of a dark scene)
and one column per model after the input.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import cv2
import numpy as np
from skimage import data

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lowlight_cli.data import find_pairs  # noqa: E402
from lowlight_cli.evaluate import compare_grid, save_grid, validation_stems  # noqa: E402
from lowlight_cli.images import read_image  # noqa: E402
from lowlight_cli.inference import RunOptions, load_enhancer  # noqa: E402
from lowlight_cli.metrics import psnr  # noqa: E402
from lowlight_cli.training.pairs import darken  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[1] / "lowlight_cli" / "samples" / "coffee_dark.png"


def _even(rgb: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(rgb[: rgb.shape[0] // 2 * 2, : rgb.shape[1] // 2 * 2]).astype(np.float32)


def photos() -> dict[str, np.ndarray]:
    return {k: _even(getattr(data, k)() / 255.0) for k in ("astronaut", "coffee", "chelsea", "rocket")}


def grey_chart(h: int = 384, w: int = 512) -> np.ndarray:
    """Eight grey steps over a ramp, with a fine seeded texture: neutral everywhere (R = G = B)."""
    ramp = np.tile(np.linspace(0.05, 0.95, w, dtype=np.float32), (h, 1))
    steps = np.repeat(np.linspace(0.1, 0.9, 8, dtype=np.float32), w // 8)[None, :].repeat(h // 2, 0)
    grey = np.concatenate([steps, ramp[h // 2 :]], 0)
    grey = np.clip(grey + np.random.default_rng(0).normal(0, 0.01, grey.shape).astype(np.float32), 0, 1)
    return np.repeat(grey[..., None], 3, axis=2)


WELL_EXPOSED = 0.4  # mean grey of a photo that is already lit


def held_out_targets(root: Path) -> list[np.ndarray]:
    """The distinct well-exposed targets of LOL's validation scene groups, float32 [0, 1] (several
    exposures of a scene share one target: each target counts once)."""
    held_out = set(validation_stems(root))
    seen, targets = set(), []
    for pair in find_pairs(root / "our485"):
        if pair.stem in held_out:
            rgb = _even(read_image(pair.high).rgb)
            key = rgb[::8, ::8].tobytes()
            if key not in seen:
                seen.add(key)
                if cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).mean() >= WELL_EXPOSED:
                    targets.append(rgb)
    return targets


def subject_shade(h: int, w: int, *, centre: tuple[float, float], radius: tuple[float, float]) -> np.ndarray:
    """``(H, W)`` in [0, 1]: 1 on a soft ellipse at ``centre`` (fractions of height, width) with ``radius``
    (fractions), flat inside, 0 away from it: where :func:`backlit` puts its shadow."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    d2 = ((yy / h - centre[0]) / radius[0]) ** 2 + ((xx / w - centre[1]) / radius[1]) ** 2
    return np.exp(-0.5 * d2**2)


def backlit(rgb: np.ndarray, *, centre: tuple[float, float], radius: tuple[float, float], stops: float = 4.0,
            seed: int = 5, noise: bool = True) -> np.ndarray:
    """``rgb`` with its subject in shadow and the rest as lit: ``stops`` of light taken (in linear light)
    inside :func:`subject_shade`, then (with ``noise``) sensor-like noise, and 8 bits, as :func:`darken`
    makes them. A backlit portrait made from a lit one; without noise, as a phone's processed one is."""
    shade = subject_shade(*rgb.shape[:2], centre=centre, radius=radius)[..., None]
    k = 2.0 ** (-stops * shade)
    rng = np.random.default_rng(seed)
    linear = np.power(rgb.astype(np.float64), 2.2) * k
    photons = 1000.0
    noisy = rng.poisson(linear * photons) / photons + rng.normal(0.0, 0.003, size=rgb.shape) if noise else linear
    return (np.round(np.power(np.clip(noisy, 0.0, 1.0), 1 / 2.2) * 255.0) / 255.0).astype(np.float32)


def lab_ab(rgb: np.ndarray) -> np.ndarray:
    """Mean (a*, b*) of an sRGB image in [0, 1]."""
    lab = cv2.cvtColor(np.clip(rgb, 0, 1).astype(np.float32), cv2.COLOR_RGB2LAB)
    return lab[..., 1:].reshape(-1, 2).mean(0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="mirnet,neid,msrnet")
    ap.add_argument("--weights", action="append", default=[], help="NAME=FILE: run model NAME with this weights file")
    ap.add_argument("--sheet", type=Path, default=None, help="write the contact sheet here (e.g. docs/exposure.jpg)")
    ap.add_argument("--strength", type=float, default=1.0)
    ap.add_argument("--lol", type=Path, default=None, help="LOL root: its held-out validation targets are identity images too")
    args = ap.parse_args()
    logging.disable(logging.WARNING)

    files = dict(w.split("=", 1) for w in args.weights)
    lit = photos()
    chart = grey_chart()
    mixed = {k: darken(v, np.random.default_rng([7, i]), spatial=True) for i, (k, v) in enumerate(lit.items())}
    dark_chart = darken(chart, np.random.default_rng(3))
    dark = _even(read_image(SAMPLE).rgb)
    where = {"centre": (0.45, 0.38), "radius": (0.5, 0.3)}
    portrait = backlit(lit["astronaut"], **where)
    portrait_clean = backlit(lit["astronaut"], **where, noise=False)
    subject = subject_shade(*portrait.shape[:2], **where) > 0.9

    def subject_lift(out: np.ndarray) -> float:
        return float(out[subject].mean() / lit["astronaut"][subject].mean())
    clean = darken(lit["chelsea"], np.random.default_rng(5), exposure=(0.08, 0.08), noise=False)
    scenes = [("backlit", portrait), ("well-exposed", lit["coffee"]), ("half-lit", mixed["rocket"]), ("dark", dark),
              ("dark, clean", clean)]
    columns = [[img for _, img in scenes]]
    labels = ["input"]

    targets = held_out_targets(args.lol) if args.lol else []
    lol_head = f" {'LOL targets (' + str(len(targets)) + ')':>19s} {'all: median':>11s} {'worst':>6s}" if targets else ""
    print(f"{'model':24s} {'identity median':>15s} {'worst':>6s}{lol_head} {'mixed':>6s} "
          f"{'cast chart a*,b*':>17s} {'cast dark chart':>16s} {'cast photos':>12s} {'backlit x':>9s} {'clean':>5s}")
    print(f"{'(input)':24s} {'':>15s} {'':>6s}{' ' * len(lol_head)} {'':>6s} {'':>17s} {'':>16s} {'':>12s} "
          f"{subject_lift(portrait):9.2f} {subject_lift(portrait_clean):5.2f}")
    for name in args.models.split(","):
        enh = load_enhancer(name, weights=Path(files[name]) if name in files else None,
                            options=RunOptions(device="cpu", scale=1, strength=args.strength))
        ident = [psnr(enh(img), img) for img in [*lit.values(), chart]]
        lol_cells = ""
        if targets:
            held = [psnr(enh(img), img) for img in targets]
            both = ident + held
            lol_cells = f" {np.median(held):8.2f} (w {min(held):5.2f}) {np.median(both):11.2f} {min(both):6.2f}"
        mix = [psnr(enh(mixed[k]), lit[k]) for k in lit]
        cast_chart = lab_ab(enh(chart)) - lab_ab(chart)
        cast_dark = lab_ab(enh(dark_chart)) - lab_ab(dark_chart)
        cast_photos = np.mean([np.abs(lab_ab(enh(img)) - lab_ab(img)) for img in lit.values()], axis=0)
        label = f"{enh.label}" + (f" ({Path(files[name]).name})" if name in files else "")
        print(f"{label:24s} {np.median(ident):15.2f} {min(ident):6.2f}{lol_cells} {np.mean(mix):6.2f} "
              f"{cast_chart[0]:8.2f},{cast_chart[1]:6.2f}  {cast_dark[0]:8.2f},{cast_dark[1]:6.2f} "
              f"{cast_photos[0]:5.2f},{cast_photos[1]:5.2f} {subject_lift(enh(portrait)):9.2f} "
              f"{subject_lift(enh(portrait_clean)):5.2f}", flush=True)
        columns.append([enh(img) for _, img in scenes])
        labels.append(enh.label)
    if args.sheet is not None:
        cells = [columns[c][r] for r in range(len(scenes)) for c in range(len(columns))]
        names = [f"{scenes[r][0]}: {labels[c]}" for r in range(len(scenes)) for c in range(len(columns))]
        save_grid(args.sheet, compare_grid(cells, names, tile_width=300, columns=len(columns)))
        print(f"sheet: {args.sheet}")


if __name__ == "__main__":
    main()
