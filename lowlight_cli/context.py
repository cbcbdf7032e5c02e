"""Global context shared by tiles: a network's global poolings, measured on the whole picture, replayed per tile.

A model whose output depends on whole-image statistics (MIRNet's channel attention and SKFF, NEID's
feature fusing) pools with :class:`GlobalMean` instead of ``x.mean(dim=(2, 3))``. Outside a context
it is exactly that mean, so training and one-pass inference are unchanged. The calls of one forward
pass come in an order fixed by the network's structure (no branch depends on the data), so call
``k`` of a tile's pass is the same pooling site as call ``k`` of a whole-image pass, and a tile can be
handed the whole image's value for each call instead of its own.

:func:`whole_image_context` measures those values without ever holding the whole image's features:

1. a pass over a copy downscaled to fit one tile gives a first estimate of every call's mean;
2. a sweep over the tiles, each run with that estimate, adds up every call's input over the cell of
   the picture the tile owns (the cells partition the image), giving whole-image means of features
   computed with an almost-right context.

Each sweep shrinks the error by orders of magnitude (a tile run with the exact context reproduces
the whole pass to float precision, ``bench/bench_tiling.py``), so one sweep is the default. The
engine then runs the tiles once more with the measured context (:func:`replaying`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import torch
from torch import nn

T = TypeVar("T")

# A cell in tile-local fractions: ((top, bottom), (left, right)), 0..1 of the tile as the net sees it.
Cell = tuple[tuple[float, float], tuple[float, float]]


class GlobalMean(nn.Module):
    """Mean over H and W, keeping them: ``(B, C, H, W)`` -> ``(B, C, 1, 1)``; see the module docstring."""

    def __init__(self) -> None:
        super().__init__()
        self.context: _Context | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.context is None:
            return x.mean(dim=(2, 3), keepdim=True)
        return self.context.visit(x)


class _Context:
    """What the poolings of one net do while attached: record their means, hand out ``given`` values,
    and (with a ``cell``) add up their inputs over that cell of the tile."""

    def __init__(self, given: Sequence[torch.Tensor] | None = None, cell: Cell | None = None) -> None:
        self.given, self.cell, self.calls = given, cell, 0
        self.means: list[torch.Tensor] = []
        self.sums: list[tuple[torch.Tensor, int]] = []

    def visit(self, x: torch.Tensor) -> torch.Tensor:
        k, self.calls = self.calls, self.calls + 1
        if self.cell is not None:
            (t, b), (l, r) = self.cell
            h, w = x.shape[-2:]
            part = x[..., round(t * h) : round(b * h), round(l * w) : round(r * w)]
            self.sums.append((part.double().sum(dim=(2, 3), keepdim=True).cpu(), part.shape[-2] * part.shape[-1]))
        if self.given is None:
            self.means.append(x.mean(dim=(2, 3), keepdim=True).float().cpu())
            return x.mean(dim=(2, 3), keepdim=True)
        v = self.given[k % len(self.given)]
        if v.shape[:2] != x.shape[:2]:
            raise RuntimeError(f"global context call {k}: given {tuple(v.shape)} for an input of {tuple(x.shape)}")
        return v.to(device=x.device, dtype=x.dtype)

    def take(self, own: Sequence[torch.Tensor] | None, cell_means: Sequence[torch.Tensor], counts: Sequence[int]) -> None:
        """Record one whole forward pass run elsewhere, as its ``visit`` calls would have: ``own``, each
        pooling's mean of its input (needed when nothing is given); ``cell_means`` and ``counts``,
        the mean of its input over :attr:`cell` and the pixels in it (needed with a cell)."""
        self.calls += len(cell_means)
        if self.cell is not None:
            self.sums.extend((m.double() * n, n) for m, n in zip(cell_means, counts, strict=True))
        if self.given is None:
            self.means.extend(m.float() for m in own)


def attach(net: nn.Module, ctx) -> contextmanager:
    """Attach ``ctx`` (anything with a ``visit(x)`` method) to every pooling of ``net`` while inside."""
    return _attached(net, ctx)


def pools(net: nn.Module) -> list[GlobalMean]:
    return [m for m in net.modules() if isinstance(m, GlobalMean)]


def uses_global_context(net: nn.Module) -> bool:
    """Whether ``net`` pools over the whole image through :class:`GlobalMean`."""
    return bool(pools(net))


def attached(net: nn.Module) -> bool:
    """Whether a context (recording, measuring or replaying) is attached to ``net``'s poolings now."""
    return current(net) is not None


def current(net: nn.Module) -> _Context | None:
    """The context attached to ``net``'s poolings, if any: a runner other than the net itself (an ONNX
    graph, :mod:`lowlight_cli.onnx_graph`) reads its ``given`` values and ``cell`` and fills its
    ``means`` and ``sums`` as the poolings would, through :meth:`_Context.take`."""
    return next((m.context for m in pools(net) if m.context is not None), None)


@contextmanager
def _attached(net: nn.Module, ctx) -> Iterator:
    with _set_on(pools(net), "context", ctx):
        yield ctx


@contextmanager
def _set_on(modules: list[nn.Module], name: str, value) -> Iterator:
    """Inside: attribute ``name`` of every module is ``value``. What each held before comes back: a graph
    exported (traced with a context of its own) while the tiler's context is attached must leave the
    tiler's in place."""
    before = [getattr(m, name) for m in modules]
    for m in modules:
        setattr(m, name, value)
    try:
        yield value
    finally:
        for m, previous in zip(modules, before, strict=True):
            setattr(m, name, previous)


@contextmanager
def recording(net: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Inside: every pooling's mean is appended, in call order, to the yielded list (float32, CPU)."""
    with _attached(net, _Context()) as ctx:
        yield ctx.means


@contextmanager
def replaying(net: nn.Module, values: Sequence[torch.Tensor]) -> Iterator[None]:
    """Inside: pooling call ``k`` of each forward pass returns ``values[k]`` instead of its own mean."""
    with _attached(net, _Context(list(values))):
        yield


@contextmanager
def measuring(net: nn.Module, values: Sequence[torch.Tensor] | None = None) -> Iterator[list[torch.Tensor]]:
    """Inside: pooling call ``k`` returns ``values[k]`` (its own mean when ``values`` is None) and measures
    the mean of its own input; on leaving, the yielded list holds those means in call order (float32,
    CPU). Run once inside, a net measures its input's context under ``values``: the features' means
    with an almost-right context, which is how a tile sweep refines an estimate (module docstring). A
    video runs frame ``t`` with the average context of the frames before it and measures frame ``t``'s
    on the way; on a static scene the average converges to the frame's exact context."""
    whole: Cell = ((0.0, 1.0), (0.0, 1.0))
    means: list[torch.Tensor] = []
    with _attached(net, _Context(None if values is None else list(values), whole)) as ctx:
        yield means
    means.extend((total / n).float() for total, n in ctx.sums)


def whole_image_context(
    net: nn.Module,
    run: Callable[[torch.Tensor], object],
    small: torch.Tensor,
    tiles: Sequence[tuple[torch.Tensor, Cell]],
    *,
    sweeps: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> list[torch.Tensor]:
    """Every pooling call's whole-image mean, measured tile by tile (see the module docstring).

    Args:
        net: the network ``run`` calls.
        run: runs the net on one CPU crop ``(1, C, h, w)`` (padding, device and dtype are its business).
        small: the image downscaled to fit one pass, for the first estimate.
        tiles: each tile's crop and the cell of it that the tile owns, as fractions of the crop as
            ``run`` hands it to the net (padding included); the cells partition the padded image.
            A function of the sweep would do as well: the sequence is iterated once per sweep.
        sweeps: tile sweeps after the first estimate.
        progress: called as ``progress(done, total)`` after each tile of a sweep.
    Returns:
        One float32 CPU tensor ``(1, C_k, 1, 1)`` per pooling call ``k``.
    """
    with recording(net) as context:
        run(small)
    for _ in range(sweeps):
        totals: list[torch.Tensor] | None = None
        counts: list[int] | None = None
        for i, (crop, cell) in enumerate(tiles, 1):
            with _attached(net, _Context(context, cell)) as ctx:
                run(crop)
            if progress is not None:
                progress(i, len(tiles))
            sums = [s for s, _ in ctx.sums]
            ns = [n for _, n in ctx.sums]
            totals = sums if totals is None else [a + b for a, b in zip(totals, sums, strict=True)]
            counts = ns if counts is None else [a + b for a, b in zip(counts, ns, strict=True)]
        context = [(t / n).float() for t, n in zip(totals, counts, strict=True)]
    return context


class Glance(nn.Module):
    """The whole picture at a fixed small size, and where the crop being run sits in it.

    ``(B, 3, H, W)`` -> ``(glance (B, 3, size, size), box (B, 4))``. Outside a context the crop is the
    whole picture: the glance is its area average (each output pixel the mean of the input pixels
    it covers) and the box is ``(0, 0, H, W)``. A network whose global part reads only the glance,
    and whose full-resolution part reads the box to place the crop in it, runs tile by tile exactly
    as in one pass when the tiler hands every tile the whole picture's glance and the tile's own box
    (:func:`glancing`); no tile sweep is needed, unlike :class:`GlobalMean`'s statistics of features.
    The box is ``(top, left, picture height, picture width)`` in input pixels.
    """

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size
        self.given: _Glancing | None = None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.given is not None:
            return self.given.glance.to(device=x.device, dtype=x.dtype).expand(x.shape[0], -1, -1, -1), \
                self.given.box.to(device=x.device, dtype=x.dtype).expand(x.shape[0], -1)
        h, w = x.shape[-2:]
        box = torch.stack([torch.zeros_like(x[:, 0, 0, 0]), torch.zeros_like(x[:, 0, 0, 0]),
                           torch.full_like(x[:, 0, 0, 0], h), torch.full_like(x[:, 0, 0, 0], w)], dim=1)
        return glance_of(x, self.size), box

    def once(self, key: tuple[Any, ...], make: Callable[[], T]) -> T:
        """``make()``, computed once per picture: inside :func:`glancing` every tile gets the value the
        first tile computed (what depends on the glance alone: Lantern's grid), elsewhere it is computed.
        ``key`` names the value and must change with whatever else it depends on (the batch, the dtype)."""
        if self.given is None:
            return make()
        if key not in self.given.memo:
            self.given.memo[key] = make()
        return self.given.memo[key]


def glance_of(x: torch.Tensor, size: int) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, C, size, size)``: output pixel ``i`` of a side of ``n`` is the mean of input
    pixels ``floor(i n / size)`` to ``ceil((i + 1) n / size) - 1`` (torch's adaptive average pooling).

    Traced for an ONNX graph, by differences of running sums (float64), which trace with any H and W
    (torch.export fixes the sides of an adaptive pooling); run eagerly, by the pooling itself, ten
    times faster on a 12 MP photo. The two agree to float rounding (``tests/test_lantern.py``)."""
    if torch.compiler.is_exporting():
        return _area_average(_area_average(x, size, dim=3), size, dim=2).to(x.dtype)
    return torch.nn.functional.adaptive_avg_pool2d(x, (size, size))


def _area_average(x: torch.Tensor, size: int, *, dim: int) -> torch.Tensor:
    n = x.shape[dim]
    i = torch.arange(size, device=x.device)
    start, end = i * n // size, ((i + 1) * n + size - 1) // size
    sums = torch.cat([torch.zeros_like(x.narrow(dim, 0, 1), dtype=torch.float64), x.double().cumsum(dim)], dim=dim)
    shape = [1] * x.dim()
    shape[dim] = size
    return (sums.index_select(dim, end) - sums.index_select(dim, start)) / (end - start).double().view(shape)


class _Glancing:
    """The whole picture's glance ``(1, 3, S, S)`` and the box of the crop run now ``(1, 4)``."""

    def __init__(self, glance: torch.Tensor, height: int, width: int) -> None:
        self.glance, self.height, self.width = glance, height, width
        self.box = torch.tensor([[0.0, 0.0, height, width]])
        self.memo: dict[tuple[Any, ...], Any] = {}  # Glance.once's values for this picture

    @classmethod
    def of_views(cls, glance: torch.Tensor, box: torch.Tensor) -> _Glancing:
        """A batch whose items are crops of different pictures: glances ``(B, 3, S, S)``, boxes ``(B, 4)``."""
        given = cls(glance, 0, 0)
        given.box = box
        return given

    def place(self, top: int, left: int) -> None:
        """The next crop starts at ``(top, left)`` of the picture."""
        self.box = torch.tensor([[float(top), float(left), float(self.height), float(self.width)]])


def glances(net: nn.Module) -> list[Glance]:
    return [m for m in net.modules() if isinstance(m, Glance)]


def current_glance(net: nn.Module) -> _Glancing | None:
    """The glance handed to ``net`` now, if any (an ONNX runner reads it, :mod:`lowlight_cli.onnx_graph`)."""
    return next((m.given for m in glances(net) if m.given is not None), None)


@contextmanager
def glancing(net: nn.Module, glance: torch.Tensor, height: int, width: int) -> Iterator[_Glancing]:
    """Inside: ``net``'s :class:`Glance` gives ``glance`` (the whole ``height`` x ``width`` picture's,
    padded as the net sees it) and the box last set with the yielded object's ``place``."""
    with _set_on(glances(net), "given", _Glancing(glance, height, width)) as given:
        yield given


@contextmanager
def glancing_views(net: nn.Module, views: list[torch.Tensor], box: torch.Tensor) -> Iterator[_Glancing]:
    """Training on crops: item ``i`` of the batch run inside is a crop at ``box[i]`` (top, left, height,
    width) of the picture ``views[i]`` ``(1, 3, height, width)``, whose glance ``net``'s :class:`Glance`
    gives, as inference gives each tile the whole photo's (``lowlight_cli.training.data.sample_views``)."""
    size = glances(net)[0].size
    glance = torch.cat([glance_of(v, size) for v in views])
    with _set_on(glances(net), "given", _Glancing.of_views(glance, box)) as given:
        yield given
