"""Scaling benchmark (not a test): tiny models, 1 worker in this process vs N Dask worker processes.

Renders the same two-model manifest once per worker count, in one go, into fresh output roots,
and prints jobs per minute (render wall time, start-up excluded), the speed-up over one worker,
and the pipeline loads counted from the results table against dealing jobs out in manifest order.

    python bench/scaling.py [--workers 1 2] [--seeds 8]

On a GPU machine pass --device cuda (workers then default to one per GPU).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import videosweep.flows  # noqa: E402,F401  (quiet, offline defaults)


def write_manifest(folder: Path, seeds: int) -> Path:
    """Two pipelines (tiny SVD and a copy with another scheduler config), rows interleaved as people write sweeps."""
    from videosweep.tasks.models import ensure_built, known_models

    tiny = known_models()["tiny-svd"]
    ensure_built(tiny)
    other = folder / "other-svd"
    shutil.copytree(tiny.source, other)
    config = other / "scheduler" / "scheduler_config.json"
    config.write_text(config.read_text().replace('"steps_offset": 1', '"steps_offset": 0'))
    rows = "\n".join(f"  - {{model: {m}, motion_bucket_id: {b}}}" for b in (60, 120) for m in ("tiny-svd", other))
    image = REPO / "manifests" / "inputs" / "rocket.png"
    (folder / "bench.yaml").write_text(
        f"name: bench\ndefaults: {{image: {image}, height: 64, width: 96, num_frames: 14, num_inference_steps: 8}}\n"
        f"rows:\n{rows}\nseeds: {{from: 0, count: {seeds}}}\n"
    )
    return folder / "bench.yaml"


def measure(manifest: Path, folder: Path, workers: list[int], device: str = "cpu"):
    """Render ``manifest`` once per worker count into ``folder/out-<n>``: one row of figures per count."""
    import pandas as pd

    from videosweep.flows.render import run_manifest
    from videosweep.tasks.manifest import load_manifest
    from videosweep.tasks.plan import make_plan, naive_loads

    jobs = load_manifest(manifest, device).jobs
    rows = []
    for count in workers:
        started = time.perf_counter()
        summary = run_manifest(str(manifest), str(folder / f"out-{count}"), device, False, count)
        total = time.perf_counter() - started
        table = pd.read_parquet(folder / f"out-{count}" / "results")
        rows.append(
            {
                "workers": count,
                "jobs": summary.ok,
                "render_s": round(summary.wall_s, 1),
                "startup_s": round(total - summary.wall_s, 1),
                "jobs_per_min": round(60 * summary.ok / summary.wall_s, 1),
                "job_s_median": round(float(table["total_s"].median()), 2),
                "loads": int((~table["cache_hit"]).sum()),
                "planned_loads": make_plan(jobs, count).loads,
                "naive_loads": naive_loads(jobs, count),
            }
        )
    result = pd.DataFrame(rows)
    result["speedup"] = (result["jobs_per_min"] / result["jobs_per_min"].iloc[0]).round(2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seeds", type=int, default=8, help="jobs per row (4 rows)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="videosweep-bench-"))
    manifest = write_manifest(folder, args.seeds)
    result = measure(manifest, folder, args.workers, args.device)
    print(f"{4 * args.seeds} jobs, 2 pipelines, device {args.device}")
    print(result.to_string(index=False))
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
