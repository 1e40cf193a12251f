"""Results store benchmark (not a test): an output root of many jobs, read before and after compaction.

Writes synthetic records of a sweep through the real writer (``write_record``: one part per
attempt, as a run does), then measures the results folder (files, bytes) and ``read_results``
(best of ``--repeat`` reads, the page cache warm both times) before and after ``compact``, and
prints the ratios; it checks that the table read back is the same, dtypes included. It also times
the end-of-run hook on a root with fewer small parts than it merges (what most runs pay).

    python bench/results_store.py [--jobs 10000] [--repeat 2] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def synthetic_record(index: int, started: datetime) -> dict:
    """Attempt 1 of job ``index`` of an SVD sweep (motion bucket x noise x seed), with what a real record carries."""
    motion, noise, seed = (60, 120, 180)[index % 3], (0.02, 0.1)[index // 3 % 2], 1000 + index // 6
    params = {"image": "inputs/rocket.png", "motion_bucket_id": motion, "noise_aug_strength": noise, "num_frames": 14,
              "num_inference_steps": 25, "fps": 7, "decode_chunk_size": 8, "height": 576, "width": 1024}
    job_id = f"{index:016x}"
    finished = started + timedelta(seconds=3.2 * (index + 1))
    return {
        "job_id": job_id, "run_id": "20260101T000000-abcdef", "attempt": 1, "status": "ok",
        "manifest_name": "bench", "manifest_path": "/data/manifests/bench.yaml", "manifest_sha256": "f" * 64,
        "job_index": index, "origin": "sweep", "sweep_json": json.dumps({"motion_bucket_id": motion,
                                                                          "noise_aug_strength": noise, "seed": seed}),
        "model": "svd-xt", "family": "svd", "model_id": "stabilityai/stable-video-diffusion-img2vid-xt",
        "model_revision": "9e43909513c6714f1bc78bcb44d96e733cd242aa", "pipeline_class": "StableVideoDiffusionPipeline",
        "scheduler_class": "EulerDiscreteScheduler", "scheduler_config_json": json.dumps({"num_train_timesteps": 1000}),
        "dtype": "float16", "variant": "fp16", "device": "cuda:0", "gpu_name": "NVIDIA H200", "seed": seed,
        "generator_device": "cpu", "params_json": json.dumps(params, sort_keys=True), "options_json": "{}",
        "components_json": "{}", **params, "input_image_sha256": "e" * 64,
        "video_path": f"videos/{job_id}.mp4", "video_sha256": "d" * 64, "video_bytes": 812_345,
        "video_mtime_ns": 1_767_225_600_000_000_000 + index, "video_frames": 14, "video_width": 1024,
        "video_height": 576, "video_fps": 7.0, "load_s": 31.0 if index == 0 else 0.0, "cache_hit": index > 0,
        "denoise_s": 2.6, "decode_s": 0.4, "export_s": 0.2, "export_overlapped": True, "total_s": 3.2,
        "peak_gpu_mem_bytes": 9_000_000_000, "memory_rung": "asked", "batch_size": 1,
        "motion_score": 0.01 * motion / 60, "flicker": 0.002, "python_version": "3.11.9", "torch_version": "2.6.0",
        "diffusers_version": "0.33.1", "transformers_version": "4.51.0", "videosweep_version": "0.1.0",
        "git_commit": "0123456789abcdef0123456789abcdef01234567", "host": "gpu-node-1", "worker": "gpu-node-1:4242",
        "queued_at": started, "started_at": finished - timedelta(seconds=3.2), "finished_at": finished,
    }


def folder_size(root: Path) -> tuple[int, int]:
    """Files and bytes of the results parts under ``root``."""
    parts = list((root / "results").glob("part-*.parquet"))
    return len(parts), sum(part.stat().st_size for part in parts)


def best_read(root: Path, repeat: int) -> tuple[float, object]:
    """The fastest of ``repeat`` reads of the results table, and the table."""
    from videosweep.tasks.results import read_results

    times, table = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        table = read_results(root)
        times.append(time.perf_counter() - started)
    return min(times), table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--keep", type=Path, help="build the root here and keep it (default: a temporary folder)")
    args = parser.parse_args()

    import pandas as pd

    from videosweep.tasks.results import AUTO_COMPACT_PARTS, SCHEMA, compact, compact_after_run, write_record

    scratch = Path(tempfile.mkdtemp(prefix="results-store-"))
    root = args.keep or scratch / "root"
    try:
        started = datetime(2026, 1, 1, tzinfo=timezone.utc)
        clock = time.perf_counter()
        for index in range(args.jobs):
            write_record(root, synthetic_record(index, started))
        print(f"wrote {args.jobs} parts through write_record in {time.perf_counter() - clock:.1f} s")
        first = synthetic_record(0, started)
        null_columns = [name for name in SCHEMA.names if first.get(name) is None]
        print(f"a part: {len(SCHEMA.names)} columns, {len(null_columns)} of them null in every row")

        files_before, bytes_before = folder_size(root)
        read_before, table_before = best_read(root, args.repeat)
        clock = time.perf_counter()
        done = compact(root)
        compact_s = time.perf_counter() - clock
        files_after, bytes_after = folder_size(root)
        read_after, table_after = best_read(root, args.repeat)
        pd.testing.assert_frame_equal(table_before, table_after)  # the same table, dtypes included

        print(f"compact: {compact_s:.2f} s ({done.format()})")
        print(f"{'':12}{'before':>14}{'after':>14}{'ratio':>10}")
        print(f"{'files':12}{files_before:>14}{files_after:>14}{files_before / files_after:>9.0f}x")
        print(f"{'bytes':12}{bytes_before:>14}{bytes_after:>14}{bytes_before / bytes_after:>9.1f}x")
        print(f"{'read (s)':12}{read_before:>14.3f}{read_after:>14.3f}{read_before / read_after:>9.1f}x")
        print("read_results returns the same table before and after (pandas equality, dtypes included)")

        small = scratch / "small"
        for index in range(AUTO_COMPACT_PARTS - 1):
            write_record(small, synthetic_record(index, started))
        clock = time.perf_counter()
        compact_after_run(small)
        idle_s = time.perf_counter() - clock
        read_small, _ = best_read(small, args.repeat)
        print(f"end of a run with {AUTO_COMPACT_PARTS - 1} small parts: the hook leaves them ({idle_s * 1000:.1f} ms); "
              f"reading them takes {read_small * 1000:.0f} ms")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
