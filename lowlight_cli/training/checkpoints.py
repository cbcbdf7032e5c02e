"""The run folder, which describes itself: what a run writes, how a resume reads it back, and the export.

    RUN_DIR/config.json    the resolved TrainConfig, the command line, versions, hardware
    RUN_DIR/train.log      one plain line per log step and per validation
    RUN_DIR/last.pt        weights, optimizer, step, every RNG state, config: resume from here
    RUN_DIR/best.pt        weights with the best validation score so far (see validate.selection_score)
    RUN_DIR/export/<model>-<data>.safetensors
"""

from __future__ import annotations

import json
import math
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from torch import nn

from .. import registry
from ..errors import UsageError
from ..images import atomic_file, write_atomic
from ..weights import save_weights
from .config import TrainConfig, cli_command
from .engine import Ranks

CKPT_VERSION = 1


@dataclass
class TrainState:
    """What training changes, all of which ``last.pt`` saves so that a resumed run is bit-identical."""

    net: nn.Module
    opt: torch.optim.Optimizer
    rng: np.random.Generator  # this rank's batch generator
    avg: nn.Module | None = None  # the weight average (--ema)
    step: int = 0
    best_score: float = -math.inf
    trained_s: float = 0.0

    @property
    def judged(self) -> nn.Module:
        """The weights that are validated, kept in best.pt and exported: the average when there is one."""
        return self.avg if self.avg is not None else self.net


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` through :func:`images.atomic_file`: never a partial file, the usual file mode, and a
    failed write (a full disk) one OutputError."""
    with atomic_file(path) as f:
        torch.save(obj, f)


def load_checkpoint(path: Path) -> dict[str, Any]:
    # weights_only: a checkpoint is plain tensors, numbers, strings and lists; nothing executable.
    return torch.load(path, map_location="cpu", weights_only=True)


def save_last(path: Path, state: TrainState, *, loader_rngs: list[Any], config: TrainConfig) -> None:
    """``last.pt``: everything :func:`restore` needs; ``loader_rngs`` holds every rank's generator state."""
    atomic_save({
        "version": CKPT_VERSION, "model": state.net.state_dict(), "optimizer": state.opt.state_dict(),
        "step": state.step, "loader_rng": loader_rngs, "torch_rng": torch.get_rng_state(),
        # Named when the score was LOL PSNR alone; it holds the best selection score.
        "best_psnr": state.best_score, "trained_seconds": state.trained_s, "config": config.to_dict(),
    } | ({"ema": state.avg.state_dict()} if state.avg is not None else {}), path)


def restore(state: TrainState, ckpt: dict[str, Any], ranks: Ranks) -> None:
    """Put ``last.pt``'s net, optimizer, step and RNG states back (the average is the caller's: it is built after)."""
    if len(ckpt["loader_rng"]) != ranks.world:
        raise UsageError(
            f"the run was saved by {len(ckpt['loader_rng'])} process(es), not {ranks.world}",
            "resume with the same --nproc_per_node",
        )
    state.net.load_state_dict(ckpt["model"])
    state.opt.load_state_dict(ckpt["optimizer"])
    state.rng.bit_generator.state = ckpt["loader_rng"][ranks.rank]
    torch.set_rng_state(ckpt["torch_rng"])
    state.step, state.best_score, state.trained_s = ckpt["step"], ckpt["best_psnr"], ckpt["trained_seconds"]


def save_best(path: Path, state: TrainState, *, scores: dict[str, float], score: float, config: TrainConfig) -> None:
    """``best.pt``: the judged weights and the validation that chose them."""
    atomic_save({"model": state.judged.state_dict(), "step": state.step, "val_psnr": scores["lol"], "val": scores,
                 "val_score": score, "config": config.to_dict()}, path)


def write_config_json(run_dir: Path, meta: dict[str, Any], *, step: int) -> None:
    """``config.json``; a resume (``step > 0``) keeps the command that started the run and notes itself."""
    run_dir.mkdir(parents=True, exist_ok=True)
    meta_path = run_dir / "config.json"
    if step and meta_path.is_file():
        # Keep the command that started the run (export reports it); note each resume.
        first = json.loads(meta_path.read_text())
        first.setdefault("resumed", []).append({"step": step, "command": meta["command"], "hardware": meta["hardware"]})
        first["train_config"] = meta["train_config"]
        meta = first
    write_atomic(meta_path, (json.dumps(meta, indent=2) + "\n").encode())


class RunLog:
    """Log lines on stderr and in ``train.log``, from rank 0 only (``enabled``)."""

    def __init__(self, run_dir: Path, *, enabled: bool) -> None:
        self.path, self.enabled = run_dir / "train.log", enabled
        self.console = Console(stderr=True, soft_wrap=True)  # log lines stay whole in a log file

    def __call__(self, line: str) -> None:
        if self.enabled:
            self.console.print(line, highlight=False, markup=False)
            # Opened per line (a few times a minute) so a killed run leaves a complete log.
            with open(self.path, "a") as f:
                f.write(line + "\n")


def command_line() -> str:
    # Under `python -m lowlight_cli.cli` or torchrun argv[0] is cli.py; users type `lowlight`.
    prog = Path(sys.argv[0]).name
    return shlex.join(["lowlight" if prog in ("cli.py", "lowlight") else prog, *sys.argv[1:]])


def jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def trained_network(spec: registry.ModelSpec, config: TrainConfig) -> nn.Module:
    """A fresh network in the form the run trains (``config.train_form``, resolved): the recipe's training
    form (``TrainRecipe.train_hparams``) from scratch, the inference form when fine-tuning (``--init``)."""
    return spec.create(train=bool(config.train_form))


def inference_state(spec: registry.ModelSpec, config: TrainConfig, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A run's weights in the inference form: folded (the network's ``fold()``) when it trained another."""
    if not config.train_form:
        return state
    net = trained_network(spec, config)
    net.load_state_dict(state)
    return net.eval().fold().state_dict()


def export(run_dir: Path) -> tuple[Path, str, str]:
    """Write ``run_dir/export/<model>.safetensors`` from ``best.pt`` and a weights.toml entry for it.

    Returns ``(path, sha256, toml_text)``. ``license`` and ``hub`` are placeholders to fill in before
    the entry is pasted: a file's license and its Hub commit are not known at training time.
    """
    run_dir = Path(run_dir)
    best_path = run_dir / "best.pt"
    if not best_path.is_file():
        raise UsageError(f"{best_path} does not exist", "train until at least one validation has run")
    best = load_checkpoint(best_path)
    if "val_psnr" not in best:
        raise UsageError(f"{best_path} holds no validation score (a copy of last.pt?)",
                         "export the best.pt a validation wrote, or train until one has run")
    last = load_checkpoint(run_dir / "last.pt") if (run_dir / "last.pt").is_file() else {}
    meta = json.loads((run_dir / "config.json").read_text()) if (run_dir / "config.json").is_file() else {}
    # last.pt holds the run's final config (a resume may have changed --steps after best.pt was written).
    config = TrainConfig.from_dict((last or best)["config"])
    spec = registry.get(config.model)
    hparams = jsonable(dict(spec.hparams))
    mixture = config.mixture()
    # Named after what the run learned from: the exposure mixture, a --synthetic folder, or the dataset.
    tag = "mix" if mixture["lol"] < 1.0 else "synthetic" if config.synthetic is not None else config.dataset
    filename = f"{spec.name}-{tag}.safetensors"
    path = run_dir / "export" / filename
    sha = save_weights(inference_state(spec, config, best["model"]), path, arch=spec.name, hparams=hparams)
    entry = {
        "arch": spec.name,
        "default": True,
        "bundled": f"weights/{filename}",
        "sha256": sha,
        "license": "TODO",
        "hub": {"repo_id": "TODO", "filename": filename, "revision": "TODO"},
        "train_command": cli_command(config),
        "trained": {
            "duration": _duration(last.get("trained_seconds", 0.0)),
            "hardware": meta.get("hardware", ""),
            "steps": int(last.get("step", best["step"])),
        },
        "hparams": hparams,
        "metrics": {"val_psnr": round(float(best["val_psnr"]), 3)}
        | {f"val_{k}_psnr": round(float(v), 3) for k, v in best.get("val", {}).items() if k != "lol"},
    }
    if mixture["lol"] < 1.0:
        entry["mixture"] = mixture
    lines = [f'[weights."{spec.name}.{tag}"]'] + [f"{k} = {_toml(v)}" for k, v in entry.items()]
    held_out = "darkened held-out photos" if config.synthetic is not None else "held-out our485 scene groups"
    lines.append(f"# best.pt: step {best['step']} of {config.steps}; val_psnr: plain PSNR on {held_out}")
    return path, sha, "\n".join(lines) + "\n"


def _toml(value: Any) -> str:
    """A TOML value for the few types a weights entry holds (JSON string escapes are valid TOML)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML form for {type(value).__name__}")


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{round(seconds)}s"
    m = int(round(seconds / 60))
    return f"{m // 60}h{m % 60:02d}m" if m >= 60 else f"{m}m"
