"""Inference speed of each model in every execution mode tried, beside the machine's measured roofline.

    python bench/bench_speed.py [--models msrnet,neid,mirnet] [--megapixels 0.5] [--repeats 3]
                                [--threads 0] [--modes fp32,inference_mode,...] [--onnx-dir DIR]

Each learned model (its bundled weights; seeded random ones where it has none, said in the output:
speed does not depend on their values) runs the pass lowlight runs on an image that fits its memory
budget, pad -> network -> crop (``tiling.run_padded``), on the shipped sample resized to
``--megapixels`` input pixels, at the model's native scale. Modes:

  fp32            today's path: eager PyTorch under no_grad (``Enhancer._forward``)
  inference_mode  the same under torch.inference_mode
  channels_last   weights and input in NHWC memory format
  bf16            bf16 autocast; only where the CPU has native bf16 (avx512_bf16 or amx_bf16)
  malloc_keep     fp32 with glibc keeping freed memory (mmap threshold 32 MiB, its maximum; no trimming)
  compile         torch.compile (inductor, static shapes); its compile time is printed
  onnx            ``--backend onnx``: ONNX Runtime on the graph of `lowlight export --onnx`, CPU provider,
                  same threads, all graph optimisations; its export time is printed (--onnx-dir keeps
                  the graphs between runs)

Every round runs each mode once (interleaved, so a change in the machine's load hits every mode
alike) and the median of ``--repeats`` rounds is kept, after one untimed warm-up per mode. GMAC/s
counts the model's multiply-accumulates per pixel (``evaluate.macs_per_pixel``). The roofline is the
speed those MACs would reach if each layer ran as fast as a dense 3x3 convolution with that layer's
input and output widths, measured here with the same threads (the faster of torch's and ONNX Runtime's
convolution); ``% roof`` is GMAC/s over it. ``diff``
and ``PSNR`` compare the mode's output, clamped to [0, 1], with fp32's on the photo (bf16 must reach
45 dB to be eligible). ``sys/user`` is system over user CPU time in the timed passes: page faults of
freshly mapped buffers show there. Baselines have one row, their numpy path through the Enhancer.
Reading and writing files is not included: see ``bench_enhance.py`` for the whole command.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import logging
import math
import os
import platform
import resource
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

# Run as a script from a checkout: make the package importable without installing it.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lowlight_cli import allocator, registry  # noqa: E402
from lowlight_cli.errors import LowlightError  # noqa: E402
from lowlight_cli.evaluate import format_macs, format_params, macs_by_layer, macs_per_pixel, parameter_count  # noqa: E402
from lowlight_cli.images import read_image  # noqa: E402
from lowlight_cli.inference import Enhancer, RunOptions  # noqa: E402
from lowlight_cli.tiling import run_padded  # noqa: E402
from lowlight_cli.weights import load_model  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[1] / "lowlight_cli" / "samples" / "coffee_dark.png"
MODES = ("fp32", "inference_mode", "channels_last", "bf16", "malloc_keep", "compile", "onnx")
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
ELIGIBLE_DB = 45.0
PROBE_MACS = 1e9  # work per roofline probe call: a side of sqrt(1e9 / (9 c_in c_out)) px


def test_image(megapixels: float) -> np.ndarray:
    """The sample resized (bicubic) to about ``megapixels``: ``(H, W, 3)`` float32 in [0, 1]."""
    rgb = read_image(SAMPLE).rgb
    h, w = rgb.shape[:2]
    k = (megapixels * 1e6 / (h * w)) ** 0.5
    big = cv2.resize(rgb, (round(w * k), round(h * k)), interpolation=cv2.INTER_CUBIC)
    return np.clip(big, 0.0, 1.0).astype(np.float32)


def cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    return set(line.partition(":")[2].split())


def cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or "unknown CPU"


# ---------------------------------------------------------------- modes


@dataclass
class Mode:
    """One way of running the network: ``run`` maps a padded ``(1, 3, h, w)`` tensor to the output;
    ``setting`` is entered around each call, outside the timing; ``note`` is printed with the row."""

    name: str
    run: Callable[[torch.Tensor], torch.Tensor] | None = None
    skipped: str = ""
    note: str = ""
    setting: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
    seconds: list[float] = field(default_factory=list)
    cpu: list[tuple[float, float]] = field(default_factory=list)  # (user, system) of each timed call
    output: torch.Tensor | None = None


def _eager(net: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return net(x)

    return run


def _inference_mode(net: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return net(x)

    return run


def _channels_last(net: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    nhwc = copy.deepcopy(net).to(memory_format=torch.channels_last)

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return nhwc(x.contiguous(memory_format=torch.channels_last)).contiguous()

    return run


def _bf16(net: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            return net(x).float()

    return run


class _Timeout(Exception):
    pass


def _compiled(spec, net: torch.nn.Module, x: torch.Tensor, budget: int) -> tuple[Callable[[torch.Tensor], torch.Tensor], str]:
    """torch.compile'd ``net``, compiled for ``x`` padded, and its compile time, or raises (TimeoutError
    past ``budget`` seconds)."""
    compiled = torch.compile(copy.deepcopy(net), dynamic=False)

    def alarm(signum, frame):
        raise _Timeout

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(budget)
    start = time.perf_counter()
    try:
        with torch.no_grad():
            run_padded(compiled, x, multiple=spec.size_multiple, scale=spec.scale)
    except _Timeout:
        raise TimeoutError(f"compiling took over {budget} s (--compile-budget)") from None
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    return _eager(compiled), f"compile {time.perf_counter() - start:.0f} s"


def _onnx(spec: registry.ModelSpec, net: torch.nn.Module, label: str, threads: int):
    """``--backend onnx``'s forward: ONNX Runtime on the graph of `lowlight export --onnx`, exported into
    the cache (``--onnx-dir``) unless it is there."""
    from lowlight_cli import onnx_graph

    cached = onnx_graph.cached_path(spec, net).is_file()
    start = time.perf_counter()
    run = onnx_graph.OnnxForward(spec, net, label, threads)
    return run, "cached graph" if cached else f"export {time.perf_counter() - start:.0f} s"


def make_modes(names: list[str], spec, net, label: str, x: torch.Tensor, args) -> list[Mode]:
    modes = []
    for name in names:
        mode = Mode(name)
        try:
            if name == "fp32":
                mode.run = _eager(net)
            elif name == "inference_mode":
                mode.run = _inference_mode(net)
            elif name == "channels_last":
                mode.run = _channels_last(net)
            elif name == "bf16":
                if not cpu_flags() & set(BF16_FLAGS):
                    mode.skipped = f"skipped: no native bf16 (neither {' nor '.join(BF16_FLAGS)} in /proc/cpuinfo)"
                else:
                    mode.run = _bf16(net)
            elif name == "malloc_keep":
                if not allocator.available():
                    mode.skipped = "skipped: not glibc"
                else:
                    mode.run, mode.setting = _eager(net), allocator.kept_freed_memory
            elif name == "compile":
                mode.run, mode.note = _compiled(spec, net, x, args.compile_budget)
            elif name == "onnx":
                mode.run, mode.note = _onnx(spec, net, label, torch.get_num_threads())
        except Exception as e:  # a mode that cannot run here is a row that says why
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            mode.run, mode.skipped = None, f"skipped: {type(e).__name__}: {first[:120]}"
        modes.append(mode)
    return modes


def timed(mode: Mode, x: torch.Tensor, multiple: int, scale: int) -> torch.Tensor:
    with mode.setting():
        before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        y = run_padded(mode.run, x, multiple=multiple, scale=scale)
        seconds, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
    mode.seconds.append(seconds)
    mode.cpu.append((after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime))
    return y


# ---------------------------------------------------------------- roofline


def conv3x3_probe(c_in: int, c_out: int) -> tuple[Callable[[], float], int]:
    """A dense 3x3 convolution ``c_in -> c_out`` (padding 1, fp32, the current threads) on a square input
    sized for about :data:`PROBE_MACS`: a function timing one call, and the MACs of a call. Each call
    times torch's convolution and, where onnxruntime is installed, ONNX Runtime's, and keeps the faster:
    the machine's speed is the best either library reaches (at narrow widths they differ by 2x)."""
    side = int(min(512, max(32, math.sqrt(PROBE_MACS / (9 * c_in * c_out)))))
    x, w = torch.rand(1, c_in, side, side), torch.rand(c_out, c_in, 3, 3)
    ort_conv = _ort_conv(x, w)

    def seconds() -> float:
        with torch.no_grad():
            start = time.perf_counter()
            F.conv2d(x, w, padding=1)
            best = time.perf_counter() - start
        if ort_conv is not None:
            start = time.perf_counter()
            ort_conv()
            best = min(best, time.perf_counter() - start)
        return best

    return seconds, side * side * 9 * c_in * c_out


def _ort_conv(x: torch.Tensor, w: torch.Tensor) -> Callable[[], object] | None:
    """One ONNX Runtime call of ``conv2d(x, w, padding=1)``, or None without onnx and onnxruntime."""
    try:
        import onnx
        from onnx import helper

        from lowlight_cli.onnx_graph import session
    except ImportError:
        return None
    node = helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])
    graph = helper.make_graph(
        [node], "conv3x3", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
        initializer=[onnx.numpy_helper.from_array(w.numpy(), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "conv.onnx"
        onnx.save(model, path)
        run = session(path, torch.get_num_threads())
    feed = {"x": x.numpy()}
    run.run(None, feed)  # warm-up
    return lambda: run.run(None, feed)


class Roofline:
    """GMAC/s a model's MACs would reach with every layer as fast as a dense 3x3 conv of its widths.

    :meth:`measure` times one call of each probe, so it can run in every round beside the modes.
    Widths carrying less than ``min_share`` of the MACs are not probed; their MACs take the average
    speed of those that are.
    """

    def __init__(self, spec: registry.ModelSpec, min_share: float = 0.005) -> None:
        side = 16 * spec.size_multiple
        with torch.device("meta"):
            calls = macs_by_layer(spec.create(), torch.zeros(1, 3, side, side))
        by_width: dict[tuple[int, int], int] = {}
        for layer, macs in calls:
            linear = isinstance(layer, torch.nn.Linear)
            widths = (layer.in_features, layer.out_features) if linear else (layer.in_channels, layer.out_channels)
            by_width[widths] = by_width.get(widths, 0) + macs
        self.total = sum(by_width.values())
        self.probed = {w: m for w, m in by_width.items() if m >= min_share * self.total}
        self.probes = {w: conv3x3_probe(*w) for w in self.probed}
        self.rounds: list[float] = []

    def measure(self) -> float:
        seconds = sum(m * timer() / macs for w, m in self.probed.items() for timer, macs in [self.probes[w]])
        self.rounds.append(self.total / (seconds * self.total / sum(self.probed.values())) / 1e9)
        return self.rounds[-1]


# ---------------------------------------------------------------- one model


def load(name: str) -> tuple[registry.ModelSpec, torch.nn.Module, str, str]:
    """``(spec, net, label, source)``: the bundled weights where there are some, else seeded random ones."""
    spec = registry.get(name)
    try:
        spec, net, entry = load_model(name)
        return spec, net, entry.name if entry is not None else spec.name, "bundled"
    except LowlightError:
        torch.manual_seed(0)
        return spec, spec.create().eval(), spec.name, "random weights"


def psnr_db(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(torch.mean((a.clamp(0, 1).double() - b.clamp(0, 1).double()) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def bench_learned(name: str, rgb: np.ndarray, args) -> None:
    spec, net, label, source = load(name)
    x = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))[None]
    mp = x.shape[-2] * x.shape[-1] / 1e6
    macs = macs_per_pixel(spec)
    roofline = Roofline(spec)
    print(f"\n{label} ({source}): {format_params(parameter_count(spec))} parameters, {format_macs(macs)} MACs/px, "
          f"scale {spec.scale}; roofline probes at widths (in, out) {', '.join(f'{a}-{b}' for a, b in roofline.probed)}",
          flush=True)
    modes = make_modes(args.modes, spec, net, label, x, args)
    runnable = [m for m in modes if m.run is not None]
    roofline.measure()  # warm-up
    for mode in runnable:  # warm-up, and the output compared
        mode.output = timed(mode, x, spec.size_multiple, spec.scale)
        mode.seconds.clear()
        mode.cpu.clear()
    roofline.rounds.clear()
    for _ in range(args.repeats):
        roofline.measure()
        for mode in runnable:
            timed(mode, x, spec.size_multiple, spec.scale)
    roof = statistics.median(roofline.rounds)
    print(f"roofline {roof:.1f} GMAC/s (median of rounds: {', '.join(f'{r:.1f}' for r in roofline.rounds)})")
    reference = next((m.output for m in runnable if m.name == "fp32"), None)
    print("| model | mode | s/MP | GMAC/s | % roof | sys/user | max diff | PSNR vs fp32 | note |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for mode in modes:
        if mode.run is None:
            print(f"| {label} | {mode.name} | {mode.skipped} | | | | | | |", flush=True)
            continue
        seconds = statistics.median(mode.seconds)
        gmacs = macs * mp * 1e6 / seconds / 1e9
        user, system = (sum(c) for c in zip(*mode.cpu))
        if reference is None or mode.name == "fp32":
            diff = quality = "-"
        else:
            diff = f"{float((mode.output.clamp(0, 1) - reference.clamp(0, 1)).abs().max()):.1e}"
            db = psnr_db(mode.output, reference)
            quality = ("inf" if math.isinf(db) else f"{db:.1f} dB") + (" (not eligible)" if db < ELIGIBLE_DB else "")
        print(f"| {label} | {mode.name} | {seconds / mp:.2f} | {gmacs:.1f} | {100 * gmacs / roof:.0f} % | "
              f"{system / max(user, 1e-9):.2f} | {diff} | {quality} | {mode.note} |", flush=True)


def bench_baseline(name: str, rgb: np.ndarray, args) -> None:
    spec = registry.get(name)
    run = Enhancer(spec, None, RunOptions(device="cpu"), spec.name)
    mp = rgb.shape[0] * rgb.shape[1] / 1e6
    run(rgb)
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        run(rgb)
        times.append(time.perf_counter() - start)
    print(f"\n{spec.name} (baseline)\n| model | mode | s/MP |\n| --- | --- | ---: |\n"
          f"| {spec.name} | numpy | {statistics.median(times) / mp:.2f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="msrnet,neid,mirnet", help="comma-separated names (baselines too)")
    parser.add_argument("--megapixels", type=float, default=0.5, help="input size")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds (the median is kept)")
    parser.add_argument("--threads", type=int, default=0, help="torch and ONNX Runtime threads (0: every core)")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)}")
    parser.add_argument("--compile-budget", type=int, default=600, help="seconds torch.compile may take per model")
    parser.add_argument("--onnx-dir", type=Path, default=None, help="cache folder keeping the exported graphs between runs (default: a temporary one)")
    args = parser.parse_args()
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = sorted(set(args.modes) - set(MODES))
    if unknown:
        parser.error(f"unknown modes {unknown}; known: {', '.join(MODES)}")

    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    logging.getLogger("lowlight").setLevel(logging.ERROR)
    rgb = test_image(args.megapixels)
    flags = cpu_flags()
    shown = [f for f in ("avx2", "avx512f", *BF16_FLAGS) if f in flags]
    print(f"{cpu_name()} ({os.cpu_count()} cores; {', '.join(shown) or 'no avx2/avx512'}), torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; input {rgb.shape[1]}x{rgb.shape[0]} ({rgb.shape[0] * rgb.shape[1] / 1e6:.2f} MP); "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        from lowlight_cli.onnx_graph import CACHE_ENV

        os.environ[CACHE_ENV] = str(args.onnx_dir or tmp)
        for name in [n.strip() for n in args.models.split(",") if n.strip()]:
            (bench_baseline if registry.get(name).kind == "baseline" else bench_learned)(name, rgb, args)
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
