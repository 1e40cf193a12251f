"""The results table: one Parquet part per job attempt under ``OUT/results/``, with one explicit schema.

Each part is written under a dot-name and renamed, so readers (``pandas.read_parquet(OUT /
"results")``) never see a half-written file, and a killed run loses at most the job in flight.
Every part carries every column (the parameters of all families, null where a family lacks
one), because a directory read takes its schema from one file and would drop the others.
"""

from __future__ import annotations

import functools
import logging
import os
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from .files import write_atomic
from .metrics import METRICS
from .models import FAMILIES, file_sha256
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
    ("video_bytes", pa.int64()),  # the file's size as written; with its mtime, resume's cheap check (history)
    ("video_mtime_ns", pa.int64()),
    ("video_frames", pa.int32()),
    ("video_width", pa.int32()),
    ("video_height", pa.int32()),
    ("video_fps", pa.float64()),
    ("frames_path", pa.string()),  # its frames kept losslessly (FFV1 .mkv), for the jobs that take its video; else null
    ("frames_sha256", pa.string()),
    ("frames_bytes", pa.int64()),
    ("frames_mtime_ns", pa.int64()),
    ("chain_inputs_json", pa.string()),  # per "@<job_id>" input: the file read, whether lossless, its sha256
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
    """Every record under ``out_root`` as a DataFrame (empty, with the schema's columns, if none).

    A part that cannot be read (a truncated file, a stray copy) is skipped with a warning naming
    it: its job counts as never recorded and renders again. A run sets such parts aside
    (:func:`set_aside_unreadable`), so the warning is given once.
    """
    import pyarrow.dataset as ds

    parts, schemas = _readable_parts(out_root)
    if not parts:
        return SCHEMA.empty_table().select(columns or SCHEMA.names).to_pandas()
    # Unify rather than trust the first file: parts written by an older version may lack columns.
    schema = pa.unify_schemas([SCHEMA] + schemas)
    try:
        return ds.dataset(parts, schema=schema, format="parquet").to_table(columns=columns).to_pandas()
    except (pa.ArrowException, OSError):  # a part whose footer reads but whose data does not: find it
        tables = []
        for part in parts:
            try:
                tables.append(ds.dataset([part], schema=schema, format="parquet").to_table(columns=columns))
            except (pa.ArrowException, OSError) as exc:
                _warn_unreadable(part, exc)
        return pa.concat_tables(tables).to_pandas() if tables else SCHEMA.empty_table().select(columns or SCHEMA.names).to_pandas()


UNREADABLE_DIR = "_unreadable"  # pyarrow, and so pandas.read_parquet(OUT / "results"), skips "_" folders
_warned: set[Path] = set()
log = logging.getLogger("videosweep")


def _readable_parts(out_root: Path) -> tuple[list[Path], list[pa.Schema]]:
    """The results parts whose footer reads, and their schemas; the others are warned about."""
    import pyarrow.parquet as pq

    parts, schemas = [], []
    for part in sorted((out_root / RESULTS_DIR).glob("part-*.parquet")):
        try:
            schemas.append(pq.read_schema(part))
            parts.append(part)
        except (pa.ArrowException, OSError) as exc:
            _warn_unreadable(part, exc)
    return parts, schemas


def _warn_unreadable(part: Path, exc: Exception) -> None:
    if part not in _warned:
        _warned.add(part)
        log.warning(f"skipped an unreadable results part {part} ({type(exc).__name__}: {str(exc)[:200]}); its job renders again")


def set_aside_unreadable(out_root: Path) -> list[Path]:
    """Move every results part that cannot be read to ``results/_unreadable/``; return where each went."""
    import pyarrow.parquet as pq

    moved = []
    for part in sorted((out_root / RESULTS_DIR).glob("part-*.parquet")):
        try:
            pq.read_metadata(part)
            continue
        except (pa.ArrowException, OSError) as exc:
            reason = f"{type(exc).__name__}: {str(exc)[:200]}"
        target = out_root / RESULTS_DIR / UNREADABLE_DIR / part.name
        target.parent.mkdir(exist_ok=True)
        os.replace(part, target)
        _warned.add(part)
        log.warning(f"set aside an unreadable results part ({reason}): {target}; its job renders again")
        moved.append(target)
    return moved


@dataclass(frozen=True)
class History:
    """What earlier runs left in an output root."""

    finished: frozenset[str]  # jobs whose latest ok record's video is on disk, intact: a rerun skips them
    attempts: dict[str, int]  # records per job: the next attempt is one more
    failed: frozenset[str]  # jobs with records but no intact video: what ``--retry-failed`` renders
    frames: frozenset[str] = frozenset()  # finished jobs whose lossless frames (for the jobs taking their video) are intact


def history(out_root: Path) -> History:
    """What is done in ``out_root``: a job is finished when the video of its latest ok record is still the one recorded."""
    columns = ["job_id", "attempt", "status", "video_path", *VIDEO_IDENTITY, "frames_path", *FRAMES_IDENTITY]
    table = read_results(out_root, columns)
    done = table[table["status"] == "ok"].sort_values("attempt").drop_duplicates("job_id", keep="last")
    records = done.to_dict(orient="records")
    finished = {record["job_id"] for record in records if video_intact(out_root, record)}
    frames = {record["job_id"] for record in records if record["job_id"] in finished and frames_intact(out_root, record)}
    failed = set(table["job_id"]) - finished
    return History(frozenset(finished), table["job_id"].value_counts().to_dict(), frozenset(failed), frozenset(frames))


#: The columns that identify a job's video file: its size and modification time as written, and its sha256.
VIDEO_IDENTITY = ("video_sha256", "video_bytes", "video_mtime_ns")
#: The same for the file that keeps its frames losslessly (``frames_path``), where one was written.
FRAMES_IDENTITY = ("frames_sha256", "frames_bytes", "frames_mtime_ns")


def video_identity(path: Path, kind: str = "video") -> dict[str, Any]:
    """A written video's :data:`VIDEO_IDENTITY` (``kind="frames"``: its lossless frames' :data:`FRAMES_IDENTITY`), for its record."""
    stat = path.stat()
    return {f"{kind}_sha256": file_sha256(path), f"{kind}_bytes": stat.st_size, f"{kind}_mtime_ns": stat.st_mtime_ns}


def video_intact(out_root: Path, record: dict[str, Any], kind: str = "video") -> bool:
    """Whether the video a record names is still the file it recorded (``kind="frames"``: its lossless frames).

    Cheap when nothing changed (size and modification time as recorded); otherwise, or for a
    record without them, the file's sha256 must be the recorded one. A truncated, rewritten or
    missing video is not intact: its job renders again.
    """
    video = record.get(f"{kind}_path")
    if not isinstance(video, str):
        return False
    path = out_root / video
    try:
        stat = path.stat()
    except OSError:
        return False
    what, then = ("video", "it renders again") if kind == "video" else (
        "lossless frames", "the job renders again before a job that takes its video"
    )
    recorded_bytes = record.get(f"{kind}_bytes")
    if _known(recorded_bytes) and stat.st_size != int(recorded_bytes):
        log.warning(f"{path} is not the {what} its record names ({stat.st_size} bytes, recorded {int(recorded_bytes)}): {then}")
        return False
    if _known(record.get(f"{kind}_mtime_ns")) and stat.st_mtime_ns == int(record[f"{kind}_mtime_ns"]):
        return True
    if _sha256_of(str(path), stat.st_size, stat.st_mtime_ns) != record.get(f"{kind}_sha256"):
        log.warning(f"{path} is not the {what} its record names (sha256 differs): {then}")
        return False
    return True


@functools.lru_cache(maxsize=16384)
def _sha256_of(path: str, size: int, mtime_ns: int) -> str:
    """A file's sha256, read once per process while its size and modification time stay: the command line
    and the flow inside it both ask what a run may skip (an old root's records carry no mtime)."""
    return file_sha256(Path(path))


def frames_intact(out_root: Path, record: dict[str, Any]) -> bool:
    """Whether the lossless frames a record names (``frames_path``) are still the file it recorded; False where it kept none."""
    return video_intact(out_root, record, "frames")


def _known(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and value != value)
