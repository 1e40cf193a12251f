"""What the speed benchmarks (bench/speed_cpu.py, bench/speed_gpu.py) measure, side by side in one process.

Two ways to render the same SVD videos from one checkpoint folder:
- :func:`bare_diffusers`: ``StableVideoDiffusionPipeline.from_pretrained`` called once per video,
  frames written with the same mp4 writer videosweep uses (``tasks.video.write_mp4``);
- :func:`render_path`: the same videos as manifest rows through the code a run renders with
  (``tasks.render.loop.Renderer``: registry, pipeline cache, per-job options, ``--batch``, export overlapped
  with the next render, metrics, Parquet record), no Prefect.

And what a user waits for, each in a fresh process (:func:`video_times`): ``videosweep run`` of a
manifest against the bare loop as a script (``python bench/speed_measure.py CHECKPOINT OUT ...``,
:func:`bare_script`), timed from the command to each mp4 appearing under its final name.

Both time each call with the device synchronised: the first call (warm-up, autotuning, compiling)
is kept apart from the steady state, the median of the later ones; so is the pipeline load; and
the peak GPU memory where there is one. Frames
of the first seed come back for :func:`fidelity` (PSNR/SSIM against a reference variant).
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
IMAGE = REPO / "manifests" / "inputs" / "rocket.png"


@dataclass
class Geometry:
    """The SVD call every variant makes (the family's Params names)."""

    height: int
    width: int
    num_frames: int
    num_inference_steps: int
    decode_chunk_size: int

    def row(self) -> str:
        return ", ".join(f"{key}: {value}" for key, value in asdict(self).items())


@dataclass
class Measured:
    """One variant: seconds per video (median over the timed videos), load and peak memory."""

    name: str
    way: str  # "bare diffusers" or "render_job"
    options: dict[str, Any]
    times_s: list[float]
    load_s: float
    videos_per_call: int = 1
    peak_gib: float | None = None
    note: str = ""
    first_frames: np.ndarray | None = field(default=None, repr=False)  # the first seed's video, for fidelity

    @property
    def s_per_video(self) -> float:
        """Steady state: the median call after the first (which warms up, autotunes or compiles)."""
        return statistics.median(self.times_s[1:] or self.times_s) / self.videos_per_call

    def summary(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "first_frames"}
        out["s_per_video"] = self.s_per_video
        out["first_call_s"] = self.times_s[0]
        return out


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize(device)


def reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: str) -> float | None:
    if device.startswith("cuda"):
        import torch

        return torch.cuda.max_memory_allocated(device) / 2**30
    return None


def bare_diffusers(
    name: str,
    folder: Path,
    geometry: Geometry,
    seeds: list[int],
    device: str,
    out: Path,
    dtype: str = "float32",
    offload: bool = False,
    batch: int = 1,
) -> Measured:
    """The diffusers docs' way, by hand: load, call per video (``batch`` images per call), write mp4s."""
    import torch
    from diffusers import StableVideoDiffusionPipeline
    from diffusers.utils import load_image

    from videosweep.tasks.models import svd
    from videosweep.tasks.models.base import to_uint8_frames
    from videosweep.tasks.render.cache import free_memory
    from videosweep.tasks.video import write_mp4

    started = time.perf_counter()
    variant = "fp16" if dtype == "float16" else None
    pipe = StableVideoDiffusionPipeline.from_pretrained(folder, dtype=getattr(torch, dtype), variant=variant)
    pipe.set_progress_bar_config(disable=True)
    if offload:
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    synchronize(device)
    load_s = time.perf_counter() - started
    image = load_image(str(IMAGE)).resize((geometry.width, geometry.height))
    call = asdict(geometry)
    out.mkdir(parents=True, exist_ok=True)
    reset_peak(device)
    times, first = [], None
    for start in range(0, len(seeds), batch):
        chunk = seeds[start : start + batch]
        synchronize(device)
        began = time.perf_counter()
        generators = [torch.Generator("cpu").manual_seed(seed) for seed in chunk]
        videos = pipe([image] * len(chunk), generator=generators if batch > 1 else generators[0], output_type="np", **call).frames
        for seed, video in zip(chunk, videos):
            write_mp4(to_uint8_frames(np.asarray(video), svd.UINT8_CONVERSION), 7, out / f"{name}-{seed}.mp4")
        synchronize(device)
        times.append(time.perf_counter() - began)
        if first is None:
            first = _read(out / f"{name}-{chunk[0]}.mp4")
    measured = Measured(name, "bare diffusers", {"offload": "model"} if offload else {}, times, load_s, batch, peak_gib(device))
    measured.first_frames = first
    del pipe
    free_memory(device)
    return measured


def render_path(
    name: str,
    model: Path | str,
    geometry: Geometry,
    seeds: list[int],
    device: str,
    folder: Path,
    options: dict[str, Any] | None = None,
    batch: int = 1,
) -> Measured:
    """The same videos as rows of a manifest, rendered as a run renders them: ``batch`` per call, exports overlapped.

    A fresh pipeline cache. Each call is timed from its start until the next may start: its
    render plus any wait for the previous video's export (the export thread of ``tasks.render.export``),
    which is what a video costs in a run's steady state; the first call's pipeline load apart.
    """
    from videosweep.tasks.manifest import load_manifest
    from videosweep.tasks.render import RunContext, pipeline_cache
    from videosweep.tasks.render.loop import Renderer

    options = options or {}
    folder.mkdir(parents=True, exist_ok=True)
    extra = "".join(f", {key}: {json.dumps(value)}" for key, value in options.items())
    rows = "\n".join(f"  - {{seed: {seed}{extra}}}" for seed in seeds)
    slug = re.sub(r"[^\w.-]", "-", name)  # a manifest name is a folder name
    (folder / "speed.yaml").write_text(
        f"name: speed-{slug}\ndefaults: {{model: {model}, image: {IMAGE}, {geometry.row()}}}\nrows:\n{rows}\n"
    )
    table = load_manifest(folder / "speed.yaml", device)
    run = RunContext.new(folder / "out", device, table, batch=batch)
    pipeline_cache().clear()
    times, records = [], []
    with Renderer(run, {}, datetime.now(timezone.utc)) as renderer:
        for calls in renderer.batches(table.jobs):
            synchronize(device)
            began = time.perf_counter()
            records += renderer(calls)
            synchronize(device)
            times.append(time.perf_counter() - began)
        records += renderer.drain()
    peak = None
    for record in records:
        if record["status"] != "ok" or record["batch_size"] != batch:  # a fallback would time another way
            why = record.get("error") or record.get("batch_error")
            raise RuntimeError(f"{name}: job {record['job_id']} {record['status']}, {record['batch_size']} per call: {why}")
        if record.get("peak_gpu_mem_bytes") is not None:
            peak = max(peak or 0.0, record["peak_gpu_mem_bytes"] / 2**30)
    load_s = sum(record["load_s"] or 0.0 for record in records)  # all in the first call: one pipeline, a fresh cache
    times[0] -= load_s
    way = "render_job" if batch == 1 else f"render_job, --batch {batch}"
    measured = Measured(name, way, options, times, load_s, batch, peak)
    measured.first_frames = _read(run.out_root / records[0]["video_path"])
    pipeline_cache().clear()
    return measured


def bare_script(checkpoint: Path, geometry: Geometry, seeds: list[int], out: Path) -> list[str]:
    """The command of the bare loop as a user would script it: import, load, one call and one mp4 per seed."""
    return [sys.executable, str(Path(__file__).resolve()), str(checkpoint), str(out), json.dumps(asdict(geometry)),
            *map(str, seeds)]  # fmt: skip


def _bare_main(checkpoint: str, out: str, geometry: str, *seeds: str) -> None:
    """:func:`bare_script`'s process: the diffusers docs' SVD loop, each video written with videosweep's encoder."""
    import torch
    from diffusers import StableVideoDiffusionPipeline
    from diffusers.utils import load_image

    sys.path.insert(0, str(REPO))
    from videosweep.tasks.video import write_mp4

    pipe = StableVideoDiffusionPipeline.from_pretrained(checkpoint)
    pipe.set_progress_bar_config(disable=True)
    call = json.loads(geometry)
    image = load_image(str(IMAGE)).resize((call["width"], call["height"]))
    for seed in map(int, seeds):
        video = pipe(image, generator=torch.Generator("cpu").manual_seed(seed), output_type="np", **call).frames[0]
        write_mp4((np.clip(video, 0, 1) * 255).round().astype(np.uint8), 7, Path(out) / f"bare-{seed}.mp4")


def video_times(command: list[str], videos: Path, count: int, env: dict[str, str], poll_s: float = 0.02) -> list[float]:
    """Run ``command`` and watch ``videos`` (recursively): seconds from the launch to each of ``count`` mp4s
    appearing under its final name (a scratch name starts with a dot). Raises if the command fails."""
    launched = time.perf_counter()
    seen: dict[Path, float] = {}
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        while len(seen) < count and process.poll() is None:
            now = time.perf_counter() - launched
            for path in videos.rglob("*.mp4") if videos.is_dir() else ():
                if not path.name.startswith("."):
                    seen.setdefault(path, now)
            time.sleep(poll_s)
        output = process.communicate()[0]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    for path in videos.rglob("*.mp4"):
        if not path.name.startswith("."):
            seen.setdefault(path, time.perf_counter() - launched)  # written in the last poll interval
    if process.returncode != 0 or len(seen) != count:
        raise RuntimeError(f"{command[1:3]} exited {process.returncode} with {len(seen)} of {count} videos: {output[-2000:]}")
    return sorted(seen.values())


def fidelity(frames: np.ndarray | None, reference: np.ndarray | None) -> dict[str, float | None]:
    """PSNR (dB) and SSIM of a video against the reference variant's, frame by frame, averaged."""
    from videosweep.tasks.metrics import psnr, ssim

    if frames is None or reference is None or frames.shape != reference.shape:
        return {"psnr_db": None, "ssim": None}
    return {
        "psnr_db": float(np.mean([psnr(a, b) for a, b in zip(frames, reference)])),
        "ssim": float(np.mean([ssim(a, b) for a, b in zip(frames, reference)])),
    }


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """A plain text table of ``rows`` (missing cells as '-')."""

    def cell(value: Any) -> str:
        if value is None:
            return "-"
        return f"{value:.3g}" if isinstance(value, float) else str(value)

    cells = [[cell(row.get(column)) for column in columns] for row in rows]
    widths = [max(len(column), *(len(line[i]) for line in cells)) for i, column in enumerate(columns)]
    lines = ["  ".join(column.ljust(width) for column, width in zip(columns, widths))]
    lines += ["  ".join(value.ljust(width) for value, width in zip(line, widths)) for line in cells]
    return "\n".join(lines)


def write_json(path: Path | None, results: dict[str, Any]) -> None:
    """Rewrite the JSON file (after every variant, so a cut-off run keeps what it measured)."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps(results, indent=1, default=str))
    partial.replace(path)


def _read(path: Path) -> np.ndarray:
    from videosweep.tasks.video import read_mp4

    return read_mp4(path)[0]


if __name__ == "__main__":
    _bare_main(*sys.argv[1:])
