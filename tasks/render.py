"""Render jobs: a per-process pipeline cache, and one job -> mp4 + results record.

The cache is reached through :func:`pipeline_cache`, a function of an importable module, so
that a task shipped to another process by value still finds that process's one cache.
"""

from __future__ import annotations

import errno
import gc
import json
import os
import shutil
import socket
import threading
import time
import traceback
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .jobs import Job, chain_input, job_frames_path, job_video_path
from .memory import LADDER, OutOfMemory, is_out_of_memory, ladder
from .metrics import video_metrics
from .models import FAMILIES, ensure_built, file_sha256, known_models
from .models.base import conditioning_image
from .provenance import environment, gpu_name
from .reproduce import METADATA_TAG, embedded_record, keep_inputs
from .outroot import release_reserve
from .results import RESULTS_DIR, input_hash_column, video_identity, write_record
from .tuning import Baseline, prepare_job, prepare_load
from .watchdog import watchdog
from .video import write_lossless, write_mp4

@dataclass(frozen=True)
class RunContext:
    """What every job of one run shares; small and picklable, it travels with each task."""

    run_id: str
    out_root: Path
    device: str
    manifest_name: str
    manifest_path: str
    manifest_sha256: str
    hang_timeout_s: float | None = None  # cancel a job after this long without progress (tasks.watchdog)
    overlap_export: bool = True  # export a job while the next renders (Exporter)
    batch: int = 1  # videos per pipeline call at most, where consecutive jobs allow (batches)
    # sources whose chained jobs read the H.264 mp4 even where lossless frames are kept (a rerun of a job that did)
    lossy_inputs: frozenset[str] = frozenset()

    @classmethod
    def new(
        cls,
        out_root: Path,
        device: str,
        manifest,
        hang_timeout_s: float | None = None,
        overlap_export: bool = True,
        batch: int = 1,
    ) -> RunContext:
        run_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
        path = str(manifest.path.resolve())
        return cls(run_id, out_root, device, manifest.name, path, manifest.sha256, hang_timeout_s, overlap_export, batch)


class PipelineCache:
    """Loaded pipelines by (pipeline key, device), bounded by the device's memory.

    Before a load, least recently used pipelines are freed (with gc and the CUDA cache emptied)
    until the new one fits in the free memory with some headroom: its size is known from an
    earlier load, else estimated from its weight files; if neither is known, everything goes.
    ``capacity`` caps the count as well, where given.
    """

    def __init__(self, capacity: int | None = None, headroom: float = 1.5) -> None:
        self.capacity = capacity
        self.headroom = headroom
        self._pipes: OrderedDict[tuple, Any] = OrderedDict()
        self._sizes: dict[tuple, int] = {}  # bytes of parameters and buffers, measured at load
        self._failed: dict[tuple, tuple[str, Exception]] = {}  # key -> (run_id, why it failed)

    def get(self, job: Job, device: str, run_id: str) -> tuple[Any, Baseline, float, bool]:
        """The pipeline for ``job``, its loaded setup, the seconds spent loading it, and whether it was loaded already.

        A load that failed is not tried again by later jobs of the same run: they fail at once
        with the same reason (a missing checkpoint would otherwise cost every job its timeout).
        """
        key = (job.pipeline_key, device)
        if key in self._pipes:
            self._pipes.move_to_end(key)
            return *self._pipes[key], 0.0, True
        failed_run, reason = self._failed.get(key, (None, None))
        if failed_run == run_id:
            raise PipelineLoadError(f"loading {job.model_id} failed earlier in this run: {reason}") from reason
        self._make_room(self._sizes.get(key) or weights_bytes(job), device)
        started = time.perf_counter()
        try:
            if job.model in known_models():  # a tiny checkpoint is built where it is first needed
                ensure_built(known_models()[job.model])
            offloaded = job.options.get("offload", "none") != "none"  # offload hooks move parts to the GPU
            pipe = FAMILIES[job.family].load(job.load_options, "cpu" if offloaded else device)
            pipe = prepare_load(pipe, job.options, device)
        except Exception as exc:
            self._failed[key] = (run_id, exc)
            raise
        self._failed.pop(key, None)
        self._pipes[key] = (pipe, Baseline.of(pipe))
        self._sizes[key] = pipeline_bytes(pipe)
        return pipe, self._pipes[key][1], time.perf_counter() - started, False

    def clear(self) -> None:
        """Free every pipeline (a fresh start, as in a new worker)."""
        devices = {device for _, device in self._pipes}
        self._pipes.clear()
        for device in devices or {"cpu"}:
            _free_memory(device)

    @property
    def loaded(self) -> list[tuple]:
        """The keys of the pipelines held now, least recently used first."""
        return list(self._pipes)

    def _make_room(self, needed: int | None, device: str) -> None:
        def too_full() -> bool:
            if self.capacity is not None and len(self._pipes) >= self.capacity:
                return True
            return needed is None or free_bytes(device) < needed * self.headroom

        while self._pipes and too_full():
            self._pipes.popitem(last=False)
            _free_memory(device)


def pipeline_bytes(pipe: Any) -> int:
    """Bytes held by a pipeline's torch modules (parameters and buffers)."""
    import torch

    modules = [part for part in pipe.components.values() if isinstance(part, torch.nn.Module)]
    return sum(t.numel() * t.element_size() for m in modules for t in [*m.parameters(), *m.buffers()])


def weights_bytes(job: Job) -> int | None:
    """The size of the weight files a job's pipeline would load, where they are on disk; None if unknown."""
    folder = Path(job.model_id)
    if not folder.is_absolute():  # a hub id: its snapshot in the local cache, if there is one
        from huggingface_hub import snapshot_download

        try:
            folder = Path(snapshot_download(job.model_id, revision=job.load_options.revision, local_files_only=True))
        except Exception:  # noqa: BLE001 - not cached (or offline): no estimate
            return None
    marker = f".{job.variant}." if job.variant else None
    weights = [p for p in folder.rglob("*") if p.suffix in (".safetensors", ".bin") and p.is_file()]
    chosen = [p for p in weights if (marker in p.name) == bool(marker)] if marker else [
        p for p in weights if p.name.count(".") == 1
    ]
    return sum(p.stat().st_size for p in chosen or weights) or None


def free_bytes(device: str) -> int:
    """Free memory where pipelines live: the GPU's, or the host's available RAM."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.mem_get_info(torch.device(device))[0]
    import psutil

    return psutil.virtual_memory().available


class SourceNotRendered(RuntimeError):
    """A job whose input is another job's video, which does not exist: recorded as skipped."""


#: Below this much free space on the output disk, a failed export counts as a full disk.
MIN_FREE_BYTES = 64 * 2**20


class DiskFull(OSError):
    """The output disk is full: the run stops (jobs already recorded are kept)."""


class PipelineLoadError(RuntimeError):
    """A pipeline that could not be loaded, reported again for each job that needed it."""


def _free_memory(device: str) -> None:
    gc.collect()
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()


_CACHE = PipelineCache()


def warm_up() -> None:
    """Import what rendering needs (seconds of torch and diffusers), e.g. on a fresh worker before its first job."""
    import diffusers  # noqa: F401
    import torch  # noqa: F401
    import transformers  # noqa: F401


def pipeline_cache() -> PipelineCache:
    """This process's pipeline cache."""
    return _CACHE


def render_shard(jobs: list[Job], run: RunContext, attempts: dict[str, int], queued_at: datetime) -> list[dict]:
    """Render a shard's jobs one after another in this process (one Prefect task on a worker), ``run.batch`` per call at most.

    Idempotent: when Dask hands a shard out again after its worker died, the jobs that worker
    had already recorded (this attempt's part file exists) are not rendered twice.
    """
    records: list[dict] = []
    results = run.out_root / RESULTS_DIR
    todo = [job for job in jobs if not any(results.glob(f"part-*-{job.job_id}-{attempt_of(job, attempts)}.parquet"))]
    with Exporter(run.overlap_export) as exporter:
        for batch in batches(todo, run.batch, run.run_id):
            records += render_jobs(batch, run, attempts, exporter, queued_at)
            if any(record.get("error_type") == DiskFull.__name__ for record in records):
                break  # the run stops: the rest of the shard is left for the next run
        records += exporter.drain()
    return records


def attempt_of(job: Job, attempts: dict[str, int]) -> int:
    """The attempt a job renders now: one more than the records earlier runs left (``attempts``)."""
    return attempts.get(job.job_id, 0) + 1


def batches(jobs: list[Job], size: int, run_id: str | None = None) -> Iterator[list[Job]]:
    """``jobs`` in order, in runs of consecutive jobs that may share a pipeline call (equal ``batch_key``), ``size`` at most.

    Lazily, so that a limit learnt while one batch renders (:data:`_BATCH_LIMITS`, this run's
    ``run_id``) already holds for the next.
    """
    batch: list[Job] = []
    batch_key = None
    for job in jobs:
        key = job.batch_key
        cap = min(size, _BATCH_LIMITS.get((run_id, key), size))
        if batch and (len(batch) >= cap or key is None or key != batch_key):
            yield batch
            batch = []
        batch.append(job)
        batch_key = key
    if batch:
        yield batch


#: (run id, batch key) -> the most videos one call may hold in this process: half a batch that ran out of memory.
_BATCH_LIMITS: dict[tuple[str | None, tuple | None], int] = {}


def render_jobs(
    jobs: list[Job], run: RunContext, attempts: dict[str, int], exporter: Exporter, queued_at: datetime | None = None
) -> list[dict]:
    """Render one of :func:`batches` and hand each job to ``exporter`` in order: the records finished meanwhile."""
    records: list[dict] = []
    for rendering in start_batch(jobs, run, attempts, queued_at):
        records += exporter.hand_over(rendering)
    return records


def render_job(job: Job, run: RunContext, attempt: int = 1, queued_at: datetime | None = None) -> dict[str, Any]:
    """Render ``job``, write its video and its record, and return the record.

    Any exception of the job is caught and recorded as ``failed``: one bad job never ends a run.
    """
    return finish_job(start_job(job, run, attempt, queued_at))


@dataclass
class Rendering:
    """A job whose frames are in memory (or that ended early, ``rendered`` None): what exporting it needs."""

    run: RunContext
    record: dict[str, Any]
    rendered: Any  # models.base.Rendered
    params: Any  # the family's Params it was rendered with
    compute_s: float
    keep_frames: bool = False  # another job takes this one's video: keep its frames losslessly beside the mp4


def start_job(job: Job, run: RunContext, attempt: int = 1, queued_at: datetime | None = None) -> Rendering:
    """Check a job's inputs, then load, denoise and decode it: the first half of :func:`render_job`."""
    started_at = datetime.now(timezone.utc)
    started = time.perf_counter()
    record = _base_record(job, run, attempt, started_at)
    record.update(queued_at=queued_at or started_at, batch_size=1)
    rendered = params = None
    try:
        check_inputs(job, run)
        # the pipeline (loaded once per process), denoise and decode: one rung lighter after running out of memory
        pipe, rendered, params = _render_on_ladder(job, run, record)
        record.update(_rendered_fields(pipe, rendered, run))
    except SourceNotRendered as exc:
        record.update(status="skipped", error_type=type(exc).__name__, error=str(exc))
    except Exception as exc:  # noqa: BLE001 - the record is where the failure goes
        rendered = None
        # a full disk while keeping its input files stops the run as a full disk while exporting does
        kind = DiskFull.__name__ if is_disk_full(exc, run.out_root) else type(exc).__name__
        record.update(status="failed", error_type=kind, error=_describe(exc))
    return Rendering(run, record, rendered, params, time.perf_counter() - started, job.keep_frames)


def start_batch(
    jobs: list[Job], run: RunContext, attempts: dict[str, int], queued_at: datetime | None = None
) -> Iterator[Rendering]:
    """Start one of :func:`batches`, job by job in order: those whose inputs are ready in one pipeline call.

    A batch never fails its peers: if the call raises (a bad input, out of memory, anything), each
    of its jobs is rendered again alone by :func:`start_job` (its memory ladder, its own record);
    after running out of memory, later batches of the same kind in this run hold half as many.
    Jobs whose inputs are not ready go alone too, where their record says why. Each rendering is
    made or released as it is taken, so a batch of N holds N videos' frames at most.
    """
    ready = [job for job in jobs if _inputs_ready(job, run)] if len(jobs) > 1 else []
    together: dict[str, Rendering] = {}
    why = None
    if len(ready) > 1:
        try:
            together = {rendering.record["job_id"]: rendering for rendering in _start_together(ready, run, attempts, queued_at)}
        except Exception as exc:  # noqa: BLE001 - rendered again alone below, each job recording its own outcome
            why = f"{type(exc).__name__}: {_describe(exc)}"
            if is_out_of_memory(exc):  # later batches of these jobs' kind hold half as many, not the same again
                _BATCH_LIMITS[run.run_id, ready[0].batch_key] = max(1, len(ready) // 2)
    if why:
        _free_memory(run.device)  # what the failed call held goes before its jobs render alone
    for job in jobs:
        if job.job_id in together:
            yield together.pop(job.job_id)
            continue
        rendering = start_job(job, run, attempt_of(job, attempts), queued_at)
        if why and job in ready:
            rendering.record["batch_error"] = why
        yield rendering


def check_inputs(job: Job, run: RunContext) -> None:
    """Raise unless a job's inputs are there: a failed source skips its dependants (:class:`SourceNotRendered`).

    Input files are kept by hash under OUT/inputs/, where a rerun finds them.
    """
    missing = [source for source in job.depends_on if not (run.out_root / job_video_path(source)).is_file()]
    if missing:
        raise SourceNotRendered(f"input job {', '.join(missing)} has no video (it failed or was not rendered)")
    keep_inputs(job, run.out_root)


def _inputs_ready(job: Job, run: RunContext) -> bool:
    try:
        check_inputs(job, run)
    except Exception:  # noqa: BLE001 - the job goes alone, and start_job records why
        return False
    return True


def _start_together(jobs: list[Job], run: RunContext, attempts: dict[str, int], queued_at: datetime | None) -> list[Rendering]:
    """Render ``jobs`` in one pipeline call, set up as their rows ask (the memory ladder's first rung); raises what it raises."""
    started_at = datetime.now(timezone.utc)
    started = time.perf_counter()
    pipe, baseline, load_s, hit = pipeline_cache().get(jobs[0], run.device, run.run_id)
    prepare_job(pipe, jobs[0].options, baseline)
    videos, params = _render_call(pipe, jobs, run)
    # the load is the first job's, as if it had rendered alone first (the others find the pipeline
    # loaded); the rest of the call's time is shared out evenly, like denoise_s and decode_s
    share = (time.perf_counter() - started - load_s) / len(jobs)
    renderings = []
    for index, (job, rendered, typed) in enumerate(zip(jobs, videos, params)):
        record = _base_record(job, run, attempt_of(job, attempts), started_at)
        record.update(
            queued_at=queued_at or started_at,
            batch_size=len(jobs),
            load_s=0.0 if index else load_s,
            cache_hit=hit or index > 0,
            pipeline_class=type(pipe).__name__,
            memory_rung=LADDER[0].name,
            **_rendered_fields(pipe, rendered, run),
        )
        renderings.append(Rendering(run, record, rendered, typed, share + record["load_s"], job.keep_frames))
    return renderings


def _rendered_fields(pipe: Any, rendered: Any, run: RunContext) -> dict[str, Any]:
    """What a job's record says of its render: the scheduler it used, its timings, the peak GPU memory."""
    scheduler = rendered.scheduler or pipe.scheduler
    fields = {
        "scheduler_class": type(scheduler).__name__,
        "scheduler_config_json": scheduler_config_json(scheduler),
        "denoise_s": rendered.denoise_s,
        "decode_s": rendered.decode_s,
    }
    if run.device.startswith("cuda"):
        import torch

        fields["peak_gpu_mem_bytes"] = torch.cuda.max_memory_allocated(run.device)
    return fields


def scheduler_config_json(scheduler: Any) -> str:
    """A scheduler's config as the record keeps it: the same text in every process.

    diffusers writes ``_use_default_values`` (the keys a ``from_config`` left at their defaults) as a
    list made from a set, in an order that changes with each process's string hashing: sorted here,
    or the record embedded in the mp4, and so a rerun's bytes, would differ from run to run.
    """
    config = dict(scheduler.config)
    if isinstance(config.get("_use_default_values"), list):
        config["_use_default_values"] = sorted(config["_use_default_values"])
    return json.dumps(config, sort_keys=True, default=str)


def finish_job(rendering: Rendering) -> dict[str, Any]:
    """Export a rendered job (mp4 with its record inside, metrics) and write its record: the second half.

    Never raises for the job's sake: a failed export is the record's ``failed`` status, a full disk
    its ``DiskFull``, which stops the run (:func:`write_record_or_stop`). Holds :data:`FINISHING`,
    so an interrupted run can let the job in hand finish before it exits (flows.process).
    """
    with FINISHING:
        return write_record_or_stop(rendering.run.out_root, _export(rendering))


#: Held while a job is exported and recorded.
FINISHING = threading.Lock()


def _export(rendering: Rendering) -> dict[str, Any]:
    """The mp4 and metrics of a rendered job; its record, updated with them or with why they failed."""
    run, record, rendered = rendering.run, rendering.record, rendering.rendered
    started = time.perf_counter()
    if rendered is not None:
        try:
            relative = job_video_path(record["job_id"])
            metadata = {METADATA_TAG: embedded_record(record)}
            kept = {}
            try:
                if rendering.keep_frames:  # first: an mp4 under its final name has its lossless frames beside it
                    frames_path = job_frames_path(record["job_id"])
                    write_lossless(rendered.frames, rendered.fps, run.out_root / frames_path)
                    kept = {"frames_path": frames_path, **video_identity(run.out_root / frames_path, "frames")}
                height, width = write_mp4(rendered.frames, rendered.fps, run.out_root / relative, metadata=metadata)
            except OSError as exc:
                if is_disk_full(exc, run.out_root):
                    raise DiskFull(f"no space left on the disk of {run.out_root}: free some and run again") from exc
                raise
            record.update(
                status="ok",
                video_path=relative,
                **video_identity(run.out_root / relative),
                video_frames=len(rendered.frames),
                video_width=width,
                video_height=height,
                video_fps=float(rendered.fps),
                **kept,
                export_s=time.perf_counter() - started,
            )
            record.update(video_metrics(rendered.frames, conditioning_image(rendering.params)))
        except Exception as exc:  # noqa: BLE001 - the record is where the failure goes
            record.update(status="failed", error_type=type(exc).__name__, error=_describe(exc))
    # the job's own work: rendering and exporting, not the wait for an export thread
    record.update(total_s=rendering.compute_s + time.perf_counter() - started, finished_at=datetime.now(timezone.utc))
    return record


def write_record_or_stop(out_root: Path, record: dict[str, Any]) -> dict[str, Any]:
    """Write ``record``; on a full disk, give up the root's reserve and write it then.

    If even that fails, the job is left unrecorded (the next run renders it) and the returned
    record, written nowhere, is a ``DiskFull`` one: it stops the run.
    """
    if _written(out_root, record) or (release_reserve(out_root) and _written(out_root, record)):
        return record
    record.update(
        status="failed",
        error_type=DiskFull.__name__,
        error=f"no space left on the disk of {out_root} for this job's record: it renders again in the next run",
    )
    return record


def _written(out_root: Path, record: dict[str, Any]) -> bool:
    """Write ``record``: False if the disk is full."""
    try:
        write_record(out_root, record)
    except OSError as exc:
        if not is_disk_full(exc, out_root):
            raise
        return False
    return True


def is_disk_full(exc: BaseException, out_root: Path) -> bool:
    """Whether ``exc`` (or what caused it) says the disk of ``out_root`` is full; an OSError without a
    clear errno counts when the disk has almost no room left."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, DiskFull) or getattr(cause, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
            return True
        cause = cause.__cause__ or cause.__context__
    if not isinstance(exc, OSError):
        return False
    try:
        return shutil.disk_usage(out_root).free < MIN_FREE_BYTES
    except OSError:
        return False


class Exporter:
    """Export a job on a thread while the next one renders: the GPU does not wait for the encoder.

    At most one job is exporting while one renders, so no more than two videos' frames are held
    (N + 1 while a batch of N renders: its jobs are handed over one by one, each waiting for the last).
    ``hand_over`` returns the records finished meanwhile, in order; ``drain`` waits for the last.
    With ``overlap`` False, each job is exported at once in the caller's thread.
    """

    def __init__(self, overlap: bool = True) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(1, thread_name_prefix="videosweep-export") if overlap else None
        self._exporting = None

    def hand_over(self, rendering: Rendering) -> list[dict[str, Any]]:
        rendering.record["export_overlapped"] = self._pool is not None
        if self._pool is None:
            return [finish_job(rendering)]
        done = self.drain()
        self._exporting = self._pool.submit(finish_job, rendering)
        return done

    def drain(self) -> list[dict[str, Any]]:
        exporting, self._exporting = self._exporting, None
        return [exporting.result()] if exporting is not None else []

    def __enter__(self) -> Exporter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.drain()  # what is exporting when the caller fails is still recorded
        if self._pool is not None:
            self._pool.shutdown()


def _render_on_ladder(job: Job, run: RunContext, record: dict[str, Any]) -> tuple[Any, Any, Any]:
    """Load, set up and render ``job`` (tasks.memory): the pipeline, the rendered video and the typed parameters."""
    fallbacks: list[str] = []
    tried: list[tuple] = []  # what each rung really ran with, after options its pipeline lacks were left out
    for rung, attempt in ladder(job, run.device):
        added = {key for key in attempt.options if key not in job.options}
        try:
            pipe, baseline, load_s, hit = pipeline_cache().get(attempt, run.device, run.run_id)
            skipped = prepare_job(pipe, attempt.options, baseline, best_effort=added)
            setup = ({k: v for k, v in attempt.options.items() if k not in skipped}, attempt.params)
            if setup in tried:
                continue  # this rung changes nothing this pipeline supports
            tried.append(setup)
            record.update(load_s=load_s, cache_hit=hit, pipeline_class=type(pipe).__name__)
            [rendered], [params] = _render_call(pipe, [attempt], run)
            record.update(memory_rung=rung, memory_fallbacks=json.dumps(fallbacks) if fallbacks else None)
            return pipe, rendered, params
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            fallbacks.append(f"{rung}: {type(exc).__name__}: {str(exc)[:300]}")
        pipe = rendered = None  # what the failed rung held goes before the next one loads
        _free_memory(run.device)
    record["memory_fallbacks"] = json.dumps(fallbacks)
    raise OutOfMemory(f"out of memory on every rung of the memory ladder ({len(fallbacks)} tried): {fallbacks[-1]}")


def _render_call(pipe: Any, jobs: list[Job], run: RunContext) -> tuple[list[Any], list[Any]]:
    """Render ``jobs`` in one call of ``pipe``, under the watchdog: their videos and typed parameters, in order.

    Each job has its own generator, seeded afresh on its generator device; one job goes
    through the family's ``render``, several through its ``render_batch``.
    """
    import torch

    if run.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(run.device)
    generators = [torch.Generator(run.device if job.generator_device == "cuda" else "cpu").manual_seed(job.seed) for job in jobs]
    params = [job.typed_params(run.out_root, run.lossy_inputs) for job in jobs]
    family = FAMILIES[jobs[0].family]
    with watchdog(run.hang_timeout_s):
        if len(jobs) == 1:
            return [family.render(pipe, params[0], generators[0], run.device)], params
        return family.render_batch(pipe, params, generators, run.device), params


def worker_lost_record(job: Job, run: RunContext, attempt: int) -> dict[str, Any]:
    """Record a job as failed because every worker that took it died (killed, out of memory, crashed)."""
    now = datetime.now(timezone.utc)
    record = _base_record(job, run, attempt, now)
    record.update(
        status="failed",
        error_type="WorkerLost",
        error="the Dask worker running this job died each time it was handed out; see the worker logs",
        queued_at=now,
        finished_at=now,
    )
    return write_record_or_stop(run.out_root, record)


def _base_record(job: Job, run: RunContext, attempt: int, started_at: datetime) -> dict[str, Any]:
    params = job.params
    record: dict[str, Any] = {
        "job_id": job.job_id,
        "run_id": run.run_id,
        "attempt": attempt,
        "manifest_name": run.manifest_name,
        "manifest_path": run.manifest_path,
        "manifest_sha256": run.manifest_sha256,
        "job_index": job.index,
        "origin": job.origin,
        "sweep_json": json.dumps(job.coords, sort_keys=True),
        "model": job.model,
        "family": job.family,
        "model_id": job.model_id,
        "model_revision": job.model_revision,
        "pipeline_class": FAMILIES[job.family].PIPELINE_CLASS,
        "dtype": job.dtype,
        "variant": job.variant,
        "device": run.device,
        "gpu_name": gpu_name(run.device),
        "seed": job.seed,
        "generator_device": job.generator_device,
        "params_json": json.dumps(params, sort_keys=True),
        "options_json": json.dumps(job.options, sort_keys=True),
        "components_json": json.dumps(
            {
                name: {"source": source, "revision": job.component_revisions.get(name)}
                for name, source in job.components.items()
            },
            sort_keys=True,
        ),
        "parent_job_id": job.parent_job_id,
        "chain_inputs_json": chain_inputs(job, run),
        **params,
        **{input_hash_column(name): digest for name, digest in job.input_sha256.items()},
        **environment(),
        "worker": f"{socket.gethostname()}:{os.getpid()}",
        "started_at": started_at,
    }
    return record


def chain_inputs(job: Job, run: RunContext) -> str | None:
    """What each ``"@<job_id>"`` input of ``job`` reads (:func:`tasks.jobs.chain_input`), as JSON; None without one.

    ``{key: {job_id, path, lossless, sha256[, note]}}``: the source's lossless frames, or its H.264
    mp4, noted as lossy (a source rendered before videosweep kept frames, or a rerun of a job that read the mp4).
    """
    inputs: dict[str, dict[str, Any]] = {}
    for key, value in job.params.items():
        if not (isinstance(value, str) and value.startswith("@")):
            continue
        source = value[1:]
        path, lossless = chain_input(run.out_root, source, source in run.lossy_inputs)
        entry: dict[str, Any] = {"job_id": source, "path": path, "lossless": lossless}
        if (run.out_root / path).is_file():
            entry["sha256"] = file_sha256(run.out_root / path)
        if not lossless:
            why = "as the job this reruns did" if source in run.lossy_inputs else "its source kept no lossless frames"
            entry["note"] = f"lossy input: the source's H.264 mp4, up to ~10 levels off its rendered frames ({why})"
        inputs[key] = entry
    return json.dumps(inputs, sort_keys=True) if inputs else None


def _describe(exc: BaseException) -> str:
    """The message and the innermost frames, enough to find the line without the whole trace."""
    frames = traceback.extract_tb(exc.__traceback__)[-3:]
    where = " <- ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(frames))
    return f"{exc}"[:4000] + (f" [at {where}]" if where else "")

