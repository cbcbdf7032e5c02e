"""Video: every frame through the one engine (:class:`inference.Enhancer`), read and written with PyAV (FFmpeg).

Kept from the input: the size (times the model's scale), every frame's timestamp (``pts`` in the input's
time base, so variable frame rates stay as they were), the frame rate, the display matrix (rotation and
mirroring, applied by players as before), the pixel aspect ratio, colour tags and range, the container's
metadata (creation time, ...), and every audio track, copied packet by packet, not re-encoded. Subtitle
and data tracks are not carried. The video is H.264 (libx264) at ``crf`` in yuv420p, 8 bits.

Temporal stability: a model whose spec says ``tile_safe=False`` pools whole-frame statistics
(:class:`context.GlobalMean`); measured frame by frame, they follow each frame's noise, and a static
scene flickers. Instead, frame ``t`` runs with an exponential moving average (time constant
:data:`CONTEXT_SECONDS`, over the frames' own timestamps) of the values measured on the frames before
it, and measures its own on the way (``Enhancer(..., pooled=, measured=)``, :func:`context.measuring`):
one pass per frame, as for a photo, and on a static scene the average converges to the frame's exact
values, so a frame comes out as the photo would. The first frame runs with its own. Baselines with
global statistics (``autocontrast``, ``he``, ``gamma_auto``, ...) are run frame by frame, not smoothed.

The output is encoded into a hidden temporary file beside it and renamed into place at the end;
whatever stops the run, the temporary file is removed. PyAV is the ``video`` extra.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import InputImageError, OutputError, UsageError
from .images import DEFAULT_MAX_PIXELS, _temporary_beside, check_pixels, to_uint8

try:
    import av
except ImportError:  # the `video` extra: without it every video input fails with the install hint
    av = None

if TYPE_CHECKING:
    import torch

    from .inference import Enhancer
    from .tiling import Progress

log = logging.getLogger("lowlight")

READ_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")
# MP4 plays everywhere and holds the audio of all the inputs above (AAC, MP3, Opus, Vorbis, FLAC, AC-3,
# PCM); Matroska holds any audio; MOV is QuickTime's. WebM and AVI are not written (WebM holds no H.264).
WRITE_SUFFIXES = (".mp4", ".mkv", ".mov")
_MUXERS = {".mp4": "mp4", ".mkv": "matroska", ".mov": "mov"}
DEFAULT_SUFFIX = ".mp4"
ENCODER = "libx264"
DEFAULT_CRF = 18  # x264's "visually lossless or nearly so"; each +6 about halves the file
# Time constant of the moving average of the global statistics: a static scene's frame-to-frame noise
# is averaged over about this long, while a change of light is followed within a second or two.
CONTEXT_SECONDS = 0.5
# A video stream that ends this long before the duration its container states is truncated (Matroska
# and WebM files cut short read without an error, just fewer frames).
TRUNCATED_SECONDS = 1.0
_DAMAGED_HINT = "re-copy or re-export the video"


def is_video(path: Path) -> bool:
    return Path(path).suffix.lower() in READ_SUFFIXES


def check_output(path: Path) -> None:
    """OutputError unless ``path`` names a container lowlight writes video into (and, with PyAV installed,
    its FFmpeg has the H.264 encoder). Cheap, so batches call it for every video output before any work."""
    suffix = Path(path).suffix.lower()
    if suffix not in WRITE_SUFFIXES:
        raise OutputError(
            f"cannot write a video to {path}: video is written as {', '.join(WRITE_SUFFIXES)}",
            f"end -o in {' or '.join(WRITE_SUFFIXES)} (--ext {WRITE_SUFFIXES[0][1:]}); a folder of photos and "
            "videos takes --ext auto",
        )
    if av is not None and ENCODER not in av.codecs_available:  # without PyAV each video fails on its own
        raise OutputError(
            f"cannot write {path}: this PyAV's FFmpeg has no H.264 encoder ({ENCODER})",
            "install PyAV's wheel from PyPI, which has it: pip install --force-reinstall 'av>=18,<19'",
        )


def check_crf(crf: int | None) -> int | None:
    """``crf`` if it is None (:data:`DEFAULT_CRF`) or 0-51, else UsageError, before any work."""
    if crf is not None and not 0 <= crf <= 51:
        raise UsageError(f"--crf {crf} is not between 0 and 51",
                         f"0 is lossless, 51 the smallest file; default {DEFAULT_CRF}, each +6 about halves the size")
    return crf


class PooledAverage:
    """Exponential moving average of a net's global-pooling values over a video's frames; ``values`` is
    None before the first update.

    ``update(values, t)`` with the frame's time ``t`` in seconds moves the average towards ``values`` by
    ``1 - exp(-dt / seconds)``, ``dt`` the time since the previous frame, so the smoothing is the same
    at any frame rate, variable ones included; the first frame's values start it.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.values: list[torch.Tensor] | None = None
        self.time = 0.0

    def update(self, values: Sequence[torch.Tensor], t: float) -> list[torch.Tensor]:
        if self.values is None:
            self.values = list(values)
        else:
            w = 1.0 - math.exp(-max(t - self.time, 0.0) / self.seconds)
            self.values = [a + w * (b - a) for a, b in zip(self.values, values, strict=True)]
        self.time = t
        return self.values


@dataclass(frozen=True)
class VideoResult:
    frames: int
    seconds: float

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0


def enhance_video(enhancer: Enhancer, src: Path, dst: Path, *, crf: int | None = None,
                  context_seconds: float = CONTEXT_SECONDS, max_pixels: int = DEFAULT_MAX_PIXELS,
                  progress: Progress | None = None) -> VideoResult:
    """Enhance every frame of ``src`` and write ``dst`` (see the module docstring), atomically.

    ``context_seconds``: the time constant of the global statistics' average; 0 runs every frame on its
    own, as a photo. ``progress(done, total)`` after each frame; ``total`` is the container's frame count
    or an estimate from its duration, 0 when unknown. Raises InputImageError for a file that is not a
    readable video, has no video stream or no frames, or is truncated; ImageTooLargeError, before any
    frame is decoded, when its frames are over ``max_pixels``; OutputError when ``dst`` cannot be
    written (an audio codec its container cannot hold included). Nothing is left under ``dst``'s name or
    beside it on any error; an old ``dst`` stays as it was.
    """
    start = time.perf_counter()
    first = _first_frame(src, max_pixels)
    temporary = _temporary_beside(dst)
    try:
        with _reading(src) as inp:
            try:
                with av.open(str(temporary), "w") as out:
                    frames = _transcode(enhancer, inp, out, first, src=src, dst=dst, crf=crf,
                                        context_seconds=context_seconds, progress=progress)
                os.replace(temporary, dst)
            except (av.FFmpegError, OSError) as e:
                raise OutputError(f"cannot write {dst}: {_reason(e)}", "check that the folder is writable and has free space") from e
    finally:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
    result = VideoResult(frames, time.perf_counter() - start)
    log.info("%s: %d frames in %.1f s, %.2f frames/s", src, result.frames, result.seconds, result.fps)
    return result


@dataclass(frozen=True)
class _First:
    """What the output is set up from, read from the input's first frame: FFmpeg hands the display
    matrix over as frame side data, not on the stream."""

    width: int
    height: int
    matrix: bytes | None
    colorspace: int
    color_range: int


@contextlib.contextmanager
def _reading(src: Path) -> Iterator[av.container.InputContainer]:
    """The input opened, with its first video stream checked for; InputImageError otherwise."""
    if av is None:
        raise InputImageError(f"{src}: videos need PyAV, which is not installed", "pip install 'lowlight[video]'")
    if src.stat().st_size == 0:
        raise InputImageError(f"{src} is empty (0 bytes)", _DAMAGED_HINT)
    with _input_errors(src, "is not a readable video"):
        inp = av.open(str(src))
    with inp:
        if not inp.streams.video:
            kinds = ", ".join(sorted({s.type for s in inp.streams})) or "nothing"
            raise InputImageError(f"{src} has no video stream (it holds {kinds})", "pass a video with pictures")
        yield inp


@contextlib.contextmanager
def _input_errors(src: Path, what: str = "is truncated or damaged") -> Iterator[None]:
    try:
        yield
    except av.FFmpegError as e:
        raise InputImageError(f"{src} {what} ({_reason(e)})", _DAMAGED_HINT) from e


def _reason(e: Exception) -> str:
    return getattr(e, "strerror", None) or str(e)


def _first_frame(src: Path, max_pixels: int) -> _First:
    with _reading(src) as inp:
        stream = inp.streams.video[0].codec_context  # the size from the container's header
        check_pixels(src, stream.width, stream.height, max_pixels)
        frame = next(_frames(inp, inp.streams.video[0], src), None)
    if frame is None:
        raise InputImageError(f"{src} has a video stream but no frames", "pass a video with at least one frame")
    matrix = frame.side_data.get(av.sidedata.sidedata.Type.DISPLAYMATRIX)
    return _First(frame.width, frame.height, None if matrix is None else bytes(matrix), frame.colorspace,
                  frame.color_range)


def _packets(inp: av.container.InputContainer, streams: list, src: Path) -> Iterator[av.Packet]:
    """``inp.demux(*streams)`` with FFmpeg's errors as InputImageError."""
    packets = inp.demux(*streams)
    while True:
        with _input_errors(src):
            packet = next(packets, None)
        if packet is None:
            return
        yield packet


def _frames(inp: av.container.InputContainer, stream, src: Path) -> Iterator[av.VideoFrame]:
    for packet in _packets(inp, [stream], src):
        with _input_errors(src):
            frames = packet.decode()
        yield from frames


def _rgb(frame: av.VideoFrame) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB, converted with the frame's own matrix and range (PyAV assumes limited)."""
    return frame.to_ndarray(format="rgb24", src_color_range=frame.color_range)


def _transcode(enhancer: Enhancer, inp, out, first: _First, *, src: Path, dst: Path, crf: int | None,
               context_seconds: float, progress: Progress | None) -> int:
    """Every frame of ``inp`` enhanced into ``out``, every audio packet copied; returns the frame count."""
    vin = inp.streams.video[0]
    vin.thread_type = "AUTO"
    rate = vin.average_rate or vin.guessed_rate or Fraction(30)
    vout = _video_stream(out, vin, first, rate=rate, scale=enhancer.scale, crf=crf)
    audio = {a.index: _audio_stream(out, a, src=src, dst=dst) for a in inp.streams.audio}
    out.metadata.update(inp.metadata)
    smooth = context_seconds > 0 and enhancer.net is not None and not enhancer.spec.tile_safe
    average = PooledAverage(context_seconds) if smooth else None
    stated = _stated_seconds(vin)
    total = vin.frames or (round(stated * rate) if stated else 0)
    done, start, end = 0, None, 0.0
    for packet in _packets(inp, [vin, *inp.streams.audio], src):
        if packet.stream.type == "audio":
            if packet.dts is not None:  # the demuxer's closing empty packet has none
                packet.stream = audio[packet.stream.index]
                out.mux(packet)
            continue
        with _input_errors(src):
            frames = packet.decode()
        for frame in frames:
            pts = frame.pts if frame.pts is not None else round(done / rate / vin.time_base)
            t = float(pts * vin.time_base)
            start = t if start is None else start
            end = t + float(frame.duration * vin.time_base if frame.duration else 1 / rate)
            rgb = _rgb(frame).astype(np.float32) / 255.0
            if average is None:
                enhanced = enhancer(rgb)
            else:
                measured: list[torch.Tensor] = []
                enhanced = enhancer(rgb, pooled=average.values, measured=measured)
                if measured:  # empty when --strength 0 skips the model
                    average.update(measured, t)
            enhanced = to_uint8(enhanced[: vout.height, : vout.width])
            encoded = av.VideoFrame.from_ndarray(enhanced, format="rgb24").reformat(
                format="yuv420p", dst_colorspace=first.colorspace, dst_color_range=first.color_range)
            encoded.pts, encoded.time_base = pts, vin.time_base
            out.mux(vout.encode(encoded))
            done += 1
            if progress is not None:
                progress(done, max(total, done) if total else 0)
    out.mux(vout.encode(None))
    if stated is not None and start is not None and end - start < stated - TRUNCATED_SECONDS:
        raise InputImageError(
            f"{src} is truncated: its video stops after {end - start:.1f} s of the {stated:.1f} s its container states",
            _DAMAGED_HINT,
        )
    return done


def _video_stream(out, vin, first: _First, *, rate: Fraction, scale: int, crf: int | None):
    """The H.264 stream: the input's size times ``scale`` (yuv420p holds even sizes only: an odd last row
    or column is dropped), time base, display matrix, pixel aspect ratio and colour tags."""
    vout = out.add_stream(ENCODER, rate=rate, options={"crf": str(DEFAULT_CRF if crf is None else crf)})
    vout.width, vout.height = first.width * scale // 2 * 2, first.height * scale // 2 * 2
    vout.pix_fmt = "yuv420p"
    vout.codec_context.time_base = vout.time_base = vin.time_base  # the frames' timestamps pass through
    ctx_in, ctx = vin.codec_context, vout.codec_context
    ctx.colorspace, ctx.color_range = first.colorspace, first.color_range
    ctx.color_primaries, ctx.color_trc = ctx_in.color_primaries, ctx_in.color_trc
    if vin.sample_aspect_ratio:
        ctx.sample_aspect_ratio = vin.sample_aspect_ratio
    if first.matrix is not None:
        vout.set_display_matrix(np.frombuffer(first.matrix, np.int32).tolist())
    return vout


def _audio_stream(out, a, *, src: Path, dst: Path):
    """A copy of audio stream ``a``; OutputError, naming the containers that can hold it, if ``out``'s cannot."""
    try:
        return out.add_stream_from_template(a)
    except ValueError:
        codec = a.codec_context.name
        holders = [suffix for suffix in WRITE_SUFFIXES if _holds(suffix, codec)]
        raise OutputError(
            f"cannot copy {src}'s {codec} audio into {dst.suffix} (audio is copied, not re-encoded)",
            f"write {' or '.join(holders)} instead (--ext {holders[0][1:]})" if holders
            else "convert its audio first, e.g. ffmpeg -i IN -c:v copy -c:a aac OUT.mp4",
        ) from None


def _holds(suffix: str, codec: str) -> bool:
    with av.open(io.BytesIO(), "w", format=_MUXERS[suffix]) as probe:
        return codec in probe.supported_codecs


def _stated_seconds(stream) -> float | None:
    """The video stream's duration as its container states it: the stream's own (MP4, MOV), or the
    ``DURATION`` tag Matroska writers add per track (``HH:MM:SS.nnnnnnnnn``); None if neither."""
    if stream.duration:
        return float(stream.duration * stream.time_base)
    with contextlib.suppress(ValueError):
        h, m, s = stream.metadata.get("DURATION", "").split(":")
        return int(h) * 3600 + int(m) * 60 + float(s)
    return None


def mean_lumas(path: Path) -> np.ndarray:
    """Every frame's mean luma (BT.601 weights on the decoded 8-bit RGB, 0-255), in order."""
    with _reading(Path(path)) as inp:
        return np.array([(_rgb(frame) @ np.array([0.299, 0.587, 0.114])).mean()
                         for frame in _frames(inp, inp.streams.video[0], Path(path))])


def flicker(path: Path) -> float:
    """Frame-to-frame brightness variation of a video: the mean absolute change of :func:`mean_lumas`
    between consecutive frames. The measure ``bench/bench_video.py`` and the tests report, output
    against input."""
    return float(np.abs(np.diff(mean_lumas(path))).mean())
