"""What a Prefect UI shows of a run, read back from Prefect's API: states, names, tags and run logs.

One demo run (8 jobs, tiny SVD, in this process) with seed 43 broken, through the CLI.
"""

import re
import shutil
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from videosweep.flows.cli import app
from videosweep.tasks.manifest import load_manifest
from videosweep.tasks.render.labels import NAME_LIMIT, index_ranges, job_run_name, shard_run_name
from videosweep.tasks.text import printable

from .conftest import REPO, use_render


@pytest.fixture(scope="module")
def broken_run(tmp_path_factory):
    """The demo with seed 43 failing: (manifest, output root, CLI result, flow run, its task runs, its logs)."""
    from videosweep.tasks.models import svd

    folder = tmp_path_factory.mktemp("ui")
    shutil.copytree(REPO / "manifests" / "inputs", folder / "inputs")
    manifest = Path(shutil.copy(REPO / "manifests" / "demo.yaml", folder / "demo.yaml"))
    out = folder / "out"
    real_render = svd.FAMILY.render_one

    def broken_for_seed_43(pipe, params, generator, device):
        if generator.initial_seed() == 43:
            raise RuntimeError("deliberately broken")
        return real_render(pipe, params, generator, device)

    with pytest.MonkeyPatch.context() as monkeypatch:
        use_render(monkeypatch, svd, broken_for_seed_43)
        result = CliRunner().invoke(app, ["run", str(manifest), "--out", str(out), "--device", "cpu"], catch_exceptions=False)
    flow_run, task_runs, logs = read_back(out)
    return manifest, out, result, flow_run, task_runs, logs


def read_back(out: Path, tasks: int = 9):
    """The flow run that rendered into ``out``, its task runs and its logs, from Prefect's API."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=30)  # run logs go to the API in batches, every 2 s: send what is queued
    with get_client(sync_client=True) as client:
        flow_runs = [run for run in client.read_flow_runs() if run.parameters.get("out") == str(out)]
        assert len(flow_runs) == 1, flow_runs
        [flow_run] = flow_runs
        # the API records task runs from their events, a moment after they end
        deadline = time.monotonic() + 60
        while True:
            task_runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id={"any_": [flow_run.id]}))
            if len(task_runs) >= tasks and all(run.state.is_final() for run in task_runs) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run.id])))
    return flow_run, task_runs, logs


def job_runs(task_runs):
    return [run for run in task_runs if run.name.startswith("job ")]


def test_the_cli_still_says_what_failed_and_exits_1(broken_run):
    _, out, result, *_ = broken_run
    assert result.exit_code == 1, result.output
    assert "4 ok, 4 failed" in result.output and "deliberately broken" in result.output
    assert len(list((out / "videos").glob("*.mp4"))) == 4 and (out / "report.html").is_file()


def test_a_failed_job_is_a_failed_task_run_and_fails_the_flow_run(broken_run):
    _, _, _, flow_run, task_runs, _ = broken_run
    assert flow_run.state.is_failed(), flow_run.state
    assert flow_run.state.message == "4 of 8 jobs failed"
    runs = job_runs(task_runs)
    assert len(runs) == 8  # one task run a job: nothing rendered twice
    for run in runs:
        seed = int(re.search(r"seed=(\d+)", run.name).group(1))
        if seed == 43:
            assert run.state.is_failed(), (run.name, run.state)
            assert "RuntimeError" in run.state.message and "deliberately broken" in run.state.message
        else:
            assert run.state.is_completed(), (run.name, run.state)
    assert sorted(re.search(r"seed=(\d+)", run.name).group(1) for run in runs) == ["42"] * 4 + ["43"] * 4
    [report] = [run for run in task_runs if run.name.startswith("grids-and-report")]
    assert report.state.is_completed()  # the grids and the report are still drawn


def test_task_runs_are_named_for_their_jobs_and_the_runs_tagged(broken_run):
    manifest, _, _, flow_run, task_runs, _ = broken_run
    jobs = load_manifest(manifest, "cpu").jobs
    expected = {f"job {job.index} (motion_bucket_id={job.coords['motion_bucket_id']}, "
                f"noise_aug_strength={job.coords['noise_aug_strength']}, seed={job.seed})" for job in jobs}
    assert {run.name for run in job_runs(task_runs)} == expected
    assert all(len(run.name) <= NAME_LIMIT for run in task_runs)
    assert {"demo", "tiny-svd"} <= set(flow_run.tags)
    for run in task_runs:
        assert {"demo", "tiny-svd"} <= set(run.tags), (run.name, run.tags)


def test_tagged_task_runs_do_not_ask_the_api_for_tag_limits_before_each_job(broken_run):
    """Prefect remembers 'no limit on these tags' for 5 s; its API's SQLite then answered 'locked' and each
    ask cost ~2 s (flows.dispatch.trust_no_tag_limits). If Prefect moves that memo, this says the fix is gone."""
    from prefect.concurrency import services

    from videosweep.flows.dispatch import NO_TAG_LIMITS_TTL_S

    *_, task_runs, _ = broken_run
    assert all(run.tags for run in task_runs)
    assert services._no_limits_cache.ttl == NO_TAG_LIMITS_TTL_S


def test_each_job_logs_its_start_and_end_to_its_task_run(broken_run):
    _, _, _, _, task_runs, logs = broken_run
    by_task = {}
    for log in logs:
        by_task.setdefault(log.task_run_id, []).append(log.message)
    for run in job_runs(task_runs):
        lines = by_task.get(run.id, [])
        index = run.name.split()[1]
        assert any(line.startswith(f"job {index} (") and " started: tiny-svd" in line for line in lines), lines
        if run.state.is_failed():
            assert any(" failed in " in line and "RuntimeError: deliberately broken" in line for line in lines), lines
        else:
            [end] = [line for line in lines if " ok in " in line]
            assert all(f"{step} " in end for step in ("load", "denoise", "decode", "export")), end
    assert all(log.level == 20 for log in logs if "started:" in log.message)  # INFO


def test_the_terminal_stays_quiet(broken_run):
    """INFO goes to the API only: the terminal shows the progress and the summary, no Prefect INFO line."""
    _, _, result, *_ = broken_run
    assert "| INFO" not in result.output and "started:" not in result.output
    assert "Finished in state" not in result.output.replace("Failed('4 of 8 jobs failed')", "")


QUIET_FLOW = """
import videosweep.flows  # the defaults: INFO to the API, WARNING and above on the terminal
from prefect import flow, get_run_logger, task

@task(task_run_name="a task")
def step():
    get_run_logger().info("task info line")

@flow
def quiet():
    get_run_logger().info("flow info line")
    step()
    get_run_logger().warning("flow warning line")

quiet()
"""


def test_the_terminal_shows_warnings_but_no_info_lines(tmp_path):
    """Prefect's console handler is at WARNING while the run loggers pass INFO (to the API): seen on a real stderr."""
    import os
    import subprocess
    import sys

    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_LOGGING")}
    env["PREFECT_HOME"] = str(tmp_path / "prefect")
    done = subprocess.run([sys.executable, "-c", QUIET_FLOW], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "flow warning line" in done.stderr
    assert "info line" not in done.stderr + done.stdout and "| INFO" not in done.stderr


def test_names_are_short_and_printable():
    assert index_ranges([3, 4, 5, 8, 10, 12, 11]) == "3-5, 8, 10-12"

    class FakeJob:
        def __init__(self, index, coords, model="svd-xt"):
            self.index, self.coords, self.model, self.seed = index, coords, model, coords.get("seed")

    assert shard_run_name(2, [FakeJob(i, {}) for i in range(3, 11)]) == "shard 2: jobs 3-10 (svd-xt)"
    long = FakeJob(3, {"prompt": "a\x1b[31m red\nfox " * 20, "seed": 2})
    name = job_run_name([long])
    assert len(name) == NAME_LIMIT and name == printable(name) and name.startswith("job 3 (prompt=a red ⏎ fox") and name.endswith("…)")
    assert job_run_name([FakeJob(3, {"m": 60, "seed": 1}), FakeJob(4, {"m": 60, "seed": 2})]) == "jobs 3-4 (m=60)"


def test_on_dask_a_shard_with_a_failed_job_is_a_failed_task_run(tiny_svd, tmp_path):
    """A shard whose job fails on a worker ends Failed with its records as data: they are kept, not rendered again."""
    import pandas as pd

    broken = tmp_path / "broken-svd"
    shutil.copytree(tiny_svd, broken)
    for weights in (broken / "unet").glob("*.safetensors"):
        weights.write_bytes(b"not weights")  # found, read, and refused on the worker
    manifest = tmp_path / "two.yaml"
    rocket = REPO / "manifests" / "inputs" / "rocket.png"
    manifest.write_text(
        f"name: two-ui\ndefaults: {{image: {rocket}, height: 32, width: 48, num_frames: 4, num_inference_steps: 2}}\n"
        f"rows:\n  - {{model: tiny-svd}}\n  - {{model: {broken}}}\nseeds: [1, 2]\n"
    )
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["run", str(manifest), "--out", str(out), "--device", "cpu", "--workers", "2"])
    assert result.exit_code == 1, result.output
    assert "2 ok, 2 failed" in result.output
    table = pd.read_parquet(out / "results")
    assert len(table) == 4 and table["job_id"].is_unique  # each job once: the failed shard was not handed out again

    flow_run, task_runs, logs = read_back(out, tasks=5)
    assert flow_run.state.is_failed() and flow_run.state.message == "2 of 4 jobs failed"
    shards = [run for run in task_runs if run.name.startswith("shard ")]
    assert all(re.fullmatch(r"shard \d+: jobs? [-\d, ]+ \(.+\)", run.name) for run in shards), [run.name for run in shards]
    good = [run for run in shards if run.name.endswith("(tiny-svd)")]
    assert all(run.name.endswith("(broken-svd)") for run in shards if run not in good)
    bad = [run for run in shards if run not in good]
    assert good and bad and sum(int(run.name.split(": job")[0].split()[1]) >= 0 for run in shards) == len(shards)
    for run in bad:
        assert run.state.is_failed() and run.state.message.startswith("1 of 1 jobs failed; job "), (run.name, run.state)
        assert any(" failed in " in log.message and log.task_run_id == run.id for log in logs)
    for run in good:
        assert run.state.is_completed(), (run.name, run.state)
        assert any(" ok in " in log.message and log.task_run_id == run.id for log in logs)
    assert {"two-ui", "tiny-svd", printable(str(broken), NAME_LIMIT)} <= set(flow_run.tags)
    assert "Finished in state" not in result.output


def test_a_batch_is_one_task_run_named_for_its_jobs(demo_copy, tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["run", str(demo_copy), "--out", str(out), "--device", "cpu", "--batch", "2"])
    assert result.exit_code == 0, result.output
    flow_run, task_runs, _ = read_back(out, tasks=5)
    assert flow_run.state.is_completed() and {"demo", "tiny-svd"} <= set(flow_run.tags)
    names = sorted(run.name for run in task_runs if run.name.startswith("jobs "))
    assert names == [
        "jobs 0-1 (motion_bucket_id=60, noise_aug_strength=0.02)",
        "jobs 2-3 (motion_bucket_id=60, noise_aug_strength=0.1)",
        "jobs 4-5 (motion_bucket_id=180, noise_aug_strength=0.02)",
        "jobs 6-7 (motion_bucket_id=180, noise_aug_strength=0.1)",
    ]
    assert all(run.state.is_completed() for run in task_runs)
