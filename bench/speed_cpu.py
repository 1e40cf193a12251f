"""Speed benchmark on this CPU with tiny checkpoints (not a test): what videosweep costs over diffusers by hand.

In one run, side by side, on the tiny SVD:
  (a) a bare diffusers loop: from_pretrained, one call per video, frames to mp4 with the same writer;
  (b) the same videos through videosweep's render path as a run renders them (tasks.render, the export of
      one video overlapped with the next render; no Prefect);
  (c) the same videos through `videosweep run` (the Prefect flow, ephemeral API, a fresh process):
      start-up to the first job apart, then seconds per video;
  (d) 1 vs 2 Dask workers, throughput (bench/scaling.py's manifest and measurement);
  (e) the speed options on render_job: eager, channels_last, + cudnn_benchmark (and, with
      --compile, torch.compile; its first job compiles, a second process reuses the compile cache),
      each with PSNR/SSIM against eager;
  (f) the opt-in quality trades (``guidance_cutoff``, ``step_cache: {type: deep_cache}``) on render_job:
      speed-up against eager and PSNR/SSIM against eager's exact output (random tiny weights: the
      PSNR shows how far a trade moves the pixels, not how a real model's video looks).
Seconds per video are medians over the videos after the first (pipeline load and first call reported apart).

    python bench/speed_cpu.py [--videos 6] [--json speed-cpu.json] [--compile] [--skip-prefect] [--skip-workers] [--skip-trades]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

#: The opt-in speed-ups that change the video, as rows set them (README "Speed").
QUALITY_TRADES = [
    ("guidance_cutoff 0.5", {"guidance_cutoff": 0.5}),
    ("guidance_cutoff 0.7", {"guidance_cutoff": 0.7}),
    ("deep_cache 2", {"step_cache": {"type": "deep_cache", "interval": 2}}),
    ("deep_cache 3", {"step_cache": {"type": "deep_cache", "interval": 3}}),
    ("deep_cache 3 + cutoff 0.7", {"step_cache": {"type": "deep_cache", "interval": 3}, "guidance_cutoff": 0.7}),
]
COLUMNS = ["variant", "way", "s_per_video", "ratio", "load_s", "first_call_s", "psnr_db", "ssim", "note"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=6, help="videos per variant")
    parser.add_argument("--size", type=int, nargs=2, default=[64, 96], metavar=("HEIGHT", "WIDTH"))
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier on a small shared CPU)")
    parser.add_argument("--scaling-seeds", type=int, default=2, help="jobs per row of the 1-vs-2-worker manifest (4 rows)")
    parser.add_argument("--compile", action="store_true", help="also torch.compile (minutes on a CPU the first time)")
    parser.add_argument("--skip-prefect", action="store_true")
    parser.add_argument("--skip-workers", action="store_true")
    parser.add_argument("--skip-trades", action="store_true", help="leave out (f), the quality trades")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args()

    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # this process, `videosweep run` and the Dask workers
    os.environ.setdefault("VIDEOSWEEP_HOME", str(Path(tempfile.mkdtemp(prefix="videosweep-speed-home-"))))
    import torch

    import videosweep.flows  # noqa: F401  (quiet, offline defaults)
    from bench import scaling
    from bench.speed_measure import (
        Geometry,
        bare_diffusers,
        fidelity,
        render_path,
        table,
        write_json,
    )
    from videosweep.tasks.models import ensure_built, known_models
    from videosweep.tasks.provenance import environment

    torch.set_num_threads(args.threads)
    tiny = known_models()["tiny-svd"]
    ensure_built(tiny)
    folder = Path(tempfile.mkdtemp(prefix="videosweep-speed-"))
    geometry = Geometry(args.size[0], args.size[1], args.frames, args.steps, args.frames)
    seeds = list(range(args.videos))
    results = {"script": "bench/speed_cpu.py", "argv": sys.argv[1:], "geometry": vars(geometry), "env": dict(environment())}
    results["env"]["threads"] = args.threads
    measured, rows = [], []

    def report(m, note: str = "", against=None) -> None:
        """Print and keep one variant: its ratio to bare diffusers, its fidelity to ``against`` (default: bare)."""
        measured.append(m)
        reference = against or measured[0]
        row = m.summary() | fidelity(m.first_frames, reference.first_frames)
        rows.append(row | {"variant": m.name, "note": note, "ratio": m.s_per_video / measured[0].s_per_video})
        print(f"{m.name}: {m.s_per_video:.3f} s/video ({m.way}, load {m.load_s:.1f} s)", flush=True)
        results["variants"] = rows
        write_json(args.json, results)

    # (a) and (b): the same videos, one process
    report(bare_diffusers("bare", Path(tiny.source), geometry, seeds, "cpu", folder / "bare"), "the reference")
    report(render_path("render_job", "tiny-svd", geometry, seeds, "cpu", folder / "render"), "per-job overhead: ratio to bare")

    # (c) `videosweep run` in a fresh process: Prefect's ephemeral API, the flow, the same jobs
    if not args.skip_prefect:
        results["prefect"] = prefect_run(folder, geometry, seeds)
        print(f"videosweep run: start-up to first job {results['prefect']['startup_s']:.1f} s", flush=True)
        from bench.speed_measure import Measured

        prefect = results["prefect"]
        report(Measured("videosweep run", "Prefect flow", {}, prefect["times_s"], prefect["load_s"]), "start-up apart, below")

    # (e) speed options on render_job, PSNR against eager (render_job above)
    eager = measured[1]
    variants = [("channels_last", {"channels_last": True}), ("+cudnn_benchmark", {"channels_last": True, "cudnn_benchmark": True})]
    if args.compile:
        variants.append(("compile unet+vae", {"compile": {"unet": "default", "vae": "default"}}))
    for name, options in variants:
        m = render_path(name, "tiny-svd", geometry, seeds, "cpu", folder / name.replace("+", "plus-"), options)
        report(m, "PSNR/SSIM against render_job eager" + ("; first call compiles" if "compile" in options else ""), eager)
    if args.compile:  # a new process: the compile cache on disk, not this process's
        results["compile_second_process_first_call_s"] = compile_rerun(folder, geometry)

    # (f) quality trades, opt-in per row: speed against eager, PSNR/SSIM against eager's exact frames
    if not args.skip_trades:
        for name, options in QUALITY_TRADES:
            m = render_path(name, "tiny-svd", geometry, seeds, "cpu", folder / name.replace(" ", "-"), options)
            report(m, "quality trade: ratio and PSNR/SSIM against render_job eager", eager)

    # (d) 1 vs 2 Dask workers
    if not args.skip_workers:
        (folder / "scaling").mkdir()
        manifest = scaling.write_manifest(folder / "scaling", args.scaling_seeds)
        workers = scaling.measure(manifest, folder / "scaling", [1, 2], "cpu")
        results["workers"] = workers.to_dict(orient="records")
        write_json(args.json, results)

    print()
    print(f"tiny SVD on CPU ({args.threads} thread(s)), {geometry.row()}, {args.videos} videos per variant")
    print(table(rows, COLUMNS))
    if "prefect" in results:
        p = results["prefect"]
        print(
            f"videosweep run: start-up to first job {p['startup_s']:.1f} s with a fresh PREFECT_HOME,"
            f" {p['startup_warm_s']:.1f} s on a second run (process start, imports, Prefect API, manifest)"
        )
    overhead = rows[1]["s_per_video"] / rows[0]["s_per_video"]
    if not args.skip_trades:
        print("quality trades: ratio is s/video against bare; their speed-up against render_job eager:")
        for row in rows:
            if row["variant"] in dict(QUALITY_TRADES):
                print(f"  {row['variant']}: x{rows[1]['s_per_video'] / row['s_per_video']:.2f}, PSNR {row['psnr_db']:.1f} dB")
    print(f"per-job overhead: render_job / bare = {overhead:.3f}" + (
        f", videosweep run / bare = {rows[2]['s_per_video'] / rows[0]['s_per_video']:.3f}" if "prefect" in results else ""
    ))
    if "workers" in results:
        w = results["workers"]
        print(f"Dask workers: {w[0]['jobs_per_min']} jobs/min with 1, {w[1]['jobs_per_min']} with 2: x{w[1]['speedup']}")
    if "compile_second_process_first_call_s" in results:
        print(f"compile cache: first call in a second process {results['compile_second_process_first_call_s']:.1f} s")
    write_json(args.json, results)


def prefect_run(folder: Path, geometry, seeds: list[int]) -> dict:
    """`videosweep run` of the same videos in a fresh process: start-up and per-video seconds from its records.

    Then a second run (``--force``) with the same PREFECT_HOME: the start-up of a machine where
    Prefect's database already exists, as on a user's second run.
    """
    import pandas as pd

    from bench.speed_measure import IMAGE

    work = folder / "prefect"
    work.mkdir()
    rows = "\n".join(f"  - {{seed: {seed}}}" for seed in seeds)
    (work / "speed.yaml").write_text(
        f"name: speed-prefect\ndefaults: {{model: tiny-svd, image: {IMAGE}, {geometry.row()}}}\nrows:\n{rows}\n"
    )
    env = os.environ | {"PREFECT_HOME": str(work / "prefect-home")}
    cli = [sys.executable, "-c", "from videosweep.flows.cli import app; app()", "run", str(work / "speed.yaml"), "--out", str(work / "out")]

    def run(*extra: str) -> tuple[float, float, pd.DataFrame]:
        """One `videosweep run`: seconds to its first job, wall seconds, its records."""
        launched = datetime.now(timezone.utc)
        began = time.perf_counter()
        subprocess.run([*cli, "--device", "cpu", *extra], check=True, cwd=REPO, env=env)
        wall = time.perf_counter() - began
        records = pd.read_parquet(work / "out" / "results")
        records = records[records["started_at"] >= pd.Timestamp(launched)].sort_values("started_at")
        return (records["started_at"].min().to_pydatetime() - launched).total_seconds(), wall, records

    startup, wall, records = run()
    startup_warm, _, _ = run("--force")
    return {
        "startup_s": startup,
        "startup_warm_s": startup_warm,
        "wall_s": wall,
        "load_s": float(records["load_s"].sum()),
        "times_s": [float(t) for t in records["total_s"] - records["load_s"].fillna(0)],
        "note": "startup_s: a fresh PREFECT_HOME (the API server's database is created); startup_warm_s: a second run",
    }


def compile_rerun(folder: Path, geometry) -> float:
    """The first compiled call of a second process, which finds the compile cache on disk."""
    code = (
        "import sys, json; from pathlib import Path; sys.path.insert(0, '.');"
        "from bench.speed_measure import Geometry, render_path;"
        f"m = render_path('rerun', 'tiny-svd', Geometry(**{json.dumps(vars(geometry))}), [0], 'cpu', Path({str(folder / 'rerun')!r}),"
        " {'compile': {'unet': 'default', 'vae': 'default'}}); print('FIRST', m.times_s[0])"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, capture_output=True, text=True).stdout
    return float(out.split("FIRST")[-1])


if __name__ == "__main__":
    main()
