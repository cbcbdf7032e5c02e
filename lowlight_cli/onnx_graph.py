"""ONNX graphs of the learned models: export one (``lowlight export MODEL --onnx FILE``) and run one.

The graph is lowlight's whole-image pass, :func:`tiling.run_padded` around the network:

* input ``image``: float32 ``(batch, 3, height, width)`` in [0, 1], batch, height and width dynamic,
  each side at least 4 and the model's size multiple (``spec.size_multiple``, 16 for NEID);
* inside: reflect-padded at the bottom and right to that multiple, the network, cropped back;
* output ``enhanced``: float32 ``(batch, 3, height * scale, width * scale)``, **not clamped**: clip it
  to [0, 1] (lowlight clamps after blending tiles, so the graph leaves it to the caller too).

It is an untiled pass: a model that pools over the whole picture (``spec.tile_safe`` False: MIRNet,
NEID) pools over what the graph is given, so one call on the whole image gives what ``lowlight
enhance`` gives when the image fits one pass; tiles fed to it one by one would each see only their
own statistics (lowlight's tiler hands them the whole image's, :mod:`lowlight_cli.context`).

Needs onnx, onnxscript and onnxruntime, lowlight's dependencies (an install without them falls back
to torch with ``--backend auto``).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import inspect
import logging
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .errors import LowlightError, OutputError, UsageError
from .images import write_atomic
from .registry import ModelSpec

log = logging.getLogger("lowlight")

INPUT, OUTPUT = "image", "enhanced"
EXTRA_HINT = "pip install onnx onnxscript onnxruntime (lowlight's dependencies), or use --backend torch"


def require(*modules: str) -> None:
    """UsageError naming the extra to install unless every one of ``modules`` can be imported."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise UsageError(f"ONNX needs {', '.join(missing)}, which is not installed", EXTRA_HINT)


class WholeImage(nn.Module):
    """``net`` behind lowlight's padding: ``(B, 3, H, W)`` in [0, 1] -> ``(B, 3, H*s, W*s)``, unclamped.

    H and W are padded (reflection, bottom and right) to ``multiple`` before the network and the
    output is cropped back, as :func:`tiling.run_padded` does for every pass lowlight runs, for sides
    of at least ``multiple``. Not by calling it: its branches (pad or not, reflect or replicate) on
    sizes would make torch.export specialise the graph to the traced size's remainder; here a pad of
    0 is padded too, and the replicating branch for sides below the multiple is left out.
    """

    def __init__(self, net: nn.Module, *, multiple: int, scale: int) -> None:
        super().__init__()
        self.net, self.multiple, self.scale = net, multiple, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        m = self.multiple
        if m > 1:
            x = F.pad(x, (0, (w + m - 1) // m * m - w, 0, (h + m - 1) // m * m - h), mode="reflect")
        return self.net(x)[..., : h * self.scale, : w * self.scale]


@dataclass(frozen=True, kw_only=True)
class Exported:
    """What :func:`export_onnx` wrote: the file, the model it holds, its sizes, the export's seconds."""

    path: Path
    label: str
    scale: int
    multiple: int
    opset: int
    seconds: float

    def describe(self) -> str:
        """The graph's contract, in the lines ``lowlight export`` prints."""
        s = f"{self.scale} * " if self.scale > 1 else ""
        sides = f"any size >= {self.multiple} (padded inside)" if self.multiple > 1 else "any size"
        return (
            f"input  {INPUT}: float32 (batch, 3, height, width) in [0, 1]; height and width {sides}\n"
            f"output {OUTPUT}: float32 (batch, 3, {s}height, {s}width), not clamped: clip it to [0, 1]\n"
            f"an untiled pass of the whole image; ONNX opset {self.opset}"
        )


def check_output(path: Path, *, overwrite: bool) -> None:
    """OutputError before any work when ``path`` exists (without ``overwrite``) or its folder does not."""
    if path.is_dir():
        raise OutputError(f"--onnx {path} is a folder", "name the file, e.g. --onnx model.onnx")
    if path.exists() and not overwrite:
        raise OutputError(f"{path} exists", "add --overwrite to replace it, or choose another file")
    if not path.parent.is_dir():
        raise OutputError(f"the output folder {path.parent} does not exist", f"create it first: mkdir -p {path.parent}")


class _GraphPooling:
    """What each :class:`context.GlobalMean` does while a context graph is traced: call ``k`` returns
    ``given[k]`` (where ``use_given`` is set, else its own mean) and, measuring, also gives the mean of
    its input over ``cell`` and the pixels in it. The cell is ``(top, bottom, left, right)`` in
    fractions of the padded input; at each pooling's resolution its edges round as
    :meth:`context._Context.visit` rounds them (to even, on the pooling grid they fall on whole pixels)."""

    def __init__(self, given: list[torch.Tensor], use_given: torch.Tensor | None = None,
                 cell: torch.Tensor | None = None) -> None:
        self.given, self.use_given, self.cell = given, use_given, cell
        self.calls = 0
        self.cell_means: list[torch.Tensor] = []
        self.counts: list[torch.Tensor] = []

    def visit(self, x: torch.Tensor) -> torch.Tensor:
        k, self.calls = self.calls, self.calls + 1
        if self.cell is None:
            return self.given[k]
        h, w = x.shape[-2:]
        rows = torch.arange(h, dtype=x.dtype, device=x.device)
        cols = torch.arange(w, dtype=x.dtype, device=x.device)
        t, b, l, r = self.cell[0] * h, self.cell[1] * h, self.cell[2] * w, self.cell[3] * w
        row_in = ((rows >= torch.round(t)) & (rows < torch.round(b))).to(x.dtype)
        col_in = ((cols >= torch.round(l)) & (cols < torch.round(r))).to(x.dtype)
        n = row_in.sum() * col_in.sum()
        # Two matrix-vector products read the features once, with no masked copy of them.
        total = torch.matmul(torch.matmul(x, col_in), row_in)[..., None, None]
        self.cell_means.append(total / n.clamp(min=1.0))
        self.counts.append(n)
        own = x.mean(dim=(2, 3), keepdim=True)
        return torch.where(self.use_given > 0.5, self.given[k], own)


class ContextGraph(nn.Module):
    """The network with the global poolings' values as graph inputs (one image at a time, its sides
    multiples of the model's size multiple: the tiler pads every crop before it runs).

    ``measure=False`` (replay): inputs ``image``, ``context_k`` ``(1, C_k, 1, 1)`` for each pooling
    call ``k``; output ``enhanced``, computed with those values instead of the image's own.
    ``measure=True``: inputs ``image``, ``use_given`` (a scalar: 1 to use the ``context_k``, 0 for the
    image's own means), ``cell`` (4 floats, module :class:`_GraphPooling`), ``context_k``; outputs
    ``enhanced``, then every call's ``cell_mean_k`` and ``count_k``. With these two graphs the tiler's
    passes (:mod:`lowlight_cli.context`: record, sweep, replay) run in ONNX Runtime too."""

    def __init__(self, net: nn.Module, *, measure: bool) -> None:
        super().__init__()
        self.net, self.measure = net, measure

    def forward(self, x: torch.Tensor, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        from . import context

        pooling = _GraphPooling(list(inputs[2:]), inputs[0], inputs[1]) if self.measure else _GraphPooling(list(inputs))
        with context.attach(self.net, pooling):
            y = self.net(x)
        return (y, *pooling.cell_means, *pooling.counts) if self.measure else (y,)


class GlanceGraph(nn.Module):
    """The network with its :class:`context.Glance` given as graph inputs (one image at a time, its sides
    multiples of the model's size multiple): inputs ``image``, ``glance`` ``(1, 3, S, S)`` (the whole
    picture's), ``box`` ``(1, 4)`` (where this crop sits in it) and ``glance_value_K``, what the network
    computes from the glance alone (:meth:`context.Glance.once`: Lantern's grid), computed once per
    picture by torch (:func:`glance_values`) rather than by every tile; output ``enhanced``. The tiler
    runs every tile of such a model through it, one pass too (:meth:`inference.Enhancer._glanced`).
    ``layout``: the values' keys and how many tensors each holds, as :func:`glance_values` gives them."""

    def __init__(self, net: nn.Module, layout: list[tuple[tuple[Any, ...], int]]) -> None:
        super().__init__()
        self.net, self.layout = net, layout

    def forward(self, x: torch.Tensor, glance: torch.Tensor, box: torch.Tensor, *values: torch.Tensor) -> torch.Tensor:
        from . import context

        with context.glancing(self.net, glance, 0, 0) as given:
            given.box = box
            rest = list(values)
            for key, n in self.layout:
                given.memo[key] = tuple(rest[:n])
                del rest[:n]
            return self.net(x)


def glance_values(spec: ModelSpec, net: nn.Module) -> tuple[list[tuple[tuple[Any, ...], int]], list[torch.Tensor]]:
    """``(layout, tensors)``: what ``net`` computes from the glance given to it now (inside
    :func:`context.glancing`) alone, flattened: each :meth:`context.Glance.once` key with its number of
    tensors, and the tensors. Torch runs the net on a small crop inside that context to fill them."""
    from . import context

    given = context.current_glance(net)
    if given is None:
        raise RuntimeError("glance_values needs a glance given to the net (context.glancing)")
    if not given.memo:
        side = 2 * max(spec.size_multiple, 8)
        with torch.no_grad():
            net(torch.zeros(1, 3, side, side, dtype=given.glance.dtype))
    layout, tensors = [], []
    for key, value in given.memo.items():
        parts = value if isinstance(value, tuple) else (value,)
        layout.append((key, len(parts)))
        tensors += [p.detach().to("cpu", torch.float32) for p in parts]
    return layout, tensors


def context_shapes(spec: ModelSpec, net: nn.Module) -> list[tuple[int, ...]]:
    """The shape of every pooling call's value in one pass, in call order."""
    from . import context

    x = torch.rand(1, 3, 2 * max(spec.size_multiple, 8), 2 * max(spec.size_multiple, 8))
    with torch.no_grad(), context.recording(net) as means:
        net(x)
    return [tuple(m.shape) for m in means]


def example_input(spec: ModelSpec) -> torch.Tensor:
    """The input the graph is traced with: no size 1 (torch.export would fix a dimension of 1 as a
    constant) and sides that differ from each other (so it keeps them apart)."""
    m = max(spec.size_multiple, 8)
    return torch.rand(2, 3, 5 * m + 1, 7 * m + 3)


KINDS = ("plain", "replay", "measure", "glance")


def export_onnx(spec: ModelSpec, net: nn.Module, path: Path, *, label: str, overwrite: bool = False,
                kind: str = "plain") -> Exported:
    """Write ``net`` (a network of ``spec``, on CPU) as a dynamic-size ONNX graph to ``path``, atomically:
    ``plain``, :class:`WholeImage` (what ``lowlight export`` writes); ``replay`` and ``measure``,
    :class:`ContextGraph` (what the tiler runs). Tens of seconds: torch.export traces it twice."""
    require("onnx", "onnxscript")
    check_output(path, overwrite=overwrite)
    net = net.float().eval()
    # Sides below the multiple would need replicate padding where reflection runs out; the graph has
    # the reflecting branch only. At least 4: a side of 2 would make Lantern's half-resolution maps
    # 1 px long, which torch.export traces as a case of its own.
    side = {"min": max(4, spec.size_multiple), "max": 2**16}
    height, width = torch.export.Dim("height", **side), torch.export.Dim("width", **side)
    example = example_input(spec)
    if kind == "plain":
        model = WholeImage(net, multiple=spec.size_multiple, scale=spec.scale)
        args = (example,)
        dims = {"x": {0: torch.export.Dim("batch", min=1, max=1024), 2: height, 3: width}}
        inputs, outputs = [INPUT], [OUTPUT]
    elif kind == "glance":
        from . import context

        m = spec.size_multiple
        size = context.glances(net)[0].size
        glance = torch.rand(1, 3, size, size)
        with context.glancing(net, glance, 0, 0):
            layout, values = glance_values(spec, net)
        model = GlanceGraph(net, layout)
        args = (example[:1, :, : example.shape[2] // m * m, : example.shape[3] // m * m], glance,
                torch.tensor([[8.0, 16.0, 1000.0, 1500.0]]), *values)
        rows, cols = torch.export.Dim("rows", min=1, max=2**16 // m), torch.export.Dim("cols", min=1, max=2**16 // m)
        dims = {"x": {2: m * rows, 3: m * cols}, "glance": None, "box": None, "values": tuple([None] * len(values))}
        inputs, outputs = [INPUT, "glance", "box", *(f"glance_value_{k}" for k in range(len(values)))], [OUTPUT]
    else:
        measure = kind == "measure"
        model = ContextGraph(net, measure=measure)
        shapes = context_shapes(spec, net)
        given = tuple(torch.rand(shape) for shape in shapes)
        head = (torch.ones(()), torch.tensor([0.0, 0.5, 0.25, 1.0])) if measure else ()
        m = spec.size_multiple
        args = (example[:1, :, : example.shape[2] // m * m, : example.shape[3] // m * m], *head, *given)
        rows, cols = torch.export.Dim("rows", min=1, max=2**16 // m), torch.export.Dim("cols", min=1, max=2**16 // m)
        dims = {"x": {2: m * rows, 3: m * cols}, "inputs": tuple([None] * (len(head) + len(given)))}
        names = [f"context_{k}" for k in range(len(shapes))]
        inputs = [INPUT, *(["use_given", "cell"] if measure else []), *names]
        outputs = [OUTPUT] + ([f"cell_mean_{k}" for k in range(len(shapes))] + [f"count_{k}" for k in range(len(shapes))]
                              if measure else [])
    start = time.perf_counter()
    with _quiet_exporter():
        # torch.export first, by hand: torch.onnx.export would, where a size cannot stay dynamic,
        # quietly fix it (to the traced size or its remainder) instead of failing. Checks it cannot
        # prove at trace time (a reflection pad shorter than the side) become run-time asserts.
        try:
            traced = torch.export.export(model, args, dynamic_shapes=dims, strict=False,
                                         prefer_deferred_runtime_asserts_over_guards=True)
        except Exception as e:  # torch.export's errors have no public base class
            raise LowlightError(f"{label} cannot be traced with dynamic sizes: {str(e).splitlines()[0]}",
                                "its forward branches on the input's size; report it with the model's name") from e
        program = torch.onnx.export(traced, dynamo=True, input_names=inputs, output_names=outputs, verbose=False)
    program.model.metadata_props.update({
        "lowlight_model": label, "scale": str(spec.scale), "size_multiple": str(spec.size_multiple),
        "clamp": "no: clip the output to [0, 1]",
        "tiling": "none: one pass of the whole image" if kind == "plain" else "global context given as inputs",
    })
    write_atomic(path, program.model_proto.SerializeToString())
    opset = next(o.version for o in program.model_proto.opset_import if o.domain in ("", "ai.onnx"))
    return Exported(path=path, label=label, scale=spec.scale, multiple=spec.size_multiple, opset=opset,
                    seconds=time.perf_counter() - start)


@contextlib.contextmanager
def _quiet_exporter():
    """The exporter's warnings (torchvision missing, deprecations) and its optimiser's INFO lines are
    not the user's concern."""
    loggers = [logging.getLogger(name) for name in ("torch", "onnxscript", "onnx_ir")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


CACHE_ENV = "LOWLIGHT_CACHE"


def cache_dir() -> Path:
    """Where ``--backend onnx`` keeps its graphs: ``$LOWLIGHT_CACHE/onnx``, else ``$XDG_CACHE_HOME/lowlight/onnx``,
    else ``~/.cache/lowlight/onnx``."""
    root = os.environ.get(CACHE_ENV)
    if root:
        return Path(root) / "onnx"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lowlight" / "onnx"


def graph_key(spec: ModelSpec, net: nn.Module) -> str:
    """A hash of everything a graph depends on: the weights, the model's and the pass's code, torch's
    version. A changed model file or a retrained network gets a new graph, never a stale one."""
    from . import __version__, context

    h = hashlib.sha256(f"{spec.name} {spec.size_multiple} {spec.scale} {__version__} {torch.__version__}".encode())
    for module in (inspect.getmodule(type(net)), context, sys.modules[__name__]):
        h.update(Path(inspect.getsourcefile(module)).read_bytes())
    for name, tensor in net.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def cached_path(spec: ModelSpec, net: nn.Module, kind: str = "plain") -> Path:
    """Where :func:`cached_graph` keeps the ``kind`` graph of ``net``."""
    suffix = "" if kind == "plain" else f"-{kind}"
    return cache_dir() / f"{spec.name}-{graph_key(spec, net)[:20]}{suffix}.onnx"


def cached_graph(spec: ModelSpec, net: nn.Module, label: str, kind: str = "plain") -> Path:
    """The ``kind`` graph of ``net`` in :func:`cache_dir`, exported the first time (tens of seconds, logged)."""
    path = cached_path(spec, net, kind)
    if not path.is_file():
        what = "" if kind == "plain" else f" ({kind} graph for tiles)"
        log.info("exporting %s to ONNX once%s (tens of seconds); cached in %s", label, what, path.parent)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"cannot make the ONNX cache folder {path.parent}: {e.strerror or e}",
                              f"set {CACHE_ENV} to a writable folder, or use --backend torch") from e
        # Another process exporting the same graph at the same time is harmless: each writes atomically.
        export_onnx(spec, net, path, label=label, overwrite=True, kind=kind)
    return path


class OnnxForward:
    """``(1, 3, h, w)`` CPU float32 tensor -> the network's output, by ONNX Runtime on the cached graphs.

    A drop-in for ``net(t)`` on padded input (the graph pads nothing then): same values within ~1e-6.
    With a global context attached to ``net`` (:func:`context.current`: the tiler's record, sweep and
    replay passes, a video's measured frames), it runs the context graphs instead and gives and takes
    the poolings' values as the net would. Each graph is exported on first need.
    """

    def __init__(self, spec: ModelSpec, net: nn.Module, label: str, threads: int) -> None:
        self.spec, self.net, self.label, self.threads = spec, net, label, threads
        self._sessions: dict[str, object] = {}
        self._last_call: tuple[str, tuple[int, ...]] | None = None

    def bytes_per_pixel(self) -> int | None:
        """Peak bytes per input pixel of the graphs this runner uses most (the measuring one for a
        model with global context), measured (:func:`peak_bytes_per_pixel`); None where it cannot be."""
        from . import context

        kind = ("glance" if context.glances(self.net) else "measure" if context.uses_global_context(self.net)
                else "plain")
        return peak_bytes_per_pixel(cached_graph(self.spec, self.net, self.label, kind), self.threads, self.spec.size_multiple)

    @functools.cached_property
    def _shapes(self) -> list[tuple[int, ...]]:
        """Every pooling call's value shape: a small torch pass, once, not per measured call."""
        return context_shapes(self.spec, self.net)

    def _run(self, kind: str, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        # The arena keeps what the largest call took, laid out in that call's tensors: a call of another
        # graph or input size grows it beside them (mirnet's tiles 4 px taller at the image's edge
        # took 0.3 GiB more at 1 MP), so it is emptied first. Calls of one size (a video's frames, a
        # row of tiles) keep it; an image peaks at its largest single call, as the tile plan assumes.
        key = (kind, feed[INPUT].shape)
        if key != self._last_call:
            self.release_memory()
            self._last_call = key
        return self._session(kind).run(None, feed)

    def release_memory(self) -> None:
        """Give back what ONNX Runtime's arena holds (one arena for every session, :func:`session`): it
        keeps the most any call took and returns nothing by itself. An arena shrinks at the end of a
        run asked to, so one run of an open session on a small zero image does it (milliseconds; the
        next call pays for fresh pages, a fraction of a second per GB)."""
        if not self._sessions:
            return
        import onnxruntime as ort

        s = next(iter(self._sessions.values()))
        options = ort.RunOptions()
        options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        s.run(None, zero_feed(s, -(-64 // self.spec.size_multiple) * self.spec.size_multiple), options)

    def _session(self, kind: str):
        if kind not in self._sessions:
            self._sessions[kind] = session(cached_graph(self.spec, self.net, self.label, kind), self.threads)
        return self._sessions[kind]

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        from . import context

        x = np.ascontiguousarray(t.detach().to("cpu", torch.float32).numpy())
        seen = context.current_glance(self.net)
        if seen is not None:
            _, values = glance_values(self.spec, self.net)  # torch fills them at a picture's first tile
            feed = {INPUT: x, "glance": seen.glance.float().numpy(), "box": seen.box.float().numpy()}
            feed |= {f"glance_value_{k}": v.numpy() for k, v in enumerate(values)}
            return torch.from_numpy(self._run("glance", feed)[0])
        ctx = context.current(self.net)
        if ctx is None:
            return torch.from_numpy(self._run("plain", {INPUT: x})[0])
        if ctx.given is not None and ctx.cell is None:  # replaying: the given values, nothing measured
            feed = {INPUT: x} | {f"context_{k}": v.float().numpy() for k, v in enumerate(ctx.given)}
            return torch.from_numpy(self._run("replay", feed)[0])
        shapes = self._shapes if ctx.given is None else [tuple(v.shape) for v in ctx.given]
        given = ctx.given or [torch.zeros(shape) for shape in shapes]
        whole = ((0.0, 1.0), (0.0, 1.0))
        if ctx.given is None and ctx.cell not in (None, whole):
            raise ValueError("a context graph measures a part of the picture only with the values given")
        (top, bottom), (left, right) = ctx.cell or whole
        feed = {INPUT: x, "use_given": np.array(0.0 if ctx.given is None else 1.0, np.float32),
                "cell": np.array([top, bottom, left, right], np.float32)}
        feed |= {f"context_{k}": v.float().numpy() for k, v in enumerate(given)}
        y, *rest = self._run("measure", feed)
        n = len(given)
        cell_means = [torch.from_numpy(m) for m in rest[:n]]
        ctx.take(cell_means, cell_means, [int(round(float(c))) for c in rest[n:]])
        return torch.from_numpy(y)


def session(path: Path, threads: int):
    """An ONNX Runtime CPU session for ``path``: ``threads`` intra-op threads (0: every core), all graph
    optimisations."""
    require("onnxruntime")
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or os.cpu_count() or 1
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # The memory pattern preallocates each input size's whole plan beside what the arena holds: the
    # peak doubled from the second call on (2557 against 1355 bytes per pixel, MIRNet at 1 MP), and
    # calls were slower with it (4.4 against 3.4 s).
    options.enable_mem_pattern = False
    # One arena for every session of the process: each session's own arena keeps the most any of its
    # calls needed, so a tiled image's first estimate and its tiles, in two sessions, held 12 GB where
    # one pass needs 6. Shared, the peak is the largest single call's, which the tile plan budgets for
    # (shrinking each arena after every call did as well for memory, at twice the system time; it is
    # emptied before a call of another graph or size instead, OnnxForward._run).
    _register_shared_arena(ort)
    options.add_session_config_entry("session.use_env_allocators", "1")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@functools.cache
def _register_shared_arena(ort) -> None:
    # Regions of the size asked for: with the default (each region twice the last) a pass's peak per
    # pixel jumped with its size (mirnet: 1424 bytes at 1 MP, 1592 at 2.4 MP), so a plan from small
    # probes came out 6 % over its budget at 4 MP; asked-for regions hold a few more bytes per pixel
    # (1756), the same at every size (0.26 to 4.2 MP), and run as fast.
    info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
    ort.create_and_register_allocator(info, ort.OrtArenaCfg(0, ARENA_SAME_AS_REQUESTED, -1, -1))


ARENA_SAME_AS_REQUESTED = 1  # onnxruntime's ArenaExtendStrategy::kSameAsRequested


def zero_feed(s, side: int) -> dict[str, np.ndarray]:
    """Zeros for every input of session ``s``: a batch of one ``side`` x ``side`` image."""
    return {i.name: np.zeros([d if isinstance(d, int) else (1 if j == 0 else side) for j, d in enumerate(i.shape)],
                             np.float32) for i in s.get_inputs()}


# Runs one graph once on a zero image of the given side in a fresh process, in a session made as every
# session is (:func:`session`: the shared arena and its settings), and prints how far the peak resident
# size rose above what the process held before the run (Linux: /proc/self/status).
_PROBE = """
import sys
from pathlib import Path
from lowlight_cli.onnx_graph import session, zero_feed
path, side, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = session(Path(path), threads)
feed = zero_feed(s, side)
def status(key):
    return next(int(l.split()[1]) * 1024 for l in Path("/proc/self/status").read_text().splitlines() if l.startswith(key))
Path("/proc/self/clear_refs").write_text("5")
before = status("VmRSS:")
s.run(None, feed)
print(status("VmHWM:") - before)
"""


def peak_bytes_per_pixel(path: Path, threads: int, multiple: int) -> int | None:
    """Bytes per input pixel by which ONNX Runtime's peak memory grows, running the graph at ``path``:
    the slope of the peak resident size between two probes (384 and 768 px squares), each in a fresh
    process, so that neither an arena grown earlier nor memory this process freed hides it. Kept beside
    the graph in the cache (the probes take a few seconds, once). None where the peak cannot be read
    (not Linux). Below 384 px a pass's peak per pixel is lower than beyond; from 384 px on it holds
    within 5 %: mirnet 1833 bytes per pixel from these probes and 1833 at 2048 px, neid 1725 and 1802
    at 1536 px (its runs stay within budget, bench/bench_memory.py)."""
    import json
    import subprocess

    memo = path.with_name(path.stem + f".memory-{threads}.json")
    if memo.is_file():
        return json.loads(memo.read_text())["bytes_per_pixel"]
    peaks, pixels = [], []
    package_root = os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")])
    for side in (384 // multiple * multiple, 768 // multiple * multiple):
        run = subprocess.run([sys.executable, "-c", _PROBE, str(path), str(side), str(threads)],
                             capture_output=True, text=True, env=os.environ | {"PYTHONPATH": package_root})
        if run.returncode != 0:
            log.debug("ONNX Runtime's memory probe failed: %s", run.stderr.strip()[-300:])
            return None
        peaks.append(int(run.stdout.split()[-1]))
        pixels.append(side * side)
    per_pixel = max(1, round((peaks[1] - peaks[0]) / (pixels[1] - pixels[0])))
    with contextlib.suppress(OSError):  # a read-only cache still runs, probing again next time
        write_atomic(memo, json.dumps({"bytes_per_pixel": per_pixel, "probe_peaks": peaks, "probe_pixels": pixels}).encode())
    return per_pixel
