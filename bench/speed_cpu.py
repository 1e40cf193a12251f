"""Speed benchmark on this CPU with tiny checkpoints (not a test): what videosweep costs over diffusers by hand.

In one run, side by side, on the tiny SVD:
  (a) a bare diffusers loop: from_pretrained, one call per video, frames to mp4 with the same writer;
  (b) the same videos through videosweep's render path as a run renders them (tasks.render, the export of
      one video overlapped with the next render; no Prefect);
  (c) what a user waits for: `videosweep run` of the same videos against (a) as a script, each a fresh
      process, alternately for --rounds pairs: seconds from the command to the first mp4, and between
      later ones, and their ratios (bench.speed_measure.video_times);
  (d) 1 vs 2 Dask workers, throughput (bench/scaling.py's manifest and measurement);
  (e) the speed options on render_job: eager, channels_last, + cudnn_benchmark (and, with
      --compile, torch.compile; its first job compiles, a second process reuses the compile cache),
      each with PSNR/SSIM against eager;
  (f) the opt-in quality trades (``guidance_cutoff``, ``step_cache: {type: deep_cache}``) on render_job:
      speed-up against eager and PSNR/SSIM against eager's exact output (random tiny weights: the
      PSNR shows how far a trade moves the pixels, not how a real model's video looks).
Seconds per video are medians over the videos after the first (pipeline load and first call reported apart).
Torch uses its own thread count (one per core), as a user's run does, unless --threads is given.

    python bench/speed_cpu.py [--videos 10] [--rounds 3] [--json speed-cpu.json] [--compile] [--skip-prefect] [--skip-workers] [--skip-trades]
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
    parser.add_argument("--videos", type=int, default=10, help="videos per variant")
    parser.add_argument("--size", type=int, nargs=2, default=[64, 96], metavar=("HEIGHT", "WIDTH"))
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own, as a user gets)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating bare / `videosweep run` pairs for (c)")
    parser.add_argument("--scaling-seeds", type=int, default=2, help="jobs per row of the 1-vs-2-worker manifest (4 rows)")
    parser.add_argument("--compile", action="store_true", help="also torch.compile (minutes on a CPU the first time)")
    parser.add_argument("--skip-prefect", action="store_true")
    parser.add_argument("--skip-workers", action="store_true")
    parser.add_argument("--skip-trades", action="store_true", help="leave out (f), the quality trades")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args()

    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # a user's shell sets neither: torch picks its own count
        os.environ.pop(name, None)
    if args.threads:
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

    if args.threads:
        torch.set_num_threads(args.threads)
    tiny = known_models()["tiny-svd"]
    ensure_built(tiny)
    folder = Path(tempfile.mkdtemp(prefix="videosweep-speed-"))
    geometry = Geometry(args.size[0], args.size[1], args.frames, args.steps, args.frames)
    seeds = list(range(args.videos))
    results = {"script": "bench/speed_cpu.py", "argv": sys.argv[1:], "geometry": vars(geometry), "env": dict(environment())}
    results["env"]["threads"] = torch.get_num_threads()
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

    # (c) what a user waits for: `videosweep run` against the bare loop as a script, fresh processes, alternately
    if not args.skip_prefect:
        results["run"] = side_by_side(folder / "run", Path(tiny.source), geometry, seeds, args.rounds)
        write_json(args.json, results)

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
    print(f"tiny SVD on CPU ({results['env']['threads']} torch thread(s)), {geometry.row()}, {args.videos} videos per variant")
    print(table(rows, COLUMNS))
    overhead = rows[1]["s_per_video"] / rows[0]["s_per_video"]
    if not args.skip_trades:
        print("quality trades: ratio is s/video against bare; their speed-up against render_job eager:")
        for row in rows:
            if row["variant"] in dict(QUALITY_TRADES):
                print(f"  {row['variant']}: x{rows[1]['s_per_video'] / row['s_per_video']:.2f}, PSNR {row['psnr_db']:.1f} dB")
    print(f"per-job overhead: render_job / bare = {overhead:.3f}")
    if "run" in results:
        r = results["run"]
        print(
            f"videosweep run / bare script, {args.rounds} alternating rounds (ratio per round):"
            f" first video x{spread(r['first_video_ratio'])} ({spread(r['run_first_s'])} s against {spread(r['bare_first_s'])} s),"
            f" per later video x{spread(r['per_video_ratio'])} ({spread(r['run_gap_s'])} s against {spread(r['bare_gap_s'])} s);"
            f" first video with a fresh PREFECT_HOME {r['fresh_home_run_first_s']:.1f} s"
        )
    if "workers" in results:
        w = results["workers"]
        print(f"Dask workers: {w[0]['jobs_per_min']} jobs/min with 1, {w[1]['jobs_per_min']} with 2: x{w[1]['speedup']}")
    if "compile_second_process_first_call_s" in results:
        print(f"compile cache: first call in a second process {results['compile_second_process_first_call_s']:.1f} s")
    write_json(args.json, results)


def spread(values: list[float]) -> str:
    """The median and the range of a few measurements: ``1.23 (1.20-1.31)``."""
    import statistics

    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def side_by_side(folder: Path, checkpoint: Path, geometry, seeds: list[int], rounds: int) -> dict:
    """What a user waits for, in fresh processes, alternately: the bare loop as a script, then ``videosweep run``.

    Each timed from the command to each mp4 appearing (:func:`bench.speed_measure.video_times`):
    the first video's wait, and the median gap between later ones. A first, untimed pair warms the
    disk cache and creates Prefect's database (``PREFECT_HOME`` is kept across the rounds, as on a
    user's machine after the first run); its ``videosweep run`` is reported as the fresh-home start.
    """
    import statistics

    from bench.speed_measure import IMAGE, bare_script, video_times

    rows = "\n".join(f"  - {{seed: {seed}}}" for seed in seeds)
    folder.mkdir(parents=True)
    manifest = folder / "speed.yaml"
    manifest.write_text(f"name: speed-run\ndefaults: {{model: tiny-svd, image: {IMAGE}, {geometry.row()}}}\nrows:\n{rows}\n")
    env = os.environ | {"PREFECT_HOME": str(folder / "prefect-home")}  # main() left the thread count to torch
    cli = [sys.executable, "-m", "videosweep", "run", str(manifest), "--device", "cpu", "--out"]

    def gap(times: list[float]) -> float:
        return statistics.median(b - a for a, b in zip(times, times[1:]))

    measured: dict[str, list] = {"bare_first_s": [], "bare_gap_s": [], "run_first_s": [], "run_gap_s": []}
    for round_ in range(rounds + 1):
        bare = video_times(bare_script(checkpoint, geometry, seeds, folder / f"bare-{round_}"), folder / f"bare-{round_}", len(seeds), env)
        out = folder / f"run-{round_}"
        run = video_times([*cli, str(out)], out / "videos", len(seeds), env)
        label = "warm-up (fresh PREFECT_HOME)" if round_ == 0 else f"round {round_}"
        print(
            f"{label}: first video bare {bare[0]:.1f} s, videosweep run {run[0]:.1f} s;"
            f" later videos every {gap(bare):.2f} s / {gap(run):.2f} s",
            flush=True,
        )
        if round_ == 0:
            fresh_first_s = run[0]
            continue
        for key, value in (("bare_first_s", bare[0]), ("bare_gap_s", gap(bare)), ("run_first_s", run[0]), ("run_gap_s", gap(run))):
            measured[key].append(value)
    pairs = list(zip(measured["run_first_s"], measured["bare_first_s"]))
    gaps = list(zip(measured["run_gap_s"], measured["bare_gap_s"]))
    return measured | {
        "fresh_home_run_first_s": fresh_first_s,
        "first_video_ratio": [run / bare for run, bare in pairs],
        "per_video_ratio": [run / bare for run, bare in gaps],
        "note": "ratios per round (videosweep run / bare script); first video: seconds from the command to its mp4",
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
