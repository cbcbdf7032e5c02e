"""Models on the held-out sets `lowlight train` validates on: LOL scene groups, identity and mixed exposure.

    python bench/bench_holdout.py --data-dir ../shared/data/lol --photos ../shared/data/photos \
        --models mirnet,lantern [--weights lantern=runs/x/export/lantern-mix.safetensors]

The sets are the ones a mixture run with these folders holds out (``training.validate.validation_sets``,
split seed 0 as every bundled run): ``lol``, the real pairs of the held-out scene groups (whole frames);
``identity``, held-out LOL targets and photos against themselves; ``mixed``, the same darkened by a
spatially varying exposure (a soft shadow of several stops with lit areas in it, sensor noise) against
the original. Each model runs through the inference engine (`lowlight enhance`'s path, at scale 1).
Printed per model and set: mean PSNR, and for identity the median and the worst image.

Two columns take LOL's exposure apart. ``lol exp-fit``: the mean PSNR once each output is scaled by the
one gain that fits it best to its target (least squares), so what is left is everything but the
picture's overall exposure; the gap to ``lol`` is what a wrong exposure costs. ``lol detail``: the mean PSNR
once each output's coarse content (a Gaussian blur of sigma :data:`DETAIL_SIGMA` px) is replaced by the
target's, so what is left is noise and fine detail; the gap from ``lol exp-fit`` is local exposure and
colour. ``--seen N`` adds ``seen``
and ``seen exp-fit``: the same on N pairs the runs *trained* on (every len/N-th of the training split,
whole frames). All eval15 scenes but one have a near-identical neighbour in our485 (LOL's README), so
``seen`` shows how well a recipe has learnt the exposures of the scenes eval15 reuses, without looking at
eval15.

``--oracle`` prints, before the models, what knowing the darkening would give on ``mixed``: each input with
its exposure map and tone curve exactly undone (:meth:`pairs.Darkening.undo`, no denoising), and the same
followed by OpenCV's non-local means (``fastNlMeansDenoisingColored``, strength 10): references for a
blind model, which must find the map and the curve itself.

``--darkened K`` adds ``dark clean`` and ``dark noisy``: the identity images shot with K times the light
(:func:`expose`), without and with sensor noise, each with ``x bright``, the output's mean brightness over
the original's (1: the photo's own exposure back; above 1: lifted past it), and ``x chroma``, its mean
colourfulness over the original's (:func:`lowlight_cli.metrics.chroma`; 1: the colours back; under 1: greyer; colour noise
left in a noisy photo's output counts as colour too), and ``hue``, how far its saturated colours turn
(:func:`lowlight_cli.metrics.hue_shift`, degrees; a red hat turned orange is 10-15). The darkening
is a gain in the sRGB values, so a plain gain would bring a clean photo's colours back whole.

``--backlit`` adds ``backlit``: the identity images with subjects in shadow in a lit frame (what
``lowlight train --backlit`` trains on: :func:`pairs.shadow_mask`, 2-5 stops, sensor noise; seeded per image),
against the original, with ``x shadow``, the output's mean brightness inside the shadow over the
original's there (1: the subject lifted back to its light; the inputs' own figure is printed first).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lowlight_cli.inference import RunOptions, load_enhancer  # noqa: E402
from lowlight_cli.metrics import chroma, hue_shift, psnr  # noqa: E402
from lowlight_cli.training.config import TrainConfig, resolve  # noqa: E402
from lowlight_cli.training.data import load_split  # noqa: E402
from lowlight_cli.training.pairs import BACKLIT_EXPOSURE, darken_traced  # noqa: E402
from lowlight_cli.training.validate import mixed_pair, validation_pairs, validation_sets  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, required=True)
    ap.add_argument("--photos", type=Path, default=None)
    ap.add_argument("--models", default="mirnet")
    ap.add_argument("--weights", action="append", default=[], help="NAME=FILE: run model NAME with this weights file")
    ap.add_argument("--seen", type=int, default=0, help="also score N training pairs (whole frames)")
    ap.add_argument("--darkened", type=float, default=0.0,
                    help="also score the identity images darkened by this exposure (0.08: 3.6 stops), clean and noisy")
    ap.add_argument("--backlit", action="store_true", help="also score the identity images with subjects in shadow")
    ap.add_argument("--oracle", action="store_true",
                    help="also print the mixed set's inputs with their darkening exactly undone, without and with denoising")
    args = ap.parse_args()
    logging.disable(logging.WARNING)
    # Any mixture recipe makes the same sets: they depend on the folders and the split seed only.
    config = resolve(TrainConfig(model="lantern", out=Path("-"), data_dir=args.data_dir, photos=args.photos))
    split = load_split(config)
    sets = validation_sets(split, config)
    if args.seen:
        n = len(split.train.stems)
        sets["seen"] = validation_pairs(split.train.subset(list(range(0, n, max(1, n // args.seen)))[: args.seen]),
                                        seed=config.split_seed, crop=0)
    if args.darkened:
        highs = [high for _, high in sets["identity"]]
        sets["dark clean"] = [(expose(high, args.darkened, None), high) for high in highs]
        sets["dark noisy"] = [(expose(high, args.darkened, np.random.default_rng([config.split_seed, 3, j])), high)
                              for j, high in enumerate(highs)]
    shadows = []
    if args.backlit:
        sets["backlit"] = []
        for j, (_, high) in enumerate(sets["identity"]):
            low, drawn = darken_traced(high, np.random.default_rng([config.split_seed, 4, j]), exposure=BACKLIT_EXPOSURE,
                                       backlit=True)
            k = drawn.exposure[..., 0]
            shadows.append(k < np.sqrt(k.min() * k.max()))
            sets["backlit"].append((low, high))
    files = dict(w.split("=", 1) for w in args.weights)
    print(f"held out: {', '.join(f'{k} {len(v)} images' for k, v in sets.items())}")
    if args.oracle:
        oracle(sets["mixed"], seed=config.split_seed)
    if args.backlit:
        print(f"backlit inputs: {np.mean([psnr(low, high) for low, high in sets['backlit']]):.2f} dB, "
              f"x shadow {shadow_lift([low for low, _ in sets['backlit']], sets['backlit'], shadows):.2f}")
    extra_head = f" {'seen':>7s} {'seen exp-fit':>12s}" if args.seen else ""
    extra_head += "".join(f" {k:>10s} {'x bright':>8s} {'x chroma':>8s} {'hue':>5s}" for k in ("dark clean", "dark noisy")) if args.darkened else ""
    extra_head += f" {'backlit':>7s} {'x shadow':>8s}" if args.backlit else ""
    print(f"{'model':32s} {'lol':>7s} {'lol exp-fit':>11s} {'lol detail':>10s} {'identity mean':>14s} {'median':>7s} {'worst':>6s} "
          f"{'mixed':>7s}{extra_head}")
    for name in args.models.split(","):
        enhancer = load_enhancer(name, weights=Path(files[name]) if name in files else None,
                                 options=RunOptions(device="cpu", scale=1))
        scores, fitted, bright, colour, turn, outputs = {}, {}, {}, {}, {}, {}
        for k, pairs in sets.items():
            outs = [(np.clip(enhancer(low), 0.0, 1.0), high) for low, high in pairs]
            outputs[k] = [out for out, _ in outs]
            bright[k] = [out.mean() / max(high.mean(), 1e-6) for out, high in outs]
            colour[k] = [chroma(out) / max(chroma(high), 1e-6) for out, high in outs] if k.startswith("dark") else []
            turn[k] = [hue_shift(out, high) for out, high in outs] if k.startswith("dark") else []
            scores[k] = [psnr(out, high) for out, high in outs]
            fitted[k] = [psnr(np.clip(exposure_gain(out, high) * out, 0.0, 1.0), high) for out, high in outs]
            if k == "lol":
                detail = [psnr(np.clip(with_coarse_of(out, high), 0.0, 1.0), high) for out, high in outs]
        label = enhancer.label + (f" ({Path(files[name]).name})" if name in files else "")
        ident = scores.get("identity", [float("nan")])
        extra = f" {np.mean(scores['seen']):7.2f} {np.mean(fitted['seen']):12.2f}" if args.seen else ""
        extra += "".join(f" {np.mean(scores[k]):10.2f} {np.mean(bright[k]):8.2f} {np.mean(colour[k]):8.2f} {np.nanmean(turn[k]):5.1f}"
                        for k in ("dark clean", "dark noisy")) if args.darkened else ""
        extra += (f" {np.mean(scores['backlit']):7.2f} {shadow_lift(outputs['backlit'], sets['backlit'], shadows):8.2f}"
                  if args.backlit else "")
        print(f"{label:32s} {np.mean(scores['lol']):7.2f} {np.mean(fitted['lol']):11.2f} {np.mean(detail):10.2f} {np.mean(ident):14.2f} "
              f"{np.median(ident):7.2f} {min(ident):6.2f} {np.mean(scores.get('mixed', [float('nan')])):7.2f}{extra}",
              flush=True)


def oracle(pairs: list[tuple[np.ndarray, np.ndarray]], *, seed: int) -> None:
    """Mean PSNR on the mixed set of the input, of its darkening undone, and of that then denoised."""
    scores = []
    for j, (low, high) in enumerate(pairs):
        again, darkening = mixed_pair(high, seed=seed, index=j)
        assert np.array_equal(again, low), "the mixed set was not made by validate.mixed_pair"
        undone = darkening.undo(low)
        bgr = np.ascontiguousarray(np.round(undone[..., ::-1] * 255.0).astype(np.uint8))  # OpenCV's order
        denoised = cv2.fastNlMeansDenoisingColored(bgr, None, 10, 10, 7, 21)[..., ::-1].astype(np.float32) / 255.0
        scores.append((psnr(low, high), psnr(undone, high), psnr(denoised, high)))
    mean = np.mean(scores, axis=0)
    print(f"mixed, knowing the darkening: input {mean[0]:.2f}, undone {mean[1]:.2f}, undone + non-local means {mean[2]:.2f}")


def shadow_lift(outs: list[np.ndarray], pairs: list[tuple[np.ndarray, np.ndarray]], shadows: list[np.ndarray]) -> float:
    """Mean over images of the brightness of ``out`` inside its shadow over that of the original there."""
    return float(np.mean([out[m].mean() / max(high[m].mean(), 1e-6) for out, (_, high), m in zip(outs, pairs, shadows)]))


def expose(high: np.ndarray, k: float, rng: np.random.Generator | None) -> np.ndarray:
    """``high`` shot with ``k`` times the light (in linear light, ``rgb ** 2.2``), back to an 8-bit file; with
    ``rng``, sensor noise first (shot noise at 1000 photons full scale, read noise 0.004), without it a clean
    dark photo, as a phone's denoised JPEG is. Unlike :func:`pairs.darken` nothing else is drawn: every
    image gets the same exposure and tone curve, so the output's brightness can be read against the original's."""
    linear = np.power(high.astype(np.float64), 2.2) * k
    if rng is not None:
        linear = rng.poisson(linear * 1000.0) / 1000.0 + rng.normal(0.0, 0.004, size=linear.shape)
    return (np.round(np.power(np.clip(linear, 0.0, 1.0), 1.0 / 2.2) * 255.0) / 255.0).astype(np.float32)


DETAIL_SIGMA = 8.0


def with_coarse_of(out: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``out`` with its coarse content (a Gaussian blur of :data:`DETAIL_SIGMA` px) swapped for ``target``'s:
    its exposure, local tone and colour made right, its noise and fine detail left as they are."""
    def blur(a: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(a.astype(np.float32), (0, 0), DETAIL_SIGMA)
    return out - blur(out) + blur(target)


def exposure_gain(out: np.ndarray, target: np.ndarray) -> float:
    """The gain g that brings ``g * out`` closest to ``target`` (least squares): the best single gain for
    PSNR, where :func:`lowlight_cli.metrics.gt_mean` (the published protocol) matches the means."""
    out64 = out.astype(np.float64)
    return float((out64 * target).sum() / max((out64 * out64).sum(), 1e-12))


if __name__ == "__main__":
    main()
