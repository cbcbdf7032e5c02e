"""Contract tests run over every registered model: adding a model file gets them without edits."""

import inspect

import numpy as np
import pytest
import torch

from conftest import seeded_net
from lowlight_cli import registry
from lowlight_cli.inference import Enhancer, RunOptions
from lowlight_cli.tiling import tiled_forward

LEARNED = [s.name for s in registry.specs("learned")]
BASELINES = [s.name for s in registry.specs("baseline")]


def test_registry_has_models_and_baselines():
    assert LEARNED and {"autocontrast", "he", "clahe", "gamma", "msr", "msrcr"} <= set(BASELINES)


@pytest.mark.parametrize("name", LEARNED)
def test_forward_shape_and_range_contract(name):
    spec = registry.get(name)
    torch.manual_seed(0)
    net = spec.create().eval()
    side = 2 * spec.size_multiple * max(1, 16 // spec.size_multiple)
    x = torch.rand(2, 3, side, side + spec.size_multiple)
    with torch.no_grad():
        y = net(x)
    assert y.shape == (2, 3, x.shape[2] * spec.scale, x.shape[3] * spec.scale)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", LEARNED)
def test_hyperparameters_are_explicit_keywords(name):
    spec = registry.get(name)
    params = inspect.signature(spec.build).parameters.values()
    assert all(p.kind is p.KEYWORD_ONLY for p in params)
    assert not any(p.kind is p.VAR_KEYWORD for p in params)
    with pytest.raises(TypeError):
        spec.build(**spec.hparams, not_a_hyperparameter=1)


@pytest.mark.parametrize("name", LEARNED)
def test_every_learned_model_has_a_training_recipe(name):
    recipe = registry.get(name).recipe
    assert recipe is not None and recipe.lr > 0 and recipe.steps > 0


@pytest.mark.parametrize("name", [n for n in LEARNED if registry.get(n).tile_safe])
def test_tile_safe_models_give_the_same_result_tiled(name):
    """The spec's overlap covers the receptive field: tiles must not change the output."""
    spec = registry.get(name)
    torch.manual_seed(0)
    net = spec.create().eval()
    tile = 2 * spec.overlap + 2 * spec.size_multiple
    image = torch.rand(1, 3, tile + spec.overlap + 5, 2 * tile - 3)
    with torch.no_grad():
        whole = tiled_forward(net, image, tile=10_000, overlap=0, scale=spec.scale, multiple=spec.size_multiple)
        tiled = tiled_forward(net, image, tile=tile, overlap=spec.overlap, scale=spec.scale, multiple=spec.size_multiple)
    assert torch.max(torch.abs(whole - tiled)) < 1e-4


@pytest.mark.parametrize("name", LEARNED)
def test_enhancer_runs_learned_models_at_every_scale(name):
    spec = registry.get(name)
    torch.manual_seed(0)
    rgb = np.random.default_rng(0).random((37, 45, 3), dtype=np.float32) * 0.2
    for scale in spec.scales:
        enhancer = Enhancer(spec, spec.create(), RunOptions(device="cpu", tile=2 * spec.overlap, scale=scale), name)
        out = enhancer(rgb)
        assert out.shape == (37 * scale, 45 * scale, 3)  # odd sizes too, where a smaller scale downsamples first
        assert out.dtype == np.float32 and 0.0 <= out.min() and out.max() <= 1.0


@pytest.mark.parametrize("name", BASELINES)
def test_baselines_keep_shape_and_range(name):
    rgb = np.random.default_rng(0).random((31, 47, 3), dtype=np.float32) * 0.2
    out = Enhancer(registry.get(name), None, RunOptions(), name)(rgb)
    assert out.shape == rgb.shape and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0


@pytest.mark.parametrize("name", LEARNED)
def test_spec_declares_global_context_exactly_when_the_net_pools_globally(name):
    from lowlight_cli.context import glances, uses_global_context

    spec = registry.get(name)
    with torch.device("meta"):
        net = spec.create()
    assert spec.tile_safe == (not uses_global_context(net) and not glances(net))


def _pools_features(name: str) -> bool:
    from lowlight_cli.context import uses_global_context

    return uses_global_context(registry.get(name).create())


# Models that glance at the whole picture (context.Glance) have tests of their own (test_lantern.py).
SMALL_GLOBAL = [n for n in LEARNED if not registry.get(n).tile_safe and _pools_features(n)
                and sum(p.numel() for p in registry.get(n).create().parameters()) < 1_000_000]


@pytest.mark.parametrize("name", SMALL_GLOBAL)
def test_models_with_global_context_give_the_whole_pass_tiled(name):
    """Every tile is handed the whole image's global statistics: measured in one pass of the image
    when it fits the memory budget (then tiled equals whole), else tile by tile, far closer to the
    whole image's than any one tile's own."""
    from lowlight_cli.context import recording

    spec = registry.get(name)
    net = seeded_net(spec)
    rgb = np.random.default_rng(0).random((5 * spec.overlap + 3, 7 * spec.overlap - 5, 3), dtype=np.float32)
    rgb *= np.linspace(0.1, 1.0, rgb.shape[1], dtype=np.float32)[None, :, None]  # tiles differ from the whole
    tile = 2 * spec.overlap
    whole = Enhancer(spec, net, RunOptions(device="cpu", memory_gb=64), name)(rgb)
    tiled = Enhancer(spec, net, RunOptions(device="cpu", tile=tile, memory_gb=64), name)(rgb)
    assert np.abs(tiled - whole).max() < 1e-4  # the convolutions reach a little past a 32-px overlap

    x = torch.from_numpy(rgb.transpose(2, 0, 1).copy())[None]
    m = spec.size_multiple
    with torch.no_grad(), recording(net) as exact:
        net(x[..., : x.shape[2] // m * m, : x.shape[3] // m * m])
    with torch.no_grad(), recording(net) as one_tile:
        net(x[..., :tile, :tile])
    swept = Enhancer(spec, net, RunOptions(device="cpu", tile=tile, memory_gb=1e-9), name)
    with torch.no_grad():
        measured = swept.global_context(x[..., : x.shape[2] // m * m, : x.shape[3] // m * m], tile, spec.overlap, None)

    def error(values):
        return max(float((a - b).abs().max()) for a, b in zip(values, exact, strict=True))

    assert len(measured) == len(exact) > 0
    assert error(one_tile) > 1e-3  # the test can tell
    assert error(measured) < 0.05 * error(one_tile)


@pytest.mark.parametrize("name", SMALL_GLOBAL)
def test_a_call_takes_given_global_context_and_measures_its_own(name):
    """``pooled=`` replaces the image's global context and ``measured=`` reports the image's own, as a
    video frame uses them: run with another context, a pass measures its image's features under it, and
    repeating that converges to the image's exact context (one pass or tiled)."""
    from lowlight_cli.context import recording

    spec = registry.get(name)
    net = seeded_net(spec)
    rgb = np.random.default_rng(0).random((40, 56, 3), dtype=np.float32) * 0.3
    for scale in spec.scales:
        enhancer = Enhancer(spec, net, RunOptions(device="cpu", scale=scale), name)
        enhancer(rgb)  # the first call also measures the net's memory per pixel, with a pass of its own
        with recording(net) as own:
            plain = enhancer(rgb)
        measured = []
        assert np.abs(enhancer(rgb, measured=measured) - plain).max() == 0
        assert len(measured) == len(own) > 0
        assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(measured, own, strict=True))
        assert np.abs(enhancer(rgb, pooled=own) - plain).max() < 1e-6
        guess = [v + 1.0 for v in own]
        assert np.abs(enhancer(rgb, pooled=guess) - plain).max() > 1e-4

        def error(values):
            return max(float((a - b).abs().max()) for a, b in zip(values, own, strict=True))

        errors = [error(guess)]
        for _ in range(3):
            enhancer(rgb, pooled=guess, measured=(guess := []))
            errors.append(error(guess))
        assert errors[-1] < 0.01 * errors[0], errors
    tiled = Enhancer(spec, net, RunOptions(device="cpu", tile=2 * spec.overlap, memory_gb=64), name)
    big = np.random.default_rng(1).random((3 * spec.overlap, 3 * spec.overlap, 3), dtype=np.float32) * 0.3
    with recording(net) as exact:
        Enhancer(spec, net, RunOptions(device="cpu", memory_gb=64), name)(big)
    measured = []
    tiled(big, pooled=[v + 1.0 for v in exact], measured=measured)
    assert max(float((a - b).abs().max()) for a, b in zip(measured, exact, strict=True)) < 1e-4


def test_tile_plan_follows_the_budget_not_the_moment(monkeypatch):
    import os

    spec = registry.get("mirnet_tiny")
    enhancer = Enhancer(spec, spec.create(), RunOptions(device="cpu", memory_gb=0.05), "mirnet_tiny")
    per_px = enhancer.bytes_per_pixel + 2 * 12 + 28
    side = int((0.05 * 2**30 / per_px) ** 0.5)
    assert enhancer.plan(side - 8, side - 8)[0] == side - 8  # fits: one pass
    tile, _ = enhancer.plan(2 * side, 2 * side)
    assert tile < 2 * side and tile % 64 == 0
    real = os.sysconf
    monkeypatch.setattr(os, "sysconf", lambda n: 1 if n == "SC_AVPHYS_PAGES" else real(n))
    assert Enhancer(spec, spec.create(), RunOptions(device="cpu", memory_gb=0.05), "t").plan(2 * side, 2 * side)[0] == tile


@pytest.mark.parametrize("arch", ["msrnet", "mirnet", "neid"])
def test_exposure_gate_blends_the_input_and_the_network_output(arch):
    """g -> 0 gives the input back exactly (NEID: its bicubic x2), g -> 1 the gateless network; a gateless
    file keeps loading."""
    import torch.nn.functional as F

    from lowlight_cli.models.mirnet import MIRNet
    from lowlight_cli.models.msrnet import MSRNet
    from lowlight_cli.models.neid import NEID

    torch.manual_seed(0)
    build, hp = {
        "msrnet": (MSRNet, dict(scales=(1.0, 100.0), depth=2, width=4)),
        "mirnet": (MIRNet, dict(channels=4, growth=2.0, groups=1, blocks=1, streams=3, daus=1, reduction=2,
                                share_dau_weights=False)),
        "neid": (NEID, dict(width=4, levels=2, reduction=2)),
    }[arch]
    plain, gated = build(**hp), build(**hp, exposure_gate=True)
    missing, unexpected = gated.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("gate.") for k in missing)
    x = torch.rand(1, 3, 24, 20)
    base = F.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False) if arch == "neid" else x
    with torch.no_grad():
        assert torch.allclose(gated(x), base + torch.sigmoid(torch.tensor(4.0)) * (plain(x) - base), atol=1e-6)
        for value, expect in ((-1e4, base), (1e4, plain(x))):
            gated.gate.pixel.bias.fill_(value)
            assert torch.allclose(gated(x), expect, atol=1e-6)
        gated.gate.pixel.bias.fill_(0.0)
        assert torch.allclose(gated(x), (base + plain(x)) / 2, atol=1e-6)
        gated.gate.image[-1].bias.fill_(-1e4)  # the per-image term alone can close the gate
        assert torch.allclose(gated(x), base, atol=1e-6)

