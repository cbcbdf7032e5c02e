"""How well Lantern's colour transform *can* fit a target, apart from how well its network predicts it.

    python bench/bench_grid_ceiling.py --data-dir ../shared/data/lol --photos ../shared/data/photos \
        [--images 6] [--steps 200] [--cells 16] [--bins 8]

For each of the first N pairs of the held-out LOL and mixed-exposure sets (``bench/bench_holdout.py``'s),
the grid (``cells`` x ``cells`` x ``bins`` log gains), the picture's colour matrix and the guide are fitted
to that pair's target by Adam on the L1 loss, with no network and no denoiser: the graded image's PSNR
is the ceiling of the transform itself. Far above what the trained model reaches, it says the network
that predicts the grid, not the grid, is what falls short. One thread; minutes.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lowlight_cli.metrics import psnr  # noqa: E402
from lowlight_cli.models.lantern import Lantern  # noqa: E402
from lowlight_cli.training.config import TrainConfig, resolve  # noqa: E402
from lowlight_cli.training.data import load_split  # noqa: E402
from lowlight_cli.training.validate import validation_sets  # noqa: E402


def fitted(low: np.ndarray, high: np.ndarray, *, cells: int, bins: int, steps: int) -> float:
    x = torch.from_numpy(np.ascontiguousarray(low)).permute(2, 0, 1)[None].float()
    target = torch.from_numpy(np.ascontiguousarray(high)).permute(2, 0, 1)[None].float()
    net = Lantern(glance=16 * cells, grid_width=4, bins=bins, width=8, depth=2)  # only its guide and grade()
    grid = torch.zeros(1, 4 * bins, cells, cells, requires_grad=True)
    affine = torch.zeros(1, 12, requires_grad=True)
    box = torch.tensor([[0.0, 0.0, *x.shape[-2:]]])
    opt = torch.optim.Adam([grid, affine, *net.guide.parameters()], lr=0.05)
    for _ in range(steps):
        graded, _ = net.grade(x, grid, affine, box)
        loss = (graded - target).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return psnr(graded.detach().clamp(0, 1)[0].permute(1, 2, 0).numpy(), high)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, required=True)
    ap.add_argument("--photos", type=Path, default=None)
    ap.add_argument("--images", type=int, default=6)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--cells", type=int, default=16)
    ap.add_argument("--bins", type=int, default=8)
    args = ap.parse_args()
    logging.disable(logging.WARNING)
    torch.set_num_threads(1)
    config = resolve(TrainConfig(model="lantern", out=Path("-"), data_dir=args.data_dir, photos=args.photos))
    sets = validation_sets(load_split(config), config)
    print(f"grid {args.cells}x{args.cells} cells x {args.bins} bins, fitted per image by {args.steps} Adam steps")
    for name in ("lol", "mixed"):
        if name not in sets:
            continue
        scores = [fitted(low, high, cells=args.cells, bins=args.bins, steps=args.steps)
                  for low, high in sets[name][: args.images]]
        print(f"{name:6s} fitted transform PSNR mean {np.mean(scores):.2f} ({' '.join(f'{v:.1f}' for v in scores)})",
              flush=True)


if __name__ == "__main__":
    main()
