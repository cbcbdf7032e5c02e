"""Wall time, CPU time and peak memory of the whole `lowlight enhance` command on a large photo,
this checkout against an earlier revision, in one run.

    python bench/bench_enhance.py --models mirnet --megapixels 12 [--against c6f6dc7] [--extra "--tile 512"]

Makes a dark photo of the asked size from the shipped sample (resized, so it has real structure and
noise), then runs `python -m lowlight_cli.cli enhance` as a child process under ``getrusage``: read,
enhance, write, the model's loading and Python's start included. Each model runs with this checkout
twice: first with an empty ONNX cache (``cold``: its graphs are exported then, once per machine), then
warm; with ``--against REV`` also once with that revision's code (a temporary ``git worktree``), and
the ratio of wall times is printed. System time over user time shows the page faults of freshly
mapped buffers. Give it the machine to itself (``kill -STOP`` background training).
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "lowlight_cli" / "samples" / "coffee_dark.png"


def run_cli(code: Path, args: list[str], env: dict[str, str]) -> dict[str, float]:
    """One ``lowlight enhance`` process from the checkout at ``code``: wall, user, sys seconds, peak RSS."""
    cmd = [sys.executable, "-c", "import os, resource, subprocess, sys, time;"
           "t = time.perf_counter(); r = subprocess.run(sys.argv[1:]); w = time.perf_counter() - t;"
           "u = resource.getrusage(resource.RUSAGE_CHILDREN);"
           "print('BENCH', r.returncode, w, u.ru_utime, u.ru_stime, u.ru_maxrss, file=sys.stderr)",
           sys.executable, "-m", "lowlight_cli.cli", "enhance", *args]
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=code, env=env | {"PYTHONPATH": str(code)})
    line = next((x for x in run.stderr.splitlines() if x.startswith("BENCH")), None)
    if line is None or line.split()[1] != "0":
        sys.exit(f"enhance failed in {code}:\n{run.stderr[-2000:]}")
    _, _, wall, user, system, rss = line.split()
    return {"wall": float(wall), "user": float(user), "sys": float(system), "rss": int(rss) * 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mirnet", help="comma-separated")
    parser.add_argument("--megapixels", type=float, default=12.0)
    parser.add_argument("--against", default=None, help="a git revision to compare with (its code, same photo)")
    parser.add_argument("--extra", default="", help="more enhance options, quoted")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = cv2.imread(str(SAMPLE))
        h, w = src.shape[:2]
        k = (args.megapixels * 1e6 / (h * w)) ** 0.5
        big = cv2.resize(src, (round(w * k), round(h * k)), interpolation=cv2.INTER_CUBIC)
        photo = tmp / "big.png"
        cv2.imwrite(str(photo), big)
        codes = [("this checkout", ROOT)]
        if args.against:
            old = tmp / "against"
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(old), args.against], check=True)
            codes.append((f"{args.against}", old))
        env = {k: v for k, v in os.environ.items() if k != "LOWLIGHT_BACKEND"} | {"LOWLIGHT_CACHE": str(tmp / "cache")}
        print(f"image {big.shape[1]}x{big.shape[0]} ({big.shape[0] * big.shape[1] / 1e6:.1f} MP) from the shipped sample; "
              f"{os.cpu_count()} cores; whole CLI process (start, load, read, enhance, write)")
        print(f"{'model':8s} {'code':14s} {'run':5s} {'wall s':>7s} {'user s':>7s} {'sys s':>6s} {'sys/user':>8s} {'peak RSS':>9s} {'x':>6s}")
        try:
            for model in args.models.split(","):
                results = []
                for name, code in codes:
                    for run in (("cold", "warm") if code == ROOT else ("-",)):
                        out = tmp / f"out-{len(results)}.png"
                        r = run_cli(code, [str(photo), "--model", model, "-o", str(out), *shlex.split(args.extra)], env)
                        results.append((name, run, r))
                        out.unlink()
                base = results[-1][2]["wall"] if args.against else None
                for name, run, r in results:
                    ratio = f"{base / r['wall']:5.2f}x" if base else "     -"
                    print(f"{model:8s} {name:14s} {run:5s} {r['wall']:7.1f} {r['user']:7.1f} {r['sys']:6.1f} "
                          f"{r['sys'] / r['user']:8.2f} {r['rss'] / 2**30:7.2f} G {ratio}", flush=True)
        finally:
            if args.against:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)], check=False)


if __name__ == "__main__":
    main()
