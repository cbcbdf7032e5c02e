"""Weight-free baselines: the enhancer contract, colour behaviour and the pyramid blur's accuracy."""

import cv2
import numpy as np
import pytest

from lowlight_cli import baselines, registry

NAMES = ("autocontrast", "he", "clahe", "gamma", "gamma_auto", "msr", "msrcr")


def smooth_random(h: int, w: int, *, seed: int) -> np.ndarray:
    """(h, w, 3) float32 in [0, 1]: random colour blobs about 16 px wide plus fine noise."""
    rng = np.random.default_rng(seed)
    blobs = cv2.resize(rng.random((h // 16, w // 16, 3), dtype=np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(blobs + rng.normal(0, 0.05, (h, w, 3)).astype(np.float32), 0, 1)


@pytest.fixture(scope="module")
def dark() -> np.ndarray:
    """A dark colour image with structure: mean about 0.07."""
    return smooth_random(96, 128, seed=0) * np.float32(0.15)


def test_all_baselines_registered():
    found = {s.name: s for s in registry.specs("baseline")}
    assert set(NAMES) <= set(found)
    for name in NAMES:
        assert callable(found[name].enhance) and not found[name].tile_safe and found[name].build is None


@pytest.mark.parametrize("name", NAMES)
def test_contract_deterministic_and_brighter(name, dark):
    out = registry.get(name).enhance(dark)
    assert out.shape == dark.shape and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 1 and np.isfinite(out).all()
    np.testing.assert_array_equal(out, registry.get(name).enhance(dark.copy()))
    assert out.mean() > dark.mean() + 0.1


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("kind", ["flat", "ramp"])
def test_grey_stays_grey(name, kind):
    y, x = np.mgrid[0:40, 0:50]
    level = np.full((40, 50), 0.2) if kind == "flat" else 0.02 + 0.3 * (x + y) / 90
    out = registry.get(name).enhance(np.repeat(level[..., None], 3, axis=2).astype(np.float32))
    # OpenCV's float Lab conversion (clahe) is only accurate to about 1e-3.
    assert np.ptp(out, axis=2).max() < 2e-3


def test_rejects_non_rgb():
    with pytest.raises(ValueError, match="np.repeat"):
        baselines.msr(np.zeros((8, 8), np.float32))


def test_gamma_is_fixed_power():
    img = np.array([[[0.0, 0.25, 1.0]]], np.float32)
    np.testing.assert_allclose(baselines.gamma_correction(img), [[[0.0, 0.25 ** (1 / 2.2), 1.0]]], rtol=1e-6)


def test_gamma_auto_maps_mean_luminance_to_half():
    img = smooth_random(64, 64, seed=1) * np.float32(0.1) + np.float32(0.05)
    out = baselines.gamma_auto(img)
    assert abs(float((out @ baselines.LUMA_WEIGHTS).mean()) - 0.5) < 0.03
    # A black frame stays black (exponent clipped, not 0 ** 0).
    assert baselines.gamma_auto(np.zeros((4, 4, 3), np.float32)).max() == 0


def test_autocontrast_is_one_affine_map_for_all_channels(dark):
    out = baselines.autocontrast(dark)
    inside = (out > 0) & (out < 1)
    gain, offset = np.polyfit(dark[inside], out[inside], 1)
    np.testing.assert_allclose(out[inside], gain * dark[inside] + offset, atol=1e-4)


def test_he_output_luminance_is_uniform(dark):
    y = cv2.cvtColor(baselines.equalize_histogram(dark), cv2.COLOR_RGB2YCrCb)[..., 0]
    np.testing.assert_allclose(np.quantile(y, [0.1, 0.5, 0.9]), [0.1, 0.5, 0.9], atol=0.03)


@pytest.mark.parametrize("shape", [(200, 300, 3), (201, 257, 3), (150, 170)])
def test_pyramid_blur_matches_exact_gaussian(shape):
    img = smooth_random(shape[0], shape[1], seed=2)
    img = img if len(shape) == 3 else img[..., 0].copy()
    approx = baselines.gaussian_blur_large(img, sigma=80)
    exact = cv2.GaussianBlur(img, (0, 0), 80)
    assert approx.shape == img.shape and approx.dtype == np.float32
    # Measured: mean 2e-5, max 4e-4 (bench/bench_msr.py reports the same on larger images).
    assert np.abs(approx - exact).mean() < 1e-3
    assert np.abs(approx - exact).max() < 5e-3


def test_small_sigma_blur_is_exact():
    img = smooth_random(40, 60, seed=3)
    np.testing.assert_array_equal(baselines.gaussian_blur_large(img, sigma=3), cv2.GaussianBlur(img, (0, 0), 3))


def test_huge_sigma_on_tiny_image():
    img = smooth_random(16, 24, seed=4)
    exact = cv2.GaussianBlur(img, (0, 0), 250)
    np.testing.assert_allclose(baselines.gaussian_blur_large(img, sigma=250), exact, atol=1e-3)
