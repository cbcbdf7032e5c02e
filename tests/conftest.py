import os
import sys
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

# One thread: tests are tiny, and OpenMP threads spinning against each other on 2 busy cores made
# small forwards 100x slower. Seeded so any random init is reproducible.
torch.set_num_threads(1)
torch.manual_seed(0)
# Tests run eager torch unless they ask for ONNX Runtime (tests/test_onnx.py): the default backend
# would export an ONNX graph of every tiny test network, tens of seconds each.
os.environ["LOWLIGHT_BACKEND"] = "torch"


def _find_lol() -> Path | None:
    here = Path(__file__).resolve()
    for root in (here.parents[1].parent / "shared", here.parents[2] / "shared"):
        if (root / "data" / "lol" / "eval15").is_dir():
            return root / "data" / "lol"
    return None


LOL = _find_lol()


@pytest.fixture
def lol_dir() -> Path:
    if LOL is None:
        pytest.skip("LOL data (../shared/data/lol) not present")
    return LOL


def dark_image(h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    """A dark uint8 BGR test image with structure (gradients + noise), made here."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x / w, y / h, (x + y) / (h + w)], axis=-1) * 40
    return np.clip(base + rng.normal(0, 3, (h, w, 3)) + 5, 0, 255).astype(np.uint8)


def write_clip(path: Path, *, frames: int = 8, size: tuple[int, int] = (64, 48), rate: int = 24,
               pts: list[int] | None = None, time_base: Fraction = Fraction(1, 1000), rotation: float | None = None,
               video: bool = True, audio: bool = True) -> Path:
    """A dark test video made here with PyAV (container by suffix): a static scene, the gradient of
    :func:`dark_image` with fresh noise in every frame, H.264 at CRF 0 (lossless in YUV), frame times
    ``pts`` in ``time_base`` (default: a constant ``rate``), an optional display rotation, and a mono
    AAC tone about as long as the video. ``frames=0`` writes a video stream without frames."""
    import av

    w, h = size
    path.parent.mkdir(parents=True, exist_ok=True)
    if pts is None:
        pts = [round(Fraction(i, rate) / time_base) for i in range(frames if video else 0)]
    with av.open(str(path), "w") as out:
        if video:
            stream = out.add_stream("libx264", rate=rate, options={"crf": "0"})
            stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
            stream.codec_context.time_base = time_base
            if rotation is not None:
                stream.set_display_rotation(rotation)
        if audio:
            tone = out.add_stream("aac", rate=48000, layout="mono")
        out.start_encoding()  # the header, even for a file without a frame
        for i, t in enumerate(pts):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(dark_image(h, w, seed=i)[..., ::-1]), format="rgb24")
            frame.pts, frame.time_base = t, time_base
            out.mux(stream.encode(frame))
        if video:
            out.mux(stream.encode(None))
        seconds = float((pts[-1] if pts else 0) * time_base) + 0.1
        for i in range(int(seconds * 48000) // 1024 + 1 if audio else 0):
            samples = np.sin(np.arange(i * 1024, (i + 1) * 1024, dtype=np.float32)[None] * 0.05)
            chunk = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            chunk.sample_rate, chunk.pts = 48000, i * 1024
            out.mux(tone.encode(chunk))
        if audio:
            out.mux(tone.encode(None))
    return path


@pytest.fixture
def write_dark():
    def make(path: Path, h: int = 48, w: int = 64, seed: int = 0) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(path), dark_image(h, w, seed))
        return path

    return make


@pytest.fixture
def cli(monkeypatch, capsys):
    """Run `lowlight ARGS...` in-process; returns (exit code, stdout, stderr)."""
    from lowlight_cli.cli import main

    def invoke(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["lowlight", *map(str, args)])
        code = 0
        try:
            main()
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return invoke


@pytest.fixture
def read_only(monkeypatch):
    """``read_only(folder)`` makes every write under ``folder`` fail with EROFS, as on a read-only mount
    (``read_only(folder, errno.EACCES)``: as in a folder without write permission).

    Injected rather than made with chmod, which does not stop root (CI runs as root): creating, opening
    for writing, renaming, linking, removing and touching files, and making folders, all raise.
    """
    import builtins
    import errno
    import io
    import os

    roots: dict[str, int] = {}  # folder -> the errno its writes fail with

    def blocked(path) -> int:
        p = os.path.abspath(os.fsdecode(path))
        return next((code for r, code in roots.items() if p == r or p.startswith(r + os.sep)), 0)

    def refuse(path):
        code = blocked(path)
        raise OSError(code, os.strerror(code), os.fsdecode(path))

    def one_path(fn, writes=lambda *a, **k: True):
        def guarded(path, *args, **kwargs):
            if not isinstance(path, int) and blocked(path) and writes(*args, **kwargs):
                refuse(path)
            return fn(path, *args, **kwargs)
        return guarded

    def two_paths(fn):
        def guarded(src, dst, *args, **kwargs):
            for path in (src, dst):
                if blocked(path):
                    refuse(path)
            return fn(src, dst, *args, **kwargs)
        return guarded

    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    monkeypatch.setattr(os, "open", one_path(os.open, lambda flags, *a, **k: bool(flags & write_flags)))
    opens_for_writing = lambda mode="r", *a, **k: any(c in mode for c in "wxa+")  # noqa: E731
    monkeypatch.setattr(builtins, "open", one_path(builtins.open, opens_for_writing))
    monkeypatch.setattr(io, "open", one_path(io.open, opens_for_writing))
    for name in ("mkdir", "unlink", "remove", "rmdir", "utime"):
        monkeypatch.setattr(os, name, one_path(getattr(os, name)))
    for name in ("replace", "rename", "link"):
        monkeypatch.setattr(os, name, two_paths(getattr(os, name)))

    def make_read_only(folder: Path, code: int = errno.EROFS) -> None:
        roots[os.path.abspath(folder)] = code

    make_read_only.undo = lambda folder: roots.pop(os.path.abspath(folder))
    return make_read_only


def seeded_net(spec) -> torch.nn.Module:
    """``spec``'s network in eval mode, seeded, its convolutions at torch's default init: some papers'
    inits leave the outputs near 0, where differences between paths would not show."""
    torch.manual_seed(0)
    net = spec.create().eval()
    for module in net.modules():
        if isinstance(module, torch.nn.Conv2d):
            module.reset_parameters()
    return net
