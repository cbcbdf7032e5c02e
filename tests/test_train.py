"""Training engine: schedule, data split, synthetic darkening, checkpoints, resume, export, DDP.

Everything runs msrnet_tiny on tiny images generated here (never LOL images), one thread per process.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from lowlight_cli import registry
from lowlight_cli.errors import OutputError, TrainingError, UsageError, WeightsError
from lowlight_cli.training.checkpoints import atomic_save, export
from lowlight_cli.training.config import TrainConfig, lr_at, resolve
from lowlight_cli.training.data import load_photos, read_scenes, sample_batch, split_by_scene
from lowlight_cli.training.engine import EngineForward, pick_engine
from lowlight_cli.training.loop import fit
from lowlight_cli.training.pairs import WIDE_EXPOSURE, Variants, darken, darken_traced, lit_mask
from lowlight_cli.training.validate import selection_score
from lowlight_cli.weights import load_state, sha256_file

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """Six smooth 40x48 "normal-light" photos and a scenes.csv that groups them in pairs."""
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        small = rng.uniform(60, 230, size=(5, 6, 3)).astype(np.float32)
        img = cv2.resize(small, (48, 40), interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(str(folder / f"{i}.png"), np.clip(img, 0, 255).astype(np.uint8))
    (folder / "scenes.csv").write_text("id,scene\n" + "".join(f"{i},{i // 2}\n" for i in range(6)))
    return folder


def tiny_config(photos: Path, out: Path, **overrides) -> TrainConfig:
    base = dict(model="msrnet_tiny", out=out, synthetic=photos, steps=6, batch=2, patch=16,
                val_every=3, ckpt_every=3, log_every=3, threads=1, device="cpu", val_fraction=0.3)
    return TrainConfig(**(base | overrides))


# Weights of the run below, recorded at commit 1b7f140 by lowlight_cli/train.py, before it was split into
# lowlight_cli/training/: "last.*" (the net at step 6), "ema.*" (its average) and "best.*" (best.pt, step 4).
REFERENCE_WEIGHTS = Path(__file__).parent / "data" / "train_msrnet_tiny_6_steps.safetensors"


def test_a_seeded_run_gives_the_weights_recorded_before_the_split(photos, tmp_path):
    """Guards the move of the training code (and any later one): the same seed and command give the same weights.

    The run goes through every part that moved: LOL-style and --photos splits, the three synthetic
    kinds of the mixture, the weight average, the lr milestone, validation on every set and a best.pt
    kept at step 4 of 6. fp32 engine: bf16, what auto picks on AMX CPUs, would differ between machines.
    fp32 kernels still round differently with other vector units (up to 2e-7 measured with AVX2 or
    SSE kernels forced), hence the 2e-6 tolerance; a changed draw, schedule or average moves weights by 1e-4 or more.
    """
    from safetensors.torch import load_file

    config = tiny_config(photos, tmp_path / "run", engine="fp32", lr=0.025, ema=0.5, val_every=2,
                         mix_identity=0.2, mix_global=0.2, mix_spatial=0.3)
    run = fit(dataclasses.replace(config, photos=photos))  # the same folder, also as --photos
    last = torch.load(run / "last.pt", weights_only=True)
    best = torch.load(run / "best.pt", weights_only=True)
    assert best["step"] == 4 and last["step"] == 6
    got = ({f"last.{k}": v for k, v in last["model"].items()} | {f"ema.{k}": v for k, v in last["ema"].items()}
           | {f"best.{k}": v for k, v in best["model"].items()})
    expected = load_file(REFERENCE_WEIGHTS)
    assert got.keys() == expected.keys()
    for k, v in expected.items():
        torch.testing.assert_close(got[k], v, rtol=0.0, atol=2e-6, msg=lambda m, k=k: f"{k}: {m}")


def test_msrnet_forward_keeps_shape():
    for name in ("msrnet", "msrnet_tiny"):
        spec = registry.get(name)
        net = spec.create()
        x = torch.rand(2, 3, 20, 28)
        assert net(x).shape == (2, 3, 20, 28)
        assert spec.overlap >= spec.hparams["depth"] + 2  # receptive-field radius


def test_log_transform_fixes_zero_and_one():
    from lowlight_cli.models.msrnet import log_transform

    m = log_transform(torch.tensor([0.0, 0.05, 1.0]).view(1, 3, 1, 1), (1.0, 300.0))
    assert m.shape == (1, 6, 1, 1)
    assert torch.allclose(m[0, [0, 2, 3, 5], 0, 0], torch.tensor([0.0, 1.0, 0.0, 1.0]))
    assert m[0, 4] > m[0, 1]  # the larger scale lifts dark values more


def test_lr_at_is_pure_and_follows_milestones(tmp_path):
    c = resolve(TrainConfig(model="msrnet_tiny", out=tmp_path, steps=100, lr=1.0,
                                        milestones=(0.5, 0.8), gamma=0.1))
    before = c.to_dict()
    assert [lr_at(s, c) for s in (0, 49, 50, 79, 80, 99)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    assert lr_at(50, c) == lr_at(50, c)
    assert c.to_dict() == before
    warm = resolve(TrainConfig(model="msrnet_tiny", out=tmp_path, steps=100, lr=1.0, warmup=4))
    assert [lr_at(s, warm) for s in range(5)] == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0])


def test_validation_holds_out_whole_scene_groups(tmp_path):
    stems = [str(i) for i in range(40)]
    scenes_csv = tmp_path / "scenes.csv"
    scenes_csv.write_text("id,scene\n" + "".join(f"{i},{i // 3}\n" for i in range(40)))
    scenes = read_scenes(scenes_csv)
    tr, va = split_by_scene(stems, scenes, fraction=0.1, seed=0)
    assert sorted(tr + va) == list(range(40))
    assert {scenes[stems[i]] for i in tr}.isdisjoint({scenes[stems[i]] for i in va})
    assert len({scenes[stems[i]] for i in va}) == 2  # ceil(0.1 * 14 groups)
    assert split_by_scene(stems, scenes, fraction=0.1, seed=0) == (tr, va)


def test_darken_is_seeded_and_darker():
    rgb = np.random.default_rng(1).uniform(0.3, 0.9, size=(32, 32, 3)).astype(np.float32)
    a = darken(rgb, np.random.default_rng(5))
    b = darken(rgb, np.random.default_rng(5))
    c = darken(rgb, np.random.default_rng(6))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.dtype == np.float32 and a.shape == rgb.shape and 0 <= a.min() and a.max() <= 1
    assert a.mean() < 0.6 * rgb.mean()


def test_sample_batch_downscales_the_input_only(photos):
    images = load_photos(photos)
    low, high = sample_batch(images, np.random.default_rng(0), batch=3, patch=8, downscale=2)
    assert low.shape == (3, 3, 8, 8) and high.shape == (3, 3, 16, 16)
    assert low.dtype == high.dtype == torch.float32


def _full_and_killed_then_resumed(photos, tmp_path, monkeypatch, **overrides) -> tuple[dict, dict]:
    """``last.pt`` of a whole run and of the same run killed after its step-3 checkpoint and resumed."""
    full = fit(tiny_config(photos, tmp_path / "full", **overrides))

    class Killed(Exception):
        pass

    save = atomic_save

    def save_then_die(obj, path):
        save(obj, path)
        if path.name == "last.pt" and obj["step"] == 3:
            raise Killed

    monkeypatch.setattr("lowlight_cli.training.checkpoints.atomic_save", save_then_die)
    with pytest.raises(Killed):
        fit(tiny_config(photos, tmp_path / "cut", **overrides))
    monkeypatch.setattr("lowlight_cli.training.checkpoints.atomic_save", save)
    with pytest.raises(UsageError):  # an existing run is never silently overwritten
        fit(tiny_config(photos, tmp_path / "cut", **overrides))
    fit(tiny_config(photos, tmp_path / "cut", resume=True, **overrides))
    return (torch.load(full / "last.pt", weights_only=True), torch.load(tmp_path / "cut" / "last.pt", weights_only=True))


def test_resume_is_bit_identical(photos, tmp_path, monkeypatch):
    a, b = _full_and_killed_then_resumed(photos, tmp_path, monkeypatch)
    assert a["step"] == b["step"] == 6
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert a["loader_rng"] == b["loader_rng"]
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_resume_may_change_steps_only_before_the_first_milestone(photos, tmp_path, monkeypatch):
    save = atomic_save

    def save_then_die(obj, path):
        save(obj, path)
        if path.name == "last.pt" and obj["step"] == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr("lowlight_cli.training.checkpoints.atomic_save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        fit(tiny_config(photos, tmp_path / "run", steps=12))  # tiny recipe: one milestone at 0.5
    monkeypatch.setattr("lowlight_cli.training.checkpoints.atomic_save", save)
    with pytest.raises(UsageError, match="learning rates already used"):
        fit(tiny_config(photos, tmp_path / "run", steps=4, resume=True))  # milestone would move to 2
    fit(tiny_config(photos, tmp_path / "run", steps=8, resume=True))  # milestone moves from 6 to 4
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["step"] == 8
    short = fit(tiny_config(photos, tmp_path / "fresh", steps=8))
    a = torch.load(short / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def _grad_norms_at_step(monkeypatch) -> list[float]:
    """Record the total gradient norm Adam sees at each of its steps."""
    seen: list[float] = []
    step = torch.optim.Adam.step

    def recording_step(self, *args, **kwargs):
        grads = [p.grad for group in self.param_groups for p in group["params"] if p.grad is not None]
        seen.append(float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))))
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", recording_step)
    return seen


def test_clip_grad_bounds_the_gradient_the_optimizer_sees(photos, tmp_path, monkeypatch):
    free = _grad_norms_at_step(monkeypatch)
    fit(tiny_config(photos, tmp_path / "free", clip_grad=0.0))
    clip = min(free) / 2  # below every unclipped norm, so clipping must act on every step
    clipped = _grad_norms_at_step(monkeypatch)
    run = fit(tiny_config(photos, tmp_path / "clipped", clip_grad=clip))
    assert len(clipped) == 6 and max(clipped) <= clip * (1 + 1e-5)
    assert "gnorm" in (run / "train.log").read_text()
    with pytest.raises(UsageError, match="clip_grad"):
        fit(tiny_config(photos, tmp_path / "bad", clip_grad=-1.0))


def test_runs_saved_before_clipping_resume_without_it():
    old = tiny_config(Path("p"), Path("o")).to_dict()
    del old["clip_grad"]
    assert TrainConfig.from_dict(old).clip_grad == 0.0


def test_non_finite_batches_are_skipped_and_a_diverged_run_stops(photos, tmp_path, monkeypatch):
    sample = sample_batch
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        low, high = sample(*args, **kwargs)
        return (low * float("nan"), high) if calls["n"] == 2 else (low, high)

    monkeypatch.setattr("lowlight_cli.training.loop.sample_batch", poisoned)
    run = fit(tiny_config(photos, tmp_path / "one"))
    last = torch.load(run / "last.pt", weights_only=True)
    assert last["step"] == 6 and calls["n"] == 7
    assert all(torch.isfinite(v).all() for v in last["model"].values())
    assert "step 2 skipped" in (run / "train.log").read_text()

    monkeypatch.setattr("lowlight_cli.training.loop.sample_batch", lambda *a, **k: tuple(t * float("nan") for t in sample(*a, **k)))
    with pytest.raises(TrainingError, match="diverged"):
        fit(tiny_config(photos, tmp_path / "all"))


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    target = tmp_path / "last.pt"
    atomic_save({"step": 1}, target)

    def broken_save(obj, f):
        f.write(b"half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OutputError, match="No space left on device"):  # one Error: line, not a traceback
        atomic_save({"step": 2}, target)
    assert torch.load(target, weights_only=True) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_run_files_are_made_with_the_usual_mode_and_export_is_byte_reproducible(photos, tmp_path):
    old = os.umask(0o022)
    try:
        run = fit(tiny_config(photos, tmp_path / "run", steps=3))
        path, sha, _ = export(run)
    finally:
        os.umask(old)
    for name in ("last.pt", "best.pt", "config.json", "train.log", "export/msrnet_tiny-synthetic.safetensors"):
        assert (run / name).stat().st_mode & 0o777 == 0o644, name  # tempfile.mkstemp made 0600
    first = path.read_bytes()
    for _ in range(3):
        assert export(run)[1] == sha and path.read_bytes() == first


def test_a_read_only_out_is_one_error_line_before_any_work(cli, photos, tmp_path, read_only, monkeypatch):
    monkeypatch.setattr("lowlight_cli.training.loop._load_data", lambda *a, **k: pytest.fail("images were loaded"))
    ro = tmp_path / "ro"
    ro.mkdir()
    read_only(ro)
    for out, where in ((ro, f"the output folder {ro}"), (ro / "run", f"{ro} to make the output folder {ro / 'run'}")):
        code, _, err = cli("train", "--model", "msrnet_tiny", "--synthetic", photos, "--out", out, "--device", "cpu")
        assert code == 1 and "Traceback" not in err
        errors = [line for line in err.splitlines() if line.startswith("Error: ")]
        assert errors == [f"Error: cannot write into {where}: Read-only file system"]
        assert "Hint: choose a writable --out folder" in err


def test_resume_refuses_options_that_differ_from_the_run(photos, tmp_path, cli):
    run = fit(tiny_config(photos, tmp_path / "run", steps=3))
    with pytest.raises(UsageError, match=r"--model mirnet_tiny \(the run's: msrnet_tiny\)"):
        fit(tiny_config(photos, run, model="mirnet_tiny", resume=True))
    with pytest.raises(UsageError, match=r"--batch 4 \(the run's: 2\), --lr 0.5 \(the run's: 0.001\)"):
        fit(tiny_config(photos, run, lr=0.5, batch=4, resume=True))
    before = (run / "last.pt").read_bytes()
    code, _, err = cli("train", "--model", "mirnet_tiny", "--synthetic", photos, "--out", run, "--resume", "--device", "cpu")
    assert code == 2 and "Traceback" not in err and "--model mirnet_tiny (the run's: msrnet_tiny)" in err
    assert (run / "last.pt").read_bytes() == before


def test_export_of_a_checkpoint_without_a_validation_score_is_refused_before_anything_is_written(photos, tmp_path):
    run = fit(tiny_config(photos, tmp_path / "run", steps=3))
    exported = {f: f.read_bytes() for f in (run / "export").iterdir()}  # fit() exported the real best.pt
    (run / "best.pt").write_bytes((run / "last.pt").read_bytes())  # last.pt carries no score
    with pytest.raises(UsageError, match="no validation score"):
        export(run)
    assert {f: f.read_bytes() for f in (run / "export").iterdir()} == exported


def test_export_writes_safetensors_with_matching_sha(photos, tmp_path):
    run = fit(tiny_config(photos, tmp_path / "run", steps=3))
    for name in ("config.json", "train.log", "last.pt", "best.pt"):
        assert (run / name).is_file()
    path, sha, text = export(run)
    assert path == run / "export" / "msrnet_tiny-synthetic.safetensors"
    assert sha256_file(path) == sha
    entry = tomllib.loads(text)["weights"]["msrnet_tiny.synthetic"]
    assert entry["sha256"] == sha and entry["arch"] == "msrnet_tiny"
    assert entry["trained"]["steps"] == 3 and "val_psnr" in entry["metrics"]
    assert entry["hparams"] == {"scales": [1.0, 100.0], "depth": 2, "width": 4}
    assert entry["train_command"].startswith(f"lowlight train --model msrnet_tiny --synthetic {photos} ")
    assert "--steps 3 " in entry["train_command"] and "--clip-grad 0.0 " in entry["train_command"]


def test_init_starts_from_a_weights_file_and_says_so(photos, tmp_path):
    base, _, _ = export(fit(tiny_config(photos, tmp_path / "base", steps=3)))
    # Adam moves each weight by about lr per step whatever the gradient, so at lr 1e-9 the
    # fine-tuned weights stay within 1e-8 of their start: the file's with --init, random without.
    tuned = fit(tiny_config(photos, tmp_path / "tuned", steps=3, lr=1e-9, init=base))
    fresh = fit(tiny_config(photos, tmp_path / "fresh", steps=3, lr=1e-9))
    start = load_state(base, None)[0]
    for run, close in ((tuned, True), (fresh, False)):
        state = torch.load(run / "best.pt", weights_only=True)["model"]
        assert all(torch.allclose(state[k], v, atol=1e-8) for k, v in start.items()) is close
    _, _, text = export(tuned)
    assert f"--init {base} " in tomllib.loads(text)["weights"]["msrnet_tiny.synthetic"]["train_command"]
    assert json.loads((tuned / "config.json").read_text())["init_sha256"] == sha256_file(base)


def test_train_only_the_gate_leaves_the_rest_of_the_init_file_as_it_was(photos, tmp_path):
    base, _, _ = export(fit(tiny_config(photos, tmp_path / "base", model="mirnet_tiny", steps=3)))
    run = fit(tiny_config(photos, tmp_path / "gate", model="mirnet_tiny", init=base, train_only="gate", lr=1e-2))
    start, tuned = load_state(base, None)[0], torch.load(run / "best.pt", weights_only=True)["model"]
    assert all(torch.equal(tuned[k], v) for k, v in start.items() if not k.startswith("gate."))
    assert any(not torch.equal(tuned[k], start[k]) for k in start if k.startswith("gate."))
    _, _, text = export(run)
    assert "--train-only gate" in next(iter(tomllib.loads(text)["weights"].values()))["train_command"]
    with pytest.raises(UsageError, match="no parameter of mirnet_tiny starts with it"):
        fit(tiny_config(photos, tmp_path / "typo", model="mirnet_tiny", init=base, train_only="gates"))
    with pytest.raises(UsageError, match="would stay random"):
        fit(tiny_config(photos, tmp_path / "random", model="mirnet_tiny", train_only="gate"))


def test_init_with_another_architecture_is_refused(photos, tmp_path):
    base, _, _ = export(fit(tiny_config(photos, tmp_path / "base", steps=3)))
    with pytest.raises(WeightsError, match="holds weights for 'msrnet_tiny', not 'mirnet_tiny'"):
        fit(tiny_config(photos, tmp_path / "other", model="mirnet_tiny", init=base))


def test_ddp_two_cpu_processes(photos, tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "lowlight_cli.cli", "train", "--model", "msrnet_tiny", "--synthetic", str(photos),
           "--out", str(out), "--steps", "4", "--batch", "2", "--patch", "16", "--val-every", "2",
           "--ckpt-every", "2", "--threads", "1", "--device", "cpu"]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-8000:]  # the ranks' own tracebacks come before torchrun's summary
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert ckpt["step"] == 4
    assert len(ckpt["loader_rng"]) == 2 and ckpt["loader_rng"][0] != ckpt["loader_rng"][1]
    assert (out / "export" / "msrnet_tiny-synthetic.safetensors").is_file()


def test_cosine_schedule_is_pure_warms_up_and_ends_at_lr_times_gamma(tmp_path):
    c = resolve(TrainConfig(model="msrnet_tiny", out=tmp_path, steps=102, lr=1.0, gamma=0.01,
                                        schedule="cosine", warmup=1))
    lrs = [lr_at(s, c) for s in range(102)]
    assert lrs[0] == pytest.approx(1.0) and lrs[1] == pytest.approx(1.0)
    assert lrs[-1] == pytest.approx(0.01) and lrs[51] == pytest.approx(0.505)
    assert all(a >= b for a, b in zip(lrs[1:], lrs[2:]))  # monotone after warm-up
    assert lrs == [lr_at(s, c) for s in range(102)]
    with pytest.raises(UsageError):
        resolve(TrainConfig(model="msrnet_tiny", out=tmp_path, schedule="linear"))


def test_darken_traced_tells_what_it_drew_and_undo_inverts_it():
    rgb = np.random.default_rng(2).uniform(0.2, 0.9, size=(48, 64, 3)).astype(np.float32)
    low, drawn = darken_traced(rgb, np.random.default_rng(4), spatial=True)
    assert np.array_equal(low, darken(rgb, np.random.default_rng(4), spatial=True))  # the same draws
    assert drawn.exposure.shape == (48, 64, 1) and 1.8 <= drawn.gamma <= 2.6
    # Without noise and quantization, undo gives the image back exactly ...
    clean = np.power(np.power(rgb.astype(np.float64), 2.2) * drawn.exposure, 1.0 / drawn.gamma)
    assert np.abs(drawn.undo(clean) - rgb).max() < 1e-5
    # ... and with them, far closer than the darkened input is.
    assert np.abs(drawn.undo(low) - rgb).mean() < 0.25 * np.abs(low - rgb).mean()


def test_spatial_darkening_keeps_the_lit_part_lit():
    rgb = np.full((64, 64, 3), 0.6, np.float32)
    rng = np.random.default_rng(3)
    mask = lit_mask(64, 64, np.random.default_rng(3))
    out = darken(rgb, rng, spatial=True)
    lit, dark = mask[..., 0] > 0.9, mask[..., 0] < 0.1
    assert lit.any() and dark.any()
    assert out[lit].mean() > 2 * out[dark].mean()  # a lamp stays brighter than its dark surround
    assert np.array_equal(out, darken(rgb, np.random.default_rng(3), spatial=True))
    wide = [darken(rgb, np.random.default_rng(s), exposure=WIDE_EXPOSURE).mean() for s in range(40)]
    assert min(wide) < 0.25 and max(wide) > 0.45  # from LOL-dark to nearly unchanged


def test_mixture_fractions_shape_the_batch(photos, tmp_path):
    images = load_photos(photos)
    ident = {"identity": 1.0, "global": 0.0, "spatial": 0.0, "lol": 0.0}
    low, high = sample_batch(images, np.random.default_rng(0), batch=4, patch=8, downscale=1, mixture=ident)
    assert torch.equal(low, high)
    lol_only = {"identity": 0.0, "global": 0.0, "spatial": 0.0, "lol": 1.0}
    a = sample_batch(images, np.random.default_rng(0), batch=4, patch=8, downscale=1, mixture=lol_only)
    b = sample_batch(images, np.random.default_rng(0), batch=4, patch=8, downscale=1)
    assert all(torch.equal(x, y) for x, y in zip(a, b))  # an all-LOL mixture draws nothing extra
    with pytest.raises(UsageError):
        resolve(tiny_config(photos, tmp_path, mix_identity=0.6, mix_global=0.6))


def test_clean_pairs_are_global_darkenings_without_noise(photos, tmp_path):
    """--clean: that share of the global pairs is darkened without sensor noise (a flat grey image stays
    flat, only darker) towards the image itself; 0 draws nothing extra."""
    from lowlight_cli.training.config import cli_command
    from lowlight_cli.training.data import Images

    grey = np.full((40, 48, 3), 160, np.uint8)
    images = Images(["a", "b"], [grey, grey], None)
    darkened = {"identity": 0.0, "global": 1.0, "spatial": 0.0, "lol": 0.0}
    low, high = sample_batch(images, np.random.default_rng(0), batch=8, patch=16, downscale=1, mixture=darkened, variants=Variants(clean=1.0))
    flat = low.flatten(1)
    assert torch.equal(flat.amax(1), flat.amin(1)) and (flat[:, 0] <= high.flatten(1)[:, 0]).all()  # no noise, darker
    assert (high == 160 / 255).all()
    noisy = sample_batch(images, np.random.default_rng(0), batch=8, patch=16, downscale=1, mixture=darkened)
    assert (noisy[0].flatten(1).amax(1) > noisy[0].flatten(1).amin(1)).all()  # the plain global pairs are noisy
    again = sample_batch(images, np.random.default_rng(0), batch=8, patch=16, downscale=1, mixture=darkened, variants=Variants(clean=0.0))
    assert all(torch.equal(x, y) for x, y in zip(noisy, again))

    def config(**kw) -> TrainConfig:
        return resolve(TrainConfig(model="msrnet_tiny", out=tmp_path, **({"photos": photos, "mix_global": 0.3} | kw)))

    assert "--clean 0.5" in cli_command(config(clean=0.5))
    for bad in ({"clean": -0.1}, {"mix_global": 0.0, "clean": 0.5}):
        with pytest.raises(UsageError):
            config(**bad)


def test_backlit_darkening_shades_subjects_and_keeps_the_frame_lit():
    """A backlit pair: subjects (where :func:`shadow_mask` is 0) get 2-5 stops less than the full light, the
    lit frame around them 0-1 stop less."""
    from lowlight_cli.training.pairs import BACKLIT_EXPOSURE, shadow_mask

    rgb = np.full((96, 128, 3), 0.6, np.float32)
    for seed in range(6):
        mask = shadow_mask(96, 128, np.random.default_rng(seed))[..., 0]
        assert (mask < 0.1).any() and (mask > 0.9).mean() > 0.3  # a shaded subject in a mostly lit frame
        out, drawn = darken_traced(rgb, np.random.default_rng(seed), exposure=BACKLIT_EXPOSURE, backlit=True)
        k = drawn.exposure[..., 0]
        subject, frame = k <= k.min() * 1.05, k >= k.max() / 1.05
        assert subject.any() and frame.mean() > 0.3
        assert 0.03 <= k.min() <= 0.25 and 0.5 <= k.max() <= 1.0
        assert out[frame].mean() > 1.3 * out[subject].mean()
        assert np.array_equal(out, darken(rgb, np.random.default_rng(seed), exposure=BACKLIT_EXPOSURE, backlit=True))


def test_backlit_share_turns_spatial_pairs_backlit(photos, tmp_path):
    """--backlit: that share of the spatial pairs is backlit (the lamps' mask turned into subjects in
    shadow); 0 draws nothing extra, so runs without it keep their batches."""
    from lowlight_cli.training.config import cli_command
    from lowlight_cli.training.data import Images

    grey = np.full((64, 64, 3), 160, np.uint8)
    images = Images(["a", "b"], [grey, grey], None)
    shaded = {"identity": 0.0, "global": 0.0, "spatial": 1.0, "lol": 0.0}
    plain = sample_batch(images, np.random.default_rng(0), batch=6, patch=64, downscale=1, mixture=shaded)
    again = sample_batch(images, np.random.default_rng(0), batch=6, patch=64, downscale=1, mixture=shaded, variants=Variants(backlit=0.0))
    assert all(torch.equal(x, y) for x, y in zip(plain, again))
    low, _ = sample_batch(images, np.random.default_rng(0), batch=6, patch=64, downscale=1, mixture=shaded, variants=Variants(backlit=1.0))
    # A lamps pair is dark away from its lamps and sky, often at the border; a backlit one is lit there.
    border = torch.cat([low[:, :, :4].flatten(1), low[:, :, -4:].flatten(1)], 1).mean(1)
    plain_border = torch.cat([plain[0][:, :, :4].flatten(1), plain[0][:, :, -4:].flatten(1)], 1).mean(1)
    assert border.mean() > 1.25 * plain_border.mean()

    def config(**kw) -> TrainConfig:
        return resolve(TrainConfig(model="msrnet_tiny", out=tmp_path, **({"photos": photos, "mix_spatial": 0.3} | kw)))

    assert "--backlit 0.5" in cli_command(config(backlit=0.5))
    for bad in ({"backlit": 1.5}, {"mix_spatial": 0.0, "backlit": 0.5}):
        with pytest.raises(UsageError):
            config(**bad)


def test_backlit_clean_share_takes_the_noise_off_backlit_pairs(photos, tmp_path):
    """--backlit-clean: that share of the backlit pairs is made without sensor noise; 0 draws nothing
    extra, so backlit runs without it keep their batches."""
    import torch.nn.functional as F

    from lowlight_cli.training.config import cli_command
    from lowlight_cli.training.data import Images

    grad = np.linspace(40, 220, 64, dtype=np.float32)
    smooth = np.stack([np.add.outer(grad, grad) / 2] * 3, -1).astype(np.uint8)  # no texture of its own
    images = Images(["a", "b"], [smooth, smooth], None)
    shaded = {"identity": 0.0, "global": 0.0, "spatial": 1.0, "lol": 0.0}
    noisy = Variants(backlit=1.0)
    plain = sample_batch(images, np.random.default_rng(0), batch=6, patch=64, downscale=1, mixture=shaded, variants=noisy)
    again = sample_batch(images, np.random.default_rng(0), batch=6, patch=64, downscale=1, mixture=shaded,
                         variants=Variants(backlit=1.0, backlit_clean=0.0))
    assert all(torch.equal(x, y) for x, y in zip(plain, again))
    clean, _ = sample_batch(images, np.random.default_rng(0), batch=6, patch=64, downscale=1, mixture=shaded,
                            variants=Variants(backlit=1.0, backlit_clean=1.0))

    def grain(low: torch.Tensor) -> float:  # what is left of each input after a 3x3 mean: its noise
        return float((low - F.avg_pool2d(low, 3, stride=1, padding=1, count_include_pad=False)).abs().mean())

    assert grain(clean) < 0.5 * grain(plain[0]), (grain(clean), grain(plain[0]))

    def config(**kw) -> TrainConfig:
        return resolve(TrainConfig(model="msrnet_tiny", out=tmp_path, **({"photos": photos, "mix_spatial": 0.3} | kw)))

    assert "--backlit 0.5 --backlit-clean 0.5" in cli_command(config(backlit=0.5, backlit_clean=0.5))
    for bad in ({"backlit": 0.5, "backlit_clean": 1.5}, {"backlit_clean": 0.5}):
        with pytest.raises(UsageError):
            config(**bad)


def test_lowkey_pairs_are_graded_photos_that_are_their_own_target(photos, tmp_path):
    """--lowkey: that share of the identity pairs is a photo graded darker (white kept, no noise) and
    trained to come back as it is; the LOL images stay plain identity pairs, and 0 draws nothing extra."""
    from lowlight_cli.training.config import cli_command
    from lowlight_cli.training.data import Images
    from lowlight_cli.training.pairs import lowkey

    white = np.full((40, 48, 3), 255, np.uint8)
    lol = Images(["a", "b"], [white, white], None)
    ident = {"identity": 1.0, "global": 0.0, "spatial": 0.0, "lol": 0.0}
    photo_images = load_photos(photos)
    low, high = sample_batch(lol, np.random.default_rng(0), batch=16, patch=8, downscale=1, mixture=ident,
                             photos=photo_images, variants=Variants(lowkey=1.0))
    assert torch.equal(low, high)  # its own target
    assert (low < 1.0).all()  # every one from the photos (none of the white LOL images), graded
    plain = sample_batch(lol, np.random.default_rng(0), batch=16, patch=8, downscale=1, mixture=ident, photos=photo_images)
    again = sample_batch(lol, np.random.default_rng(0), batch=16, patch=8, downscale=1, mixture=ident,
                         photos=photo_images, variants=Variants(lowkey=0.0))
    assert all(torch.equal(x, y) for x, y in zip(plain, again))
    assert (plain[0] == 1.0).any()  # without it some identity pairs are the white LOL images
    rgb = np.linspace(0, 1, 256, dtype=np.float32).reshape(16, 16, 1).repeat(3, axis=2)
    graded = lowkey(rgb, np.random.default_rng(1))
    assert graded.max() == 1.0 and graded.min() == 0.0  # white stays white, black black
    assert (graded <= rgb + 1 / 510).all() and graded.mean() < 0.9 * rgb.mean()  # darker, never lighter
    def config(**kw) -> TrainConfig:
        return resolve(TrainConfig(model="msrnet_tiny", out=tmp_path, **({"photos": photos, "mix_identity": 0.5} | kw)))

    assert "--lowkey 0.5" in cli_command(config(lowkey=0.5))
    for bad in ({"lowkey": 1.5}, {"mix_identity": 0.0, "lowkey": 0.5}, {"photos": None, "lowkey": 0.5}):
        with pytest.raises(UsageError):
            config(**bad)


def test_selection_score_caps_identity_and_uses_every_set():
    assert selection_score({"lol": 20.0}) == 20.0
    assert selection_score({"lol": 20.0, "identity": 50.0, "mixed": 23.0}) == pytest.approx((20 + 32 + 23) / 3)
    assert selection_score({"lol": 20.0, "identity": 20.0, "mixed": 20.0}) == pytest.approx(20.0)


def test_mixture_run_validates_identity_and_mixed_and_records_them(photos, tmp_path):
    run = fit(tiny_config(photos, tmp_path / "mix", mix_identity=0.3, mix_spatial=0.3, ema=0.5))
    log = (run / "train.log").read_text()
    assert " identity " in log and " mixed " in log and " score " in log
    best = torch.load(run / "best.pt", weights_only=True)
    assert set(best["val"]) == {"lol", "identity", "mixed"}
    assert "ema" in torch.load(run / "last.pt", weights_only=True)
    path, _, toml = export(run)
    assert path.name == "msrnet_tiny-mix.safetensors"
    assert list(tomllib.loads(toml)["weights"]) == ["msrnet_tiny.mix"]
    entry = next(iter(tomllib.loads(toml)["weights"].values()))
    assert entry["mixture"] == {"identity": 0.3, "global": 0.0, "spatial": 0.3, "lol": 0.4}
    assert {"val_identity_psnr", "val_mixed_psnr"} <= set(entry["metrics"])
    assert "--mix-spatial 0.3" in entry["train_command"] and "--ema 0.5" in entry["train_command"]


def test_ema_run_resumes_bit_identical(photos, tmp_path, monkeypatch):
    a, b = _full_and_killed_then_resumed(photos, tmp_path, monkeypatch, ema=0.9)
    for k in a["ema"]:
        assert torch.equal(a["ema"][k], b["ema"][k]), k
    assert not all(torch.equal(a["ema"][k], a["model"][k]) for k in a["ema"])  # the average is not the net


def test_engine_auto_falls_back_and_bf16_needs_native_support(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr("lowlight_cli.training.engine.cpu_features", lambda: {"avx2"})
    assert pick_engine("auto", cpu) == "channels_last"
    with pytest.raises(UsageError):
        pick_engine("bf16", cpu)
    assert pick_engine("auto", torch.device("cuda")) == "fp32"
    monkeypatch.setattr("lowlight_cli.training.engine.cpu_features", lambda: {"avx2", "avx512_bf16"})
    assert pick_engine("auto", cpu) == "bf16"


@pytest.mark.parametrize("engine", ["fp32", "channels_last", "bf16"])
def test_every_engine_gives_the_fp32_gradient(engine):
    spec = registry.get("mirnet_tiny")
    torch.manual_seed(0)
    net = spec.create()
    x, y = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    grads = []
    for e in ("fp32", engine):
        net.zero_grad()
        loss, _ = spec.recipe.loss()(EngineForward(net, e), x, y)
        loss.backward()
        grads.append(torch.cat([p.grad.flatten() for p in net.parameters()]))
    assert all(p.dtype == torch.float32 for p in net.parameters())
    tol = 0.05 if engine == "bf16" else 1e-4
    assert torch.allclose(grads[0], grads[1], rtol=tol, atol=tol * grads[0].abs().max())


def test_the_recorded_command_gives_warmup_view_and_shares_back(tmp_path):
    """config.json's `command` (and a weights.toml entry's train_command) must start the same run."""
    import shlex

    from typer.testing import CliRunner

    from lowlight_cli import cli
    from lowlight_cli.training import loop
    from lowlight_cli.training.config import cli_command

    config = resolve(TrainConfig(model="lantern_tiny", out=tmp_path / "r", data_dir=tmp_path, warmup=30, view=96,
                                 mix_global=0.2, mix_spatial=0.3, clean=0.5, backlit=0.5, backlit_clean=0.25))
    seen: list[TrainConfig] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(loop, "fit", lambda c: seen.append(c))
        result = CliRunner().invoke(cli.app, shlex.split(cli_command(config))[1:])
    assert result.exit_code == 0, result.output
    assert resolve(seen[0]) == config


def _tiny_lol(root: Path, n: int = 6) -> Path:
    """A LOL layout made here: ``n`` 40x48 pairs (the input a tenth of the target), scenes of two."""
    rng = np.random.default_rng(1)
    for sub in ("low", "high"):
        (root / "our485" / sub).mkdir(parents=True)
    for i in range(n):
        high = cv2.resize(rng.uniform(60, 230, size=(5, 6, 3)).astype(np.float32), (48, 40), interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(str(root / "our485" / "high" / f"{i}.png"), np.clip(high, 0, 255).astype(np.uint8))
        cv2.imwrite(str(root / "our485" / "low" / f"{i}.png"), np.clip(high / 10, 0, 255).astype(np.uint8))
    (root / "scenes.csv").write_text("id,scene\n" + "".join(f"{i},{i // 2}\n" for i in range(n)))
    return root


def test_targets_replace_what_real_pairs_train_towards_and_nothing_else(tmp_path):
    """--targets (distillation): a real pair trains towards its image in the folder, a synthetic pair
    still towards the clean image it was made from, and validation still scores against high/."""
    from lowlight_cli.errors import DatasetError
    from lowlight_cli.training.config import cli_command
    from lowlight_cli.training.data import load_split

    root = _tiny_lol(tmp_path / "lol")
    targets = tmp_path / "teacher"
    targets.mkdir()
    for i in range(6):
        cv2.imwrite(str(targets / f"{i}.png"), np.full((40, 48, 3), 201, np.uint8))
    config = resolve(TrainConfig(model="msrnet_tiny", out=tmp_path / "run", data_dir=root, targets=targets, val_fraction=0.3))
    split = load_split(config)
    assert all(float(h.std()) > 1 for h in split.val.high)  # validation keeps the real targets
    real = {"identity": 0.0, "global": 0.0, "spatial": 0.0, "lol": 1.0}
    _, high = sample_batch(split.train, np.random.default_rng(0), batch=4, patch=16, downscale=1, mixture=real)
    assert torch.all(high == 201 / 255)
    ident = {"identity": 1.0, "global": 0.0, "spatial": 0.0, "lol": 0.0}
    low, high = sample_batch(split.train, np.random.default_rng(0), batch=4, patch=16, downscale=1, mixture=ident)
    assert torch.equal(low, high) and float(high.std()) > 0.01  # made from the high/ images
    assert f"--targets {targets} " in cli_command(config) + " "
    entry = tomllib.loads(export(fit(dataclasses.replace(config, steps=2, batch=2, patch=16, val_every=2, ckpt_every=2,
                                                        threads=1, device="cpu")))[2])
    assert f"--targets {targets}" in next(iter(entry["weights"].values()))["train_command"]
    (targets / "5.png").unlink()
    with pytest.raises(DatasetError, match="no target for 1 of the 6 pairs"):
        load_split(config)
    cv2.imwrite(str(targets / "5.png"), np.full((20, 48, 3), 201, np.uint8))
    with pytest.raises(DatasetError, match="its pair 48x40"):
        load_split(config)
    with pytest.raises(UsageError, match="--synthetic has none"):
        resolve(TrainConfig(model="msrnet_tiny", out=tmp_path / "s", synthetic=targets, targets=targets))
