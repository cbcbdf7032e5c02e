"""Evaluation and comparison: scores on paired datasets, side-by-side grids, the model table.

Every score goes through :func:`score` and every model through :func:`inference.load_enhancer`, so
``eval``, ``compare`` and ``enhance`` see the same outputs. Scores are taken at the target's
resolution: models run at ``--scale 1`` unless the options say otherwise.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import torch
from torch.overrides import TorchFunctionMode

from . import registry
from .data import Pair, default_lol_roots, find_pairs
from .errors import DatasetError, OutputError, UsageError
from .images import DEFAULT_MAX_PIXELS, Picture, write_atomic, read_image, to_uint8, write_image
from .inference import Enhancer, RunOptions, load_enhancer, run_with_hooks
from .metrics import PROTOCOL, gt_mean, psnr, ssim
from .tiling import Progress

if TYPE_CHECKING:
    from .weights import WeightsEntry

DATASETS = ("lol",)
SPLITS = ("eval15", "our485")
# The Hub dataset repo that mirrors LOL in its layout, pinned to a 40-hex commit:
# {"repo_id": "owner/name", "revision": "<commit>"}. None until a mirror is published; the
# resolution then ends with an error asking for --data-dir.
LOL_HUB: dict[str, str] | None = None

METRICS = ("psnr", "ssim", "psnr_gtmean", "ssim_gtmean")
ROW_KEYS = ("model", "image", *METRICS, "seconds")
ROW_SUFFIXES = (".csv", ".json")

_DATA_HINT = "pass --data-dir DIR (a folder holding eval15/ and our485/, each with low/ and high/) or set LOWLIGHT_DATA"


def validation_stems(root: Path) -> list[str]:
    """The our485 stems that ``lowlight train`` holds out for validation by default (whole scene groups)."""
    from .training.config import TrainConfig
    from .training.data import read_scenes, split_by_scene

    stems = [p.stem for p in find_pairs(root / "our485")]
    defaults = TrainConfig(model="msrnet", out=Path("."))
    _, val = split_by_scene(stems, read_scenes(root / "scenes.csv"), fraction=defaults.val_fraction, seed=defaults.split_seed)
    return [stems[i] for i in val]


def resolve_dataset(name: str = "lol", data_dir: Path | None = None, split: str = "eval15") -> Path:
    """The folder of ``split`` (holding ``low/`` and ``high/``) of dataset ``name``.

    Looks in ``data_dir`` if given (and nowhere else), then ``$LOWLIGHT_DATA``, then the cache
    (``$LOWLIGHT_CACHE/datasets/lol``), then downloads the split from the Hub mirror in
    :data:`LOL_HUB` into that cache unless ``HF_HUB_OFFLINE`` is set. Raises UsageError for an
    unknown name or split, DatasetError when the split is found nowhere.
    """
    if name.lower() not in DATASETS:
        raise UsageError(
            f"unknown dataset {name!r}",
            f"known: {', '.join(DATASETS)}; other paired data in the LOL layout: --dataset lol --data-dir DIR",
        )
    if split not in SPLITS + ("val",):
        raise UsageError(f"unknown split {split!r}", f"use --split {', '.join(SPLITS)} or val")
    if split == "val":
        # Not a folder: the held-out scene groups of our485, chosen as `lowlight train` chooses them.
        return resolve_dataset(name, data_dir, "our485").parent / "val"
    if data_dir is not None:
        folder = Path(data_dir) / split
        if not (folder / "low").is_dir():
            raise DatasetError(f"{folder} does not exist or has no low/ folder", _DATA_HINT)
        return folder
    roots = default_lol_roots()
    for root in roots:
        if (root / split / "low").is_dir():
            return root / split
    return _download_split(split, cache=roots[-1], searched=roots)


def _download_split(split: str, *, cache: Path, searched: list[Path]) -> Path:
    import huggingface_hub
    from huggingface_hub import constants as hf_constants

    where = f"LOL {split} is not in {', '.join(map(str, searched))}"
    if LOL_HUB is None:
        raise DatasetError(f"{where}, and no Hub mirror of LOL is configured", _DATA_HINT)
    if hf_constants.is_offline_mode():
        raise DatasetError(f"{where}, and HF_HUB_OFFLINE is set", _DATA_HINT)
    source = f"{LOL_HUB['repo_id']}@{LOL_HUB['revision'][:12]}"
    try:
        huggingface_hub.snapshot_download(
            LOL_HUB["repo_id"], repo_type="dataset", revision=LOL_HUB["revision"],
            allow_patterns=[f"{split}/*"], local_dir=cache,
        )
    # huggingface_hub raises its own errors, OSError and its HTTP library's errors (which change
    # between versions); whatever fails here is a failed download.
    except Exception as err:
        raise DatasetError(f"{where}, and downloading it from {source} failed: {type(err).__name__}: {err}", _DATA_HINT) from err
    if not (cache / split / "low").is_dir():
        raise DatasetError(f"{where}, and {source} has no {split}/low/ folder", _DATA_HINT)
    return cache / split


def score(pred: np.ndarray, target: np.ndarray, enhancer: Enhancer) -> dict[str, float]:
    """PSNR and SSIM, plain and GT-mean, of an output ``(H, W, 3)`` against its target, both in [0, 1].

    The output is rounded to 8 bits first, as a written file would be. Raises UsageError when the
    sizes differ (a x2 model at its native scale), with the fix.
    """
    if pred.shape != target.shape:
        hint = (
            "scores are taken at the target's size: use --scale 1"
            if enhancer.scale != 1
            else "the low and high images of a pair must have the same size"
        )
        raise UsageError(
            f"{enhancer.label} at scale {enhancer.scale} gives {pred.shape[1]}x{pred.shape[0]} images, "
            f"the targets are {target.shape[1]}x{target.shape[0]}",
            hint,
        )
    pred = to_uint8(pred) / 255.0
    fair = gt_mean(pred, target)
    return {"psnr": psnr(pred, target), "ssim": ssim(pred, target), "psnr_gtmean": psnr(fair, target), "ssim_gtmean": ssim(fair, target)}


def _scoring_options(options: RunOptions) -> RunOptions:
    """Scores compare at the target's size, so the default scale here is 1, not the model's native one."""
    return dataclasses.replace(options, scale=options.scale or 1)


def _load(names: Sequence[str], options: RunOptions) -> list[Enhancer]:
    """Every enhancer, loaded before any work so that a bad name fails at once."""
    if not names:
        raise UsageError("no models to run", "name them, e.g. --model clahe,msrcr")
    enhancers = [_load_one(n, _scoring_options(options)) for n in names]
    labels = [e.label for e in enhancers]
    twice = sorted({x for x in labels if labels.count(x) > 1})
    if twice:
        raise UsageError(f"{', '.join(twice)} named twice", "name each model once")
    return enhancers


def _load_one(name: str, options: RunOptions) -> Enhancer:
    """A model name, or a ``.safetensors`` file (its arch read from its metadata; labelled by file name)."""
    if name.endswith(".safetensors"):
        from .weights import arch_of_file

        path = Path(name)
        enhancer = load_enhancer(arch_of_file(path), weights=path, options=options)
        enhancer.label = str(path)
        return enhancer
    return load_enhancer(name, options=options)


def _t975(dof: int) -> float:
    """The 97.5 % quantile of Student's t with ``dof`` degrees of freedom (Cornish-Fisher: 0.3 % low at dof 4, within 0.01 % from dof 10)."""
    z = 1.959963985
    if dof < 1:
        return math.inf
    return z + (z**3 + z) / (4 * dof) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * dof**2) \
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * dof**3)


def paired_stats(rows: list[dict[str, Any]], a: str, b: str, metric: str = "psnr") -> dict[str, Any]:
    """Per-image ``metric(B) - metric(A)`` over the images both scored, their mean, standard deviation,
    standard error and 95 % interval (Student's t), and how many images B wins."""
    by_a = {r["image"]: r[metric] for r in rows if r["model"] == a}
    by_b = {r["image"]: r[metric] for r in rows if r["model"] == b}
    images = [i for i in by_a if i in by_b and math.isfinite(by_a[i]) and math.isfinite(by_b[i])]
    if len(images) < 2:
        raise UsageError("a paired comparison needs at least two scored images", "use more pairs (drop --limit)")
    diffs = np.array([by_b[i] - by_a[i] for i in images])
    mean, sd = float(diffs.mean()), float(diffs.std(ddof=1))
    se = sd / math.sqrt(len(diffs))
    half = _t975(len(diffs) - 1) * se
    return {
        "a": a, "b": b, "metric": metric, "images": len(diffs), "mean_a": float(np.mean([by_a[i] for i in images])),
        "mean_b": float(np.mean([by_b[i] for i in images])), "mean_diff": mean, "sd": sd, "se": se,
        "ci95": [mean - half, mean + half], "b_wins": int((diffs > 0).sum()),
        "per_image": {i: float(d) for i, d in zip(images, diffs)},
    }


def _run(enhancer: Enhancer, rgb: np.ndarray) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    out = enhancer(rgb)
    return out, time.perf_counter() - start


@dataclass(frozen=True)
class EvalResult:
    """Scores of several models on one split.

    ``rows``: one dict per (model, image) with :data:`ROW_KEYS` (PSNR in dB, SSIM in [-1, 1],
    ``seconds`` of enhancement alone), model-major. ``summary``: one dict per model with the means
    of the metrics and of ``seconds`` plus ``images``. ``outputs``: stem -> model label -> output
    ``(H, W, 3)`` in [0, 1], only for the stems :func:`evaluate` was asked to keep. ``captions``: model
    label -> its name with the scale it ran at (:func:`panel_name`), for grids.
    """

    split_dir: Path
    pairs: int
    rows: list[dict[str, Any]]
    summary: list[dict[str, Any]]
    outputs: dict[str, dict[str, np.ndarray]] = field(default_factory=dict, repr=False)
    captions: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The summary as JSON-ready data; an infinite PSNR (identical images) becomes null."""
        return {
            "split_dir": str(self.split_dir),
            "split": self.split_dir.name,
            "pairs": self.pairs,
            "protocol": PROTOCOL,
            "models": json_ready(self.summary),
        }


def json_ready(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows with non-finite floats (the inf PSNR of identical images) as None, which JSON can hold."""
    return [{k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in r.items()} for r in rows]


def evaluate(
    model_names: Sequence[str],
    split_dir: Path,
    options: RunOptions = RunOptions(),
    limit: int | None = None,
    progress: Progress | None = None,
    keep: Collection[str] = (),
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> EvalResult:
    """Score every model on every pair of ``split_dir`` (LOL layout), or on its first ``limit`` pairs.

    Each pair is read once (refused over ``max_pixels``); ``progress(done, total)`` is called after each
    (model, image).
    ``keep``: stems whose outputs are returned in :attr:`EvalResult.outputs` (for grids).
    ``split_dir`` named ``val`` (from :func:`resolve_dataset`) means the training's held-out scene groups.
    """
    if limit is not None and limit < 1:
        raise UsageError(f"--limit {limit} must be at least 1", None)
    if split_dir.name == "val":
        held_out = set(validation_stems(split_dir.parent))
        pairs = [p for p in find_pairs(split_dir.parent / "our485") if p.stem in held_out]
    else:
        pairs = find_pairs(split_dir)
    pairs = pairs[:limit]
    enhancers = _load(model_names, options)
    per_model: dict[str, list[dict[str, Any]]] = {e.label: [] for e in enhancers}
    outputs: dict[str, dict[str, np.ndarray]] = {}
    total, done = len(pairs) * len(enhancers), 0
    for pair in pairs:
        low, high = (read_image(p, max_pixels=max_pixels).rgb for p in (pair.low, pair.high))
        for enhancer in enhancers:
            pred, seconds = _run(enhancer, low)
            row = {"model": enhancer.label, "image": pair.stem, **score(pred, high, enhancer), "seconds": seconds}
            per_model[enhancer.label].append(row)
            if pair.stem in keep:
                outputs.setdefault(pair.stem, {})[enhancer.label] = pred
            done += 1
            if progress is not None:
                progress(done, total)
    summary = [
        {"model": label, "images": len(rows), **{k: float(np.mean([r[k] for r in rows])) for k in (*METRICS, "seconds")}}
        for label, rows in per_model.items()
    ]
    rows = [r for model_rows in per_model.values() for r in model_rows]
    return EvalResult(Path(split_dir), len(pairs), rows, summary, outputs, {e.label: panel_name(e) for e in enhancers})


def check_rows_path(path: Path) -> Path:
    """``path`` if its suffix names a rows format (.csv or .json); else UsageError, before any work is done."""
    if Path(path).suffix.lower() not in ROW_SUFFIXES:
        raise UsageError(f"cannot tell the format of {path}", f"end the name in {' or '.join(ROW_SUFFIXES)}")
    return Path(path)


def write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write per-image rows as CSV (header :data:`ROW_KEYS`) or JSON (a list; inf -> null) by suffix, atomically."""
    path = check_rows_path(path)
    if path.suffix.lower() == ".json":
        text = json.dumps(json_ready(rows), indent=1) + "\n"
    else:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=ROW_KEYS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        text = buffer.getvalue()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create folder {path.parent}: {e.strerror}", "choose another --output") from None
    write_atomic(path, text.encode())


def _weights_source(spec: registry.ModelSpec) -> str:
    """Where a model's default weights come from: bundled, hub or none; "-" for a baseline."""
    if spec.kind == "baseline":
        return "-"
    from .weights import entry_for

    return _entry_source(entry_for(spec.name))


def _entry_source(entry: WeightsEntry | None) -> str:
    """Where a weights entry's file comes from: bundled, hub or none."""
    if entry is None:
        return "none"
    if entry.bundled_path is not None and entry.bundled_path.is_file():
        return "bundled"
    return "hub" if entry.repo_id else "none"


def default_models() -> list[str]:
    """Every baseline, then every learned model whose default weights are bundled or on the Hub."""
    return [s.name for s in registry.specs() if _weights_source(s) != "none"]


class _SkipInit(TorchFunctionMode):
    """In-place fills of meta tensors (``normal_``, ``zero_``, ``nn.init.kaiming_uniform_`` ...) as no-ops:
    there are no values to fill, and their Python meta kernels import torch's compiler stack (3-4 s)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        target = args[0] if args else kwargs.get("tensor")  # nn.init passes the tensor by keyword
        if name.endswith("_") and not name.startswith("__") and isinstance(target, torch.Tensor) and target.is_meta:
            return target
        return func(*args, **kwargs)


def parameter_count(spec: registry.ModelSpec, hparams: dict[str, Any] | None = None) -> int:
    """Parameters of ``spec``'s network (with a weights entry's ``hparams``, else its own), built on the
    meta device without initialising: shapes only, no memory, milliseconds even for the 43 M-parameter
    variants."""
    with torch.device("meta"), _SkipInit():
        net = spec.build(**hparams) if hparams else spec.create()
    return sum(p.numel() for p in net.parameters())


def format_params(count: int | None) -> str:
    """``93_000`` -> ``"0.09 M"``; ``"-"`` for a baseline (None)."""
    if count is None:
        return "-"
    return f"{count / 1e6:.2f} M" if count >= 5_000 else "<0.01 M"


def count_macs(net: torch.nn.Module, x: torch.Tensor) -> int:
    """Multiply-accumulates of the ``Conv2d``, ``ConvTranspose2d`` and ``Linear`` layers in ``net(x)``.

    Counted with forward hooks from the shapes alone, so ``net`` and ``x`` may live on the meta device.
    Stride, groups and dilation follow from the shapes; bias additions are not MACs.
    """
    return sum(macs for _, macs in macs_by_layer(net, x))


def macs_by_layer(net: torch.nn.Module, x: torch.Tensor) -> list[tuple[torch.nn.Module, int]]:
    """``(layer, MACs)`` for every call of a ``Conv2d``, ``ConvTranspose2d`` or ``Linear`` layer in
    ``net(x)``, in call order (a layer applied twice appears twice); see :func:`count_macs`."""
    calls: list[tuple[torch.nn.Module, int]] = []

    def hook(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        if isinstance(module, torch.nn.ConvTranspose2d):  # each input value meets C_out/groups * k*k weights
            k = module.kernel_size[0] * module.kernel_size[1]
            calls.append((module, inputs[0].numel() * (module.out_channels // module.groups) * k))
        elif isinstance(module, torch.nn.Conv2d):  # each output value meets C_in/groups * k*k weights
            k = module.kernel_size[0] * module.kernel_size[1]
            calls.append((module, output.numel() * (module.in_channels // module.groups) * k))
        else:
            calls.append((module, output.numel() * module.in_features))

    layers = (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear)
    run_with_hooks(net, x, [m for m in net.modules() if isinstance(m, layers)], hook)
    return calls


PHOTO_PIXELS = 12_000_000  # a 12 MP photo: where a fixed cost (a model's glance) is spread for --macs


def macs_per_pixel(spec: registry.ModelSpec) -> float:
    """Multiply-accumulates per input pixel of one forward pass of ``spec``'s network at its native scale,
    on a 12 MP photo (:data:`PHOTO_PIXELS`).

    :func:`count_macs` on two square inputs (``16`` and ``32 * size_multiple`` px) splits the count into a
    part that grows with the pixels and a fixed part (a network that sees a fixed-size copy of the
    whole picture, :class:`context.Glance`), which is spread over a 12 MP photo. Counted as ptflops/thop
    count: activations, pooling, attention products and functional convolutions (fixed filters) are
    left out. One MAC is two FLOPs. Shapes only, on the meta device; a model using an op without a
    meta kernel runs on CPU instead.
    """
    sides = (16 * spec.size_multiple, 32 * spec.size_multiple)
    totals = []
    for side in sides:
        try:
            with torch.device("meta"):
                totals.append(count_macs(spec.create().eval(), torch.zeros(1, 3, side, side)))
        # Meta tensors raise NotImplementedError for ops without a meta kernel and RuntimeError on data
        # access (.item()); real zeros on CPU then give the same count.
        except (NotImplementedError, RuntimeError):
            totals.append(count_macs(spec.create().eval(), torch.zeros(1, 3, side, side)))
    (a, b), (ta, tb) = (s * s for s in sides), totals
    slope = (tb - ta) / (b - a)
    fixed = max(0.0, ta - slope * a)
    return slope + fixed / PHOTO_PIXELS


def format_macs(value: float | None) -> str:
    """Multiply-accumulates per pixel with a unit: ``85_200.0`` -> ``"85.2 k"``; ``"-"`` for a baseline (None)."""
    if value is None:
        return "-"
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value:.0f}"


def model_rows(*, include_tests: bool = False, macs: bool = False) -> list[dict[str, Any]]:
    """One row per name ``--model`` takes, for ``lowlight models``, as data (numbers as numbers): each
    registered model, and after a learned one each of its weights entries (``arch.tag``).

    Keys: ``name``, ``kind`` (learned, baseline, or weights for an entry, which also has ``arch``),
    ``scales`` (list of ints), ``params`` (int; None for a baseline), ``weights`` (bundled, hub, none;
    "-" for a baseline), ``default`` (what ``enhance`` runs without ``--model``; False for an entry, whose
    ``arch_default`` says whether ``--model arch`` loads it), ``eval15_psnr`` / ``eval15_ssim`` (the
    default weights' or the entry's plain LOL eval15 scores, or None) and ``summary``. Parameters come
    from constructors on the meta device, so the listing takes well under a second. ``macs`` adds
    ``macs_per_px`` (see :func:`macs_per_pixel`; None for an entry): one forward pass per model, on the
    meta device too, but several seconds in all (meta kernels load torch's compiler stack). Test-only
    variants (:attr:`registry.ModelSpec.test_only`) only with ``include_tests``.
    """
    from .inference import default_model_name
    from .weights import entries, entry_for

    default = default_model_name()
    rows = []
    for spec in registry.specs():
        if spec.test_only and not include_tests:
            continue
        learned = spec.kind == "learned"
        entry = entry_for(spec.name) if learned else None
        metrics = entry.metrics if entry is not None else {}
        row = {
            "name": spec.name,
            "kind": spec.kind,
            "scales": list(spec.scales),
            "params": parameter_count(spec) if learned else None,
            "weights": _weights_source(spec),
            "default": spec.name == default,
            "eval15_psnr": metrics.get("eval15_psnr"),
            "eval15_ssim": metrics.get("eval15_ssim"),
            "summary": spec.summary,
        }
        if macs:
            row["macs_per_px"] = macs_per_pixel(spec) if learned else None
        rows.append(row)
        own = sorted((e for e in entries() if learned and e.arch == spec.name), key=lambda e: not e.default)
        rows += [_entry_row(spec, e, macs=macs) for e in own]
    return rows


def _entry_row(spec: registry.ModelSpec, entry: WeightsEntry, *, macs: bool) -> dict[str, Any]:
    """A :func:`model_rows` row for one weights entry of ``spec``."""
    mixture = ", ".join(f"{part} {share:g}" for part, share in entry.mixture.items())
    about = [f"what --model {spec.name} loads"] if entry.default else []
    about.append(f"exposure mixture: {mixture}" if mixture else "paired images only (no exposure mixture)")
    row = {
        "name": entry.name,
        "kind": "weights",
        "arch": spec.name,
        "scales": list(spec.scales),
        "params": parameter_count(spec, entry.hparams),
        "weights": _entry_source(entry),
        "default": False,
        "arch_default": entry.default,
        "eval15_psnr": entry.metrics.get("eval15_psnr"),
        "eval15_ssim": entry.metrics.get("eval15_ssim"),
        "summary": "; ".join(about),
    }
    return row | ({"macs_per_px": None} if macs else {})


LABEL_BAND = 24  # pixels of the caption band above each panel
GAP = 4  # pixels between panels and between rows
PANEL_WIDTH = 320  # pixels, the first panel of a grid (`lowlight compare --panel`)
MAX_COLUMNS = 4  # panels a grid row holds at most
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _caption(width: int, text: str) -> np.ndarray:
    """A dark ``(LABEL_BAND, width, 3)`` band with ``text`` in white, shrunk to fit."""
    band = np.full((LABEL_BAND, width, 3), 30, np.uint8)  # OpenCV draws text on 8-bit images only
    font_scale = 0.5
    (w, _), _ = cv2.getTextSize(text, _FONT, font_scale, 1)
    if w > width - 8:
        font_scale *= (width - 8) / w
    cv2.putText(band, text, (4, LABEL_BAND - 8), _FONT, font_scale, (255, 255, 255), 1, cv2.LINE_AA)
    return band.astype(np.float32) / 255.0


def compare_grid(rgbs: list[np.ndarray], labels: list[str], *, tile_width: int = PANEL_WIDTH,
                 columns: int | None = None) -> np.ndarray:
    """Captioned panels side by side, ``columns`` per row, as one float32 ``(H, W, 3)`` image in [0, 1].

    By default the fewest rows of at most :data:`MAX_COLUMNS` panels, as even as they can be (six panels:
    two rows of three, not a row of four and a row of two; ten: 4, 3, 3). Every panel is resized
    (keeping its aspect) to the height the first one has at ``tile_width`` pixels wide, and gets a
    :data:`LABEL_BAND`-pixel caption above it; panels and rows are :data:`GAP` pixels apart on black.
    Inputs are ``(h, w, 3)`` in [0, 1], of any sizes.
    """
    if len(rgbs) != len(labels) or not rgbs:
        raise ValueError(f"need as many labels as images (got {len(rgbs)} images, {len(labels)} labels), at least one")
    h0, w0 = rgbs[0].shape[:2]
    height = max(1, round(tile_width * h0 / w0))
    panels = []
    for rgb, label in zip(rgbs, labels):
        width = max(1, round(rgb.shape[1] * height / rgb.shape[0]))
        image = cv2.resize(np.asarray(rgb, np.float32), (width, height), interpolation=cv2.INTER_AREA)
        panels.append(np.concatenate([_caption(width, label), np.clip(image, 0.0, 1.0)], axis=0))
    if columns is None:  # the fewest rows, the longer ones first: 10 -> 4, 3, 3
        n_rows = math.ceil(len(panels) / MAX_COLUMNS)
        sizes = [len(panels) // n_rows + (r < len(panels) % n_rows) for r in range(n_rows)]
    else:
        sizes = [min(columns, len(panels) - i) for i in range(0, len(panels), columns)]
    starts = np.cumsum([0, *sizes])
    rows = [panels[a:b] for a, b in zip(starts[:-1], starts[1:])]
    grid_w = max(sum(p.shape[1] for p in row) + GAP * (len(row) - 1) for row in rows)
    row_h = LABEL_BAND + height
    grid = np.zeros((len(rows) * row_h + GAP * (len(rows) - 1), grid_w, 3), np.float32)
    for r, row in enumerate(rows):
        x, y = 0, r * (row_h + GAP)
        for panel in row:
            grid[y : y + row_h, x : x + panel.shape[1]] = panel
            x += panel.shape[1] + GAP
    return grid


def panel_name(enhancer: Enhancer) -> str:
    """The model's label and, for a model with several scales, the scale its output shows: ``neid x2``,
    or ``neid x1 (input halved)``, NEID's paper protocol (the input halved, the x2 output at its size)."""
    spec = enhancer.spec
    if len(spec.scales) == 1:
        return enhancer.label
    shrink = spec.scale // enhancer.scale
    how = "" if shrink == 1 else " (input halved)" if shrink == 2 else f" (input / {shrink})"
    return f"{enhancer.label} x{enhancer.scale}{how}"


def _label(name: str, row: dict[str, Any]) -> str:
    if "psnr" not in row:
        return name
    return f"{name}  {row['psnr']:.2f} dB / {row['ssim']:.3f}"


def save_grid(path: Path, grid: np.ndarray) -> None:
    """Write a grid from :func:`compare_grid` as an 8-bit image (format from the suffix), atomically."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create folder {path.parent}: {e.strerror}", "choose another -o") from None
    write_image(path, Picture(rgb=grid, alpha=None, bit_depth=8, grey=False, exif=None, icc=None))


def compare_image(
    input_path: Path,
    methods: Sequence[str],
    ref: Path | None = None,
    options: RunOptions = RunOptions(),
    progress: Progress | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    panel: int = PANEL_WIDTH,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Run every method on one image: a grid (input, each output captioned with :func:`panel_name`, the
    reference if any) and one row per method (``model``, ``seconds``, and with ``ref`` the
    :data:`METRICS` against it). ``progress(done, total)`` is called after each method; an image over
    ``max_pixels`` is refused from its header; ``panel`` is the grid's panel width in pixels."""
    low = read_image(input_path, max_pixels=max_pixels).rgb
    target = None if ref is None else read_image(ref, max_pixels=max_pixels).rgb
    panels, labels, rows = [low], ["input"], []
    enhancers = _load(methods, options)
    for done, enhancer in enumerate(enhancers, 1):
        pred, seconds = _run(enhancer, low)
        row = {"model": enhancer.label}
        if target is not None:
            row |= score(pred, target, enhancer)
        row["seconds"] = seconds
        rows.append(row)
        panels.append(pred)
        labels.append(_label(panel_name(enhancer), row))
        if progress is not None:
            progress(done, len(enhancers))
    if target is not None:
        panels.append(target)
        labels.append("reference")
    return compare_grid(panels, labels, tile_width=panel), rows


def grid_pairs(split_dir: Path, n_grids: int) -> list[Pair]:
    """The ``n_grids`` pairs of ``split_dir`` that :func:`compare_dataset` makes grids of: spread evenly
    over the split, in its order (known before any work, so that their outputs can be checked first)."""
    pairs = find_pairs(split_dir)
    picks = np.linspace(0, len(pairs) - 1, min(max(n_grids, 0), len(pairs))).round().astype(int)
    return [pairs[i] for i in sorted(set(picks.tolist()))]


def compare_dataset(
    methods: Sequence[str],
    split_dir: Path,
    options: RunOptions = RunOptions(),
    n_grids: int = 3,
    progress: Progress | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    panel: int = PANEL_WIDTH,
) -> tuple[EvalResult, dict[str, np.ndarray]]:
    """:func:`evaluate` every method on the split, plus grids (input, outputs with their scores,
    reference; panels ``panel`` pixels wide) for the :func:`grid_pairs`, keyed by stem."""
    picks = grid_pairs(split_dir, n_grids)
    result = evaluate(methods, split_dir, options, progress=progress, keep={p.stem for p in picks}, max_pixels=max_pixels)
    grids = {}
    for pair in picks:
        rows = {r["model"]: r for r in result.rows if r["image"] == pair.stem}
        outputs = result.outputs[pair.stem]
        grids[pair.stem] = compare_grid(
            [read_image(pair.low, max_pixels=max_pixels).rgb, *outputs.values(), read_image(pair.high, max_pixels=max_pixels).rgb],
            ["input", *(_label(result.captions[m], rows[m]) for m in outputs), "reference"], tile_width=panel,
        )
    return result, grids
