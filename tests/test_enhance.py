"""`lowlight enhance`: outputs, batches, shards, skipping, and every bad input giving one clear line."""

import hashlib
import json
from pathlib import Path

import pytest


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def records(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def test_single_file_default_name_beside_input(cli, write_dark, tmp_path):
    src = write_dark(tmp_path / "night.png")
    before = digest(src)
    code, out, err = cli("enhance", src, "--model", "gamma", "--json")
    # On stderr only the one-line summary, not even a progress bar's newline.
    assert code == 0 and err.startswith("1 done, 0 skipped, 0 failed in ") and err.count("\n") == 1, err
    (rec,) = records(out)
    assert rec["status"] == "ok" and rec["model"] == "gamma"
    assert Path(rec["output"]) == tmp_path / "night_gamma.png"
    assert (tmp_path / "night_gamma.png").is_file()
    assert digest(src) == before


def test_an_image_under_another_suffix_gets_a_png_output_by_default(cli, write_dark, tmp_path):
    src = write_dark(tmp_path / "night.png").rename(tmp_path / "night.dat")  # decoded by content
    code, out, _ = cli("enhance", src, "--model", "gamma", "--json")
    assert code == 0
    (rec,) = records(out)
    assert Path(rec["output"]) == tmp_path / "night_gamma.png" and (tmp_path / "night_gamma.png").is_file()


def test_folder_mirrors_subfolders_skips_existing_and_overwrites(cli, write_dark, tmp_path):
    write_dark(tmp_path / "in" / "a.png")
    write_dark(tmp_path / "in" / "sub" / "b.jpg", seed=1)
    out_dir = tmp_path / "out"
    code, out, _ = cli("enhance", tmp_path / "in", "-r", "-o", out_dir, "--model", "gamma", "--json")
    assert code == 0
    assert {r["status"] for r in records(out)} == {"ok"}
    assert (out_dir / "a_gamma.png").is_file() and (out_dir / "sub" / "b_gamma.jpg").is_file()
    code, out, err = cli("enhance", tmp_path / "in", "-r", "-o", out_dir, "--model", "gamma", "--json")
    assert [r["status"] for r in records(out)] == ["skipped", "skipped"]
    assert "0 done, 2 skipped (outputs exist; --overwrite redoes them), 0 failed" in err
    code, out, _ = cli("enhance", tmp_path / "in", "-r", "-o", out_dir, "--model", "gamma", "--json", "--overwrite")
    assert [r["status"] for r in records(out)] == ["ok", "ok"]


def test_folder_without_recursive_ignores_subfolders(cli, write_dark, tmp_path):
    write_dark(tmp_path / "in" / "a.png")
    write_dark(tmp_path / "in" / "sub" / "b.png")
    code, out, _ = cli("enhance", tmp_path / "in", "-o", tmp_path / "out", "--model", "gamma", "--json")
    assert code == 0 and len(records(out)) == 1


def test_shards_partition_the_inputs(cli, write_dark, tmp_path):
    for i in range(7):
        write_dark(tmp_path / "in" / f"{i}.png", h=8, w=8, seed=i)
    seen = []
    for k in (1, 2, 3):
        code, out, _ = cli("enhance", tmp_path / "in", "-o", tmp_path / "out", "--model", "gamma",
                           "--json", "--shard", f"{k}/3")
        assert code == 0
        seen += [r["input"] for r in records(out)]
    assert sorted(seen) == sorted(str(p) for p in (tmp_path / "in").iterdir())


def test_batch_goes_on_past_a_bad_file_and_exits_1(cli, write_dark, tmp_path):
    write_dark(tmp_path / "in" / "good.png")
    (tmp_path / "in" / "bad.png").write_text("not an image")
    code, out, err = cli("enhance", tmp_path / "in", "-o", tmp_path / "out", "--model", "gamma", "--json")
    assert code == 1
    status = {Path(r["input"]).name: r["status"] for r in records(out)}
    assert status == {"good.png": "ok", "bad.png": "failed"}
    assert "bad.png" in one_error_line(err) and "1 of 2 inputs failed" in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good_gamma.png"]


def test_greyscale_and_16_bit_keep_their_format(cli, tmp_path):
    import cv2
    import numpy as np

    grey = tmp_path / "grey.png"
    cv2.imwrite(str(grey), (np.arange(64 * 48).reshape(48, 64) % 50).astype(np.uint8))
    deep = tmp_path / "deep.png"
    cv2.imwrite(str(deep), (np.random.default_rng(0).random((40, 30, 3)) * 9000).astype(np.uint16))
    for src in (grey, deep):
        code, out, _ = cli("enhance", src, "--model", "gamma", "--json")
        assert code == 0
    g = cv2.imread(str(tmp_path / "grey_gamma.png"), cv2.IMREAD_UNCHANGED)
    d = cv2.imread(str(tmp_path / "deep_gamma.png"), cv2.IMREAD_UNCHANGED)
    assert g.ndim == 2 and g.dtype == np.uint8
    assert d.shape == (40, 30, 3) and d.dtype == np.uint16


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_bad_inputs_give_one_clear_line(cli, write_dark, tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "text.png"
    text.write_text("hello")
    good = write_dark(tmp_path / "good.jpg")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    (tmp_path / "nothing").mkdir()
    cases = {
        tmp_path / "missing.png": "no such file",
        empty: "empty",
        text: "",
        truncated: "",
    }
    for src, words in cases.items():
        code, _, err = cli("enhance", src, "--model", "gamma", "-o", tmp_path / "o.png")
        assert code == 1, (src, err)
        assert words in one_error_line(err).lower()
    code, _, err = cli("enhance", tmp_path / "nothing", "--model", "gamma")
    assert code == 1 and "no images" in one_error_line(err) and "--recursive" not in err  # no sub-folders to look in
    write_dark(tmp_path / "nothing" / "sub" / "x.png")
    code, _, err = cli("enhance", tmp_path / "nothing", "--model", "gamma")
    assert code == 1 and "no images" in one_error_line(err) and "Hint: add --recursive" in err
    assert not (tmp_path / "o.png").exists()


def test_an_output_folder_that_cannot_be_made_is_one_error_before_any_work(cli, write_dark, tmp_path):
    write_dark(tmp_path / "in" / "a.png")
    write_dark(tmp_path / "in" / "b.png", seed=1)
    (tmp_path / "file.jpg").write_bytes(b"x")
    code, _, err = cli("enhance", tmp_path / "in", "--model", "gamma", "-o", tmp_path / "file.jpg" / "out")
    assert code == 1 and "inputs failed" not in err and " done" not in err  # no image was enhanced
    assert "cannot make the output folder" in one_error_line(err) and "Hint: choose another -o" in err


def test_usage_errors_exit_2_with_hints(cli, write_dark, tmp_path):
    src = write_dark(tmp_path / "a.png")
    code, _, err = cli("enhance", src, "--model", "gama")
    assert code == 2 and "unknown model" in one_error_line(err) and "'gamma'" in err
    code, _, err = cli("enhance", src, "--model", "msrnet_tiny", "--weights", src, "--tile", "-5")
    assert code != 0
    code, _, err = cli("enhance", src, "--model", "gamma", "--shard", "4/3")
    assert code == 2 and "--shard" in one_error_line(err)
    code, _, err = cli("enhance", src, "--model", "gamma", "--precision", "fp16", "--device", "cpu")
    assert code == 2


def test_output_equal_to_input_is_refused(cli, write_dark, tmp_path):
    src = write_dark(tmp_path / "a.png")
    before = digest(src)
    code, _, err = cli("enhance", src, "--model", "gamma", "-o", src)
    assert code == 1 and "overwrite an input" in one_error_line(err)
    # A folder into itself keeping the names: every output would be its input.
    code, _, err = cli("enhance", tmp_path, "--model", "gamma", "-o", tmp_path, "--suffix", "")
    assert code == 1 and "overwrite an input" in one_error_line(err)
    assert digest(src) == before


def test_unwritable_output_folder(cli, write_dark, tmp_path):
    src = write_dark(tmp_path / "a.png")
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    for target in (blocker / "x.png", Path("/proc/lowlight-test/x.png")):
        code, _, err = cli("enhance", src, "--model", "gamma", "-o", target)
        assert code == 1 and "output" in one_error_line(err).lower(), err


@pytest.fixture
def no_model(monkeypatch):
    """Fail the test if a model is loaded: what must happen before any work, or instead of it."""
    from lowlight_cli import inference

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(inference, "load_enhancer", refuse)


def test_a_rerun_with_the_output_inside_the_input_tree_skips_everything(cli, write_dark, tmp_path):
    write_dark(tmp_path / "tree" / "a.png")
    write_dark(tmp_path / "tree" / "sub" / "b.png", seed=1)
    args = ("enhance", tmp_path / "tree", "-r", "-o", tmp_path / "tree" / "bright", "--model", "gamma", "--json")
    code, out, _ = cli(*args)
    assert code == 0 and [r["status"] for r in records(out)] == ["ok", "ok"]
    code, out, err = cli(*args)  # used to take tree/bright/* as inputs: "would overwrite an input"
    assert code == 0, err
    assert [(Path(r["input"]).name, r["status"]) for r in records(out)] == [("a.png", "skipped"), ("b.png", "skipped")]


def test_outputs_written_beside_inputs_are_not_taken_as_inputs(cli, write_dark, tmp_path, caplog):
    write_dark(tmp_path / "shots" / "a.png")
    write_dark(tmp_path / "shots" / "b.jpg", seed=1)
    assert cli("enhance", tmp_path / "shots" / "a.png", "--model", "gamma")[0] == 0  # shots/a_gamma.png
    caplog.set_level("INFO", logger="lowlight")
    code, out, err = cli("enhance", tmp_path / "shots", "-o", tmp_path / "shots", "--model", "gamma", "--json")
    assert code == 0
    assert [(Path(r["input"]).name, r["status"]) for r in records(out)] == [("a.png", "skipped"), ("b.jpg", "ok")]
    assert "left out 1 image(s)" in caplog.text and "(*_gamma.*)" in caplog.text and "a_gamma.png" in caplog.text
    code, out, _ = cli("enhance", tmp_path / "shots", "-o", tmp_path / "shots", "--model", "gamma", "--json")
    assert [r["status"] for r in records(out)] == ["skipped", "skipped"]
    # A file given by name is always an input.
    code, out, _ = cli("enhance", tmp_path / "shots" / "a_gamma.png", "--model", "gamma", "--json")
    assert code == 0 and Path(records(out)[0]["output"]).name == "a_gamma_gamma.png"


def test_an_explicit_output_that_exists_is_an_error_that_names_overwrite(cli, write_dark, tmp_path, no_model):
    src = write_dark(tmp_path / "a.png")
    target = tmp_path / "existing.png"
    target.write_bytes(b"keep me")
    code, out, err = cli("enhance", src, "--model", "gamma", "-o", target)
    assert code == 1 and "existing.png exists" in one_error_line(err) and "Hint: add --overwrite" in err
    assert target.read_bytes() == b"keep me"


def test_an_explicit_output_is_replaced_with_overwrite(cli, write_dark, tmp_path):
    src = write_dark(tmp_path / "a.png")
    (tmp_path / "existing.png").write_bytes(b"old")
    code, out, _ = cli("enhance", src, "--model", "gamma", "-o", tmp_path / "existing.png", "--overwrite", "--json")
    assert code == 0 and records(out)[0]["status"] == "ok" and (tmp_path / "existing.png").read_bytes() != b"old"


@pytest.mark.parametrize("target, words", [
    ("notes.txt", "cannot tell the image format"),
    ("noext", "cannot tell the image format"),
    ("ro/x.png", "Read-only file system"),
    ("ro/new/", "Read-only file system"),
])
def test_output_problems_are_found_before_the_model_loads(cli, write_dark, tmp_path, read_only, no_model, target, words):
    src = write_dark(tmp_path / "a.png")
    (tmp_path / "ro").mkdir()
    read_only(tmp_path / "ro")
    code, _, err = cli("enhance", src, "--model", "gamma", "-o", f"{tmp_path}/{target}")
    assert code == 1 and words in one_error_line(err)
    assert "Hint:" in err


def test_a_trailing_slash_means_a_folder_made_when_missing(cli, write_dark, tmp_path):
    src = write_dark(tmp_path / "a.png")
    code, out, _ = cli("enhance", src, "--model", "gamma", "-o", f"{tmp_path}/newdir/", "--json")
    assert code == 0 and Path(records(out)[0]["output"]) == tmp_path / "newdir" / "a_gamma.png"
    assert (tmp_path / "newdir" / "a_gamma.png").is_file()


def test_one_file_and_a_folder_name_outputs_the_same_way(cli, write_dark, tmp_path):
    write_dark(tmp_path / "in" / "a.png")
    for args, folder in (((tmp_path / "in" / "a.png",), "one"), ((tmp_path / "in",), "many")):
        code, out, _ = cli("enhance", *args, "-o", f"{tmp_path / folder}/", "--model", "gamma",
                           "--suffix", "_lit", "--ext", "webp", "--quality", "80", "--json")
        assert code == 0 and Path(records(out)[0]["output"]) == tmp_path / folder / "a_lit.webp"
    assert (tmp_path / "one" / "a_lit.webp").read_bytes() == (tmp_path / "many" / "a_lit.webp").read_bytes()
    code, out, _ = cli("enhance", tmp_path / "in", "-o", tmp_path / "plain", "--model", "gamma", "--suffix", "", "--json")
    assert code == 0 and Path(records(out)[0]["output"]) == tmp_path / "plain" / "a.png"


def test_bad_naming_options_are_usage_errors(cli, write_dark, tmp_path, no_model):
    src = write_dark(tmp_path / "a.png")
    for args, words in (
        (("--ext", "gif"), "--ext gif"),
        (("--quality", "0"), "--quality 0"),
        (("--suffix", "x/y"), "path separator"),
        (("-o", tmp_path / "b.png", "--ext", "jpg"), "names the output file itself"),
    ):
        code, _, err = cli("enhance", src, "--model", "gamma", *args)
        assert code == 2 and words in one_error_line(err), err


def test_help_lists_the_formats_and_the_quality_defaults(cli):
    from lowlight_cli.batch import EXTS
    from lowlight_cli.images import _SAVE_OPTIONS

    code, out, _ = cli("enhance", "-h")
    text = " ".join(out.split())
    assert code == 0 and all(f" {ext}," in text or f" {ext} " in text or f" {ext}." in text for ext in EXTS)
    qualities = {"JPEG": "95 for JPEG", "WEBP": "95 for JPEG and WebP", "HEIF": "90 for HEIC", "AVIF": "90 for HEIC and AVIF"}
    assert all(f"{options['quality']}" in qualities[fmt] and qualities[fmt] in text
               for fmt, options in _SAVE_OPTIONS.items() if "quality" in options)
    assert "--suffix" in text and "--dry-run" in text


def test_dry_run_prints_the_plan_and_skips_without_a_model(cli, write_dark, tmp_path, no_model):
    write_dark(tmp_path / "in" / "a.png")
    write_dark(tmp_path / "in" / "b.png", seed=1)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a_gamma.png").write_bytes(b"done before")
    code, out, err = cli("enhance", tmp_path / "in", "-o", tmp_path / "out", "--model", "gamma", "--dry-run")
    assert code == 0
    assert out.splitlines() == [
        f"skipped  {tmp_path}/in/a.png -> {tmp_path}/out/a_gamma.png",
        f"planned  {tmp_path}/in/b.png -> {tmp_path}/out/b_gamma.png",
    ]
    assert "1 planned, 1 skipped" in err and "nothing loaded or written" in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_gamma.png"]
    code, out, _ = cli("enhance", tmp_path / "in", "-o", tmp_path / "out", "--model", "gamma", "--dry-run", "--json")
    assert [r["status"] for r in records(out)] == ["skipped", "planned"]


def test_dry_run_labels_outputs_as_the_loaded_model_does():
    from lowlight_cli import registry
    from lowlight_cli.batch import model_label
    from lowlight_cli.inference import load_enhancer
    from lowlight_cli.evaluate import default_models

    for name in default_models():  # every baseline and every learned model with weights
        for variant in {name, registry.get(name).name}:
            assert model_label(variant) == load_enhancer(variant).label


def test_a_write_that_fails_mid_batch_is_reported_at_the_end(cli, write_dark, tmp_path, read_only, monkeypatch):
    # The file system turns read-only under a running batch (as Linux remounts a failing disk).
    from lowlight_cli import batch

    write_dark(tmp_path / "in" / "a.png")
    write_dark(tmp_path / "in" / "b.png", seed=1)
    write_image = batch.write_image

    def failing_for_a(path, picture, **kwargs):
        if path.name.startswith("a"):
            read_only(path.parent)
        try:
            write_image(path, picture, **kwargs)
        finally:
            if path.name.startswith("a"):
                read_only.undo(path.parent)

    monkeypatch.setattr(batch, "write_image", failing_for_a)
    code, out, err = cli("enhance", tmp_path / "in", "-o", tmp_path / "out", "--model", "gamma", "--json")
    assert code == 1 and [r["status"] for r in records(out)] == ["failed", "ok"]
    assert "Read-only file system" in one_error_line(err) and "1 of 2 inputs failed" in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["b_gamma.png"]  # no temporary, no claim


def test_an_output_claimed_by_a_live_process_is_left_to_it(cli, write_dark, tmp_path):
    import json as _json
    import os
    import socket
    import time

    write_dark(tmp_path / "in" / "a.png")
    write_dark(tmp_path / "in" / "b.png", seed=1)
    (tmp_path / "out").mkdir()
    lock = tmp_path / "out" / ".a_gamma.png.lock"
    lock.write_text(_json.dumps({"host": socket.gethostname(), "pid": os.getppid(), "time": time.time(), "token": "x"}))
    code, out, err = cli("enhance", tmp_path / "in", "-o", tmp_path / "out", "--model", "gamma", "--json")
    assert code == 0 and [r["status"] for r in records(out)] == ["claimed", "ok"]
    assert f"pid {os.getppid()}" in records(out)[0]["holder"]
    assert "1 done, 0 skipped, 1 in progress elsewhere, 0 failed" in err
    assert lock.exists() and not (tmp_path / "out" / "a_gamma.png").exists()
    lock.unlink()  # the other process is done (without writing: its output would be skipped)
    code, out, _ = cli("enhance", tmp_path / "in", "-o", tmp_path / "out", "--model", "gamma", "--json")
    assert [r["status"] for r in records(out)] == ["ok", "skipped"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_gamma.png", "b_gamma.png"]
