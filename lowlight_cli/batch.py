"""Turning ``enhance`` arguments into (input, output) jobs, checking every output before any work, and
running one job: an image (``images.py``) or a video (``video.py``)."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import claims, registry, video
from .errors import InputImageError, LowlightError, OutputError, UsageError
from .images import (
    DEFAULT_MAX_PIXELS, READ_SUFFIXES, WRITE_SUFFIXES, check_output, check_writable_folder, output_suffix, read_image,
    write_image,
)

if TYPE_CHECKING:
    from .inference import Enhancer
    from .tiling import Progress

log = logging.getLogger("lowlight")

INPUT_SUFFIXES = (*READ_SUFFIXES, *video.READ_SUFFIXES)  # what folder runs pick up
GRID_TAG = "_compare"  # `lowlight compare X.jpg` writes X_compare.png beside X.jpg; folder walks leave it out
EXTS = ("auto", *(suffix[1:] for suffix in (*WRITE_SUFFIXES, *video.WRITE_SUFFIXES)))


@dataclass(frozen=True)
class Job:
    """One input and its output; ``explicit``: the output was named by ``-o FILE``."""

    src: Path
    dst: Path
    explicit: bool = False


@dataclass(frozen=True, kw_only=True)
class Naming:
    """How outputs are named, the same way for one file and for folders: ``<stem><tag><ext>``.

    ``tag`` is ``--suffix``, by default ``_<label>[_x<scale>]``; ``ext`` is ``"auto"`` (an image's
    suffix where lowlight writes that format, see ``images.output_suffix``; ``.mp4`` for a video) or a
    suffix we write, dot included. ``label``: the model's (see :func:`model_label`); :attr:`folder` is the output folder of
    several inputs when no ``-o`` is given. ``custom``: ``--suffix`` or ``--ext`` was given (an explicit
    ``-o FILE`` then contradicts it).
    """

    label: str
    tag: str
    ext: str = "auto"
    custom: bool = False

    @property
    def folder(self) -> str:
        return f"lowlight_{self.label.replace('.', '-')}"

    def name(self, src: Path) -> str:
        if self.ext != "auto":
            return f"{src.stem}{self.tag}{self.ext}"
        return f"{src.stem}{self.tag}{video.DEFAULT_SUFFIX if video.is_video(src) else output_suffix(src)}"


def model_label(name: str, weights: Path | None = None) -> str:
    """The label :func:`inference.load_enhancer` gives model ``name`` (the weights entry's ``arch.tag``,
    else the arch), found without loading anything, so that outputs are named and checked first."""
    spec = registry.get(name)
    if spec.kind == "baseline" or weights is not None:
        return spec.name
    from .weights import entry_for

    entry = entry_for(name)
    return spec.name if entry is None else entry.name


def naming(model: str, weights: Path | None = None, *, scale: int | None = None,
           suffix: str | None = None, ext: str = "auto") -> Naming:
    """The :class:`Naming` of ``--model``, ``--weights``, ``--scale``, ``--suffix`` and ``--ext``.

    UsageError for an extension we do not write or a suffix holding a path separator.
    """
    ext = ext.lower().removeprefix(".")
    if ext not in EXTS:
        raise UsageError(f"--ext {ext} is not a format we write", f"use one of {', '.join(EXTS)}")
    if suffix is not None and ("/" in suffix or os.sep in suffix):
        raise UsageError(f"--suffix {suffix!r} holds a path separator", "--suffix is text after the file's stem; -o picks the folder")
    label = model_label(model, weights)
    scale = scale or registry.get(model).scale
    tag = suffix if suffix is not None else "_" + label.replace(".", "-") + (f"_x{scale}" if scale != 1 else "")
    return Naming(label=label, tag=tag, ext="auto" if ext == "auto" else f".{ext}", custom=suffix is not None or ext != "auto")


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


def _files_in(folder: Path, recursive: bool, skip: Path | None = None) -> list[Path]:
    """Files in ``folder`` (and its sub-folders), leaving out hidden files and folders (dot-files such as
    write_image's own temporaries and the claim files, .DS_Store, ._ resource forks, .git) and the folder
    ``skip`` (the output folder, when it lies inside ``folder``)."""
    if recursive:
        found = []
        for here, dirs, files in os.walk(folder):
            dirs[:] = [d for d in dirs if not d.startswith(".") and (skip is None or (Path(here) / d).resolve() != skip)]
            found += [Path(here) / f for f in files]
    else:
        found = list(folder.iterdir())
    return sorted(p for p in found if p.is_file() and not p.name.startswith("."))


def _inputs_in(folder: Path, recursive: bool, skip: Path | None) -> list[Path]:
    return [p for p in _files_in(folder, recursive, skip) if p.suffix.lower() in INPUT_SUFFIXES]


def files_not_read(inputs: list[Path], recursive: bool) -> list[Path]:
    """Files in the folder inputs that are not images or videos lowlight reads (notes.txt, .xmp sidecars),
    so a run can list them instead of passing over them in silence."""
    return [
        p for item in inputs if item.is_dir() for p in _files_in(item, recursive)
        if p.suffix.lower() not in INPUT_SUFFIXES
    ]


def _earlier_outputs(images: list[Path], tag: str) -> set[Path]:
    """The images named as this run, or ``lowlight compare`` (:data:`GRID_TAG`), names the output of
    another image of the same folder: ``<stem><tag>.<any image suffix>`` beside ``<stem>.<any>``, i.e.
    what a run like this one or a comparison of that image wrote."""
    stems = {(p.parent, p.stem) for p in images}
    return {
        p for p in images for t in {tag, GRID_TAG} - {""}
        if p.stem.endswith(t) and (p.parent, p.stem[: -len(t)]) in stems
    }


def collect(inputs: list[Path], recursive: bool, *, skip: Path | None = None, tag: str = "") -> list[tuple[Path, Path]]:
    """Every input image and video as ``(path, path relative to its output folder)``.

    Files given directly are always inputs and land at the top of the output folder. Images found in a
    folder keep their sub-folders; the walk leaves out hidden files, the folder ``skip`` (the output
    folder, when it lies inside an input folder) and the outputs this naming or ``lowlight compare``
    gives images beside them (see :func:`_earlier_outputs`), so that a re-run does not take its own
    outputs as inputs. Raises for
    a missing path or a folder holding no image or video.
    """
    found: list[tuple[Path, Path]] = []
    for item in inputs:
        if item.is_dir():
            images = _inputs_in(item, recursive, skip)
            earlier = _earlier_outputs(images, tag)
            if earlier:
                log.info("left out %d image(s) in %s named as outputs of this run (*%s.*) or comparison grids (*%s.*), e.g. %s",
                         len(earlier), item, tag, GRID_TAG, min(earlier))
            images = [p for p in images if p not in earlier]
            if not images:
                has_subfolders = any(p.is_dir() for p in item.iterdir())
                hint = ("add --recursive to look in sub-folders" if has_subfolders and not recursive
                        else "supported: " + " ".join(INPUT_SUFFIXES))
                raise InputImageError(f"no images or videos in folder {item}", hint)
            found += [(p, p.relative_to(item)) for p in images]
        elif item.exists():
            found.append((item, Path(item.name)))
        else:
            raise InputImageError(f"no such file or folder: {item}", "check the path")
    return found


def plan(
    inputs: list[Path],
    output: str | None,
    naming: Naming,
    *,
    recursive: bool = False,
    shard: tuple[int, int] | None = None,
) -> list[Job]:
    """Map inputs to outputs.

    ``output`` is ``-o`` as typed: a trailing ``/`` says "a folder", which ``Path`` would drop. One input
    file: ``output`` is the file to write (default: named by ``naming`` beside the input); a folder
    (existing, or ending in ``/``) means "inside it". Otherwise ``output`` is a folder (default
    ``naming.folder``) mirroring the inputs' sub-folders. Every output is named by ``naming`` (each in its
    input's format where lowlight writes it; RAW becomes TIFF) except an explicit ``-o FILE``.
    ``shard=(k, n)`` keeps every n-th job of the sorted list starting at the k-th, so n machines given
    k = 1..n share the work exactly. Formats and folders are checked by :func:`check_outputs`.
    """
    target = None if output is None else Path(output)
    as_folder = target is not None and (output.endswith(("/", os.sep)) or target.is_dir())
    if len(inputs) == 1 and not inputs[0].is_dir():
        ((src, _),) = collect(inputs, recursive)
        if target is None:
            jobs = [Job(src, src.with_name(naming.name(src)))]
        elif as_folder:
            jobs = [Job(src, target / naming.name(src))]
        elif naming.custom:
            raise UsageError(f"-o {output} names the output file itself; --suffix and --ext name outputs in a folder",
                             f"drop --suffix/--ext, or pass a folder: -o {output}/")
        else:
            jobs = [Job(src, target, explicit=True)]
    else:
        root = target if target is not None else Path(naming.folder)
        if root.exists() and not root.is_dir():
            raise OutputError(f"{root} is a file, but several inputs need an output folder", "pass -o FOLDER")
        if not as_folder and root.suffix.lower() in INPUT_SUFFIXES:
            # A made folder named like a photo would surprise the script that asked for one file.
            raise UsageError(f"-o {output} names one file, but a folder or several inputs need an output folder",
                             f"pass a folder: -o {root.with_suffix('')}/ (a trailing / makes it), or one input file")
        found = collect(inputs, recursive, skip=root.resolve(), tag=naming.tag)
        jobs = [Job(src, root / rel.parent / naming.name(src)) for src, rel in found]
    sources = {j.src.resolve() for j in jobs}
    seen: dict[Path, Path] = {}
    for job in jobs:
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


def check_outputs(jobs: list[Job], *, overwrite: bool = False) -> None:
    """Raise OutputError for the first problem an output would meet, before any image is enhanced (each
    used to cost a whole enhancement first): a suffix we do not write (``images.check_output``: RAW, a
    codec not installed; ``video.check_output`` for videos), an output named by ``-o FILE``
    that exists (without ``--overwrite``), a folder that cannot be made or written. Creates nothing
    (one probe file per folder, removed at once)."""
    for job in jobs:
        (video.check_output if video.is_video(job.src) else check_output)(job.dst)
        if job.explicit:
            check_not_there(job.dst, overwrite=overwrite)
    for folder in sorted({job.dst.parent for job in jobs if overwrite or not job.dst.exists()}):
        check_writable_folder(folder)


def check_not_there(path: Path, *, overwrite: bool = False) -> None:
    """OutputError if ``path`` exists and ``overwrite`` is not given: an output a command line named, or
    that ``compare`` and ``eval`` write, is never replaced unasked."""
    if path.exists() and not overwrite:
        raise OutputError(f"{path} exists and was not overwritten", "add --overwrite to replace it, or choose another -o")


@dataclass(frozen=True)
class Outcome:
    """What became of one job. ``status``: ``ok``; ``skipped`` (the output exists); ``claimed`` (another
    live process is writing it: ``holder`` says which); ``failed`` (``error``)."""

    status: str
    seconds: float = 0.0
    error: LowlightError | None = None
    holder: str | None = None


def process(enhancer: Enhancer, job: Job, *, overwrite: bool = False, quality: int | None = None,
            crf: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS, progress: Progress | None = None) -> Outcome:
    """Run one job of a batch, unless its output exists or another process has claimed it
    (:mod:`claims`). A LowlightError (an image over ``max_pixels`` included) is the job's ``failed``
    outcome, so the batch goes on."""
    if job.dst.exists() and not overwrite:
        return Outcome("skipped")
    try:
        try:
            job.dst.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"cannot create output folder {job.dst.parent}: {e.strerror}", "check permissions or choose another -o") from None
        with claims.acquire(job.dst):
            if job.dst.exists() and not overwrite:  # another process finished it meanwhile
                return Outcome("skipped")
            return Outcome("ok", run_job(enhancer, job, progress, quality=quality, crf=crf, max_pixels=max_pixels))
    except claims.Busy as busy:
        return Outcome("claimed", holder=busy.holder)
    except LowlightError as e:
        return Outcome("failed", error=e)


def run_job(enhancer: Enhancer, job: Job, progress: Progress | None = None, *, quality: int | None = None,
            crf: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS) -> float:
    """Read, enhance, write atomically; returns seconds spent. The input is only ever read. ``progress``
    counts an image's tiles, a video's frames; ``quality`` is an image's, ``crf`` a video's; an image or
    a video frame over ``max_pixels`` is refused from its header."""
    if video.is_video(job.src):
        return video.enhance_video(enhancer, job.src, job.dst, crf=crf, max_pixels=max_pixels, progress=progress).seconds
    start = time.perf_counter()
    picture = enhancer.enhance_picture(read_image(job.src, max_pixels=max_pixels), progress)
    write_image(job.dst, picture, quality=quality)
    return time.perf_counter() - start
