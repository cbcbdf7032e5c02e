"""The tiling engine: tiled equals whole for a model whose receptive field fits in the overlap."""

import pytest
import torch
from torch import nn

from lowlight_cli.tiling import edge_ramp, tile_spans, tiled_forward


def toy_net(scale: int = 1) -> nn.Module:
    """Fully convolutional, receptive-field radius 2 (two 3x3 convs), optional x2 sub-pixel output."""
    torch.manual_seed(0)
    layers = [nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3 * scale * scale, 3, padding=1)]
    if scale > 1:
        layers.append(nn.PixelShuffle(scale))
    return nn.Sequential(*layers).eval()


def run(net, image, **kw):
    with torch.no_grad():
        return tiled_forward(net, image, **kw)


@pytest.mark.parametrize("size", [(64, 64), (97, 131), (33, 200), (1, 1), (7, 300)])
@pytest.mark.parametrize("scale", [1, 2])
def test_tiled_equals_whole(size, scale):
    net = toy_net(scale)
    torch.manual_seed(1)
    image = torch.rand(1, 3, *size)
    with torch.no_grad():
        whole = net(image)
    tiled = run(net, image, tile=32, overlap=8, scale=scale)
    assert tiled.shape == whole.shape
    assert torch.max(torch.abs(tiled - whole)) < 1e-4


def test_tile_larger_than_image_is_one_pass():
    calls = []

    def forward(t):
        calls.append(t.shape)
        return t

    image = torch.rand(1, 3, 50, 70)
    out = tiled_forward(forward, image, tile=512, overlap=32)
    assert len(calls) == 1 and torch.equal(out, image)


def test_constant_image_stays_constant():
    image = torch.full((1, 3, 150, 170), 0.3)
    out = tiled_forward(lambda t: t * 2, image, tile=48, overlap=16)
    assert torch.allclose(out, torch.full_like(out, 0.6), atol=1e-6)


def test_padding_to_size_multiple_is_cropped_back():
    seen = []

    def forward(t):
        seen.append(tuple(t.shape[-2:]))
        return t

    image = torch.rand(1, 3, 45, 61)
    out = tiled_forward(forward, image, tile=40, overlap=8, multiple=16)
    assert all(h % 16 == 0 and w % 16 == 0 for h, w in seen)
    assert torch.allclose(out, image, atol=1e-6)


def test_windows_of_neighbours_sum_to_one_over_the_overlap():
    left = edge_ramp(32, 16, before=False, after=True)
    right = edge_ramp(32, 16, before=True, after=False)
    shared = left[-16:] + right[:16]
    assert torch.allclose(shared, torch.ones(16), atol=1e-6)
    assert torch.all(left[-4:] == 0)  # the zero-padded margin never contributes


@pytest.mark.parametrize("multiple", [1, 4, 16])
def test_tile_spans_cover_overlap_and_stay_on_the_grid(multiple):
    for length, tile, overlap in [(100, 32, 8), (33, 32, 8), (32, 32, 8), (1000, 256, 64), (600, 512, 128)]:
        spans = tile_spans(length, tile, overlap, multiple)
        assert spans[0][0] == 0 and spans[-1][1] == length
        assert all(start % multiple == 0 for start, _ in spans)
        assert all(b0 <= a1 - min(overlap, a1 - a0) for (a0, a1), (b0, _) in zip(spans, spans[1:]))
        assert all(end - start < tile + multiple for start, end in spans)


def test_pooling_net_tiled_equals_whole_when_tiles_stay_on_its_grid():
    """A 2x2 max-pool + upsample is exact only on tiles aligned to its grid: spans take care of it."""
    pool = nn.Sequential(nn.MaxPool2d(2), nn.Upsample(scale_factor=2))
    image = torch.rand(1, 3, 70, 101)
    whole = tiled_forward(pool, image, tile=10_000, overlap=0, multiple=2)
    tiled = tiled_forward(pool, image, tile=32, overlap=8, multiple=2)
    assert torch.max(torch.abs(whole - tiled)) < 1e-6


def test_bad_tile_values_raise():
    with pytest.raises(ValueError):
        tiled_forward(lambda t: t, torch.rand(1, 3, 8, 8), tile=8, overlap=8)


class OutOfMemoryAbove(nn.Module):
    """Identity that fails like CUDA does when a tile has more than ``limit`` pixels."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.scale = nn.Parameter(torch.ones(()))
        self.sizes: list[tuple[int, int]] = []

    def forward(self, x):
        self.sizes.append(tuple(x.shape[-2:]))
        if x.shape[-2] * x.shape[-1] > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return x * self.scale


def test_out_of_memory_retries_once_with_a_smaller_tile(caplog):
    import numpy as np

    from lowlight_cli.errors import LowlightError
    from lowlight_cli.inference import Enhancer, RunOptions
    from lowlight_cli.registry import ModelSpec

    net = OutOfMemoryAbove(limit=300 * 300)
    spec = ModelSpec(name="oom", kind="learned", summary="test", overlap=16)
    enhancer = Enhancer(spec, net, RunOptions(device="cpu", tile=512), "oom")
    rgb = np.random.default_rng(0).random((400, 500, 3), dtype=np.float32)
    out = enhancer(rgb)
    assert np.allclose(out, rgb, atol=1e-6)
    assert "retrying once with --tile 256" in caplog.text
    net.limit = 10
    with pytest.raises(LowlightError, match="out of memory"):
        enhancer(rgb)


def test_the_same_command_writes_the_same_file(cli, write_dark, tmp_path):
    """The tiling follows the image, the model and --memory, not the moment's free memory; a tiny
    budget takes the path that tiles and measures the global context tile by tile."""
    src = write_dark(tmp_path / "in.png", h=150, w=200)
    digests = []
    for run in range(2):
        dst = tmp_path / f"out{run}.png"
        code, _, err = cli("enhance", src, "-o", dst, "--model", "mirnet", "--memory", "0.001", "--device", "cpu")
        assert code == 0, err
        digests.append(dst.read_bytes())
    assert digests[0] == digests[1]
