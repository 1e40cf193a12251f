"""Test session setup: a private VIDEOSWEEP_HOME (tiny checkpoints) and PREFECT_HOME, quiet offline defaults."""

import os
import shutil
import tempfile
from pathlib import Path
from typing import NamedTuple

import pytest

# Before anything imports prefect or builds a checkpoint: nothing a test does touches ~/.
# pytest-xdist's worker processes share the first process's tiny checkpoints (their builds race
# safely: models._build_once), each with a Prefect home of its own (one SQLite database each).
_SHARED = os.environ.get("VIDEOSWEEP_TEST_SESSION")
_SESSION = Path(tempfile.mkdtemp(prefix="videosweep-tests-"))
os.environ.setdefault("VIDEOSWEEP_TEST_SESSION", str(_SESSION))
os.environ["VIDEOSWEEP_HOME"] = str(Path(_SHARED or _SESSION) / "home")
os.environ["PREFECT_HOME"] = str(_SESSION / "prefect")
os.environ["HF_HUB_OFFLINE"] = "1"  # tests never reach for the hub
if os.environ.get("PYTEST_XDIST_WORKER"):
    # Two test processes share the cores: one compute thread each (and in the processes they start), so OpenMP's
    # threads do not spin against each other's. Set before torch is imported; every process of a test agrees.
    for _threads in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_threads, "1")
import videosweep.flows  # noqa: E402,F401  (the CLI's quiet, offline Prefect and Hugging Face defaults)

REPO = Path(__file__).resolve().parent.parent
ROCKET = REPO / "manifests" / "inputs" / "rocket.png"


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_SESSION, ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_svd() -> Path:
    """The tiny SVD checkpoint, built once per test session through the registry."""
    from videosweep.tasks.models import ensure_built, known_models

    ref = known_models()["tiny-svd"]
    ensure_built(ref)
    return Path(ref.source)


@pytest.fixture
def fresh_pipeline_cache():
    """This process's pipeline cache, emptied: for tests that count loads (other tests leave pipelines in it)."""
    from videosweep.tasks.render import pipeline_cache

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

    from videosweep.tasks.video import write_mp4

    with Image.open(ROCKET) as image:
        wide = np.asarray(image.convert("RGB").resize((width * 2, height)))
    step = width // max(frames - 1, 1)
    clip = np.stack([wide[:, i * step : i * step + width] for i in range(frames)])
    write_mp4(clip, fps, path)
    return path


def use_render(monkeypatch, module, render_video) -> None:
    """Make family ``module`` render each video with ``render_video(pipe, params, generator, device)`` for a test.

    Tests put a fault (out of memory, a hang, an error for one seed) in front of the family's
    ``render_one``; the run reads families from the registry, so the record is replaced there.
    """
    from dataclasses import replace

    from videosweep.tasks.models import FAMILIES
    from videosweep.tasks.models.family import one_video_per_call

    monkeypatch.setitem(FAMILIES, module.FAMILY.name, replace(module.FAMILY, render=one_video_per_call(render_video)))


def kept_renders(monkeypatch, family: str) -> list:
    """Keep every video family ``family``'s render returns (``Rendered``: uint8 frames before the mp4) while a test
    runs jobs through the render step; the render itself is the family's."""
    from dataclasses import replace

    from videosweep.tasks.models import FAMILIES, by_class, family_spec

    spec, kept = family_spec(family), []

    def render(*args, **kwargs):
        videos = spec.render(*args, **kwargs)
        kept.extend(videos)
        return videos

    if family in FAMILIES:
        monkeypatch.setitem(FAMILIES, family, replace(spec, render=render))
    else:  # a pipeline by class name (tasks/models/by_class.py)
        found = by_class.family
        monkeypatch.setattr(by_class, "family", lambda name: replace(spec, render=render) if name == family else found(name))
    return kept


class PipelineCalled(Exception):
    """Raised where :func:`pipeline_call` stops a pipeline: the arguments were what the test wanted."""


class Call(NamedTuple):
    """A pipeline call: its positional and keyword arguments, and the scheduler the pipeline held for it."""

    args: tuple
    kwargs: dict
    scheduler: object


def pipeline_call(pipe, render) -> Call:
    """The call ``render()`` makes of ``pipe``.

    The pipeline's ``__call__`` is stopped as it starts, before any denoising: a test checks what
    a row's parameters reach the pipeline as, exactly, without paying for a render.
    """
    calls = []

    def stop(self, *args, **kwargs):
        calls.append(Call(args, kwargs, getattr(self, "scheduler", None)))  # None: a pipeline that does not denoise
        raise PipelineCalled

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(type(pipe), "__call__", stop)
        with pytest.raises(PipelineCalled):
            render()
    (call,) = calls
    return call
