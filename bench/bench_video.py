"""Flicker and speed of video enhancement on a static dark scene, with and without the averaged global context.

    python bench/bench_video.py [--model NAME] [--size 640x360] [--frames 24] [--fps 24] [--noise 4]
                                [--baselines gamma,gamma_auto,he,autocontrast] [--device cpu] [--threads 0]
                                [--keep DIR]

The clip is made here: the bundled ``coffee_dark.png`` cropped to 16:9 and resized to ``--size``, the
same picture in every frame plus fresh Gaussian noise (``--noise`` levels of 255, as a dark sensor
gives), encoded with libx264 at CRF 0 into Matroska, without audio. Each method enhances it through
:func:`lowlight_cli.video.enhance_video`, as ``lowlight enhance clip.mkv`` does, the learned model
(default: the bundled default) with each frame's own global statistics (``context 0 s``), with their
average over :data:`video.CONTEXT_SECONDS` (what ``enhance`` does), and with the first frame's for
every frame (``inf s``: the floor an average can reach on a static scene).

Flicker is :func:`video.flicker` (the mean absolute frame-to-frame change of the mean luma) of the
output over the input's; ``std ratio`` is the same for the standard deviation over frames of the mean
luma (it also sees the average settling after the first frame). A fixed ``gamma`` has no global
statistics: its ratio is the input's noise brightened.
``frames/s`` counts the whole run after one warm-up frame: decoding, enhancing, measuring the context,
encoding (at CRF 0 here).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import torch

# Run as a script from a checkout: make the package importable without installing it.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lowlight_cli import video  # noqa: E402
from lowlight_cli.images import read_image, to_uint8  # noqa: E402
from lowlight_cli.inference import RunOptions, default_model_name, load_enhancer, set_threads  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[1] / "lowlight_cli" / "samples" / "coffee_dark.png"


def static_clip(path: Path, *, size: tuple[int, int], frames: int, fps: int, noise: float, seed: int = 0) -> Path:
    """The sample photo as a ``frames``-long static scene with fresh noise per frame (module docstring)."""
    rgb = read_image(SAMPLE).rgb
    h = round(rgb.shape[1] * size[1] / size[0])
    top = (rgb.shape[0] - h) // 2
    picture = cv2.resize(rgb[top : top + h], size, interpolation=cv2.INTER_AREA) * 255.0
    rng = np.random.default_rng(seed)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps, options={"crf": "0"})
        stream.width, stream.height, stream.pix_fmt = *size, "yuv420p"
        for i in range(frames):
            noisy = to_uint8((picture + rng.normal(0.0, noise, picture.shape)) / 255.0)
            frame = av.VideoFrame.from_ndarray(noisy, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None, help="learned model (default: the bundled default)")
    parser.add_argument("--size", default="640x360", help="WIDTHxHEIGHT of the clip")
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--fps", type=int, default=24)
    parser.add_argument("--noise", type=float, default=4.0, help="noise std in levels of 255")
    parser.add_argument("--baselines", default="gamma,gamma_auto,he,autocontrast", help="comma-separated; '' for none")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads; 0: every core")
    parser.add_argument("--keep", type=Path, default=None, help="folder to keep the clip and the outputs in")
    args = parser.parse_args()
    set_threads(args.threads)
    w, _, h = args.size.lower().partition("x")
    folder = args.keep or Path(tempfile.mkdtemp(prefix="bench_video_"))
    folder.mkdir(parents=True, exist_ok=True)
    src = static_clip(folder / "static.mkv", size=(int(w), int(h)), frames=args.frames, fps=args.fps, noise=args.noise)
    base, base_std = video.flicker(src), float(video.mean_lumas(src).std())
    model = args.model or default_model_name()
    print(f"clip: {args.size}, {args.frames} frames at {args.fps} fps, noise {args.noise:g}/255; "
          f"input flicker {base:.4f} (mean |d mean luma|), std {base_std:.4f}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}")
    print(f"{'method':<14} {'context':>8} {'flicker ratio':>14} {'std ratio':>10} {'mean luma':>10} {'frames/s':>9}")
    runs = [(model, 0.0), (model, video.CONTEXT_SECONDS), (model, float("inf"))]
    runs += [(name, 0.0) for name in args.baselines.split(",") if name.strip()]
    for name, seconds in runs:
        enhancer = load_enhancer(name.strip(), options=RunOptions(device=args.device))
        enhancer(np.zeros((int(h), int(w), 3), np.float32))  # warm-up: the memory probe and lazy inits are not frames
        dst = folder / f"{name.strip().replace('.', '-')}_{seconds:g}s.mp4"
        result = video.enhance_video(enhancer, src, dst, crf=0, context_seconds=seconds)
        lumas = video.mean_lumas(dst)
        context = f"{seconds:g} s" if enhancer.net is not None and not enhancer.spec.tile_safe else "-"
        print(f"{enhancer.label:<14} {context:>8} {video.flicker(dst) / base:>14.2f} {lumas.std() / base_std:>10.2f} "
              f"{lumas.mean():>10.1f} {result.fps:>9.2f}", flush=True)
    print(f"clip and outputs in {folder}")


if __name__ == "__main__":
    main()
