"""The first half of a job: its inputs checked, then loaded, denoised and decoded, alone or in a batch: frames in memory.

A batch (:func:`batches`: consecutive jobs that differ only in their seed and per-video fields)
renders in one pipeline call; if that call fails, each of its jobs renders again alone, down the
memory ladder (tasks.memory) when it runs out of memory. Every job gets its own record
(tasks.record.JobRecord) and leaves as a :class:`Rendering`, which tasks.render.export writes out.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from ..errors import DiskFull, describe, is_disk_full
from ..jobs import Job
from ..layout import job_video_path
from ..memory import LADDER, OutOfMemory, is_out_of_memory, ladder
from ..models import family_spec
from ..pipeline_setup import prepare_job
from ..provenance import keep_inputs
from ..record import JobRecord
from ..run_context import RunContext
from ..watchdog import watchdog
from .cache import free_memory, pipeline_cache


class SourceNotRendered(RuntimeError):
    """A job whose input is another job's video, which does not exist: recorded as skipped."""


@dataclass
class Rendering:
    """A job whose frames are in memory (or that ended early, ``rendered`` None): what exporting it needs."""

    run: RunContext
    record: JobRecord
    rendered: Any  # models.base.Rendered
    params: Any  # the family's Params it was rendered with
    compute_s: float
    keep_frames: bool = False  # another job takes this one's video: keep its frames losslessly beside the mp4


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
            together = {rendering.record.job_id: rendering for rendering in _start_together(ready, run, attempts, queued_at)}
        except Exception as exc:  # noqa: BLE001 - rendered again alone below, each job recording its own outcome
            why = f"{type(exc).__name__}: {describe(exc)}"
            if is_out_of_memory(exc):  # later batches of these jobs' kind hold half as many, not the same again
                _BATCH_LIMITS[run.run_id, ready[0].batch_key] = max(1, len(ready) // 2)
    if why:
        free_memory(run.device)  # what the failed call held goes before its jobs render alone
    for job in jobs:
        if job.job_id in together:
            yield together.pop(job.job_id)
            continue
        rendering = start_job(job, run, attempt_of(job, attempts), queued_at)
        if why and job in ready:
            rendering.record.batch_error = why
        yield rendering


def start_job(job: Job, run: RunContext, attempt: int = 1, queued_at: datetime | None = None) -> Rendering:
    """Check a job's inputs, then load, denoise and decode it alone, down the memory ladder where it runs out of memory.

    Any exception of the job is its record's: ``skipped`` when its input job has no video, else ``failed``.
    """
    started_at = datetime.now(timezone.utc)
    started = time.perf_counter()
    record = JobRecord.begin(job, run, attempt, started_at, queued_at)
    record.batch_size = 1
    rendered = params = None
    try:
        check_inputs(job, run)
        # the pipeline (loaded once per process), denoise and decode: one rung lighter after running out of memory
        pipe, rendered, params = _render_on_ladder(job, run, record)
        _note_render(record, pipe, rendered, run)
    except SourceNotRendered as exc:
        record.end("skipped", type(exc).__name__, str(exc))
    except Exception as exc:  # noqa: BLE001 - the record is where the failure goes
        rendered = None
        # a full disk while keeping its input files stops the run as a full disk while exporting does
        kind = DiskFull.__name__ if is_disk_full(exc, run.out_root) else type(exc).__name__
        record.end("failed", kind, describe(exc))
    return Rendering(run, record, rendered, params, time.perf_counter() - started, job.keep_frames)


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
        record = JobRecord.begin(job, run, attempt_of(job, attempts), started_at, queued_at)
        record.update(
            batch_size=len(jobs),
            load_s=0.0 if index else load_s,
            cache_hit=hit or index > 0,
            pipeline_class=type(pipe).__name__,
            memory_rung=LADDER[0].name,
        )
        _note_render(record, pipe, rendered, run)
        renderings.append(Rendering(run, record, rendered, typed, share + record.load_s, job.keep_frames))
    return renderings


def _render_on_ladder(job: Job, run: RunContext, record: JobRecord) -> tuple[Any, Any, Any]:
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
        free_memory(run.device)
    record.memory_fallbacks = json.dumps(fallbacks)
    raise OutOfMemory(f"out of memory on every rung of the memory ladder ({len(fallbacks)} tried): {fallbacks[-1]}")


def _render_call(pipe: Any, jobs: list[Job], run: RunContext) -> tuple[list[Any], list[Any]]:
    """Render ``jobs`` in one call of ``pipe``, under the watchdog: their videos and typed parameters, in order.

    Each job has its own generator, seeded afresh on its generator device; one job is a batch of one.
    """
    import torch

    if run.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(run.device)
    generators = [torch.Generator(run.device if job.generator_device == "cuda" else "cpu").manual_seed(job.seed) for job in jobs]
    params = [job.typed_params(run.out_root, run.lossy_inputs) for job in jobs]
    with watchdog(run.hang_timeout_s):
        return family_spec(jobs[0].family).render(pipe, params, generators, run.device), params


def _note_render(record: JobRecord, pipe: Any, rendered: Any, run: RunContext) -> None:
    """What a job's record says of its render: the scheduler it used, its timings, the peak GPU memory."""
    scheduler = rendered.scheduler or getattr(pipe, "scheduler", None)  # None: a pipeline that does not denoise
    record.update(
        scheduler_class=None if scheduler is None else type(scheduler).__name__,
        scheduler_config_json=None if scheduler is None else scheduler_config_json(scheduler),
        denoise_s=rendered.denoise_s,
        decode_s=rendered.decode_s,
    )
    if run.device.startswith("cuda"):
        import torch

        record.peak_gpu_mem_bytes = torch.cuda.max_memory_allocated(run.device)


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
