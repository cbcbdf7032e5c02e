"""The ``lowlight`` command line: parse, call one library function, print.

Results go to stdout (``--json`` for machines), progress and logs to stderr. Library errors become one
``Error: ...`` line plus a hint and a non-zero exit; ``LOWLIGHT_DEBUG=1`` shows the traceback.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn
from rich.table import Table
from rich.text import Text

from .errors import LowlightError

app = typer.Typer(
    help="Turn dark photos and videos into well-exposed ones.",
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

# Options shared by several commands, defined once.
ModelOpt = Annotated[Optional[str], typer.Option("--model", "-m", help="Model or baseline name (see `lowlight models`).")]
WeightsOpt = Annotated[Optional[Path], typer.Option("--weights", help="Explicit .safetensors file for a learned model.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")]
TileOpt = Annotated[int, typer.Option("--tile", help="Tile side in pixels; 0: one pass if the image fits --memory, else the largest tile that does.")]
MemoryOpt = Annotated[Optional[float], typer.Option("--memory", help="GB one image may use (default: a quarter of the RAM or of a container's memory limit, or half the GPU's memory); sets the tiling.")]
ThreadsOpt = Annotated[int, typer.Option("--threads", help="CPU threads for torch and ONNX Runtime (default 0: the cores other processes are not using now).")]
OverlapOpt = Annotated[Optional[int], typer.Option("--overlap", help="Pixels shared by neighbouring tiles (default: the model's).")]
PrecisionOpt = Annotated[str, typer.Option("--precision", help="fp32, or fp16/bf16 on CUDA (falls back to fp32 on NaN/inf).")]
ScaleOpt = Annotated[Optional[int], typer.Option("--scale", help="Output scale (default: the model's native scale).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]
BackendOpt = Annotated[Optional[str], typer.Option("--backend", show_default="auto, or $LOWLIGHT_BACKEND", help="auto: onnx where it can run (CPU, fp32), else torch; onnx: ONNX Runtime, 2-4x faster on CPU (each model's graphs exported once, tens of seconds, and cached); torch.")]
StrengthOpt = Annotated[float, typer.Option("--strength", help="0..1: 1 is the model's output, 0 the input, in between a blend in linear light.")]
# The default is images.DEFAULT_MAX_PIXELS, written out so that `lowlight -h` does not import OpenCV.
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace output files that already exist.")]
MaxPixelsOpt = Annotated[int, typer.Option("--max-pixels", min=1, help="Refuse images (and video frames) of more pixels than this, from the file's header, before decoding: decompression bombs.")]


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    """Turn dark photos and videos into well-exposed ones."""
    if version:
        from . import __version__

        out.print(f"lowlight {__version__}", highlight=False)
        raise typer.Exit(0)
    if ctx.invoked_subcommand is None:
        # Bare `lowlight` is a request for help, not an error.
        out.print(ctx.get_help(), highlight=False, markup=False)
        raise typer.Exit(0)


def run_options(device: str, tile: int, overlap: int | None, precision: str, scale: int | None, strength: float = 1.0,
                memory: float | None = None, threads: int = 0, backend: str | None = None):
    from .errors import UsageError
    from .inference import BACKEND_ENV, BACKENDS, DTYPES, RunOptions, default_backend, set_threads

    if precision not in DTYPES:
        raise UsageError(f"unknown precision {precision!r}", "use fp32, fp16 or bf16")
    given = backend
    backend = backend or default_backend()
    if backend not in BACKENDS:
        where = f"--backend {backend}" if given else f"{BACKEND_ENV}={backend}"
        raise UsageError(f"unknown backend in {where}", f"use {', '.join(BACKENDS)}")
    set_threads(threads)
    return RunOptions(device=device, tile=tile, overlap=overlap, precision=precision, scale=scale, strength=strength,
                      memory_gb=memory, backend=backend)


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"


class TimeLeftColumn(ProgressColumn):
    """Elapsed time and the time left at the average rate so far, known from the first step on.

    rich's TimeRemainingColumn estimates from the steps of the last 30 s and shows ``-:--:--`` whenever
    fewer than two fall in it: always, for tiles that take a minute each.
    """

    def render(self, task: Task) -> Text:
        elapsed = task.elapsed or 0.0
        if task.total and task.completed:
            left = _clock(elapsed * (task.total - task.completed) / task.completed)
        else:
            left = "-:--:--"
        return Text(f"{_clock(elapsed)} elapsed, {left} left", style="progress.remaining")


class RateColumn(ProgressColumn):
    """Steps per second at the average rate so far, for a task given a ``unit`` field (a video's
    frames: ``fps``); empty for the others."""

    def render(self, task: Task) -> Text:
        unit = task.fields.get("unit")
        if not unit or not task.completed or not task.elapsed:
            return Text("")
        return Text(f"{task.completed / task.elapsed:.1f} {unit}", style="progress.data.speed")


def progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), RateColumn(), TimeLeftColumn(),
        console=err, transient=True, disable=not err.is_terminal,  # no stray newline in logs and pipes
    )


@app.command()
def enhance(
    inputs: Annotated[list[Path], typer.Argument(help="Image and video files and/or folders.", show_default=False)],
    output: Annotated[Optional[str], typer.Option("--output", "-o", help="Output file (one input) or folder; a trailing / always means a folder, made if missing.")] = None,
    model: ModelOpt = None,
    weights: WeightsOpt = None,
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Look into sub-folders of folder inputs.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Redo outputs that already exist.")] = False,
    shard: Annotated[Optional[str], typer.Option("--shard", help="K/N: process only the K-th of N slices (1-based).")] = None,
    suffix: Annotated[Optional[str], typer.Option("--suffix", help="Text after each output's stem, instead of _<model>[_x<scale>]; '' keeps the input's name.")] = None,
    # Literal lists here keep `lowlight -h` from importing OpenCV; a test checks them against images.py.
    ext: Annotated[str, typer.Option("--ext", help="Output format: auto (the input's, TIFF for RAW, MP4 for video), png, jpg, jpeg, tif, tiff, webp, bmp, heic, heif, avif, or for video mp4, mkv or mov.")] = "auto",
    quality: Annotated[Optional[int], typer.Option("--quality", help="JPEG, WebP, HEIC and AVIF quality, 1-100 (default: 95 for JPEG and WebP, 90 for HEIC and AVIF).", show_default=False)] = None,
    crf: Annotated[Optional[int], typer.Option("--crf", help="H.264 quality of video outputs (x264's CRF): 0 lossless to 51 smallest (default: 18, about visually lossless; +6 about halves the file).", show_default=False)] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the planned input -> output pairs and the skips; load no model, write nothing.")] = False,
    device: DeviceOpt = "auto",
    tile: TileOpt = 0,
    memory: MemoryOpt = None,
    threads: ThreadsOpt = 0,
    backend: BackendOpt = None,
    overlap: OverlapOpt = None,
    precision: PrecisionOpt = "fp32",
    scale: ScaleOpt = None,
    strength: StrengthOpt = 1.0,
    max_pixels: MaxPixelsOpt = 200_000_000,
    as_json: JsonOpt = False,
) -> None:
    """Enhance photos and videos. Existing outputs are skipped, so an interrupted batch can simply be
    re-run, and several processes on one folder share the work. Every output is checked before the
    model loads.

    Outputs are named <stem>_<model>[_x<scale>].<input's suffix> (.mp4 for videos), beside a single
    input or in the output folder (default ./lowlight_<model>/), mirroring sub-folders.

    Examples:

      lowlight enhance dark.jpg                      # writes dark_<model>.jpg beside it

      lowlight enhance night.mov --crf 20            # writes night_<model>.mp4, audio copied

      lowlight enhance shots/ -r -o bright/ --model msrcr

      lowlight enhance shots/ -o web/ --suffix '' --ext webp --quality 80

      lowlight enhance shots/ -r -o bright/ --dry-run   # what would be written, and what skipped

      lowlight enhance big.tif --model neid --scale 2 --tile 512 --device cuda

      lowlight enhance photos/ -o out/ --shard 3/8   # the 3rd of 8 machines

      lowlight enhance dusk.jpg --strength 0.5       # half way, in linear light

      lowlight enhance shots/ --backend torch        # eager PyTorch instead of ONNX Runtime
    """
    from . import batch
    from .images import check_quality
    from .inference import default_model_name, load_enhancer
    from .video import check_crf, is_video

    options = run_options(device, tile, overlap, precision, scale, strength, memory, threads, backend)
    check_quality(quality)
    check_crf(crf)
    name = model or default_model_name()
    naming = batch.naming(name, weights, scale=scale, suffix=suffix, ext=ext)
    jobs = batch.plan(inputs, output, naming, recursive=recursive, shard=batch.parse_shard(shard))
    batch.check_outputs(jobs, overwrite=overwrite)
    not_read = batch.files_not_read(inputs, recursive)
    if dry_run:
        _print_plan(jobs, naming.label, overwrite, as_json)
        _print_not_read(not_read)
        return
    enhancer = load_enhancer(name, weights=weights, options=options)
    failures: list[LowlightError] = []
    counts, busy = dict.fromkeys(("ok", "skipped", "claimed", "failed"), 0), 0.0
    with progress_bar() as bar:
        files = bar.add_task("images", total=len(jobs))
        steps = bar.add_task("tiles", total=None, visible=False)

        def on_step(done: int, total: int) -> None:
            # An image's tiles (hidden for one), a video's frames (total 0: not known).
            bar.update(steps, completed=done, total=total or None, visible=total != 1)

        for job in jobs:
            # Each input's time left from its own start; a video counts frames, at frames per second.
            frames = is_video(job.src)
            bar.reset(steps, total=None, visible=False, description="frames" if frames else "tiles",
                      unit="fps" if frames else None)
            outcome = batch.process(enhancer, job, overwrite=overwrite, quality=quality, crf=crf, max_pixels=max_pixels,
                                    progress=on_step)
            record = {"input": str(job.src), "output": str(job.dst), "model": enhancer.label,
                      "seconds": round(outcome.seconds, 3), "status": outcome.status}
            if outcome.error is not None:
                failures.append(outcome.error)
                record["error"] = outcome.error.message
            if outcome.holder is not None:
                record["holder"] = outcome.holder
            counts[outcome.status] += 1
            busy += outcome.seconds
            bar.advance(files)
            if as_json:
                print(json.dumps(record), flush=True)
            else:
                by = f"  (by {outcome.holder})" if outcome.holder else ""
                out.print(f"{outcome.status:>7}  {job.src} -> {job.dst}{by}", highlight=False, markup=False)
    _print_not_read(not_read)
    if len(jobs) > 1 or not failures:  # one input that failed: its error says all
        err.print(batch_summary(counts, busy), highlight=False, markup=False)
    if failures:
        if len(jobs) > 1:
            err.print(f"{len(failures)} of {len(jobs)} inputs failed:", highlight=False)
        for message in dict.fromkeys(e.message for e in failures):  # once each: one bad -o fails every input alike
            err.print(f"Error: {message}", highlight=False, markup=False)
        hints = {e.hint for e in failures if e.hint}
        if len(hints) == 1:
            err.print(f"Hint: {hints.pop()}", highlight=False, markup=False)
        raise typer.Exit(1)


def _print_not_read(paths: list[Path]) -> None:
    """The files of folder inputs that are not images or videos lowlight reads: ten, then a count."""
    for path in paths[:10]:
        err.print(f"skipped: not an image or video lowlight reads: {path}", highlight=False, markup=False)
    if len(paths) > 10:
        err.print(f"skipped: {len(paths) - 10} more files lowlight does not read", highlight=False, markup=False)


def _print_plan(jobs, label: str, overwrite: bool, as_json: bool) -> None:
    """``--dry-run``: each job as ``planned`` or ``skipped`` (its output exists), then a count on stderr."""
    counts = {"planned": 0, "skipped": 0}
    for job in jobs:
        status = "skipped" if job.dst.exists() and not overwrite else "planned"
        counts[status] += 1
        if as_json:
            print(json.dumps({"input": str(job.src), "output": str(job.dst), "model": label, "status": status}), flush=True)
        else:
            out.print(f"{status:>7}  {job.src} -> {job.dst}", highlight=False, markup=False)
    err.print(f"dry run: {counts['planned']} planned, {_skipped(counts['skipped'])}; nothing loaded or written",
              highlight=False, markup=False)


def batch_summary(counts: dict[str, int], seconds: float) -> str:
    """The end-of-batch line: how many were done, skipped (with the way to redo them), left to other
    processes and failed, and the time."""
    per = f", {seconds / counts['ok']:.1f} s per image" if counts["ok"] else ""
    claimed = f", {counts['claimed']} in progress elsewhere" if counts["claimed"] else ""
    return f"{counts['ok']} done, {_skipped(counts['skipped'])}{claimed}, {counts['failed']} failed in {seconds:.1f} s{per}"


def _skipped(count: int) -> str:
    return f"{count} skipped" + (" (outputs exist; --overwrite redoes them)" if count else "")


@app.command()
def models(
    show_all: Annotated[bool, typer.Option("--all", help="Also the test-only *_tiny variants.")] = False,
    macs: Annotated[bool, typer.Option("--macs", help="Add multiply-accumulates per pixel (a forward pass of each model: seconds).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """List the models and baselines: kind, scales, parameters, weights, LOL eval15 score; the default is marked.

    Examples:

      lowlight models

      lowlight models --all --macs --json
    """
    from .evaluate import format_macs, format_params, model_rows

    rows = model_rows(include_tests=show_all, macs=macs)
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    cells = []
    for row in rows:
        scored = row["eval15_psnr"] is not None and row["eval15_ssim"] is not None
        cells.append({
            "name": ("  " if row["kind"] == "weights" else "") + row["name"] + (" (default)" if row["default"] else ""),
            "kind": row["kind"],
            "scales": ",".join(map(str, row["scales"])),
            "params": format_params(row["params"]),
            "MACs/px": format_macs(row.get("macs_per_px")),
            "weights": row["weights"],
            "lol_eval15": f"{row['eval15_psnr']:.2f} / {row['eval15_ssim']:.3f}" if scored else "-",
            "summary": row["summary"],
        })

    def table(columns: list[str]) -> Table:
        t = Table(title="lowlight models", caption=None if show_all else "test-only *_tiny variants: --all")
        for col in columns:
            t.add_column(col, no_wrap=col != "summary")  # names and figures stay on one line; only the summary wraps
        for c in cells:
            t.add_row(*(c[col] for col in columns))
        return t

    # Piped output has no terminal width to respect (rich assumes 80): give it room for one line per model.
    console = out if out.is_terminal else Console(width=200, soft_wrap=True)
    figures = ["name", "kind", "scales", "params", *(["MACs/px"] if macs else []), "weights", "lol_eval15"]
    if console.measure(table(figures)).maximum + 40 <= console.width:
        console.print(table([*figures, "summary"]))
        return
    # A narrow terminal: the summaries under the table, each beside its name, where they have room to wrap.
    console.print(table(figures))
    notes = Table.grid(padding=(0, 2))
    notes.add_column(no_wrap=True)
    notes.add_column()
    for c in cells:
        notes.add_row(c["name"], c["summary"])
    console.print(notes)


@app.command()
def train(
    model: Annotated[str, typer.Option("--model", "-m", help="Learned model to train (see `lowlight models`).")],
    out_dir: Annotated[Path, typer.Option("--out", help="Run folder: checkpoints, log, config, export.")],
    dataset: Annotated[str, typer.Option("--dataset", help="Paired dataset layout; only lol.")] = "lol",
    data_dir: Annotated[Optional[Path], typer.Option("--data-dir", help="LOL root holding our485/ and scenes.csv.")] = None,
    synthetic: Annotated[Optional[Path], typer.Option("--synthetic", help="Folder of normal-light photos; pairs are synthesized.")] = None,
    steps: Annotated[Optional[int], typer.Option("--steps", help="Optimizer steps (default: the model's recipe). With --resume: only before the first lr milestone.")] = None,
    batch: Annotated[Optional[int], typer.Option("--batch", help="Crops per step and process.")] = None,
    patch: Annotated[Optional[int], typer.Option("--patch", help="Crop side in input pixels.")] = None,
    lr: Annotated[Optional[float], typer.Option("--lr", help="Peak learning rate.")] = None,
    clip_grad: Annotated[Optional[float], typer.Option("--clip-grad", help="Scale gradients down to this total L2 norm; 0 turns clipping off.")] = None,
    warmup: Annotated[int, typer.Option("--warmup", help="Steps over which the learning rate rises linearly from 0 to --lr.")] = 0,
    schedule: Annotated[Optional[str], typer.Option("--schedule", help="step (decays at the recipe's milestones) or cosine (down to lr x gamma).")] = None,
    ema: Annotated[Optional[float], typer.Option("--ema", help="Decay of the weight average that is validated and exported; 0 turns it off.")] = None,
    mix_identity: Annotated[Optional[float], typer.Option("--mix-identity", help="Fraction of each batch that is identity pairs (a normal-light image as its own input).")] = None,
    mix_global: Annotated[Optional[float], typer.Option("--mix-global", help="Fraction darkened by one exposure, from LOL-dark to unchanged.")] = None,
    mix_spatial: Annotated[Optional[float], typer.Option("--mix-spatial", help="Fraction darkened by a spatially varying exposure (lamps, skies stay lit).")] = None,
    view: Annotated[Optional[int], typer.Option("--view", help="Glance models: the glance sees up to N x N px of the picture around each crop, as it sees the whole photo at inference (0: the crop).")] = None,
    photos: Annotated[Optional[Path], typer.Option("--photos", help="Folder of normal-light photos, added to the LOL targets as sources of the mixture's pairs.")] = None,
    lowkey: Annotated[float, typer.Option("--lowkey", help="Share of the identity pairs made low-key from --photos (graded darker, white kept, no noise): dark-toned is not under-exposed.")] = 0.0,
    clean: Annotated[float, typer.Option("--clean", help="Share of the global pairs darkened without sensor noise (a phone's denoised dark photo): its colours come back with its light.")] = 0.0,
    backlit: Annotated[float, typer.Option("--backlit", help="Share of the spatial pairs whose shadow falls on subjects in a lit frame (a backlit portrait): shadow beside light is lifted.")] = 0.0,
    backlit_clean: Annotated[float, typer.Option("--backlit-clean", help="Share of the backlit pairs made without sensor noise (a phone's HDR-processed backlit photo).")] = 0.0,
    targets: Annotated[Optional[Path], typer.Option("--targets", help="Folder with one image per LOL pair, named as it, trained towards instead of its high/ image (a teacher's outputs: distillation); validation still uses high/.")] = None,
    engine: Annotated[str, typer.Option("--engine", help="auto (the fastest this CPU has), fp32, channels_last or bf16 (native-bf16 CPUs).")] = "auto",
    init: Annotated[Optional[Path], typer.Option("--init", help="Start from this weights file (.safetensors: bundled or exported) instead of random weights: fine-tuning.")] = None,
    train_only: Annotated[str, typer.Option("--train-only", help="Train only the parameters whose names start with this (e.g. gate: the exposure gate over --init's frozen network).")] = "",
    seed: Annotated[int, typer.Option("--seed", help="Seed of initialisation and batches.")] = 0,
    val_every: Annotated[int, typer.Option("--val-every", help="Validate every N steps.")] = 250,
    ckpt_every: Annotated[int, typer.Option("--ckpt-every", help="Write last.pt every N steps.")] = 250,
    threads: Annotated[int, typer.Option("--threads", help="Torch CPU threads per process; 0 for the default.")] = 0,
    device: DeviceOpt = "auto",
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out from its last.pt.")] = False,
) -> None:
    """Train a model; the best checkpoint by validation PSNR is exported at the end.

    Examples:

      lowlight train --model msrnet --dataset lol --data-dir ../shared/data/lol --out runs/msrnet-lol

      lowlight train --model msrnet --out runs/msrnet-lol --resume

      lowlight train --model msrnet --synthetic photos/ --out runs/msrnet-syn --steps 5000

      lowlight train --model msrnet --synthetic photos/ --out runs/msrnet-ft --init lowlight_cli/weights/msrnet-lol.safetensors --lr 1e-4

      torchrun --standalone --nproc_per_node 2 -m lowlight_cli.cli train --model msrnet --out runs/ddp
    """
    from .training.config import TrainConfig
    from .training.loop import fit

    fit(TrainConfig(
        model=model, out=out_dir, dataset=dataset, data_dir=data_dir, synthetic=synthetic, steps=steps,
        batch=batch, patch=patch, lr=lr, clip_grad=clip_grad, warmup=warmup, schedule=schedule, ema=ema, mix_identity=mix_identity,
        mix_global=mix_global, mix_spatial=mix_spatial, view=view, photos=photos, targets=targets, lowkey=lowkey, clean=clean, backlit=backlit, backlit_clean=backlit_clean, engine=engine, init=init, train_only=train_only, seed=seed, val_every=val_every, ckpt_every=ckpt_every,
        threads=threads, device=device, resume=resume,
    ))


@app.command("export")
def export_cmd(
    source: Annotated[str, typer.Argument(metavar="SOURCE", show_default=False,
        help="A run folder written by `lowlight train` (any folder is read as one), or with --onnx a model name (mirnet, neid.lol) or .safetensors file.")],
    onnx: Annotated[Optional[Path], typer.Option("--onnx", help="Also (for a model: only) write the model as a dynamic-size ONNX graph to this file.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --onnx file.")] = False,
) -> None:
    """Export a training run's best weights as safetensors (printing its sha256 and a weights.toml entry),
    and/or a model as an ONNX graph for other runtimes.

    RUN_DIR: writes RUN_DIR/export/<model>-<data>.safetensors from best.pt; with --onnx, that file as an
    ONNX graph too. MODEL: --onnx only. The graph is one untiled pass of the whole image: any height and
    width (at least the model's size multiple; it pads inside), batch dynamic, output not clamped.
    Tens of seconds per model.

    Examples:

      lowlight export runs/msrnet-lol

      lowlight export mirnet --onnx mirnet.onnx

      lowlight export neid.lol --onnx neid-x2.onnx

      lowlight export runs/mirnet-exp/export/mirnet-mix.safetensors --onnx mirnet-exp.onnx
    """
    from .errors import UsageError

    if onnx is not None:
        from .onnx_graph import check_output, require

        require("onnx", "onnxscript")
        check_output(onnx, overwrite=overwrite)  # before a run's export or a model's loading
    if Path(source).is_dir():
        from .training.checkpoints import export

        path, sha, toml = export(Path(source))
        out.print(f"exported {path}\nsha256 {sha}\n\n{toml}", highlight=False, markup=False)
        source = str(path)
    elif onnx is None:
        raise UsageError(f"{source} is not a run folder",
                         "give a folder written by `lowlight train`, or add --onnx FILE to export a model as an ONNX graph")
    if onnx is not None:
        from .onnx_graph import export_onnx
        from .weights import load_named

        spec, net, label = load_named(source)
        err.print(f"exporting {label} to ONNX (torch.export traces it: tens of seconds)", highlight=False, markup=False)
        graph = export_onnx(spec, net, onnx, label=label, overwrite=overwrite)
        out.print(f"exported {graph.path} ({label}, {graph.seconds:.0f} s)\n{graph.describe()}", highlight=False, markup=False)


# Options of the commands that score models on paired data.
DatasetOpt = Annotated[str, typer.Option("--dataset", help="Paired dataset; only lol (any folder in its layout via --data-dir).")]
DataDirOpt = Annotated[Optional[Path], typer.Option("--data-dir", help="Dataset root holding <split>/low and <split>/high.")]
SplitOpt = Annotated[str, typer.Option("--split", help="eval15 (the reported test split), our485, or val (our485's held-out scene groups, as training holds them out).")]
MethodsHelp = "Comma-separated models/baselines (default: every baseline and every learned model with weights)."
ScoreScaleOpt = Annotated[Optional[int], typer.Option("--scale", help="Output scale; scores need the target's size, so 1 by default.")]


def _names(text: str | None) -> list[str]:
    from .evaluate import default_models

    return default_models() if text is None else [n.strip() for n in text.split(",") if n.strip()]


SCORE_FORMATS = {"psnr": "{:.2f}", "ssim": "{:.3f}", "psnr_gtmean": "{:.2f}", "ssim_gtmean": "{:.3f}"}


def _scores_table(title: str, rows: list[dict]) -> Table:
    """Model, the four scores and seconds per image; "-" where a row has no score, and no score columns
    at all when no row has one (``compare`` without ``--ref``)."""
    scored = any(k in row for row in rows for k in SCORE_FORMATS)
    headers = ("PSNR", "SSIM", "PSNR GT-mean", "SSIM GT-mean") if scored else ()
    table = Table(title=title)
    for col in ("model", *headers, "s/img"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for row in rows:
        cells = [SCORE_FORMATS[k].format(row[k]) if k in row else "-" for k in SCORE_FORMATS] if scored else []
        table.add_row(row["model"], *cells, f"{row['seconds']:.3f}")
    return table


def _print_protocol(dataset_line: str | None = None) -> None:
    """The lines that say what the scores below mean, unwrapped so that they can be grepped and quoted."""
    from .metrics import PROTOCOL

    for line in ([dataset_line] if dataset_line else []) + [f"Protocol: {PROTOCOL}"]:
        out.print(line, highlight=False, markup=False, soft_wrap=True)


def _print_result(dataset: str, result) -> None:
    split = result.split_dir.name
    _print_protocol(f"Dataset: {dataset} {split} ({result.split_dir}), {result.pairs} pairs")
    title = f"{dataset} {split}, {result.pairs} pairs: PSNR (dB) / SSIM on RGB, plain and GT-mean"
    out.print(_scores_table(title, result.summary))


def _progress(bar: Progress, description: str):
    task = bar.add_task(description, total=None)
    return lambda done, total: bar.update(task, completed=done, total=total)


@app.command("eval")
def eval_models(
    dataset: DatasetOpt = "lol",
    data_dir: DataDirOpt = None,
    split: SplitOpt = "eval15",
    model: Annotated[Optional[str], typer.Option("--model", "-m", help=MethodsHelp + " A .safetensors file counts as a model.")] = None,
    paired: Annotated[Optional[tuple[str, str]], typer.Option("--paired", help="A B: per-image PSNR differences B - A, their mean, standard error and 95 % interval (models or .safetensors files).")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write per-image rows: .csv or .json.")] = None,
    overwrite: OverwriteOpt = False,
    limit: Annotated[Optional[int], typer.Option("--limit", help="Only the first N pairs.")] = None,
    device: DeviceOpt = "auto",
    tile: TileOpt = 0,
    memory: MemoryOpt = None,
    threads: ThreadsOpt = 0,
    backend: BackendOpt = None,
    overlap: OverlapOpt = None,
    precision: PrecisionOpt = "fp32",
    scale: ScoreScaleOpt = None,
    max_pixels: MaxPixelsOpt = 200_000_000,
    as_json: JsonOpt = False,
) -> None:
    """Score models on a paired dataset: PSNR and SSIM, plain and GT-mean, and seconds per image.

    The protocol is printed with the table. Never choose a model or setting by its eval15 score.

    Examples:

      lowlight eval --dataset lol --data-dir ../shared/data/lol --split eval15

      lowlight eval --model clahe,msrcr,msrnet --output rows.csv

      lowlight eval --model msrnet --limit 5 --device cuda --json

      lowlight eval --split our485 --paired mirnet runs/mirnet-exp/export/mirnet-mix.safetensors
    """
    from .batch import check_not_there
    from .errors import UsageError
    from .evaluate import check_rows_path, evaluate, paired_stats, resolve_dataset, write_rows
    from .images import check_writable_folder

    options = run_options(device, tile, overlap, precision, scale, memory=memory, threads=threads, backend=backend)
    if paired is not None and model is not None:
        raise UsageError("--paired names its two models itself", "drop --model")
    if output is not None:
        check_rows_path(output)
        check_not_there(output, overwrite=overwrite)
        check_writable_folder(output.parent)
    split_dir = resolve_dataset(dataset, data_dir, split)
    names = list(paired) if paired is not None else _names(model)
    with progress_bar() as bar:
        result = evaluate(names, split_dir, options, limit=limit, progress=_progress(bar, "eval"), max_pixels=max_pixels)
    if output is not None:
        write_rows(output, result.rows)
    if paired is not None:
        a, b = (s["model"] for s in result.summary)
        stats = paired_stats(result.rows, a, b)
        if as_json:
            print(json.dumps(stats, indent=2))
            return
        _print_protocol(f"Dataset: {dataset} {split_dir.name} ({split_dir}), {stats['images']} pairs; paired plain PSNR, B - A")
        out.print(f"A {a}: {stats['mean_a']:.3f} dB   B {b}: {stats['mean_b']:.3f} dB", highlight=False, markup=False)
        lo, hi = stats["ci95"]
        out.print(f"B - A: {stats['mean_diff']:+.3f} dB, sd {stats['sd']:.3f}, standard error {stats['se']:.3f}, "
                  f"95 % interval [{lo:+.3f}, {hi:+.3f}]; B better on {stats['b_wins']} of {stats['images']} images",
                  highlight=False, markup=False)
        verdict = "B is better" if lo > 0 else "A is better" if hi < 0 else "no difference resolved (the interval holds 0)"
        out.print(verdict, highlight=False, markup=False)
        return
    if as_json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        _print_result(dataset, result)


@app.command()
def compare(
    input_path: Annotated[Optional[Path], typer.Argument(help="Image to enhance with every method.", show_default=False)] = None,
    methods: Annotated[Optional[str], typer.Option("--methods", help=MethodsHelp)] = None,
    ref: Annotated[Optional[Path], typer.Option("--ref", help="Reference (well-exposed) image: adds PSNR/SSIM.")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Grid image (INPUT; default <stem>_compare.png beside it, which folder runs leave out) or folder (--dataset).")] = None,
    overwrite: OverwriteOpt = False,
    dataset: Annotated[Optional[str], typer.Option("--dataset", help="Compare on a paired dataset instead of one image: lol.")] = None,
    data_dir: DataDirOpt = None,
    split: SplitOpt = "eval15",
    grids: Annotated[int, typer.Option("--grids", help="With --dataset: grids for this many pairs.")] = 3,
    panel: Annotated[int, typer.Option("--panel", min=16, help="Width of each picture in the grid, pixels (the first; the others keep its height). Wider shows noise and detail.")] = 320,
    device: DeviceOpt = "auto",
    tile: TileOpt = 0,
    memory: MemoryOpt = None,
    threads: ThreadsOpt = 0,
    backend: BackendOpt = None,
    overlap: OverlapOpt = None,
    precision: PrecisionOpt = "fp32",
    scale: ScoreScaleOpt = None,
    strength: StrengthOpt = 1.0,
    max_pixels: MaxPixelsOpt = 200_000_000,
    as_json: JsonOpt = False,
) -> None:
    """Show methods side by side in a captioned grid; with a reference, score them too.

    Examples:

      lowlight compare dark.jpg --methods clahe,msrcr,msrnet          # writes dark_compare.png

      lowlight compare dark.png --ref bright.png --methods he,msrcr -o grid.png --panel 800

      lowlight compare --dataset lol --data-dir ../shared/data/lol --methods clahe,msrcr -o cmp/
    """
    from .batch import GRID_TAG, Job, check_outputs
    from .errors import OutputError, UsageError
    from .evaluate import compare_dataset, compare_image, grid_pairs, json_ready, resolve_dataset, save_grid

    if (input_path is None) == (dataset is None):
        raise UsageError("give either an INPUT image or --dataset", "e.g. lowlight compare dark.jpg --methods clahe,msrcr")
    if dataset is not None and ref is not None:
        raise UsageError("--ref goes with an INPUT image; a dataset brings its own references", "drop --ref")
    options = run_options(device, tile, overlap, precision, scale, strength, memory, threads, backend)
    names = _names(methods)
    if input_path is not None:
        name = f"{input_path.stem}{GRID_TAG}.png"
        target = input_path.with_name(name) if output is None else output / name if output.is_dir() else output
        for source in (input_path, ref):
            if source is not None and target.exists() and target.resolve() == source.resolve():
                raise OutputError(f"output {target} would overwrite the input {source}", "choose another -o")
        check_outputs([Job(input_path, target, explicit=True)], overwrite=overwrite)
        with progress_bar() as bar:
            grid, rows = compare_image(input_path, names, ref, options, progress=_progress(bar, "compare"), max_pixels=max_pixels,
                                       panel=panel)
        save_grid(target, grid)
        if as_json:
            print(json.dumps({"output": str(target), "models": json_ready(rows)}, indent=2))
            return
        if ref is not None:
            _print_protocol()
        title = f"against {ref}: PSNR (dB) / SSIM on RGB, plain and GT-mean" if ref else str(input_path)
        out.print(_scores_table(title, rows))
        out.print(f"grid: {target}", highlight=False, markup=False)
        return
    split_dir = resolve_dataset(dataset, data_dir, split)
    folder = output or Path(f"compare_{dataset}_{split}")
    jobs = {pair.stem: Job(pair.low, folder / f"{pair.stem}{GRID_TAG}.png", explicit=True) for pair in grid_pairs(split_dir, grids)}
    check_outputs(list(jobs.values()), overwrite=overwrite)
    with progress_bar() as bar:
        result, images = compare_dataset(names, split_dir, options, n_grids=grids, progress=_progress(bar, "compare"),
                                         max_pixels=max_pixels, panel=panel)
    paths = []
    for stem, grid in images.items():
        paths.append(jobs[stem].dst)
        save_grid(paths[-1], grid)
    if as_json:
        print(json.dumps(result.to_dict() | {"grids": [str(p) for p in paths]}, indent=2))
        return
    _print_result(dataset, result)
    for path in paths:
        out.print(f"grid: {path}", highlight=False, markup=False)


class Interrupted(BaseException):
    """Ctrl-C (SIGINT) while a command runs."""


def _interrupt(signum, frame) -> None:
    raise Interrupted


class _LineHandler(logging.Handler):
    """``LEVEL: message`` on stderr, never wrapped, for logs and pipes."""

    def emit(self, record: logging.LogRecord) -> None:
        err.print(f"{record.levelname}: {self.format(record)}", highlight=False, markup=False, soft_wrap=True)


def main() -> None:
    debug = bool(os.environ.get("LOWLIGHT_DEBUG"))
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO, format="%(message)s",
        # Off a terminal, one whole line per record: RichHandler lays records out in an 80-column table.
        handlers=[RichHandler(console=err, show_time=False, show_path=False) if err.is_terminal else _LineHandler()],
    )
    # Ctrl-C as an exception click does not catch (it turns KeyboardInterrupt into a silent exit 130);
    # it unwinds through every finally, so no temporary output file is left behind.
    signal.signal(signal.SIGINT, _interrupt)
    try:
        app()
    except Interrupted:
        err.print("Interrupted.", highlight=False)
        sys.exit(130)
    except LowlightError as e:
        if debug:
            raise
        err.print(f"Error: {e.message}", highlight=False, markup=False)
        if e.hint:
            err.print(f"Hint: {e.hint}", highlight=False, markup=False)
        sys.exit(e.exit_code)


if __name__ == "__main__":
    main()
