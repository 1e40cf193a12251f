"""One job attempt's record, typed: the row it adds to the results table, and what its video carries.

A :class:`JobRecord` is begun when a job starts (:meth:`JobRecord.begin`), filled in as the job
renders and exports, and written as one Parquet part (``tasks.results``, whose schema is derived
from this class by :func:`result_columns`). It also reads as that row (``record["status"]``,
``record["input_image_sha256"]``), the way records read back from the disk are read.
"""

from __future__ import annotations

import json
import os
import socket
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Annotated, Any

from .jobs import Job, chain_input
from .metrics import METRICS
from .models import FAMILIES, family_spec, file_sha256
from .models.base import input_fields, scalar_type
from .models.family import FamilyError
from .provenance import environment, gpu_name
from .run_context import RunContext

#: A column of 32-bit integers (a plain ``int`` is 64-bit).
Int32 = Annotated[int, "int32"]


@dataclass(kw_only=True)
class JobRecord(Mapping[str, Any]):
    """One attempt of one job. The fields are the results table's columns, in order; ``params``, ``input_hashes``
    and ``metrics`` are spread over a column each of their keys (:func:`result_columns`)."""

    job_id: str
    run_id: str
    attempt: Int32
    status: str | None = None  # "ok" | "failed" | "skipped" (its input job has no video); None while it renders
    error_type: str | None = None
    error: str | None = None
    manifest_name: str
    manifest_path: str
    manifest_sha256: str
    job_index: Int32
    origin: str  # the manifest row: "rows[1]", "line 5"
    sweep_json: str  # the swept values that made this job
    model: str  # as written in the manifest
    family: str
    model_id: str
    model_revision: str
    pipeline_class: str
    scheduler_class: str | None = None
    scheduler_config_json: str | None = None
    dtype: str
    variant: str | None
    device: str
    gpu_name: str | None
    seed: int
    generator_device: str
    params_json: str
    options_json: str  # pipeline options the row set: scheduler, offload, FreeU...
    components_json: str  # separately stored parts: name -> {source, revision}
    parent_job_id: str | None  # the job `videosweep rerun --set` derived this one from
    params: dict[str, Any]  # a column per parameter, of every family (null where a family has no such parameter)
    input_hashes: dict[str, str]  # input field -> sha256 of the file: column input_<field>_sha256
    video_path: str | None = None  # relative to the output root
    video_sha256: str | None = None
    video_bytes: int | None = None  # the file's size as written; with its mtime, resume's cheap check (results.history)
    video_mtime_ns: int | None = None
    video_frames: Int32 | None = None
    video_width: Int32 | None = None
    video_height: Int32 | None = None
    video_fps: float | None = None
    # the sound muxed into the mp4 (AAC), where the family renders one (LTX-2); null for a silent video
    audio_sample_rate: Int32 | None = None  # Hz
    audio_channels: Int32 | None = None
    audio_samples: int | None = None  # per channel, as rendered (the AAC stream decodes to as many, within a frame)
    audio_duration_s: float | None = None  # audio_samples / audio_sample_rate
    audio_sha256: str | None = None  # of the 16-bit PCM the AAC stream was encoded from (models.base.Audio.sha256)
    frames_path: str | None = None  # its frames kept losslessly (FFV1 .mkv), for the jobs that take its video
    frames_sha256: str | None = None
    frames_bytes: int | None = None
    frames_mtime_ns: int | None = None
    chain_inputs_json: str | None  # per "@<job_id>" input: the file read, whether lossless, its sha256
    load_s: float | None = None
    cache_hit: bool | None = None
    denoise_s: float | None = None  # input encoding + denoising loop
    decode_s: float | None = None  # VAE decode + postprocess
    export_s: float | None = None  # mp4 encode + write
    export_overlapped: bool | None = None  # exported on a thread while the next job rendered
    total_s: float | None = None  # the whole job, load included
    peak_gpu_mem_bytes: int | None = None
    memory_rung: str | None = None  # the rung of the memory ladder that rendered it (tasks.memory): "asked" first
    memory_fallbacks: str | None = None  # JSON list of the rungs that ran out of memory before it
    batch_size: Int32 | None = None  # videos in the pipeline call that rendered it (run --batch); 1 alone
    batch_error: str | None = None  # why the batched call it was in failed (it was then rendered alone)
    metrics: dict[str, float | None] = field(default_factory=dict)  # tasks.metrics: motion, flicker, first-frame fidelity
    python_version: str
    torch_version: str
    diffusers_version: str | None
    transformers_version: str | None
    videosweep_version: str | None
    git_commit: str | None
    host: str
    worker: str  # host:pid of the process that rendered it
    queued_at: datetime  # when its shard was handed to the workers
    started_at: datetime
    finished_at: datetime | None = None

    @classmethod
    def begin(cls, job: Job, run: RunContext, attempt: int, started_at: datetime, queued_at: datetime | None = None) -> JobRecord:
        """The record of ``job``'s ``attempt`` in ``run`` as it starts: what the job, the run and this process say."""
        components = {
            name: {"source": source, "revision": job.component_revisions.get(name)} for name, source in job.components.items()
        }
        return cls(
            job_id=job.job_id,
            run_id=run.run_id,
            attempt=attempt,
            manifest_name=run.manifest_name,
            manifest_path=run.manifest_path,
            manifest_sha256=run.manifest_sha256,
            job_index=job.index,
            origin=job.origin,
            sweep_json=json.dumps(job.coords, sort_keys=True),
            model=job.model,
            family=job.family,
            model_id=job.model_id,
            model_revision=job.model_revision,
            pipeline_class=family_spec(job.family).pipeline_class,
            dtype=job.dtype,
            variant=job.variant,
            device=run.device,
            gpu_name=gpu_name(run.device),
            seed=job.seed,
            generator_device=job.generator_device,
            params_json=json.dumps(job.params, sort_keys=True),
            options_json=json.dumps(job.options, sort_keys=True),
            components_json=json.dumps(components, sort_keys=True),
            parent_job_id=job.parent_job_id,
            params=dict(job.params),
            input_hashes=dict(job.input_sha256),
            chain_inputs_json=chain_inputs(job, run),
            **environment(),
            worker=f"{socket.gethostname()}:{os.getpid()}",
            queued_at=queued_at or started_at,
            started_at=started_at,
        )

    def update(self, **values: Any) -> None:
        """Set fields by name (an unknown name is an AttributeError, not a new column)."""
        for name, value in values.items():
            if name not in _FIELDS:
                raise AttributeError(f"JobRecord has no field {name!r}")
            setattr(self, name, value)

    def end(self, status: str, error_type: str, error: str) -> None:
        """The job did not end ``ok``: ``status`` ("failed" or "skipped"), and why."""
        self.update(status=status, error_type=error_type, error=error)

    def embedded(self) -> str:
        """The JSON an mp4 carries in its ``comment`` tag: the :data:`EMBEDDED` columns and the input hashes."""
        carried = {name: getattr(self, name) for name in EMBEDDED} | dict(sorted(self._hash_columns().items()))
        return json.dumps({name: value for name, value in carried.items() if value is not None})

    # -- the record as its row of the results table ------------------------------------------------

    def _hash_columns(self) -> dict[str, str]:
        return {input_hash_column(name): digest for name, digest in self.input_hashes.items()}

    def _spread(self) -> dict[str, Any]:
        return {**self.params, **self._hash_columns(), **self.metrics}

    def __getitem__(self, column: str) -> Any:
        return getattr(self, column) if column in _COLUMN_FIELDS else self._spread()[column]

    def __iter__(self) -> Iterator[str]:
        yield from _COLUMN_FIELDS
        yield from self._spread()

    def __len__(self) -> int:
        return len(_COLUMN_FIELDS) + len(self._spread())


#: Record columns a video carries: what made it, never when or where it ran, so the bytes stay reproducible.
EMBEDDED = (
    "job_id",
    "parent_job_id",
    "model",
    "family",
    "model_id",
    "model_revision",
    "components_json",
    "pipeline_class",
    "scheduler_class",
    "scheduler_config_json",
    "dtype",
    "variant",
    "device",
    "gpu_name",
    "seed",
    "generator_device",
    "params_json",
    "options_json",
    "audio_sample_rate",
    "audio_channels",
    "audio_samples",
    "audio_duration_s",
    "audio_sha256",
    "python_version",
    "torch_version",
    "diffusers_version",
    "transformers_version",
    "videosweep_version",
    "git_commit",
)

_FIELDS = frozenset(f.name for f in fields(JobRecord))
#: Fields spread over several columns: ``params`` and ``input_hashes`` over the families' (:func:`family_columns`),
#: ``metrics`` over ``tasks.metrics.METRICS``.
_SPREAD = ("params", "input_hashes", "metrics")
#: The fields that are one column each.
_COLUMN_FIELDS = tuple(f.name for f in fields(JobRecord) if f.name not in _SPREAD)


def input_hash_column(field_name: str) -> str:
    """The column holding the sha256 of an input file (``input_image_sha256``), or of the job it came from."""
    return f"input_{field_name}_sha256"


def result_columns() -> list[tuple[str, Any]]:
    """Every column of the results table, in order, with its value type (an annotation, ``Int32`` for 32 bits):
    a record's fields, with the family columns in place of ``params`` and ``input_hashes``, and one float
    column per metric in place of ``metrics``."""
    hints = typing.get_type_hints(JobRecord, include_extras=True)
    spread = {"params": family_columns(), "input_hashes": [], "metrics": [(name, float) for name in METRICS]}
    return [column for f in fields(JobRecord) for column in spread.get(f.name, [(f.name, hints[f.name])])]


def family_columns() -> list[tuple[str, type]]:
    """One column per parameter of every family, same name, one type; each family's input-hash columns after its parameters.

    The registry has checked that a parameter name has one type in every family (``models.discover``).
    """
    taken = set(_COLUMN_FIELDS) | set(METRICS)
    found: dict[str, type] = {}
    for family, spec in FAMILIES.items():
        wanted = [(name, scalar_type(field.annotation)) for name, field in spec.params.model_fields.items()]
        wanted += [(input_hash_column(name), str) for name in input_fields(spec.params)]
        for name, kind in wanted:
            if name in taken:
                raise FamilyError(f"family {family!r}: parameter {name!r} is also a results column of every job; rename it")
            found[name] = kind
    return list(found.items())


def own_columns(family: str | None) -> list[tuple[str, type]]:
    """The columns a family by class name (``models.by_class``) adds to the table: its parameters and input hashes
    that no curated family has (empty for a curated family). One with the name of a record column is refused."""
    if family is None or family in FAMILIES:
        return []
    spec = family_spec(family)
    known = dict(family_columns())
    wanted = [(name, scalar_type(field.annotation)) for name, field in spec.params.model_fields.items()]
    wanted += [(input_hash_column(name), str) for name in input_fields(spec.params)]
    taken = set(_COLUMN_FIELDS) | set(METRICS)
    clash = sorted(name for name, _ in wanted if name in taken)
    if clash:
        raise FamilyError(f"{family} takes {', '.join(clash)}, which the results table holds for every job; "
                          "videosweep cannot record it")
    return [(name, kind) for name, kind in wanted if name not in known]


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
