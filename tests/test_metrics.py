"""The per-video metrics on synthetic clips: still scores zero, more motion scores more, fidelity to the image."""

import numpy as np
import pytest
from PIL import Image

from videosweep.tasks.metrics import METRICS, PSNR_CAP, psnr, ssim, video_metrics


def _clip(shift_per_frame: int, frames: int = 6, height: int = 48, width: int = 64) -> np.ndarray:
    """A textured image panned ``shift_per_frame`` pixels a frame."""
    rng = np.random.default_rng(0)
    wide = rng.integers(0, 256, size=(height, width + frames * shift_per_frame + 1, 3), dtype=np.uint8)
    return np.stack([wide[:, i * shift_per_frame : i * shift_per_frame + width] for i in range(frames)])


def test_a_still_clip_scores_no_motion_and_no_flicker():
    still = _clip(0)
    metrics = video_metrics(still)
    assert metrics["motion_score"] == 0.0
    assert metrics["flicker"] == 0.0
    assert metrics["first_frame_psnr"] is None and metrics["first_frame_ssim"] is None


def test_motion_grows_with_the_speed_of_the_pan():
    scores = [video_metrics(_clip(shift))["motion_score"] for shift in (0, 1, 4)]
    assert scores[0] < scores[1] < scores[2] <= 1.0


def test_flicker_sees_brightness_pumping_that_motion_alone_does_not_cause():
    base = np.full((6, 32, 32, 3), 100, dtype=np.uint8)
    pumping = base + (np.arange(6) % 2 * 40).astype(np.uint8)[:, None, None, None]
    panning = _clip(3)
    assert video_metrics(pumping)["flicker"] == pytest.approx(40 / 255, rel=1e-5)
    assert video_metrics(panning)["flicker"] < 0.01 < video_metrics(panning)["motion_score"]


def test_metrics_are_deterministic():
    clip = _clip(2)
    assert video_metrics(clip) == video_metrics(clip.copy())


def test_first_frame_fidelity_to_the_conditioning_image(tmp_path):
    clip = _clip(2)
    exact = tmp_path / "exact.png"
    Image.fromarray(clip[0]).save(exact)
    other = tmp_path / "other.png"
    Image.fromarray(255 - clip[0]).save(other)
    same, different = video_metrics(clip, exact), video_metrics(clip, other)
    assert same["first_frame_psnr"] == PSNR_CAP and same["first_frame_ssim"] == pytest.approx(1.0)
    assert different["first_frame_psnr"] < 10 and different["first_frame_ssim"] < 0.1


def test_psnr_and_ssim_order_degradations():
    clean = _clip(0)[0]
    rng = np.random.default_rng(1)
    light = np.clip(clean + rng.normal(0, 5, clean.shape), 0, 255).astype(np.uint8)
    heavy = np.clip(clean + rng.normal(0, 40, clean.shape), 0, 255).astype(np.uint8)
    assert psnr(clean, light) > psnr(clean, heavy)
    assert 1.0 > ssim(clean, light) > ssim(clean, heavy)


def test_every_metric_is_computed_documented_and_a_float_results_column(tmp_path):
    """METRICS names exactly what video_metrics computes, each a float64 column of the results table, each with
    a row of its own in the README's table of results columns."""
    import pyarrow as pa

    from videosweep.tasks.results import SCHEMA

    from .conftest import REPO

    image = tmp_path / "first.png"
    Image.fromarray(_clip(1)[0]).save(image)
    assert list(video_metrics(_clip(1), image)) == list(METRICS)
    assert all(SCHEMA.field(name).type == pa.float64() for name in METRICS)
    readme_rows = [line for line in (REPO / "README.md").read_text().splitlines() if line.startswith("| `")]
    for name in METRICS:
        assert any(f"`{name}`" in row.split("|")[1] for row in readme_rows), f"README: no results-table row for {name}"
