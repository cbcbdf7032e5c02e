"""`lowlight eval` and `lowlight compare` on a tiny synthetic LOL-layout folder, dataset resolution, model table."""

import csv
import json
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from conftest import dark_image

from lowlight_cli import evaluate, registry
from lowlight_cli.errors import DatasetError, UsageError
from lowlight_cli.images import read_image, to_uint8
from lowlight_cli.inference import RunOptions, default_model_name, load_enhancer
from lowlight_cli.metrics import gt_mean, psnr, ssim
from lowlight_cli.weights import entries

# stem -> (low suffix, high suffix): pairing must go by stem whatever the extension.
PAIRS = {"1": (".png", ".jpg"), "2": (".jpg", ".webp"), "10": (".webp", ".png")}
MODELS = ("gamma", "clahe")


def make_lol(root: Path, stems=PAIRS, h: int = 40, w: int = 56) -> Path:
    for i, (stem, (low_ext, high_ext)) in enumerate(stems.items()):
        low = dark_image(h, w, seed=i)
        for sub, ext, image in (("low", low_ext, low), ("high", high_ext, np.clip(low.astype(int) * 5, 0, 255))):
            (root / "eval15" / sub).mkdir(parents=True, exist_ok=True)
            assert cv2.imwrite(str(root / "eval15" / sub / f"{stem}{ext}"), image.astype(np.uint8))
    return root


@pytest.fixture
def lol(tmp_path, monkeypatch) -> Path:
    monkeypatch.delenv("LOWLIGHT_DATA", raising=False)
    monkeypatch.setenv("LOWLIGHT_CACHE", str(tmp_path / "cache"))
    return make_lol(tmp_path / "lol")


def direct_scores(model: str, low: Path, high: Path) -> dict[str, float]:
    """The four scores computed here from the metric functions, not through evaluate()."""
    pred = to_uint8(load_enhancer(model, options=RunOptions(device="cpu"))(read_image(low).rgb)) / 255.0
    target = read_image(high).rgb
    fair = gt_mean(pred, target)
    return {"psnr": psnr(pred, target), "ssim": ssim(pred, target),
            "psnr_gtmean": psnr(fair, target), "ssim_gtmean": ssim(fair, target)}


def files(root: Path, stem: str) -> tuple[Path, Path]:
    low, high = PAIRS[stem]
    return root / "eval15" / "low" / f"{stem}{low}", root / "eval15" / "high" / f"{stem}{high}"


@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_eval_rows_match_metrics_computed_directly(cli, lol, tmp_path, suffix):
    rows_path = tmp_path / "out" / f"rows{suffix}"
    code, out, _ = cli("eval", "--data-dir", lol, "--model", ",".join(MODELS), "--device", "cpu",
                       "--output", rows_path, "--json")
    assert code == 0
    if suffix == ".csv":
        with open(rows_path, newline="") as f:
            rows = list(csv.DictReader(f))
    else:
        rows = json.loads(rows_path.read_text())
    assert len(rows) == len(MODELS) * len(PAIRS)
    assert [(r["model"], r["image"]) for r in rows] == [(m, s) for m in MODELS for s in ("1", "2", "10")]
    for row in rows:
        expected = direct_scores(row["model"], *files(lol, row["image"]))
        for key, value in expected.items():
            assert float(row[key]) == pytest.approx(value, abs=1e-9)
    summary = json.loads(out)
    assert summary["pairs"] == 3 and summary["split"] == "eval15" and "GT-mean" in summary["protocol"]
    for model in summary["models"]:
        own = [float(r["psnr_gtmean"]) for r in rows if r["model"] == model["model"]]
        assert model["images"] == 3 and model["psnr_gtmean"] == pytest.approx(np.mean(own), abs=1e-9)


def test_eval_table_names_the_protocol(cli, lol):
    code, out, _ = cli("eval", "--data-dir", lol, "--model", "gamma", "--limit", "2", "--device", "cpu")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("Dataset: lol eval15") and "2 pairs" in lines[0]
    assert lines[1].startswith("Protocol:")
    assert "GT-mean" in out and "gamma" in out


def test_bad_rows_suffix_fails_before_any_work(cli, lol, tmp_path):
    code, _, err = cli("eval", "--data-dir", lol, "--model", "gamma", "--output", tmp_path / "rows.txt")
    assert code == 2 and err.startswith("Error: cannot tell the format")


def test_compare_image_writes_grid_beside_input(cli, tmp_path):
    src, ref = tmp_path / "night.png", tmp_path / "day.png"
    cv2.imwrite(str(src), dark_image(48, 64))
    cv2.imwrite(str(ref), np.clip(dark_image(48, 64).astype(int) * 5, 0, 255).astype(np.uint8))
    before = src.read_bytes()
    code, out, _ = cli("compare", src, "--ref", ref, "--methods", ",".join(MODELS), "--device", "cpu", "--json")
    assert code == 0
    report = json.loads(out)
    assert Path(report["output"]) == tmp_path / "night_compare.png"
    assert [r["model"] for r in report["models"]] == list(MODELS)
    assert report["models"][0]["psnr"] == pytest.approx(direct_scores("gamma", src, ref)["psnr"], abs=1e-9)
    grid = cv2.imread(str(tmp_path / "night_compare.png"))
    panels, height = 4, round(320 * 48 / 64)  # input, two methods, reference
    assert grid.shape == (evaluate.LABEL_BAND + height, panels * 320 + (panels - 1) * evaluate.GAP, 3)
    assert src.read_bytes() == before


def test_compare_table_has_score_columns_only_with_a_reference(cli, tmp_path):
    src, ref = tmp_path / "night.png", tmp_path / "day.png"
    cv2.imwrite(str(src), dark_image(48, 64))
    cv2.imwrite(str(ref), np.clip(dark_image(48, 64).astype(int) * 5, 0, 255).astype(np.uint8))
    code, out, _ = cli("compare", src, "--methods", "gamma", "-o", tmp_path / "a.png")
    assert code == 0 and "s/img" in out and "PSNR" not in out
    code, out, _ = cli("compare", src, "--ref", ref, "--methods", "gamma", "-o", tmp_path / "b.png")
    assert code == 0 and "s/img" in out and "PSNR GT-mean" in out


def test_compare_refuses_to_overwrite_its_input(cli, tmp_path):
    src = tmp_path / "night.png"
    cv2.imwrite(str(src), dark_image())
    code, _, err = cli("compare", src, "--methods", "gamma", "-o", src)
    assert code == 1 and "overwrite the input" in err


def _no_work(monkeypatch):
    """Loading any model fails the test: outputs must be refused before."""
    monkeypatch.setattr(evaluate, "_load", lambda *a, **k: pytest.fail("a model was loaded"))


def _error_line(err: str) -> str:
    assert "Traceback" not in err
    (line,) = [line for line in err.splitlines() if line.startswith("Error: ")]
    assert "Hint: " in err
    return line


@pytest.mark.parametrize("command", ["compare", "eval"])
def test_compare_and_eval_replace_an_existing_output_only_with_overwrite(cli, lol, tmp_path, monkeypatch, command):
    src = tmp_path / "night.png"
    cv2.imwrite(str(src), dark_image())
    kept = tmp_path / ("precious.png" if command == "compare" else "rows.csv")
    kept.write_bytes(b"an earlier result")
    args = [src] if command == "compare" else ["--data-dir", lol]
    with monkeypatch.context() as m:
        _no_work(m)
        code, _, err = cli(command, *args, "--model" if command == "eval" else "--methods", "gamma", "-o", kept)
    assert code == 1 and f"{kept} exists and was not overwritten" in _error_line(err) and "--overwrite" in err
    assert kept.read_bytes() == b"an earlier result"
    code, _, err = cli(command, *args, "--model" if command == "eval" else "--methods", "gamma", "-o", kept, "--overwrite")
    assert code == 0, err
    assert kept.read_bytes() != b"an earlier result"
    assert sorted(p.name for p in kept.parent.iterdir() if p.name.startswith(".")) == []  # no temporary left


def test_compare_checks_its_outputs_before_any_work(cli, lol, tmp_path, monkeypatch, read_only):
    src = tmp_path / "night.png"
    cv2.imwrite(str(src), dark_image())
    _no_work(monkeypatch)
    (tmp_path / "night_compare.png").write_bytes(b"an earlier grid")  # the default output
    code, _, err = cli("compare", src, "--methods", "gamma")
    assert code == 1 and "night_compare.png exists" in _error_line(err)
    code, _, err = cli("compare", src, "--methods", "gamma", "-o", tmp_path / "grid.txt")
    assert code == 1 and "cannot tell the image format" in _error_line(err)
    (tmp_path / "locked").mkdir()
    read_only(tmp_path / "locked")
    code, _, err = cli("compare", src, "--methods", "gamma", "-o", tmp_path / "locked" / "grid.png")
    assert code == 1 and "Read-only file system" in _error_line(err)
    (tmp_path / "cmp").mkdir()
    (tmp_path / "cmp" / "10_compare.png").write_bytes(b"an earlier grid")
    code, _, err = cli("compare", "--dataset", "lol", "--data-dir", lol, "--methods", "gamma", "--grids", "2", "-o", tmp_path / "cmp")
    assert code == 1 and "10_compare.png exists" in _error_line(err)


def test_a_compare_grid_beside_its_input_is_left_out_of_folder_runs(cli, tmp_path):
    shots = tmp_path / "shots"
    shots.mkdir()
    cv2.imwrite(str(shots / "03.jpg"), dark_image())
    code, out, _ = cli("compare", shots / "03.jpg", "--methods", "gamma", "--json")
    assert code == 0 and Path(json.loads(out)["output"]) == shots / "03_compare.png"
    code, out, err = cli("enhance", shots, "-o", tmp_path / "out", "--model", "gamma", "--json")
    assert code == 0, err
    assert [Path(json.loads(line)["input"]).name for line in out.splitlines()] == ["03.jpg"]


def test_compare_and_eval_refuse_an_image_over_max_pixels(cli, lol, tmp_path):
    src = tmp_path / "night.png"
    cv2.imwrite(str(src), dark_image(48, 64))
    code, _, err = cli("compare", src, "--methods", "gamma", "--max-pixels", "3000")
    assert code == 1 and "night.png is 64 x 48 = 3,072 pixels, over the limit of 3,000" in _error_line(err)
    code, _, err = cli("eval", "--data-dir", lol, "--model", "gamma", "--max-pixels", "2000")
    assert code == 1 and "is 56 x 40 = 2,240 pixels, over the limit of 2,000" in _error_line(err)


def test_compare_grid_wraps_rows_and_matches_heights():
    images = [np.zeros((30, 40, 3)), np.ones((60, 40, 3)), *[np.zeros((30, 60, 3))] * 3]
    grid = evaluate.compare_grid(images, [f"m{i}" for i in range(5)], tile_width=80, columns=3)
    height = 60  # the first panel, 80 wide
    widths = [80, 40, 120]  # each keeps its aspect at that height
    assert grid.shape == (2 * (evaluate.LABEL_BAND + height) + evaluate.GAP, sum(widths) + 2 * evaluate.GAP, 3)
    assert grid.dtype == np.float32 and 0.0 <= grid.min() and grid.max() <= 1.0


@pytest.mark.parametrize("n, rows", [(1, [1]), (4, [4]), (5, [3, 2]), (6, [3, 3]), (7, [4, 3]), (9, [3, 3, 3]),
                                     (10, [4, 3, 3]), (13, [4, 3, 3, 3])])
def test_compare_grid_fills_its_rows_evenly(n, rows):
    grid = evaluate.compare_grid([np.zeros((30, 40, 3))] * n, [f"m{i}" for i in range(n)], tile_width=40)
    row_h = evaluate.LABEL_BAND + 30
    assert grid.shape[:2] == (len(rows) * row_h + (len(rows) - 1) * evaluate.GAP,
                              max(rows) * 40 + (max(rows) - 1) * evaluate.GAP)
    for r, count in enumerate(rows):  # each row's caption bands end where its panels do, black after them
        band = grid[r * (row_h + evaluate.GAP) : r * (row_h + evaluate.GAP) + evaluate.LABEL_BAND]
        lit = np.flatnonzero(band.max(axis=(0, 2)) > 0)
        assert lit.max() == count * 40 + (count - 1) * evaluate.GAP - 1


def test_compare_panel_sets_the_grids_picture_width(cli, tmp_path):
    src = tmp_path / "night.png"
    cv2.imwrite(str(src), dark_image(48, 64))
    code, _, _ = cli("compare", src, "--methods", "gamma", "--panel", "128", "-o", tmp_path / "g.png")
    assert code == 0
    assert cv2.imread(str(tmp_path / "g.png")).shape == (evaluate.LABEL_BAND + 96, 2 * 128 + evaluate.GAP, 3)
    code, _, err = cli("compare", src, "--methods", "gamma", "--panel", "8", "-o", tmp_path / "h.png")
    assert code == 2 and "--panel" in err


def test_compare_dataset_writes_grids(cli, lol, tmp_path):
    out_dir = tmp_path / "cmp"
    code, out, _ = cli("compare", "--dataset", "lol", "--data-dir", lol, "--methods", "gamma",
                       "--grids", "2", "-o", out_dir, "--device", "cpu", "--json")
    assert code == 0
    report = json.loads(out)
    assert report["pairs"] == 3 and [Path(p).name for p in report["grids"]] == ["1_compare.png", "10_compare.png"]
    assert all(Path(p).is_file() for p in report["grids"])


def test_resolution_order_data_dir_then_env_then_cache(lol, tmp_path, monkeypatch):
    other = make_lol(tmp_path / "env_lol", stems={"5": (".png", ".png")})
    cached = make_lol(tmp_path / "cache" / "datasets" / "lol", stems={"6": (".png", ".png")})
    monkeypatch.setenv("LOWLIGHT_DATA", str(other))
    assert evaluate.resolve_dataset("lol", lol, "eval15") == lol / "eval15"
    assert evaluate.resolve_dataset("lol") == other / "eval15"
    monkeypatch.delenv("LOWLIGHT_DATA")
    assert evaluate.resolve_dataset("LOL") == cached / "eval15"


def test_env_dataset_used_by_cli(cli, lol, monkeypatch):
    monkeypatch.setenv("LOWLIGHT_DATA", str(lol))
    code, out, _ = cli("eval", "--model", "gamma", "--json", "--device", "cpu")
    assert code == 0 and json.loads(out)["split_dir"] == str(lol / "eval15")


def test_hub_is_the_last_resort_and_fills_the_cache(lol, tmp_path, monkeypatch):
    import huggingface_hub

    calls = []

    def fake_snapshot_download(repo_id, *, repo_type, revision, allow_patterns, local_dir):
        calls.append((repo_id, repo_type, revision, allow_patterns))
        make_lol(Path(local_dir), stems={"7": (".png", ".png")})
        return str(local_dir)

    monkeypatch.setattr(evaluate, "LOL_HUB", {"repo_id": "someone/lol", "revision": "a" * 40})
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    cache_split = tmp_path / "cache" / "datasets" / "lol" / "eval15"
    assert evaluate.resolve_dataset("lol") == cache_split
    assert calls == [("someone/lol", "dataset", "a" * 40, ["eval15/*"])]
    assert evaluate.resolve_dataset("lol") == cache_split and len(calls) == 1  # now found in the cache

    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(DatasetError, match="HF_HUB_OFFLINE"):
        evaluate.resolve_dataset("lol", split="our485")


@pytest.mark.parametrize("args", [[], ["--data-dir", "nowhere"]])
def test_missing_dataset_is_one_clear_error(cli, lol, tmp_path, monkeypatch, args):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # whatever LOL_HUB says, never reach the network
    monkeypatch.chdir(tmp_path)
    code, out, err = cli("eval", "--model", "gamma", *args)
    assert code == 1 and out == ""
    assert [line for line in err.splitlines() if line.startswith("Error:")] == err.splitlines()[:1]
    assert "--data-dir" in err


def test_unknown_dataset_and_split(cli):
    code, _, err = cli("eval", "--dataset", "mit5k")
    assert code == 2 and err.startswith("Error: unknown dataset 'mit5k'")
    with pytest.raises(UsageError, match="unknown split"):
        evaluate.resolve_dataset("lol", split="test")


def test_wrong_output_size_says_use_scale_1():
    upscaler = SimpleNamespace(label="neid", scale=2)
    with pytest.raises(UsageError) as info:
        evaluate.score(np.zeros((20, 20, 3)), np.zeros((10, 10, 3)), upscaler)
    assert "--scale 1" in info.value.hint


def test_model_rows_cover_the_registry_with_numbers_as_numbers(cli):
    code, out, _ = cli("models", "--json", "--all")
    assert code == 0
    rows = {r["name"]: r for r in json.loads(out)}
    assert set(rows) == {spec.name for spec in registry.specs()} | {e.name for e in entries()}
    assert rows["gamma"]["params"] is None and rows["gamma"]["weights"] == "-"
    assert rows["msrnet"]["params"] == sum(p.numel() for p in registry.get("msrnet").create().parameters())
    assert rows["msrnet"]["weights"] in ("bundled", "hub", "none") and rows["neid"]["scales"] == [1, 2]
    assert rows["msrnet"]["eval15_psnr"] == pytest.approx(18.20) and "macs_per_px" not in rows["msrnet"]
    assert [name for name, row in rows.items() if row["default"]] == [default_model_name()]
    defaults = evaluate.default_models()
    assert set(MODELS) <= set(defaults) and "msrnet_tiny" not in defaults


def test_models_hides_test_variants_unless_all(cli):
    code, out, _ = cli("models", "--json")
    names = {r["name"] for r in json.loads(out)}
    assert code == 0 and "msrnet" in names and not any(n.endswith("_tiny") for n in names)


def test_model_table_piped_keeps_one_line_per_model_and_marks_the_default(cli):
    code, out, _ = cli("models")
    assert code == 0
    rows = [line for line in out.splitlines() if line.startswith("│")]
    lines = {line.split("│")[1].strip(): line for line in rows}
    lines.pop("", None)  # a long summary may wrap onto a continuation line
    default = default_model_name()
    assert f"{default} (default)" in lines
    lines[default] = lines.pop(f"{default} (default)")
    names = {spec.name for spec in registry.specs() if not spec.test_only}
    assert set(lines) == names | {e.name for e in entries() if e.arch in names}  # no name cut or wrapped
    assert "31.80 M" in lines["mirnet_paper"] and "learned" in lines["mirnet_paper"]


def test_model_table_in_a_narrow_terminal_puts_the_summaries_under_it(cli, monkeypatch):
    """At 80 columns the figures keep their columns and every summary is printed whole, beside its name."""
    from rich.console import Console

    from lowlight_cli import cli as cli_module

    monkeypatch.setattr(cli_module, "out", Console(width=80, force_terminal=True, color_system=None, soft_wrap=True))
    code, out, _ = cli("models")
    assert code == 0 and max(map(len, out.splitlines())) <= 80
    flat = " ".join(out.split())
    for row in evaluate.model_rows():
        assert f"{row['name']}{' (default)' if row['default'] else ''} {' '.join(row['summary'].split())}" in flat


def test_every_name_models_lists_is_taken_by_model(cli, tmp_path):
    """`lowlight models --all` lists each weights entry (mirnet.lol, mirnet.mix, ...) under its model, and
    `--model` takes every name listed: the planned output carries the entry's own label."""
    code, out, _ = cli("models", "--json", "--all")
    rows = json.loads(out)
    entry_rows = {r["name"]: r for r in rows if r["kind"] == "weights"}
    assert code == 0 and set(entry_rows) == {e.name for e in entries()}
    for e in entries():
        row = entry_rows[e.name]
        assert row["arch"] == e.arch and row["arch_default"] == e.default and not row["default"]
        assert row["eval15_psnr"] == e.metrics.get("eval15_psnr")
    assert {"mirnet.lol", "mirnet.mix", "mirnet.gate"} <= set(entry_rows)
    src = tmp_path / "night.png"
    cv2.imwrite(str(src), dark_image())
    for row in rows:
        code, out, err = cli("enhance", src, "--model", row["name"], "--dry-run", "--json")
        assert code == 0, (row["name"], err)
        label = json.loads(out)["model"]
        assert label == row["name"] if row["kind"] == "weights" else label.split(".")[0] == row["name"]


def test_models_builds_no_real_network_and_runs_no_forward_pass(monkeypatch):
    # The listing used to build and run every network (7.8 s with the 43 M-parameter variants):
    # parameters must come from shapes alone, and MACs (a forward pass) only when asked for.
    devices = set()
    register = torch.nn.Module.register_parameter

    def record(self, name, param):
        if param is not None:
            devices.add(param.device.type)
        return register(self, name, param)

    def no_forward(*args, **kwargs):
        raise AssertionError("a forward pass ran")

    monkeypatch.setattr(torch.nn.Module, "register_parameter", record)
    monkeypatch.setattr(evaluate, "count_macs", no_forward)
    rows = evaluate.model_rows(include_tests=True)
    assert devices == {"meta"} and all(r["params"] > 0 for r in rows if r["kind"] == "learned")


def test_models_macs_on_request(cli, monkeypatch):
    monkeypatch.setattr(evaluate, "macs_per_pixel", lambda spec: 1234.0)  # the real count runs every network
    code, out, _ = cli("models", "--macs", "--json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert code == 0 and rows["msrnet"]["macs_per_px"] == 1234.0 and rows["gamma"]["macs_per_px"] is None
    code, out, _ = cli("models", "--macs")
    assert code == 0 and "MACs/px" in out and "1.2 k" in out


@pytest.mark.lol
def test_lol_eval15_baseline_runs_on_two_images(lol_dir):
    result = evaluate.evaluate(["clahe"], evaluate.resolve_dataset("lol", lol_dir, "eval15"),
                               RunOptions(device="cpu"), limit=2)
    assert result.pairs == 2 and len(result.rows) == 2
    (summary,) = result.summary
    assert 5 < summary["psnr"] < 40 and 0 < summary["ssim"] < 1
    assert summary["psnr_gtmean"] > summary["psnr"]  # LOL outputs of a baseline are mostly too dark or bright


def test_t_quantile_matches_tables():
    from lowlight_cli.evaluate import _t975

    assert _t975(4) == pytest.approx(2.7764, rel=0.003)
    for dof, t in ((10, 2.2281), (14, 2.1448), (41, 2.0195), (1000, 1.9623)):
        assert _t975(dof) == pytest.approx(t, rel=2e-4)


def test_paired_compares_two_weights_files_image_by_image(cli, lol, tmp_path):
    from lowlight_cli.weights import save_weights

    spec = registry.get("msrnet_tiny")
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        paths.append(tmp_path / f"w{seed}.safetensors")
        save_weights(spec.create().state_dict(), paths[-1], arch="msrnet_tiny", hparams=dict(spec.hparams))
    rows = tmp_path / "rows.csv"
    code, out, err = cli("eval", "--data-dir", lol, "--paired", *map(str, paths), "--device", "cpu", "-o", rows, "--json")
    assert code == 0, err
    stats = json.loads(out)
    per = {}
    for r in csv.DictReader(open(rows)):
        per.setdefault(r["image"], {})[r["model"]] = float(r["psnr"])
    diffs = np.array([v[str(paths[1])] - v[str(paths[0])] for v in per.values()])
    assert stats["images"] == len(diffs) == len(PAIRS)
    assert stats["mean_diff"] == pytest.approx(diffs.mean(), abs=1e-4)
    assert stats["se"] == pytest.approx(diffs.std(ddof=1) / np.sqrt(len(diffs)), abs=1e-4)
    lo, hi = stats["ci95"]
    assert lo < stats["mean_diff"] < hi
    code, text, _ = cli("eval", "--data-dir", lol, "--paired", str(paths[0]), str(paths[0]), "--device", "cpu")
    assert code != 0  # one model twice is refused
    code, text, err = cli("eval", "--data-dir", lol, "--paired", "gamma", "msrcr", "--device", "cpu")
    assert code == 0 and "95 % interval" in text and "B - A" in text, err


def test_split_val_is_the_training_hold_out(tmp_path):
    from lowlight_cli.training.data import read_scenes, split_by_scene

    root = tmp_path / "lol"
    for i in range(12):
        for sub in ("low", "high"):
            (root / "our485" / sub).mkdir(parents=True, exist_ok=True)
            assert cv2.imwrite(str(root / "our485" / sub / f"{i}.png"), dark_image(16, 16, seed=i))
    (root / "scenes.csv").write_text("id,scene\n" + "".join(f"{i},{i // 3}\n" for i in range(12)))
    val = evaluate.validation_stems(root)
    stems = [str(i) for i in sorted(range(12))]
    _, idx = split_by_scene(stems, read_scenes(root / "scenes.csv"), fraction=0.1, seed=0)
    assert val == [stems[i] for i in idx] and len(val) == 3
    result = evaluate.evaluate(["gamma"], evaluate.resolve_dataset("lol", root, "val"), RunOptions(device="cpu"))
    assert sorted(r["image"] for r in result.rows) == sorted(val)


def test_panel_names_say_the_scale_of_models_with_several():
    neid, msrnet = registry.get("neid"), registry.get("msrnet")
    name = lambda spec, scale: evaluate.panel_name(SimpleNamespace(spec=spec, label=f"{spec.name}.lol", scale=scale))  # noqa: E731
    assert name(neid, 1) == "neid.lol x1 (input halved)"
    assert name(neid, 2) == "neid.lol x2"
    assert name(msrnet, 1) == "msrnet.lol"


def test_compare_image_captions_the_scale_and_reports_progress_per_method(tmp_path, monkeypatch):
    src = tmp_path / "night.png"
    cv2.imwrite(str(src), dark_image(32, 32))
    captions, calls = [], []
    grid = evaluate.compare_grid
    monkeypatch.setattr(evaluate, "compare_grid", lambda rgbs, labels, **k: captions.extend(labels) or grid(rgbs, labels, **k))
    evaluate.compare_image(src, ["gamma", "neid"], options=RunOptions(device="cpu"), progress=lambda *a: calls.append(a))
    assert captions == ["input", "gamma", "neid.mix x1 (input halved)"]
    assert calls == [(1, 2), (2, 2)]
