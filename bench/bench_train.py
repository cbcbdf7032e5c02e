"""Training images per second of each learned model's CPU variant, in every engine, side by side.

    python bench/bench_train.py [--models mirnet,neid,msrnet] [--modes fp32,channels_last,fp32+keep,channels_last+keep,bf16]
                                [--steps 4] [--repeats 3] [--layouts 1x2,2x1]

A measured step is a full training step as ``lowlight train`` runs it: the recipe's batch and crop,
forward through :class:`lowlight_cli.training.engine.EngineForward`, the recipe's loss, backward, Adam. Data are
fixed random tensors (cropping is not the network). For each repeat, every (model, mode, layout) is
timed once in turn, so that a load change on the machine hits all of them alike (interleaved); the
median of the repeats is printed with the ratio to today's default (``fp32``, one process with two
threads). Modes: ``fp32`` (contiguous, the old default), ``channels_last``, ``bf16`` (autocast, only on
a CPU with native bf16: skipped and said otherwise), ``compile`` (``torch.compile`` of the net) and
``compile_cl`` (both); ``+keep`` after a mode runs it with glibc keeping freed memory
(:mod:`lowlight_cli.allocator`, which ``lowlight train`` sets). Layouts: ``1x2`` one process with 2 threads; ``2x1`` two DDP processes (gloo on
127.0.0.1) with one thread each, batch per process as the recipe's, images/s counting both.
Give it the machine to itself: stop background training (``kill -STOP``) while it runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

# Run as a script from a checkout: make the package importable without installing it.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lowlight_cli import allocator, registry  # noqa: E402
from lowlight_cli.training.engine import EngineForward, cpu_features  # noqa: E402

MODES = ("fp32", "channels_last", "fp32+keep", "channels_last+keep", "bf16", "compile", "compile_cl")


def _setup(name: str, mode: str, threads: int):
    mode, _, keep = mode.partition("+")
    if keep:
        allocator.keep_freed_memory()
    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    spec = registry.get(name)
    recipe = spec.recipe
    torch.manual_seed(0)
    net = spec.create(train=True)
    engine = {"compile": "fp32", "compile_cl": "channels_last"}.get(mode, mode)
    model = EngineForward(net, engine)
    if mode.startswith("compile"):
        model = torch.compile(model)
    if dist.is_initialized():
        model = torch.nn.parallel.DistributedDataParallel(model)
    loss_fn = recipe.loss()
    opt = torch.optim.Adam(net.parameters(), lr=1e-5)
    k = recipe.input_downscale
    out_side = recipe.patch * k if k > 1 else recipe.patch * spec.scale
    g = torch.Generator().manual_seed(0)
    low = torch.rand(recipe.batch, 3, recipe.patch, recipe.patch, generator=g)
    high = torch.rand(recipe.batch, 3, out_side, out_side, generator=g)

    def step() -> None:
        loss, _ = loss_fn(model, low, high)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step, recipe.batch


def _time(step, steps: int) -> float:
    """Seconds per step: the median of ``steps`` timed steps after two untimed ones (warm-up, compile)."""
    step()
    step()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _ddp_worker(rank: int, name: str, mode: str, steps: int, port: int, result) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        step, batch = _setup(name, mode, 1)
        seconds = _time(step, steps)
        if rank == 0:
            result.put(2 * batch / seconds)
    finally:
        dist.destroy_process_group()


def measure(name: str, mode: str, layout: str, steps: int, port: int) -> float:
    """Images per second of one (model, mode, layout)."""
    if layout == "1x2":
        try:
            step, batch = _setup(name, mode, 2)
            return batch / _time(step, steps)
        finally:
            allocator.restore_defaults()  # the next case starts from glibc's defaults
    ctx = mp.get_context("spawn")
    result = ctx.Queue()
    mp.start_processes(_ddp_worker, args=(name, mode, steps, port, result), nprocs=2, start_method="spawn")
    return result.get()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="mirnet,neid,msrnet")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--layouts", default="1x2,2x1")
    ap.add_argument("--steps", type=int, default=4, help="timed steps per measurement (median)")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved rounds (median)")
    args = ap.parse_args()

    features = cpu_features()
    native_bf16 = bool(features & {"avx512_bf16", "amx_bf16"})
    print(f"CPU: {cpu_name()}; features: {', '.join(sorted(features)) or 'none found'}; "
          f"native bf16: {'yes' if native_bf16 else 'no'}; torch {torch.__version__}, {os.cpu_count()} cores")
    modes = [m for m in args.modes.split(",") if m]
    if any(m.startswith("bf16") for m in modes) and not native_bf16:
        print("bf16: skipped, this CPU has no native bf16 (autocast would emulate it, slower than fp32)")
        modes = [m for m in modes if not m.startswith("bf16")]
    if any("+keep" in m for m in modes) and not allocator.available():
        print("+keep: skipped, the C library is not glibc")
        modes = [m for m in modes if "+keep" not in m]
    layouts = args.layouts.split(",")
    cases = [(n, m, lay) for n in args.models.split(",") for m in modes for lay in layouts]
    runs: dict[tuple[str, str, str], list[float]] = {c: [] for c in cases}
    for r in range(args.repeats):
        for i, case in enumerate(cases):
            runs[case].append(measure(*case, args.steps, 29500 + 50 * r + i))
            print(f"  round {r + 1}: {case[0]:7s} {case[1]:18s} {case[2]}  {runs[case][-1]:6.2f} img/s", file=sys.stderr, flush=True)
    print(f"\n{'model':8s} {'mode':18s} {'layout':6s} {'img/s':>7s} {'x fp32 1x2':>11s}   rounds")
    for n in args.models.split(","):
        base = statistics.median(runs[(n, "fp32", "1x2")]) if (n, "fp32", "1x2") in runs else None
        for m in modes:
            for lay in layouts:
                v = statistics.median(runs[(n, m, lay)])
                ratio = f"{v / base:10.2f}x" if base else "          -"
                print(f"{n:8s} {m:18s} {lay:6s} {v:7.2f} {ratio}   {' '.join(f'{x:.2f}' for x in runs[(n, m, lay)])}")


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


if __name__ == "__main__":
    main()
