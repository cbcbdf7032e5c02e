"""The memory budget: its default, passes planned within it, ONNX Runtime's arena given back.

The peak of whole runs against the budget is measured by bench/bench_memory.py (figures in docs/performance.md)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import seeded_net
from lowlight_cli import context, registry
from lowlight_cli.inference import Enhancer, RunOptions, image_bytes_per_pixel, memory_budget_bytes, ram_bytes


def _limits(monkeypatch, *, physical: int | None, cgroup: str | None) -> None:
    real_read = Path.read_text

    def sysconf(name: str) -> int:
        if physical is None:
            raise ValueError(name)
        return {"SC_PHYS_PAGES": physical // 4096, "SC_PAGE_SIZE": 4096}[name]

    def read_text(path: Path, *args, **kwargs) -> str:
        if str(path).startswith("/sys/fs/cgroup/memory"):
            if cgroup is None:
                raise FileNotFoundError(path)
            return cgroup
        return real_read(path, *args, **kwargs)

    monkeypatch.setattr(os, "sysconf", sysconf)
    monkeypatch.setattr(Path, "read_text", read_text)


@pytest.mark.parametrize(("physical", "cgroup", "ram"), [
    (8 * 2**30, "max\n", 8 * 2**30),         # an 8 GiB laptop: a 2 GiB budget
    (64 * 2**30, "4294967296\n", 4 * 2**30),  # a container limited to 4 GiB on a large host
    (None, None, 8 * 2**30),                  # nothing readable (Windows): taken as 8 GiB
])
def test_default_budget_is_a_quarter_of_the_memory_the_process_may_have(monkeypatch, physical, cgroup, ram):
    _limits(monkeypatch, physical=physical, cgroup=cgroup)
    assert ram_bytes() == ram
    assert memory_budget_bytes(torch.device("cpu"), None) == ram // 4
    assert memory_budget_bytes(torch.device("cpu"), 1.5) == int(1.5 * 2**30)


@pytest.mark.parametrize("name", ["mirnet_tiny", "neid_tiny"])
def test_every_pass_of_a_tiled_image_fits_the_budget_beside_the_images_buffers(monkeypatch, name):
    """The tiles and the downscaled copy that gives a first estimate of the global context are both
    sized to the budget less the image's own buffers (the copy took the whole budget before)."""
    spec = registry.get(name)
    net = seeded_net(spec)
    h, w = 300, 260
    buffers = image_bytes_per_pixel(spec.scale) * h * w
    per_pixel = Enhancer(spec, net, RunOptions(device="cpu"), name).bytes_per_pixel
    budget = buffers + 0.3 * per_pixel * h * w  # a third of one pass beside the buffers: tiled and swept
    enhancer = Enhancer(spec, net, RunOptions(device="cpu", memory_gb=budget / 2**30), name)
    passes: list[int] = []
    real = context.whole_image_context

    def spy(net, run, small, tiles, **kwargs):
        passes.append(small.shape[-2] * small.shape[-1])
        passes.extend(crop.shape[-2] * crop.shape[-1] for crop, _ in tiles)
        return real(net, run, small, tiles, **kwargs)

    monkeypatch.setattr(context, "whole_image_context", spy)
    enhancer(np.random.default_rng(0).random((h, w, 3), dtype=np.float32) * 0.3)
    assert passes, "the image was not tiled"
    assert max(passes) * enhancer.bytes_per_pixel + buffers <= enhancer.budget
    assert enhancer.one_pass_pixels(h, w) == (enhancer.budget - buffers) // enhancer.bytes_per_pixel


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_onnx_arena_is_given_back_before_a_call_of_another_graph_or_size(monkeypatch, tmp_path):
    """ONNX Runtime's arena keeps what the largest call took; a call of another size or graph would
    grow it beside that, so it is emptied first. Calls of one size (a video's frames) keep it."""
    pytest.importorskip("onnxruntime")
    from lowlight_cli.onnx_graph import OnnxForward

    monkeypatch.setenv("LOWLIGHT_CACHE", str(tmp_path))
    spec = registry.get("msrnet_tiny")
    enhancer = Enhancer(spec, seeded_net(spec), RunOptions(device="cpu", memory_gb=64, backend="onnx"), "t")
    releases = []
    real = OnnxForward.release_memory
    monkeypatch.setattr(OnnxForward, "release_memory", lambda self: releases.append(1) or real(self))

    def resident() -> int:
        status = Path("/proc/self/status").read_text().splitlines()
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS:"))

    big = np.zeros((1024, 1024, 3), np.float32)
    enhancer(big)
    calls = len(releases)  # the first call of each graph (nothing to give back yet)
    enhancer(big)
    assert len(releases) == calls  # the same size again: the arena is kept
    held = resident()
    enhancer._onnx.release_memory()
    assert held - resident() > 0.5 * enhancer.bytes_per_pixel * big.shape[0] * big.shape[1]
    enhancer(big[:64, :64])
    assert len(releases) > calls + 1


def test_measuring_a_models_activations_does_not_import_torch_dynamo():
    """The probe's dispatch mode stays unwrapped by torch._dynamo.disable, whose first call imported
    torch._dynamo: a second of every `lowlight enhance`. Run in a fresh interpreter (tests may import it)."""
    code = (
        "import sys, torch\n"
        "from lowlight_cli import registry\n"
        "from lowlight_cli.inference import activation_bytes_per_pixel\n"
        "spec = registry.get('lantern_tiny')\n"
        "per_pixel = activation_bytes_per_pixel(spec.create().eval(), spec)\n"
        "assert per_pixel > 12, per_pixel\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
