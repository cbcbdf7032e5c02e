"""Wall time and peak memory of `lowlight enhance` on a large photo.

    python bench/bench_enhance.py --model msr --megapixels 12 [--extra "--tile 512"]

Makes a synthetic dark photo of the asked size from the shipped sample (resized, so it has real
structure and noise), then runs the installed CLI under GNU time and prints seconds and peak RSS.
"""

import argparse
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2

SAMPLE = Path(__file__).resolve().parents[1] / "lowlight_cli" / "samples" / "coffee_dark.png"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="msr")
    parser.add_argument("--megapixels", type=float, default=12.0)
    parser.add_argument("--extra", default="", help="more enhance options, quoted")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        src = cv2.imread(str(SAMPLE))
        h, w = src.shape[:2]
        k = (args.megapixels * 1e6 / (h * w)) ** 0.5
        big = cv2.resize(src, (round(w * k), round(h * k)), interpolation=cv2.INTER_CUBIC)
        path = Path(tmp) / "big.png"
        cv2.imwrite(str(path), big)
        cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "lowlight_cli.cli", "enhance", str(path),
               "--model", args.model, "-o", str(Path(tmp) / "out.png"), *shlex.split(args.extra)]
        run = subprocess.run(cmd, capture_output=True, text=True)
        if run.returncode != 0:
            sys.exit(run.stderr)
        wall = re.search(r"Elapsed \(wall clock\) time.*: (\S+)", run.stderr).group(1)
        rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", run.stderr).group(1))
        print(f"model {args.model}  image {big.shape[1]}x{big.shape[0]} ({big.shape[0] * big.shape[1] / 1e6:.1f} MP)"
              f"  wall {wall}  peak RSS {rss / 1024:.0f} MiB  (whole CLI process, read + enhance + write)")


if __name__ == "__main__":
    main()
