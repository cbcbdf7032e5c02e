"""Lantern: identity at the start, exact tiling through the glance, the glance as a video's context."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conftest import seeded_net as _seeded_net
from lowlight_cli import registry
from lowlight_cli.context import Glance, glance_of, glances, glancing_views
from lowlight_cli.images import read_image
from lowlight_cli.inference import Enhancer, RunOptions
from lowlight_cli.models.lantern import Lantern, RepConv, interpolation_rows

SAMPLE = Path(__file__).resolve().parents[1] / "lowlight_cli" / "samples" / "coffee_dark.png"


def seeded_net(spec) -> torch.nn.Module:
    """The conftest's seeded net with its linear layers drawn too (the picture's colour transform and
    the grid's global path start at zero or near it), so the glance visibly matters."""
    net = _seeded_net(spec)
    for module in net.modules():
        if isinstance(module, torch.nn.Linear):
            torch.nn.init.normal_(module.weight, std=0.5)
    return net


def _sample(h: int, w: int) -> np.ndarray:
    return np.clip(cv2.resize(read_image(SAMPLE).rgb, (w, h), interpolation=cv2.INTER_AREA), 0.0, 1.0)


@pytest.mark.parametrize("name", ["lantern", "lantern_tiny"])
@pytest.mark.parametrize("train", [False, True])
def test_a_fresh_network_returns_its_input_exactly(name, train):
    torch.manual_seed(0)
    net = registry.get(name).create(train=train)
    x = torch.rand(2, 3, 36, 52)
    with torch.no_grad():
        assert torch.equal(net.eval()(x), x) and torch.equal(net.train()(x), x)


def test_the_training_form_folds_into_the_network_inference_runs():
    """Re-parameterised training: each branched convolution (3x3, 1x1, identity, batch-normalised)
    folds into one 3x3 convolution; the folded network computes what the branched one computes in eval
    mode and holds the inference form's keys, so exported weights load into ``create()``."""
    spec = registry.get("lantern_tiny")
    torch.manual_seed(0)
    net = spec.create(train=True)
    assert any(isinstance(m, RepConv) for m in net.modules())
    for m in net.modules():  # statistics and scales a training run would have left, not the fresh ones
        if isinstance(m, torch.nn.BatchNorm2d):
            for t, lo, hi in ((m.running_mean, -0.5, 0.5), (m.running_var, 0.3, 2.0), (m.weight, 0.5, 1.5), (m.bias, -0.2, 0.2)):
                t.data.uniform_(lo, hi)
    torch.nn.init.normal_(net.denoise[-1].weight, std=0.2)  # the zero-initialised last layer, drawn
    x = torch.rand(2, 3, 48, 64)
    with torch.no_grad():
        branched = net.eval()(x)
        folded = net.fold()(x)
        plain = spec.create()
        plain.load_state_dict(net.state_dict())  # strict: the same keys and shapes
        assert (branched - x).abs().mean() > 1e-3  # the drawn denoiser changes the picture
        assert (folded - branched).abs().max() < 1e-5 and torch.equal(plain.eval()(x), folded)
    assert not any(isinstance(m, RepConv) for m in net.modules())


def test_a_run_from_scratch_trains_the_branched_form_and_exports_the_folded_one(tmp_path):
    from lowlight_cli.training.checkpoints import export, inference_state, load_checkpoint
    from lowlight_cli.training.config import TrainConfig
    from lowlight_cli.training.loop import fit
    from lowlight_cli.weights import load_state

    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(4):
        cv2.imwrite(str(photos / f"{i}.png"), (_sample(72, 88) * 255 * (0.5 + 0.15 * i)).clip(0, 255).astype(np.uint8))
    config = TrainConfig(model="lantern_tiny", out=tmp_path / "run", synthetic=photos, steps=3, batch=2,
                         val_every=3, ckpt_every=3, log_every=1, threads=1, device="cpu", val_fraction=0.3)
    run = fit(config)
    best = load_checkpoint(run / "best.pt")
    assert any(".b3." in k for k in best["model"])  # trained branched
    spec = registry.get("lantern_tiny")
    path, _, _ = export(run)
    state = load_state(path, None)[0]
    assert state.keys() == spec.create().state_dict().keys()
    branched = spec.create(train=True)
    branched.load_state_dict(best["model"])
    net = spec.create()
    net.load_state_dict(state)
    x = torch.from_numpy(_sample(48, 64).transpose(2, 0, 1).copy())[None]
    with torch.no_grad():
        assert (net.eval()(x) - branched.eval()(x)).abs().max() < 1e-5
    # A fine-tune (--init), and a run saved before the training form existed, train the inference form:
    # their weights need no folding, and such a run still exports and resumes.
    from lowlight_cli.training.config import resolve

    assert resolve(TrainConfig(model="lantern_tiny", out=run, init=path)).train_form is False
    assert inference_state(spec, resolve(TrainConfig(model="lantern_tiny", out=run, init=path)), state) is state
    old = dict(best["config"])
    del old["train_form"]
    assert TrainConfig.from_dict(old).train_form is False


def test_interpolation_rows_are_a_partition_of_unity_that_follows_the_box():
    rows = interpolation_rows(torch.tensor([[0.0]]), 64, torch.tensor([[64.0]]), 4)
    assert torch.allclose(rows.sum(-1), torch.ones(1, 64))
    # Row i of a crop starting at 16 is row 16 + i of the whole picture.
    crop = interpolation_rows(torch.tensor([[16.0]]), 8, torch.tensor([[64.0]]), 4)
    assert torch.equal(crop, rows[:, 16:24])


def test_the_glance_is_the_whole_picture_area_averaged():
    x = torch.rand(1, 3, 64, 96)
    glance, box = Glance(16)(x)
    assert torch.allclose(glance, x.view(1, 3, 16, 4, 16, 6).mean(dim=(3, 5)), atol=1e-6)
    assert box.tolist() == [[0.0, 0.0, 64.0, 96.0]]
    odd = torch.rand(2, 3, 37, 101)  # bins of unequal sizes, as torch's adaptive pooling makes them
    from lowlight_cli.context import _area_average

    traced = _area_average(_area_average(odd, 16, dim=3), 16, dim=2).float()  # what an ONNX graph computes
    assert torch.allclose(traced, glance_of(odd, 16), atol=1e-6)


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_tiles_give_one_pass(backend, tmp_path, monkeypatch):
    """Every tile gets the whole picture's glance and its own place in it, and the overlap covers the
    denoiser's reach: tiles give one pass to float rounding (a convolution sums in another order on
    another crop size), which the default backend's 8-bit picture does not see."""
    if backend == "onnx":
        pytest.importorskip("onnxruntime")
        monkeypatch.setenv("LOWLIGHT_CACHE", str(tmp_path))
    spec = registry.get("lantern_tiny")
    net = seeded_net(spec)
    rgb = _sample(151, 233)
    whole = Enhancer(spec, net, RunOptions(device="cpu", memory_gb=64, backend=backend), "t")
    tiled = Enhancer(spec, net, RunOptions(device="cpu", tile=2 * spec.overlap, backend=backend), "t")
    assert tiled.plan(151, 233)[0] < 151  # several tiles each way
    one, many = whole(rgb), tiled(rgb)
    assert np.abs(one - rgb).mean() > 0.01  # the seeded net changes the picture
    assert np.abs(one - many).max() <= 2e-6  # float rounding, times the seeded net's large gains
    if backend == "onnx":
        assert np.array_equal(np.round(one * 255).astype(np.uint8), np.round(many * 255).astype(np.uint8))
        import onnxruntime as ort

        [graph] = (tmp_path / "onnx").glob("*-glance.onnx")
        names = [i.name for i in ort.InferenceSession(str(graph)).get_inputs()]
        assert {"glance_value_0", "glance_value_1"} <= set(names)  # the grid is given, not run by every tile


def test_the_grid_is_the_mean_over_the_glance_turned_and_is_predicted_once_per_picture(monkeypatch):
    """In eval mode the grid network's prediction is averaged over the glance's 8 flips and quarter
    turns, each turned back: turning the picture then turns its grid exactly (the exposure choice does
    not hang on the orientation), and every tile of a picture shares the one prediction."""
    spec = registry.get("lantern_tiny")
    net = seeded_net(spec).eval()
    glance = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        grid, affine = net.predict(glance)
        assert (net.grid(glance)[0] - grid).abs().max() > 1e-3  # not the glance seen once
        for turn in range(4):
            for mirrored in (False, True):
                seen, expect = torch.rot90(glance, turn, (2, 3)), torch.rot90(grid, turn, (2, 3))
                seen, expect = (seen.flip(3), expect.flip(3)) if mirrored else (seen, expect)
                g, a = net.predict(seen)
                assert torch.allclose(g, expect, atol=1e-5) and torch.allclose(a, affine, atol=1e-5)
    calls = []
    forward = type(net.grid).forward
    monkeypatch.setattr(type(net.grid), "forward", lambda self, g: calls.append(g.shape[0]) or forward(self, g))
    tiled = Enhancer(spec, net, RunOptions(device="cpu", tile=2 * spec.overlap, backend="torch"), "t")
    assert tiled.plan(151, 233)[0] < 151
    tiled(_sample(151, 233))
    assert calls == [1] * 8  # the 8 views once, for all the tiles


def test_a_tile_sees_the_whole_picture_not_itself():
    """Without the glance a tile would see only its own crop: the right half of a picture whose left
    half is dark comes out differently alone than inside the picture."""
    spec = registry.get("lantern_tiny")
    net = seeded_net(spec)
    rgb = _sample(64, 128)
    rgb[:, :64] *= 0.1
    whole = Enhancer(spec, net, RunOptions(device="cpu", memory_gb=64, backend="torch"), "t")(rgb)
    alone = Enhancer(spec, net, RunOptions(device="cpu", memory_gb=64, backend="torch"), "t")(rgb[:, 64:].copy())
    assert np.abs(whole[:, 64 + 16 :] - alone[:, 16:]).max() > 1e-4


def test_a_video_frame_runs_with_the_glance_it_is_given():
    """The glance is the model's whole global context: measured as one item, and a given one (a
    video's average over frames) replaces the frame's own."""
    spec = registry.get("lantern_tiny")
    net = seeded_net(spec)
    rgb = _sample(60, 92)  # multiples of 4: the glance is taken from the picture as the net sees it, padded
    enhancer = Enhancer(spec, net, RunOptions(device="cpu", memory_gb=64, backend="torch"), "t")
    measured: list[torch.Tensor] = []
    own = enhancer(rgb, measured=measured)
    [glance] = measured
    x = torch.from_numpy(rgb.transpose(2, 0, 1).copy())[None]
    assert torch.equal(glance, glance_of(x, glances(net)[0].size))
    assert np.array_equal(enhancer(rgb, pooled=[glance]), own)
    assert np.abs(enhancer(rgb, pooled=[1.0 - glance]) - own).max() > 1e-4


def test_bad_hyperparameters_are_refused():
    with pytest.raises(ValueError, match="multiple of 16"):
        Lantern(glance=100)
    with pytest.raises(ValueError, match="depth"):
        Lantern(depth=1)


def test_a_training_crop_sees_its_picture_as_a_tile_does():
    """`lowlight train --view`: a crop run with its view's glance and its box comes out as that part of
    the whole view run in one pass (away from the crop's edge, where the denoiser reads past it)."""
    spec = registry.get("lantern_tiny")
    net = seeded_net(spec).eval()
    view = torch.from_numpy(_sample(128, 160).transpose(2, 0, 1).copy())[None]
    view[..., :, :80] *= 0.1
    with torch.no_grad():
        whole = net(view)
        crops = torch.cat([view[..., 16:80, 8:72], view[..., 48:112, 88:152]])
        box = torch.tensor([[16.0, 8.0, 128.0, 160.0], [48.0, 88.0, 128.0, 160.0]])
        with glancing_views(net, [view, view], box):
            out = net(crops)
        alone = net(crops)
    r = spec.overlap // 4  # past the denoiser's reach
    assert torch.allclose(out[0, :, r:-r, r:-r], whole[0, :, 16 + r : 80 - r, 8 + r : 72 - r], atol=1e-5)
    assert torch.allclose(out[1, :, r:-r, r:-r], whole[0, :, 48 + r : 112 - r, 88 + r : 152 - r], atol=1e-5)
    assert (alone - out).abs().max() > 1e-3  # without its view a crop is graded as a picture of its own


def test_sample_views_cuts_each_crop_from_its_view(lol_dir):
    from lowlight_cli.training.data import load_lol, sample_views

    images = load_lol(lol_dir).subset(list(range(4)))
    lol_only = {"identity": 0.0, "global": 0.0, "spatial": 0.0, "lol": 1.0}
    low, high, views, box = sample_views(images, np.random.default_rng(0), batch=3, patch=64, view=768, mixture=lol_only)
    assert low.shape == high.shape == (3, 3, 64, 64) and box.shape == (3, 4)
    for i, (v, (y, x, h, w)) in enumerate(zip(views, box.int().tolist())):
        assert v.shape[-2:] == (h, w) and sorted((h, w)) == [400, 600]  # a whole LOL frame, maybe turned
        assert torch.equal(v[0, :, y : y + 64, x : x + 64], low[i])
    small = sample_views(images, np.random.default_rng(0), batch=2, patch=64, view=128, mixture=lol_only)
    assert all(v.shape[-2:] == (128, 128) for v in small[2])


def test_an_exact_tiler_takes_bounded_tiles_and_a_big_photo_no_tiny_ones():
    """Tiles of a glancing model equal one pass, so a bigger tile buys only memory: at most EXACT_TILE,
    even with room for one pass. And tiles keep a quarter of the budget when a huge photo's own
    buffers take the rest, instead of falling to the smallest tile."""
    from lowlight_cli.inference import EXACT_TILE, MIN_TILE

    spec = registry.get("lantern_tiny")
    roomy = Enhancer(spec, seeded_net(spec), RunOptions(device="cpu", memory_gb=1024, backend="torch"), "t")
    assert roomy.plan(3000, 4000)[0] == EXACT_TILE
    assert roomy.plan(400, 600)[0] == 600  # a LOL frame: one pass
    tight = Enhancer(spec, seeded_net(spec), RunOptions(device="cpu", memory_gb=0.5, backend="torch"), "t")
    assert tight.one_pass_pixels(6000, 8000) == 1  # the buffers alone exceed the budget
    tile = tight.plan(6000, 8000)[0]
    assert tile > MIN_TILE and tile**2 * tight.bytes_per_pixel <= tight.budget // 4
