"""Sharding on Dask (CPU, tiny models): a local 2-worker cluster, a lost worker, and an existing scheduler."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from videosweep.flows.cli import app
from videosweep.flows.cluster import share_prefect_api
from videosweep.flows.dispatch import Dispatcher
from videosweep.tasks.manifest import load_manifest
from videosweep.tasks.plan import Shard, make_plan, naive_loads

from .conftest import ROCKET


def two_models(folder: Path, tiny_svd: Path, seeds: int = 4, frames: int = 4) -> Path:
    """A manifest of two pipelines (tiny-svd and a copy with another scheduler config), interleaved."""
    import shutil

    other = folder / "other-svd"
    if not other.exists():
        shutil.copytree(tiny_svd, other)
        config = other / "scheduler" / "scheduler_config.json"
        config.write_text(config.read_text().replace('"steps_offset": 1', '"steps_offset": 0'))
    rows = "\n".join(f"  - {{model: {model}, motion_bucket_id: {bucket}}}" for bucket in (60, 120) for model in ("tiny-svd", str(other)))
    (folder / "two.yaml").write_text(
        f"name: two\ndefaults: {{image: {ROCKET}, height: 32, width: 48, num_frames: {frames}, num_inference_steps: 2}}\n"
        f"rows:\n{rows}\nseeds: {{from: 1, count: {seeds}}}\n"
    )
    return folder / "two.yaml"


def videosweep(*args) -> object:
    return CliRunner().invoke(app, [str(arg) for arg in args], catch_exceptions=False)


def test_the_plan_puts_two_equal_models_on_two_workers_and_beats_manifest_order(tiny_svd, tmp_path):
    jobs = load_manifest(two_models(tmp_path, tiny_svd), "cpu").jobs
    plan = make_plan(jobs, 2)
    by_worker = {worker: {job.model for shard in plan.shards if shard.worker == worker for job in shard.jobs} for worker in (0, 1)}
    assert len(by_worker[0]) == len(by_worker[1]) == 1 and by_worker[0] != by_worker[1]
    assert plan.loads == 2 < naive_loads(jobs, 2) == 8
    assert sorted(job.job_id for shard in plan.shards for job in shard.jobs) == sorted(job.job_id for job in jobs)
    assert abs(plan.worker_costs()[0] - plan.worker_costs()[1]) < 1e-9
    assert [len(shard.jobs) for shard in plan.shards] == [2] * 8, "a worker's 8 jobs of one pipeline in 4 shards"
    batched = make_plan(jobs, 2, batch=3)  # run --batch 3: whole batches per shard (a worker's last may be short)
    assert [len(shard.jobs) for shard in batched.shards] == [3, 3, 2] * 2 and batched.loads == plan.loads


def test_a_large_model_group_spills_onto_the_idle_worker(tiny_svd, tmp_path):
    (tmp_path / "one.yaml").write_text(
        f"name: one\ndefaults: {{model: tiny-svd, image: {ROCKET}, height: 32, width: 48}}\nseeds: {{from: 0, count: 8}}\n"
    )
    plan = make_plan(load_manifest(tmp_path / "one.yaml", "cpu").jobs, 2)
    assert plan.worker_costs()[0] == plan.worker_costs()[1]
    assert plan.loads == 2  # one model, loaded on both workers because balance demands it


def test_a_worker_that_runs_dry_takes_queued_work_preferring_its_own_pipeline(tiny_svd, tmp_path):
    jobs = load_manifest(two_models(tmp_path, tiny_svd, seeds=8), "cpu").jobs
    plan = make_plan(jobs, 2)
    dispatcher = Dispatcher(plan.shards, 2)
    mine = [dispatcher.next_for(0) for _ in range(len(dispatcher.queues[0]))]
    assert all(shard.worker == 0 for shard in mine) and dispatcher.stolen == 0  # its own shards first, in order
    # worker 0 is dry while worker 1 has queued work of the other pipeline: it takes it, from the end of the queue
    theirs = list(dispatcher.queues[1])
    stolen = dispatcher.next_for(0)
    assert stolen is theirs[-1] and dispatcher.stolen == 1
    assert dispatcher.next_for(1) is theirs[0]  # the owner goes on with its own run of shards

    # with work of both pipelines queued elsewhere, a dry worker takes the pipeline it holds
    a, b = ([job for job in jobs if job.model == model] for model in ("tiny-svd", str(tmp_path / "other-svd")))
    shards = [Shard(0, 0, 0, a[:1]), *(Shard(i, 0, 1, [job]) for i, job in enumerate([b[0], b[1], a[1], b[2]], 1))]
    dispatcher = Dispatcher(shards, 2)
    assert dispatcher.next_for(0).jobs == a[:1]
    assert dispatcher.next_for(0).jobs == [a[1]]  # not the last queued shard, but the one of its pipeline
    assert dispatcher.next_for(0).jobs == [b[2]] and dispatcher.next_for(1).jobs == [b[0]]
    assert dispatcher.next_for(0).jobs == [b[1]] and dispatcher.next_for(0) is None and dispatcher.queued == 0


def test_two_workers_render_every_job_once_loading_each_pipeline_once_per_worker(tiny_svd, tmp_path, fresh_pipeline_cache):
    manifest = two_models(tmp_path, tiny_svd)
    result = videosweep("run", manifest, "--out", tmp_path / "out", "--device", "cpu", "--workers", 2)
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(tmp_path / "out" / "results")
    jobs = load_manifest(manifest, "cpu").jobs
    assert sorted(table["job_id"]) == sorted(job.job_id for job in jobs)  # every job, exactly once
    assert (table["status"] == "ok").all()
    loads = table[~table["cache_hit"]].groupby(["worker", "model"]).size()
    assert (loads == 1).all(), loads.to_dict()  # a pipeline loads once per worker that renders it
    assert table["worker"].nunique() == 2
    assert table["worker"].str.split(":").str[1].astype(int).ne(os.getpid()).all()
    assert not fresh_pipeline_cache.loaded, "the main process holds no pipeline"
    assert (table["queued_at"] <= table["started_at"]).all()


def test_a_killed_worker_leaves_a_complete_results_table(tiny_svd, tmp_path):
    manifest = two_models(tmp_path, tiny_svd, seeds=6, frames=8)
    out = tmp_path / "out"
    outcome = {}

    def run():
        outcome["result"] = videosweep("run", manifest, "--out", out, "--device", "cpu", "--workers", 2)

    runner = threading.Thread(target=run)
    runner.start()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not list((out / "results").glob("part-*.parquet")):
        time.sleep(0.2)
    victim = int(pd.read_parquet(out / "results")["worker"].iloc[0].split(":")[1])
    os.kill(victim, signal.SIGKILL)  # mid-run: it has more shards queued
    runner.join(timeout=600)

    assert outcome["result"].exit_code == 0, outcome["result"].output
    table = pd.read_parquet(out / "results")
    assert sorted(table["job_id"]) == sorted(job.job_id for job in load_manifest(manifest, "cpu").jobs)
    assert (table["status"] == "ok").all()
    assert victim in set(table["worker"].str.split(":").str[1].astype(int))
    assert table["worker"].nunique() >= 2


@pytest.fixture
def dask_cluster(tmp_path):
    """A scheduler and two one-slot workers on loopback, as a user's existing cluster would be."""
    share_prefect_api()  # the workers below inherit this run's Prefect API
    scheduler_file = tmp_path / "scheduler.json"
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
             "--no-dashboard", "--scheduler-file", str(scheduler_file)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
    ]
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        for _ in range(2):
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "distributed.cli.dask_worker", "--scheduler-file", str(scheduler_file),
                     "--nthreads", "1", "--resources", "GPU=1", "--no-dashboard", "--host", "127.0.0.1"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )
            )
        from distributed import Client

        with Client(scheduler_file=str(scheduler_file), timeout=60) as client:
            client.wait_for_workers(2, timeout=120)
            yield client.scheduler.address
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            process.wait(timeout=30)


def test_dask_address_runs_on_an_existing_cluster(tiny_svd, tmp_path, dask_cluster):
    manifest = two_models(tmp_path, tiny_svd, seeds=2)
    out = tmp_path / "out"
    result = videosweep("run", manifest, "--out", out, "--device", "cpu", "--dask-address", dask_cluster, "--batch", 2)
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(out / "results")
    assert len(table) == 8 and (table["status"] == "ok").all()
    assert table["worker"].nunique() == 2
    # --batch reaches the workers: a shard's two seeds of one row share a call
    assert table["batch_size"].max() == 2 and table["batch_error"].isna().all()


def test_plan_command_shows_shards_costs_and_loads(tiny_svd, tmp_path):
    result = videosweep("plan", two_models(tmp_path, tiny_svd), "--workers", 2, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "16 of 16 jobs to render" in result.output
    assert "pipeline loads: 2 planned, 8 in manifest order" in result.output
    assert "worker 0: 8 jobs" in result.output and "worker 1: 8 jobs" in result.output


def test_a_pipeline_shared_by_two_levels_is_rendered_across_the_join(tmp_path):
    """Level 0 ends, and level 1 starts, with the pipeline both use: no reload between them."""
    from .test_mixed import MIXED
    from .conftest import make_video

    (tmp_path / "mixed.yaml").write_text(MIXED)
    make_video(tmp_path / "clip.mp4", frames=4, height=32, width=48)
    plan = make_plan(load_manifest(tmp_path / "mixed.yaml", "cpu").jobs, 1)
    levels = plan.levels
    assert len(levels) == 2
    assert levels[0][-1].jobs[0].model == levels[1][0].jobs[0].model == "tiny-video-to-video-sd"
    assert plan.loads == 7  # seven pipelines, each loaded once: video-to-video-sd serves both levels
