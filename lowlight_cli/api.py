"""lowlight from Python: ``import lowlight_cli as ll``.

:func:`load` resolves a model once and returns an :class:`~lowlight_cli.inference.Enhancer`, reusable on
any number of images; :func:`enhance` is the one-call form. Images are NumPy arrays (uint8, uint16 or
float in [0, 1]; ``(H, W)``, ``(H, W, 3)`` RGB, ``(H, W, 4)`` RGBA), PIL images or paths, and come back as
the same kind (:mod:`lowlight_cli.arrays`). The enhancer is the one ``lowlight enhance`` runs, with the
same options: ``ll.load("mirnet", memory=2)`` is ``lowlight enhance --model mirnet --memory 2``.

>>> import numpy as np, lowlight_cli as ll
>>> dark = np.full((64, 96, 3), 12, np.uint8)
>>> ll.enhance(dark, model="gamma_auto").dtype
dtype('uint8')
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

    from .arrays import ImageInput
    from .inference import Backend, Enhancer, Precision


def load(model: str | None = None, *, weights: str | os.PathLike | None = None, device: str = "auto",
         strength: float = 1.0, memory: float | None = None, tile: int = 0, overlap: int | None = None,
         precision: Precision = "fp32", scale: int | None = None, backend: Backend | None = None,
         threads: int | None = None) -> Enhancer:
    """A model ready to enhance images: call it, ``enhancer(image)`` or ``enhancer.enhance(image)``.

    ``model``: a learned model (``mirnet``, ``neid.lol``) or a baseline (``clahe``); default: the
    ``lowlight enhance`` default (``lowlight models`` marks it). ``weights``: a ``.safetensors`` file for
    a learned model. The others are ``lowlight enhance``'s options: ``device`` auto, cpu or cuda;
    ``strength`` 0..1 (a blend with the input in linear light); ``memory`` GB one image may use (sets
    the tiling; default :func:`~lowlight_cli.inference.memory_budget_bytes`); ``tile`` side in pixels
    (0: from ``memory``); ``overlap`` pixels (default the model's); ``precision`` fp32, or fp16/bf16 on
    CUDA; ``scale`` output scale (default the model's); ``backend`` auto, onnx or torch (default
    ``$LOWLIGHT_BACKEND``, else auto); ``threads`` CPU threads, set once the model has loaded: torch's
    for the whole process (``torch.set_num_threads``), ONNX Runtime's for this enhancer (it takes
    torch's count at its first call); 0 takes the cores other processes are not using now, as
    ``lowlight enhance`` does; None (default) leaves the process's setting alone. On a machine other
    work keeps busy, ``threads=0`` can make each call many times faster.
    Raises :class:`~lowlight_cli.errors.UsageError` for options that cannot be used, ModelNotFoundError
    or WeightsError for a model that cannot be loaded.
    """
    from .inference import RunOptions, default_backend, default_model_name, load_enhancer, set_threads

    options = RunOptions(device=device, tile=tile, overlap=overlap, precision=precision, scale=scale,
                         strength=strength, memory_gb=memory, backend=backend or default_backend())
    enhancer = load_enhancer(model or default_model_name(), weights=None if weights is None else Path(weights),
                             options=options)
    if threads is not None:  # after loading: a load that fails leaves the process as it was
        set_threads(threads)
    return enhancer


def enhance(image: ImageInput, model: str | None = None, *, weights: str | os.PathLike | None = None,
            device: str = "auto", strength: float = 1.0, memory: float | None = None, tile: int = 0,
            overlap: int | None = None, precision: Precision = "fp32", scale: int | None = None,
            backend: Backend | None = None, threads: int | None = None) -> np.ndarray | Image.Image:
    """``load(model, ...)(image)``: one image, the same kind back (see
    :meth:`~lowlight_cli.inference.Enhancer.enhance`). For several images, :func:`load` once."""
    return load(model, weights=weights, device=device, strength=strength, memory=memory, tile=tile,
                overlap=overlap, precision=precision, scale=scale, backend=backend, threads=threads)(image)
