"""Test session setup: a private VIDEOSWEEP_HOME (tiny checkpoints) and PREFECT_HOME, quiet offline defaults."""

import os
import shutil
import tempfile
from pathlib import Path

import pytest

# Before anything imports prefect or builds a checkpoint: nothing a test does touches ~/.
_SESSION = Path(tempfile.mkdtemp(prefix="videosweep-tests-"))
os.environ["VIDEOSWEEP_HOME"] = str(_SESSION / "home")
os.environ["PREFECT_HOME"] = str(_SESSION / "prefect")
os.environ["HF_HUB_OFFLINE"] = "1"  # tests never reach for the hub
import flows  # noqa: E402,F401  (the CLI's quiet, offline Prefect and Hugging Face defaults)

REPO = Path(__file__).resolve().parent.parent
ROCKET = REPO / "manifests" / "inputs" / "rocket.png"


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_SESSION, ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_svd() -> Path:
    """The tiny SVD checkpoint, built once per test session through the registry."""
    from tasks.models import ensure_built, known_models

    ref = known_models()["tiny-svd"]
    ensure_built(ref)
    return Path(ref.source)


@pytest.fixture
def fresh_pipeline_cache():
    """This process's pipeline cache, emptied: for tests that count loads (other tests leave pipelines in it)."""
    from tasks.render import pipeline_cache

    pipeline_cache().clear()
    return pipeline_cache()


@pytest.fixture
def demo_copy(tmp_path: Path) -> Path:
    """manifests/demo.yaml and its input image, copied into a fresh folder."""
    shutil.copytree(REPO / "manifests" / "inputs", tmp_path / "inputs")
    shutil.copy(REPO / "manifests" / "demo.yaml", tmp_path / "demo.yaml")
    return tmp_path / "demo.yaml"


def make_video(path: Path, frames: int = 8, height: int = 64, width: int = 96, fps: int = 8) -> Path:
    """A small input clip: the rocket image panning left to right."""
    import numpy as np
    from PIL import Image

    from tasks.video import write_mp4

    with Image.open(ROCKET) as image:
        wide = np.asarray(image.convert("RGB").resize((width * 2, height)))
    step = width // max(frames - 1, 1)
    clip = np.stack([wide[:, i * step : i * step + width] for i in range(frames)])
    write_mp4(clip, fps, path)
    return path
