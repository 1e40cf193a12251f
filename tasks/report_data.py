"""What ``report.html``'s sweep view, detail panel and results table are built from: one JSON object.

Python decides what is shown, the page's script (``report_page/page.js``) only lays it out: every
text in the object is already :func:`tasks.text.printable` (one line, no escape sequence or control
character; error messages and manifests line by line) and cut to a length a page can hold, and
the script puts it on the page as text, never as HTML.

- ``axes``: each parameter that varies among the jobs' latest attempts, with its distinct values
  as labels, in order (numbers by value). A job holds an index into each axis's values, so two
  100k-character prompts that share their start are still two values.
- ``jobs``: per job (latest attempt) its status, axis values, measures (metrics and timings),
  video and poster (paths relative to the output root), the record values that differ between
  jobs, its ``videosweep rerun`` line, and its other attempts: earlier ones in this root, and
  the attempts of it (or of jobs derived from it with ``--set``) under ``OUT/reruns``.
- ``common``: the record values every job shares (software, the prompt when it is not swept...),
  stated once rather than per job.
- ``manifests``: the manifests as written, kept by content under ``OUT/inputs/``.
"""

from __future__ import annotations

import json
import logging
import math
import shlex
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .files import write_atomic
from .layout import KEPT_INPUTS_DIR, LOCK_FILE, POSTERS_DIR, RERUNS_DIR, RESULTS_DIR
from .metrics import METRICS
from .models import file_sha256
from .provenance import KEEP_MAX_BYTES
from .query import cell_text, latest_attempts, root_summary, varying_parameters, with_swept_columns
from .results import read_results
from .text import printable, printable_lines
from .video import write_poster

POSTER_WIDTH = 320  # pixels: twice a cell's default width, so posters stay sharp on a dense screen
VALUE_LIMIT = 300  # characters of a parameter value in a label, filter or table cell
RECORD_LIMIT = 4000  # characters of one record value in the detail panel (a prompt, a config)
ERROR_LIMIT = 8000  # characters of an error message
MANIFEST_LIMIT = 256 * 1024  # characters of a manifest shown on the page; the whole file is linked
#: Timings of a job, in the order its time is spent; with ``METRICS``, what a cell can be shaded and filtered by.
TIMINGS = {"load_s": "load", "denoise_s": "denoise", "decode_s": "decode", "export_s": "export", "total_s": "total"}
#: Record columns shown in the detail panel besides the parameters (``params_json``, ``options_json``).
RECORD_COLUMNS = (
    "job_index", "origin", "model", "model_id", "model_revision", "pipeline_class", "scheduler_class", "dtype",
    "variant", "seed", "generator_device", "parent_job_id", "manifest_name", "run_id", "attempt", "device",
    "gpu_name", "worker", "batch_size", "batch_error", "memory_rung", "memory_fallbacks", "cache_hit",
    "export_overlapped", "peak_gpu_mem_bytes", "video_width", "video_height", "video_frames", "video_fps",
    "video_sha256", "audio_sample_rate", "audio_channels", "audio_duration_s", "audio_sha256", "queued_at", "started_at", "finished_at", "python_version", "torch_version",
    "diffusers_version", "transformers_version", "videosweep_version", "git_commit",
)  # fmt: skip

log = logging.getLogger(__name__)


def page_data(out_root: Path, attempts) -> dict[str, Any]:
    """The page's data for ``out_root``, whose every attempt is ``attempts`` (``read_results``).

    Writes what the page links and lacks: a poster per video, a kept copy of each manifest.
    """
    latest = with_swept_columns(latest_attempts(attempts))
    records = latest.to_dict(orient="records")
    axes = _axes(latest, records)
    measures = [name for name in (*METRICS, *TIMINGS) if name in latest.columns and latest[name].notna().any()]
    posters = write_posters(out_root, records)
    details = [_record_values(record) for record in records]
    shared = {key for key in details[0] if all(key in other and other[key] == details[0][key] for other in details)} if details else set()
    others = _other_attempts(out_root, attempts, latest)
    rerun_root = shlex.quote(str(out_root.resolve()))
    jobs = []
    for record, detail in zip(records, details):
        job_id = record["job_id"]
        video = record.get("video_path")
        frames, fps = _number(record.get("video_frames")), _number(record.get("video_fps"))
        measured = {name: _number(record.get(name)) for name in measures}
        jobs.append(
            {
                "id": job_id,
                "n": _number(record.get("job_index")),
                "attempt": _number(record.get("attempt")),
                "status": record.get("status") or "rendering",
                "values": [axis["index"].get(_key(record.get(axis["name"])), -1) for axis in axes],
                "measures": {name: value for name, value in measured.items() if value is not None},
                "video": video if isinstance(video, str) and (out_root / video).is_file() else None,
                "poster": posters.get(job_id),
                "width": _number(record.get("video_width")),
                "height": _number(record.get("video_height")),
                "seconds": frames / fps if frames and fps else None,
                "audio": _audio(record),
                "error": _error(record),
                "record": [[key, text] for key, text in detail.items() if key not in shared],
                "rerun": printable(f"videosweep rerun {rerun_root} {job_id}"),
                "others": others.get(job_id, []),
                "manifest": printable(cell_text(record.get("manifest_name"))),
            }
        )
    summary = root_summary(attempts)
    return {
        "title": printable("videosweep: " + (", ".join(summary.manifests) or "no results yet")),
        "axes": [{"name": printable(axis["name"]), "labels": axis["labels"]} for axis in axes],
        "measures": [{"name": name, "about": METRICS.get(name, f"{TIMINGS.get(name)} time, seconds")} for name in measures],
        "timings": list(TIMINGS),
        "jobs": jobs,
        "common": [[key, text] for key, text in (details[0].items() if details else []) if key in shared],
        "manifests": kept_manifests(out_root, attempts),
        "lock": LOCK_FILE if (out_root / LOCK_FILE).is_file() else None,
    }


def to_script_json(data: dict[str, Any]) -> str:
    """``data`` as JSON safe inside ``<script type="application/json">``: no ``</script>`` or ``<!--`` can end or
    change the element (``<``, ``>`` and ``&`` as \\u escapes), and U+2028/9 escaped for old parsers."""
    text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    for char in "<>&\u2028\u2029":
        text = text.replace(char, f"\\u{ord(char):04x}")
    return text


# -- axes: what varies, its values in order ----------------------------------------------------------


def _axes(latest, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each varying parameter: its name, its values' labels in order, and value key -> index."""
    axes = []
    for name in varying_parameters(latest) if len(latest) else []:
        values = {_key(record.get(name)): record.get(name) for record in records}
        ordered = sorted(values, key=lambda key: _order(values[key]))
        axes.append(
            {
                "name": name,
                "labels": [printable(cell_text(values[key]) or "(none)", VALUE_LIMIT) for key in ordered],
                "index": {key: index for index, key in enumerate(ordered)},
            }
        )
    return axes


def _key(value: Any) -> Any:
    """A hashable key for a value: nulls (None, NaN) are one key."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return getattr(value, "item", lambda: value)()


def _order(value: Any) -> tuple:
    """Numbers by value, then text; nulls last."""
    value = _key(value)
    if value is None:
        return (2, 0, "")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, value, "")
    return (1, 0, str(value))


def _number(value: Any) -> float | int | None:
    value = _key(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float) and math.isinf(value)):
        return None
    return value


# -- a job's record as people read it ------------------------------------------------------------------


def _audio(record: dict[str, Any]) -> dict[str, Any] | None:
    """What the page says of a job's sound (its mp4's AAC stream, which the cell plays muted until asked), or None."""
    rate = _number(record.get("audio_sample_rate"))
    if not rate:
        return None
    return {
        "rate": rate,
        "channels": _number(record.get("audio_channels")),
        "seconds": _number(record.get("audio_duration_s")),
    }


def _record_values(record: dict[str, Any]) -> dict[str, str]:
    """Label -> text of what made a job and where it ran: its parameters and options, then RECORD_COLUMNS."""
    values: dict[str, Any] = {}
    for column in ("params_json", "options_json"):
        text = record.get(column)
        try:
            values.update(json.loads(text) if isinstance(text, str) else {})
        except ValueError:
            values[column] = text
    values.update((column, record.get(column)) for column in RECORD_COLUMNS)
    shown = {}
    for key, value in values.items():
        text = json.dumps(value, sort_keys=True, ensure_ascii=False) if isinstance(value, (dict, list)) else cell_text(value)
        if text:
            shown[printable(key, VALUE_LIMIT)] = printable(text, RECORD_LIMIT)
    return shown


def _error(record: dict[str, Any]) -> str | None:
    error_type, error = cell_text(record.get("error_type")), cell_text(record.get("error"))
    if not (error_type or error):
        return None
    return printable_lines(f"{error_type}: {error}" if error_type else error)[:ERROR_LIMIT]


def _other_attempts(out_root: Path, attempts, latest) -> dict[str, list[dict[str, Any]]]:
    """Job id -> its attempts other than the latest: earlier ones in this root, then those under OUT/reruns
    (the job rendered again, or a job made from it with ``--set``), each with its video where it still exists."""
    shown = set(zip(latest["job_id"], latest["attempt"]))
    found: dict[str, list[dict[str, Any]]] = {}
    sources = [("", attempts)]
    if (out_root / RERUNS_DIR / RESULTS_DIR).is_dir():
        sources.append((f"{RERUNS_DIR}/", read_results(out_root / RERUNS_DIR)))
    for prefix, table in sources:
        ordered = table.sort_values(["attempt", "finished_at"], kind="stable", na_position="first")
        for record in ordered.to_dict(orient="records"):
            if not prefix and (record["job_id"], record["attempt"]) in shown:
                continue
            parent = record.get("parent_job_id")
            owner = parent if prefix and isinstance(parent, str) and parent else record["job_id"]
            video = record.get("video_path")
            if prefix or record["job_id"] != owner:
                video = f"{prefix}{video}" if isinstance(video, str) else None
            else:  # an earlier attempt in this root wrote the video the latest one replaced
                video = None
            found.setdefault(owner, []).append(
                {
                    "where": prefix or "this root",
                    "job": record["job_id"],
                    "attempt": _number(record.get("attempt")),
                    "run": printable(cell_text(record.get("run_id"))),
                    "status": printable(cell_text(record.get("status")) or "rendering"),
                    "finished": cell_text(record.get("finished_at")),
                    "total_s": _number(record.get("total_s")),
                    "video": video if video and (out_root / video).is_file() else None,
                    "error": _error(record),
                }
            )
    return found


# -- files the page links -------------------------------------------------------------------------------


def write_posters(out_root: Path, records: list[dict[str, Any]]) -> dict[str, str]:
    """Job id -> its poster (``posters/<job_id>.jpg``, the video's first frame), written where missing or older than
    the video. A video ffmpeg cannot read gets no poster (its cell shows the video alone); nothing is raised."""
    wanted = {}
    for record in records:
        video = record.get("video_path")
        if isinstance(video, str) and (out_root / video).is_file():
            wanted[record["job_id"]] = (out_root / video, f"{POSTERS_DIR}/{record['job_id']}.jpg")

    def ensure(job_id: str) -> str | None:
        video, poster = wanted[job_id]
        path = out_root / poster
        try:
            if not path.is_file() or path.stat().st_mtime_ns < video.stat().st_mtime_ns:
                write_poster(video, path, POSTER_WIDTH)
        except OSError as exc:
            log.debug("no poster for %s: %s", video, exc)
            return None
        return poster

    with ThreadPoolExecutor(max_workers=4) as pool:  # each poster is one ffmpeg process
        return {job_id: poster for job_id, poster in zip(wanted, pool.map(ensure, wanted)) if poster}


def kept_manifests(out_root: Path, attempts) -> list[dict[str, Any]]:
    """Each manifest that made ``attempts``, as written: kept by content (``inputs/<sha256><suffix>``, copied from
    its path while it still holds those bytes) and shown as text, or a note saying why it cannot be."""
    manifests = []
    columns = ["manifest_name", "manifest_path", "manifest_sha256"]
    for name, path, sha256 in attempts[columns].drop_duplicates().itertuples(index=False):
        if not isinstance(sha256, str) or not sha256:
            continue
        source = Path(str(path))
        kept = out_root / KEPT_INPUTS_DIR / f"{sha256}{source.suffix}"
        entry: dict[str, Any] = {"name": printable(cell_text(name)), "path": printable(str(path)), "sha256": sha256}
        try:
            if not kept.is_file() and source.is_file() and source.stat().st_size <= KEEP_MAX_BYTES:
                if file_sha256(source) == sha256:
                    write_atomic(kept, lambda scratch: scratch.write_bytes(source.read_bytes()))
            data = kept.read_bytes() if kept.is_file() else None
        except OSError as exc:
            data, entry["note"] = None, printable(f"cannot keep a copy: {exc}")
        if data is None:
            entry.setdefault("note", "not kept: the file has changed or is gone since the run")
        else:
            entry["file"] = kept.relative_to(out_root).as_posix()
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                entry["note"] = f"a binary table ({len(data)} bytes): open the kept copy"
            else:
                entry["text"] = printable_lines(text[:MANIFEST_LIMIT])
                if len(text) > MANIFEST_LIMIT:
                    entry["note"] = f"the first {MANIFEST_LIMIT} of {len(text)} characters: open the kept copy for all"
        manifests.append(entry)
    return manifests
