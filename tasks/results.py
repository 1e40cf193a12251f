"""The results table: one Parquet part per job attempt under ``OUT/results/``, with one explicit schema.

Each part is written under a dot-name and renamed, so readers (``pandas.read_parquet(OUT /
"results")``) never see a half-written file, and a killed run loses at most the job in flight.
Every part carries every column (the parameters of all families, null where a family lacks
one), because a directory read takes its schema from one file and would drop the others.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from .files import write_atomic
from .metrics import METRICS
from .models import FAMILIES
from .models.base import input_fields

RESULTS_DIR = "results"

_FIXED = [
    ("job_id", pa.string()),
    ("run_id", pa.string()),
    ("attempt", pa.int32()),
    ("status", pa.string()),  # "ok" | "failed" | "skipped" (its input job has no video)
    ("error_type", pa.string()),
    ("error", pa.string()),
    ("manifest_name", pa.string()),
    ("manifest_path", pa.string()),
    ("manifest_sha256", pa.string()),
    ("job_index", pa.int32()),
    ("origin", pa.string()),  # the manifest row: "rows[1]", "line 5"
    ("sweep_json", pa.string()),  # the swept values that made this job
    ("model", pa.string()),  # as written in the manifest
    ("family", pa.string()),
    ("model_id", pa.string()),
    ("model_revision", pa.string()),
    ("pipeline_class", pa.string()),
    ("scheduler_class", pa.string()),
    ("scheduler_config_json", pa.string()),
    ("dtype", pa.string()),
    ("variant", pa.string()),
    ("device", pa.string()),
    ("gpu_name", pa.string()),
    ("seed", pa.int64()),
    ("generator_device", pa.string()),
    ("params_json", pa.string()),
    ("options_json", pa.string()),  # pipeline options the row set: scheduler, offload, FreeU...
    ("components_json", pa.string()),  # separately stored parts: name -> {source, revision}
    ("parent_job_id", pa.string()),  # the job `videosweep rerun --set` derived this one from
]
_OUTPUT = [
    ("video_path", pa.string()),  # relative to the output root
    ("video_sha256", pa.string()),
    ("video_frames", pa.int32()),
    ("video_width", pa.int32()),
    ("video_height", pa.int32()),
    ("video_fps", pa.float64()),
    ("load_s", pa.float64()),
    ("cache_hit", pa.bool_()),
    ("denoise_s", pa.float64()),  # input encoding + denoising loop
    ("decode_s", pa.float64()),  # VAE decode + postprocess
    ("export_s", pa.float64()),  # mp4 encode + write
    ("export_overlapped", pa.bool_()),  # exported on a thread while the next job rendered
    ("total_s", pa.float64()),  # the whole job, load included
    ("peak_gpu_mem_bytes", pa.int64()),
    ("memory_rung", pa.string()),  # the rung of the memory ladder that rendered it (tasks.memory): "asked" first
    ("memory_fallbacks", pa.string()),  # JSON list of the rungs that ran out of memory before it
    ("batch_size", pa.int32()),  # videos in the pipeline call that rendered it (run --batch); 1 alone
    ("batch_error", pa.string()),  # why the batched call it was in failed (it was then rendered alone)
    *((name, pa.float64()) for name in METRICS),  # tasks.metrics: motion, flicker, first-frame fidelity
    ("python_version", pa.string()),
    ("torch_version", pa.string()),
    ("diffusers_version", pa.string()),
    ("transformers_version", pa.string()),
    ("videosweep_version", pa.string()),
    ("git_commit", pa.string()),
    ("host", pa.string()),
    ("worker", pa.string()),
    ("queued_at", pa.timestamp("us", tz="UTC")),  # when its shard was handed to the workers
    ("started_at", pa.timestamp("us", tz="UTC")),
    ("finished_at", pa.timestamp("us", tz="UTC")),
]


def _arrow_type(annotation: Any) -> pa.DataType:
    """The Parquet column type of a pydantic field (``int | None`` -> int64, ``Path`` -> string)."""
    args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        annotation = args[0]
    if typing.get_origin(annotation) is typing.Literal:
        annotation = type(typing.get_args(annotation)[0])
    mapping = {bool: pa.bool_(), int: pa.int64(), float: pa.float64(), str: pa.string(), Path: pa.string()}
    if annotation not in mapping:
        raise TypeError(f"no Parquet column type for parameter annotation {annotation!r}")
    return mapping[annotation]


def input_hash_column(field: str) -> str:
    """The column holding the sha256 of an input file (``input_image_sha256``), or of the job it came from."""
    return f"input_{field}_sha256"


def param_columns() -> list[tuple[str, pa.DataType]]:
    """One column per parameter of every family (and ``<input>_sha256`` per input file), same name, one type."""
    columns: dict[str, pa.DataType] = {}
    fixed = {name for name, _ in _FIXED + _OUTPUT}
    for family, module in FAMILIES.items():
        wanted = [(name, _arrow_type(field.annotation)) for name, field in module.Params.model_fields.items()]
        wanted += [(input_hash_column(name), pa.string()) for name in input_fields(module.Params)]
        for name, arrow_type in wanted:
            if name in fixed or columns.setdefault(name, arrow_type) != arrow_type:
                raise TypeError(f"parameter {name!r} of family {family!r} clashes with another column of that name")
    return list(columns.items())


SCHEMA = pa.schema(_FIXED + param_columns() + _OUTPUT)


def write_record(out_root: Path, record: dict[str, Any]) -> Path:
    """Write one attempt's record as its own Parquet part; unknown keys are an error, missing ones null."""
    import pyarrow.parquet as pq

    unknown = set(record) - set(SCHEMA.names)
    if unknown:
        raise KeyError(f"record keys not in the results schema: {sorted(unknown)}")
    table = pa.Table.from_pylist([record], schema=SCHEMA)
    stamp = record["finished_at"].strftime("%Y%m%dT%H%M%S%f")
    path = out_root / RESULTS_DIR / f"part-{stamp}-{record['job_id']}-{record['attempt']}.parquet"
    return write_atomic(path, lambda scratch: pq.write_table(table, scratch))


def read_results(out_root: Path, columns: list[str] | None = None):
    """Every record under ``out_root`` as a DataFrame (empty, with the schema's columns, if none)."""
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    parts = sorted((out_root / RESULTS_DIR).glob("part-*.parquet"))
    if not parts:
        return SCHEMA.empty_table().select(columns or SCHEMA.names).to_pandas()
    # Unify rather than trust the first file: parts written by an older version may lack columns.
    schema = pa.unify_schemas([SCHEMA] + [pq.read_schema(part) for part in parts])
    return ds.dataset(parts, schema=schema, format="parquet").to_table(columns=columns).to_pandas()


@dataclass(frozen=True)
class History:
    """What earlier runs left in an output root."""

    finished: frozenset[str]  # jobs with an ``ok`` record whose video is still on disk: a rerun skips them
    attempts: dict[str, int]  # records per job: the next attempt is one more
    failed: frozenset[str]  # jobs with records but no video: what ``--retry-failed`` renders


def history(out_root: Path) -> History:
    table = read_results(out_root, ["job_id", "status", "video_path"])
    done = table[table["status"] == "ok"]
    finished = {job_id for job_id, video in zip(done["job_id"], done["video_path"]) if (out_root / video).is_file()}
    failed = set(table["job_id"]) - finished
    return History(frozenset(finished), table["job_id"].value_counts().to_dict(), frozenset(failed))
