"""Turning ``enhance`` arguments into (input, output) jobs, and running one job."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from .errors import InputImageError, OutputError, UsageError
from .images import READ_SUFFIXES, check_output, output_suffix, read_image, write_image
from .inference import Enhancer
from .tiling import Progress


@dataclass(frozen=True)
class Job:
    src: Path
    dst: Path


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"2/8"`` -> ``(2, 8)``: the second of eight slices (1-based, so ``N/N`` is the last)."""
    if text is None:
        return None
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise UsageError(f"--shard {text!r} is not K/N", "e.g. --shard 1/4 ... --shard 4/4") from None
    if not 1 <= k <= n:
        raise UsageError(f"--shard {text}: K must be between 1 and N", "e.g. --shard 1/4 ... --shard 4/4")
    return k, n


def _files_in(folder: Path, recursive: bool) -> list[Path]:
    """Files in ``folder`` (and its sub-folders), leaving out hidden files and folders: dot-files such as
    write_image's own temporaries, .DS_Store, ._ resource forks, .git."""
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(
        p for p in found if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def _images_in(folder: Path, recursive: bool) -> list[Path]:
    return [p for p in _files_in(folder, recursive) if p.suffix.lower() in READ_SUFFIXES]


def files_not_read(inputs: list[Path], recursive: bool) -> list[Path]:
    """Files in the folder inputs that are not images lowlight reads (notes.txt, .xmp sidecars), so a run
    can list them instead of passing over them in silence."""
    return [
        p for item in inputs if item.is_dir() for p in _files_in(item, recursive)
        if p.suffix.lower() not in READ_SUFFIXES
    ]


def collect(inputs: list[Path], recursive: bool) -> list[tuple[Path, Path]]:
    """Every input image as ``(path, path relative to its output folder)``.

    Files given directly land at the top of the output folder; images found in a folder keep their
    sub-folders. Raises for a missing path or a folder holding no image.
    """
    found: list[tuple[Path, Path]] = []
    for item in inputs:
        if item.is_dir():
            images = _images_in(item, recursive)
            if not images:
                has_subfolders = any(p.is_dir() for p in item.iterdir())
                hint = ("add --recursive to look in sub-folders" if has_subfolders and not recursive
                        else "supported: " + " ".join(READ_SUFFIXES))
                raise InputImageError(f"no images in folder {item}", hint)
            found += [(p, p.relative_to(item)) for p in images]
        elif item.exists():
            found.append((item, Path(item.name)))
        else:
            raise InputImageError(f"no such file or folder: {item}", "check the path")
    return found


def default_output_name(src: Path, label: str, scale: int) -> str:
    """``<stem>_<label>[_x<scale>]<suffix>``, the suffix from ``images.output_suffix``: the input's own, or
    ``.tif`` for RAW, or PNG for an image under a suffix we do not write (renamed ``.dat``, say)."""
    tag = label.replace(".", "-") + (f"_x{scale}" if scale != 1 else "")
    return f"{src.stem}_{tag}{output_suffix(src)}"


def plan(
    inputs: list[Path],
    output: Path | None,
    *,
    label: str,
    scale: int,
    recursive: bool = False,
    shard: tuple[int, int] | None = None,
) -> list[Job]:
    """Map inputs to outputs.

    One input file: ``output`` is the file to write (default ``<stem>_<model><suffix>`` beside the
    input; an existing folder means "inside it"). Otherwise ``output`` is a folder (default
    ``./lowlight_<model>``) mirroring the inputs' sub-folders, each output in its input's format where
    lowlight writes it (RAW becomes TIFF). ``shard=(k, n)`` keeps every n-th job of the sorted list starting
    at the k-th, so n machines given k = 1..n share the work exactly. Every output's format is checked
    here, before any work (``-o out.dng`` is refused).
    """
    found = collect(inputs, recursive)
    single = len(inputs) == 1 and not inputs[0].is_dir()
    if single:
        src = found[0][0]
        if output is None:
            dst = src.with_name(default_output_name(src, label, scale))
        elif output.is_dir():
            dst = output / default_output_name(src, label, scale)
        else:
            dst = output
        jobs = [Job(src, dst)]
    else:
        root = output if output is not None else Path(f"lowlight_{label.replace('.', '-')}")
        if root.exists() and not root.is_dir():
            raise OutputError(f"{root} is a file, but several inputs need an output folder", "pass -o FOLDER")
        jobs = [Job(src, root / rel.with_suffix(output_suffix(src))) for src, rel in found]
    sources = {j.src.resolve() for j in jobs}
    seen: dict[Path, Path] = {}
    for job in jobs:
        check_output(job.dst)
        dst = job.dst.resolve()
        if dst in sources:
            raise OutputError(f"output {job.dst} would overwrite an input", "choose another -o")
        if dst in seen:
            raise OutputError(f"{seen[dst]} and {job.src} would both be written to {job.dst}", "give them separate runs or folders")
        seen[dst] = job.src
    jobs.sort(key=lambda j: str(j.src))
    if shard is not None:
        k, n = shard
        jobs = jobs[k - 1 :: n]
    return jobs


def run_job(enhancer: Enhancer, job: Job, progress: Progress | None = None) -> float:
    """Read, enhance, write atomically; returns seconds spent. The input is only ever read."""
    start = time.perf_counter()
    picture = read_image(job.src)
    rgb = enhancer(picture.rgb, progress)
    try:
        job.dst.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create output folder {job.dst.parent}: {e.strerror}", "check permissions or choose another -o") from None
    write_image(job.dst, picture.with_rgb(rgb))
    return time.perf_counter() - start
