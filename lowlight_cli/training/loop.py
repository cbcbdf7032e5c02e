"""The training loop: ``fit(config)`` reads top to bottom as setup, loop, validation, save.

Setup: the config resolved from the model's recipe (on resume: the saved one), the images loaded and
whole scene groups held out for validation, net + loss + Adam (+ the weight average) built, restored
from ``last.pt`` or started from ``--init``. Loop: ``lr_at(step)`` -> batch -> loss -> step -> log;
every ``val_every`` steps validate and keep ``best.pt``, every ``ckpt_every`` steps write ``last.pt``.
Save: the best checkpoint (by validation score, never by eval15) is exported to safetensors.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn

from .. import context, registry, weights
from ..errors import TrainingError, UsageError
from ..images import check_writable_folder
from .checkpoints import (
    RunLog, TrainState, command_line, export, jsonable, load_checkpoint, restore, save_best, save_last, trained_network,
    write_config_json,
)
from .config import TrainConfig, lr_at, resolve, resume_config
from .data import Images, load_split, sample_batch, sample_views
from .engine import EngineForward, Ranks, ema_update, gather, hardware, pick_engine, training_process
from .validate import Pairs, selection_score, validate, validation_sets

# Non-finite gradient steps skipped in one process before a run is declared diverged.
MAX_SKIPPED = 10


@dataclass
class _Data:
    """What the loop reads of the images: the training sets, and (rank 0) the validation sets."""

    train: Images
    photos: Images | None
    val_sets: dict[str, Pairs]
    val_images: int
    val_stems: list[str]


@dataclass
class _Run:
    """What the loop reads but never changes."""

    config: TrainConfig
    spec: registry.ModelSpec
    ranks: Ranks
    device: torch.device
    engine: str
    data: _Data
    model: nn.Module  # the net as the engine runs it (DDP-wrapped under torchrun): what the loss calls
    loss_fn: nn.Module
    log: RunLog
    init: tuple[str, list[str]] | None  # --init: its file's sha256 and the tensors it lacked

    @property
    def dir(self) -> Path:
        return Path(self.config.out)


def fit(config: TrainConfig) -> Path:
    """Train as ``config`` says; returns the run folder. ``config.resume`` continues from ``last.pt``.

    Under ``torchrun`` (``WORLD_SIZE > 1``) every rank trains on its own batches (generators seeded by
    rank) through DistributedDataParallel; rank 0 alone logs, validates, checkpoints and exports.
    """
    ranks = Ranks.from_env()
    config, resumed = _start_or_resume(config)
    with training_process(config, ranks) as (device, threads):
        data = _load_data(config, main=ranks.main)
        run, state = _setup(config, data, ranks, device, resumed)
        del resumed
        _describe(run, state, threads)
        _train(run, state)
        if ranks.main:
            path, sha, toml = export(run.dir)
            print(f"exported {path}\nsha256 {sha}\n\n{toml}", flush=True)
        if ranks.world > 1:
            # No rank tears the group down while another still uses it (rank 0 exports alone above).
            dist.barrier()
    return Path(config.out)


# ---------------------------------------------------------------- setup


def _start_or_resume(config: TrainConfig) -> tuple[TrainConfig, dict[str, Any] | None]:
    """The run's resolved config, and its ``last.pt`` when resuming (whose saved config then wins).
    Checks first that the run folder can be written (one probe file), before any image is loaded."""
    last_path = Path(config.out) / "last.pt"
    resumed = None
    if config.resume:
        if not last_path.is_file():
            raise UsageError(f"nothing to resume: {last_path} does not exist", "drop --resume to start a new run")
        resumed = load_checkpoint(last_path)
        config = resume_config(config, TrainConfig.from_dict(resumed["config"]), done=resumed["step"])
    elif last_path.exists():
        raise UsageError(f"{Path(config.out)} already holds a run", "add --resume to continue it, or pick another --out")
    check_writable_folder(Path(config.out), option="--out")
    return resolve(config), resumed


def _load_data(config: TrainConfig, *, main: bool) -> _Data:
    """Images decoded once and kept in memory as uint8; validation holds out whole scene groups."""
    split = load_split(config)
    # Rank 0 alone validates; its sets are float copies, so the held-out uint8 images go with `split`.
    val_sets = validation_sets(split, config) if main else {}
    return _Data(split.train, split.photos, val_sets, len(split.val.stems), split.val_stems())


def _setup(config: TrainConfig, data: _Data, ranks: Ranks, device: torch.device,
           resumed: dict[str, Any] | None) -> tuple[_Run, TrainState]:
    """Model, objective, optimizer and weight average, from the seed, then ``last.pt`` or ``--init``."""
    spec = registry.get(config.model)
    torch.manual_seed(config.seed)
    net = trained_network(spec, config).to(device)
    if config.view and not context.glances(net):
        raise UsageError(f"--view {config.view}: {spec.name} does not glance at the whole picture", "leave --view at 0")
    loss_fn = spec.recipe.loss().to(device)
    engine = pick_engine(config.engine, device)
    state = TrainState(net=net, opt=_optimizer(net, spec, config), rng=np.random.default_rng([config.seed, ranks.rank]))
    init = None
    if resumed is not None:
        restore(state, resumed, ranks)
    elif config.init is not None:
        # Fine-tuning: trained weights replace the random ones; the optimizer and schedule start fresh.
        init = weights.init_from(net, config.init, arch=spec.name)
    if config.ema:
        # The weight average starts as a copy and follows net; it is what validation and export see.
        state.avg = trained_network(spec, config).to(device)
        state.avg.load_state_dict(resumed["ema"] if resumed is not None else net.state_dict())
        state.avg.eval()
    fast = EngineForward(net, engine)
    model = nn.parallel.DistributedDataParallel(fast, device_ids=[device] if device.type == "cuda" else None) if ranks.world > 1 else fast
    model.train()
    log = RunLog(Path(config.out), enabled=ranks.main)
    return _Run(config, spec, ranks, device, engine, data, model, loss_fn, log, init), state


def _optimizer(net: nn.Module, spec: registry.ModelSpec, config: TrainConfig) -> torch.optim.Adam:
    """Adam over the trained parameters, with weight decay (the paper's L2 term) on conv/linear weights only."""
    # --train-only PREFIX: the rest of the network (from --init) is frozen, so backward stops at the part trained.
    trained = [p for n, p in net.named_parameters() if n.startswith(config.train_only)]
    if not trained:
        names = sorted({n.split(".")[0] for n, _ in net.named_parameters()})
        raise UsageError(f"--train-only {config.train_only}: no parameter of {spec.name} starts with it", f"its parts: {', '.join(names)}")
    for n, p in net.named_parameters():
        p.requires_grad_(n.startswith(config.train_only))
    decay = [p for p in trained if p.ndim > 1]
    no_decay = [p for p in trained if p.ndim <= 1]
    return torch.optim.Adam(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.lr,
    )


def _describe(run: _Run, state: TrainState, threads: int) -> None:
    """Write ``config.json`` (rank 0) and the log's first lines."""
    config, data = run.config, run.data
    hw = hardware(run.device, run.ranks.world, threads) + f", engine {run.engine}"
    if run.ranks.main:
        meta = {
            "train_config": config.to_dict(),
            "command": command_line(),
            "model_hparams": jsonable(run.spec.hparams),
            "world_size": run.ranks.world,
            "hardware": hw,
            "torch": torch.__version__,
            "train_images": len(data.train.stems),
            "train_photos": len(data.photos.stems) if data.photos is not None else 0,
            "mixture": config.mixture(),
            "val_stems": data.val_stems,
        }
        if run.init is not None:
            meta["init_sha256"], meta["init_fresh"] = run.init
        write_config_json(run.dir, meta, step=state.step)
    run.log(f"# {'resumed' if state.step else 'started'} {time.strftime('%Y-%m-%d %H:%M:%S')} model={config.model} "
            f"step={state.step}/{config.steps} train_images={len(data.train.stems)} val_images={data.val_images} {hw}")
    if not state.step and run.init is not None and run.init[1]:
        run.log(f"# --init {config.init.name}: {len(run.init[1])} tensors it lacks start fresh: {', '.join(run.init[1])}")


# ---------------------------------------------------------------- loop


def _train(run: _Run, state: TrainState) -> None:
    """Steps until ``config.steps``: log, validate (rank 0) and checkpoint on their schedules."""
    config, main = run.config, run.ranks.main
    if main and state.step == 0 and config.init is not None:
        _validate(run, state)  # where the fine-tune starts, on every validation set
    progress = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        TextColumn("{task.fields[info]}"), console=run.log.console, disable=not main)
    window = _Window(time.perf_counter())
    t_start, trained_before, skipped = window.t, state.trained_s, 0
    with progress:
        task = progress.add_task("train", total=config.steps, completed=state.step, info="")
        while state.step < config.steps:
            lr = lr_at(state.step, config)
            result = _train_step(run, state, lr)
            if result is None:
                skipped += 1
                if skipped >= MAX_SKIPPED:
                    raise TrainingError(
                        f"{skipped} steps had non-finite gradients; the run has diverged",
                        "resume from an earlier checkpoint copy, or start a new run with a lower --lr or a --clip-grad",
                    )
                continue
            window.add(*result)
            progress.update(task, completed=state.step)
            if _due(state.step, config.log_every, config.steps):
                run.log(window.line(state.step, lr, images=config.batch * run.ranks.world))
                progress.update(task, info=f"loss {window.mean_loss:.4f}")
                window.reset()
            if main and _due(state.step, config.val_every, config.steps):
                t0 = time.perf_counter()
                _validate_and_keep_best(run, state)
                window.t += time.perf_counter() - t0  # validation time is not training throughput
            if _due(state.step, config.ckpt_every, config.steps):
                loader_rngs = gather(state.rng.bit_generator.state, run.ranks.world)  # every rank, for rank 0 to write
                state.trained_s = trained_before + time.perf_counter() - t_start
                if main:
                    save_last(run.dir / "last.pt", state, loader_rngs=loader_rngs, config=config)


def _due(step: int, every: int, last: int) -> bool:
    return step % every == 0 or step == last


def _train_step(run: _Run, state: TrainState, lr: float) -> tuple[float, dict[str, float], float] | None:
    """One optimizer step at ``lr``: ``(loss, loss parts, gradient norm before clipping)``, or None when the
    gradient was not finite and the step was skipped (one bad batch must not poison Adam's moments)."""
    config = run.config
    for group in state.opt.param_groups:
        group["lr"] = lr
    glancing: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    if config.view:
        # The glance is taken from the picture around the crop, as inference takes it from the whole photo.
        low, high, views, boxes = sample_views(run.data.train, state.rng, batch=config.batch, patch=config.patch,
                                               view=config.view, mixture=config.mixture(), photos=run.data.photos,
                                               variants=config.variants())
        glancing = context.glancing_views(run.model, views, boxes)
    else:
        low, high = sample_batch(run.data.train, state.rng, batch=config.batch, patch=config.patch,
                                 downscale=config.input_downscale, mixture=config.mixture(), photos=run.data.photos,
                                 variants=config.variants())
    with glancing:
        loss, parts = run.loss_fn(run.model, low.to(run.device), high.to(run.device))
    state.opt.zero_grad(set_to_none=True)
    loss.backward()
    # The norm before clipping is logged (its window maximum): a spike warns of divergence.
    gnorm = float(nn.utils.clip_grad_norm_(state.net.parameters(), config.clip_grad or math.inf))
    if not math.isfinite(gnorm):
        run.log(f"step {state.step + 1} skipped: gradient norm {gnorm}")
        return None
    state.opt.step()
    if state.avg is not None:
        # Warm-up of the decay: early on the average must not hold on to the random start.
        ema_update(state.avg, state.net, min(config.ema, (1 + state.step) / (10 + state.step)))
    state.step += 1
    return float(loss.detach()), {k: float(v) for k, v in parts.items()}, gnorm


@dataclass
class _Window:
    """Sums over the steps since the last log line, which reports their means."""

    t: float
    steps: int = 0
    loss: float = 0.0
    parts: dict[str, float] = field(default_factory=dict)
    gnorm: float = 0.0  # the maximum

    def add(self, loss: float, parts: dict[str, float], gnorm: float) -> None:
        self.steps += 1
        self.gnorm = max(self.gnorm, gnorm)
        self.loss += loss
        for k, v in parts.items():
            self.parts[k] = self.parts.get(k, 0.0) + v

    @property
    def mean_loss(self) -> float:
        return self.loss / self.steps

    def line(self, step: int, lr: float, *, images: int) -> str:
        """The log line; ``images`` per step over all ranks gives the throughput."""
        ips = self.steps * images / max(time.perf_counter() - self.t, 1e-9)
        extra = " ".join(f"{k} {v / self.steps:.5f}" for k, v in self.parts.items())
        return f"step {step} loss {self.mean_loss:.5f} {extra} gnorm {self.gnorm:.3g} lr {lr:.3g} img/s {ips:.1f}"

    def reset(self) -> None:
        self.t, self.steps, self.loss, self.parts, self.gnorm = time.perf_counter(), 0, 0.0, {}, 0.0


# ---------------------------------------------------------------- validation


def _validate(run: _Run, state: TrainState) -> tuple[dict[str, float], float]:
    """PSNR of the judged weights on every validation set, and their selection score; logged."""
    t0 = time.perf_counter()
    scores = {k: validate(state.judged, pairs, spec=run.spec, downscale=run.config.input_downscale, device=run.device)
              for k, pairs in run.data.val_sets.items()}
    score = selection_score(scores)
    parts = "".join(f" {k} {v:.3f}" for k, v in scores.items() if k != "lol")
    run.log(f"val step {state.step} psnr {scores['lol']:.3f}{parts} score {score:.3f} ({time.perf_counter() - t0:.1f}s)")
    return scores, score


def _validate_and_keep_best(run: _Run, state: TrainState) -> None:
    """Validate; a score above every earlier one replaces ``best.pt``."""
    scores, score = _validate(run, state)
    if score > state.best_score:
        state.best_score = score
        save_best(run.dir / "best.pt", state, scores=scores, score=score, config=run.config)
        run.log(f"best step {state.step} score {score:.3f}")
