"""Read and write images as float RGB in [0, 1], keeping what is needed to write them back like their source.

Pixels go through OpenCV (8- and 16-bit), metadata through Pillow: EXIF orientation is applied on read,
EXIF (orientation reset to 1) and the ICC profile are carried to the output where the format allows.
HEIC/HEIF goes through pillow-heif (8-bit, or 10/12-bit onto the 16-bit path), AVIF through Pillow, camera
RAW through rawpy (libraw), which is read and never written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import secrets
import struct
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np
import pillow_heif
from PIL import Image, UnidentifiedImageError, features

from .errors import ImageTooLargeError, InputImageError, OutputError, UsageError

# Photographs of 50-200 MP are this tool's job, not decompression bombs: Pillow's limit (a warning at
# 89 MP, an error at 179) is replaced by ours, ``max_pixels``, read from the header before anything is
# decoded. cv2's own warnings about bad files are replaced by our one-line errors.
DEFAULT_MAX_PIXELS = 200_000_000
Image.MAX_IMAGE_PIXELS = None
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)

_FORMATS = {
    ".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF", ".webp": "WEBP", ".bmp": "BMP",
    ".heic": "HEIF", ".heif": "HEIF", ".avif": "AVIF",
}
# Read by libraw, never written: a RAW file is the camera's record, and a demosaiced image is not one.
RAW_SUFFIXES = (".dng", ".cr2", ".cr3", ".nef", ".arw", ".raf", ".orf", ".rw2")
READ_SUFFIXES = (*_FORMATS, *RAW_SUFFIXES)  # what read_image takes, and folder runs pick up
# Where an input's own format cannot be written: RAW to 16-bit TIFF, which every raw developer and editor
# opens; HEIC (without an encoder) to JPEG, lossy and 8-bit like a phone's HEIC, and carrying EXIF and ICC.
_DEFAULT_OUTPUT = {"RAW": ".tif", "HEIF": ".jpg"}
# HEIC and AVIF at 90: on their own quality scales about what JPEG 95 is, at half JPEG's size or less.
WRITE_SUFFIXES = tuple(_FORMATS)  # what write_image takes (where the codec is installed), and --ext offers
# PNG at zlib level 1, not Pillow's 6: a 12 MP photo encodes in 0.9 s instead of 5.3, for a file 16 %
# larger (17.6 against 15.1 MB), the level OpenCV writes by default.
_SAVE_OPTIONS = {
    "JPEG": {"quality": 95}, "WEBP": {"quality": 95}, "TIFF": {"compression": "tiff_lzw"},
    "HEIF": {"quality": 90}, "AVIF": {"quality": 90}, "PNG": {"compress_level": 1},
}
_HEIF_MIMETYPES = ("image/heic", "image/heif", "image/heic-sequence", "image/heif-sequence")
_EXIF_PREFIX = b"Exif\x00\x00"
_ORIENTATION = 0x0112
# EXIF orientation -> the numpy operation that makes the stored pixels display upright.
_UPRIGHT = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: np.rot90(a, 2).swapaxes(0, 1),
    8: lambda a: np.rot90(a, 1),
}


@dataclass
class Picture:
    """An image plus what is needed to write it back like its source.

    ``rgb`` is float32 ``(H, W, 3)`` in [0, 1] (greyscale sources have 3 equal channels); ``alpha`` is
    float32 ``(H, W)`` in [0, 1] or None, kept at the source size; ``bit_depth`` is 8 or 16; ``grey`` says the
    source had one colour channel; ``exif`` is the raw EXIF block starting with ``Exif\\0\\0`` (orientation
    already set to 1, since the pixels are upright) or None; ``icc`` is the ICC profile or None.
    """

    rgb: np.ndarray
    alpha: np.ndarray | None
    bit_depth: int
    grey: bool
    exif: bytes | None
    icc: bytes | None

    def with_rgb(self, rgb: np.ndarray) -> Picture:
        """The same metadata and alpha with new pixels ``(H', W', 3)`` in [0, 1], e.g. a x2 result."""
        return dataclasses.replace(self, rgb=rgb)


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    """Float ``(H, W, 3)`` in [0, 1] -> uint8 ``(H, W, 3)``: clipped, then rounded to the nearest level."""
    return _quantize(rgb, 8)


def picture_from_pixels(
    pixels: np.ndarray, *, bits: int, grey: bool | None = None, exif: bytes | None = None, icc: bytes | None = None
) -> Picture:
    """Decoded, upright integer pixels ``(H, W)`` or ``(H, W, C)``, C = 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA, RGB
    order, holding ``bits``-bit values (8, 10, 12 or 16) -> a Picture (8-bit, or 16-bit for deeper sources).
    Float pixels hold values in [0, 1] already (``bits`` then sets only the bit depth); float32 ones are
    taken without a copy where they can be.

    ``grey`` None: one or two channels mean greyscale. ``exif`` is a block with orientation 1, prefix optional.
    """
    pixels = pixels[..., None] if pixels.ndim == 2 else pixels
    channels = pixels.shape[2]
    colour = pixels[..., :3] if channels >= 3 else np.repeat(pixels[..., :1], 3, axis=2)
    alpha = pixels[..., -1] if channels in (2, 4) else None
    top = np.float32((1 << bits) - 1)

    def unit(v: np.ndarray) -> np.ndarray:
        return v.astype(np.float32, copy=False) if v.dtype.kind == "f" else v.astype(np.float32) / top

    return Picture(
        rgb=unit(colour),
        alpha=None if alpha is None else unit(alpha),
        bit_depth=8 if bits == 8 else 16,
        grey=channels <= 2 if grey is None else grey,
        exif=None if exif is None else _EXIF_PREFIX + exif.removeprefix(_EXIF_PREFIX),
        icc=icc,
    )


def read_image(path: Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Picture:
    """Decode an image upright: PNG, TIFF (8/16-bit), JPEG, WebP, BMP, AVIF, HEIC/HEIF or camera RAW.

    Formats are told by content, except RAW, by suffix (``RAW_SUFFIXES``; several are TIFF structures whose
    first image is a thumbnail). RAW is demosaiced with the camera's white balance, without auto-brightening,
    to 16-bit sRGB (see ``_read_raw``). Raises ImageTooLargeError, from the file's header and before any
    decoding, for an image of more than ``max_pixels`` pixels (width x height); InputImageError for a
    missing, empty, truncated or non-image file, or a sample type other than 8- or 16-bit integers. The
    file is only read.
    """
    path = Path(path)
    data = _read_bytes(path)
    if path.suffix.lower() in RAW_SUFFIXES:
        return _read_raw(path, data, max_pixels)
    if pillow_heif.get_file_mimetype(data) in _HEIF_MIMETYPES:
        return _read_heif(path, data, max_pixels)
    # The orientation tag sits in the first IFD of a TIFF structure: the file itself for TIFF, the EXIF block
    # for the other formats. Decoders differ on applying it, so it is taken out and applied once, below.
    orientation, data = _pop_orientation(data)
    meta = _read_metadata(path, data, max_pixels)
    exif = None
    if meta.exif:
        orientation, exif = _pop_orientation(meta.exif.removeprefix(_EXIF_PREFIX))
    pixels = meta.avif if meta.avif is not None else _decode_opencv(path, data, meta)
    pixels = _UPRIGHT.get(orientation, lambda a: a)(pixels)
    return picture_from_pixels(
        pixels, bits=8 if pixels.dtype == np.uint8 else 16, grey=meta.grey, exif=exif, icc=meta.icc
    )


def check_pixels(path: Path, width: int, height: int, max_pixels: int) -> None:
    """ImageTooLargeError if an image (or video frame) of ``width`` x ``height`` is over ``max_pixels``."""
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"{path} is {width} x {height} = {width * height:,} pixels, over the limit of {max_pixels:,}; "
            "it was not decoded",
            f"if it is a genuine image, raise the limit: --max-pixels {width * height}",
        )


def output_suffix(src: Path) -> str:
    """The suffix of the default output for input ``src``: its own where lowlight writes that format, else
    ``.tif`` for RAW (16-bit), ``.jpg`` for HEIC when pillow-heif has no HEIC encoder, and ``.png``."""
    suffix = src.suffix.lower()
    fmt = "RAW" if suffix in RAW_SUFFIXES else _FORMATS.get(suffix)
    if fmt in _FORMATS.values() and _can_write(fmt):
        return src.suffix
    return _DEFAULT_OUTPUT.get(fmt, ".png")


def check_output(path: Path) -> str:
    """The format ``path``'s suffix names (e.g. ``"JPEG"``), if lowlight can write it here; else OutputError.
    Cheap, so batches call it for every output before any work."""
    suffix = Path(path).suffix.lower()
    if suffix in RAW_SUFFIXES:
        raise OutputError(
            f"cannot write {path}: camera RAW is read, never written",
            "ask for a 16-bit .tif (the default for RAW inputs) or a .jpg",
        )
    fmt = _FORMATS.get(suffix)
    if fmt is None:
        why = f"{Path(path).suffix} is not a format we write" if suffix else "it has no suffix"
        raise OutputError(
            f"cannot tell the image format of {path}: {why}",
            f"end the file name in one of {', '.join(_FORMATS)}, or end -o in / for a folder",
        )
    if not _can_write(fmt):
        reason, hint = _NO_ENCODER[fmt]
        raise OutputError(f"cannot write {path}: {reason}", hint)
    return fmt


def check_quality(quality: int | None) -> int | None:
    """``quality`` if it is None (each format's default) or 1-100, else UsageError, before any work."""
    if quality is not None and not 1 <= quality <= 100:
        defaults = ", ".join(f"{fmt} {options['quality']}" for fmt, options in _SAVE_OPTIONS.items() if "quality" in options)
        raise UsageError(f"--quality {quality} is not between 1 and 100", f"1 is the smallest file, 100 the best; defaults: {defaults}")
    return quality


def write_image(path: Path, picture: Picture, *, quality: int | None = None) -> None:
    """Encode ``picture`` in the format its suffix names and replace ``path`` atomically.

    Values are clipped to [0, 1] and rounded. 16-bit sources stay 16-bit in PNG and TIFF, become 10-bit in
    HEIC and 8-bit elsewhere (JPEG, WebP, HEIC and AVIF at ``quality``, 1-100; by default 95 for JPEG and
    WebP, 90 for HEIC and AVIF). Greyscale sources
    are written as greyscale (mean of the channels), except in WebP and HEIC; 16-bit greyscale with alpha
    becomes RGBA with equal colour channels. Alpha is resized (bilinear) to the pixels when their size
    changed, and dropped for JPEG and BMP (common readers ignore a BMP's fourth channel). EXIF goes into PNG,
    JPEG, WebP, HEIC and AVIF; ICC into those and 8-bit TIFF. TIFF never gets EXIF (Pillow would let EXIF
    tags override its layout tags) and 16-bit TIFF drops ICC too. Raises OutputError for a suffix
    ``check_output`` refuses, a missing or unwritable folder, or an image the format cannot hold (e.g. WebP
    wider than 16383 pixels); the old ``path``, if any, is then left as it was.
    """
    path = Path(path)
    fmt = check_output(path)
    bits = 16 if picture.bit_depth == 16 and fmt in ("PNG", "TIFF", "HEIF") else 8
    pixels = output_pixels(picture, bits, keep_alpha=fmt not in ("JPEG", "BMP"))
    if pixels.shape[2] == 2 and bits == 16:  # OpenCV's encoders take 1, 3 or 4 channels
        pixels = pixels[..., [0, 0, 0, 1]]
    try:
        if fmt == "HEIF":
            data = _encode_heif(pixels, picture, quality)
        else:
            data = _encode16(pixels, fmt, picture) if bits == 16 else _encode8(pixels, fmt, picture, quality)
    except (OSError, ValueError, cv2.error) as e:
        raise OutputError(f"cannot encode {path.name} as {fmt}: {e}", "try a .png or .tif output") from e
    write_atomic(path, data)


def _read_bytes(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputImageError(f"{path} does not exist", "check the path and the current folder") from None
    except IsADirectoryError:
        raise InputImageError(f"{path} is a folder, not an image", "pass an image file") from None
    except OSError as e:
        raise InputImageError(f"cannot read {path}: {e.strerror}", "check the file's permissions") from e
    if not data:
        raise InputImageError(f"{path} is empty (0 bytes)", "re-export or re-copy the image")
    return data


@dataclass
class _Metadata:
    exif: bytes | None = None  # as Pillow gives it, with or without the Exif\0\0 prefix
    icc: bytes | None = None
    grey: bool | None = None  # None: unknown to Pillow
    tiff_with_alpha: np.ndarray | None = None  # Pillow's uint8 (H, W, 2 or 4) pixels of a TIFF with alpha
    # Pillow's uint8 pixels of an AVIF file: OpenCV hands 10- and 12-bit AVIF over as uint16 holding 10- or
    # 12-bit values, without saying which. Pillow gives 8 bits, and the rotation as an EXIF orientation.
    avif: np.ndarray | None = None


def _read_metadata(path: Path, data: bytes, max_pixels: int) -> _Metadata:
    """What Pillow knows about the file, once its header's size is checked against ``max_pixels``. Pillow
    decodes every pixel to check the file is complete: OpenCV may hand back a truncated file's partial
    image without complaint. Empty for formats Pillow does not know (OpenCV may still read them, under
    its own limit)."""
    try:
        with Image.open(io.BytesIO(data)) as img:  # reads the header only
            check_pixels(path, *img.size, max_pixels)
            img.load()
            with_alpha = img.format == "TIFF" and img.mode in ("LA", "RGBA")
            return _Metadata(
                exif=img.info.get("exif") or None,
                icc=img.info.get("icc_profile") or None,
                grey=Image.getmodebase(img.mode) == "L",
                tiff_with_alpha=np.asarray(img) if with_alpha else None,
                avif=np.asarray(img) if img.format == "AVIF" else None,
            )
    except UnidentifiedImageError:
        return _Metadata()
    except (OSError, SyntaxError, ValueError, struct.error) as e:
        raise InputImageError(f"{path} is truncated or damaged ({e})", "re-export or re-copy the image") from e


def _decode_opencv(path: Path, data: bytes, meta: _Metadata) -> np.ndarray:
    """``(H, W, C)`` uint8 or uint16 RGB(A) or grey(+alpha) pixels as stored (not yet upright)."""
    try:
        pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as e:
        # Past our limit, OpenCV's own still applies: OPENCV_IO_MAX_IMAGE_PIXELS (2^30 unless set in the
        # environment before cv2 is imported) and 2^20 per side; or an allocation failed.
        reason = e.err or str(e)
        if "CV_IO_MAX_IMAGE" in reason:
            raise InputImageError(
                f"{path} is over OpenCV's own size limit ({reason})",
                "set OPENCV_IO_MAX_IMAGE_PIXELS=<pixels> in lowlight's environment too (2^30 by default)",
            ) from e
        raise InputImageError(f"OpenCV cannot decode {path} ({reason})", "re-export or re-copy the image") from e
    if pixels is None:
        raise InputImageError(
            f"{path} is not a readable image (unknown format or damaged file)",
            f"use an intact {', '.join(READ_SUFFIXES)} file",
        )
    if pixels.dtype not in (np.uint8, np.uint16):
        raise InputImageError(
            f"{path} has an unsupported bit depth ({pixels.dtype} samples); only 8- and 16-bit integers are read",
            "convert it to a 16-bit PNG or TIFF first",
        )
    pixels = _swap_red_blue(pixels[..., None] if pixels.ndim == 2 else pixels)
    if meta.tiff_with_alpha is not None and pixels.dtype == np.uint8:
        # OpenCV reads 8-bit TIFF with alpha through libtiff's RGBA path, which premultiplies the colours
        # (or drops grey+alpha's alpha); Pillow keeps them as stored.
        return meta.tiff_with_alpha
    return pixels


def _read_heif(path: Path, data: bytes, max_pixels: int) -> Picture:
    """HEIC/HEIF through libheif, at its own bit depth (10 and 12-bit onto the 16-bit path)."""
    try:
        heif = pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=False, hdr_to_16bit=False)
        check_pixels(path, *heif.size, max_pixels)
        pixels = np.asarray(heif)  # decodes; uint16 holding 10 or 12-bit values for deeper files
    except (ValueError, RuntimeError, OSError, EOFError) as e:
        reason = str(e).strip().removeprefix("Invalid input: ")
        raise InputImageError(f"{path} is truncated or damaged ({reason})", "re-export or re-copy the image") from e
    exif = heif.info.get("exif")
    if exif:
        # HEIF's own rotation and mirroring boxes (irot, imir) say how to display it, and libheif has applied
        # them; the standard makes the EXIF tag informational, so it is reset, not applied a second time.
        _, exif = _pop_orientation(exif.removeprefix(_EXIF_PREFIX))
    return picture_from_pixels(
        pixels, bits=heif.info["bit_depth"], grey=heif.mode.startswith("L"), exif=exif or None,
        icc=heif.info.get("icc_profile") or None,
    )


def _read_raw(path: Path, data: bytes, max_pixels: int) -> Picture:
    """Camera RAW -> 16-bit sRGB as a camera's own JPEG would be encoded, only not brightened.

    The camera's white balance (as shot), libraw's colour matrices to sRGB primaries, the sRGB tone curve
    (libraw's default is BT.709's, and ``--strength`` decodes sRGB), and no auto-brightening: libraw would
    otherwise scale every picture until 1 % of it clips, which makes a dark shot bright before the model
    sees it, by a factor that changes from shot to shot. Orientation is applied as the camera recorded it.
    EXIF and ICC are not carried (libraw gives no EXIF block; untagged output is sRGB).
    """
    try:
        import rawpy
    except ImportError:
        raise InputImageError(
            "camera RAW files need rawpy, which is not installed", "pip install 'lowlight[raw]'"
        ) from None
    try:
        with _quiet_stderr(), rawpy.imread(io.BytesIO(data)) as raw:  # opened, not yet unpacked
            check_pixels(path, raw.sizes.width, raw.sizes.height, max_pixels)
            pixels = raw.postprocess(
                use_camera_wb=True, no_auto_bright=True, output_bps=16, gamma=(2.4, 12.92),
                output_color=rawpy.ColorSpace.sRGB,
            )
    except rawpy.LibRawFileUnsupportedError:
        version = ".".join(map(str, rawpy.libraw_version))
        raise InputImageError(
            f"{path} is not a camera RAW file libraw {version} can read (a newer camera, or not RAW)",
            "check the file; a DNG converted from it (Adobe DNG Converter) can be read",
        ) from None
    except rawpy.LibRawIOError:
        raise InputImageError(
            f"{path} is truncated (libraw read past its end)", "re-copy the file from the camera"
        ) from None
    except rawpy.LibRawError as e:
        raise InputImageError(f"{path} is damaged ({type(e).__name__})", "re-copy the file from the camera") from None
    return picture_from_pixels(pixels, bits=16, grey=False)


@contextlib.contextmanager
def _quiet_stderr():
    """Send file descriptor 2 to /dev/null: libraw prints its own complaints ("Unexpected end of file")
    from C, and a bad file must give the CLI's one line, not two."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _pop_orientation(tiff: bytes) -> tuple[int, bytes]:
    """(orientation, the same bytes with it set to 1) for a TIFF structure, i.e. a TIFF file or an EXIF block
    without its prefix; the tag is looked up in the first IFD and every other byte is left unchanged.
    (1, tiff) when there is no such tag or the bytes are not a TIFF structure."""
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None:
        return 1, tiff
    out = bytearray(tiff)
    try:
        if struct.unpack_from(order + "H", out, 2)[0] != 42:  # BigTIFF and others: not handled
            return 1, tiff
        ifd = struct.unpack_from(order + "I", out, 4)[0]
        count = struct.unpack_from(order + "H", out, ifd)[0]
        for entry in range(ifd + 2, ifd + 2 + 12 * count, 12):
            tag, kind = struct.unpack_from(order + "HH", out, entry)
            if tag == _ORIENTATION and kind == 3:  # SHORT, stored in the entry itself
                orientation = struct.unpack_from(order + "H", out, entry + 8)[0]
                struct.pack_into(order + "H", out, entry + 8, 1)
                return orientation, bytes(out)
    except struct.error:
        pass
    return 1, tiff


def _quantize(x: np.ndarray, bits: int) -> np.ndarray:
    """Float in [0, 1] (clipped) -> uint8 or uint16, rounded to the nearest level."""
    scaled = np.clip(x, 0.0, 1.0)  # a new array, scaled in place: one float copy of the image, not two
    scaled *= (1 << bits) - 1
    return np.rint(scaled, out=scaled).astype(np.uint8 if bits == 8 else np.uint16)


def _swap_red_blue(pixels: np.ndarray) -> np.ndarray:
    """``(H, W, C)`` RGB(A) <-> BGR(A); one or two channels unchanged."""
    channels = pixels.shape[2]
    return pixels[..., [2, 1, 0, *range(3, channels)]] if channels >= 3 else pixels


def output_planes(picture: Picture, *, keep_alpha: bool = True) -> np.ndarray:
    """``(H, W, C)`` float32 as the source had its channels: C = 1 (grey: the mean of the colour channels),
    2 (grey+alpha), 3 (RGB) or 4 (RGBA). Alpha is resized (bilinear) to the pixels when their size changed
    (a x2 result). RGB without alpha is ``picture.rgb`` itself, not a copy."""
    rgb = picture.rgb
    planes = [rgb.mean(axis=2, keepdims=True) if picture.grey else rgb]
    alpha = picture.alpha
    if alpha is not None and keep_alpha:
        height, width = rgb.shape[:2]
        if alpha.shape != (height, width):
            alpha = cv2.resize(alpha, (width, height), interpolation=cv2.INTER_LINEAR)
        planes.append(alpha[..., None])
    return planes[0] if len(planes) == 1 else np.concatenate(planes, axis=2)


def output_pixels(picture: Picture, bits: int, *, keep_alpha: bool = True) -> np.ndarray:
    """:func:`output_planes` as ``bits``-bit integers (uint8 or uint16), rounded to the nearest level."""
    return _quantize(output_planes(picture, keep_alpha=keep_alpha), bits)


def _save_options(fmt: str, quality: int | None) -> dict:
    """The encoder's options for ``fmt``; ``quality`` replaces the default of a lossy format."""
    options = dict(_SAVE_OPTIONS.get(fmt, {}))
    if quality is not None and "quality" in options:
        options["quality"] = quality
    return options


def _encode8(pixels: np.ndarray, fmt: str, picture: Picture, quality: int | None) -> bytes:
    image = Image.fromarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels)
    options = _save_options(fmt, quality)
    if picture.icc:
        options["icc_profile"] = picture.icc
    if picture.exif and fmt != "TIFF":
        options["exif"] = picture.exif
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _encode_heif(pixels: np.ndarray, picture: Picture, quality: int | None) -> bytes:
    """HEIC through pillow-heif: RGB(A), 8-bit, or 10-bit from uint16 (x265's Main 10, which HEIC viewers
    decode; monochrome HEIC is not widely read, so grey is written as RGB)."""
    if pixels.shape[2] <= 2:
        pixels = pixels[..., [0, 0, 0, *range(1, pixels.shape[2])]]
    mode = ("RGBA" if pixels.shape[2] == 4 else "RGB") + (";16" if pixels.dtype == np.uint16 else "")
    heif = pillow_heif.from_bytes(mode, (pixels.shape[1], pixels.shape[0]), np.ascontiguousarray(pixels).tobytes())
    buffer = io.BytesIO()
    heif.save(buffer, exif=picture.exif, icc_profile=picture.icc, **_save_options("HEIF", quality))
    return buffer.getvalue()


_NO_ENCODER = {
    "HEIF": ("this pillow-heif's libheif has no HEIC encoder",
             "ask for a .jpg, or install pillow-heif's wheel from PyPI, which has one (x265)"),
    "AVIF": ("this Pillow was built without AVIF", "ask for a .webp or .jpg, or install Pillow's wheel from PyPI"),
}


def _can_write(fmt: str) -> bool:
    """Whether the installed codecs encode ``fmt``: pillow-heif built on a libheif without x265 reads HEIC
    but cannot write it; a Pillow built without libavif neither reads nor writes AVIF."""
    if fmt == "HEIF":
        return bool(pillow_heif.libheif_info()["HEIF"])
    if fmt == "AVIF":
        return features.check("avif")
    return True


def _encode16(pixels: np.ndarray, fmt: str, picture: Picture) -> bytes:
    ok, encoded = cv2.imencode(".png" if fmt == "PNG" else ".tif", _swap_red_blue(pixels))
    if not ok:
        raise ValueError("OpenCV could not encode the image")
    data = encoded.tobytes()
    return _with_png_metadata(data, picture.icc, picture.exif) if fmt == "PNG" else data


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _with_png_metadata(png: bytes, icc: bytes | None, exif: bytes | None) -> bytes:
    """Insert iCCP and eXIf chunks right after IHDR (8-byte signature + 25-byte IHDR chunk), before IDAT."""
    extra = b""
    if icc:
        extra += _png_chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc))
    if exif:
        extra += _png_chunk(b"eXIf", exif.removeprefix(_EXIF_PREFIX))
    return png[:33] + extra + png[33:]


def _temporary_beside(path: Path) -> Path:
    """A hidden, unique name in the folder of ``path`` (folder walks skip hidden files)."""
    return path.parent / f".{path.stem}.tmp-{secrets.token_hex(6)}{path.suffix}"


def _cannot_write(path: Path, e: OSError) -> OutputError:
    return OutputError(f"cannot write {path}: {e.strerror or e}", "check that the folder is writable and has free space")


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through :func:`atomic_file`."""
    with atomic_file(path) as f:
        f.write(data)


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """A binary file to write, a hidden temporary beside ``path`` (same suffix) renamed over ``path`` once
    the block ends. Made with mode 0666 less the umask (0644 usually), as ``open`` makes files.

    Every OSError (no permission, a read-only file system, a full disk) becomes one OutputError for
    ``path``; the temporary file is gone afterwards, also after an error in the block or Ctrl-C, and an
    old ``path`` is untouched.
    """
    path = Path(path)
    folder = path.parent
    if not folder.is_dir():
        raise OutputError(f"the output folder {folder} does not exist", f"create it first: mkdir -p {folder}")
    temporary = _temporary_beside(path)
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as e:
        raise _cannot_write(path, e) from e
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
        os.replace(temporary, path)
    except BaseException as e:
        # The clean-up must not raise in its turn (it would hide the first error behind a traceback).
        with contextlib.suppress(OSError):
            temporary.unlink()
        if isinstance(e, OSError):
            raise _cannot_write(path, e) from e
        raise


def check_writable_folder(folder: Path, *, option: str = "-o") -> None:
    """OutputError unless a file can be created in ``folder`` or, when it does not exist yet, in its
    nearest existing parent (where its sub-folders will be made). Creates and removes one hidden probe
    file, which is the only test that sees read-only mounts, ACLs and root-squashed network shares alike.
    ``option``: the command-line option that named the folder, for the hint."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"cannot make the output folder {folder}: {existing} is a file", f"choose another {option}")
    probe = _temporary_beside(existing / "probe")
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except OSError as e:
        where = f"the output folder {folder}" if existing == folder else f"{existing} to make the output folder {folder}"
        raise OutputError(
            f"cannot write into {where}: {e.strerror or e}",
            f"choose a writable {option} folder (check permissions, a read-only mount, free space)",
        ) from e
    with contextlib.suppress(OSError):
        probe.unlink()
