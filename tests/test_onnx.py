"""`lowlight export ... --onnx FILE`: a dynamic-size ONNX graph of every learned architecture, checked
against PyTorch with ONNX Runtime on the shipped photo at sizes other than the traced one."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conftest import seeded_net
from lowlight_cli import registry
from lowlight_cli.evaluate import parameter_count
from lowlight_cli.images import read_image
from lowlight_cli.tiling import run_padded
from lowlight_cli.weights import save_weights

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

SAMPLE = Path(__file__).resolve().parents[1] / "lowlight_cli" / "samples" / "coffee_dark.png"


def _smallest_per_architecture() -> list[str]:
    """Each architecture's variant with the fewest parameters: every arch's graph, at the cost of the
    fastest exports (tens of seconds each on a busy 2-core machine, whatever the widths)."""
    smallest: dict[object, registry.ModelSpec] = {}
    for spec in registry.specs("learned"):
        if spec.build not in smallest or parameter_count(spec) < parameter_count(smallest[spec.build]):
            smallest[spec.build] = spec
    return sorted(s.name for s in smallest.values())


SMALLEST = _smallest_per_architecture()


def _photo(h: int, w: int) -> torch.Tensor:
    """The shipped dark photo resized to ``h`` x ``w``: ``(1, 3, h, w)`` float32 in [0, 1]."""
    rgb = cv2.resize(read_image(SAMPLE).rgb, (w, h), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(np.clip(rgb, 0.0, 1.0).transpose(2, 0, 1).copy())[None].float()


def test_every_architecture_is_covered():
    assert {registry.get(n).build for n in SMALLEST} == {s.build for s in registry.specs("learned")}


@pytest.mark.parametrize("name", SMALLEST)
def test_onnx_graph_gives_pytorchs_whole_pass_at_any_size(name, tmp_path, cli):
    spec = registry.get(name)
    net = seeded_net(spec)
    weights = save_weights_file(net, spec, tmp_path)
    graph = tmp_path / f"{name}.onnx"
    code, out, err = cli("export", weights, "--onnx", graph)
    assert code == 0, err
    assert f"exported {graph}" in out and "not clamped" in out
    session = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    m = spec.size_multiple
    # Not the traced size (onnx_graph.example_input): one needing padding, one a multiple (a tile as
    # the tiler hands it over), and three different photos at once (dynamic batch).
    pair = _photo(40, 52)
    for x in (_photo(3 * m + 7, 9 * m + 5), _photo(6 * m, 4 * m), torch.cat([pair, pair.flip(-1), pair.flip(-2)])):
        with torch.no_grad():
            expected = run_padded(net, x, multiple=m, scale=spec.scale).numpy()
        got = session.run(None, {"image": x.numpy()})[0]
        assert got.shape == expected.shape == (x.shape[0], 3, x.shape[2] * spec.scale, x.shape[3] * spec.scale)
        assert np.abs(got - expected).max() < 1e-4


def save_weights_file(net: torch.nn.Module, spec: registry.ModelSpec, folder: Path) -> Path:
    path = folder / f"{spec.name}.safetensors"
    hparams = {k: list(v) if isinstance(v, tuple) else v for k, v in spec.hparams.items()}
    save_weights(net.state_dict(), path, arch=spec.name, hparams=hparams)
    return path


@pytest.fixture
def exports(monkeypatch):
    """Records what `lowlight export` hands the ONNX exporter instead of tracing (tens of seconds)."""
    from lowlight_cli import onnx_graph

    calls = []

    def fake(spec, net, path, *, label, overwrite=False):
        calls.append((spec.name, label, path))
        path.write_bytes(b"graph")
        return onnx_graph.Exported(path=path, label=label, scale=spec.scale, multiple=spec.size_multiple,
                                   opset=20, seconds=0.0)

    monkeypatch.setattr(onnx_graph, "export_onnx", fake)
    return calls


def test_a_model_name_exports_its_default_weights(cli, exports, tmp_path):
    code, out, _ = cli("export", "neid", "--onnx", tmp_path / "neid.onnx")
    assert code == 0
    assert exports == [("neid", "neid.mix", tmp_path / "neid.onnx")]
    assert "(batch, 3, 2 * height, 2 * width)" in out and ">= 16" in out


def test_a_run_folder_with_onnx_exports_the_weights_it_wrote(cli, exports, tmp_path, monkeypatch):
    from lowlight_cli.training import checkpoints

    spec = registry.get("msrnet_tiny")
    weights = save_weights_file(spec.create(), spec, tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    monkeypatch.setattr(checkpoints, "export", lambda run_dir: (weights, "0" * 64, "[weights.x]"))
    code, out, _ = cli("export", run, "--onnx", tmp_path / "run.onnx")
    assert code == 0
    assert f"exported {weights}" in out and "[weights.x]" in out
    assert exports == [("msrnet_tiny", str(weights), tmp_path / "run.onnx")]


def test_export_errors_come_before_any_work(cli, exports, tmp_path, monkeypatch):
    import importlib.util

    code, _, err = cli("export", "mirnet")
    assert code == 2 and "mirnet is not a run folder" in err and "--onnx FILE" in err
    existing = tmp_path / "m.onnx"
    existing.write_bytes(b"old")
    code, _, err = cli("export", "mirnet", "--onnx", existing)
    assert code == 1 and f"{existing} exists" in err and "--overwrite" in err
    assert existing.read_bytes() == b"old"
    code, _, err = cli("export", "mirnet", "--onnx", tmp_path / "no" / "m.onnx")
    assert code == 1 and "does not exist" in err
    code, _, err = cli("export", "nope", "--onnx", tmp_path / "n.onnx")
    assert code == 2 and "unknown model 'nope'" in err
    assert exports == []
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "onnxscript" else real(n, *a))
    code, _, err = cli("export", "mirnet", "--onnx", tmp_path / "m2.onnx")
    assert code == 2 and "pip install onnx onnxscript onnxruntime" in err


def test_onnx_backend_runs_the_tiles_through_the_cached_graph(cli, tmp_path, monkeypatch, write_dark, caplog):
    from lowlight_cli import onnx_graph
    from lowlight_cli.inference import Enhancer, RunOptions

    monkeypatch.setenv(onnx_graph.CACHE_ENV, str(tmp_path / "cache"))
    spec = registry.get("msrnet_tiny")
    assert spec.tile_safe  # every tile goes through ONNX Runtime
    torch.manual_seed(0)
    net = spec.create().eval()
    weights = save_weights_file(net, spec, tmp_path)
    src = write_dark(tmp_path / "dark.png", 70, 90)
    with caplog.at_level("INFO", logger="lowlight"):
        code, _, err = cli("enhance", src, "--model", "msrnet_tiny", "--weights", weights, "--backend", "onnx",
                           "--tile", 2 * spec.overlap, "-o", tmp_path / "out.png")
    assert code == 0, err
    assert "exporting msrnet_tiny to ONNX once" in caplog.text
    graphs = list((tmp_path / "cache" / "onnx").glob("msrnet_tiny-*.onnx"))
    assert len(graphs) == 1 and (tmp_path / "out.png").is_file()

    # The same weights find the same graph: no second export.
    monkeypatch.setattr(onnx_graph, "export_onnx", lambda *a, **k: pytest.fail("exported twice"))
    rgb = read_image(src).rgb
    options = dict(device="cpu", tile=2 * spec.overlap)
    by_onnx = Enhancer(spec, net, RunOptions(**options, backend="onnx"), "t")
    assert by_onnx.plan(70, 90)[0] < 90  # tiled
    assert np.abs(by_onnx(rgb) - Enhancer(spec, net, RunOptions(**options), "t")(rgb)).max() < 1e-4


def test_auto_backend_is_torch_without_the_extra(monkeypatch, cli, tmp_path):
    import importlib.util

    from lowlight_cli.inference import Enhancer, RunOptions

    spec = registry.get("msrnet_tiny")
    assert Enhancer(spec, spec.create(), RunOptions(device="cpu", backend="auto"), "t").backend == "onnx"
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "onnxruntime" else real(n, *a))
    assert Enhancer(spec, spec.create(), RunOptions(device="cpu", backend="auto"), "t").backend == "torch"
    code, _, err = cli("enhance", tmp_path / "x.png", "--backend", "onnx", "--model", "msrnet")
    assert code != 0 and "Error:" in err
    code, _, err = cli("enhance", tmp_path / "x.png", "--backend", "tensorrt")
    assert code == 2 and "unknown backend in --backend tensorrt" in err


GLOBAL = [n for n in SMALLEST if not registry.get(n).tile_safe]


@pytest.mark.parametrize("name", GLOBAL)
def test_onnx_tiles_get_the_global_context_as_torch_tiles_do(name, tmp_path, monkeypatch):
    """`--backend onnx` runs every pass of the tiler in ONNX Runtime, global context included: the
    context graphs record (a downscaled copy), measure (the sweep over tiles, a video's frames) and
    replay (the tiles) as the torch net does, so both backends write the same picture."""
    from lowlight_cli.inference import Enhancer, RunOptions

    monkeypatch.setenv("LOWLIGHT_CACHE", str(tmp_path))
    spec = registry.get(name)
    net = seeded_net(spec)
    rgb = np.random.default_rng(0).random((5 * spec.overlap + 3, 7 * spec.overlap - 5, 3), dtype=np.float32)
    rgb *= np.linspace(0.1, 1.0, rgb.shape[1], dtype=np.float32)[None, :, None]
    tile = 2 * spec.overlap
    outputs = {}
    for backend in ("torch", "onnx"):
        swept = Enhancer(spec, net, RunOptions(device="cpu", tile=tile, memory_gb=1e-9, backend=backend), name)
        measured: list[torch.Tensor] = []
        shifted = Enhancer(spec, net, RunOptions(device="cpu", memory_gb=64, backend=backend), name)
        frame = shifted(rgb, pooled=None, measured=measured)
        outputs[backend] = (swept(rgb), frame, shifted(rgb, pooled=[v + 1.0 for v in measured]), measured)
    (t_swept, t_frame, t_given, t_measured), (o_swept, o_frame, o_given, o_measured) = outputs["torch"], outputs["onnx"]
    assert np.abs(t_swept - o_swept).max() < 1e-4
    assert np.abs(t_frame - o_frame).max() < 1e-4
    assert np.abs(t_given - o_given).max() < 1e-4
    assert np.abs(t_given - t_frame).max() > 10 * np.abs(t_given - o_given).max()  # given values are used
    assert len(o_measured) == len(t_measured) > 0
    assert max(float((a - b).abs().max()) for a, b in zip(o_measured, t_measured, strict=True)) < 1e-4
    from lowlight_cli.context import glances

    graphs = {"glance.onnx"} if glances(net) else {"measure.onnx", "replay.onnx"}  # a glance needs no sweep
    assert {p.name.split("-")[-1] for p in tmp_path.glob("onnx/*.onnx")} == graphs
