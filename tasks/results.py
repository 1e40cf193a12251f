"""The results table: one Parquet part per job attempt under ``OUT/results/``, with one explicit schema.

Each part is written under a dot-name and renamed, so readers (``pandas.read_parquet(OUT /
"results")``) never see a half-written file, and a killed run loses at most the job in flight.
Every part carries every column (the parameters of all families, null where a family lacks
one), because a directory read takes its schema from one file and would drop the others. The
schema is derived from the record (tasks.record.JobRecord); this module stores and reads it, and
says from the parts on disk what is done and what is left to render (:func:`history`, :func:`pending`).

Many small parts read slowly (one file open and footer each), so :func:`compact` merges them into
one ``part-compacted-*.parquet`` (every row, every column: the same table reads back), at the end
of a run and on ``videosweep compact``. A concurrent reader never sees an attempt twice or misses
one: see :func:`compact` for the order of its steps, and :func:`read_results` for the reader's side.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from .files import write_atomic
from .layout import RESULTS_DIR
from .models import file_sha256
from .record import Int32, own_columns, result_columns

if TYPE_CHECKING:
    from .jobs import Job
    from .manifest import Manifest

_ARROW_TYPES = {
    bool: pa.bool_(),
    int: pa.int64(),
    Int32: pa.int32(),
    float: pa.float64(),
    str: pa.string(),
    datetime: pa.timestamp("us", tz="UTC"),
}


def arrow_type(annotation: Any) -> pa.DataType:
    """The column type of a record field's annotation (``str | None`` -> string: every column is nullable)."""
    args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        annotation = args[0]
    return _ARROW_TYPES[annotation]


#: The results table's schema, derived from the record (tasks.record.result_columns): its parameter columns are
#: those of every family discovered, so a part written for one family reads with the others'.
SCHEMA = pa.schema([(name, arrow_type(annotation)) for name, annotation in result_columns()])


@functools.cache
def schema_of(family: str | None) -> pa.Schema:
    """The schema of a part of ``family``: :data:`SCHEMA`, and the columns of a family by class name after it."""
    return pa.schema([*SCHEMA, *((name, arrow_type(kind)) for name, kind in own_columns(family))])


def write_record(out_root: Path, record: Mapping[str, Any]) -> Path:
    """Write one attempt's record (a JobRecord, or its row) as its own Parquet part; unknown keys are an error,
    missing ones null."""
    import pyarrow.parquet as pq

    row = dict(record)
    schema = schema_of(row.get("family"))
    unknown = set(row) - set(schema.names)
    if unknown:
        raise KeyError(f"record keys not in the results schema: {sorted(unknown)}")
    table = pa.Table.from_pylist([row], schema=schema)
    stamp = row["finished_at"].strftime("%Y%m%dT%H%M%S%f")
    path = out_root / RESULTS_DIR / f"part-{stamp}-{row['job_id']}-{row['attempt']}.parquet"
    return write_atomic(path, lambda scratch: pq.write_table(table, scratch))


def is_recorded(out_root: Path, job_id: str, attempt: int) -> bool:
    """Whether attempt ``attempt`` of job ``job_id`` has its part already (:func:`write_record`'s names).

    For the attempts of the run asking: none is compacted while it renders (compaction holds the
    root, or runs at the run's end), so its part still has its own name.
    """
    return any((out_root / RESULTS_DIR).glob(f"part-*-{job_id}-{attempt}.parquet"))


def read_results(out_root: Path, columns: list[str] | None = None):
    """Every record under ``out_root`` as a DataFrame (empty, with the schema's columns, if none), one row per
    attempt, in the order the attempts finished (then job id and attempt: the order of the part names).

    A part that cannot be read (a truncated file, a stray copy) is skipped with a warning naming
    it: its job counts as never recorded and renders again. A run sets such parts aside
    (:func:`set_aside_unreadable`), so the warning is given once. A part that vanishes while it is
    read was replaced by a compaction meanwhile: the read starts again, on the parts then live.
    """
    for _ in range(_READ_TRIES - 1):
        try:
            return _read_live(out_root, columns)
        except FileNotFoundError:
            continue
    return _read_live(out_root, columns)


#: Reads of the results that start again when a part they listed was compacted away meanwhile, before one gives up.
_READ_TRIES = 20
#: The order of the rows read: when each attempt finished, then job id and attempt (the order of the part names).
_ROW_ORDER = ["finished_at", "job_id", "attempt"]


def _read_live(out_root: Path, columns: list[str] | None):
    """One try of :func:`read_results`: FileNotFoundError if a part it listed is gone before it was read."""
    parts = live_parts(out_root)
    table, _ = _read_parts(parts, None if columns is None else list(dict.fromkeys(columns + _ROW_ORDER)))
    if table is None:
        return SCHEMA.empty_table().select(columns or SCHEMA.names).to_pandas()
    frame = table.to_pandas()
    keys = [name for name in _ROW_ORDER if name in frame.columns]
    frame = frame.sort_values(keys, kind="stable", na_position="first").reset_index(drop=True)  # lexsort: stable
    return frame if columns is None else frame[columns]


def _read_parts(parts: list[Path], columns: list[str] | None = None) -> tuple[pa.Table | None, list[Path]]:
    """The rows of the readable ones of ``parts``, in one table of every column (None if none reads), and those parts.

    FileNotFoundError, not a warning, for a part that is gone: the caller's listing is out of date.
    """
    import pyarrow.dataset as ds

    parts, schemas = _readable_parts(parts)
    if not parts:
        return None, []
    # Unify rather than trust the first file: parts written by an older version may lack columns.
    schema = pa.unify_schemas([SCHEMA] + schemas, promote_options="permissive")
    wanted = None if columns is None else [name for name in columns if name in schema.names]
    try:
        return ds.dataset(parts, schema=schema, format="parquet").to_table(columns=wanted), parts
    except FileNotFoundError:
        raise
    except (pa.ArrowException, OSError):  # a part whose footer reads but whose data does not: find it
        tables, read = [], []
        for part in parts:
            try:
                tables.append(ds.dataset([part], schema=schema, format="parquet").to_table(columns=wanted))
                read.append(part)
            except FileNotFoundError:
                raise
            except (pa.ArrowException, OSError) as exc:
                _warn_unreadable(part, exc)
        return (pa.concat_tables(tables) if tables else None), read


def run_records(out_root: Path, run_id: str, seen: Iterable[Mapping[str, Any]] = ()) -> list[Mapping[str, Any]]:
    """The records run ``run_id`` wrote under ``out_root`` (the truth: a worker that died mid-shard wrote the jobs
    it finished), and those of ``seen`` that are not there (a full disk kept them off it)."""
    table = read_results(out_root)
    records = table[table["run_id"] == run_id].to_dict(orient="records")
    written = {(record["job_id"], record["attempt"]) for record in records}
    return records + [record for record in seen if (record["job_id"], record["attempt"]) not in written]


UNREADABLE_DIR = "_unreadable"  # pyarrow, and so pandas.read_parquet(OUT / "results"), skips "_" folders
_warned: set[Path] = set()
log = logging.getLogger("videosweep")


def _readable_parts(parts: list[Path]) -> tuple[list[Path], list[pa.Schema]]:
    """Those of ``parts`` whose footer reads, and their schemas; the others are warned about (FileNotFoundError
    for one that is gone)."""
    import pyarrow.parquet as pq

    readable, schemas = [], []
    for part in parts:
        try:
            schemas.append(pq.read_schema(part))
            readable.append(part)
        except FileNotFoundError:
            raise
        except (pa.ArrowException, OSError) as exc:
            _warn_unreadable(part, exc)
    return readable, schemas


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


#: Where a compacted part's name starts: it holds the rows of many parts, every column (:func:`compact`).
COMPACTED_PREFIX = "part-compacted-"
#: The compaction under way (or killed): the part it writes and the names of those it replaces. Readers of
#: the folder skip "_" names (pyarrow, and so pandas.read_parquet), as they do ``_unreadable/``.
JOURNAL = "_compaction.json"
#: Small parts a run leaves as they are at its end: below this, reading them costs little more than one part.
AUTO_COMPACT_PARTS = 32
#: Compacted parts (a run's end adds one) kept side by side before a run's end merges them all.
MAX_COMPACTED = 8


@dataclass(frozen=True)
class _Journal:
    part: str  # the compacted part's name
    replaces: frozenset[str]  # the names of the parts whose rows it holds


def live_parts(out_root: Path) -> list[Path]:
    """The results parts a reader reads: every part, less those a published compacted part replaces.

    The folder is listed before the journal is read: a compacted part published after the listing
    is not in it, so the parts it replaces are read instead, or, if deleted meanwhile, the read
    starts again (:func:`read_results`). Without a journal, every part listed is live.
    """
    folder = out_root / RESULTS_DIR
    listing = sorted(folder.glob("part-*.parquet"))
    journal = _journal(folder)
    if journal is None or folder / journal.part not in listing:
        return listing
    return [part for part in listing if part.name not in journal.replaces]


def _journal(folder: Path) -> _Journal | None:
    """The compaction journal of ``folder``; None without one (it is written whole: one that does not parse was
    not written by :func:`compact`, and is ignored)."""
    try:
        recorded = json.loads((folder / JOURNAL).read_text())
        part, replaces = recorded["part"], recorded["replaces"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not (isinstance(part, str) and _is_part_name(part) and isinstance(replaces, list)):
        return None
    return _Journal(part, frozenset(name for name in replaces if isinstance(name, str) and _is_part_name(name)))


def _is_part_name(name: str) -> bool:
    """A results part's bare name (a journal never names a file elsewhere)."""
    return name == Path(name).name and name.startswith("part-") and name.endswith(".parquet")


@dataclass(frozen=True)
class Compaction:
    """What :func:`compact` did to a results folder."""

    parts_before: int
    parts_after: int
    bytes_before: int
    bytes_after: int
    merged: int  # parts whose rows went into the new compacted part (0: nothing to do)
    rows: int  # rows of the new compacted part

    def format(self) -> str:
        if not self.merged:
            return f"nothing to compact: {self.parts_before} part(s), {_mib(self.bytes_before)}"
        return (
            f"compacted {self.merged} parts ({self.rows} attempts) into one: {_files(self.parts_before)}, "
            f"{_mib(self.bytes_before)} before; {_files(self.parts_after)}, {_mib(self.bytes_after)} after"
        )


def _files(count: int) -> str:
    return f"{count} file" + ("" if count == 1 else "s")


def _mib(count: int) -> str:
    return f"{count / 2**20:.2f} MiB"


def compact(out_root: Path, min_parts: int = 2, keep_compacted: bool = False) -> Compaction:
    """Merge the results parts of ``out_root`` into one compacted part: :func:`read_results` reads the same table.

    The caller holds the root (tasks.outroot.claim), so no run writes a part meanwhile. Nothing is
    merged unless ``min_parts`` parts or more would be; ``keep_compacted`` merges the small parts only
    (a run's end rewrites what it added, not the whole store) until MAX_COMPACTED compacted parts
    have piled up. Unreadable parts are left where they are (a run sets them aside).

    The steps, in this order; a reader, or a kill after any of them, sees every attempt once:

    1. finish a compaction that was killed (:func:`_finish_killed`);
    2. read the parts to merge; write the journal: the compacted part's name and the names of those it replaces;
    3. write the compacted part under a scratch name, rename it to its name (tasks.files.write_atomic):
       from now on, readers skip the parts the journal names (:func:`live_parts`);
    4. delete the replaced parts, then the journal.

    Killed before 3, the journal names a part that does not exist, and readers ignore it; killed
    after, the replaced parts are skipped until the next compaction deletes them (1).
    """
    import pyarrow.parquet as pq

    folder = out_root / RESULTS_DIR
    _finish_killed(folder)
    parts = sorted(folder.glob("part-*.parquet"))
    before = _bytes(parts)
    nothing = Compaction(len(parts), len(parts), before, before, 0, 0)
    compacted = [part for part in parts if part.name.startswith(COMPACTED_PREFIX)]
    if keep_compacted and len(compacted) < MAX_COMPACTED:
        parts = [part for part in parts if part not in compacted]
    if len(parts) < min_parts:
        return nothing
    table, merged = _read_parts(parts)
    if len(merged) < 2:
        return nothing
    table = table.sort_by([(name, "ascending") for name in _ROW_ORDER if name in table.column_names])
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
    target = folder / f"{COMPACTED_PREFIX}{stamp}-{os.getpid()}.parquet"
    journal = json.dumps({"part": target.name, "replaces": [part.name for part in merged]})
    write_atomic(folder / JOURNAL, lambda scratch: scratch.write_text(journal))
    write_atomic(target, lambda scratch: pq.write_table(table, scratch, compression="zstd"))
    for part in merged:
        part.unlink(missing_ok=True)
    (folder / JOURNAL).unlink()
    after = sorted(folder.glob("part-*.parquet"))
    return Compaction(nothing.parts_before, len(after), before, _bytes(after), len(merged), table.num_rows)


def compact_after_run(out_root: Path) -> Compaction | None:
    """:func:`compact` at the end of a run (which holds the root): its small parts, once there are
    AUTO_COMPACT_PARTS; a disk too full to write the merged part leaves the parts as they are."""
    try:
        return compact(out_root, AUTO_COMPACT_PARTS, keep_compacted=True)
    except OSError as exc:
        log.warning(f"left the results parts of {out_root} as they are ({exc}); `videosweep compact {out_root}` merges them")
        return None


def _finish_killed(folder: Path) -> None:
    """End a compaction that was killed: the parts its published part replaces go, then its journal."""
    journal = _journal(folder)
    if journal is not None and (folder / journal.part).is_file():
        for name in journal.replaces:
            (folder / name).unlink(missing_ok=True)
    (folder / JOURNAL).unlink(missing_ok=True)


def _bytes(parts: list[Path]) -> int:
    return sum(part.stat().st_size for part in parts if part.exists())


@dataclass(frozen=True)
class History:
    """What earlier runs left in an output root."""

    finished: frozenset[str]  # jobs whose latest ok record's video is on disk, intact: a rerun skips them
    attempts: dict[str, int]  # records per job: the next attempt is one more
    failed: frozenset[str]  # jobs with records but no intact video: what ``--retry-failed`` renders
    frames: frozenset[str] = frozenset()  # finished jobs whose lossless frames (for the jobs taking their video) are intact


def history(out_root: Path) -> History:
    """What is done in ``out_root``: a job is finished when the video of its latest ok record is still the one recorded."""
    if not live_parts(out_root):  # a new root: nothing to read (nor pandas to import, 0.4 s before the first video)
        return History(frozenset(), {}, frozenset())
    columns = ["job_id", "attempt", "status", "video_path", *VIDEO_IDENTITY, "frames_path", *FRAMES_IDENTITY]
    table = read_results(out_root, columns)
    done = table[table["status"] == "ok"].sort_values("attempt").drop_duplicates("job_id", keep="last")
    records = done.to_dict(orient="records")
    finished = {record["job_id"] for record in records if video_intact(out_root, record)}
    frames = {record["job_id"] for record in records if record["job_id"] in finished and frames_intact(out_root, record)}
    failed = set(table["job_id"]) - finished
    return History(frozenset(finished), table["job_id"].value_counts().to_dict(), frozenset(failed), frozenset(frames))


def pending(table: Manifest, out_root: Path, force: bool, retry_failed: bool = False) -> tuple[History, list[Job]]:
    """What earlier runs left in ``out_root``, and the jobs of ``table`` still to render.

    A finished job whose video a job still to render takes, but whose lossless frames are not
    there intact (rendered before videosweep kept them, or the file is gone or changed), renders
    again first, so that the job taking its video reads its frames exactly rather than its H.264 mp4.
    """
    done = history(out_root)
    if retry_failed:
        todo = {job.job_id for job in table.jobs if job.job_id in done.failed}
    else:
        todo = {job.job_id for job in table.jobs if force or job.job_id not in done.finished}
    known = {job.job_id: job for job in table.jobs}
    wanted = list(todo)
    while wanted:  # sources of sources too: a chain of three whose middle job renders again
        for source in known[wanted.pop()].depends_on:
            if source in known and source not in todo and source not in done.frames:
                todo.add(source)
                wanted.append(source)
    return done, [job for job in table.jobs if job.job_id in todo]


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
