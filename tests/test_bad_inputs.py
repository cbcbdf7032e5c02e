"""The bad-input matrix: every way a careful user can get `enhance` wrong, each answered by one `Error:`
line and a `Hint:`, a non-zero exit, no traceback, inputs byte-identical and no file left behind.

Weight-free baselines (and the small bundled msrnet where a learned model is needed) keep it fast.
"""

from __future__ import annotations

import errno
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from conftest import write_clip

GOOD = "good.png"


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def one_error(err: str) -> str:
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, err
    assert " failed in " not in err, err  # no batch summary line for what one input's error says
    assert any(line.startswith("Hint: ") for line in err.splitlines()), err
    return errors[0]


@pytest.fixture
def folder(tmp_path, write_dark):
    write_dark(tmp_path / GOOD)
    return tmp_path


def _missing(tmp, ro):
    return [tmp / "missing.png"], 1, "no such file or folder"


def _empty(tmp, ro):
    (tmp / "empty.jpg").write_bytes(b"")
    return [tmp / "empty.jpg", "-o", tmp / "out.png"], 1, "is empty (0 bytes)"


def _truncated(tmp, ro):
    data = (tmp / GOOD).read_bytes()
    (tmp / "cut.png").write_bytes(data[: len(data) // 2])
    return [tmp / "cut.png", "-o", tmp / "out.png"], 1, "truncated or damaged"


def _not_an_image(tmp, ro):
    (tmp / "text.jpg").write_text("hello, not a photo")
    return [tmp / "text.jpg", "-o", tmp / "out.png"], 1, "not a readable image"


def _unknown_input_suffix(tmp, ro):
    (tmp / "notes.txt").write_text("shopping list")
    return [tmp / "notes.txt"], 1, "not a readable image"


def _unknown_output_suffix(tmp, ro):
    return [tmp / GOOD, "-o", tmp / "notes.txt"], 1, "cannot tell the image format"


def _no_images(tmp, ro):
    (tmp / "empty_folder").mkdir()
    (tmp / "empty_folder" / "readme.txt").write_text("no photos here")
    return [tmp / "empty_folder"], 1, "no images or videos in folder"


def _unwritable_output(tmp, ro):
    (tmp / "locked").mkdir()
    ro(tmp / "locked", errno.EACCES)
    return [tmp / GOOD, "-o", f"{tmp}/locked/"], 1, "Permission denied"


def _read_only_file_system(tmp, ro):
    (tmp / "mnt").mkdir()
    ro(tmp / "mnt")
    return [tmp / GOOD, "-o", tmp / "mnt" / "sub" / "out.png"], 1, "Read-only file system"


def _raw_output(tmp, ro):
    return [tmp / GOOD, "-o", tmp / "out.dng"], 1, "camera RAW is read, never written"


def _output_exists(tmp, ro):
    (tmp / "done.png").write_bytes(b"an earlier result")
    return [tmp / GOOD, "-o", tmp / "done.png"], 1, "exists and was not overwritten"


def _output_over_input(tmp, ro):
    return [tmp / GOOD, "-o", tmp / GOOD], 1, "would overwrite an input"


def _two_inputs_one_output(tmp, ro):
    (tmp / "sub").mkdir()
    (tmp / "sub" / GOOD).write_bytes((tmp / GOOD).read_bytes())
    return [tmp / GOOD, tmp / "sub" / GOOD, "-o", tmp / "out"], 1, "would both be written"


def _several_inputs_to_a_file(tmp, ro):
    (tmp / "b.png").write_bytes((tmp / GOOD).read_bytes())
    (tmp / "file.png").write_bytes(b"a file")
    return [tmp / GOOD, tmp / "b.png", "-o", tmp / "file.png"], 1, "need an output folder"


def _several_inputs_to_a_new_file(tmp, ro):
    (tmp / "b.png").write_bytes((tmp / GOOD).read_bytes())
    return [tmp / GOOD, tmp / "b.png", "-o", tmp / "two.png"], 2, "-o " + str(tmp / "two.png") + " names one file"


def _a_folder_to_a_file(tmp, ro):
    (tmp / "shots").mkdir()
    (tmp / "shots" / GOOD).write_bytes((tmp / GOOD).read_bytes())
    return [tmp / "shots", "-o", tmp / "all.jpg"], 2, "names one file"


def bomb_png(path: Path, side: int = 100_000) -> Path:
    """A PNG of a few hundred bytes whose header claims ``side`` x ``side`` RGB pixels (two rows follow)."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    rows = zlib.compress(b"\x00" * (1 + 3 * side) * 2, 9)
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b""))
    return path


def _decompression_bomb(tmp, ro):
    return [bomb_png(tmp / "bomb.png")], 1, "is 100000 x 100000 = 10,000,000,000 pixels, over the limit of 200,000,000"


def _over_max_pixels(tmp, ro):
    return [tmp / GOOD, "--max-pixels", "3000"], 1, "is 64 x 48 = 3,072 pixels, over the limit of 3,000"


def _video_over_max_pixels(tmp, ro):
    write_clip(tmp / "clip.mkv", frames=2)
    return [tmp / "clip.mkv", "--max-pixels", "3000"], 1, "is 64 x 48 = 3,072 pixels, over the limit of 3,000"


def _bad_shard(tmp, ro):
    return [tmp / GOOD, "--shard", "3/2"], 2, "--shard 3/2"


def _shard_not_k_of_n(tmp, ro):
    return [tmp / GOOD, "--shard", "half"], 2, "is not K/N"


def _bad_strength(tmp, ro):
    return [tmp / GOOD, "--strength", "1.5"], 2, "--strength must be in [0, 1]"


def _tile_below_useful(tmp, ro):
    return [tmp / GOOD, "--model", "msrnet", "--tile", "16"], 2, "useful minimum"


def _negative_tile(tmp, ro):
    return [tmp / GOOD, "--tile", "-5"], 2, "--tile and --overlap must be >= 0"


def _bad_quality(tmp, ro):
    return [tmp / GOOD, "--quality", "101"], 2, "--quality 101"


def _bad_ext(tmp, ro):
    return [tmp / GOOD, "--ext", "gif"], 2, "--ext gif"


def _unknown_model(tmp, ro):
    return [tmp / GOOD, "--model", "gama"], 2, "unknown model"


def _video_not_a_video(tmp, ro):
    (tmp / "clip.mp4").write_text("hello, not a video")
    return [tmp / "clip.mp4"], 1, "is not a readable video"


def _video_empty(tmp, ro):
    (tmp / "clip.mp4").write_bytes(b"")
    return [tmp / "clip.mp4"], 1, "is empty (0 bytes)"


def _video_truncated(tmp, ro):
    data = write_clip(tmp / "whole.mp4").read_bytes()  # MP4 writes its index (moov) last
    (tmp / "whole.mp4").unlink()
    (tmp / "cut.mp4").write_bytes(data[: len(data) // 2])
    return [tmp / "cut.mp4"], 1, "is not a readable video"


def _video_truncated_matroska(tmp, ro):
    data = write_clip(tmp / "whole.mkv", frames=72).read_bytes()  # 3 s
    (tmp / "whole.mkv").unlink()
    (tmp / "cut.mkv").write_bytes(data[: len(data) * 4 // 10])
    return [tmp / "cut.mkv"], 1, "is truncated: its video stops after"


def _video_damaged(tmp, ro):
    data = bytearray(write_clip(tmp / "whole.mov", frames=12).read_bytes())
    (tmp / "whole.mov").unlink()
    middle = len(data) // 2
    data[middle : middle + 2000] = bytes((7 * b + 3) % 256 for b in data[middle : middle + 2000])
    (tmp / "damaged.mov").write_bytes(bytes(data))
    return [tmp / "damaged.mov"], 1, "truncated or damaged"


def _video_audio_only(tmp, ro):
    write_clip(tmp / "sound.mp4", video=False)
    return [tmp / "sound.mp4"], 1, "has no video stream (it holds audio)"


def _video_without_frames(tmp, ro):
    write_clip(tmp / "zero.mkv", frames=0)
    return [tmp / "zero.mkv"], 1, "has a video stream but no frames"


def _video_to_an_image(tmp, ro):
    write_clip(tmp / "clip.mkv", frames=2)
    return [tmp / "clip.mkv", "-o", tmp / "out.png"], 1, "video is written as .mp4, .mkv, .mov"


def _video_to_webm(tmp, ro):
    write_clip(tmp / "clip.mkv", frames=2)
    return [tmp / "clip.mkv", "-o", tmp / "out.webm"], 1, "video is written as"


def _bad_crf(tmp, ro):
    return [tmp / GOOD, "--crf", "52"], 2, "--crf 52"


CASES = [_missing, _empty, _truncated, _not_an_image, _unknown_input_suffix, _unknown_output_suffix, _no_images,
         _unwritable_output, _read_only_file_system, _raw_output, _output_exists, _output_over_input, _two_inputs_one_output,
         _several_inputs_to_a_file, _several_inputs_to_a_new_file, _a_folder_to_a_file, _decompression_bomb,
         _over_max_pixels, _video_over_max_pixels, _bad_shard, _shard_not_k_of_n, _bad_strength, _tile_below_useful,
         _negative_tile, _bad_quality, _bad_ext, _unknown_model, _video_not_a_video, _video_empty, _video_truncated,
         _video_truncated_matroska, _video_damaged, _video_audio_only, _video_without_frames, _video_to_an_image,
         _video_to_webm, _bad_crf]


@pytest.mark.parametrize("case", CASES, ids=[c.__name__.strip("_") for c in CASES])
def test_bad_input_is_one_line_and_leaves_everything_as_it_was(cli, folder, read_only, case):
    args, exit_code, words = case(folder, read_only)
    before = snapshot(folder)
    if "--model" not in args:
        args = [*args, "--model", "gamma_auto"]
    code, out, err = cli("enhance", *args)
    assert code == exit_code, err
    assert words in one_error(err)
    assert snapshot(folder) == before  # inputs byte-identical; no output, temporary or claim file


def test_a_batch_goes_on_past_bad_files_and_reports_them_at_the_end(cli, folder):
    (folder / "empty.png").write_bytes(b"")
    (folder / "text.jpg").write_text("not a photo")
    before = snapshot(folder)
    code, out, err = cli("enhance", folder, "-o", folder / "out", "--model", "autocontrast", "--json")
    records = {Path(r["input"]).name: r for r in map(json.loads, out.splitlines())}
    assert code == 1 and {name: r["status"] for name, r in records.items()} == {
        "empty.png": "failed", GOOD: "ok", "text.jpg": "failed"}
    assert "Traceback" not in err and "1 done, 0 skipped, 2 failed" in err and "2 of 3 inputs failed:" in err
    tail = err.splitlines()[-2:]  # each error once, after the summary
    assert [line.split()[1] for line in tail] == [str(folder / "empty.png"), str(folder / "text.jpg")]
    after = snapshot(folder)
    assert {k: v for k, v in after.items() if not k.startswith("out/")} == before
    assert [k for k in after if k.startswith("out/")] == ["out/good_autocontrast.png"]


def test_a_decompression_bomb_in_a_folder_fails_alone_and_is_reported_at_the_end(cli, folder, write_dark):
    write_dark(folder / "z.png", seed=1)
    bomb_png(folder / "m_bomb.png")
    code, out, err = cli("enhance", folder, "-o", folder / "out", "--model", "gamma", "--json")
    records = {Path(r["input"]).name: r["status"] for r in map(json.loads, out.splitlines())}
    assert code == 1 and records == {GOOD: "ok", "m_bomb.png": "failed", "z.png": "ok"}
    assert "Traceback" not in err and "2 done, 0 skipped, 1 failed" in err and "1 of 3 inputs failed:" in err
    assert err.splitlines()[-2].startswith(f"Error: {folder / 'm_bomb.png'} is 100000 x 100000")
    assert err.splitlines()[-1] == "Hint: if it is a genuine image, raise the limit: --max-pixels 10000000000"


def test_the_pixel_limit_is_read_from_the_header_before_any_decoding(tmp_path, monkeypatch):
    from PIL import ImageFile

    from lowlight_cli import images
    from lowlight_cli.errors import ImageTooLargeError

    monkeypatch.setattr(images.cv2, "imdecode", lambda *a: pytest.fail("OpenCV decoded the bomb"))
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail("Pillow decoded the bomb"))
    with pytest.raises(ImageTooLargeError, match="over the limit of 200,000,000"):
        images.read_image(bomb_png(tmp_path / "bomb.png"))


def test_opencvs_own_limit_is_one_error_line_too(folder):
    """Past --max-pixels, OpenCV's OPENCV_IO_MAX_IMAGE_PIXELS (read when cv2 is imported) still applies."""
    env = {**os.environ, "OPENCV_IO_MAX_IMAGE_PIXELS": "1000"}
    run = subprocess.run([sys.executable, "-m", "lowlight_cli.cli", "enhance", folder / GOOD, "--model", "gamma"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 1 and "is over OpenCV's own size limit" in one_error(run.stderr)
    assert "OPENCV_IO_MAX_IMAGE_PIXELS" in run.stderr.splitlines()[-1]
