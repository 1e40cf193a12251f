"""How long validating a big sweep takes, and its peak memory: ``python bench/validate_scale.py [--values 100] [--seeds 10]``.

Writes a tiny-svd manifest (the demo's input image; ``sweep:`` of motion_bucket_id and
noise_aug_strength, ``--values`` each, x ``--seeds`` seeds: 100 x 100 x 10 = 100k jobs by
default) into a temporary folder, validates it once to warm up (the tiny checkpoint is built on
first use, under ``$VIDEOSWEEP_HOME``), then times :func:`tasks.manifest.load_manifest` and
prints the jobs, seconds and this process's peak RSS. ``--profile`` prints cProfile's top
functions instead. ``videosweep validate`` adds the command line's imports (about 2 s, 200 MB).
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def write_manifest(folder: Path, values: int, seeds: int, model: str) -> Path:
    shutil.copy(REPO / "manifests" / "inputs" / "rocket.png", folder / "rocket.png")
    path = folder / "scale.yaml"
    path.write_text(
        f"name: scale\n"
        f"defaults: {{model: {model}, image: rocket.png, height: 72, width: 128, num_frames: 8, num_inference_steps: 4}}\n"
        f"sweep:\n"
        f"  motion_bucket_id: {{from: 0, to: {values - 1}, step: 1}}\n"
        f"  noise_aug_strength: {{from: 0.0, to: 1.0, num: {values}}}\n"
        f"seeds: {{from: 0, count: {seeds}}}\n"
    )
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", type=int, default=100, help="values of each of the two swept parameters")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--model", default="tiny-svd")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--profile", action="store_true", help="print cProfile's 25 costliest functions")
    args = parser.parse_args()

    import videosweep.flows  # noqa: F401  (the command line's quiet, offline defaults)
    from videosweep.tasks.manifest import Limits, load_manifest

    with tempfile.TemporaryDirectory(prefix="videosweep-scale-") as scratch:
        folder = Path(scratch)
        small = write_manifest(folder, 2, 1, args.model)
        load_manifest(small, args.device)  # imports, the tiny checkpoint, its hash: not what is measured
        path = write_manifest(folder, args.values, args.seeds, args.model)
        limits = Limits(max_jobs=max(Limits().max_jobs, args.values**2 * args.seeds))
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        if args.profile:
            import cProfile
            import pstats

            profile = cProfile.Profile()
            table = profile.runcall(load_manifest, path, args.device, limits)
            pstats.Stats(profile).sort_stats("tottime").print_stats(25)
            return
        start, cpu = time.perf_counter(), time.process_time()
        table = load_manifest(path, args.device, limits)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        print(
            f"{len(table.jobs):,} jobs validated in {seconds:.2f} s ({cpu:.2f} s of CPU, "
            f"{cpu / len(table.jobs) * 1e6:.0f} us a job); peak RSS {peak / 1024:.0f} MiB ({before / 1024:.0f} MiB before)"
        )


if __name__ == "__main__":
    main()
