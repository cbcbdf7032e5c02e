"""images.py: exact round trips, greyscale and alpha, EXIF orientation, ICC, errors, atomic writes."""

from __future__ import annotations

import errno
import os

import cv2
import numpy as np
import pytest
from PIL import Image, ImageCms, ImageOps

from lowlight_cli.errors import InputImageError, OutputError, UsageError
from lowlight_cli.images import (
    WRITE_SUFFIXES, Picture, check_output, check_quality, check_writable_folder, read_image, to_uint8, write_image,
)

H, W = 12, 20


def _random(shape: tuple[int, ...], dtype: type, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, np.iinfo(dtype).max + 1, shape, dtype=dtype)


def _save_cv2(path, rgb_or_grey: np.ndarray) -> None:
    """Write RGB(A) or grey integers with OpenCV, which expects BGR(A)."""
    a = rgb_or_grey
    if a.ndim == 3:
        a = a[..., [2, 1, 0, *range(3, a.shape[2])]]
    assert cv2.imwrite(str(path), a)


def _opened(path) -> Image.Image:
    """The decoded image, info included, with its file closed."""
    with Image.open(path) as image:
        return image.copy()


def _load(path, dtype: type = np.uint8) -> np.ndarray:
    """Decode independently of images.py: Pillow for 8-bit (OpenCV premultiplies 8-bit TIFF alpha), OpenCV for
    16-bit (Pillow reduces 16-bit colour to 8-bit)."""
    if dtype == np.uint8:
        return np.asarray(_opened(path))
    a = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    return a[..., [2, 1, 0, *range(3, a.shape[2])]] if a.ndim == 3 else a


def _srgb_profile() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _exif(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "TestCam"  # Make, in IFD0
    exif.get_ifd(0x8769)[0x9003] = "2024:01:02 03:04:05"  # DateTimeOriginal, in the Exif IFD
    return exif


@pytest.mark.parametrize("suffix", [".png", ".tif"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_round_trip_is_exact(tmp_path, suffix, dtype, channels):
    source = _random((H, W) if channels == 1 else (H, W, channels), dtype)
    _save_cv2(tmp_path / f"in{suffix}", source)
    picture = read_image(tmp_path / f"in{suffix}")

    top = np.iinfo(dtype).max
    colour = source[..., None] if channels == 1 else source[..., :3]
    assert picture.rgb.dtype == np.float32 and picture.rgb.shape == (H, W, 3)
    assert np.array_equal(np.rint(picture.rgb * top), np.broadcast_to(colour, (H, W, 3)))
    assert picture.bit_depth == np.iinfo(dtype).bits
    assert picture.grey == (channels == 1)
    assert (picture.alpha is None) == (channels != 4)

    write_image(tmp_path / f"out{suffix}", picture)
    written = _load(tmp_path / f"out{suffix}", dtype)
    assert written.dtype == dtype
    assert np.array_equal(written, source)


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp", ".bmp", ".tif"])
def test_greyscale_stays_greyscale(tmp_path, suffix):
    Image.fromarray(_random((H, W), np.uint8)).save(tmp_path / "in.png")
    picture = read_image(tmp_path / "in.png")
    assert picture.grey
    assert np.array_equal(picture.rgb[..., 0], picture.rgb[..., 2])

    write_image(tmp_path / f"out{suffix}", picture)
    mode = _opened(tmp_path / f"out{suffix}").mode
    assert mode == ("RGB" if suffix == ".webp" else "L")  # WebP has no greyscale


def test_greyscale_16bit_png_stays_16bit_grey(tmp_path):
    source = _random((H, W), np.uint16)
    _save_cv2(tmp_path / "in.png", source)
    picture = read_image(tmp_path / "in.png")
    write_image(tmp_path / "out.png", picture.with_rgb(picture.rgb.copy()))
    assert np.array_equal(_load(tmp_path / "out.png", np.uint16), source)


def test_16bit_to_jpeg_becomes_8bit(tmp_path):
    source = np.full((H, W, 3), 40000, np.uint16)
    _save_cv2(tmp_path / "in.png", source)
    write_image(tmp_path / "out.jpg", read_image(tmp_path / "in.png"))
    written = read_image(tmp_path / "out.jpg")
    assert written.bit_depth == 8
    assert np.allclose(written.rgb, 40000 / 65535, atol=2 / 255)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_alpha_is_kept_bit_exact_and_resized_for_x2(tmp_path, dtype):
    source = _random((H, W, 4), dtype)
    _save_cv2(tmp_path / "in.png", source)
    picture = read_image(tmp_path / "in.png")
    top = np.iinfo(dtype).max
    assert np.array_equal(np.rint(picture.alpha * top), source[..., 3])

    write_image(tmp_path / "same.png", picture.with_rgb(picture.rgb * 0.5))
    assert np.array_equal(_load(tmp_path / "same.png", dtype)[..., 3], source[..., 3])

    doubled = cv2.resize(picture.rgb, (2 * W, 2 * H), interpolation=cv2.INTER_LINEAR)
    write_image(tmp_path / "x2.png", picture.with_rgb(doubled))
    written = _load(tmp_path / "x2.png", dtype)
    expected = cv2.resize(picture.alpha, (2 * W, 2 * H), interpolation=cv2.INTER_LINEAR)
    assert written.shape == (2 * H, 2 * W, 4)
    assert np.array_equal(written[..., 3], np.rint(expected * top))


def test_grey_with_alpha(tmp_path):
    source = _random((H, W, 2), np.uint8)
    Image.fromarray(source).save(tmp_path / "in.png")  # mode LA
    picture = read_image(tmp_path / "in.png")
    assert picture.grey
    assert np.array_equal(np.rint(picture.alpha * 255), source[..., 1])

    write_image(tmp_path / "out.png", picture)
    assert np.array_equal(np.asarray(_opened(tmp_path / "out.png")), source)
    write_image(tmp_path / "out.tif", picture)
    assert np.array_equal(_load(tmp_path / "out.tif"), source)
    assert read_image(tmp_path / "out.tif").grey


def test_16bit_grey_with_alpha_is_written_as_rgba(tmp_path):
    grey = np.random.default_rng(0).random((H, W, 1), dtype=np.float32)
    alpha = np.random.default_rng(1).random((H, W), dtype=np.float32)
    write_image(tmp_path / "out.png", Picture(np.repeat(grey, 3, axis=2), alpha, 16, True, None, None))
    written = _load(tmp_path / "out.png", np.uint16)
    assert written.shape == (H, W, 4)
    assert np.array_equal(written[..., 3], np.rint(alpha * 65535))
    assert np.array_equal(written[..., 0], written[..., 2])


@pytest.mark.parametrize("channels", [2, 4])
def test_tiff_alpha_is_read_as_stored(tmp_path, channels):
    # Pillow marks the alpha as unassociated (ExtraSamples 2), as most editors do.
    source = _random((H, W, channels), np.uint8)
    Image.fromarray(source).save(tmp_path / "in.tif")
    picture = read_image(tmp_path / "in.tif")
    assert np.array_equal(to_uint8(picture.rgb)[..., : channels - 1], source[..., :-1])
    assert np.array_equal(np.rint(picture.alpha * 255), source[..., -1])


def test_jpeg_and_bmp_drop_alpha(tmp_path):
    source = _random((H, W, 4), np.uint8)
    _save_cv2(tmp_path / "in.png", source)
    picture = read_image(tmp_path / "in.png")
    write_image(tmp_path / "out.jpg", picture)
    assert _opened(tmp_path / "out.jpg").mode == "RGB"
    write_image(tmp_path / "out.bmp", picture)
    assert np.array_equal(_load(tmp_path / "out.bmp"), source[..., :3])
    assert np.array_equal(to_uint8(read_image(tmp_path / "out.bmp").rgb), source[..., :3])


@pytest.mark.parametrize("suffix", [".jpg", ".webp"])
def test_exif_orientation_is_applied_and_reset(tmp_path, suffix):
    # Flat quadrants survive lossy coding well enough to tell a rotation apart.
    stored = np.zeros((32, 48, 3), np.uint8)
    stored[:16, :24] = (250, 10, 10)
    stored[:16, 24:] = (10, 250, 10)
    stored[16:, :24] = (10, 10, 250)
    stored[16:, 24:] = (250, 250, 10)
    path = tmp_path / f"in{suffix}"
    Image.fromarray(stored).save(path, exif=_exif(6).tobytes(), quality=95)
    before = path.read_bytes()

    picture = read_image(path)
    assert path.read_bytes() == before
    upright = np.rot90(stored, -1)  # orientation 6: rotate 90 degrees clockwise to display
    assert picture.rgb.shape == upright.shape
    assert np.abs(to_uint8(picture.rgb).astype(int) - upright).mean() < 10  # a wrong turn is ~150 off
    kept = Image.Exif()
    kept.load(picture.exif)
    assert kept[0x0112] == 1 and kept[0x010F] == "TestCam"

    write_image(tmp_path / f"out{suffix}", picture)
    with Image.open(tmp_path / f"out{suffix}") as out:
        exif = out.getexif()
        assert out.size == (32, 48)
    assert exif[0x0112] == 1
    assert exif[0x010F] == "TestCam"
    assert exif.get_ifd(0x8769)[0x9003] == "2024:01:02 03:04:05"
    assert read_image(tmp_path / f"out{suffix}").rgb.shape == upright.shape


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_orientation_matches_pillow(tmp_path, orientation):
    stored = _random((H, W, 3), np.uint8)
    Image.fromarray(stored).save(tmp_path / "in.png", exif=_exif(orientation).tobytes())
    expected = np.asarray(ImageOps.exif_transpose(_opened(tmp_path / "in.png")))
    picture = read_image(tmp_path / "in.png")
    assert np.array_equal(to_uint8(picture.rgb), expected)
    write_image(tmp_path / "out.png", picture)
    assert _opened(tmp_path / "out.png").getexif()[0x0112] == 1


def test_tiff_orientation_is_applied_once(tmp_path):
    stored = _random((H, W, 3), np.uint8)
    path = tmp_path / "in.tif"
    Image.fromarray(stored).save(path, exif=_exif(6).tobytes())
    before = path.read_bytes()
    picture = read_image(path)
    assert np.array_equal(to_uint8(picture.rgb), np.rot90(stored, -1))
    assert path.read_bytes() == before


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp", ".tif"])
def test_icc_profile_is_carried_8bit(tmp_path, suffix):
    icc = _srgb_profile()
    Image.fromarray(_random((H, W, 3), np.uint8)).save(tmp_path / f"in{suffix}", icc_profile=icc)
    picture = read_image(tmp_path / f"in{suffix}")
    assert picture.icc == icc
    write_image(tmp_path / f"out{suffix}", picture)
    assert _opened(tmp_path / f"out{suffix}").info["icc_profile"] == icc


def test_icc_and_exif_are_carried_16bit_png(tmp_path):
    icc = _srgb_profile()
    rgb = _random((H, W, 3), np.uint16).astype(np.float32) / 65535
    exif = _exif(1).tobytes()
    write_image(tmp_path / "out.png", Picture(rgb, None, 16, False, exif, icc))

    with Image.open(tmp_path / "out.png") as out:
        out.verify()  # chunk CRCs
    with Image.open(tmp_path / "out.png") as out:
        assert out.info["icc_profile"] == icc
        assert out.getexif()[0x010F] == "TestCam"
    again = read_image(tmp_path / "out.png")
    assert again.bit_depth == 16 and again.icc == icc and again.exif == exif
    assert np.array_equal(again.rgb, rgb)


def test_to_uint8_clips_and_rounds():
    rgb = np.array([[[-0.2, 0.6 / 255, 1.4 / 255], [1.6 / 255, 0.999, 1.3]]], np.float32)
    assert to_uint8(rgb).tolist() == [[[0, 1, 1], [2, 255, 255]]]
    assert to_uint8(rgb).dtype == np.uint8


def _missing(folder):
    return folder / "missing.png"


def _directory(folder):
    return folder


def _empty(folder):
    (folder / "empty.png").write_bytes(b"")
    return folder / "empty.png"


def _text(folder):
    (folder / "text.png").write_text("not an image\n")
    return folder / "text.png"


def _truncated(folder, suffix: str):
    path = folder / f"cut{suffix}"
    Image.fromarray(_random((64, 64, 3), np.uint8)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _truncated_jpeg(folder):
    return _truncated(folder, ".jpg")


def _truncated_png(folder):
    return _truncated(folder, ".png")


def _float_tiff(folder):
    path = folder / "float.tif"
    assert cv2.imwrite(str(path), np.random.default_rng(0).random((H, W, 3), dtype=np.float32))
    return path


@pytest.mark.parametrize(
    "make, words",
    [
        (_missing, "does not exist"),
        (_directory, "folder"),
        (_empty, "empty"),
        (_truncated_jpeg, "truncated"),
        (_truncated_png, "truncated"),
        (_text, "not a readable image"),
        (_float_tiff, "bit depth (float32"),
    ],
)
def test_bad_inputs_raise(tmp_path, make, words):
    with pytest.raises(InputImageError) as caught:
        read_image(make(tmp_path))
    assert words in caught.value.message
    assert caught.value.hint


def _picture() -> Picture:
    return Picture(np.zeros((H, W, 3), np.float32), None, 8, False, None, None)


def test_unknown_suffix_raises(tmp_path):
    with pytest.raises(OutputError, match="format"):
        write_image(tmp_path / "out.gif", _picture())


def test_missing_folder_raises(tmp_path):
    with pytest.raises(OutputError, match="does not exist") as caught:
        write_image(tmp_path / "nope" / "out.png", _picture())
    assert "mkdir" in caught.value.hint


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_raises(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(OutputError, match="cannot write"):
            write_image(folder / "out.png", _picture())
    finally:
        folder.chmod(0o700)
    assert os.listdir(folder) == []


def test_failed_write_leaves_no_temp_file_and_keeps_old_file(tmp_path, monkeypatch):
    (tmp_path / "out.png").write_bytes(b"old")

    def refuse(src, dst):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OutputError, match="Permission denied"):
        write_image(tmp_path / "out.png", _picture())
    assert os.listdir(tmp_path) == ["out.png"]
    assert (tmp_path / "out.png").read_bytes() == b"old"


def test_output_path_that_is_a_folder_raises(tmp_path):
    (tmp_path / "out.png").mkdir()
    with pytest.raises(OutputError):
        write_image(tmp_path / "out.png", _picture())
    assert os.listdir(tmp_path) == ["out.png"]


def test_unencodable_image_raises_output_error(tmp_path):
    wide = Picture(np.zeros((1, 16384, 3), np.float32), None, 8, False, None, None)  # over WebP's limit
    with pytest.raises(OutputError, match="WEBP"):
        write_image(tmp_path / "out.webp", wide)
    assert os.listdir(tmp_path) == []


def test_successful_write_replaces_and_leaves_only_the_output(tmp_path):
    (tmp_path / "out.png").write_bytes(b"old")
    write_image(tmp_path / "out.png", _picture())
    assert os.listdir(tmp_path) == ["out.png"]
    assert read_image(tmp_path / "out.png").rgb.shape == (H, W, 3)


def test_read_only_file_system_is_one_output_error_and_leaves_nothing(tmp_path, read_only):
    # On a read-only mount even the clean-up's unlink of the never-created temporary file raises
    # EROFS; it used to escape as a traceback in place of the OutputError.
    (tmp_path / "out.png").write_bytes(b"old")
    read_only(tmp_path)
    with pytest.raises(OutputError, match="Read-only file system") as caught:
        write_image(tmp_path / "out.png", _picture())
    assert caught.value.hint
    read_only.undo(tmp_path)
    assert os.listdir(tmp_path) == ["out.png"] and (tmp_path / "out.png").read_bytes() == b"old"


def test_failed_rename_and_failed_clean_up_still_give_the_output_error(tmp_path, monkeypatch):
    def refuse(*args):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(os, "replace", refuse)
    unlink = os.unlink
    monkeypatch.setattr(os, "unlink", refuse)
    with pytest.raises(OutputError, match="cannot write .*out.png: Read-only file system"):
        write_image(tmp_path / "out.png", _picture())
    monkeypatch.setattr(os, "unlink", unlink)


@pytest.mark.parametrize("state", ["missing", "read-only", "file"])
def test_check_writable_folder(tmp_path, read_only, state):
    folder = tmp_path / "out" / "sub"
    if state == "read-only":
        read_only(tmp_path)
    if state == "file":
        (tmp_path / "out").write_text("")
    if state == "missing":
        check_writable_folder(folder)  # to be made inside a writable folder: fine, and nothing made
        assert os.listdir(tmp_path) == []
        return
    with pytest.raises(OutputError, match="Read-only file system" if state == "read-only" else "is a file"):
        check_writable_folder(folder)


def test_unknown_output_suffix_lists_the_ones_we_write(tmp_path):
    with pytest.raises(OutputError) as caught:
        check_output(tmp_path / "notes.txt")
    assert ".txt" in caught.value.message and all(s in caught.value.hint for s in WRITE_SUFFIXES)


def test_quality_sets_jpeg_and_webp_size(tmp_path):
    rng = np.random.default_rng(0)
    picture = Picture(rng.random((64, 64, 3), dtype=np.float32), None, 8, False, None, None)
    for suffix in (".jpg", ".webp"):
        sizes = []
        for quality in (30, 95):
            write_image(tmp_path / f"q{quality}{suffix}", picture, quality=quality)
            sizes.append((tmp_path / f"q{quality}{suffix}").stat().st_size)
        assert sizes[0] < sizes[1] * 0.7, sizes
    with pytest.raises(UsageError):
        check_quality(0)
