"""The run configuration: :class:`TrainConfig`, its resolution from the model's recipe, ``lr_at(step)``,
and what a resume may change."""

from __future__ import annotations

import dataclasses
import math
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import registry
from ..errors import UsageError
from .pairs import Variants

# TrainConfig fields that default to the model's TrainRecipe when left None.
RECIPE_FIELDS = (
    "steps", "batch", "patch", "lr", "weight_decay", "milestones", "gamma", "input_downscale", "clip_grad",
    "schedule", "ema", "mix_identity", "mix_global", "mix_spatial", "view",
)
SCHEDULES = ("step", "cosine")
ENGINES = ("auto", "fp32", "channels_last", "bf16")


@dataclass(kw_only=True)
class TrainConfig:
    """Everything that determines a run. ``None`` fields are filled from the model's :class:`TrainRecipe`.

    ``data_dir``: the LOL root (holding ``our485/`` and ``scenes.csv``); ``None`` searches
    :func:`data.default_lol_roots`. ``synthetic``: a folder of normal-light photos; pairs are then made
    by :func:`pairs.darken` and ``data_dir`` is unused. ``photos``: normal-light photos added to the LOL
    targets as sources of the mixture's synthetic pairs. ``targets``: a folder holding, for each LOL pair,
    an image of the same name and size that replaces its ``high/`` image as what the network learns to
    give (a teacher model's outputs on the inputs: distillation); validation still scores against ``high/``.
    ``lowkey``: the share of identity pairs made low-key (:func:`pairs.lowkey`) from the ``photos``.
    ``clean``: the share of global pairs darkened without sensor noise (``pairs.darken(noise=False)``).
    ``backlit``: the share of spatial pairs whose shadow falls on subjects in a lit frame (``pairs.shadow_mask``).
    ``backlit_clean``: the share of those backlit pairs made without sensor noise.
    ``steps`` counts optimizer steps; ``batch`` is per process. ``engine``: how a CPU step runs (``auto``: the fastest this CPU has, see :func:`engine.pick_engine`).
    ``val_crop``: 0 validates on whole images, N on their centre N x N crop.
    ``threads``: torch CPU threads per process (0: torch's default, divided among local DDP ranks).
    ``train_form``: the network trains in its recipe's training form (``TrainRecipe.train_hparams``) and
    is folded at export; resolved to True for a run from scratch of a model that has one, False for a
    fine-tune (``--init``) and for runs saved before it existed.
    """

    model: str
    out: Path
    dataset: str = "lol"
    data_dir: Path | None = None
    synthetic: Path | None = None
    photos: Path | None = None
    targets: Path | None = None
    steps: int | None = None
    batch: int | None = None
    patch: int | None = None
    lr: float | None = None
    weight_decay: float | None = None
    milestones: tuple[float, ...] | None = None
    gamma: float | None = None
    input_downscale: int | None = None
    clip_grad: float | None = None
    schedule: str | None = None
    ema: float | None = None
    mix_identity: float | None = None
    mix_global: float | None = None
    mix_spatial: float | None = None
    view: int | None = None
    lowkey: float = 0.0
    clean: float = 0.0
    backlit: float = 0.0
    backlit_clean: float = 0.0
    engine: str = "auto"
    init: Path | None = None
    train_only: str = ""
    warmup: int = 0
    seed: int = 0
    split_seed: int = 0
    val_fraction: float = 0.1
    val_crop: int = 0
    val_every: int = 250
    ckpt_every: int = 250
    log_every: int = 10
    threads: int = 0
    device: str = "auto"
    resume: bool = False
    train_form: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for k, v in d.items():
            if isinstance(v, Path):
                d[k] = str(v)
            elif isinstance(v, tuple):
                d[k] = list(v)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        d = dict(d)
        for k in ("out", "data_dir", "synthetic", "photos", "targets", "init"):
            if d.get(k) is not None:
                d[k] = Path(d[k])
        if d.get("milestones") is not None:
            d["milestones"] = tuple(d["milestones"])
        # Runs saved before clipping existed trained without it; a resume keeps it that way.
        d.setdefault("clip_grad", 0.0)
        # Runs saved before these existed: step decays, no average, LOL pairs only.
        for k, v in (("schedule", "step"), ("ema", 0.0), ("mix_identity", 0.0), ("mix_global", 0.0), ("mix_spatial", 0.0),
                     ("train_only", ""), ("view", 0), ("train_form", False)):
            d.setdefault(k, v)
        return cls(**d)

    def mixture(self) -> dict[str, float]:
        """The batch mixture: fraction of each kind of pair (``lol`` is the rest)."""
        mix = {"identity": self.mix_identity, "global": self.mix_global, "spatial": self.mix_spatial}
        return mix | {"lol": round(1.0 - sum(mix.values()), 6)}

    def variants(self) -> Variants:
        """The shares of the mixture's kinds drawn as a variant (low-key, clean, backlit, clean backlit)."""
        return Variants(lowkey=self.lowkey, clean=self.clean, backlit=self.backlit, backlit_clean=self.backlit_clean)


def resolve(config: TrainConfig) -> TrainConfig:
    """``config`` with every ``None`` recipe field taken from the model's recipe, and checked."""
    spec = registry.get(config.model)
    if spec.recipe is None:
        raise UsageError(f"{spec.name} has no training recipe", "`lowlight models` lists the learned models")
    filled = {f: getattr(spec.recipe, f) if getattr(config, f) is None else getattr(config, f) for f in RECIPE_FIELDS}
    c = dataclasses.replace(config, model=spec.name, **filled)
    if c.train_form is None:
        c = dataclasses.replace(c, train_form=c.init is None and bool(spec.recipe.train_hparams))
    for name in ("steps", "batch", "patch", "val_every", "ckpt_every", "log_every", "input_downscale"):
        if getattr(c, name) < 1:
            raise UsageError(f"{name} must be >= 1, got {getattr(c, name)}", None)
    if not 0.0 < c.val_fraction < 1.0:
        raise UsageError(f"val_fraction must be in (0, 1), got {c.val_fraction}", None)
    if c.lr <= 0:
        raise UsageError(f"lr must be > 0, got {c.lr}", None)
    if c.clip_grad < 0:
        raise UsageError(f"clip_grad must be >= 0 (0: no clipping), got {c.clip_grad}", None)
    if c.schedule not in SCHEDULES:
        raise UsageError(f"unknown schedule {c.schedule!r}", f"use one of {', '.join(SCHEDULES)}")
    if not 0.0 <= c.ema < 1.0:
        raise UsageError(f"ema must be in [0, 1), got {c.ema}", "0 turns the weight average off; 0.999 is typical")
    fractions = (c.mix_identity, c.mix_global, c.mix_spatial)
    if any(f < 0 for f in fractions) or sum(fractions) > 1.0 + 1e-9:
        raise UsageError(f"mixture fractions must be >= 0 and sum to at most 1, got {fractions}", None)
    if c.view and (c.view < c.patch or c.input_downscale != 1):
        raise UsageError(f"view must be 0 or at least the patch ({c.patch}) with no input downscale, got {c.view}", None)
    if c.engine not in ENGINES:
        raise UsageError(f"unknown engine {c.engine!r}", f"use one of {', '.join(ENGINES)}")
    if not 0.0 <= c.lowkey <= 1.0:
        raise UsageError(f"lowkey must be in [0, 1], got {c.lowkey}", "it is the share of identity pairs made low-key")
    if c.lowkey and (c.photos is None or not c.mix_identity):
        raise UsageError("--lowkey makes some identity pairs from --photos", "give --photos and --mix-identity above 0")
    if not 0.0 <= c.clean <= 1.0:
        raise UsageError(f"clean must be in [0, 1], got {c.clean}", "it is the share of global pairs darkened without noise")
    if c.clean and not c.mix_global:
        raise UsageError("--clean makes some of the global pairs noise-free", "give --mix-global above 0")
    if not 0.0 <= c.backlit <= 1.0:
        raise UsageError(f"backlit must be in [0, 1], got {c.backlit}", "it is the share of spatial pairs with subjects in shadow")
    if c.backlit and not c.mix_spatial:
        raise UsageError("--backlit makes some of the spatial pairs backlit", "give --mix-spatial above 0")
    if not 0.0 <= c.backlit_clean <= 1.0:
        raise UsageError(f"backlit_clean must be in [0, 1], got {c.backlit_clean}", "it is the share of backlit pairs without noise")
    if c.backlit_clean and not c.backlit:
        raise UsageError("--backlit-clean makes some of the backlit pairs noise-free", "give --backlit above 0")
    if c.targets is not None and c.synthetic is not None:
        raise UsageError("--targets replaces the LOL pairs' high/ images; --synthetic has none", "drop one of them")
    if c.train_only and c.init is None:
        raise UsageError(f"--train-only {c.train_only}: the rest of the network would stay random", "give --init FILE")
    return c


def lr_at(step: int, config: TrainConfig) -> float:
    """Learning rate for optimizer step ``step`` (0-based): a pure function of the step and the config.

    Linear warmup over ``config.warmup`` steps, then either ``lr * gamma ** k`` where ``k`` counts the
    milestones (fractions of ``config.steps``) already passed (``schedule="step"``), or a half cosine
    from ``lr`` at the end of warm-up to ``lr * gamma`` at the last step (``"cosine"``).
    ``config`` must be resolved.
    """
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    if config.schedule == "cosine":
        t = (step - config.warmup) / max(1, config.steps - 1 - config.warmup)
        floor = config.lr * config.gamma
        return floor + (config.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))
    passed = sum(step >= round(m * config.steps) for m in config.milestones)
    return config.lr * config.gamma**passed


def resume_config(given: TrainConfig, saved: TrainConfig, *, done: int) -> TrainConfig:
    """The config a resumed run continues with, ``done`` steps in: the saved one, since changing ``lr`` or
    the data mid-run would change the run. Where and on what to run (``out``, ``device``, ``threads``,
    ``engine``) come from ``given``, and so may ``steps`` (see :func:`_with_steps`); any other option
    given that differs from the run's, ``model`` included, is a UsageError (see :func:`_refuse_conflicts`)."""
    _refuse_conflicts(given, saved)
    if given.steps is not None and given.steps != saved.steps:
        saved = _with_steps(saved, given.steps, done=done)
    return dataclasses.replace(saved, resume=True, out=given.out, device=given.device, threads=given.threads,
                               engine=given.engine)


def _refuse_conflicts(given: TrainConfig, saved: TrainConfig) -> None:
    """UsageError naming every option given (not left at its default) that differs from the run's own:
    a resume goes on with the saved config, and used to ignore them, another ``--model`` included."""
    defaults = TrainConfig(model=given.model, out=given.out)
    conflicts = ["model"] if registry.get(given.model).name != saved.model else []
    conflicts += [
        f.name for f in dataclasses.fields(TrainConfig)
        if f.name not in ("resume", "out", "model", "device", "threads", "engine", "steps")
        and getattr(given, f.name) is not None
        and getattr(given, f.name) != getattr(defaults, f.name)
        and getattr(given, f.name) != getattr(saved, f.name)
    ]
    if conflicts:
        options = ", ".join(f"--{n.replace('_', '-')} {getattr(given, n)} (the run's: {getattr(saved, n)})" for n in conflicts)
        raise UsageError(
            f"--resume goes on with the run in {given.out} as it was started; these options differ from it: {options}",
            "drop them (or give the run's values) to resume it, or start a new run with another --out",
        )


def _with_steps(saved: TrainConfig, steps: int, *, done: int) -> TrainConfig:
    """``saved`` with a new step count, allowed only while it leaves the learning rates already used unchanged.

    Milestones are fractions of ``steps``, so a new count moves them; before the first one is reached
    the resumed run is then exactly the run a fresh ``--steps`` would have given (batches do not depend
    on ``steps``). After it, the change would rewrite history, and is refused.
    """
    changed = dataclasses.replace(saved, steps=steps)
    if steps < done or any(lr_at(s, changed) != lr_at(s, saved) for s in range(done)):
        raise UsageError(
            f"cannot change --steps from {saved.steps} to {steps} at step {done}: the learning rates already used would change",
            "resume without --steps, or start a new run",
        )
    return changed


def cli_command(config: TrainConfig) -> str:
    """The ``lowlight train`` command that reproduces ``config`` from scratch, however the run was resumed."""
    args = ["lowlight", "train", "--model", config.model]
    if config.synthetic is not None:
        args += ["--synthetic", str(config.synthetic)]
    else:
        args += ["--dataset", config.dataset] + (["--data-dir", str(config.data_dir)] if config.data_dir else [])
    args += ["--photos", str(config.photos)] if config.photos is not None else []
    args += ["--targets", str(config.targets)] if config.targets is not None else []
    args += ["--out", str(config.out)] + (["--init", str(config.init)] if config.init is not None else [])
    args += ["--train-only", config.train_only] if config.train_only else []
    names = ["steps", "batch", "patch", "lr", "clip_grad", "seed", "val_every", "ckpt_every"]
    names += ["schedule", "ema", "mix_identity", "mix_global", "mix_spatial"] if config.mixture()["lol"] < 1.0 or config.ema or config.schedule != "step" else []
    names += ["view"] if config.view else []
    names += ["lowkey"] if config.lowkey else []
    names += ["clean"] if config.clean else []
    names += ["backlit"] if config.backlit else []
    names += ["backlit_clean"] if config.backlit_clean else []
    names += ["warmup"] if config.warmup else []
    for name in names:
        args += [f"--{name.replace('_', '-')}", str(getattr(config, name))]
    return shlex.join(args)
