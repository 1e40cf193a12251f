"""What must not lose a night: out of memory, a hung job, a full disk, two runs on one root, a killed run."""

import errno
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import psutil
import pytest
import torch
from typer.testing import CliRunner

from videosweep.flows.cli import app
from videosweep.tasks.manifest import load_manifest
from videosweep.tasks.memory import ladder
from videosweep.tasks.models import svd
from videosweep.tasks.layout import STATE_DIR
from videosweep.tasks.outroot import NoRoom, claim
from videosweep.tasks.render import RunContext, render_job

from .conftest import REPO, ROCKET, use_render


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
    chunking = {"chunk_size": 1, "dim": 1}  # the lightest: one token at a time
    assert cpu[-1][1] == {"forward_chunking": chunking, "vae_slicing": True, "vae_tiling": True} and cpu[-1][2] == 2
    gpu = [name for name, _ in ladder(job, "cuda")]
    assert gpu[1] == "model-offload" and gpu[-1] == "sequential-offload"
    assert all(step.job_id == job.job_id for _, step in ladder(job, "cuda")), "a fallback keeps the job's id"


def test_an_out_of_memory_job_steps_down_the_ladder_and_the_cache_stays_usable(tiny_svd, tmp_path, monkeypatch):
    real_render, calls = svd.FAMILY.render_one, []

    def out_of_memory_twice(pipe, params, generator, device):
        calls.append(params.decode_chunk_size)
        if len(calls) <= 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (injected)")
        return real_render(pipe, params, generator, device)

    use_render(monkeypatch, svd, out_of_memory_twice)
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

    use_render(monkeypatch, svd, always_out_of_memory)
    manifest = load_manifest(small(tmp_path, seeds=1), "cpu")
    record = render_job(manifest.jobs[0], RunContext.new(tmp_path / "out", "cpu", manifest))
    assert record["status"] == "failed" and record["error_type"] == "OutOfMemory"
    # SVD's temporal VAE has neither slicing nor tiling: that rung would change nothing, and is not run
    tried = [entry.split(":")[0] for entry in json.loads(record["memory_fallbacks"])]
    assert tried == ["asked", "forward-chunking", "small-decode-chunks"] and "(3 tried)" in record["error"]


def test_a_hung_job_is_cancelled_and_the_next_one_renders(tiny_svd, tmp_path, monkeypatch):
    real_render = svd.FAMILY.render_one

    def hangs_for_seed_1(pipe, params, generator, device):
        if generator.initial_seed() == 1:
            while True:  # stuck: no model part runs any more
                time.sleep(0.05)
        return real_render(pipe, params, generator, device)

    use_render(monkeypatch, svd, hangs_for_seed_1)
    manifest = load_manifest(small(tmp_path), "cpu")
    run = RunContext.new(tmp_path / "out", "cpu", manifest, hang_timeout_s=1.5)
    started = time.monotonic()
    hung, fine = (render_job(job, run) for job in manifest.jobs)
    assert hung["status"] == "failed" and hung["error_type"] == "JobHung"
    assert "no progress for 1.5 s" in hung["error"]
    assert fine["status"] == "ok"
    assert time.monotonic() - started < 60


def test_a_job_making_progress_is_not_cancelled(tiny_svd, tmp_path, monkeypatch):
    real_render = svd.FAMILY.render_one

    def slow_but_alive(pipe, params, generator, device):
        for _ in range(6):  # 3 s in all, but a model part runs every 0.5 s
            time.sleep(0.5)
            pipe.vae.decoder.conv_out(torch.zeros(1, pipe.vae.decoder.conv_out.in_channels, 4, 4))
        return real_render(pipe, params, generator, device)

    use_render(monkeypatch, svd, slow_but_alive)
    manifest = load_manifest(small(tmp_path, seeds=1), "cpu")
    record = render_job(manifest.jobs[0], RunContext.new(tmp_path / "out", "cpu", manifest, hang_timeout_s=1.5))
    assert record["status"] == "ok", record["error"]


def test_the_watchdog_hooks_one_forward_pass_per_look_not_every_one():
    """A global hook on every module call cost 8 % of a tiny video: it is armed again at each look of the watcher."""
    from torch.nn.modules import module

    from videosweep.tasks.watchdog import watchdog

    layer = torch.nn.Linear(2, 2)
    before = len(module._global_forward_pre_hooks)
    with watchdog(60, poll=0.05):
        assert len(module._global_forward_pre_hooks) == before + 1
        layer(torch.zeros(2))
        assert len(module._global_forward_pre_hooks) == before, "disarmed by the pass it saw"
        deadline = time.monotonic() + 10
        while len(module._global_forward_pre_hooks) == before and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(module._global_forward_pre_hooks) == before + 1, "armed again at the watcher's next look"
    assert len(module._global_forward_pre_hooks) == before


def test_a_run_that_would_not_fit_on_the_disk_does_not_start(tiny_svd, tmp_path, monkeypatch):
    import shutil

    from videosweep.tasks import outroot

    monkeypatch.setattr(outroot.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 10**6, 10**6))
    result = videosweep("run", small(tmp_path), "--out", tmp_path / "out", "--device", "cpu")
    assert result.exit_code == 2
    assert "1.0 MiB free" in result.output and "free some space or choose another --out" in result.output
    assert "Traceback" not in result.output
    assert not list((tmp_path / "out").glob("results/*.parquet")) and not (tmp_path / "out" / "videos").exists()


def test_a_disk_that_fills_mid_run_stops_it_cleanly(tiny_svd, tmp_path, monkeypatch):
    from videosweep.tasks.render import export

    real_write, writes = export.write_mp4, []

    def fills_on_the_third(*args, **kwargs):
        writes.append(1)
        if len(writes) >= 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(*args, **kwargs)

    monkeypatch.setattr(export, "write_mp4", fills_on_the_third)
    out = tmp_path / "out"
    result = videosweep("run", small(tmp_path, seeds=5), "--out", out, "--device", "cpu")
    assert result.exit_code == 1
    assert "the disk of" in result.output and "run the same command again" in result.output
    table = pd.read_parquet(out / "results")
    # the job rendering while the third was exported may still be tried; none after it
    assert len(writes) in (3, 4) and len(table) == len(writes)
    assert (table["status"] == "ok").sum() == 2 and set(table["error_type"].dropna()) == {"DiskFull"}

    monkeypatch.setattr(export, "write_mp4", real_write)
    again = videosweep("run", small(tmp_path, seeds=5), "--out", out, "--device", "cpu")
    assert again.exit_code == 0 and "3 ok, 0 failed, 2 skipped" in again.output


@contextmanager
def small_disk(folder: Path, megabytes: int):
    """A tmpfs of ``megabytes`` at ``folder`` where this machine lets the tests mount one (root); else skip."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.decode().strip()}); the injected-ENOSPC tests cover it")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_a_root_on_a_full_disk_is_refused_in_one_line_and_taken_once_there_is_room(tmp_path):
    """The holder's bytes find no room: NoRoom says so, and letting go of the lock raises nothing over it
    (a buffered write that failed used to fail again at the release, an internal error instead of the message)."""
    with small_disk(tmp_path / "disk", 1) as disk:
        out = disk / "out"
        (out / STATE_DIR).mkdir(parents=True)
        filler = fill(disk)
        with pytest.raises(NoRoom, match="is full: free some space"):
            with claim(out, "first", "night"):
                pass
        filler.unlink()
        with claim(out, "second", "night"):
            assert json.loads((out / STATE_DIR / "lock").read_text())["run_id"] == "second"
        assert (out / STATE_DIR / "lock").read_text() == ""


def fill(disk: Path) -> Path:
    """Take every free byte of ``disk`` with one file; return it."""
    import shutil

    filler = disk / "filler"
    with open(filler, "wb") as handle:
        free = shutil.disk_usage(disk).free
        try:
            os.posix_fallocate(handle.fileno(), 0, free)
        except OSError:
            pass
        try:
            while True:
                handle.write(bytes(2**20))
                handle.flush()
        except OSError:
            pass
    return filler


def test_a_real_disk_that_fills_mid_run_leaves_every_video_whole(tiny_svd, tmp_path, monkeypatch):
    """A tmpfs as --out, filled after 2 videos: no broken mp4 under a final name, a DiskFull record, no traceback."""
    from videosweep.tasks.render import export
    from videosweep.tasks.files import SCRATCH
    from videosweep.tasks.video import check_mp4

    real_write, writes = export.write_mp4, []

    def fills_the_disk_before_the_third(*args, **kwargs):
        writes.append(1)
        if len(writes) == 3:
            fill(out)
        return real_write(*args, **kwargs)

    with small_disk(tmp_path / "disk", 300) as out:
        monkeypatch.setattr(export, "write_mp4", fills_the_disk_before_the_third)
        result = videosweep("run", small(tmp_path, seeds=5, frames=8), "--out", out, "--device", "cpu")
        assert result.exit_code == 1, result.output
        assert "Traceback" not in result.output and "is full" in result.output
        table = pd.read_parquet(out / "results")
        # the third is DiskFull; the one rendering meanwhile may still fit in the room its record freed
        assert list(table["status"][:3]) == ["ok", "ok", "failed"] and len(table) <= 4
        assert set(table["error_type"].dropna()) == {"DiskFull"}
        for video in (out / "videos").glob("*.mp4"):
            check_mp4(video)  # nothing that does not decode under a final name
        assert not [path for path in out.rglob(".*") if SCRATCH.match(path.name)]

        (out / "filler").unlink()
        monkeypatch.setattr(export, "write_mp4", real_write)
        manifest = small(tmp_path, seeds=5, frames=8)
        again = videosweep("run", manifest, "--out", out, "--device", "cpu")
        assert again.exit_code == 0, again.output
        one_ok_record_per_job(out, manifest)


def test_a_record_that_finds_the_disk_full_is_written_from_the_reserve(tiny_svd, tmp_path, monkeypatch):
    from videosweep.tasks.render import export

    real_write, calls = export.write_record, []

    def full_from_the_third_record(out_root, record):
        calls.append(record["job_id"])
        if len(calls) >= 3 and len(calls) != 4:  # the 4th is the retry from the reserve
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(out_root, record)

    monkeypatch.setattr(export, "write_record", full_from_the_third_record)
    out = tmp_path / "out"
    result = videosweep("run", small(tmp_path, seeds=5), "--out", out, "--device", "cpu")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "is full" in result.output and "run the same command again" in result.output
    table = pd.read_parquet(out / "results")
    assert list(table["status"]) == ["ok"] * 3, "the third record was written from the reserve"
    assert not (out / ".videosweep" / "reserve").exists()

    monkeypatch.setattr(export, "write_record", real_write)
    again = videosweep("run", small(tmp_path, seeds=5), "--out", out, "--device", "cpu")
    assert again.exit_code == 0 and "2 ok, 0 failed, 3 skipped" in again.output
    assert (out / ".videosweep" / "reserve").stat().st_size > 0, "the next run keeps a reserve again"


@contextmanager
def held_by_another_run(out: Path, run_id: str, manifest: str):
    """``out`` claimed by another thread, as another run holds it, for the duration of the block."""
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with claim(out, run_id, manifest):
            held.set()
            release.wait(60)

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(30)
    try:
        yield
    finally:
        release.set()
        holder.join()


def test_a_second_run_on_a_held_root_refuses_naming_the_first(tiny_svd, tmp_path):
    out = tmp_path / "out"
    with held_by_another_run(out, "20261127T000000-abcdef", "other-manifest"):
        result = videosweep("run", small(tmp_path), "--out", out, "--device", "cpu")
    assert result.exit_code == 2
    assert "20261127T000000-abcdef" in result.output and "other-manifest" in result.output
    assert f"process {os.getpid()}" in result.output and "--out" in result.output
    assert "Traceback" not in result.output and not (out / "results").exists()
    # released: the same command now runs
    assert videosweep("run", small(tmp_path), "--out", out, "--device", "cpu").exit_code == 0


def test_retry_failed_renders_only_the_failed_jobs(tiny_svd, tmp_path, monkeypatch):
    real_render = svd.FAMILY.render_one

    def broken_for_seed_2(pipe, params, generator, device):
        if generator.initial_seed() == 2:
            raise RuntimeError("deliberately broken")
        return real_render(pipe, params, generator, device)

    out = tmp_path / "out"
    manifest = small(tmp_path, seeds=2)
    use_render(monkeypatch, svd, broken_for_seed_2)
    assert videosweep("run", manifest, "--out", out, "--device", "cpu").exit_code == 1
    use_render(monkeypatch, svd, real_render)
    bigger = small(tmp_path, seeds=3)  # a third job, never tried: --retry-failed leaves it alone
    result = videosweep("run", bigger, "--out", out, "--device", "cpu", "--retry-failed")
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(out / "results")
    retried = table[table["attempt"] == 2]
    assert list(retried["seed"]) == [2] and (retried["status"] == "ok").all()
    assert 3 not in set(table["seed"])


def start_run(manifest: Path, out: Path, *extra: str) -> subprocess.Popen:
    """``videosweep run`` as a user starts it (the console entry point), in a process group of its own like a shell job."""
    command = [sys.executable, "-m", "videosweep.flows.cli", "run", str(manifest), "--out", str(out), "--device", "cpu", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )


def wait_for_records(run: subprocess.Popen, out: Path, count: int = 1) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and len(list(out.glob("results/part-*.parquet"))) < count and run.poll() is None:
        time.sleep(0.1)
    assert len(list(out.glob("results/part-*.parquet"))) >= count, "the run rendered nothing in 5 minutes"


def alive(processes: list[psutil.Process]) -> list[int]:
    running = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                running.append(process.pid)
        except psutil.Error:
            pass
    return running


def ended_within(processes: list[psutil.Process], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while alive(processes) and time.monotonic() < deadline:
        time.sleep(0.1)
    return alive(processes)


def one_ok_record_per_job(out: Path, manifest: Path) -> None:
    table = pd.read_parquet(out / "results")
    ok = table[table["status"] == "ok"]
    assert sorted(ok["job_id"]) == sorted(job.job_id for job in load_manifest(manifest, "cpu").jobs)
    assert not table.duplicated(["job_id", "attempt"]).any()


def test_a_killed_run_s_processes_end_with_it_and_the_same_command_resumes(tiny_svd, tmp_path):
    """SIGKILL of the run: its Prefect server and Dask workers end within seconds, with no later run needed."""
    manifest = small(tmp_path, seeds=8, frames=8)
    out = tmp_path / "out"
    run = start_run(manifest, out, "--workers", "2")
    children: list[psutil.Process] = []
    try:
        wait_for_records(run, out)
        children = psutil.Process(run.pid).children(recursive=True)
        assert len(children) >= 3, "a 2-worker run has a Prefect API server and worker processes"
        os.kill(run.pid, signal.SIGKILL)
        run.wait()
        assert ended_within(children, 10) == [], "processes of the killed run outlived it"

        again = start_run(manifest, out, "--workers", "2")
        _, errors = again.communicate(timeout=600)
        assert again.returncode == 0, errors[-3000:]
        one_ok_record_per_job(out, manifest)
        # what the cluster logs (its scheduler here, its workers in their processes) is in the log file, not on stderr
        assert "distributed" not in errors, errors[-3000:]
        [log_file] = Path(os.environ["VIDEOSWEEP_HOME"], "logs").glob(f"videosweep-*-{again.pid}.log")
        logged = log_file.read_text(encoding="utf-8")
        assert "INFO distributed.scheduler:" in logged and re.search(r"INFO distributed\.worker \[worker \d+\]", logged)
        assert "INFO videosweep.tasks.progress: starting 2 Dask workers…" in logged  # what the startup line said
    finally:  # whatever happened, nothing of the killed run outlives the test
        for process in children:
            try:
                process.kill()
            except psutil.Error:
                pass


def test_ctrl_c_stops_a_run_in_seconds_with_one_line_and_exit_130(tiny_svd, tmp_path):
    manifest = small(tmp_path, seeds=8, frames=8)
    out = tmp_path / "out"
    run = start_run(manifest, out, "--workers", "2")
    wait_for_records(run, out)
    children = psutil.Process(run.pid).children(recursive=True)
    interrupted = time.monotonic()
    os.killpg(run.pid, signal.SIGINT)  # as a terminal sends it: to the whole process group
    output, errors = run.communicate(timeout=60)
    took = time.monotonic() - interrupted
    assert run.returncode == 130, errors[-3000:]
    assert took < 30, f"Ctrl-C took {took:.0f} s to exit"
    assert "Traceback" not in errors and "interrupted: finished jobs are kept" in errors
    assert ended_within(children, 10) == []
    # what was recorded is whole; the same command renders the rest
    again = start_run(manifest, out)
    _, errors = again.communicate(timeout=600)
    assert again.returncode == 0, errors[-3000:]
    one_ok_record_per_job(out, manifest)


def test_the_next_run_ends_only_processes_that_carry_the_killed_run_s_mark(tiny_svd, tmp_path):
    """processes.json names a mark, not pids to trust: a process without the mark is never touched."""
    from videosweep.tasks.children import MARK

    out = tmp_path / "out"
    state = out / ".videosweep"
    state.mkdir(parents=True)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # the killed run's own process: gone
    stranger = subprocess.Popen(["sleep", "60"])  # someone else's program, listed in the file
    ours = subprocess.Popen(["sleep", "60"], env={**os.environ, MARK: "4242-abcdef"})  # what the killed run started
    try:
        listing = {"owner": {"pid": gone.pid, "create_time": 0.0}, "mark": "4242-abcdef",
                   "processes": [{"pid": stranger.pid, "create_time": psutil.Process(stranger.pid).create_time()}]}
        (state / "processes.json").write_text(json.dumps(listing))
        with claim(out, "run-2", "m"):
            ours.wait(timeout=10)  # ended at once, not after its 60 s (psutil reaped it: its code may read 0)
            assert stranger.poll() is None, "a process without the mark was ended"
    finally:
        stranger.kill()
        ours.kill()


def test_claim_writes_its_holder_and_mark_and_cleans_up(tmp_path):
    from videosweep.tasks.children import token

    out = tmp_path / "root"
    with claim(out, "run-1", "m"):
        holder = json.loads((out / ".videosweep" / "lock").read_text())
        assert holder["run_id"] == "run-1" and holder["pid"] == os.getpid()
        listing = json.loads((out / ".videosweep" / "processes.json").read_text())
        assert listing["owner"]["pid"] == os.getpid() and listing["mark"] == token() and token()
        with claim(out, "run-1", "m"):  # the same thread again (the command line, then its flow): no conflict
            pass
    assert not (out / ".videosweep" / "processes.json").exists()
    assert (out / ".videosweep" / "lock").read_text() == ""
