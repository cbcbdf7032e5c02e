"""The Python API: ``import lowlight_cli as ll``, ``ll.load``, ``ll.enhance``; images given back as given."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import lowlight_cli as ll
from lowlight_cli import registry
from lowlight_cli.images import read_image
from lowlight_cli.inference import Enhancer, RunOptions

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "lowlight_cli" / "samples" / "coffee_dark.png"


def _readme_example() -> tuple[str, str]:
    """The README's Python API example and the output it says it prints."""
    section = ROOT.joinpath("README.md").read_text().split("## Python API", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    printed = re.search(r"prints\n\n```text\n(.*?)```", section, re.S).group(1)
    return code, printed


def test_readme_example_runs_and_prints_what_the_readme_says():
    code, printed = _readme_example()
    env = os.environ | {"LOWLIGHT_BACKEND": "torch", "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout == printed


def test_import_is_cheap_and_public_names_resolve():
    run = subprocess.run([sys.executable, "-c", "import sys, lowlight_cli as ll; "
                          "print(sorted(m for m in ('torch', 'cv2', 'onnxruntime', 'PIL') if m in sys.modules))"],
                         capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "[]"
    assert ll.Enhancer is Enhancer and callable(ll.load) and callable(ll.enhance)
    assert set(ll.__all__) <= set(dir(ll)) | {"Enhancer"}
    assert (ROOT / "lowlight_cli" / "py.typed").is_file()


def _tiny(name: str, **options) -> Enhancer:
    """A tiny test network, seeded (tiny variants have no weights to load)."""
    spec = registry.get(name)
    import torch

    torch.manual_seed(0)
    return Enhancer(spec, spec.create(), RunOptions(device="cpu", **options), name)


def _dark(h: int = 40, w: int = 56) -> np.ndarray:
    """A float RGB test picture in [0, 0.3] with structure."""
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x / w, y / h, (x + y) / (h + w)], axis=-1) * 0.25
    return (base + np.random.default_rng(0).random((h, w, 3)) * 0.05).astype(np.float32)


def _as(rgb: np.ndarray, dtype) -> np.ndarray:
    if np.dtype(dtype).kind == "f":
        return rgb.astype(dtype)
    top = np.iinfo(dtype).max
    return np.rint(rgb * top).astype(dtype)


LAYOUTS = {"HxW": lambda a: a[..., 1], "HxWx1": lambda a: a[..., 1:2], "HxWx2": lambda a: a[..., 1:3],
           "HxWx3": lambda a: a, "HxWx4": lambda a: np.dstack([a, a[..., :1]])}


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_arrays_come_back_in_their_dtype_and_layout_with_alpha_carried(dtype, layout):
    image = _as(LAYOUTS[layout](_dark()), dtype)
    out = ll.load("gamma_auto")(image)
    assert out.dtype == image.dtype and out.shape == image.shape
    if layout in ("HxWx2", "HxWx4"):
        assert np.array_equal(out[..., -1], image[..., -1])  # alpha untouched
    colour = out[..., :3] if layout in ("HxWx3", "HxWx4") else out
    assert colour.mean() > image[..., : colour.shape[-1] if colour.ndim == 3 else 1].mean()  # brighter


def test_a_uint8_array_gives_the_same_picture_as_floats():
    """The bug this API fixes: uint8 fed to the float path gave a nearly white picture."""
    rgb = _dark()
    as_uint8 = np.rint(rgb * 255).astype(np.uint8)
    enhancer = _tiny("mirnet_tiny", tile=0)
    from_float = enhancer(as_uint8.astype(np.float32) / 255)
    from_uint8 = enhancer(as_uint8)
    assert from_uint8.dtype == np.uint8
    assert np.abs(from_uint8.astype(np.float32) - from_float * 255).max() <= 0.5 + 1e-3


def test_x2_output_resizes_alpha_and_keeps_grey():
    enhancer = _tiny("neid_tiny", scale=2)
    rgba = np.dstack([_as(_dark(), np.uint8), np.full((40, 56), 200, np.uint8)])
    out = enhancer(rgba)
    assert out.shape == (80, 112, 4) and out.dtype == np.uint8 and (out[..., 3] == 200).all()
    assert enhancer(_dark()[..., 0]).shape == (80, 112)


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA", "I;16", "P", "1", "CMYK"])
def test_pil_images_come_back_as_pil_images(mode):
    rgba = Image.fromarray(np.dstack([_as(_dark(), np.uint8), np.full((40, 56), 99, np.uint8)]))
    image = rgba.convert("RGB").convert(mode) if mode not in ("LA", "RGBA", "I;16") else (
        rgba.convert(mode) if mode != "I;16" else Image.fromarray(_as(_dark()[..., 1], np.uint16)))
    out = ll.enhance(image, model="gamma_auto")
    expected = {"P": "RGB", "1": "L", "CMYK": "RGB"}.get(mode, mode)
    assert isinstance(out, Image.Image) and out.mode == expected and out.size == image.size


def test_a_path_gives_an_array_in_the_files_depth(tmp_path):
    grey16 = tmp_path / "grey16.png"
    Image.fromarray(_as(_dark()[..., 1], np.uint16)).save(grey16)
    assert read_image(grey16).bit_depth == 16
    out = ll.enhance(grey16, model="gamma_auto")
    assert out.dtype == np.uint16 and out.shape == (40, 56)
    out = ll.enhance(str(SAMPLE), model="gamma_auto")
    assert out.dtype == np.uint8 and out.shape == (400, 600, 3)


def test_the_input_is_not_modified():
    image = _dark()
    before = image.copy()
    for enhancer in (ll.load("gamma_auto"), _tiny("msrnet_tiny"), _tiny("mirnet_tiny", strength=0.5)):
        enhancer(image)
    assert np.array_equal(image, before)


@pytest.mark.parametrize(("image", "says"), [
    (np.zeros((8, 8, 3), np.int64), "dtype int64"),
    (np.zeros((8, 8, 3), np.float16), "dtype float16"),
    (np.zeros((3, 8, 8), np.uint8), "channels first"),
    (np.zeros((1, 8, 8, 3), np.uint8), "one image at a time"),
    (np.zeros((8, 8, 5), np.uint8), "shape (8, 8, 5)"),
    (np.zeros((0, 8, 3), np.uint8), "shape (0, 8, 3)"),
    (np.full((8, 8, 3), 200.0, np.float32), "divide by 255"),
    (np.full((8, 8, 3), np.nan, np.float32), "[0, 1]"),
    ([[0, 1], [2, 3]], "a NumPy array, a PIL image or a path"),
    (Image.new("F", (8, 8)), "mode F"),
])
def test_wrong_images_raise_a_typed_error_that_says_what_is_taken(image, says):
    with pytest.raises(ll.ImageArrayError) as raised:
        ll.enhance(image, model="gamma_auto")
    error = raised.value
    assert isinstance(error, ll.LowlightError) and isinstance(error, ValueError) and isinstance(error, TypeError)
    assert says in f"{error.message} {error.hint}"


def test_bad_options_raise_usage_errors():
    with pytest.raises(ll.UsageError, match="precision"):
        ll.load("gamma_auto", precision="fp8")
    with pytest.raises(ll.UsageError, match="strength"):
        ll.load("gamma_auto", strength=2.0)
    with pytest.raises(ll.ModelNotFoundError):
        ll.load("no_such_model")


def test_threads_sets_the_process_threads_only_when_asked():
    import torch

    before = torch.get_num_threads()
    try:
        ll.load("gamma_auto")
        assert torch.get_num_threads() == before  # None: the caller's setting is left alone
        ll.load("gamma_auto", threads=1)
        assert torch.get_num_threads() == 1
        ll.enhance(np.full((8, 8, 3), 12, np.uint8), model="gamma_auto", threads=2)
        assert torch.get_num_threads() == 2
        with pytest.raises(ll.UsageError, match="threads"):
            ll.load("gamma_auto", threads=-1)
    finally:
        torch.set_num_threads(before)
