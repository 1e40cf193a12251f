"""End to end through the CLI and the Prefect flow (ephemeral API, in this process): the demo manifest."""

import json
import shutil
from pathlib import Path
from urllib.parse import quote

import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from videosweep.flows.cli import app
from videosweep.tasks.manifest import load_manifest
from videosweep.tasks.models import file_sha256
from videosweep.tasks.layout import STATE_DIR
from videosweep.tasks.results import SCHEMA
from videosweep.tasks.video import read_mp4

from .conftest import use_render

REQUIRED_COLUMNS = """job_id run_id model model_id model_revision pipeline_class scheduler_class dtype device
gpu_name seed generator_device video_path video_sha256 load_s cache_hit denoise_s decode_s export_s total_s
peak_gpu_mem_bytes python_version torch_version diffusers_version transformers_version status error""".split()


def videosweep(*args: str):
    return CliRunner().invoke(app, [str(arg) for arg in args], catch_exceptions=False)


def parts(out: Path) -> list[Path]:
    return sorted((out / "results").glob("part-*.parquet"))


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, Path, object]:
    """The demo manifest rendered once for this module: (manifest, output root, CLI result)."""
    from videosweep.tasks.render import pipeline_cache

    pipeline_cache().clear()  # its loads are counted below
    folder = tmp_path_factory.mktemp("demo")
    shutil.copytree(Path(__file__).parent.parent / "manifests" / "inputs", folder / "inputs")
    manifest = shutil.copy(Path(__file__).parent.parent / "manifests" / "demo.yaml", folder / "demo.yaml")
    out = folder / "out"
    return Path(manifest), out, videosweep("run", manifest, "--out", out, "--device", "cpu")


def test_demo_renders_every_job_to_a_decodable_mp4(demo):
    manifest, out, result = demo
    assert result.exit_code == 0, result.output
    assert "8 jobs: 8 ok, 0 failed, 0 skipped" in result.output
    jobs = load_manifest(manifest, "cpu").jobs
    assert sorted(path.stem for path in (out / "videos").glob("*.mp4")) == sorted(job.job_id for job in jobs)
    for job in jobs:
        frames, fps = read_mp4(out / "videos" / f"{job.job_id}.mp4")
        assert frames.shape == (8, 72, 128, 3)
        assert fps == 7
    scratch = [path for path in out.rglob(".*") if STATE_DIR not in path.relative_to(out).parts]
    assert not scratch, "scratch files left behind"


def test_the_run_ends_with_the_declared_grids_the_report_and_prefect_artifacts(demo):
    manifest, out, result = demo
    # grid: {x: motion_bucket_id, y: noise_aug_strength, z: seed}, over 2 x 2 x 2 jobs: one 2x2 grid per seed
    sidecars = sorted((out / "grids").glob("*.json"))
    assert len(sidecars) == 2 and "grids:" in result.output and "(2 drawn)" in result.output
    for sidecar in sidecars:
        grid = json.loads(sidecar.read_text())
        assert (grid["rows"], grid["cols"]) == (2, 2) and grid["z"] == "seed"
        assert {cell["status"] for cell in grid["cells"]} == {"ok"}
        frames, _ = read_mp4(out / grid["mp4"])
        assert len(frames) == 8 and (out / grid["preview"]).is_file()
    assert {json.loads(path.read_text())["z_value"] for path in sidecars} == {42, 43}
    page = (out / "report.html").read_text()
    assert f"report:  {out / 'report.html'}" in result.output
    assert all(quote(json.loads(path.read_text())["mp4"]) in page for path in sidecars)
    assert (out / "manifest.lock.yaml").is_file()

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from videosweep.tasks.text import markdown

    with get_client(sync_client=True) as client:
        keys = {"videosweep-demo-summary", "videosweep-demo-results"}
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=list(keys))))
    # other tests of the session render manifests named "demo" too: this run's artifacts name its output root
    artifacts = [artifact for artifact in artifacts if markdown(str(out)) in (artifact.description or "")]
    assert sorted(artifact.key for artifact in artifacts) == sorted(keys)
    table = next(artifact for artifact in artifacts if artifact.type == "table")
    rows = table.data if isinstance(table.data, list) else json.loads(table.data)
    assert len(rows) == 8 and {row["status"] for row in rows} == {"ok"}


def test_results_table_has_one_typed_ok_row_per_job(demo):
    manifest, out, _ = demo
    table = pd.read_parquet(out / "results")
    assert len(table) == 8
    assert set(REQUIRED_COLUMNS) <= set(table.columns)
    assert (table["status"] == "ok").all() and table["error"].isna().all()
    assert set(table["job_id"]) == {job.job_id for job in load_manifest(manifest, "cpu").jobs}
    assert table["run_id"].nunique() == 1 and (table["attempt"] == 1).all()
    # typed columns, not strings
    assert pq.read_schema(parts(out)[0]) == SCHEMA
    assert table["seed"].dtype == "int64" and table["motion_bucket_id"].dtype == "int64"
    assert table["noise_aug_strength"].dtype == "float64" and table["cache_hit"].dtype == "bool"
    assert str(table["started_at"].dtype).startswith("datetime64")
    assert sorted(table["seed"].unique()) == [42, 43]
    # one load for the whole run, then cache hits
    assert table["cache_hit"].sum() == 7
    assert table.loc[~table["cache_hit"], "load_s"].iloc[0] > 0
    assert (table.loc[table["cache_hit"], "load_s"] == 0).all()
    # provenance
    assert (table["pipeline_class"] == "StableVideoDiffusionPipeline").all()
    assert (table["scheduler_class"] == "EulerDiscreteScheduler").all()
    assert table["model_revision"].str.startswith("sha256:").all()
    assert (table["dtype"] == "float32").all() and (table["device"] == "cpu").all()
    assert table["peak_gpu_mem_bytes"].isna().all() and table["gpu_name"].isna().all()
    assert table["input_image_sha256"].nunique() == 1
    for timing in ("denoise_s", "decode_s", "export_s", "total_s"):
        assert (table[timing] > 0).all(), timing
    assert (table["total_s"] >= table["denoise_s"] + table["decode_s"] + table["export_s"]).all()
    for row in table.itertuples():
        assert file_sha256(out / row.video_path) == row.video_sha256
    # metrics of an image-to-video row: all four, in range
    assert table["motion_score"].between(0, 1).all() and table["flicker"].between(0, 1).all()
    assert table["first_frame_psnr"].between(0, 100).all() and table["first_frame_ssim"].between(-1, 1).all()


def test_second_run_renders_nothing(demo):
    manifest, out, _ = demo
    before = parts(out)
    result = videosweep("run", manifest, "--out", out, "--device", "cpu")
    assert result.exit_code == 0
    assert "0 ok, 0 failed, 8 skipped" in result.output
    assert "nothing to render" in result.output
    assert parts(out) == before


def test_force_renders_again_with_identical_bytes(demo):
    manifest, out, _ = demo
    result = videosweep("run", manifest, "--out", out, "--device", "cpu", "--force")
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(out / "results")
    assert len(table) == 16 and sorted(table["attempt"].unique()) == [1, 2]
    by_attempt = table.pivot(index="job_id", columns="attempt", values="video_sha256")
    assert (by_attempt[1] == by_attempt[2]).all(), "same seed and parameters must give the same video"


def test_a_failing_job_is_recorded_and_the_others_finish(demo_copy, tmp_path, monkeypatch):
    from videosweep.tasks.models import svd

    real_render = svd.FAMILY.render_one

    def broken_for_seed_43(pipe, params, generator, device):
        if generator.initial_seed() == 43:
            raise RuntimeError("deliberately broken")
        return real_render(pipe, params, generator, device)

    out = tmp_path / "out"
    use_render(monkeypatch, svd, broken_for_seed_43)
    result = videosweep("run", demo_copy, "--out", out, "--device", "cpu")
    assert result.exit_code == 1
    assert "4 ok, 4 failed" in result.output and "deliberately broken" in result.output
    table = pd.read_parquet(out / "results")
    failed = table[table["status"] == "failed"]
    assert sorted(table["status"]) == ["failed"] * 4 + ["ok"] * 4
    assert (failed["seed"] == 43).all() and (failed["error_type"] == "RuntimeError").all()
    assert failed["error"].str.contains("deliberately broken").all()
    assert failed["video_path"].isna().all() and len(list((out / "videos").glob("*.mp4"))) == 4

    # the same command, once fixed, renders only what failed, as a second attempt
    use_render(monkeypatch, svd, real_render)
    result = videosweep("run", demo_copy, "--out", out, "--device", "cpu")
    assert result.exit_code == 0
    assert "4 ok, 0 failed, 4 skipped" in result.output
    again = pd.read_parquet(out / "results")
    assert sorted(again.loc[again["attempt"] == 2, "job_id"]) == sorted(failed["job_id"])


def test_a_killed_run_resumes_what_it_had_not_finished(demo_copy, tmp_path):
    """A kill leaves jobs with no record, or a record whose video is gone: both render again."""
    out = tmp_path / "out"
    assert videosweep("run", demo_copy, "--out", out, "--device", "cpu").exit_code == 0
    records = pd.read_parquet(out / "results")
    no_record, no_video = records["job_id"].iloc[0], records["job_id"].iloc[1]
    next(path for path in parts(out) if no_record in path.name).unlink()
    (out / "videos" / f"{no_video}.mp4").unlink()
    (out / "videos" / ".scratch.123.tmp.mp4").write_bytes(b"half")  # what a kill mid-encode leaves

    result = videosweep("run", demo_copy, "--out", out, "--device", "cpu")
    assert result.exit_code == 0
    assert "2 ok, 0 failed, 6 skipped" in result.output
    assert (out / "videos" / f"{no_video}.mp4").is_file()
    assert len(list((out / "videos").glob("[!.]*.mp4"))) == 8


def test_run_refuses_an_invalid_manifest_before_rendering(demo_copy, tmp_path):
    text = demo_copy.read_text().replace("motion_bucket_id: [60, 180]", "motion_bucket_id: [60, 900]")
    demo_copy.write_text(text)
    out = tmp_path / "out"
    result = videosweep("run", demo_copy, "--out", out, "--device", "cpu")
    assert result.exit_code == 2
    assert "motion_bucket_id=900" in result.output and "255" in result.output
    assert "nothing rendered" in result.output
    assert not out.exists()


def test_validate_prints_the_job_table(demo_copy):
    result = videosweep("validate", demo_copy, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "demo: 8 jobs on cpu" in result.output
    for job in load_manifest(demo_copy, "cpu").jobs:
        assert job.job_id in result.output
    assert "grid: x=motion_bucket_id, y=noise_aug_strength, z=seed" in result.output


def test_validate_names_every_bad_row(demo_copy):
    text = demo_copy.read_text().replace("seeds: [42, 43]", "seeds: [42, -1]")
    demo_copy.write_text(text.replace("  fps: 7", "  fps: 7\n  motion_bucket: 3"))
    result = videosweep("validate", demo_copy, "--device", "cpu")
    assert result.exit_code == 2
    assert str(demo_copy) in result.output
    assert "did you mean 'motion_bucket_id'" in result.output
    assert "seed=-1" in result.output and "greater than or equal to 0" in result.output


MANIFESTS = Path(__file__).parent.parent / "manifests"


@pytest.mark.parametrize("manifest", sorted(MANIFESTS.rglob("*.yaml")), ids=lambda path: str(path.relative_to(MANIFESTS)))
def test_every_example_manifest_validates(manifest):
    """Every job distinct; ``<family>.yaml`` renders that family (a chain may feed it another's videos), on the
    real checkpoints, and ``tiny/<family>.yaml`` on the tiny twins only."""
    from videosweep.tasks.models import FAMILIES

    jobs = load_manifest(manifest, "cpu").jobs
    assert jobs and len({job.job_id for job in jobs}) == len(jobs)
    if manifest.stem in FAMILIES:
        assert manifest.stem in {job.family for job in jobs}
        tiny = manifest.parent.name == "tiny"
        assert [job.model for job in jobs if job.model.startswith("tiny-") != tiny] == []
