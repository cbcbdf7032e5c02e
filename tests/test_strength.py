"""--strength: 0 gives the input back, 1 the model's output, values between move monotonically, in linear light."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lowlight_cli import registry
from lowlight_cli.errors import UsageError
from lowlight_cli.inference import Enhancer, RunOptions, blend, linear_to_srgb, srgb_to_linear


def _enhancer(name: str, **options) -> Enhancer:
    spec = registry.get(name)
    torch.manual_seed(0)
    net = spec.create() if spec.kind == "learned" else None
    return Enhancer(spec, net, RunOptions(device="cpu", **options), name)


def _photo() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.uniform(0.0, 0.4, size=(80, 100, 3)).astype(np.float32)


def test_srgb_transfer_round_trips():
    v = np.linspace(0, 1, 101)
    assert np.allclose(linear_to_srgb(srgb_to_linear(v)), v, atol=1e-6)


@pytest.mark.parametrize("name,scale,tile", [("gamma_auto", 1, 0), ("clahe", 1, 0), ("msrnet_tiny", 1, 48),
                                              ("mirnet_tiny", 1, 0), ("neid_tiny", 2, 64), ("neid_tiny", 1, 0)])
def test_strength_moves_monotonically_from_input_to_output(name, scale, tile):
    rgb = _photo()
    outs = {s: _enhancer(name, strength=s, scale=scale, tile=tile)(rgb) for s in (0.0, 0.25, 0.5, 1.0)}
    if scale == 1:
        assert np.array_equal(outs[0.0], rgb)
    before = outs[0.0]
    after = outs[1.0]
    lo, hi = np.minimum(before, after) - 1e-5, np.maximum(before, after) + 1e-5
    for s in (0.25, 0.5):
        assert ((outs[s] >= lo) & (outs[s] <= hi)).all()  # always between the input and the output
    d = np.sign(after - before)
    assert (d * (outs[0.5] - outs[0.25]) >= -1e-5).all()  # and further along as strength grows


def test_half_strength_is_half_the_light():
    before, after = np.full((2, 2, 3), 0.2, np.float32), np.full((2, 2, 3), 0.8, np.float32)
    mid = blend(before, after, 0.5)
    assert np.allclose(srgb_to_linear(mid), (srgb_to_linear(before) + srgb_to_linear(after)) / 2, atol=1e-5)


def test_strength_outside_0_1_is_refused():
    with pytest.raises(UsageError):
        _enhancer("gamma_auto", strength=1.5)


def test_cli_strength_zero_writes_the_input_back(cli, write_dark, tmp_path):
    src = write_dark(tmp_path / "d.png")
    dst = tmp_path / "same.png"
    code, _, err = cli("enhance", str(src), "-o", str(dst), "--model", "gamma_auto", "--strength", "0")
    assert code == 0, err
    import cv2

    assert np.array_equal(cv2.imread(str(src)), cv2.imread(str(dst)))


def test_a_tile_below_the_models_useful_minimum_is_refused_before_work():
    spec = registry.get("neid_tiny")
    with pytest.raises(UsageError, match="useful minimum"):
        Enhancer(spec, spec.create(), RunOptions(device="cpu", tile=2 * spec.overlap - 1), "t")
    Enhancer(spec, spec.create(), RunOptions(device="cpu", tile=2 * spec.overlap), "t")
