"""Reproducing videos from their records: rerun, show, export-manifest, inspect, kept inputs, the lock file.

Two jobs of the demo manifest (tiny SVD, CPU) rendered once by the steps the flow runs (without Prefect's
start-up: tests/test_run.py covers that); each test reruns or reads them.
"""

import json
import shutil
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from videosweep.flows.cli import app
from videosweep.tasks.manifest import load_manifest
from videosweep.tasks.models import file_sha256
from videosweep.tasks.render import RunContext, render_job
from videosweep.tasks.errors import ReproduceError
from videosweep.tasks.layout import LOCK_FILE
from videosweep.tasks.provenance import read_embedded_record, write_lock
from videosweep.tasks.reproduce import find_record, plan_rerun, version_differences
from videosweep.tasks.results import read_results, write_record
from videosweep.tasks.video import read_mp4

from .conftest import REPO, make_video


def videosweep(*args):
    return CliRunner().invoke(app, [str(arg) for arg in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory, tiny_svd) -> tuple[Path, Path]:
    """demo.yaml narrowed to two jobs (motion_bucket_id 60 and 180, seed 42), rendered: (manifest, output root)."""
    folder = tmp_path_factory.mktemp("reproduce")
    shutil.copytree(REPO / "manifests" / "inputs", folder / "inputs")
    spec = yaml.safe_load((REPO / "manifests" / "demo.yaml").read_text())
    spec.update(name="two", sweep={"motion_bucket_id": [60, 180]}, seeds=[42])
    spec["defaults"]["noise_aug_strength"] = 0.02
    del spec["grid"]
    manifest = folder / "two.yaml"
    manifest.write_text(yaml.safe_dump(spec))
    out = folder / "out"
    table = load_manifest(manifest, "cpu")
    write_lock(table, out)
    run = RunContext.new(out, "cpu", table)
    assert [render_job(job, run)["status"] for job in table.jobs] == ["ok", "ok"]
    return manifest, out


def job_ids(manifest: Path) -> dict[int, str]:
    """motion_bucket_id -> job id."""
    return {job.params["motion_bucket_id"]: job.job_id for job in load_manifest(manifest, "cpu").jobs}


@contextmanager
def moved(path: Path):
    """``path`` moved aside for the block, then put back."""
    aside = path.with_name(path.name + ".aside")
    path.rename(aside)
    try:
        yield aside
    finally:
        path.unlink(missing_ok=True)
        aside.rename(path)


def test_a_run_writes_the_lock_file_and_keeps_its_inputs_by_hash(rendered):
    manifest, out = rendered
    lock = yaml.safe_load((out / LOCK_FILE).read_text())
    assert lock["manifest"] == str(manifest) and lock["device"] == "cpu"
    assert [job["job_id"] for job in lock["jobs"]] == [job.job_id for job in load_manifest(manifest, "cpu").jobs]
    assert all(job["model_revision"].startswith("sha256:") for job in lock["jobs"])
    digest = file_sha256(manifest.parent / "inputs" / "rocket.png")
    assert {job["input_sha256"]["image"] for job in lock["jobs"]} == {digest}
    kept = out / "inputs" / f"{digest}.png"
    assert [p.name for p in (out / "inputs").iterdir()] == [kept.name] and file_sha256(kept) == digest


def test_each_video_carries_its_record_and_inspect_reads_it(rendered, tmp_path):
    manifest, out = rendered
    job_id = job_ids(manifest)[60]
    record = find_record(out, job_id)
    video = out / "videos" / f"{job_id}.mp4"
    embedded = read_embedded_record(video)
    for key in (
        "job_id",
        "model",
        "model_id",
        "model_revision",
        "scheduler_class",
        "seed",
        "params_json",
        "torch_version",
    ):
        assert embedded[key] == record[key], key
    assert json.loads(embedded["params_json"])["motion_bucket_id"] == 60
    assert embedded["input_image_sha256"] == record["input_image_sha256"]
    assert not {"run_id", "host", "worker", "started_at", "finished_at"} & set(embedded)  # bytes stay reproducible

    shown = videosweep("inspect", video)
    assert shown.exit_code == 0, shown.output
    assert f"job_id: {job_id}" in shown.output and "motion_bucket_id: 60" in shown.output
    assert "scheduler_config:\n  _class_name: EulerDiscreteScheduler" in shown.output

    plain = videosweep("inspect", make_video(tmp_path / "plain.mp4"))
    assert plain.exit_code == 2 and "carries no videosweep record" in plain.output


def test_show_prints_the_whole_record(rendered):
    manifest, out = rendered
    job_id = job_ids(manifest)[180]
    shown = videosweep("show", out, job_id[:6])
    assert shown.exit_code == 0, shown.output
    record = yaml.safe_load(shown.output)
    assert record["job_id"] == job_id and record["status"] == "ok"
    assert record["params"]["motion_bucket_id"] == 180 and record["sweep"] == {"motion_bucket_id": 180, "seed": 42}
    assert record["video_path"] == f"videos/{job_id}.mp4" and record["torch_version"]


def test_rerun_is_bit_identical(rendered, tmp_path):
    manifest, out = rendered
    job_id = job_ids(manifest)[60]
    result = videosweep("rerun", out, job_id[:5], "--into", tmp_path / "again", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "bit-identical to the recorded video" in result.output
    assert "differs from the record" not in result.output  # same process, same versions
    again = read_results(tmp_path / "again")
    assert list(again["job_id"]) == [job_id] and again["parent_job_id"].isna().all()
    assert file_sha256(tmp_path / "again" / "videos" / f"{job_id}.mp4") == find_record(out, job_id)["video_sha256"]


def test_rerun_finds_a_moved_input_by_its_hash(rendered):
    manifest, out = rendered
    job_id = job_ids(manifest)[180]
    with moved(manifest.parent / "inputs" / "rocket.png"):
        result = videosweep("rerun", out, job_id, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "is gone; using the copy kept by its hash" in result.output
    # the default --into; the pixels are the recorded ones, only the image path in the carried record changed
    assert "the frames are identical" in result.output and "params_json" in result.output
    before, _ = read_mp4(out / "videos" / f"{job_id}.mp4")
    after, _ = read_mp4(out / "reruns" / "videos" / f"{job_id}.mp4")
    assert np.array_equal(before, after)


def test_rerun_refuses_a_tampered_input_naming_both_hashes(rendered, tmp_path):
    manifest, out = rendered
    image, job_id = manifest.parent / "inputs" / "rocket.png", job_ids(manifest)[60]
    recorded = file_sha256(image)
    with moved(out / "inputs"), moved(image) as original:
        with Image.open(original) as picture:
            picture.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(image)
        result = videosweep("rerun", out, job_id, "--into", tmp_path / "no", "--device", "cpu")
        tampered = file_sha256(image)
    assert result.exit_code == 2
    assert recorded in result.output and tampered in result.output and "has changed" in result.output
    assert not (tmp_path / "no").exists()


def test_rerun_with_set_renders_a_new_job_linked_to_its_parent(rendered, tmp_path):
    manifest, out = rendered
    parent = job_ids(manifest)[60]
    into = tmp_path / "derived"
    result = videosweep(
        "rerun", out, parent, "--set", "num_inference_steps=2", "--set", "motion_bucket_id=100", "--into", into
    )
    assert result.exit_code == 0, result.output
    child = read_results(into).iloc[0]
    assert child["job_id"] != parent and child["parent_job_id"] == parent and child["status"] == "ok"
    assert child["num_inference_steps"] == 2 and child["motion_bucket_id"] == 100
    assert json.loads(child["sweep_json"]) == {"motion_bucket_id": 100, "num_inference_steps": 2, "seed": 42}
    assert read_embedded_record(into / child["video_path"])["parent_job_id"] == parent
    assert f"new job {child['job_id']} (parent {parent})" in result.output

    bad = videosweep("rerun", out, parent, "--set", "motion_bucket_id=300", "--set", "motion_bucket=3", "--into", into)
    assert bad.exit_code == 2
    assert "motion_bucket_id=300: Input should be less than or equal to 255" in bad.output
    assert "did you mean 'motion_bucket_id'?" in bad.output
    assert "give key=value" in videosweep("rerun", out, parent, "--set", "steps", "--into", into).output


def test_a_job_is_named_by_a_unique_prefix(rendered):
    manifest, out = rendered
    ids = sorted(job_ids(manifest).values())
    assert find_record(out, ids[0][:8])["job_id"] == ids[0]
    with pytest.raises(ReproduceError, match=f"ambiguous, it matches {ids[0]}, {ids[1]}"):
        find_record(out, "")
    with pytest.raises(ReproduceError, match="no job id .* starts with 'zzz' \\(2 jobs there\\)"):
        find_record(out, "zzz")


def test_a_job_whose_model_changed_is_not_rerun_as_if_it_were_the_same(rendered, tmp_path):
    manifest, out = rendered
    record = find_record(out, job_ids(manifest)[60])
    write_record(tmp_path, {**record, "job_id": "feedface00000000", "model_revision": "sha256:0000"})
    with pytest.raises(
        ReproduceError, match="model_revision: sha256:0000 \\(recorded\\) != sha256:[0-9a-f]{64} \\(now\\)"
    ):
        plan_rerun(tmp_path, "feedface", [], "cpu")


def test_version_differences_name_what_changed(rendered):
    manifest, out = rendered
    record = find_record(out, job_ids(manifest)[60])
    assert version_differences(record, "cpu") == []
    differences = version_differences({**record, "torch_version": "1.0.0", "gpu_name": "NVIDIA H100"}, "cpu")
    assert differences[0].startswith("torch: 1.0.0 (recorded) -> 2.")
    assert differences[1] == "gpu_name: NVIDIA H100 (recorded) -> None (now)"


def test_export_manifest_renders_the_selected_job_ids(rendered, tmp_path):
    manifest, out = rendered
    ids = job_ids(manifest)
    picked = videosweep("export-manifest", out, "--where", "motion_bucket_id == 180")
    assert picked.exit_code == 0, picked.output
    (tmp_path / "picked.yaml").write_text(picked.stdout)
    assert [job.job_id for job in load_manifest(tmp_path / "picked.yaml", "cpu").jobs] == [ids[180]]

    every = videosweep("export-manifest", out)
    (tmp_path / "every.yaml").write_text(every.stdout)
    assert [job.job_id for job in load_manifest(tmp_path / "every.yaml", "cpu").jobs] == [ids[60], ids[180]]
    spec = yaml.safe_load(every.stdout)  # shared values in defaults, the swept one swept again
    assert spec["defaults"]["model"] == "tiny-svd" and "rows" not in spec
    assert spec["sweep"] == {"motion_bucket_id": [60, 180]}
    planned = videosweep("plan", tmp_path / "every.yaml", "--out", out, "--device", "cpu")
    assert planned.exit_code == 0 and "0 of 2 jobs to render" in planned.output  # the very jobs rendered

    bad = videosweep("export-manifest", out, "--where", "motion_bucket == 1")
    assert bad.exit_code == 2 and "motion_bucket_id" in bad.output  # the columns are listed
    none = videosweep("export-manifest", out, "--where", "motion_bucket_id == 1")
    assert none.exit_code == 2 and "selects no job" in none.output


def test_a_schedulers_recorded_config_is_the_same_text_in_every_process():
    """diffusers' _use_default_values is a list made from a set: its order follows the process's string hashing."""
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

    from videosweep.tasks.render.start import scheduler_config_json

    scheduler = DPMSolverMultistepScheduler.from_config(DDIMScheduler().config)
    defaults = list(scheduler.config["_use_default_values"])
    assert len(defaults) > 1
    texts = set()
    for order in (defaults, defaults[::-1]):
        scheduler.register_to_config(_use_default_values=order)
        texts.add(scheduler_config_json(scheduler))
    assert len(texts) == 1


SWEEP = """name: folded
defaults: {model: tiny-svd, image: inputs/rocket.png, height: 32, width: 32, num_frames: 4, num_inference_steps: 2}
sweep:
  motion_bucket_id: [60, 180]
  noise_aug_strength: [0.02, 0.1]
zip:
  max_guidance_scale: [3.0, 2.5]
  min_guidance_scale: [1.0, 1.5]
seeds: [42, 43]
"""


@pytest.fixture(scope="module")
def recorded_sweep(tmp_path_factory, tiny_svd) -> tuple[Path, Path, list]:
    """A sweep of 16 jobs (2 x 2 x a zip of 2 x 2 seeds), each recorded as a run records a job its worker lost
    (no rendering: export reads records): (manifest, output root, jobs)."""
    from videosweep.tasks.render.loop import worker_lost

    folder = tmp_path_factory.mktemp("folded")
    shutil.copytree(REPO / "manifests" / "inputs", folder / "inputs")
    manifest = folder / "folded.yaml"
    manifest.write_text(SWEEP)
    table = load_manifest(manifest, "cpu")
    run = RunContext.new(folder / "out", "cpu", table)
    for job in table.jobs:
        worker_lost(job, run, 1)
    return manifest, folder / "out", table.jobs


def exported(out: Path, tmp_path: Path, where: str | None = None) -> tuple[dict, list[str]]:
    """export-manifest's YAML for ``where``, and the job ids its manifest expands to."""
    result = videosweep("export-manifest", out, *(["--where", where] if where else []))
    assert result.exit_code == 0, result.output
    path = tmp_path / "exported.yaml"
    path.write_text(result.stdout)
    return yaml.safe_load(result.stdout), [job.job_id for job in load_manifest(path, "cpu").jobs]


def test_export_folds_a_full_sweep_back_into_sweep_zip_and_seeds(recorded_sweep, tmp_path):
    _, out, jobs = recorded_sweep
    spec, ids = exported(out, tmp_path)
    assert ids == [job.job_id for job in jobs]  # the same jobs, in the same order
    assert set(spec) == {"defaults", "sweep", "zip", "seeds"}
    assert spec["sweep"] == {"motion_bucket_id": [60, 180], "noise_aug_strength": [0.02, 0.1]}
    assert spec["zip"] == {"max_guidance_scale": [3.0, 2.5], "min_guidance_scale": [1.0, 1.5]}
    assert spec["seeds"] == [42, 43] and spec["defaults"]["num_frames"] == 4

    spec, ids = exported(out, tmp_path, "seed == 43 and max_guidance_scale == 3")  # a full product still
    assert ids == [job.job_id for job in jobs if job.seed == 43 and job.params["max_guidance_scale"] == 3]
    assert set(spec) == {"defaults", "sweep"} and spec["defaults"]["seed"] == 43
    assert spec["defaults"]["min_guidance_scale"] == 1.0


def test_export_of_a_partial_selection_folds_only_what_it_holds_whole(recorded_sweep, tmp_path):
    _, out, jobs = recorded_sweep
    where = "not (motion_bucket_id == 60 and noise_aug_strength == 0.02)"  # 3 of the 4 pairs, each with all the rest
    spec, ids = exported(out, tmp_path, where)
    pair = lambda job: (job.params["motion_bucket_id"], job.params["noise_aug_strength"])  # noqa: E731
    assert sorted(ids) == sorted(job.job_id for job in jobs if pair(job) != (60, 0.02)) and len(ids) == 12
    assert spec["rows"] == [
        {"motion_bucket_id": 60, "noise_aug_strength": 0.1},
        {"motion_bucket_id": 180, "noise_aug_strength": 0.02},
        {"motion_bucket_id": 180, "noise_aug_strength": 0.1},
    ]
    assert "sweep" not in spec and spec["seeds"] == [42, 43]
    assert set(spec["zip"]) == {"max_guidance_scale", "min_guidance_scale"}

    spec, ids = exported(out, tmp_path, "job_index != 1")  # nothing is whole: every job a row of its own
    assert sorted(ids) == sorted(job.job_id for job in jobs if job.index != 1) and len(spec["rows"]) == 15
    assert set(spec) == {"defaults", "rows"}
