"""How a training step runs: the process (device, threads, the DDP group under torchrun), the engine
(fp32, channels-last, bf16 autocast) and the weight average."""

from __future__ import annotations

import os
import platform
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ..errors import UsageError
from ..inference import pick_device
from .config import TrainConfig


@dataclass(frozen=True)
class Ranks:
    """This process's place under ``torchrun`` (``WORLD_SIZE`` and friends); one process without it."""

    world: int
    rank: int
    local_rank: int
    local_world: int

    @classmethod
    def from_env(cls) -> Ranks:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        return cls(world=world, rank=int(os.environ.get("RANK", "0")), local_rank=int(os.environ.get("LOCAL_RANK", "0")),
                   local_world=int(os.environ.get("LOCAL_WORLD_SIZE", str(world))))

    @property
    def main(self) -> bool:
        """Rank 0 alone logs, validates, checkpoints and exports."""
        return self.rank == 0


@contextmanager
def training_process(config: TrainConfig, ranks: Ranks) -> Iterator[tuple[torch.device, int]]:
    """Set this process up for training and yield ``(device, threads)``; under DDP, join the process
    group for the duration."""
    device = pick_device(config.device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", ranks.local_rank)
    threads = config.threads or max(1, (os.cpu_count() or 1) // ranks.local_world)
    torch.set_num_threads(threads)
    # Tiny gradients late in training (after lr decays) produce denormal floats, which made CPU steps
    # 6x slower here; flushing them to zero changes nothing measurable in the result.
    torch.set_flush_denormal(True)
    if ranks.world > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield device, threads
    finally:
        if ranks.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def gather(obj: Any, world: int) -> list[Any]:
    """``obj`` of every rank, in rank order: a collective that every rank must reach under DDP."""
    if world == 1:
        return [obj]
    objs = [None] * world
    dist.all_gather_object(objs, obj)
    return objs


def hardware(device: torch.device, world: int, threads: int) -> str:
    """What the run trains on, in words (for config.json, the log and the weights entry)."""
    if device.type == "cuda":
        return f"{world}x {torch.cuda.get_device_name(device)}"
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"CPU {name}, {world} process(es) x {threads} thread(s)"


def cpu_features() -> set[str]:
    """The CPU flags that matter for training speed (``avx512_bf16``, ``amx_bf16``, ``avx512f``, ``avx2``)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return {f for f in flags if f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")}


def pick_engine(name: str, device: torch.device) -> str:
    """The engine ``auto`` means here: bf16 autocast where the CPU computes bf16 natively (AVX-512 BF16 or
    AMX), else channels-last fp32 (``bench/bench_train.py``: faster than contiguous fp32 for mirnet and
    msrnet on every CPU measured, for neid on two of three, 0.93x on the EPYC without AVX-512 where nothing
    beat 1.11x); CUDA keeps plain fp32. An explicit ``bf16`` without native support is refused.
    """
    native_bf16 = bool(cpu_features() & {"avx512_bf16", "amx_bf16"})
    if name == "bf16" and device.type == "cpu" and not native_bf16:
        raise UsageError("--engine bf16: this CPU has no native bf16 (AVX-512 BF16 or AMX)", "use --engine auto")
    if name != "auto":
        return name
    if device.type != "cpu":
        return "fp32"
    return "bf16" if native_bf16 else "channels_last"


class EngineForward(nn.Module):
    """``net`` run the way ``engine`` says; outputs are always fp32 in the default memory layout, so
    the loss (and the weights, the optimizer) stay fp32 whatever the engine."""

    def __init__(self, net: nn.Module, engine: str) -> None:
        super().__init__()
        self.net, self.engine = net, engine
        if engine in ("channels_last", "bf16"):
            net.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor, **kwargs: Any) -> Any:
        if self.engine in ("channels_last", "bf16"):
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.engine == "bf16"):
            y = self.net(x, **kwargs)
        return tuple(t.float().contiguous() for t in y) if isinstance(y, tuple) else y.float().contiguous()


@torch.no_grad()
def ema_update(avg: nn.Module, net: nn.Module, decay: float) -> None:
    """``avg = decay * avg + (1 - decay) * net``, parameters and float buffers alike."""
    for a, p in zip(avg.state_dict().values(), net.state_dict().values()):
        if a.dtype.is_floating_point:
            a.lerp_(p, 1.0 - decay)
        else:
            a.copy_(p)
