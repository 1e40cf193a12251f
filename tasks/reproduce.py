"""Make any video again from its record: ``rerun``, ``show``, ``export-manifest``.

``rerun`` turns a record back into a manifest row, rebuilds the job through the manifest's own
row checker (:func:`tasks.manifest.job_from_row`) and renders it again; ``export_manifest``
writes such rows as a manifest that renders the same job ids. What a run keeps for this (input
files by hash, the record inside each mp4) is tasks.provenance's.

Bit-identical means equal mp4 bytes: the embedded record holds no run id, host or timestamp, and
ffmpeg adds none, so equal frames from an equal recipe give an equal file. When the bytes differ,
the frames are compared too, so a rerun says whether the pixels or only the embedded record changed.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .errors import ReproduceError
from .files import write_atomic
from .jobs import Job, describe
from .layout import KEPT_INPUTS_DIR, RERUNS_DIR, RESULTS_DIR, job_frames_path, job_video_path
from .manifest import Manifest, job_from_row
from .models import FAMILIES, family_spec, file_sha256, known_models
from .models.base import input_fields
from .provenance import environment, gpu_name, read_embedded_record
from .record import JobRecord, input_hash_column
from .render import RunContext, render_job
from .results import history, read_results

#: Software and hardware whose change may change pixels: rerun reports them before it starts.
VERSIONS = ("torch_version", "diffusers_version", "transformers_version", "python_version", "device", "gpu_name")


# -- reading records back -------------------------------------------------------------------------


def find_record(out_root: Path, ref: str) -> dict[str, Any]:
    """The record of the job ``ref`` names: ``#N``, the job numbered N in its manifest (as progress and messages
    say "job N"), else the one job whose id starts with ``ref``. Its latest ``ok`` attempt, else its latest."""
    from .query import latest_attempts

    table = _results(out_root)
    known = table["job_id"].unique()
    if ref.startswith("#"):
        matches = _by_number(table, ref, out_root)
    else:
        matches = sorted(job_id for job_id in known if job_id.startswith(ref))
    if not matches:
        raise ReproduceError(f"no job id in {out_root / RESULTS_DIR} starts with {ref!r} ({len(known)} jobs there)")
    if len(matches) > 1:
        shown = ", ".join(matches[:10]) + (f" and {len(matches) - 10} more" if len(matches) > 10 else "")
        raise ReproduceError(f"job id prefix {ref!r} is ambiguous, it matches {shown}; give more characters")
    attempts = table[table["job_id"] == matches[0]]
    ok = attempts[attempts["status"] == "ok"]
    return _records(latest_attempts(ok if len(ok) else attempts))[0]


def _by_number(table, ref: str, out_root: Path) -> list[str]:
    """The one job id recorded with the job number of ``ref`` (``#N``); ReproduceError if none or several."""
    if not ref[1:].isdigit():
        raise ReproduceError(f"{ref!r}: give #N (job N, as progress numbers the jobs) or a job id or prefix of one")
    numbered = table[table["job_index"] == int(ref[1:])]
    matches = sorted(numbered["job_id"].unique())
    if not matches:
        numbers = table["job_index"]
        raise ReproduceError(
            f"no job {ref} in {out_root / RESULTS_DIR} (its jobs are numbered {numbers.min()} to {numbers.max()})"
        )
    if len(matches) > 1:  # records of several manifests, or of a manifest edited between runs
        rows = numbered.drop_duplicates("job_id").sort_values("job_id")
        shown = "; ".join(f"{row.job_id} of {row.manifest_name}" for row in rows.head(10).itertuples())
        raise ReproduceError(f"{ref} names {len(matches)} recorded jobs ({shown}); give a job id")
    return matches


def job_label(record: dict[str, Any]) -> str:
    """``job 3 (sweep, motion_bucket_id=60, seed=42), id 2d9a0d512b3933e6``: which job a record is."""
    coords = json.loads(record.get("sweep_json") or "{}")
    return f"{describe(record['job_index'], record['origin'], coords)}, id {record['job_id']}"


def readable(record: dict[str, Any]) -> str:
    """A record as YAML for people: JSON columns unfolded, per-parameter columns (repeated in ``params``) and nulls left out."""
    import yaml

    params = json.loads(record.get("params_json") or "{}")
    shown: dict[str, Any] = {}
    for key, value in record.items():
        if value is None or key in params:
            continue
        if key.endswith("_json"):
            shown[key.removesuffix("_json")] = json.loads(value)
        else:
            shown[key] = value if isinstance(value, (str, int, float, bool)) else str(value)
    return yaml.safe_dump(shown, sort_keys=False, allow_unicode=True, width=120)


def version_differences(record: dict[str, Any], device: str) -> list[str]:
    """What differs between the software and hardware of a record and this process on ``device``."""
    now = {**environment(), "device": device, "gpu_name": gpu_name(device)}
    return [
        f"{key.removesuffix('_version')}: {record.get(key)} (recorded) -> {now.get(key)} (now)"
        for key in VERSIONS
        if record.get(key) != now.get(key)
    ]


# -- a record as a manifest row ---------------------------------------------------------------------


def record_row(record: dict[str, Any]) -> dict[str, Any]:
    """The manifest row that renders the job of ``record``: model, pinned revision, precision, seed, options, every parameter.

    Input files keep their recorded paths (see :func:`locate_inputs`); an optional input left
    empty stays out of the row.
    """
    family = record["family"]
    known = known_models().get(record["model"])
    row: dict[str, Any] = {}
    if known is not None and known.source == record["model_id"]:
        row["model"] = record["model"]
        if known.family != family:  # a key loaded as another family of its checkpoint (`pipeline:`)
            row["family"] = family
    else:
        row.update(model=record["model_id"], family=family)
    if "family" in row and family not in FAMILIES:  # a video pipeline by its class name
        row["pipeline"] = row.pop("family")
    revision = record["model_revision"]
    if not Path(record["model_id"]).is_absolute():  # a hub model: pinned to its commit
        row["revision"] = revision.removeprefix("unresolved:")
    components = json.loads(record.get("components_json") or "{}")
    row.update({name: part["source"] for name, part in components.items()})
    row.update(
        dtype=record["dtype"],
        variant=record["variant"] or "none",
        seed=int(record["seed"]),
        generator_device=record["generator_device"],
    )
    row.update(json.loads(record.get("options_json") or "{}"))
    inputs = input_fields(family_spec(family).params)
    params = json.loads(record["params_json"])
    row.update({key: value for key, value in params.items() if not (key in inputs and value is None)})
    return row


def locate_inputs(
    row: dict[str, Any], record: dict[str, Any], out_root: Path, skip: set[str] = frozenset()
) -> list[str]:
    """Point each input file of ``row`` at a file with its recorded hash: the original, else the copy kept under OUT.

    Returns a note per input taken from the kept copy; ReproduceError (naming both hashes) when
    the original changed or is gone and no copy is kept. Keys in ``skip`` (given anew) are left alone.
    """
    notes = []
    for key in input_fields(family_spec(record["family"]).params):
        digest = record.get(input_hash_column(key))
        if key in skip or key not in row or not digest or digest.startswith("job:"):
            continue
        original = Path(row[key])
        now = file_sha256(original) if original.is_file() else None
        if now == digest:
            continue
        kept = sorted((out_root / KEPT_INPUTS_DIR).glob(f"{digest}*"))
        if kept:
            row[key] = str(kept[0])
            why = "changed" if now else "is gone"
            notes.append(f"{key}: {original} {why}; using the copy kept by its hash, {kept[0]}")
        elif now:
            raise ReproduceError(
                f"{key}: {original} has changed: its sha256 is now {now}, the record's is {digest}, and no copy "
                f"is kept under {out_root / KEPT_INPUTS_DIR}; put the original back, or give another with --set {key}=PATH"
            )
        else:
            raise ReproduceError(
                f"{key}: {original} is gone and no copy of sha256 {digest} is kept under {out_root / KEPT_INPUTS_DIR}; "
                f"put it back, or give another with --set {key}=PATH"
            )
    return notes


def parse_sets(sets: list[str]) -> dict[str, Any]:
    """``--set key=value`` options: values read as YAML scalars (``50``, ``0.5``, ``true``, ``euler``)."""
    import yaml

    values = {}
    for item in sets:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ReproduceError(f"--set {item!r}: give key=value, e.g. --set num_inference_steps=50")
        try:
            values[key.strip()] = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ReproduceError(f"--set {item!r}: {text!r} is not a YAML value ({exc})") from None
    return values


# -- rerun -------------------------------------------------------------------------------------------


@dataclass
class Rerun:
    """A recorded job rebuilt for rendering again (or, with ``--set``, a new job derived from it)."""

    record: dict[str, Any]  # the parent's record
    job: Job
    out_root: Path
    into: Path
    device: str
    differences: list[str]  # versions / device that differ from the record's
    notes: list[str] = field(default_factory=list)  # inputs taken from kept copies, ...

    @property
    def is_new_job(self) -> bool:
        return self.job.job_id != self.record["job_id"]


@dataclass
class RerunOutcome:
    record: JobRecord  # the new attempt's record
    video: Path | None
    identical: bool | None  # bit-identical to the recorded video; None when there is nothing to compare
    message: str


def plan_rerun(out_root: Path, ref: str, sets: list[str], device: str, into: Path | None = None) -> Rerun:
    """Rebuild the recorded job ``ref`` names (:func:`find_record`), with ``sets`` applied, for ``device``, without rendering.

    Without ``sets`` the rebuilt job must have the recorded id: a changed model folder or input is refused, naming what changed.
    """
    record = find_record(out_root, ref)
    parent = record["job_id"]
    changes = parse_sets(sets)
    row = {**record_row(record), **changes}
    notes = locate_inputs(row, record, out_root, skip=set(changes))
    coords = json.loads(record.get("sweep_json") or "{}")
    origin = record.get("origin") or "record"
    if changes:  # the values set join the parent's sweep values: what makes the new job
        coords, origin = {**coords, **changes}, f"rerun of {parent}"
    job = job_from_row(
        row, device, where=f"{out_root}: job {parent}", origin=origin, coords=coords, index=record.get("job_index") or 0
    )
    if changes and job.job_id != parent:
        job = job.model_copy(update={"parent_job_id": parent})
    elif job.job_id != parent:
        raise ReproduceError(
            f"job {parent} cannot be made as recorded: rebuilt from its record it is job {job.job_id}; "
            + "; ".join(_job_differences(record, job) or ["the job id scheme changed"])
        )
    return Rerun(
        record, job, out_root, into or out_root / RERUNS_DIR, device, version_differences(record, device), notes
    )


def run_rerun(rerun: Rerun) -> RerunOutcome:
    """Render the rebuilt job into ``rerun.into`` and say whether the video is bit-identical to the recorded one."""
    record = rerun.record
    # a chained job's input travels with it: the source's lossless frames where the job read them, else its mp4 alone
    read = json.loads(record.get("chain_inputs_json") or "{}")
    lossless = {entry["job_id"]: entry.get("sha256") for entry in read.values() if entry.get("lossless")}
    notes = []
    for source in rerun.job.depends_on:
        if source in lossless:
            notes += _bring_frames(rerun, source, lossless[source])
        target = rerun.into / job_video_path(source)
        if not target.is_file() and (rerun.out_root / job_video_path(source)).is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(rerun.out_root / job_video_path(source), target)
    manifest = Manifest(
        path=Path(record.get("manifest_path") or "rerun"),
        name=record.get("manifest_name") or "rerun",
        sha256=record.get("manifest_sha256") or "",
        device=rerun.device,
        jobs=[rerun.job],
    )
    run = RunContext.new(rerun.into, rerun.device, manifest)
    # a job recorded as reading a source's mp4 (before videosweep kept lossless frames) reads it again
    run = replace(run, lossy_inputs=frozenset(rerun.job.depends_on) - set(lossless))
    attempt = history(rerun.into).attempts.get(rerun.job.job_id, 0) + 1
    new = render_job(rerun.job, run, attempt)
    outcome = _outcome(rerun, new)
    outcome.message = "\n".join([*notes, outcome.message])
    return outcome


def _bring_frames(rerun: Rerun, source: str, sha256: str | None) -> list[str]:
    """Put the lossless frames of input job ``source`` (``sha256``, as the job read them) under ``rerun.into``: copied
    from the output root, or, where they are gone or changed there, rendered again from the source's record. Notes."""
    target, original = rerun.into / job_frames_path(source), rerun.out_root / job_frames_path(source)

    def matches(path: Path) -> bool:
        return path.is_file() and (sha256 is None or file_sha256(path) == sha256)

    if matches(target):
        return []
    if matches(original):
        write_atomic(target, lambda scratch: shutil.copyfile(original, scratch))
        return []
    why = "changed" if original.is_file() else "gone"
    try:
        again = plan_rerun(rerun.out_root, source, [], rerun.device, rerun.into)
    except ReproduceError as exc:
        return [f"input job {source}: its lossless frames {original} are {why} and it cannot be rendered again ({exc})"]
    again.job = again.job.model_copy(update={"keep_frames": True})
    outcome = run_rerun(again)
    return [f"input job {source}: its lossless frames {original} are {why}; rendered it again first: {outcome.message}"]


def _outcome(rerun: Rerun, new: JobRecord) -> RerunOutcome:
    """Whether the rerun's video is bit-identical to the recorded one."""
    record = rerun.record
    if new.status != "ok":
        return RerunOutcome(new, None, None, f"job {rerun.job.job_id} {new.status}: {new.error_type}: {new.error}")
    video = rerun.into / new.video_path
    if rerun.is_new_job:
        return RerunOutcome(new, video, None, f"new job {rerun.job.job_id} (parent {record['job_id']}): {video}")
    if record["status"] != "ok":
        return RerunOutcome(
            new, video, None, f"rendered {video}; the recorded attempt {record['status']}, nothing to compare"
        )
    if new.video_sha256 == record["video_sha256"]:
        return RerunOutcome(new, video, True, f"bit-identical to the recorded video (sha256 {new.video_sha256}): {video}")
    return RerunOutcome(
        new,
        video,
        False,
        f"NOT bit-identical: {_compare_videos(rerun.out_root / record['video_path'], video)}: {video}",
    )


def _job_differences(record: dict[str, Any], job: Job) -> list[str]:
    """The pixel-deciding values where a rebuilt job and its record disagree."""
    components = json.loads(record.get("components_json") or "{}")
    pairs = {
        "model_revision": (record["model_revision"], job.model_revision),
        "dtype": (record["dtype"], job.dtype),
        "variant": (record["variant"], job.variant),
        "params": (json.loads(record["params_json"]), job.params),
        **{
            f"{name} revision": (part.get("revision"), job.component_revisions.get(name))
            for name, part in components.items()
        },
        **{
            input_hash_column(key): (record.get(input_hash_column(key)), digest)
            for key, digest in job.input_sha256.items()
        },
    }
    return [f"{key}: {old} (recorded) != {new} (now)" for key, (old, new) in pairs.items() if old != new]


def _compare_videos(original: Path, new: Path) -> str:
    """Why two videos of one job differ: their pixels, or only the record they carry."""
    import numpy as np

    from .video import read_mp4

    if not original.is_file():
        return f"the recorded video {original} is gone, so the frames cannot be compared"
    (before, _), (after, _) = read_mp4(original), read_mp4(new)
    if before.shape != after.shape:
        return f"frames {before.shape} (recorded) vs {after.shape} (now)"
    if np.array_equal(before, after):
        old, now = read_embedded_record(original), read_embedded_record(new)
        changed = sorted(key for key in old.keys() | now.keys() if old.get(key) != now.get(key))
        return (
            f"the frames are identical; the files differ in the record they carry ({', '.join(changed) or 'encoder'})"
        )
    diff = np.abs(before.astype(np.int16) - after.astype(np.int16))
    return f"the pixels differ (max |difference| {diff.max()}, {np.count_nonzero(diff) / diff.size:.1%} of the values)"


# -- export ------------------------------------------------------------------------------------------


def export_manifest(out_root: Path, where: str | None = None) -> str:
    """A YAML manifest that renders exactly the jobs of ``out_root`` that ``where`` (a pandas query) selects.

    Values shared by every selected job go to ``defaults``; the rest fold back into ``sweep``, ``zip``
    and ``seeds`` wherever the selection holds every combination of them (:func:`fold_rows`), and
    what does not fold stays in ``rows``. A chained job's source must be selected too (it becomes
    the row with ``id: job-<source id>``); chained selections stay rows.
    """
    import yaml

    from .query import latest_attempts, select, with_swept_columns

    table = latest_attempts(_results(out_root))
    records = _records(select(with_swept_columns(table), where, columns=list(table.columns)))
    if not records:
        raise ReproduceError(f"--where {where!r} selects no job of {out_root / RESULTS_DIR}")
    selected = {record["job_id"] for record in records}
    rows = []
    for record in records:
        row = record_row(record)
        locate_inputs(row, record, out_root)
        for key, value in row.items():
            if isinstance(value, str) and value.startswith("@"):
                if value[1:] not in selected:
                    raise ReproduceError(
                        f"job {record['job_id']} takes the video of job {value[1:]} as {key}; select that job too"
                    )
                row[key] = f"@job-{value[1:]}"
        rows.append(row)
    sources = {row[key][len("@job-") :] for row in rows for key in row if str(row[key]).startswith("@job-")}
    for record, row in zip(records, rows):
        if record["job_id"] in sources:
            row["id"] = f"job-{record['job_id']}"
    defaults = {
        key: value for key, value in rows[0].items() if key != "id" and all(row.get(key, ...) == value for row in rows)
    }
    rows = [{key: value for key, value in row.items() if key not in defaults} for row in rows]
    header = f"# videosweep export-manifest {out_root}" + (f" --where {where!r}" if where else "") + "\n"
    header += "".join(f"# renders job {record['job_id']}\n" for record in records)
    doc = {"defaults": defaults, **({"rows": rows} if sources else fold_rows(rows))}  # a chain's rows keep their ids
    return header + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=120)


def fold_rows(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """``rows`` (each one job's values) as a manifest's ``rows`` x ``sweep`` x ``zip`` x ``seeds`` that expand to them.

    An axis is a key, or keys whose values always change together (each one's value decides the
    others'); it folds out of the rows when, whatever the rest of a row, the selection holds that
    row with each of the axis's values and no other (it is crossed with everything else). Every
    crossed axis folds, so a full product folds whole and a partial selection folds the axes it is
    full in: seed 42 and 43 for every (motion, noise) pair picked, say, leaves the pairs as rows.
    One key folds into ``sweep`` (``seed`` into ``seeds``); keys that change together fold into
    ``zip`` (one zip: any further such axis stays in the rows), unless nothing else varies, when
    rows say the same as plainly. Values keep their first-seen order; sweep keys are ordered as
    the rows nest them (the slowest-changing first), so the rows expand in their own order.
    """
    if not rows:
        return {"rows": rows}
    keys = list(dict.fromkeys(key for row in rows for key in row))
    # each value as canonical text, a key missing from a row as None: comparable, hashable
    texts = {key: [_canonical(row[key]) if key in row else None for row in rows] for key in keys}
    axes: dict[tuple, list[str]] = {}  # keys that change together share their partition of the rows
    for key in keys:
        if None not in texts[key]:  # a key some rows leave out cannot be swept
            axes.setdefault(_partition(texts[key]), []).append(key)
    crossed = [axis for axis in axes.values() if _crossed(axis, keys, texts, len(rows))]
    zipped = next((axis for axis in crossed if len(axis) > 1), None)
    if zipped is not None and crossed == [zipped] and len(keys) == len(zipped):
        zipped = None  # all that varies changes together: rows say that as plainly as a zip
    swept = [axis[0] for axis in crossed if len(axis) == 1]
    stride = {key: next((i for i, text in enumerate(texts[key]) if text != texts[key][0]), 0) for key in swept}
    swept.sort(key=lambda key: -stride[key])  # the slowest-changing key is the outermost loop
    folded = set(swept) | set(zipped or [])
    rest = [key for key in keys if key not in folded]

    def first_seen(names: list[str]) -> list[dict[str, Any]]:
        """The rows with a combination of ``names``' values not seen before, as those values."""
        seen: dict[tuple, dict[str, Any]] = {}
        for index, row in enumerate(rows):
            seen.setdefault(tuple(texts[key][index] for key in names), {key: row[key] for key in names if key in row})
        return list(seen.values())

    doc: dict[str, Any] = {"rows": first_seen(rest)} if rest else {}
    sweep = {key: [each[key] for each in first_seen([key])] for key in swept if key != "seed"}
    if sweep:
        doc["sweep"] = sweep
    if zipped is not None:
        positions = first_seen(zipped)
        doc["zip"] = {key: [position[key] for position in positions] for key in zipped}
    if "seed" in swept:
        doc["seeds"] = [each["seed"] for each in first_seen(["seed"])]
    return doc


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _partition(texts: list[str]) -> tuple[int, ...]:
    """Which rows share a value, whatever the values: keys with equal partitions change together."""
    numbers: dict[str, int] = {}
    return tuple(numbers.setdefault(text, len(numbers)) for text in texts)


def _crossed(axis: list[str], keys: list[str], texts: dict[str, list], count: int) -> bool:
    """Whether every combination of the other keys' values that occurs occurs once with each of ``axis``'s values."""
    others = [key for key in keys if key not in axis]
    seen: dict[tuple, set[tuple]] = {}
    for index in range(count):
        rest = tuple(texts[key][index] for key in others)
        seen.setdefault(rest, set()).add(tuple(texts[key][index] for key in axis))
    every = {tuple(texts[key][index] for key in axis) for index in range(count)}
    return len(every) > 1 and all(found == every for found in seen.values()) and len(seen) * len(every) == count


# -- helpers -----------------------------------------------------------------------------------------


def _results(out_root: Path):
    """Every attempt recorded under ``out_root``; ReproduceError if there is none."""
    table = read_results(out_root)
    if table.empty:
        raise ReproduceError(f"no results under {out_root / RESULTS_DIR}: is {out_root} an output root?")
    return table


def _records(table) -> list[dict[str, Any]]:
    """Rows as plain dicts, nulls as None."""
    return [{key: None if _missing(value) else value for key, value in row.items()} for row in table.to_dict("records")]


def _missing(value: Any) -> bool:
    import pandas as pd

    return not isinstance(value, (list, dict)) and bool(pd.isna(value))

