"""NEID: x2 shapes, DR's image head only on the training path, the loss, HSV against OpenCV, the recipe."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from lowlight_cli import registry
from lowlight_cli.inference import Enhancer, RunOptions
from lowlight_cli.models.neid import NEID, NEID_COLOR_WEIGHT, NEIDLoss, color_loss, rgb_to_hsv
from lowlight_cli.training.config import TrainConfig, lr_at, resolve
from lowlight_cli.training.loop import fit

VARIANTS = ("neid", "neid_paper", "neid_tiny")


@pytest.fixture
def tiny() -> NEID:
    torch.manual_seed(0)
    return registry.get("neid_tiny").create()


def test_forward_doubles_the_size(tiny):
    y = tiny(torch.rand(2, 3, 16, 24))
    assert y.shape == (2, 3, 32, 48)


def test_detail_path_gives_le_and_dr_at_x2_and_the_same_le(tiny):
    x = torch.rand(2, 3, 16, 24)
    le, dr = tiny(x, detail=True)
    assert le.shape == dr.shape == (2, 3, 32, 48)
    assert torch.equal(le, tiny(x))


def test_dr_image_head_runs_only_on_the_training_path(tiny):
    calls = []
    tiny.dr_head.register_forward_hook(lambda *_: calls.append(1))
    x = torch.rand(1, 3, 16, 16)
    tiny(x).sum().backward()
    assert calls == []
    assert all(p.grad is None for p in tiny.dr_head.parameters())
    assert all(p.grad is not None for p in tiny.le_head.parameters())
    tiny(x, detail=True)
    assert calls == [1]


def test_input_must_be_a_multiple_of_two_to_the_levels(tiny):
    with pytest.raises(ValueError, match="divisible by 4"):
        tiny(torch.rand(1, 3, 16, 18))


def test_init_follows_the_paper():
    net = registry.get("neid").create()
    gate = set(net.gate.modules())  # ours, initialised to start open (see models/gate.py)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d) and m not in gate]
    weights = torch.cat([m.weight.detach().flatten() for m in convs])
    assert abs(float(weights.mean())) < 1e-3
    assert float(weights.std()) == pytest.approx(0.02, rel=0.02)
    assert all(torch.count_nonzero(m.bias) == 0 for m in convs)


def test_loss_decreases_on_a_fixed_batch():
    # The paper's network and loss, without our exposure gate (its own test is in test_models.py).
    torch.manual_seed(0)
    tiny = NEID(**{**registry.get("neid_tiny").hparams, "exposure_gate": False})
    torch.manual_seed(1)
    low = torch.rand(2, 3, 16, 16) * 0.2
    high = torch.rand(2, 3, 32, 32) * 0.5 + 0.3
    loss_fn = NEIDLoss()
    opt = torch.optim.Adam(tiny.parameters(), lr=1e-3)
    with torch.no_grad():
        first, first_parts = loss_fn(tiny, low, high)
    assert set(first_parts) == {"huber", "dr_mse", "color"}
    for _ in range(60):
        loss, _ = loss_fn(tiny, low, high)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert all(p.grad is not None for p in tiny.dr_head.parameters())  # DR is trained through the loss
    with torch.no_grad():
        last, parts = loss_fn(tiny, low, high)
    assert float(last) < 0.7 * float(first)
    # Every term improves: the colour term must not stall LE's brightening from the near-zero init.
    assert all(float(parts[k]) < 0.8 * float(first_parts[k]) for k in parts)


def test_rgb_to_hsv_matches_opencv():
    rng = np.random.default_rng(0)
    rgb = rng.random((64, 64, 3), dtype=np.float32)
    rgb[0, :8] = [[v, v, v] for v in np.linspace(0, 1, 8)]  # grey: hue 0 by convention
    rgb[1, :4] = [[0.5, 0.5, 0.1], [0.1, 0.5, 0.5], [0.5, 0.1, 0.5], [1.0, 0.0, 1e-4]]  # ties, near-wrap
    ref = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)  # float: H in degrees, S and V in [0, 1]
    ours = rgb_to_hsv(torch.from_numpy(rgb).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()
    dh = np.abs(ours[..., 0] - ref[..., 0] / 360.0)
    assert np.minimum(dh, 1.0 - dh).max() < 1e-4  # 0 and 1 turn are the same hue
    np.testing.assert_allclose(ours[..., 1:], ref[..., 1:], atol=1e-5)


def test_color_loss_is_zero_for_identical_images_and_sees_hue_shifts():
    torch.manual_seed(0)
    img = torch.rand(2, 3, 24, 24)
    assert float(color_loss(img, img)) == pytest.approx(0.0, abs=1e-6)
    assert float(color_loss(img, img[:, [1, 2, 0]])) > 0.5  # rotating channels rotates hue by 1/3 turn
    grey = torch.full((1, 3, 8, 8), 0.4)
    assert float(color_loss(grey, grey)) == 0.0  # no chroma: nothing to compare


def test_color_loss_treats_hue_as_an_angle():
    def pixel_of_hue(h_deg: float) -> torch.Tensor:
        hsv = np.array([[[h_deg, 0.8, 0.7]]], dtype=np.float32)
        return torch.from_numpy(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)).permute(2, 0, 1)[None]

    near_wrap = color_loss(pixel_of_hue(358.0), pixel_of_hue(2.0))
    same_gap = color_loss(pixel_of_hue(178.0), pixel_of_hue(182.0))
    assert float(near_wrap) == pytest.approx(float(same_gap), abs=1e-4) and float(near_wrap) < 0.01


def test_color_loss_has_finite_gradients_on_grey_and_black_pixels():
    pred = torch.zeros(1, 3, 4, 4)
    pred[..., :2, :] = 0.5  # grey half, black half
    pred.requires_grad_(True)
    target = torch.rand(1, 3, 4, 4)
    color_loss(pred, target).backward()
    assert torch.isfinite(pred.grad).all()


@pytest.mark.parametrize("name", VARIANTS)
def test_specs_declare_the_x2_protocol(name):
    spec = registry.get(name)
    assert spec.scales == (1, 2) and spec.size_multiple == 2 ** spec.hparams["levels"]
    assert not spec.tile_safe  # FF pools over the whole image
    r = spec.recipe
    assert (r.milestones, r.gamma, r.input_downscale) == ((0.25, 0.5), 0.1, 2)
    # The CPU variant's shorter run takes a larger lr, made stable by clipping (see neid.py).
    assert (r.lr, r.clip_grad) == ((1e-3, 0.5) if name == "neid" else (1e-4, 0.0))
    loss = r.loss()
    assert (loss.detail_weight, loss.color_weight) == (0.1, NEID_COLOR_WEIGHT)


def test_color_loss_is_blind_to_a_weaker_prediction_down_to_a_tenth_of_the_target():
    # The plain cosine, as in the paper: a darker copy of the target costs nothing, so the colour
    # term never asks for more chroma than the Huber term does; only below a tenth does it push up.
    torch.manual_seed(0)
    target = torch.rand(2, 3, 16, 16) * 0.8 + 0.1
    for k in (1.0, 0.5, 0.2, 0.11):
        assert float(color_loss(k * target, target)) == pytest.approx(0.0, abs=1e-4)
    assert float(color_loss(0.05 * target, target)) > 0.4


def test_schedule_drops_tenfold_at_a_quarter_and_a_half(tmp_path):
    c = resolve(TrainConfig(model="neid", out=tmp_path, steps=2000))
    lrs = [lr_at(s, c) for s in (0, 499, 500, 999, 1000, 1999)]
    assert lrs == pytest.approx([1e-3, 1e-3, 1e-4, 1e-4, 1e-5, 1e-5])


def test_scale_1_restores_the_input_size(tiny):
    rgb = np.random.default_rng(0).random((40, 56, 3), dtype=np.float32) * 0.2
    spec = registry.get("neid_tiny")
    out = Enhancer(spec, tiny, RunOptions(device="cpu", scale=1), "neid_tiny")(rgb)
    assert out.shape == rgb.shape and out.dtype == np.float32
    assert Enhancer(spec, tiny, RunOptions(device="cpu", scale=2), "neid_tiny")(rgb).shape == (80, 112, 3)


def test_tiled_x2_output_equals_the_whole_pass_once_ff_is_made_local():
    # FF's global pooling is the one thing tiles cannot reproduce; with its excitation zeroed its
    # channel weights are constants, and what is left must tile exactly at x2 when the overlap's
    # blend-free margin (overlap / 4) covers the receptive field (~7 * 2**levels = 28 px).
    torch.manual_seed(0)
    net = registry.get("neid_tiny").create()
    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.reset_parameters()  # outputs of order 1, not the ~1e-5 of the paper's init
    with torch.no_grad():
        net.le_head[0].bias.add_(0.5)  # mid-grey outputs: few pixels clamp
        for ff in net.fusions:
            ff.excite.weight.zero_()
    spec = registry.get("neid_tiny")
    ramp = np.linspace(0.05, 0.5, 460, dtype=np.float32)[None, :, None]  # tiles see different statistics
    rgb = np.random.default_rng(0).random((300, 460, 3), dtype=np.float32) * ramp
    whole = Enhancer(spec, net, RunOptions(device="cpu", scale=2, tile=1024), "t")(rgb)
    tiled = Enhancer(spec, net, RunOptions(device="cpu", scale=2, tile=256, overlap=128), "t")(rgb)
    assert whole.shape == tiled.shape == (600, 920, 3)
    assert 0.05 < float(whole.std())  # not a constant image
    # Float rounding only (1.8e-7 measured); an overlap of 16 instead of 128 gives 3.9e-5.
    np.testing.assert_allclose(tiled, whole, atol=1e-6)


def test_trainer_runs_neid_with_the_half_size_input(tmp_path: Path):
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        cv2.imwrite(str(photos / f"{i}.png"), rng.integers(40, 220, size=(40, 48, 3), dtype=np.uint8))
    config = TrainConfig(model="neid_tiny", out=tmp_path / "run", synthetic=photos, steps=2, batch=2,
                               val_every=2, ckpt_every=2, log_every=1, threads=1, device="cpu", val_fraction=0.3)
    run = fit(config)
    log = (run / "train.log").read_text()
    assert "huber" in log and "dr_mse" in log and "color" in log
    assert (run / "export" / "neid_tiny-synthetic.safetensors").is_file()
