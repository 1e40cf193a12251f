"""The row checker: one row's values -> one Job, or the row's problems."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from ..devices import auto_dtype
from ..jobs import Job, JobIdMaker
from ..models import ModelError, ModelRef, is_local, on_the_same_checkpoint
from ..pipeline_options import (
    PipelineOptions,
    freeu_refusal,
    guidance_cutoff_refusal,
    pixel_options,
    step_cache_refusal,
)
from .cache_keys import _key, _remember
from .entries import _Entry
from .inputs import _InputFiles
from .job_options import _OPTION_KEYS, _OPTION_ORDER, JobOptions, _check_seed
from .limits import Limits
from .messages import Problem, _brief, _cut, _pydantic_problem, _shown, _suggest
from .resolution import _Model, _Resolver


@dataclass
class _Options:
    """The keys every row has (all but the seed), validated once per distinct combination."""

    key: Any  # the cache key (None: not cacheable)
    options: JobOptions | None  # None where invalid
    errors: list[tuple[int, Any, str]]  # (position in JobOptions' fields, key, message)
    chosen: dict[str, Any] = field(default_factory=dict)  # the pipeline options the row set
    device_problems: list[tuple[Any, str]] = field(default_factory=list)


@dataclass
class _Params:
    """A family's parameters, validated once per distinct set of values (seeds and jobs share it)."""

    params: BaseModel | None
    errors: list[tuple[Any, Any, str]]  # (the error's first loc or None, key, message)
    values: dict[str, Any] | None = None  # JSON-able, what the job carries
    part: str | None = None  # the params' text in the job id (inputs by hash), made on first use


@dataclass
class _Setup:
    """What follows from a row's options, model and components: precision, weights, the job id's fixed part."""

    dtype: str
    variant: str | None
    revision: str
    component_revisions: dict[str, str]
    ids: JobIdMaker


def _elsewhere(key: Any, family: str) -> str:
    """A hint naming the pipeline of the same checkpoint that takes ``key`` (AnimateDiff's video-to-video, its ``video``)."""
    takers = [spec.pipeline_class for spec in on_the_same_checkpoint(family) if key in spec.params.model_fields]
    return f"; {takers[0]} takes it: add `pipeline: {takers[0]}`" if takers else ""


class _RowChecker:
    """Validates rows one by one, caching what many rows share.

    Rows of a sweep differ only in their swept values: the model, the row-wide keys, the
    components, the input files, the setup (precision, weights, the fixed part of the job id) are
    worked out once per distinct value; the family's parameters once per distinct set (a sweep
    over seeds shares them); each job then costs its seed's check and one sha256.
    """

    def __init__(self, base_dir: Path, device: str, limits: Limits | None = None) -> None:
        self.device = device
        self.problems: list[Problem] = []
        self._names = _Resolver(base_dir)
        self._inputs = _InputFiles(base_dir, (limits or Limits()).max_image_pixels)
        self._options: dict[Any, _Options] = {}
        self._unknown: dict[tuple, list[tuple[Any, str]]] = {}
        self._components: dict[tuple, tuple[dict[str, str], list[tuple[Any, str]]]] = {}
        self._params: dict[tuple, _Params] = {}
        self._refusals: dict[tuple, list[tuple[Any, str]]] = {}
        self._setups: dict[tuple, _Setup] = {}

    def _fail(self, index: int, entry: _Entry, found: list[tuple[Any, str]]) -> None:
        if found:
            where = entry.label(index)
            self.problems += [Problem(where, key, message) for key, message in found]
        return None

    def check(self, index: int, entry: _Entry) -> Job | None:
        values = entry.values
        found: list[tuple[Any, str]] = []  # (key, message), in the order the checks find them

        # 1. the keys every row has: all but the seed once per distinct combination, the seed per job
        opts = self._row_options(values)
        seed, seed_errors = _check_seed(values)
        errors = opts.errors + seed_errors
        if seed_errors and opts.errors:  # in JobOptions' field order, as one validation of it reports them
            errors.sort(key=lambda error: error[0])
        found += [(key, message) for _, key, message in errors]
        options = opts.options if not errors else None
        model_name = values.get("model")
        if not isinstance(model_name, str):
            return self._fail(index, entry, found)

        # 2. the model, and with it the family's parameters
        family, pipeline = values.get("family"), values.get("pipeline")
        model_key = (model_name, family if isinstance(family, str) else None, pipeline if isinstance(pipeline, str) else None)
        model = self._names.model(model_key)
        if isinstance(model, ModelError):
            return self._fail(index, entry, found + [("model", _cut(str(model), 1500))])
        ref = model.ref
        key_names = tuple(values)
        unknown = self._unknown.get((model_key, key_names))
        if unknown is None:
            unknown = [
                (
                    _brief(key),
                    f"unknown key {_shown(key)} for {_brief(model_name)} (family {ref.family})"
                    f"{_suggest(key, model.allowed) or _elsewhere(key, ref.family)}; allowed: {', '.join(model.allowed)}",
                )
                for key in values
                if key not in model.allowed
            ]
            _remember(self._unknown, (model_key, key_names), unknown)
        found += unknown

        # 3. separately stored parts (a motion adapter, a ControlNet): the row's, else the key's
        components: dict[str, str] = {}
        components_key: Any = ()
        if model.component_keys:
            given = {key: values[key] for key in model.component_keys if key in values}
            components_key = (model_key, _key(given))
            if components_key[1] is None:
                components, trouble = self._names.components(model, given)
            else:
                if components_key not in self._components:
                    self._components[components_key] = self._names.components(model, given)
                components, trouble = self._components[components_key]
            found += trouble

        # 4. input files, resolved against the manifest's folder, checked (size first) and hashed
        fields = model.params_cls.model_fields
        raw = {key: value for key, value in values.items() if key in fields}
        hashes: dict[str, str] = {}
        for key, kind in model.inputs.items():
            if key in raw:
                resolved, outcome = self._inputs.check(raw[key], kind)
                if isinstance(outcome, Exception):
                    found.append((key, f"{key}={_shown(raw[key])}: {_cut(str(outcome), 500)}"))
                else:
                    raw[key], hashes[key] = resolved, outcome

        # 5. the family's parameters: types, ranges, required inputs (once per distinct set of values)
        params_key = (model_key, _key(raw))
        checked = self._params.get(params_key) if params_key[1] is not None else None
        if checked is None:
            checked = self._check_params(model, raw)
            if params_key[1] is not None:
                _remember(self._params, params_key, checked)
        params = checked.params
        if checked.errors:
            taken = {key for key, _ in found}
            found += [(key, message) for loc, key, message in checked.errors if loc is None or loc not in taken]
        if options is not None:
            found += opts.device_problems
            refusals_key = (opts.key, model_key)
            refusals = self._refusals.get(refusals_key) if opts.key is not None else None
            if refusals is None:
                refusals = self._option_refusals(options, ref)
                if opts.key is not None:
                    _remember(self._refusals, refusals_key, refusals)
            found += refusals
            if options.guidance_cutoff is not None and params is not None:
                if refusal := guidance_cutoff_refusal(ref.spec, params):
                    found.append(("guidance_cutoff", refusal))
        if found or options is None or params is None:
            return self._fail(index, entry, found)

        # 6. resolve precision and weights (once per options, model and components), then the content-addressed id
        setup_key = (opts.key, model_key, components_key)
        setup = self._setups.get(setup_key) if opts.key is not None and components_key[-1:] != (None,) else None
        if setup is None:
            setup = self._setup(options, model, components, opts.chosen)
            if opts.key is not None and components_key[-1:] != (None,):
                _remember(self._setups, setup_key, setup)
        if checked.part is None:
            checked.part = JobIdMaker.params_part(checked.values, hashes)
        return Job.model_construct(
            _JOB_FIELDS,
            job_id=setup.ids.job_id(checked.part, seed),
            index=index,
            origin=entry.origin,
            coords=entry.coords,
            model=model_name,
            family=ref.family,
            model_id=ref.source,
            requested_revision=options.revision,
            model_revision=setup.revision,
            dtype=setup.dtype,
            variant=setup.variant,
            generator_device=options.generator_device,
            seed=seed,
            params=checked.values,
            input_sha256=hashes,
            components=components,
            component_revisions=setup.component_revisions,
            depends_on=[
                value[1:] for key, value in checked.values.items() if key in hashes and str(value).startswith("@")
            ],
            options=opts.chosen,
        )

    def _row_options(self, values: dict[Any, Any]) -> _Options:
        picked = {key: value for key, value in values.items() if key in _OPTION_KEYS}
        key = _key(picked)
        opts = self._options.get(key) if key is not None else None
        if opts is None:
            opts = self._check_options(picked, key)
            if key is not None:
                _remember(self._options, key, opts)
        return opts

    def _check_options(self, picked: dict[str, Any], key: Any) -> _Options:
        try:
            options = JobOptions.model_validate({**picked, "seed": 0})  # the seed is checked per job
        except ValidationError as exc:
            errors = []
            for error in exc.errors():
                name = str(error["loc"][0]) if error["loc"] else ""
                errors.append((_OPTION_ORDER.get(name, -1), *_pydantic_problem(error, JobOptions)))
            return _Options(key, None, errors)
        chosen = PipelineOptions.model_validate(options.model_dump()).chosen()
        return _Options(key, options, [], chosen, self._device_problems(options))

    def _check_params(self, model: _Model, raw: dict[str, Any]) -> _Params:
        try:
            params = model.params_cls(**raw)
        except ValidationError as exc:
            errors = []
            for error in exc.errors():
                loc = error["loc"][0] if error["loc"] else None
                errors.append((loc, *_pydantic_problem(error, model.params_cls, model.ref)))
            return _Params(None, errors)
        return _Params(params, [], params.model_dump(mode="json"))

    def _option_refusals(self, options: JobOptions, ref: ModelRef) -> list[tuple[Any, str]]:
        refusals = []
        if options.freeu is not None and (refusal := freeu_refusal(ref.spec.pipeline_class)):
            refusals.append(("freeu", refusal))
        cache = options.step_cache
        if cache is not None and (refusal := step_cache_refusal(ref.spec.pipeline_class, cache.type)):
            refusals.append(("step_cache", refusal))
        return refusals

    def _setup(self, options: JobOptions, model: _Model, components: dict[str, str], chosen: dict[str, Any]) -> _Setup:
        ref = model.ref
        # the checkpoint's documented half precision, else its family's, else float16
        gpu_dtype = ref.gpu_dtype or ref.spec.gpu_dtype
        dtype = auto_dtype(self.device, gpu_dtype) if options.dtype == "auto" else options.dtype
        chosen_variant = ref.variant if options.variant == "auto" else options.variant
        variant = {"auto": "fp16" if dtype == "float16" else None, "none": None}.get(chosen_variant, chosen_variant)
        revision = self._names.revision(ref, options.revision)
        component_revisions = {key: self._names.revision(source, None) for key, source in components.items()}
        ids = JobIdMaker(
            family=ref.family,
            model_id=ref.source,
            model_revision=revision,
            is_local=model.is_local,
            dtype=dtype,
            variant=variant,
            generator_device=options.generator_device,
            components={
                key: (None if is_local(source) else source, component_revisions[key]) for key, source in components.items()
            },
            options=pixel_options(chosen),
        )
        return _Setup(dtype, variant, revision, component_revisions, ids)

    def _device_problems(self, options: JobOptions) -> list[tuple[Any, str]]:
        problems = []
        if options.generator_device == "cuda" and not self.device.startswith("cuda"):
            problems.append(("generator_device", f"generator_device='cuda' needs a CUDA device, not {self.device!r}; use cpu"))
        if options.offload != "none" and not self.device.startswith("cuda"):
            problems.append(("offload", f"offload={options.offload!r} needs a CUDA device; use none"))
        return problems



#: What a Job's fields-set holds (every field but parent_job_id): one set shared by every job made here.
_JOB_FIELDS = set(Job.model_fields) - {"parent_job_id"}
