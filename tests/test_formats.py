"""HEIC/HEIF, AVIF and camera RAW: decoding, bit depth, orientation, metadata, output formats, folder runs
and bad files. Every file is made here: HEIC with pillow-heif, AVIF with Pillow, DNG with tifffile."""

from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pillow_heif
import pytest
import tifffile
from PIL import Image, ImageCms

from lowlight_cli import images
from lowlight_cli.errors import InputImageError, OutputError
from lowlight_cli.images import RAW_SUFFIXES, Picture, check_output, output_suffix, read_image, to_uint8, write_image

H, W = 32, 48


def _quadrants() -> np.ndarray:
    """Flat colour quadrants: they survive lossy coding and tell every rotation apart."""
    stored = np.zeros((H, W, 3), np.uint8)
    stored[: H // 2, : W // 2] = (250, 10, 10)
    stored[: H // 2, W // 2 :] = (10, 250, 10)
    stored[H // 2 :, : W // 2] = (10, 10, 250)
    stored[H // 2 :, W // 2 :] = (250, 250, 10)
    return stored


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "TestCam"
    return exif.tobytes()


# Made once: a profile made now carries the current second, so two made apart differ.
ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _tags(exif: bytes | None) -> Image.Exif:
    tags = Image.Exif()
    tags.load(exif)
    return tags


def _heic(path: Path, pixels: np.ndarray, **options) -> Path:
    mode = "RGB" + (";16" if pixels.dtype == np.uint16 else "")
    heif = pillow_heif.from_bytes(mode, (pixels.shape[1], pixels.shape[0]), pixels.tobytes())
    heif.save(path, quality=95, **options)
    return path


# ---------------------------------------------------------------- HEIC / HEIF


def test_heic_is_read_upright_once_with_exif_and_icc_and_written_back(tmp_path):
    # pillow-heif's encoder, like a phone, turns EXIF orientation 6 into HEIF's rotation box and keeps the tag.
    src = _heic(tmp_path / "in.heic", _quadrants(), exif=_exif(6), icc_profile=ICC)
    picture = read_image(src)
    upright = np.rot90(_quadrants(), -1)
    assert picture.bit_depth == 8 and picture.rgb.shape == upright.shape
    assert np.abs(to_uint8(picture.rgb).astype(int) - upright).mean() < 10  # a wrong turn is ~150 off
    assert _tags(picture.exif)[0x0112] == 1 and _tags(picture.exif)[0x010F] == "TestCam"
    assert picture.icc == ICC

    write_image(tmp_path / "out.heic", picture)
    again = read_image(tmp_path / "out.heic")
    assert again.rgb.shape == upright.shape  # not turned a second time
    assert np.abs(to_uint8(again.rgb).astype(int) - upright).mean() < 10
    assert _tags(again.exif)[0x010F] == "TestCam" and again.icc == ICC


@pytest.mark.parametrize("bits", [10, 12])
def test_deep_heic_takes_the_16_bit_path(tmp_path, monkeypatch, bits):
    monkeypatch.setattr(pillow_heif.options, "SAVE_HDR_TO_12_BIT", bits == 12)
    ramp = np.linspace(0.02, 0.98, W, dtype=np.float32)[None, :, None] * np.ones((H, 1, 3), np.float32)
    src = _heic(tmp_path / "deep.heic", np.rint(ramp * 65535).astype(np.uint16))
    assert pillow_heif.open_heif(src).info["bit_depth"] == bits

    picture = read_image(src)
    assert picture.bit_depth == 16
    assert np.abs(picture.rgb - ramp).max() < 0.02  # scaled from its own depth, not from 16 bits

    write_image(tmp_path / "out.png", picture)
    assert cv2.imread(str(tmp_path / "out.png"), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    monkeypatch.setattr(pillow_heif.options, "SAVE_HDR_TO_12_BIT", False)  # the library's default
    write_image(tmp_path / "out.heic", picture)
    assert pillow_heif.open_heif(tmp_path / "out.heic").info["bit_depth"] == 10


def test_heic_alpha_is_kept(tmp_path):
    alpha = np.linspace(0, 1, W, dtype=np.float32)[None, :] * np.ones((H, 1), np.float32)
    write_image(tmp_path / "a.heic", Picture(np.full((H, W, 3), 0.5, np.float32), alpha, 8, False, None, None))
    picture = read_image(tmp_path / "a.heic")
    assert picture.alpha is not None and np.abs(picture.alpha - alpha).max() < 0.03


def test_heic_output_suffix_follows_the_encoder(monkeypatch):
    assert output_suffix(Path("IMG_0001.HEIC")) == ".HEIC"
    assert check_output(Path("x.heic")) == "HEIF"
    monkeypatch.setattr(pillow_heif, "libheif_info", lambda: {"HEIF": "", "AVIF": ""})  # a libheif without x265
    assert output_suffix(Path("IMG_0001.HEIC")) == ".jpg"
    with pytest.raises(OutputError, match="no HEIC encoder") as caught:
        check_output(Path("x.heic"))
    assert ".jpg" in caught.value.hint


# ---------------------------------------------------------------- AVIF


def test_avif_is_read_upright_with_exif_and_icc_and_written_back(tmp_path):
    Image.fromarray(_quadrants()).save(tmp_path / "in.avif", exif=_exif(6), icc_profile=ICC, quality=95)
    picture = read_image(tmp_path / "in.avif")
    upright = np.rot90(_quadrants(), -1)
    assert picture.bit_depth == 8 and picture.rgb.shape == upright.shape
    assert np.abs(to_uint8(picture.rgb).astype(int) - upright).mean() < 10
    assert _tags(picture.exif)[0x0112] == 1 and _tags(picture.exif)[0x010F] == "TestCam"
    assert picture.icc == ICC
    assert output_suffix(Path("in.avif")) == ".avif"

    write_image(tmp_path / "out.avif", picture)
    again = read_image(tmp_path / "out.avif")
    assert again.rgb.shape == upright.shape
    assert np.abs(to_uint8(again.rgb).astype(int) - upright).mean() < 10
    assert _tags(again.exif)[0x010F] == "TestCam" and again.icc == ICC


def test_deep_avif_is_not_read_as_dark_16_bit(tmp_path):
    # OpenCV decodes 10-bit AVIF into uint16 holding values up to 1023: read as 16-bit, it would be 64x darker.
    grey = np.full((H, W, 3), 600, np.uint16)  # OpenCV's encoder takes 10-bit values too
    ok, encoded = cv2.imencode(".avif", grey, [cv2.IMWRITE_AVIF_DEPTH, 10, cv2.IMWRITE_AVIF_QUALITY, 100])
    assert ok
    (tmp_path / "deep.avif").write_bytes(encoded.tobytes())
    assert np.abs(read_image(tmp_path / "deep.avif").rgb - 600 / 1023).max() < 2 / 255


# ---------------------------------------------------------------- camera RAW


# XYZ (D65) -> linear sRGB: as a DNG's ColorMatrix1 it makes the "camera" see linear sRGB.
_XYZ_TO_SRGB = (3.2406, -1.5372, -0.4986, -0.9689, 1.8758, 0.0415, 0.0557, -0.2040, 1.0570)


def _rationals(values) -> list[int]:
    pairs = [Fraction(v).limit_denominator(10000) for v in values]
    return [n for f in pairs for n in (f.numerator, f.denominator)]


def write_dng(path: Path, linear: np.ndarray, neutral=(1.0, 1.0, 1.0), orientation: int = 1) -> Path:
    """A minimal DNG: one 16-bit RGGB Bayer image of ``linear`` RGB ``(H, W, 3)`` in [0, 1] (camera space
    = linear sRGB), with the camera's as-shot white balance given as ``neutral`` (its response to grey)."""
    bayer = np.empty(linear.shape[:2])
    bayer[0::2, 0::2] = linear[0::2, 0::2, 0]
    bayer[0::2, 1::2] = linear[0::2, 1::2, 1]
    bayer[1::2, 0::2] = linear[1::2, 0::2, 1]
    bayer[1::2, 1::2] = linear[1::2, 1::2, 2]
    tags = [
        (50706, "B", 4, (1, 4, 0, 0), True),  # DNGVersion
        (50707, "B", 4, (1, 1, 0, 0), True),  # DNGBackwardVersion
        (50708, "s", 0, "Lowlight Test", True),  # UniqueCameraModel
        (33421, "H", 2, (2, 2), True),  # CFARepeatPatternDim
        (33422, "B", 4, (0, 1, 1, 2), True),  # CFAPattern: R G / G B
        (50714, "H", 1, 0, True),  # BlackLevel
        (50717, "H", 1, 65535, True),  # WhiteLevel
        (50721, "2i", 9, _rationals(_XYZ_TO_SRGB), True),  # ColorMatrix1
        (50778, "H", 1, 21, True),  # CalibrationIlluminant1: D65
        (50728, "2I", 3, _rationals(neutral), True),  # AsShotNeutral
        (274, "H", 1, orientation, True),
    ]
    pixels = np.rint(np.clip(bayer, 0, 1) * 65535).astype(np.uint16)
    tifffile.imwrite(path, pixels, photometric=32803, extratags=tags, metadata=None)  # 32803: CFA
    return path


def _srgb(linear: float) -> float:
    return 12.92 * linear if linear <= 0.0031308 else 1.055 * linear ** (1 / 2.4) - 0.055


def test_dng_is_demosaiced_with_camera_white_balance_srgb_curve_and_no_brightening(tmp_path):
    # The camera saw grey through a green-heavy filter: red and blue at half. As shot, that is neutral.
    neutral = (0.5, 1.0, 0.5)
    src = write_dng(tmp_path / "dark.dng", np.full((H, W, 3), 0.05) * neutral, neutral)
    picture = read_image(src)
    assert picture.bit_depth == 16 and picture.rgb.shape == (H, W, 3) and not picture.grey
    assert picture.exif is None and picture.icc is None
    middle = picture.rgb[8:-8, 8:-8].reshape(-1, 3).mean(axis=0)
    # sRGB's curve gives 0.248; BT.709's (libraw's default) 0.186; auto-brightening 1.0; daylight balance 0.17 red
    assert np.allclose(middle, _srgb(0.05), atol=0.003), middle


def test_dng_orientation_is_applied(tmp_path):
    linear = np.zeros((H, W, 3))
    linear[: H // 2, : W // 2] = (0.5, 0.02, 0.02)  # red in the top left as stored
    picture = read_image(write_dng(tmp_path / "turned.dng", linear, orientation=6))
    assert picture.rgb.shape == (W, H, 3)
    assert picture.rgb[2, -3, 0] > 0.5 and picture.rgb[-3, 2].max() < 0.05  # top right once turned clockwise


@pytest.mark.parametrize("suffix", RAW_SUFFIXES)
def test_raw_is_never_written_and_defaults_to_16_bit_tiff(suffix):
    assert output_suffix(Path(f"IMG_0001{suffix.upper()}")) == ".tif"
    with pytest.raises(OutputError, match="never written") as caught:
        check_output(Path(f"out{suffix}"))
    assert ".tif" in caught.value.hint


def test_raw_without_rawpy_says_which_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "rawpy", None)  # import rawpy now raises ImportError
    with pytest.raises(InputImageError, match="rawpy") as caught:
        read_image(write_dng(tmp_path / "x.dng", np.full((8, 8, 3), 0.1)))
    assert "lowlight[raw]" in caught.value.hint


# ---------------------------------------------------------------- bad files


def _good_heic(folder: Path) -> bytes:
    return _heic(folder / "good.heic", _quadrants()).read_bytes()


def _good_avif(folder: Path) -> bytes:
    Image.fromarray(_quadrants()).save(folder / "good.avif")
    return (folder / "good.avif").read_bytes()


def _good_dng(folder: Path) -> bytes:
    return write_dng(folder / "good.dng", np.full((H, W, 3), 0.1)).read_bytes()


def _half(data: bytes) -> bytes:
    return data[: len(data) // 2]


BAD = {
    "cut.heic": lambda d: _half(_good_heic(d)),
    "header-only.heic": lambda d: _good_heic(d)[:32],
    "cut.avif": lambda d: _half(_good_avif(d)),
    "cut.dng": lambda d: _half(_good_dng(d)),
    "text.dng": lambda d: b"not a raw file\n" * 20,
    "garbage.nef": lambda d: b"II*\x00" + bytes(range(256)) * 4,
}


@pytest.mark.parametrize("name", BAD)
def test_bad_heic_avif_and_raw_files_raise_one_clear_error(tmp_path, capfd, name):
    path = tmp_path / name
    path.write_bytes(BAD[name](tmp_path))
    with pytest.raises(InputImageError) as caught:
        read_image(path)
    assert str(path) in caught.value.message and caught.value.hint
    assert capfd.readouterr().err == ""  # libraw's and libheif's own complaints do not reach the terminal


def test_bad_raw_in_the_cli_gives_one_line_and_exit_1(cli, tmp_path):
    (tmp_path / "cut.dng").write_bytes(_good_dng(tmp_path)[:300])
    code, _, err = cli("enhance", tmp_path / "cut.dng", "--model", "gamma")
    lines = [line for line in err.splitlines() if line.startswith("Error:")]
    assert code == 1 and len(lines) == 1 and "truncated" in lines[0] and "Hint: re-copy" in err, err
    assert "Traceback" not in err and not list(tmp_path.glob("cut_*"))


# ---------------------------------------------------------------- the CLI


def test_raw_input_gives_16_bit_tiff_and_jpeg_on_request(cli, tmp_path):
    src = write_dng(tmp_path / "night.dng", np.full((H, W, 3), 0.02))
    code, _, err = cli("enhance", src, "--model", "gamma")
    assert code == 0, err
    written = cv2.imread(str(tmp_path / "night_gamma.tif"), cv2.IMREAD_UNCHANGED)
    assert written.dtype == np.uint16 and written.shape == (H, W, 3)
    code, _, err = cli("enhance", src, "--model", "gamma", "-o", tmp_path / "night.jpg")
    assert code == 0, err
    with Image.open(tmp_path / "night.jpg") as jpeg:
        assert jpeg.format == "JPEG" and jpeg.mode == "RGB"


def test_asking_for_a_raw_output_fails_before_any_work(cli, tmp_path, monkeypatch):
    src = write_dng(tmp_path / "night.dng", np.full((H, W, 3), 0.02))
    monkeypatch.setattr(images, "_read_raw", lambda *a: pytest.fail("read before the output was checked"))
    code, _, err = cli("enhance", src, "--model", "gamma", "-o", tmp_path / "out.dng")
    assert code == 1 and "camera RAW is read, never written" in err and "Hint: ask for a 16-bit .tif" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["night.dng"]


def test_folder_run_reads_heic_avif_raw_and_lists_what_it_does_not(cli, tmp_path):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    (folder / ".thumbs").mkdir()
    _heic(folder / "a.heic", _quadrants())
    Image.fromarray(_quadrants()).save(folder / "b.avif")
    write_dng(folder / "c.dng", np.full((H, W, 3), 0.05))
    write_dng(folder / "sub" / "d.NEF", np.full((H, W, 3), 0.05))  # a NEF's layout too, to libraw
    (folder / "notes.txt").write_text("shot at dusk")
    (folder / "sub" / "c.xmp").write_text("<x:xmpmeta/>")
    (folder / ".DS_Store").write_bytes(b"\0")
    (folder / ".a.tmp-0123456789ab.heic").write_bytes(b"half written")  # write_image's temporaries are hidden
    Image.fromarray(_quadrants()).save(folder / ".thumbs" / "a.png")
    out = tmp_path / "out"

    code, _, err = cli("enhance", folder, "-r", "-o", out, "--model", "gamma")
    assert code == 0, err
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == ["a_gamma.heic", "b_gamma.avif", "c_gamma.tif", "sub/d_gamma.tif"]
    assert pillow_heif.open_heif(out / "a_gamma.heic").info["bit_depth"] == 8
    skipped = [line for line in err.splitlines() if line.startswith("skipped:")]
    assert skipped == [
        f"skipped: not an image or video lowlight reads: {folder / 'notes.txt'}",
        f"skipped: not an image or video lowlight reads: {folder / 'sub' / 'c.xmp'}",
    ]
    assert err.splitlines()[-1].startswith("4 done, 0 skipped, 0 failed")


def test_many_files_not_read_are_listed_ten_then_counted(cli, write_dark, tmp_path):
    write_dark(tmp_path / "in" / "a.png")
    for i in range(13):
        (tmp_path / "in" / f"{i:02d}.txt").write_text("x")
    code, _, err = cli("enhance", tmp_path / "in", "-o", tmp_path / "out", "--model", "gamma")
    assert code == 0
    skipped = [line for line in err.splitlines() if line.startswith("skipped:")]
    assert len(skipped) == 11 and skipped[-1] == "skipped: 3 more files lowlight does not read"
