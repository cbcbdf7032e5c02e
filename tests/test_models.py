"""Contract tests run over every registered model: adding a model file gets them without edits."""

import inspect

import numpy as np
import pytest
import torch

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
