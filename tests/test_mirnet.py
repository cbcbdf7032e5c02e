"""MIRNet: the pieces the paper specifies, the published size, the loss, and the MACs counter."""

import functools
import math

import numpy as np
import pytest
import torch
from torch import nn

from lowlight_cli import registry
from lowlight_cli.evaluate import macs_per_pixel
from lowlight_cli.inference import Enhancer, RunOptions
from lowlight_cli.models.mirnet import (
    MIRNet,
    SelectiveKernelFusion,
    antialiased_downsample,
    charbonnier,
    stream_widths,
)


@pytest.fixture(autouse=True)
def one_thread():
    """MIRNet runs hundreds of small ops; with the cores busy (a training run beside the tests), every
    op's OpenMP threads wait on each other and a tiny forward takes 1 s instead of 10 ms."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _tiny() -> tuple[registry.ModelSpec, MIRNet]:
    spec = registry.get("mirnet_tiny")
    torch.manual_seed(0)
    return spec, spec.create().eval()


@pytest.mark.parametrize("size", [(5, 7), (37, 45), (64, 31)])
def test_odd_sizes_keep_their_shape_through_the_inference_contract(size):
    spec, net = _tiny()
    rgb = np.random.default_rng(0).random((*size, 3), dtype=np.float32) * 0.2
    for tile in (4096, 32):  # one whole pass, then tiles
        out = Enhancer(spec, net, RunOptions(device="cpu", tile=tile, overlap=8), "mirnet_tiny")(rgb)
        assert out.shape == rgb.shape and out.dtype == np.float32


def test_size_multiple_is_four_and_shapes_are_kept():
    _, net = _tiny()
    assert registry.get("mirnet").size_multiple == 4
    with torch.no_grad():
        assert net(torch.rand(2, 3, 12, 20)).shape == (2, 3, 12, 20)


def test_skff_weights_are_a_softmax_across_streams():
    torch.manual_seed(0)
    skff = SelectiveKernelFusion(channels=8, inputs=3, reduction=2)
    feats = [torch.randn(2, 8, 6, 5) for _ in range(3)]
    w = skff.weights(feats)
    assert w.shape == (2, 3, 8, 1, 1)
    assert torch.all(w > 0) and torch.allclose(w.sum(dim=1), torch.ones(2, 8, 1, 1))
    expected = sum(w[:, k] * f for k, f in enumerate(feats))
    assert torch.allclose(skff(feats), expected, atol=1e-6)
    # weights summing to one: fusing copies of one map returns it
    assert torch.allclose(skff([feats[0]] * 3), feats[0], atol=1e-6)


def test_global_residual_zero_last_conv_is_identity():
    _, net = _tiny()
    with torch.no_grad():
        net.conv_out.weight.zero_()
        x = torch.rand(1, 3, 16, 24)
        assert torch.equal(net(x), x)


def test_antialiased_downsample_halves_and_keeps_flat_images_flat():
    x = torch.full((1, 2, 8, 6), 0.3)
    y = antialiased_downsample(x)
    assert y.shape == (1, 2, 4, 3) and torch.allclose(y, torch.full_like(y, 0.3))


def test_paper_config_has_the_published_parameter_count():
    spec = registry.get("mirnet_paper")
    assert stream_widths(64, 2.0, 3) == (64, 128, 256) and not spec.tile_safe
    with torch.device("meta"):  # shapes only: 31.8 M parameters cost nothing here
        shared = sum(p.numel() for p in spec.create().parameters())
        separate = sum(p.numel() for p in MIRNet(**{**spec.hparams, "share_dau_weights": False}).parameters())
    assert abs(shared - 31.8e6) / 31.8e6 < 0.03
    assert separate > shared  # one DAU per column adds weights, not compute


def test_charbonnier_known_values():
    pred, target = torch.zeros(2, 3, 4, 4), torch.full((2, 3, 4, 4), 0.3)
    assert float(charbonnier(pred, target)) == pytest.approx(math.sqrt(0.09 + 1e-6), rel=1e-6)
    assert float(charbonnier(target, target)) == pytest.approx(1e-3, rel=1e-5)  # eps at zero error
    loss, parts = registry.get("mirnet").recipe.loss()(nn.Identity(), pred, target)
    assert float(loss) == pytest.approx(math.sqrt(0.09 + 1e-6), rel=1e-6) and set(parts) == {"charbonnier"}


@pytest.mark.parametrize(
    ("layer", "macs_per_px"),
    [
        # 3x3 stride-2 conv, 3 -> 8: a quarter of the pixels, each 8 outputs x 3 inputs x 9 taps
        (functools.partial(nn.Conv2d, 3, 8, 3, stride=2, padding=1), 8 * 3 * 9 / 4),
        # grouped (depthwise x2) conv: each output sees in_channels / groups = 1 input channel
        (functools.partial(nn.Conv2d, 3, 6, 3, padding=1, groups=3), 6 * 1 * 9),
        # transposed x2 conv counts per input pixel: 3 inputs x 4 outputs x 9 taps
        (functools.partial(nn.ConvTranspose2d, 3, 4, 3, stride=2, padding=1, output_padding=1), 3 * 4 * 9),
    ],
)
def test_macs_match_a_hand_count_for_one_layer(layer, macs_per_px):
    spec = registry.ModelSpec(name="one_layer", kind="learned", summary="", build=layer, size_multiple=2)
    assert macs_per_pixel(spec) == pytest.approx(macs_per_px)
