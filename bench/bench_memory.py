"""Peak memory of whole `lowlight enhance` runs against their `--memory` budget: single photos and a
folder that mixes sizes.

    python bench/bench_memory.py --models mirnet --megapixels 4,12 --budgets 1,2 [--folder] [--threads 2]

Each run is a child process (``bench_enhance.run_cli``: start, load, read, enhance, write) whose peak
resident size comes from ``getrusage``. What a run may hold is its budget plus the decoded image
(float32 RGB, 12 bytes per pixel of the largest input) plus a fixed overhead: Python, torch, ONNX
Runtime, the model and its sessions, measured as the peak of the same command on a 64x64 photo. The
table prints the peak, the peak less overhead and decoded image, and that over the budget: at most 1.00
is within budget. ``--folder`` adds a folder of 0.5 MP photos with one of the largest size among them
(ONNX Runtime's arena keeps what its largest call took, so the other images run on top of it). Photos
are made from the shipped sample, resized. The ONNX cache is the user's (warmed by the first run).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import cv2
import torch

from lowlight_cli.inference import memory_budget_bytes

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_enhance import ROOT, SAMPLE, run_cli  # noqa: E402

DECODED_BYTES_PER_PIXEL = 12  # float32 RGB: images.Picture.rgb


def photo(folder: Path, name: str, megapixels: float) -> tuple[Path, int]:
    """The shipped sample resized to about ``megapixels``, written as PNG; (path, pixels)."""
    src = cv2.imread(str(SAMPLE))
    h, w = src.shape[:2]
    k = (megapixels * 1e6 / (h * w)) ** 0.5
    out = cv2.resize(src, (max(8, round(w * k)), max(8, round(h * k))), interpolation=cv2.INTER_CUBIC)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    cv2.imwrite(str(path), out)
    return path, out.shape[0] * out.shape[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mirnet", help="comma-separated")
    parser.add_argument("--megapixels", default="4,12", help="comma-separated sizes of single photos")
    parser.add_argument("--budgets", default="1,2", help="comma-separated --memory values in GB; 'default' for none")
    parser.add_argument("--folder", action="store_true", help="also a folder: 0.5 MP photos and one of the largest size")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--extra", default="", help="more enhance options, quoted")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if k != "LOWLIGHT_BACKEND"}
    sizes = [float(v) for v in args.megapixels.split(",")]
    default = memory_budget_bytes(torch.device("cpu"), None)
    print(f"{os.cpu_count()} cores, --threads {args.threads}; GB = 2**30 bytes; allowed = budget + decoded image + overhead; "
          f"* the default budget")
    print(f"{'model':8s} {'input':22s} {'budget':>7s} {'wall s':>7s} {'peak':>7s} {'overhead':>8s} {'decoded':>7s} "
          f"{'rest':>7s} {'rest/budget':>11s}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tiny, _ = photo(tmp / "tiny", "tiny", 64 * 64 / 1e6)
        cases = [(f"{mp:g} MP photo", *photo(tmp / f"single-{mp:g}", "photo", mp)) for mp in sizes]
        if args.folder:
            folder = tmp / "mixed"
            biggest = max(sizes)
            # The big one first: the small ones then run beside the arena it grew.
            _, big = photo(folder, "a-big", biggest)
            for i in range(6):
                photo(folder, f"b-small-{i}", 0.5)
            cases.append((f"folder: 6x0.5 + {biggest:g} MP", folder, big))
        common = ["--threads", str(args.threads), *args.extra.split()]
        for model in args.models.split(","):
            def run(src: Path, budget: str) -> dict[str, float]:
                memory = [] if budget == "default" else ["--memory", budget]
                out = tmp / "out" / model / budget / src.name
                return run_cli(ROOT, [str(src), "--model", model, "-o", f"{out}/" if src.is_dir() else str(out.with_suffix(".png")),
                                      "--overwrite", *memory, *common], env)

            run(tiny, "default")  # warms the ONNX cache (graphs exported, memory probed) outside the figures
            overhead = run(tiny, "default")["rss"]
            for label, src, pixels in cases:
                for budget in args.budgets.split(","):
                    r = run(src, budget)
                    decoded = DECODED_BYTES_PER_PIXEL * pixels
                    rest = r["rss"] - overhead - decoded
                    gb = float(budget) * 2**30 if budget != "default" else default
                    shown = budget if budget != "default" else f"{default / 2**30:.2f}*"
                    print(f"{model:8s} {label:22s} {shown:>7s} {r['wall']:7.1f} {r['rss'] / 2**30:7.2f} "
                          f"{overhead / 2**30:8.2f} {decoded / 2**30:7.2f} {rest / 2**30:7.2f} {rest / gb:11.2f}", flush=True)


if __name__ == "__main__":
    main()
