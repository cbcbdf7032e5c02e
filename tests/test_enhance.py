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
    assert (out_dir / "a.png").is_file() and (out_dir / "sub" / "b.jpg").is_file()
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
    assert (tmp_path / "out" / "good.png").is_file() and not (tmp_path / "out" / "bad.png").exists()


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


def test_an_output_folder_that_cannot_be_made_is_reported_once_with_its_hint(cli, write_dark, tmp_path):
    write_dark(tmp_path / "in" / "a.png")
    write_dark(tmp_path / "in" / "b.png", seed=1)
    (tmp_path / "file.jpg").write_bytes(b"x")
    code, _, err = cli("enhance", tmp_path / "in", "--model", "gamma", "-o", tmp_path / "file.jpg" / "out")
    assert code == 1 and "2 of 2 inputs failed" in err
    assert "cannot create output folder" in one_error_line(err) and "Hint: check permissions" in err


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
    code, _, err = cli("enhance", tmp_path, "--model", "gamma", "-o", tmp_path)
    assert code == 1
    assert digest(src) == before


def test_unwritable_output_folder(cli, write_dark, tmp_path):
    src = write_dark(tmp_path / "a.png")
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    for target in (blocker / "x.png", Path("/proc/lowlight-test/x.png")):
        code, _, err = cli("enhance", src, "--model", "gamma", "-o", target)
        assert code == 1 and "output" in one_error_line(err).lower(), err
