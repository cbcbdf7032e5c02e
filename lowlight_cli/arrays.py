"""Images handed over from Python -> :class:`images.Picture`, and the result back as the same kind.

Takes a NumPy array (uint8, uint16, or float32/float64 holding values in [0, 1]; ``(H, W)`` grey,
``(H, W, 1)``, ``(H, W, 2)`` grey + alpha, ``(H, W, 3)`` RGB or ``(H, W, 4)`` RGBA, channels in RGB
order), a PIL image, or a path (read by :func:`images.read_image`, EXIF orientation applied). What
comes back is what was given: the same container, dtype, channel layout and PIL mode, alpha carried
through (resized with the picture when the output is larger); a path gives a NumPy array in the file's
own depth (uint8, or uint16 for 16-bit files) and layout (``(H, W)`` for grey).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Union

import numpy as np

from .errors import ImageArrayError
from .images import Picture, output_pixels, output_planes, picture_from_pixels, read_image

if TYPE_CHECKING:
    from PIL import Image

ImageInput = Union[np.ndarray, "Image.Image", str, os.PathLike]
GiveBack = Callable[[Picture], Union[np.ndarray, "Image.Image"]]

DTYPES = {np.dtype(np.uint8): 8, np.dtype(np.uint16): 16, np.dtype(np.float32): 16, np.dtype(np.float64): 16}
TAKES = "uint8, uint16, or float32/float64 in [0, 1]"
LAYOUTS = "(H, W) grey, (H, W, 3) RGB or (H, W, 4) RGBA, also (H, W, 1) and (H, W, 2) grey + alpha"
# PIL modes taken as they are (np.asarray gives uint8, or uint16 for I;16), and those converted first, to
# grey or RGB, with alpha where they have it (a palette: where it has a transparent colour); they come back so.
PIL_MODES = ("L", "LA", "RGB", "RGBA", "I;16")
PIL_CONVERTED = {"1": "L", "La": "LA", "PA": "RGBA", "RGBa": "RGBA", "P": None, "RGBX": "RGB", "CMYK": "RGB",
                 "YCbCr": "RGB", "LAB": "RGB", "HSV": "RGB"}


def to_picture(image: ImageInput) -> tuple[Picture, GiveBack]:
    """``image`` as a Picture (float32 RGB in [0, 1], alpha apart) and the function that turns an
    enhanced Picture back into what was given. ImageArrayError for what is not taken, saying what is."""
    if isinstance(image, (str, os.PathLike)):
        picture = read_image(Path(image))
        return picture, _as_file_pixels
    if isinstance(image, np.ndarray):
        return _from_array(image)
    if type(image).__module__.startswith("PIL."):
        return _from_pil(image)
    kind = f"{type(image).__module__}.{type(image).__name__}"
    hint = ("for a torch tensor (C, H, W) in [0, 1]: tensor.permute(1, 2, 0).cpu().numpy()"
            if kind.startswith("torch.") else "pass a NumPy array, a PIL image or a file path")
    raise ImageArrayError(f"cannot take an image of type {kind}: lowlight takes a NumPy array, a PIL image or a path", hint)


def _from_array(array: np.ndarray) -> tuple[Picture, GiveBack]:
    bits = DTYPES.get(array.dtype)
    if bits is None:
        hint = "e.g. array.astype(np.uint8)" if array.dtype.kind in "iub" else "e.g. array.astype(np.float32)"
        raise ImageArrayError(f"image arrays of dtype {array.dtype} are not taken: lowlight takes {TAKES}", hint)
    if array.ndim not in (2, 3) or (array.ndim == 3 and not 1 <= array.shape[2] <= 4) or 0 in array.shape:
        hint = ("channels first? array.transpose(1, 2, 0) makes (H, W, C)" if array.ndim == 3 and array.shape[0] in (1, 3, 4)
                else "one image at a time: array[0] of a batch" if array.ndim == 4 else "pass one picture")
        raise ImageArrayError(f"an image array of shape {array.shape} is not taken: lowlight takes {LAYOUTS}", hint)
    if array.dtype.kind == "f":
        low, high = float(array.min()), float(array.max())
        if not (0.0 <= low and high <= 1.0):  # NaN fails both
            hint = ("values of 0-255? divide by 255" if high > 1.0 and high <= 255.0 and low >= 0.0
                    else "np.clip(np.nan_to_num(array), 0, 1) if the excess is rounding")
            raise ImageArrayError(
                f"float image arrays must hold values in [0, 1]; this one holds {low:g} to {high:g}", hint)
    picture = picture_from_pixels(array, bits=bits)
    dtype, layout = array.dtype, array.shape[2:]

    def give_back(out: Picture) -> np.ndarray:
        pixels = _pixels(out, dtype)
        return pixels.reshape(pixels.shape[:2] + layout)

    return picture, give_back


def _pixels(picture: Picture, dtype: np.dtype) -> np.ndarray:
    """``(H, W, C)`` of ``dtype`` with the source's channels (:func:`images.output_planes`)."""
    if dtype.kind == "f":
        return output_planes(picture).astype(dtype, copy=False)
    return output_pixels(picture, 8 if dtype == np.uint8 else 16)


def _as_file_pixels(picture: Picture) -> np.ndarray:
    pixels = output_pixels(picture, picture.bit_depth)
    return pixels[..., 0] if pixels.shape[2] == 1 else pixels


def _from_pil(image: Image.Image) -> tuple[Picture, GiveBack]:
    from PIL import Image

    mode = image.mode
    if mode not in PIL_MODES:
        if mode not in PIL_CONVERTED:
            raise ImageArrayError(f"PIL images of mode {mode} are not taken: lowlight takes {', '.join(PIL_MODES)}",
                                  'convert it first, e.g. image.convert("RGB")')
        image = image.convert(PIL_CONVERTED[mode] or ("RGBA" if "transparency" in image.info else "RGB"))
    picture, give_array = _from_array(np.asarray(image))
    info = {key: image.info[key] for key in ("icc_profile", "exif") if image.info.get(key)}

    def give_back(out: Picture) -> Image.Image:
        result = Image.fromarray(give_array(out))
        result.info.update(info)
        return result

    return picture, give_back
