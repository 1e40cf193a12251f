"""Crash harness (not a timing benchmark): kill a tiny run at random moments, then run it again, and check nothing was lost.

Each round starts ``videosweep run`` on a tiny SVD sweep and SIGKILLs it at a random moment
(seeded): half the kills at any time from the start (start-up, imports, the Prefect server),
half just after a video was recorded (a job rendering, the previous one exporting). After each
kill it checks that every process the run had started is gone within a few seconds, with no
later run needed. Then the same command runs to the end, and the harness checks the output
root: one ok record per job, every mp4 decodes and has its record's sha256, no mp4 without a
record, no scratch file, every results part readable, no process left behind.

    python bench/crash.py [--kills 20] [--seed 0] [--jobs 40] [--out DIR] [--workers 1]

Prints one line per kill and a summary; exits 1 if any check failed. ``--out`` may be a small
tmpfs to kill into a nearly full disk too.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import videosweep.flows  # noqa: E402,F401  (quiet, offline defaults, inherited by the runs)

#: Seconds a killed run's processes may take to end (its watcher ends them).
ORPHAN_GRACE_S = 10.0


def write_manifest(folder: Path, jobs: int) -> Path:
    image = REPO / "manifests" / "inputs" / "rocket.png"
    manifest = folder / "crash.yaml"
    manifest.write_text(
        "name: crash\n"
        f"defaults: {{model: tiny-svd, image: {image}, height: 64, width: 96, num_frames: 14, num_inference_steps: 4}}\n"
        "sweep: {motion_bucket_id: [60, 180]}\n"
        f"seeds: {{from: 1, count: {max(1, jobs // 2)}}}\n"
    )
    return manifest


def command(manifest: Path, out: Path, workers: int) -> list[str]:
    return [sys.executable, "-m", "videosweep.flows.cli", "run", str(manifest), "--out", str(out), "--device", "cpu", "--workers", str(workers)]


def parts(out: Path) -> int:
    return len(list((out / "results").glob("part-*.parquet")))


def kill_once(run_command: list[str], out: Path, rng: random.Random, env: dict, log) -> dict:
    """Start the run, SIGKILL it at a random moment, and see whether its processes end by themselves."""
    import psutil

    started = time.monotonic()
    process = subprocess.Popen(run_command, cwd=REPO, env=env, stdout=log, stderr=log)
    after_a_record = rng.random() < 0.5
    if after_a_record:  # wait for the next video to be recorded, then a random part of a job's time
        before = parts(out)
        while process.poll() is None and parts(out) == before and time.monotonic() - started < 300:
            time.sleep(0.05)
        time.sleep(rng.uniform(0, 2.0))
    else:
        time.sleep(rng.uniform(0, 30.0))
    below = []
    if process.poll() is None:
        try:
            below = psutil.Process(process.pid).children(recursive=True)
        except psutil.Error:
            pass
        process.send_signal(signal.SIGKILL)
    code = process.wait()
    killed_at = time.monotonic() - started
    deadline = time.monotonic() + ORPHAN_GRACE_S
    alive = below
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        time.sleep(0.1)
    left = [f"{p.pid} {' '.join(p.cmdline())[:80]}" for p in alive if _running(p)]
    for p in alive:  # never leave them to the next round, whatever the verdict
        try:
            p.kill()
        except psutil.Error:
            pass
    return {
        "killed_at_s": round(killed_at, 1),
        "after_a_record": after_a_record,
        "finished_first": code == 0,
        "children": len(below),
        "left_behind": left,
        "records": parts(out),
        "scratch": len(scratch_files(out)),
    }


def _running(process) -> bool:
    import psutil

    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def scratch_files(out: Path) -> list[Path]:
    from videosweep.tasks.files import SCRATCH

    return [path for path in out.rglob(".*") if path.is_file() and SCRATCH.match(path.name)] if out.exists() else []


def check_root(out: Path, manifest: Path) -> list[str]:
    """Every promise about the output root after the final run; the broken ones, in words."""
    import pandas as pd
    import pyarrow.parquet as pq

    from videosweep.tasks.manifest import load_manifest
    from videosweep.tasks.models import file_sha256
    from videosweep.tasks.video import check_mp4

    problems = []
    jobs = {job.job_id for job in load_manifest(manifest, "cpu").jobs}
    for part in (out / "results").glob("part-*.parquet"):
        try:
            pq.read_table(part)
        except Exception as exc:  # noqa: BLE001 - the harness reports, it does not stop
            problems.append(f"unreadable results part {part.name}: {exc}")
    table = pd.read_parquet(out / "results")
    ok = table[table["status"] == "ok"]
    counts = ok["job_id"].value_counts()
    problems += [f"job {job_id} has {n} ok records" for job_id, n in counts.items() if n != 1]
    problems += [f"job {job_id} has no ok record" for job_id in sorted(jobs - set(ok["job_id"]))]
    duplicated = table[table.duplicated(["job_id", "attempt"], keep=False)]
    problems += [f"job {row.job_id} attempt {row.attempt} recorded twice" for row in duplicated.itertuples()]
    for row in ok.itertuples():
        video = out / row.video_path
        try:
            check_mp4(video, int(row.video_frames))
        except OSError as exc:
            problems.append(f"{video.name} does not decode: {exc}")
            continue
        if file_sha256(video) != row.video_sha256:
            problems.append(f"{video.name} is not the video its record names (sha256)")
    recorded = {Path(path).name for path in ok["video_path"]}
    problems += [f"{path.name} has no ok record" for path in (out / "videos").glob("*.mp4") if path.name not in recorded]
    problems += [f"scratch file left: {path}" for path in scratch_files(out)]
    if (out / "results" / "_unreadable").exists():
        problems.append("results parts were set aside as unreadable (a part was half-written under its final name)")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=40, help="enough that most kills land mid-run")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--out", type=Path, help="output root (default: a fresh temporary folder)")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()

    rng = random.Random(args.seed)
    folder = Path(tempfile.mkdtemp(prefix="videosweep-crash-"))
    out = args.out or folder / "out"
    manifest = write_manifest(folder, args.jobs)
    run_command = command(manifest, out, args.workers)
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    rounds, failures = [], []
    with open(folder / "runs.log", "ab") as log:
        for index in range(args.kills):
            outcome = kill_once(run_command, out, rng, env, log)
            rounds.append(outcome)
            print(
                f"kill {index + 1:2d}/{args.kills}: at {outcome['killed_at_s']:5.1f} s"
                f"{' after a record' if outcome['after_a_record'] else ''}; {outcome['records']} records, "
                f"{outcome['scratch']} scratch files, {outcome['children']} child processes, "
                f"{len(outcome['left_behind'])} left behind",
                flush=True,
            )
            failures += [f"kill {index + 1}: process left behind: {line}" for line in outcome["left_behind"]]
        started = time.monotonic()
        final = subprocess.run(run_command, cwd=REPO, env=env, stdout=log, stderr=log)
        final_s = time.monotonic() - started
    if final.returncode != 0:
        failures.append(f"the final run exited {final.returncode} (log: {folder / 'runs.log'})")
    failures += check_root(out, manifest)
    summary = {
        "kills": args.kills,
        "seed": args.seed,
        "jobs": args.jobs,
        "kills_after_a_record": sum(r["after_a_record"] for r in rounds),
        "runs_that_finished_before_the_kill": sum(r["finished_first"] for r in rounds),
        "scratch_files_seen_after_kills": sum(r["scratch"] > 0 for r in rounds),
        "processes_left_behind": sum(len(r["left_behind"]) for r in rounds),
        "final_run_s": round(final_s, 1),
        "failures": failures,
    }
    print(
        f"{args.kills} kills ({summary['kills_after_a_record']} just after a record), "
        f"{summary['scratch_files_seen_after_kills']} left scratch files for the next run to remove, "
        f"{summary['processes_left_behind']} processes left behind; final run {final_s:.1f} s; "
        + ("every check passed" if not failures else f"{len(failures)} problems:")
    )
    for failure in failures:
        print(f"  - {failure}")
    if args.json:
        args.json.write_text(json.dumps({"rounds": rounds, **summary}, indent=1))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
