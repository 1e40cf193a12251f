"""Manifest -> validated job table.

A YAML manifest holds ``defaults``, explicit ``rows``, a cartesian ``sweep``, element-wise
``zip`` lists, ``seeds`` and ``grid`` axes; a CSV or Parquet manifest is one job per row.
Every row is checked (keys, types, ranges, input files, model) before anything renders, and
every problem is reported at once, naming the file, the row with its sweep values, the key,
what was received and what is allowed.
"""

from __future__ import annotations

import difflib
import itertools
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .devices import auto_dtype
from .jobs import Job, compute_job_id, describe
from .models import (
    HUB_ID,
    ModelError,
    ModelRef,
    ensure_built,
    file_sha256,
    is_local,
    resolve,
    resolve_revision,
    source_revision,
)
from .models.base import input_fields
from .tuning import PipelineOptions, guidance_cutoff_refusal, pixel_options, step_cache_refusal

MANIFEST_KEYS = ("name", "description", "defaults", "rows", "sweep", "zip", "seeds", "grid")
TABLE_SUFFIXES = (".csv", ".parquet", ".pq")
YAML_SUFFIXES = (".yaml", ".yml")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")


class JobOptions(PipelineOptions):
    """The keys every row may carry, whatever its model: which weights, how loaded, which seed."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    model: str = Field(description="a short key (see `videosweep models`), a hub repo id or a local pipeline folder")
    id: str | None = Field(
        None, pattern=r"^[\w.-]+$", description="names this row's videos, so a later row can take them: `video: '@name'`"
    )
    family: str | None = Field(None, description="the model family, where the model's own files cannot tell")
    revision: str | None = Field(None, description="hub branch, tag or commit of the weights")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto", description="weights and compute precision; auto: the family's documented half precision on a GPU, float32 on a CPU"
    )
    variant: str = Field("auto", description="weight files to read: auto (fp16 with float16), none, or a variant name")
    seed: int = Field(
        ge=0, le=2**63 - 1, description="seed of the job's torch.Generator: `seed:` in a row, or `seeds: [...]`"
    )
    generator_device: Literal["cpu", "cuda"] = Field(
        "cpu", description="where the initial noise is drawn; cpu makes a seed mean the same video on any device"
    )


@dataclass
class Problem:
    where: str
    key: str | None
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


class ManifestError(ValueError):
    """Everything wrong with a manifest, one line per problem (identical problems grouped)."""

    def __init__(self, path: Path, problems: list[Problem]) -> None:
        self.path = path
        self.problems = problems
        super().__init__(self._format())

    def _format(self) -> str:
        grouped: dict[tuple[str | None, str], list[str]] = {}
        for problem in self.problems:
            grouped.setdefault((problem.key, problem.message), []).append(problem.where)
        lines = [f"{self.path}: {len(self.problems)} problem{'s' if len(self.problems) != 1 else ''}, nothing rendered"]
        for (_, message), places in grouped.items():
            shown = "; ".join(places[:3]) + (f"; and {len(places) - 3} more" if len(places) > 3 else "")
            lines.append(f"  - {shown}: {message}")
        return "\n".join(lines)


@dataclass
class Manifest:
    path: Path
    name: str
    sha256: str
    device: str
    jobs: list[Job]
    grids: list[dict[str, str]] = field(default_factory=list)


@dataclass
class _Entry:
    """One job's raw values before validation, with where it came from."""

    values: dict[str, Any]
    origin: str
    coords: dict[str, Any]

    def label(self, index: int) -> str:
        return describe(index, self.origin, self.coords)


def load_manifest(path: str | Path, device: str) -> Manifest:
    """Read, expand and validate a manifest for rendering on ``device``; raise ManifestError on any problem."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(path, [Problem(str(path), None, "no such manifest file")])
    suffix = path.suffix.lower()
    if suffix in YAML_SUFFIXES:
        name, entries, grids, problems = _expand_yaml(path)
    elif suffix in TABLE_SUFFIXES:
        name, entries, grids, problems = _read_table(path)
    else:
        raise ManifestError(path, [Problem(str(path), None, f"unknown manifest type {suffix!r}; use .yaml, .csv or .parquet")])
    if problems:
        raise ManifestError(path, problems)

    checker = _RowChecker(base_dir=path.parent.resolve(), device=device)
    jobs: list[Job] = []
    seen: dict[str, str] = {}
    by_id: dict[str, list[Job]] = {}  # a row's `id` -> its jobs, for rows that take their videos
    indexes = itertools.count()

    def add(entry: _Entry) -> None:
        index = next(indexes)
        job = checker.check(index, entry)
        if job is None:
            return
        if job.job_id in seen:
            checker.problems.append(
                Problem(entry.label(index), None, f"renders the same video as {seen[job.job_id]}; change a value or drop one")
            )
        seen.setdefault(job.job_id, entry.label(index))
        jobs.append(job)
        if isinstance(entry.values.get("id"), str):
            by_id.setdefault(entry.values["id"], []).append(job)

    # Rows that take another row's videos (`video: "@name"`) are expanded once per source job,
    # after their sources, so a chain (render, then upscale) orders itself.
    waiting = [entry for entry in entries if _references(entry)]
    for entry in entries:
        if not _references(entry):
            add(entry)
    while waiting:
        pending_ids = {entry.values.get("id") for entry in waiting}
        ready = [entry for entry in waiting if not set(_references(entry).values()) & pending_ids]
        if not ready:
            checker.problems += [
                Problem(entry.origin, key, f"{key}='@{name}': rows that take each other's videos form a cycle")
                for entry in waiting
                for key, name in _references(entry).items()
            ]
            break
        for entry in ready:
            waiting.remove(entry)
            missing = {key: name for key, name in _references(entry).items() if name not in by_id}
            if missing:
                known = ", ".join(sorted(by_id)) or "none"
                checker.problems += [
                    Problem(entry.origin, key, f"{key}='@{name}': no valid row has `id: {name}`; ids: {known}")
                    for key, name in missing.items()
                ]
                continue
            refs = _references(entry)
            paired = 0
            for sources in itertools.product(*(by_id[name] for name in refs.values())):
                values, coords = dict(entry.values), {}
                for (key, _), source in zip(refs.items(), sources):
                    values[key] = f"@{source.job_id}"
                    coords.update(source.coords)
                if any(coords.get(key, value) != value for key, value in entry.coords.items()):
                    continue  # sweep values both rows have (a seed) pair up rather than multiply
                paired += 1
                origins = ", ".join(source.origin for source in sources)
                add(_Entry(values, f"{entry.origin} <- {origins}", {**coords, **entry.coords}))
            if not paired:
                wanted = ", ".join(f"{key}={value}" for key, value in entry.coords.items())
                names = ", ".join(f"@{name}" for name in refs.values())
                checker.problems.append(Problem(entry.origin, None, f"no job of {names} has this row's {wanted}"))
    grids, grid_problems = _check_grids(grids, entries)
    if checker.problems or grid_problems:
        raise ManifestError(path, checker.problems + grid_problems)
    return Manifest(path=path, name=name, sha256=file_sha256(path), device=device, jobs=jobs, grids=grids)


def job_from_row(
    values: dict[str, Any],
    device: str,
    *,
    where: str,
    origin: str = "row",
    coords: dict[str, Any] | None = None,
    index: int = 0,
    base_dir: Path | None = None,
) -> Job:
    """One row's values -> its Job, checked exactly as a manifest row is; ManifestError (under ``where``) if not valid.

    For rows that do not come from a manifest file (a rerun of a recorded job); relative paths
    resolve against ``base_dir`` (default: the working directory). ``"@<job_id>"`` inputs are
    taken as is: that job's video.
    """
    checker = _RowChecker(base_dir=(base_dir or Path.cwd()).resolve(), device=device)
    job = checker.check(index, _Entry(values, origin, coords or {}))
    if job is None:
        raise ManifestError(Path(where), checker.problems)
    return job


def _references(entry: _Entry) -> dict[str, str]:
    """The keys of a row that name another row's output (``"@name"``), and those names."""
    return {
        key: value[1:] for key, value in entry.values.items() if isinstance(value, str) and value.startswith("@")
    }


# -- YAML: defaults x rows x sweep x zip x seeds -------------------------------------------------


def _expand_yaml(path: Path) -> tuple[str, list[_Entry], list, list[Problem]]:
    import yaml

    where = str(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        return path.stem, [], [], [Problem(where, None, f"not valid YAML: {exc}")]
    if not isinstance(doc, dict):
        return path.stem, [], [], [Problem(where, None, "a YAML manifest is a mapping with keys " + ", ".join(MANIFEST_KEYS))]

    problems = [
        Problem(where, key, f"unknown top-level key {key!r}{_suggest(key, MANIFEST_KEYS)}; allowed: {', '.join(MANIFEST_KEYS)}")
        for key in doc
        if key not in MANIFEST_KEYS
    ]
    name = doc.get("name", path.stem)
    if not isinstance(name, str) or not re.fullmatch(r"[\w.-]+", name):
        problems.append(Problem("name", "name", f"name={name!r} must be a folder name (letters, digits, '_', '-', '.')"))

    defaults = doc.get("defaults") or {}
    rows = doc.get("rows", [{}])
    if not isinstance(defaults, dict):
        problems.append(Problem("defaults", "defaults", "defaults must be a mapping of key: value"))
        defaults = {}
    if not isinstance(rows, list) or not rows or not all(isinstance(row, dict) for row in rows):
        problems.append(Problem("rows", "rows", "rows must be a list of mappings (use `- {}` for a row of defaults only)"))
        rows = []

    sweep = _axis_lists(doc.get("sweep"), "sweep", problems)
    zipped = _axis_lists(doc.get("zip"), "zip", problems)
    lengths = {key: len(values) for key, values in zipped.items()}
    if len(set(lengths.values())) > 1:
        problems.append(Problem("zip", "zip", f"zip lists must have one length; got {lengths}"))
    for key in set(sweep) & set(zipped):
        problems.append(Problem(f"sweep.{key}", key, f"{key!r} is in both sweep and zip; keep it in one"))

    seeds: list[Any] = [None]
    if "seeds" in doc:
        seeds = _values(doc["seeds"], "seeds", problems, allow_count=True)
        for key in ("sweep", "zip"):
            if "seed" in (doc.get(key) or {}):
                problems.append(Problem(f"{key}.seed", "seed", f"seed is swept both by `seeds:` and by `{key}:`; keep one"))

    swept = set(sweep) | set(zipped) | ({"seed"} if "seeds" in doc else set())
    for index, row in enumerate(rows):
        for key in sorted(swept & set(row)):
            problems.append(Problem(f"rows[{index}]", key, f"{key!r} is set in this row and also swept; keep one"))
    if problems:
        return name, [], [], problems

    entries = []
    zip_length = next(iter(lengths.values()), 1)
    for index, row in enumerate(rows):
        origin = f"rows[{index}]" if "rows" in doc else "defaults"
        for combo in itertools.product(*sweep.values()):
            for position in range(zip_length):
                for seed in seeds:
                    coords = dict(zip(sweep, combo))
                    coords.update({key: values[position] for key, values in zipped.items()})
                    if seed is not None:
                        coords["seed"] = seed
                    entries.append(_Entry({**defaults, **row, **coords}, origin, coords))
    return name, entries, _as_grid_list(doc.get("grid")), problems


def _axis_lists(spec: Any, where: str, problems: list[Problem]) -> dict[str, list[Any]]:
    if spec is None:
        return {}
    if not isinstance(spec, dict):
        problems.append(Problem(where, where, f"{where} must be a mapping of key: [values]"))
        return {}
    return {key: _values(values, f"{where}.{key}", problems) for key, values in spec.items()}


def _values(spec: Any, where: str, problems: list[Problem], allow_count: bool = False) -> list[Any]:
    """A list as given, or a range: ``{from, to, step}`` or ``{from, to, num}`` (both ends included), or ``{from, count}``."""
    if isinstance(spec, list) and spec:
        return spec
    if isinstance(spec, dict):
        keys = set(spec)
        numbers = all(isinstance(value, (int, float)) and not isinstance(value, bool) for value in spec.values())
        if numbers and keys == {"from", "to", "step"} and spec["step"] > 0 and spec["to"] >= spec["from"]:
            count = int(math.floor((spec["to"] - spec["from"]) / spec["step"] + 1e-9)) + 1
            return [_tidy(spec["from"] + i * spec["step"]) for i in range(count)]
        if numbers and keys == {"from", "to", "num"} and isinstance(spec["num"], int) and spec["num"] >= 2:
            step = (spec["to"] - spec["from"]) / (spec["num"] - 1)
            integral = all(isinstance(spec[key], int) for key in ("from", "to")) and float(step).is_integer()
            return [int(spec["from"] + i * step) if integral else _tidy(spec["from"] + i * step) for i in range(spec["num"])]
        if allow_count and numbers and keys == {"from", "count"} and all(isinstance(spec[k], int) for k in keys) and spec["count"] >= 1:
            return list(range(spec["from"], spec["from"] + spec["count"]))
    forms = "a non-empty list, {from: A, to: B, step: S} or {from: A, to: B, num: N}"
    if allow_count:
        forms += " or {from: A, count: N}"
    problems.append(Problem(where, where.split(".")[-1], f"{where}={spec!r} must be {forms}"))
    return []


def _tidy(value: float | int) -> float | int:
    """Round away float noise from range arithmetic (0.1 + 2 * 0.04 -> 0.18)."""
    return value if isinstance(value, int) else round(value, 10)


def _as_grid_list(spec: Any) -> list:
    if spec is None:
        return []
    return spec if isinstance(spec, list) else [spec]


def _check_grids(grids: list, entries: list[_Entry]) -> tuple[list[dict[str, str]], list[Problem]]:
    """Grid axes must be parameters that vary; the grids themselves are drawn by the grid step."""
    varying = {key for entry in entries for key in entry.coords}
    problems, checked = [], []
    for index, grid in enumerate(grids):
        where = f"grid[{index}]" if len(grids) > 1 else "grid"
        if not isinstance(grid, dict) or "x" not in grid or set(grid) - {"x", "y", "z"}:
            problems.append(Problem(where, "grid", f"{where}={grid!r} must be a mapping with x and optional y, z"))
            continue
        if len(set(map(str, grid.values()))) < len(grid):
            problems.append(Problem(where, "grid", f"{where}={grid!r} uses one key on two axes; give each axis its own"))
        for axis, key in grid.items():
            if not isinstance(key, str) or key not in varying:
                problems.append(
                    Problem(
                        where, axis, f"{axis}={key!r} is not a swept key; swept: {', '.join(sorted(varying)) or 'none'}"
                    )
                )
        checked.append(dict(grid))
    return checked, problems


# -- CSV / Parquet: one job per row --------------------------------------------------------------


def _read_table(path: Path) -> tuple[str, list[_Entry], list, list[Problem]]:
    import pandas as pd

    try:
        frame = pd.read_csv(path) if path.suffix.lower() == ".csv" else pd.read_parquet(path)
    except Exception as exc:  # pandas raises many types for an unreadable table
        return path.stem, [], [], [Problem(str(path), None, f"cannot read the table: {exc}")]
    line = 2 if path.suffix.lower() == ".csv" else 0
    entries = []
    for index, record in enumerate(frame.to_dict(orient="records")):
        values = {key: _plain(value) for key, value in record.items() if not _is_missing(value)}
        origin = f"line {index + line}" if line else f"row {index}"
        entries.append(_Entry(values, origin, {}))
    if not entries:
        return path.stem, [], [], [Problem(str(path), None, "the table has no rows")]
    return path.stem, entries, [], []


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _plain(value: Any) -> Any:
    """numpy scalars to Python values; integral floats (an int column with gaps) back to int."""
    value = value.item() if hasattr(value, "item") else value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# -- one row -> one Job --------------------------------------------------------------------------


class _RowChecker:
    """Validates rows one by one, caching what many rows share (models, revisions, image files)."""

    def __init__(self, base_dir: Path, device: str) -> None:
        self.base_dir = base_dir
        self.device = device
        self.problems: list[Problem] = []
        self._models: dict[tuple[str, str | None], ModelRef | ModelError] = {}
        self._revisions: dict[tuple[ModelRef | str, str | None], str] = {}
        self._inputs: dict[Path, str | Exception] = {}

    def check(self, index: int, entry: _Entry) -> Job | None:
        where = entry.label(index)
        found: list[Problem] = []

        # 1. the keys every row has
        try:
            options = JobOptions(**entry.values)
        except ValidationError as exc:
            found += [self._pydantic_problem(where, error, JobOptions) for error in exc.errors()]
            options = None
        model_name = entry.values.get("model")
        if not isinstance(model_name, str):
            self.problems += found
            return None

        # 2. the model, and with it the family's parameters
        ref = self._model(model_name, entry.values.get("family"))
        if isinstance(ref, ModelError):
            self.problems += found + [Problem(where, "model", str(ref))]
            return None
        if ref.tiny:  # built first: its component folders are checked below
            ensure_built(ref)
        params_cls = ref.module.Params
        component_keys = list(getattr(ref.module, "COMPONENTS", {}))
        tuning = list(PipelineOptions.model_fields)
        row_keys = [key for key in JobOptions.model_fields if key not in tuning]
        allowed = row_keys + component_keys + list(params_cls.model_fields) + tuning
        for key in entry.values:
            if key not in allowed:
                found.append(
                    Problem(
                        where,
                        key,
                        f"unknown key {key!r} for {model_name} (family {ref.family}){_suggest(key, allowed)}; "
                        f"allowed: {', '.join(allowed)}",
                    )
                )

        # 3. separately stored parts (a motion adapter, a ControlNet): the row's, else the key's
        components: dict[str, str] = {}
        defaults = dict(ref.components)
        for key in component_keys:
            value = entry.values.get(key, defaults.get(key))
            source = self._source(value) if isinstance(value, str) else None
            if source is None:
                described = ref.module.COMPONENTS[key]
                found.append(Problem(where, key, f"{key}={value!r}: give a hub repo id or a folder holding the {described}"))
            else:
                components[key] = source

        # 4. input files, resolved against the manifest's folder, checked and hashed
        raw = {key: value for key, value in entry.values.items() if key in params_cls.model_fields}
        hashes: dict[str, str] = {}
        for key, kind in input_fields(params_cls).items():
            if key in raw:
                resolved, outcome = self._input(raw[key], kind)
                if isinstance(outcome, Exception):
                    found.append(Problem(where, key, f"{key}={raw[key]!r}: {outcome}"))
                else:
                    raw[key], hashes[key] = str(resolved), outcome

        # 5. the family's parameters: types, ranges, required inputs
        try:
            params = params_cls(**raw)
        except ValidationError as exc:
            found += [
                self._pydantic_problem(where, error, params_cls, ref)
                for error in exc.errors()
                if not error["loc"] or error["loc"][0] not in {p.key for p in found}
            ]
            params = None
        if options is not None:
            found += self._device_problems(where, options)
            if options.freeu is not None and not _pipeline_has(ref.module.PIPELINE_CLASS, "enable_freeu"):
                found.append(Problem(where, "freeu", f"freeu: {ref.module.PIPELINE_CLASS} has no FreeU; drop it"))
            cache = options.step_cache
            if cache is not None and (refusal := step_cache_refusal(ref.module.PIPELINE_CLASS, cache.type)):
                found.append(Problem(where, "step_cache", refusal))
            cutoff = options.guidance_cutoff is not None and params is not None
            if cutoff and (refusal := guidance_cutoff_refusal(ref.module, params)):
                found.append(Problem(where, "guidance_cutoff", refusal))
        if found or options is None or params is None:
            self.problems += found
            return None

        # 6. resolve precision and weights, then the content-addressed id
        # the checkpoint's documented half precision, else its family's, else float16
        gpu_dtype = ref.gpu_dtype or getattr(ref.module, "GPU_DTYPE", "float16")
        dtype = auto_dtype(self.device, gpu_dtype) if options.dtype == "auto" else options.dtype
        chosen_variant = ref.variant if options.variant == "auto" else options.variant
        variant = {"auto": "fp16" if dtype == "float16" else None, "none": None}.get(chosen_variant, chosen_variant)
        revision = self._revision(ref, options.revision)
        component_revisions = {key: self._revision(source, None) for key, source in components.items()}
        values = params.model_dump(mode="json")
        chosen = PipelineOptions.model_validate(options.model_dump()).chosen()
        job_id = compute_job_id(
            family=ref.family,
            model_id=ref.source,
            model_revision=revision,
            is_local=ref.is_local,
            dtype=dtype,
            variant=variant,
            generator_device=options.generator_device,
            seed=options.seed,
            params=values,
            input_sha256=hashes,
            components={
                key: (None if is_local(source) else source, component_revisions[key]) for key, source in components.items()
            },
            options=pixel_options(chosen),
        )
        return Job(
            job_id=job_id,
            index=index,
            origin=entry.origin,
            coords=entry.coords,
            model=model_name,
            family=ref.family,
            model_id=ref.source,
            requested_revision=options.revision,
            model_revision=revision,
            dtype=dtype,
            variant=variant,
            generator_device=options.generator_device,
            seed=options.seed,
            params=values,
            input_sha256=hashes,
            components=components,
            component_revisions=component_revisions,
            depends_on=[value[1:] for key, value in values.items() if key in hashes and str(value).startswith("@")],
            options=chosen,
        )

    def _device_problems(self, where: str, options: JobOptions) -> list[Problem]:
        problems = []
        if options.generator_device == "cuda" and not self.device.startswith("cuda"):
            problems.append(
                Problem(where, "generator_device", f"generator_device='cuda' needs a CUDA device, not {self.device!r}; use cpu")
            )
        if options.offload != "none" and not self.device.startswith("cuda"):
            problems.append(Problem(where, "offload", f"offload={options.offload!r} needs a CUDA device; use none"))
        return problems

    def _model(self, name: str, family: Any) -> ModelRef | ModelError:
        key = (name, family if isinstance(family, str) else None)
        if key not in self._models:
            try:
                self._models[key] = resolve(name, key[1], self.base_dir)
            except ModelError as exc:
                self._models[key] = exc
        return self._models[key]

    def _revision(self, ref: ModelRef | str, revision: str | None) -> str:
        """The pinned revision of a model (tiny ones built first) or of a component's source."""
        key = (ref, revision)
        if key not in self._revisions:
            self._revisions[key] = (
                resolve_revision(ref, revision) if isinstance(ref, ModelRef) else source_revision(ref, revision)
            )
        return self._revisions[key]

    def _source(self, value: str) -> str | None:
        """A component's folder (absolute) or hub repo id; None if it is neither."""
        folder = Path(value).expanduser()
        folder = folder if folder.is_absolute() else self.base_dir / folder
        if folder.is_dir():
            return str(folder.resolve())
        return value if HUB_ID.match(value) else None

    def _input(self, value: Any, kind: str) -> tuple[Path | str | None, str | Exception]:
        if isinstance(value, str) and value.startswith("@"):  # another job's video: known by its id
            if kind != "video":
                return None, ValueError("only a video input can take another row's output")
            return value, f"job:{value[1:]}"
        if not isinstance(value, str) or not value:
            return None, ValueError(f"must be a path to {'an image' if kind == 'image' else 'a video'} file")
        path = Path(value).expanduser()
        path = (path if path.is_absolute() else self.base_dir / path).resolve()
        if path not in self._inputs:
            self._inputs[path] = _check_image(path) if kind == "image" else _check_video(path)
        return path, self._inputs[path]

    @staticmethod
    def _pydantic_problem(where: str, error: dict, model: type[BaseModel], ref: ModelRef | None = None) -> Problem:
        if not error["loc"]:  # a check across fields (a model validator): its message says it all
            return Problem(where, None, error["msg"].removeprefix("Value error, "))
        key = str(error["loc"][0])
        field_info = model.model_fields.get(key)
        hint = f" ({field_info.description})" if field_info is not None and field_info.description else ""
        if error["type"] == "missing":
            kind = input_fields(model).get(key) if ref is not None else None
            if kind == "image":
                return Problem(where, key, f"missing {key!r}: {ref.name} is an image-to-video model; add `{key}: path/to/image.png`")
            if kind == "video":
                return Problem(where, key, f"missing {key!r}: {ref.name} is a video-to-video model; add `{key}: path/to/video.mp4`")
            return Problem(where, key, f"missing {key!r}{hint}")
        if error["type"] == "extra_forbidden":  # reported as an unknown key already
            return Problem(where, key, f"unknown key {key!r}")
        return Problem(where, key, f"{key}={error.get('input')!r}: {error['msg']}{hint}")


def _check_image(path: Path) -> str | Exception:
    """The file's sha256 if it is a readable image, else the reason it is not."""
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        return FileNotFoundError(f"no such file {path}")
    try:
        with Image.open(path) as image:
            image.load()
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        return ValueError(f"not a readable image ({exc.__class__.__name__}: {exc})")
    return file_sha256(path)


def _pipeline_has(pipeline_class: str, method: str) -> bool:
    import diffusers

    return hasattr(getattr(diffusers, pipeline_class), method)


def _check_video(path: Path) -> str | Exception:
    """The file's sha256 if ffmpeg reads a first frame from it, else the reason it does not."""
    from .video import read_video_info

    if not path.is_file():
        return FileNotFoundError(f"no such file {path}")
    if path.suffix.lower() in IMAGE_SUFFIXES:  # ffmpeg would read it as a one-frame video
        return ValueError("is an image; a video input needs a video file (mp4, webm, mov, ...)")
    try:
        read_video_info(path)
    except (OSError, RuntimeError, ValueError, StopIteration) as exc:
        return ValueError(f"not a readable video ({exc.__class__.__name__}: {exc})")
    return file_sha256(path)


def _suggest(key: str, allowed: Any) -> str:
    close = difflib.get_close_matches(key, list(allowed), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""

