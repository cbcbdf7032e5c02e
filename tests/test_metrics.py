"""PSNR and SSIM agree with scikit-image; GT-mean equalizes mean grey levels."""

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from lowlight_cli.errors import UsageError
from lowlight_cli.metrics import PROTOCOL, gt_mean, psnr, ssim

SIZES = [(11, 11), (17, 23), (32, 48), (45, 64)]


def noisy_pair(h: int, w: int, seed: int, dtype=np.float64) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    target = rng.random((h, w, 3))
    pred = np.clip(0.8 * target + 0.1 + 0.1 * rng.standard_normal((h, w, 3)), 0, 1)
    return pred.astype(dtype), target.astype(dtype)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_psnr_and_ssim_match_skimage(size, dtype):
    pred, target = noisy_pair(*size, seed=size[0] * size[1], dtype=dtype)
    p64, t64 = pred.astype(np.float64), target.astype(np.float64)
    expected_ssim = structural_similarity(
        p64, t64, channel_axis=2, data_range=1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    assert ssim(pred, target) == pytest.approx(expected_ssim, abs=1e-4)
    assert psnr(pred, target) == pytest.approx(peak_signal_noise_ratio(t64, p64, data_range=1), abs=1e-4)


def test_identical_images():
    x = np.random.default_rng(1).random((20, 30, 3))
    assert psnr(x, x) == float("inf")
    assert ssim(x, x) == pytest.approx(1.0, abs=1e-12)


def test_shapes_must_match_and_ssim_needs_11_pixels():
    with pytest.raises(ValueError):
        psnr(np.zeros((4, 4, 3)), np.zeros((4, 5, 3)))
    with pytest.raises(UsageError):
        ssim(np.zeros((10, 40, 3)), np.zeros((10, 40, 3)))


def test_gt_mean_equalizes_mean_grey_level():
    rng = np.random.default_rng(2)
    target = rng.random((16, 24, 3)) * 0.8
    pred = target * 0.25 + 0.01  # dark, so scaling up never clips
    fixed = gt_mean(pred, target)
    assert fixed.shape == pred.shape and fixed.dtype == np.float32
    assert fixed.mean(axis=2).mean() == pytest.approx(target.mean(axis=2).mean(), rel=1e-5)
    assert psnr(fixed, target) > psnr(pred, target)


def test_gt_mean_clips_and_leaves_black_alone():
    target = np.full((4, 4, 3), 0.9)
    pred = np.zeros((4, 4, 3))
    pred[0, 0] = 0.5
    fixed = gt_mean(pred, target)
    assert fixed.max() == 1.0 and fixed.min() == 0.0
    assert np.array_equal(gt_mean(np.zeros((4, 4, 3)), target), np.zeros((4, 4, 3)))


def test_protocol_names_both_protocols_and_the_ssim_variant():
    for words in ("GT-mean", "Plain", "SSIM on RGB, mean over channels, Gaussian window", "sigma 1.5"):
        assert words in PROTOCOL


def test_hue_shift_measures_how_far_saturated_colours_turn():
    import cv2

    from lowlight_cli.metrics import hue_shift

    def lab_patch(lightness: float, a: float, b: float) -> np.ndarray:
        lab = np.full((32, 32, 3), (lightness, a, b), np.float32)
        return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)

    red = lab_patch(50, 60, 35)  # chroma 69.5 at 30 degrees
    orange = lab_patch(50, 69.5 * np.cos(np.radians(42)), 69.5 * np.sin(np.radians(42)))  # the same at 42
    grey = np.full((32, 32, 3), 0.5, np.float32)
    assert hue_shift(red, red) == pytest.approx(0.0, abs=1e-3)
    assert hue_shift(orange, red) == pytest.approx(12.0, abs=1.0)  # a red turned orange
    assert hue_shift(red, orange) == pytest.approx(12.0, abs=1.0)
    assert hue_shift(red * 0.8, red) < 3.0  # darker is not a turn
    teal, blue_green = lab_patch(60, -40, 7), lab_patch(60, -40, -7)  # hues 170 and 190: 20 apart across 180
    assert hue_shift(blue_green, teal) == pytest.approx(20.0, abs=1.0)
    assert np.isnan(hue_shift(red, grey))  # nothing saturated to judge
    assert np.isnan(hue_shift(grey, red))  # colour lost is not a turn (chroma() says it)
    assert hue_shift(orange, red, blur=0) == pytest.approx(hue_shift(orange, red), abs=0.1)
