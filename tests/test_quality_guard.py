"""Bundled weights must keep the eval15 score weights.toml claims for them (within 0.1 dB).

Loops over every entry with a bundled file and an ``eval15_psnr`` figure, so each newly bundled model
is guarded without edits. Skipped when ../shared/data/lol is absent.
"""

import pytest

from lowlight_cli import weights
from lowlight_cli.evaluate import evaluate
from lowlight_cli.inference import RunOptions

GUARDED = [e for e in weights.entries() if e.bundled and "eval15_psnr" in e.metrics]
TOLERANCE_DB = 0.1


@pytest.mark.lol
@pytest.mark.parametrize("entry", GUARDED, ids=[e.name for e in GUARDED])
def test_bundled_weights_keep_their_eval15_psnr(entry, lol_dir):
    result = evaluate([entry.name], lol_dir / "eval15", RunOptions(device="cpu", scale=1))
    (summary,) = result.summary
    assert summary["images"] == 15
    assert summary["psnr"] >= entry.metrics["eval15_psnr"] - TOLERANCE_DB, (
        f"{entry.name}: eval15 PSNR {summary['psnr']:.3f} dB, weights.toml says {entry.metrics['eval15_psnr']}"
    )
    if "eval15_ssim" in entry.metrics:
        assert summary["ssim"] >= entry.metrics["eval15_ssim"] - 0.005


def test_some_weights_are_guarded():
    """The guard must not pass vacuously once weights are bundled."""
    bundled = [e for e in weights.entries() if e.bundled]
    assert all("eval15_psnr" in e.metrics for e in bundled), "every bundled entry needs its measured eval15_psnr"
