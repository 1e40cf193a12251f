"""Queued runs: a frozen manifest copy, --at, progress counts; then a real Prefect server, a worker,
submit / status / cancel end to end (one server for the module, started and stopped here)."""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import psutil
import pytest
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterParentFlowRunId,
)
from typer.testing import CliRunner

from videosweep.flows.cli import app
from videosweep.flows.queue import api_client, submitted_runs
from videosweep.flows.render import artifact_key
from videosweep.tasks.manifest import load_manifest
from videosweep.tasks.models import file_sha256
from videosweep.tasks.results import read_results, write_record
from videosweep.tasks.submission import freeze_manifest, progress_of, queued_run_name, start_time

REPO = Path(__file__).resolve().parent.parent

TINY = """name: {name}
defaults:
  model: tiny-svd
  image: inputs/rocket.png   # relative to this file
  height: 32
  width: 32
  num_frames: 4
  num_inference_steps: 2
seeds: {seeds}
"""


def tiny_manifest(folder: Path, name: str, seeds: list[int]) -> Path:
    """A narrowed demo manifest in ``folder`` with its input image beside it, as users keep them."""
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "inputs").exists():
        shutil.copytree(REPO / "manifests" / "inputs", folder / "inputs")
    path = folder / f"{name}.yaml"
    path.write_text(TINY.format(name=name, seeds=seeds))
    return path


def videosweep(*args):
    return CliRunner().invoke(app, [str(arg) for arg in args], catch_exceptions=False)


# -- without a server ----------------------------------------------------------------------------


def test_frozen_copy_finds_the_inputs_and_ignores_later_edits(tiny_svd, tmp_path):
    manifest = tiny_manifest(tmp_path / "mine", "night", [1, 2])
    out = tmp_path / "out"
    copy = freeze_manifest(manifest, out)
    assert copy.parent.parent == out / "submissions" and copy.name == "night.yaml"
    assert copy.parent.name == file_sha256(copy)[:16]
    assert str((tmp_path / "mine" / "inputs" / "rocket.png").resolve()) in copy.read_text()
    original_ids = [job.job_id for job in load_manifest(manifest, "cpu").jobs]

    manifest.write_text(manifest.read_text().replace("seeds: [1, 2]", "seeds: [7]"))
    moved = tmp_path / "elsewhere" / "night.yaml"
    moved.parent.mkdir()
    shutil.copy(copy, moved)  # the copy no longer depends on its own folder
    table = load_manifest(moved, "cpu")
    assert table.name == "night" and [job.job_id for job in table.jobs] == original_ids
    assert freeze_manifest(manifest, out) != copy  # an edited manifest is a new submission


def test_frozen_copy_of_a_file_without_relative_paths_is_the_file(tiny_svd, tmp_path):
    manifest = tiny_manifest(tmp_path, "plain", [3])
    manifest.write_text(manifest.read_text().replace("inputs/rocket.png", str(tmp_path / "inputs" / "rocket.png")))
    copy = freeze_manifest(manifest, tmp_path / "out")
    assert copy.read_bytes() == manifest.read_bytes()  # comments kept
    assert freeze_manifest(manifest, tmp_path / "out") == copy


def test_frozen_copy_of_a_csv_manifest(tiny_svd, tmp_path):
    shutil.copytree(REPO / "manifests" / "inputs", tmp_path / "inputs")
    manifest = tmp_path / "table.csv"
    manifest.write_text("model,image,height,width,num_frames,num_inference_steps,seed\n"
                        "tiny-svd,inputs/rocket.png,32,32,4,2,5\n")
    copy = freeze_manifest(manifest, tmp_path / "out")
    frame = pd.read_csv(copy)
    assert frame.loc[0, "image"] == str((tmp_path / "inputs" / "rocket.png").resolve())
    assert frame.loc[0, "model"] == "tiny-svd"
    ids = [job.job_id for job in load_manifest(manifest, "cpu").jobs]
    assert [job.job_id for job in load_manifest(copy, "cpu").jobs] == ids


def test_at_is_the_next_such_time_or_a_date():
    now = datetime(2026, 3, 1, 21, 30).astimezone()
    assert start_time("22:00", now) == now.replace(hour=22, minute=0)
    assert start_time("7:05", now) == (now + timedelta(days=1)).replace(hour=7, minute=5)
    assert start_time("2026-03-04T01:00", now) == datetime(2026, 3, 4, 1, 0).astimezone()
    for bad in ("25:00", "tonight"):
        with pytest.raises(ValueError, match="HH:MM"):
            start_time(bad, now)


def test_progress_counts_the_manifest_jobs_and_estimates_the_rest(tmp_path):
    (tmp_path / "videos").mkdir()
    start = datetime(2026, 3, 1, 22, 0, tzinfo=timezone.utc)

    def record(job_id, status, minutes, total_s=None, sha="abc"):
        video = f"videos/{job_id}.mp4" if status == "ok" else None
        if video:
            (tmp_path / video).write_bytes(b"mp4")
        finished = start + timedelta(minutes=minutes)
        write_record(tmp_path, {"job_id": job_id, "attempt": 1, "status": status, "manifest_sha256": sha,
                                "video_path": video, "total_s": total_s, "finished_at": finished})

    record("a", "ok", -60, 4.0)  # an earlier run's: done, skipped by this one
    record("b", "failed", -59)  # failed before this run: to do again, so waiting
    record("c", "ok", 1, 6.0)
    record("d", "failed", 2)
    record("e", "ok", 3, 8.0, sha="other")  # another manifest's job in the same root
    progress = progress_of(tmp_path, "abc", total=6, since=start, running=1, slots=1)
    assert (progress.ok, progress.failed, progress.running, progress.waiting) == (2, 1, 1, 2)
    assert progress.seconds_per_job == 5.0 and progress.eta_s == 15.0
    assert progress.format() == "jobs: 2 ok, 1 failed, 1 running, 2 waiting, of 6; 5.0 s/job"
    assert progress_of(tmp_path / "none", "abc", total=3, since=None).eta_s is None


def test_a_queued_run_is_named_for_its_manifest_in_characters_a_person_can_type():
    assert re.fullmatch(r"night-[0-9a-f]{6}", queued_run_name("night"))
    assert queued_run_name("night") != queued_run_name("night")
    assert re.fullmatch(r"my-sweep_v2.1-[0-9a-f]{6}", queued_run_name("my sweep_v2.1 🚀"))
    assert re.fullmatch(r"b-[0-9a-f]{6}", queued_run_name("\x1b[31m🚀 <b>"))  # the escape sequence is gone whole
    assert re.fullmatch(r"run-[0-9a-f]{6}", queued_run_name("🚀"))
    assert re.fullmatch(r"صاروخ-x-[0-9a-f]{6}", queued_run_name("\u202eصاروخ x\n"))  # no bidi override
    assert len(queued_run_name("a" * 500)) == 40 + 7


def test_queue_commands_refuse_to_run_without_a_server(tmp_path):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    manifest = tiny_manifest(tmp_path, "unserved", [1])
    for command in (["status"], ["submit", manifest, "--out", tmp_path / "out"]):
        with temporary_settings(restore_defaults={PREFECT_API_URL}):  # an ephemeral API would die with the command
            started = time.perf_counter()
            result = videosweep(*command)
            seconds = time.perf_counter() - started
        assert result.exit_code == 2 and "no Prefect server" in result.output and "PREFECT_API_URL" in result.output
        assert seconds < 5, (command, seconds)  # refused before the manifest is read or anything starts


# -- on a real Prefect server --------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start(command: list[str], env: dict, log: Path) -> subprocess.Popen:
    """A process in a session of its own, so that stopping it stops everything it started."""
    with open(log, "wb") as handle:
        return subprocess.Popen(
            command, env=env, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )


def _stop(process: subprocess.Popen) -> None:
    """End the process group (TERM, then KILL), and any descendant that left it."""
    try:
        family = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        family = []
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            continue
    for child in family:
        if child.is_running():
            child.kill()
    psutil.wait_procs(family, timeout=10)
    assert not [child for child in family if child.is_running() and child.status() != psutil.STATUS_ZOMBIE]


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_svd):
    """A `prefect server start` on a free loopback port with its own PREFECT_HOME: (api url, env for clients)."""
    home = tmp_path_factory.mktemp("prefect-server")
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_API_URL": url, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    process = _start(command, env, home / "server.log")
    try:
        import httpx

        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, (home / "server.log").read_text()[-3000:]
            time.sleep(0.5)
        yield url, env
    finally:
        _stop(process)


@contextmanager
def worker(env: dict, log: Path):
    process = _start([sys.executable, "-m", "videosweep.flows.cli", "worker"], {**env, "PREFECT_WORKER_QUERY_SECONDS": "1"}, log)
    try:
        yield process
    finally:
        _stop(process)


@contextmanager
def on(url: str):
    """This process's CLI and client talking to the test server."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: url}):
        yield


def runs_by_out(url: str) -> dict[str, object]:
    with on(url), api_client() as client:
        return {run.parameters["out"]: run for run in submitted_runs(client)}


def queued_name(result) -> str:
    assert result.exit_code == 0, result.output
    return result.output.split()[1].rstrip(":")  # "queued <name>: ..."


def test_submit_at_a_time_then_cancel(server, tmp_path):
    url, _ = server
    manifest = tiny_manifest(tmp_path, "later", [1])
    tomorrow = (datetime.now() + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    with on(url):
        out = tmp_path / "out"
        result = videosweep("submit", manifest, "--at", tomorrow, "--priority", 5, "--out", out, "--device", "cpu")
        name = queued_name(result)
        assert re.fullmatch(r"later-[0-9a-f]{6}", name), name  # the manifest's name: one a person can type
        assert "later, 1 jobs, priority 5" in result.output and tomorrow.replace("T", " ") in result.output
        listing = videosweep("status").output
        line = next(line for line in listing.splitlines() if line.startswith(name))
        assert "Scheduled" in line and "priority-5" in line and str(out) in line and " later " in line

        # the manifest's name names its one run; once submitted twice, it names neither, and says which
        assert f"{name} (" in videosweep("status", "later").output
        again = queued_name(videosweep("submit", manifest, "--at", tomorrow, "--out", tmp_path / "out-2"))
        both = videosweep("status", "later")
        assert both.exit_code == 2 and "manifest name 'later' matches 2 runs" in both.output
        assert name in both.output and again in both.output and "give the run's name or id" in both.output
        with api_client() as client:
            again_id = next(str(run.id) for run in submitted_runs(client) if run.name == again)
        assert videosweep("cancel", again_id[:8]).output.strip() == f"{again}: Cancelled"  # or a prefix of its id

        assert videosweep("cancel", name).output.strip() == f"{name}: Cancelled"
        shown = videosweep("status", name)
        assert f"{name} (" in shown.output and "): Cancelled" in shown.output
        assert "jobs: 0 ok, 0 failed, 0 running, 1 waiting, of 1" in shown.output
        again = videosweep("cancel", name)
        assert again.exit_code == 2 and "nothing to cancel" in again.output
        unknown = videosweep("status", "no-such-run")
        assert unknown.exit_code == 2 and "no submitted run named 'no-such-run'" in unknown.output


def test_two_submissions_run_one_after_another_by_priority(server, tmp_path):
    """The first submitted waits behind a more urgent second; both render into their own roots."""
    url, env = server
    first = tiny_manifest(tmp_path / "a", "first", [1, 2])
    second = tiny_manifest(tmp_path / "b", "second", [3])
    out_first, out_second = tmp_path / "out-first", tmp_path / "out-second"
    with on(url):
        name_first = queued_name(videosweep("submit", first, "--out", out_first, "--device", "cpu"))
        name_second = queued_name(videosweep("submit", second, "--out", out_second, "--device", "cpu", "--priority", 1))
    first.write_text(first.read_text().replace("[1, 2]", "[1, 2, 3, 4]"))  # too late: the copy is queued

    with worker(env, tmp_path / "worker.log"):
        deadline = time.monotonic() + 150
        while runs_by_out(url)[str(out_second)].state_name != "Running":
            assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()[-3000:]
            time.sleep(0.5)
        with on(url):
            during = videosweep("status").output
            one = videosweep("status", name_second).output
        while not all(run.state.is_final() for run in runs_by_out(url).values()):
            assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()[-3000:]
            time.sleep(1)
        with on(url):
            after = videosweep("status", "first").output  # its manifest's name: one run has it

    lines = [line.split()[0] for line in during.splitlines()[2:]]
    assert lines.count(name_second) == 1  # the running one's render subflow is not a run of its own
    lines = {line.split()[0]: line for line in during.splitlines()[2:]}
    assert lines[name_second].split()[1] == "Running"
    # waiting: Prefect's Scheduled, or Late once its start time is 15 s past (a slow machine)
    assert lines[name_first].split()[1] in ("Scheduled", "Late")
    assert "): Running" in one and "of 1" in one and "ETA:" in one

    runs = runs_by_out(url)
    done_first, done_second = runs[str(out_first)], runs[str(out_second)]
    assert done_first.state_name == done_second.state_name == "Completed"
    assert done_second.end_time <= done_first.start_time  # one after another, the urgent one first
    assert f"{name_first} ({done_first.id}): Completed" in after
    assert "jobs: 2 ok, 0 failed, 0 running, 0 waiting, of 2" in after
    assert "ETA" not in after
    with on(url), api_client() as client:  # the run's summary, for the Prefect UI
        mine = ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[done_first.id]))
        (summary,) = client.read_artifacts(artifact_filter=mine)
        children = FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[done_first.id]))
        (render,) = client.read_flow_runs(flow_run_filter=children)
    assert render.name == done_first.name == name_first  # one name in the Prefect UI too
    assert summary.key == f"{artifact_key(out_first.name)}-run" and "2 jobs: 2 ok, 0 failed" in summary.data
    for out, jobs in ((out_first, 2), (out_second, 1)):
        records = read_results(out)
        copy = next((out / "submissions").glob("*/*.yaml"))
        assert len(records) == jobs and (records["status"] == "ok").all()
        assert (records["manifest_path"] == str(copy)).all() and (records["manifest_sha256"] == file_sha256(copy)).all()
        assert len(list((out / "videos").glob("*.mp4"))) == jobs
