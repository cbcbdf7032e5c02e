"""Model registry: what each model is and what it needs, by name.

Names follow ``arch`` or ``arch.tag``: the arch picks code and hyperparameters (a registered
:class:`ModelSpec`), the tag picks a weights entry in ``weights.toml``. ``msrnet`` means the arch's
default weights; ``msrnet.lol`` names them explicitly. Baselines are weight-free models with the same
name space, so ``--model`` accepts both.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from .errors import ModelNotFoundError

Kind = Literal["learned", "baseline"]


# The exposure mixture of the bundled CPU variants: half real LOL pairs, half pairs made from
# normal-light images (identity, one wide-range exposure, a spatially varying one). LOL alone never
# shows a lit subject or a well-exposed photo, so weights trained on it brighten everything.
EXPOSURE_MIX = {"mix_identity": 0.1, "mix_global": 0.2, "mix_spatial": 0.2}


@dataclass(frozen=True, kw_only=True)
class TrainRecipe:
    """How a model's paper trains it, scaled to what we can afford. Read by ``training/config.py``.

    ``loss`` builds the objective: a module called as ``loss(net, low, high) -> (scalar, parts)``
    so a model with auxiliary outputs (NEID's detail branch) can ask the net for them.
    ``milestones`` are fractions of ``steps`` where the learning rate is multiplied by ``gamma``.
    ``input_downscale``: the input crop is ``patch * input_downscale`` pixels, downsampled (bicubic)
    by that factor before entering the net, while the target keeps the full crop (NEID's x2 recipe).
    ``clip_grad``: the gradient's total L2 norm is scaled down to this before each step (0: no clipping).
    ``schedule``: ``"step"`` (``gamma`` at each milestone) or ``"cosine"`` (from ``lr`` down to
    ``lr * gamma`` over the steps after warm-up; milestones unused).
    ``ema``: decay of an exponential moving average of the weights, validated and exported (0: off).
    ``mix_identity``, ``mix_global``, ``mix_spatial``: fractions of each batch made from normal-light
    images (the LOL targets, and any ``--photos``) rather than real LOL pairs: the image itself as
    input (an identity pair), one darkened by a single exposure from LOL-dark to unchanged, and one
    darkened by a spatially varying exposure (lamps and skies stay lit). All zero: LOL pairs only.
    ``view``: for a network that glances at the whole picture (:class:`.context.Glance`), the glance of
    each crop is taken from the picture around it, up to ``view`` x ``view`` pixels, as inference
    takes it from the whole photo (0: from the crop itself).
    ``train_hparams``: hyperparameters added when a run trains the network from scratch, for a form
    that trains better than it runs (Lantern's re-parameterised denoiser); the network's ``fold()``
    returns it to the inference form, which exported weights hold. Fine-tunes (``--init``) train the
    inference form.
    """

    loss: Callable[[], Any]
    lr: float = 1e-4
    weight_decay: float = 0.0
    patch: int = 128
    batch: int = 16
    steps: int = 20_000
    milestones: tuple[float, ...] = ()
    gamma: float = 0.1
    input_downscale: int = 1
    clip_grad: float = 0.0
    schedule: str = "step"
    ema: float = 0.0
    mix_identity: float = 0.0
    mix_global: float = 0.0
    mix_spatial: float = 0.0
    view: int = 0
    train_hparams: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """Everything the inference engine and the trainer need to know about one model.

    Learned models give ``build`` (a class taking keyword-only hyperparameters) and ``hparams``;
    baselines give ``enhance``, a function ``(H, W, 3) float32 in [0, 1] -> same``.
    ``scales``: output scales the model can produce, its native scale last (NEID: ``(1, 2)``; a
    smaller scale downsamples the input first). ``size_multiple``: input sides are padded to it.
    ``tile_safe``: False when the output depends on global image statistics: its network pools through
    :class:`lowlight_cli.context.GlobalMean`, and the tiler hands every tile the whole image's values. ``overlap``: default tile overlap
    in input pixels; tiled equals whole when it is at least 4x the receptive-field radius.
    """

    name: str
    kind: Kind
    summary: str
    paper: str = ""
    build: Callable[..., Any] | None = None
    hparams: Mapping[str, Any] = field(default_factory=dict)
    enhance: Callable[[np.ndarray], np.ndarray] | None = None
    scales: tuple[int, ...] = (1,)
    size_multiple: int = 1
    tile_safe: bool = True
    half_safe: bool = True
    overlap: int = 32
    recipe: TrainRecipe | None = None

    @property
    def scale(self) -> int:
        """The model's native output scale."""
        return self.scales[-1]

    @property
    def test_only(self) -> bool:
        """Variants named ``*_tiny`` exist to make tests fast; ``lowlight models`` lists them only with ``--all``."""
        return self.name.endswith("_tiny")

    def create(self, *, train: bool = False) -> Any:
        """A freshly initialised network (random weights: only for training or tests); with ``train``,
        in the form a run from scratch trains (the recipe's ``train_hparams``)."""
        if self.build is None:
            raise ModelNotFoundError(f"{self.name!r} is a baseline and has no network", None)
        extra = self.recipe.train_hparams if train and self.recipe is not None else {}
        return self.build(**self.hparams, **extra)


_REGISTRY: dict[str, ModelSpec] = {}
_loaded = False


def register(spec: ModelSpec) -> ModelSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"model {spec.name!r} registered twice")
    if "." in spec.name:
        raise ValueError(f"model name {spec.name!r} may not contain '.': that separates the weights tag")
    _REGISTRY[spec.name] = spec
    return spec


def _ensure_loaded() -> None:
    """Fill the registry on the first lookup by importing the files that register into it.

    Each model file (and baselines.py) imports this module to register its own variants, so that
    adding a model touches one file; the import back below is the one deliberate edge of that circle.
    It runs at the first lookup, when both sides are fully imported, and keeps torch out of
    ``import registry``.
    """
    global _loaded
    if not _loaded:
        _loaded = True
        from . import baselines, models  # noqa: F401  the deliberate back-edge: importing registers them


def specs(kind: Kind | None = None) -> list[ModelSpec]:
    _ensure_loaded()
    return [s for s in _REGISTRY.values() if kind is None or s.kind == kind]


def split_name(name: str) -> tuple[str, str | None]:
    """``"msrnet.lol"`` -> ``("msrnet", "lol")``; ``"msrnet"`` -> ``("msrnet", None)``."""
    arch, _, tag = name.partition(".")
    return arch, tag or None


def get(name: str) -> ModelSpec:
    """The spec for ``name`` (with or without a weights tag); unknown names suggest the closest."""
    _ensure_loaded()
    arch, _ = split_name(name.strip().lower())
    if arch in _REGISTRY:
        return _REGISTRY[arch]
    close = difflib.get_close_matches(arch, list(_REGISTRY), n=1, cutoff=0.5)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ModelNotFoundError(
        f"unknown model {name!r}",
        hint + "`lowlight models` lists every model.",
    )
