"""What must not lose a night: out of memory, a hung job, a full disk, two runs on one root, a killed run."""

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import torch
from typer.testing import CliRunner

from flows.cli import app
from tasks.manifest import load_manifest
from tasks.memory import ladder
from tasks.models import svd
from tasks.outroot import claim
from tasks.render import RunContext, render_job

from .conftest import REPO, ROCKET


def videosweep(*args):
    return CliRunner().invoke(app, [str(arg) for arg in args], catch_exceptions=False)


def small(folder: Path, seeds: int = 2, frames: int = 2) -> Path:
    (folder / "m.yaml").write_text(
        f"name: night\ndefaults: {{model: tiny-svd, image: {ROCKET}, height: 32, width: 48, num_frames: {frames}, "
        f"num_inference_steps: 1}}\nseeds: {{from: 1, count: {seeds}}}\n"
    )
    return folder / "m.yaml"


def test_the_ladder_on_a_cpu_skips_gpu_rungs_and_rungs_that_change_nothing(tiny_svd, tmp_path):
    job = load_manifest(small(tmp_path), "cpu").jobs[0]
    cpu = [(name, step.options, step.params.get("decode_chunk_size")) for name, step in ladder(job, "cpu")]
    assert [name for name, _, _ in cpu] == ["asked", "forward-chunking", "small-decode-chunks", "vae-tiling"]
    assert cpu[-1][1] == {"forward_chunking": 1, "vae_slicing": True, "vae_tiling": True} and cpu[-1][2] == 2
    gpu = [name for name, _ in ladder(job, "cuda")]
    assert gpu[1] == "model-offload" and gpu[-1] == "sequential-offload"
    assert all(step.job_id == job.job_id for _, step in ladder(job, "cuda")), "a fallback keeps the job's id"


def test_an_out_of_memory_job_steps_down_the_ladder_and_the_cache_stays_usable(tiny_svd, tmp_path, monkeypatch):
    real_render, calls = svd.render, []

    def out_of_memory_twice(pipe, params, generator, device):
        calls.append(params.decode_chunk_size)
        if len(calls) <= 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (injected)")
        return real_render(pipe, params, generator, device)

    monkeypatch.setattr(svd, "render", out_of_memory_twice)
    manifest = load_manifest(small(tmp_path), "cpu")
    run = RunContext.new(tmp_path / "out", "cpu", manifest)
    first, second = (render_job(job, run) for job in manifest.jobs)
    assert first["status"] == "ok" and first["memory_rung"] == "small-decode-chunks"
    assert calls[:3] == [None, None, 2]
    fallbacks = json.loads(first["memory_fallbacks"])
    assert [entry.split(":")[0] for entry in fallbacks] == ["asked", "forward-chunking"]
    assert all("OutOfMemoryError" in entry for entry in fallbacks)
    # the next job runs as asked, on the pipeline the cache still holds
    assert second["status"] == "ok" and second["memory_rung"] == "asked" and second["memory_fallbacks"] is None
    assert second["cache_hit"]
    table = pd.read_parquet(tmp_path / "out" / "results")
    assert set(table["memory_rung"]) == {"small-decode-chunks", "asked"}


def test_a_job_out_of_memory_on_every_rung_fails_alone(tiny_svd, tmp_path, monkeypatch):
    def always_out_of_memory(pipe, params, generator, device):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 99 GB (injected)")

    monkeypatch.setattr(svd, "render", always_out_of_memory)
    manifest = load_manifest(small(tmp_path, seeds=1), "cpu")
    record = render_job(manifest.jobs[0], RunContext.new(tmp_path / "out", "cpu", manifest))
    assert record["status"] == "failed" and record["error_type"] == "OutOfMemory"
    # SVD's temporal VAE has neither slicing nor tiling: that rung would change nothing, and is not run
    tried = [entry.split(":")[0] for entry in json.loads(record["memory_fallbacks"])]
    assert tried == ["asked", "forward-chunking", "small-decode-chunks"] and "(3 tried)" in record["error"]


def test_a_hung_job_is_cancelled_and_the_next_one_renders(tiny_svd, tmp_path, monkeypatch):
    real_render = svd.render

    def hangs_for_seed_1(pipe, params, generator, device):
        if generator.initial_seed() == 1:
            while True:  # stuck: no model part runs any more
                time.sleep(0.05)
        return real_render(pipe, params, generator, device)

    monkeypatch.setattr(svd, "render", hangs_for_seed_1)
    manifest = load_manifest(small(tmp_path), "cpu")
    run = RunContext.new(tmp_path / "out", "cpu", manifest, hang_timeout_s=1.5)
    started = time.monotonic()
    hung, fine = (render_job(job, run) for job in manifest.jobs)
    assert hung["status"] == "failed" and hung["error_type"] == "JobHung"
    assert "no progress for 1.5 s" in hung["error"]
    assert fine["status"] == "ok"
    assert time.monotonic() - started < 60


def test_a_job_making_progress_is_not_cancelled(tiny_svd, tmp_path, monkeypatch):
    real_render = svd.render

    def slow_but_alive(pipe, params, generator, device):
        for _ in range(6):  # 3 s in all, but a model part runs every 0.5 s
            time.sleep(0.5)
            pipe.vae.decoder.conv_out(torch.zeros(1, pipe.vae.decoder.conv_out.in_channels, 4, 4))
        return real_render(pipe, params, generator, device)

    monkeypatch.setattr(svd, "render", slow_but_alive)
    manifest = load_manifest(small(tmp_path, seeds=1), "cpu")
    record = render_job(manifest.jobs[0], RunContext.new(tmp_path / "out", "cpu", manifest, hang_timeout_s=1.5))
    assert record["status"] == "ok", record["error"]


def test_a_run_that_would_not_fit_on_the_disk_does_not_start(tiny_svd, tmp_path, monkeypatch):
    import shutil

    from tasks import outroot

    monkeypatch.setattr(outroot.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 10**6, 10**6))
    result = videosweep("run", small(tmp_path), "--out", tmp_path / "out", "--device", "cpu")
    assert result.exit_code == 2
    assert "0.00 GiB free" in result.output and "free some space or choose another --out" in result.output
    assert not list((tmp_path / "out").glob("results/*.parquet")) and not (tmp_path / "out" / "videos").exists()


def test_a_disk_that_fills_mid_run_stops_it_cleanly(tiny_svd, tmp_path, monkeypatch):
    from tasks import render

    real_write, writes = render.write_mp4, []

    def fills_on_the_third(*args, **kwargs):
        writes.append(1)
        if len(writes) >= 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(*args, **kwargs)

    monkeypatch.setattr(render, "write_mp4", fills_on_the_third)
    out = tmp_path / "out"
    result = videosweep("run", small(tmp_path, seeds=5), "--out", out, "--device", "cpu")
    assert result.exit_code == 1
    assert "the disk of" in result.output and "run the same command again" in result.output
    table = pd.read_parquet(out / "results")
    # the job rendering while the third was exported may still be tried; none after it
    assert len(writes) in (3, 4) and len(table) == len(writes)
    assert (table["status"] == "ok").sum() == 2 and set(table["error_type"].dropna()) == {"DiskFull"}

    monkeypatch.setattr(render, "write_mp4", real_write)
    again = videosweep("run", small(tmp_path, seeds=5), "--out", out, "--device", "cpu")
    assert again.exit_code == 0 and "3 ok, 0 failed, 2 skipped" in again.output


def test_a_second_run_on_a_held_root_refuses_naming_the_first(tiny_svd, tmp_path):
    out = tmp_path / "out"
    with claim(out, "20261127T000000-abcdef", "other-manifest"):
        result = videosweep("run", small(tmp_path), "--out", out, "--device", "cpu")
    assert result.exit_code == 2
    assert "20261127T000000-abcdef" in result.output and "other-manifest" in result.output
    assert f"process {os.getpid()}" in result.output and "--out" in result.output
    assert not (out / "results").exists()
    # released: the same command now runs
    assert videosweep("run", small(tmp_path), "--out", out, "--device", "cpu").exit_code == 0


def test_retry_failed_renders_only_the_failed_jobs(tiny_svd, tmp_path, monkeypatch):
    real_render = svd.render

    def broken_for_seed_2(pipe, params, generator, device):
        if generator.initial_seed() == 2:
            raise RuntimeError("deliberately broken")
        return real_render(pipe, params, generator, device)

    out = tmp_path / "out"
    manifest = small(tmp_path, seeds=2)
    monkeypatch.setattr(svd, "render", broken_for_seed_2)
    assert videosweep("run", manifest, "--out", out, "--device", "cpu").exit_code == 1
    monkeypatch.setattr(svd, "render", real_render)
    bigger = small(tmp_path, seeds=3)  # a third job, never tried: --retry-failed leaves it alone
    result = videosweep("run", bigger, "--out", out, "--device", "cpu", "--retry-failed")
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(out / "results")
    retried = table[table["attempt"] == 2]
    assert list(retried["seed"]) == [2] and (retried["status"] == "ok").all()
    assert 3 not in set(table["seed"])


def test_a_killed_run_leaves_no_process_behind_once_it_is_run_again(tiny_svd, tmp_path):
    manifest = small(tmp_path, seeds=10, frames=8)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "flows.cli", "run", str(manifest), "--out", str(out), "--device", "cpu", "--workers", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    children: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not list(out.glob("results/part-*.parquet")):
            time.sleep(0.2)
        assert list(out.glob("results/part-*.parquet")), "the run rendered nothing in 5 minutes"
        children = psutil.Process(run.pid).children(recursive=True)
        listed = json.loads((out / ".videosweep" / "processes.json").read_text())["processes"]
        assert len(children) >= 2 and len(listed) >= 2, "a 2-worker run has worker processes, and lists them"
        os.kill(run.pid, signal.SIGKILL)
        run.wait()

        again = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        assert again.returncode == 0, again.stderr[-3000:]
        left = [child.pid for child in children if child.is_running() and child.status() != psutil.STATUS_ZOMBIE]
        assert not left, f"processes of the killed run still running: {left}"
        table = pd.read_parquet(out / "results")
        ok = table[table["status"] == "ok"]
        assert sorted(ok["job_id"].unique()) == sorted(job.job_id for job in load_manifest(manifest, "cpu").jobs)
    finally:  # whatever happened, nothing of the killed run outlives the test (and nothing else is touched)
        for process in [psutil.Process(run.pid), *children] if run.poll() is None else children:
            try:
                process.kill()
            except psutil.Error:
                pass


def test_claim_writes_its_holder_and_cleans_up(tmp_path):
    out = tmp_path / "root"
    with claim(out, "run-1", "m", track_every=0.1):
        holder = json.loads((out / ".videosweep" / "lock").read_text())
        assert holder["run_id"] == "run-1" and holder["pid"] == os.getpid()
        deadline = time.monotonic() + 5
        while not (out / ".videosweep" / "processes.json").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert json.loads((out / ".videosweep" / "processes.json").read_text())["owner"]["pid"] == os.getpid()
    assert not (out / ".videosweep" / "processes.json").exists()
    assert (out / ".videosweep" / "lock").read_text() == ""
