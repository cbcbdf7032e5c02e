"""The ``lowlight`` command line: parse, call one library function, print.

Results go to stdout (``--json`` for machines), progress and logs to stderr. Library errors become one
``Error: ...`` line plus a hint and a non-zero exit; ``LOWLIGHT_DEBUG=1`` shows the traceback.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from .errors import LowlightError

app = typer.Typer(
    help="Turn dark photos into well-exposed ones.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
out = Console()
err = Console(stderr=True)

# Options shared by several commands, defined once.
ModelOpt = Annotated[Optional[str], typer.Option("--model", "-m", help="Model or baseline name (see `lowlight models`).")]
WeightsOpt = Annotated[Optional[Path], typer.Option("--weights", help="Explicit .safetensors file for a learned model.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")]
TileOpt = Annotated[int, typer.Option("--tile", help="Tile side in pixels; 0 picks one from free memory.")]
OverlapOpt = Annotated[Optional[int], typer.Option("--overlap", help="Pixels shared by neighbouring tiles (default: the model's).")]
PrecisionOpt = Annotated[str, typer.Option("--precision", help="fp32, or fp16/bf16 on CUDA (falls back to fp32 on NaN/inf).")]
ScaleOpt = Annotated[Optional[int], typer.Option("--scale", help="Output scale (default: the model's native scale).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]


def run_options(device: str, tile: int, overlap: int | None, precision: str, scale: int | None):
    from .errors import UsageError
    from .inference import DTYPES, RunOptions

    if precision not in DTYPES:
        raise UsageError(f"unknown precision {precision!r}", "use fp32, fp16 or bf16")
    return RunOptions(device=device, tile=tile, overlap=overlap, precision=precision, scale=scale)


def progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=err, transient=True,
    )


@app.command()
def enhance(
    inputs: Annotated[list[Path], typer.Argument(help="Image files and/or folders.", show_default=False)],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Output file (one input) or folder.")] = None,
    model: ModelOpt = None,
    weights: WeightsOpt = None,
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Look into sub-folders of folder inputs.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Redo outputs that already exist.")] = False,
    shard: Annotated[Optional[str], typer.Option("--shard", help="K/N: process only the K-th of N slices (1-based).")] = None,
    device: DeviceOpt = "auto",
    tile: TileOpt = 0,
    overlap: OverlapOpt = None,
    precision: PrecisionOpt = "fp32",
    scale: ScaleOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Enhance photos. Existing outputs are skipped, so an interrupted batch can simply be re-run.

    Examples:

      lowlight enhance dark.jpg                      # writes dark_<model>.jpg beside it

      lowlight enhance shots/ -r -o bright/ --model msrcr

      lowlight enhance big.tif --model neid --scale 2 --tile 512 --device cuda

      lowlight enhance photos/ -o out/ --shard 3/8   # the 3rd of 8 machines
    """
    from . import batch
    from .inference import default_model_name, load_enhancer

    options = run_options(device, tile, overlap, precision, scale)
    enhancer = load_enhancer(model or default_model_name(), weights=weights, options=options)
    jobs = batch.plan(inputs, output, label=enhancer.label, scale=enhancer.scale,
                      recursive=recursive, shard=batch.parse_shard(shard))
    failures: list[tuple[Path, str]] = []
    with progress_bar() as bar:
        files = bar.add_task("images", total=len(jobs))
        tiles = bar.add_task("tiles", total=None, visible=False)

        def on_tile(done: int, total: int) -> None:
            bar.update(tiles, completed=done, total=total, visible=total > 1)

        for job in jobs:
            record = {"input": str(job.src), "output": str(job.dst), "model": enhancer.label}
            if job.dst.exists() and not overwrite:
                record |= {"seconds": 0.0, "status": "skipped"}
            else:
                try:
                    seconds = batch.run_job(enhancer, job, on_tile)
                    record |= {"seconds": round(seconds, 3), "status": "ok"}
                except LowlightError as e:
                    failures.append((job.src, e.message))
                    record |= {"seconds": 0.0, "status": "failed", "error": e.message}
            bar.update(tiles, visible=False)
            bar.advance(files)
            if as_json:
                print(json.dumps(record), flush=True)
            else:
                out.print(f"{record['status']:>7}  {job.src} -> {job.dst}", highlight=False)
    if failures:
        err.print(f"[red]{len(failures)} of {len(jobs)} failed:[/red]")
        for src, msg in failures:
            err.print(f"  {src}: {msg}", highlight=False, markup=False)
        raise typer.Exit(1)


@app.command()
def models(as_json: JsonOpt = False) -> None:
    """List every model and baseline: kind, scales, parameters, weights, LOL eval15 score."""
    from .evaluate import model_rows

    rows = model_rows()
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title="lowlight models")
    for col in rows[0]:
        table.add_column(col)
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row.values()))
    out.print(table)


def main() -> None:
    debug = bool(os.environ.get("LOWLIGHT_DEBUG"))
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO, format="%(message)s",
        handlers=[RichHandler(console=err, show_time=False, show_path=False)],
    )
    try:
        app()
    except LowlightError as e:
        if debug:
            raise
        err.print(f"Error: {e.message}", highlight=False, markup=False)
        if e.hint:
            err.print(f"Hint: {e.hint}", highlight=False, markup=False)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        err.print("Interrupted.")
        sys.exit(130)


if __name__ == "__main__":
    main()
