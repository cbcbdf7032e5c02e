"""CUDA self-check: enhance on the GPU against the CPU, train a few steps and evaluate, in a few minutes.

    python bench/cuda_selfcheck.py                 # on a machine with a CUDA GPU
    python bench/cuda_selfcheck.py --cpu-dry-run   # the same steps on the CPU, small and fp32 only

1. Enhance: every learned model with bundled default weights (``--models`` to choose) on the shipped
   sample enlarged to ``--size`` (default 1024x683), on CUDA in fp32, fp16 and bf16, untiled and tiled
   (``--tile``, default 256, at least twice the model's overlap; the global context then comes from one
   pass over the image), each against the CPU's fp32 untiled output (eager torch). Tolerance, PSNR
   against the CPU: fp32 >= 45 dB (cuDNN may use TF32), fp16 >= 35 dB, bf16 >= 30 dB; a model whose spec
   is not half-safe runs fp32 whatever is asked, and is held to the fp32 figure.
2. Train: ``lowlight train`` (the command line, whatever the training code's layout) ``--steps`` steps
   of ``--train-model`` on synthetic pairs from the sample, ``--device cuda``, then its export.
3. Evaluate: ``lowlight eval`` of the exported weights on a paired folder in LOL layout (the sample and
   a brightened copy) on CUDA and on the CPU: the PSNRs must agree within 0.05 dB.

Prints one line per check and a summary; exit status 1 if any check fails. Without CUDA it says so and
exits 0 (skipped) unless ``--cpu-dry-run`` runs its steps on the CPU instead (``tests/test_bench.py``),
which checks the script, not the GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

import lowlight_cli as ll
from lowlight_cli import registry
from lowlight_cli.inference import default_model_name
from lowlight_cli.metrics import psnr
from lowlight_cli.weights import entries

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "lowlight_cli" / "samples" / "coffee_dark.png"
MIN_PSNR = {"fp32": 45.0, "fp16": 35.0, "bf16": 30.0}
EVAL_AGREEMENT_DB = 0.05


def lowlight(*args: str, device: str) -> subprocess.CompletedProcess:
    """``lowlight ARGS`` as a child process (from this checkout), output captured; raises on failure."""
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-m", "lowlight_cli.cli", *args, "--device", device],
                         capture_output=True, text=True, env=env)
    if run.returncode != 0:
        raise RuntimeError(f"lowlight {' '.join(args[:3])} ... failed:\n{run.stderr[-3000:]}")
    return run


class Checks:
    def __init__(self) -> None:
        self.failed: list[str] = []
        self.count = 0

    def report(self, name: str, ok: bool, detail: str) -> None:
        self.count += 1
        print(f"{'ok  ' if ok else 'FAIL'}  {name:44s} {detail}", flush=True)
        if not ok:
            self.failed.append(name)


def photo(size: str) -> np.ndarray:
    """The shipped sample resized to ``WxH``, RGB uint8."""
    w, h = (int(v) for v in size.split("x"))
    rgb = cv2.cvtColor(cv2.imread(str(SAMPLE)), cv2.COLOR_BGR2RGB)
    return cv2.resize(rgb, (w, h), interpolation=cv2.INTER_CUBIC)


def check_enhance(checks: Checks, models: list[str], image: np.ndarray, device: str, precisions: list[str],
                  tile: int) -> None:
    for name in models:
        spec = registry.get(name)
        reference = ll.load(name, device="cpu", backend="torch", memory=64)(image.astype(np.float32) / 255)
        for precision in precisions:
            used = precision if spec.half_safe else "fp32"
            for tiled in (False, True):
                side = max(tile, 2 * spec.overlap) if tiled else 0
                start = time.perf_counter()
                enhancer = ll.load(name, device=device, precision=precision, tile=side, backend="torch", memory=64)
                out = enhancer(image.astype(np.float32) / 255)
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                seconds = time.perf_counter() - start
                score = psnr(out, reference)
                plan = f"tile {side}" if tiled else "untiled"
                checks.report(f"enhance {name} {precision} {plan}", bool(np.isfinite(out).all()) and score >= MIN_PSNR[used],
                              f"{score:6.1f} dB vs CPU (>= {MIN_PSNR[used]:.0f}; ran {used}), max diff "
                              f"{np.abs(out - reference).max():.1e}, {seconds:.1f} s")


def check_train_and_eval(checks: Checks, work: Path, device: str, model: str, steps: int, patch: int) -> None:
    photos, lol = work / "photos", work / "lol"
    sample = cv2.imread(str(SAMPLE))
    bright = np.clip((sample / 255.0) ** (1 / 2.2) * 255, 0, 255).astype(np.uint8)
    for i, (y, x) in enumerate(((0, 0), (0, 200), (100, 100), (200, 300))):
        photos.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(photos / f"p{i}.png"), bright[y : y + 200, x : x + 300])
        for sub, img in (("low", sample), ("high", bright)):
            (lol / "eval15" / sub).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(lol / "eval15" / sub / f"{i}.png"), img[y : y + 200, x : x + 300])
    out = work / "run"
    start = time.perf_counter()
    lowlight("train", "--model", model, "--synthetic", str(photos), "--out", str(out), "--steps", str(steps),
             "--batch", "4", "--patch", str(patch), "--val-every", str(max(1, steps // 2)),
             "--ckpt-every", str(steps), device=device)
    exported = sorted((out / "export").glob("*.safetensors"))
    checks.report(f"train {model} {steps} steps on {device}", len(exported) == 1,
                  f"{len(exported)} exported file(s), {time.perf_counter() - start:.1f} s")
    if not exported:
        return
    scores = {}
    for where in dict.fromkeys((device, "cpu")):
        run = lowlight("eval", "--data-dir", str(lol), "--split", "eval15", "--model", str(exported[0]), "--json",
                       "--backend", "torch", device=where)
        scores[where] = json.loads(run.stdout)["models"][0]["psnr"]
    gap = abs(scores[device] - scores["cpu"])
    checks.report(f"eval {model} on {device} against cpu", gap <= EVAL_AGREEMENT_DB,
                  ", ".join(f"{k} {v:.3f} dB" for k, v in scores.items()) + f" (within {EVAL_AGREEMENT_DB} dB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-dry-run", action="store_true", help="run the steps on the CPU (fp32, small): checks the script")
    parser.add_argument("--models", default=None, help="comma-separated (default: every bundled default model)")
    parser.add_argument("--size", default=None, help="WxH of the test photo (default 1024x683; dry run 160x112)")
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--train-model", default=None, help="default: the default model's architecture (dry run msrnet_tiny)")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default 40; dry run 2)")
    args = parser.parse_args()
    dry = args.cpu_dry_run
    cuda = torch.cuda.is_available()
    print(f"torch {torch.__version__}, CUDA build {torch.version.cuda or 'none'}, "
          f"GPU: {torch.cuda.get_device_name(0) if cuda else 'none'}")
    if not cuda and not dry:
        print("skipped: torch sees no CUDA GPU (run it where one is lent; --cpu-dry-run checks the script on the CPU)")
        return
    device = "cpu" if dry else "cuda"
    models = args.models.split(",") if args.models else sorted({e.arch for e in entries() if e.default and e.bundled})
    train_model = args.train_model or ("msrnet_tiny" if dry else default_model_name())
    checks, start = Checks(), time.perf_counter()
    check_enhance(checks, models, photo(args.size or ("160x112" if dry else "1024x683")), device,
                  ["fp32"] if dry else ["fp32", "fp16", "bf16"], args.tile)
    with tempfile.TemporaryDirectory() as work:
        check_train_and_eval(checks, Path(work), device, train_model, args.steps or (2 if dry else 40), 32 if dry else 128)
    what = "CPU dry run (no GPU checked)" if dry else torch.cuda.get_device_name(0)
    print(f"{checks.count - len(checks.failed)} of {checks.count} checks passed on {what} in {time.perf_counter() - start:.0f} s")
    if checks.failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
