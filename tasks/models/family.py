"""The contract every model family meets: one :class:`Family` record per family module.

A family module (``svd.py``, ...) ends with ``FAMILY = Family(...)``, which names everything the
rest of videosweep uses of it: the pipeline class, model keys, the pydantic ``Params`` (the
pipeline's call parameters with its own defaults), ``load``, ``render`` (a batch of one or more
videos), the tiny twin, how its docs turn frames into uint8, and the optional capabilities
(batching, batched guidance, separately stored components, a shared tiny base, the diffusers
releases it works with). The record checks itself when the module is imported, and the registry
(``models/__init__.py``) refuses a module without one, naming the module and what it lacks; no
other module probes a family.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet

from .base import Rendered, Uint8Conversion, VideoParams, scalar_type

if TYPE_CHECKING:
    import torch

    from .base import LoadOptions

#: ``render``: the videos of one pipeline call, one generator per video, in order.
RenderBatch = Callable[[Any, list[VideoParams], list["torch.Generator"], str], list[Rendered]]


class FamilyError(TypeError):
    """A family module that does not meet the contract: a bug in that module, named in the message."""


@dataclass(frozen=True, kw_only=True)
class Component:
    """A separately stored part of a family's pipeline (a motion adapter, a ControlNet): a row may name its source."""

    description: str
    build_tiny: Callable[[Path], None]  # saves its random-weight twin, in the real repo's layout


_REQUIRED = object()


@dataclass(frozen=True, kw_only=True)
class Family:
    """What a model family provides. Fields without a default are required."""

    name: str = _REQUIRED  # the manifest's `family:` and the tiny model `tiny-<name>`
    pipeline_class: str = _REQUIRED  # the diffusers class its docs call; a folder's model_index.json names it
    description: str = _REQUIRED  # one line for `videosweep models`
    models: Mapping[str, str | Mapping[str, str]] = _REQUIRED  # short keys -> hub id, or {source, variant, dtype, <component>}
    params: type[VideoParams] = _REQUIRED  # the pipeline's call parameters, with its own defaults
    load: Callable[[LoadOptions, str], Any] = _REQUIRED  # (load options, device) -> the pipeline, ready to call
    render: RenderBatch = _REQUIRED  # (pipe, params list, generators, device) -> one Rendered per params
    build_tiny: Callable[[Path], None] = _REQUIRED  # saves a random-weight twin in the real repo's layout
    uint8_conversion: Uint8Conversion = _REQUIRED  # how its docs turn float frames into uint8 (base.to_uint8_frames)

    #: The parameters that may differ between the videos of one call (the seed always may); None:
    #: one video per call, whatever ``--batch`` says.
    batch_fields: tuple[str, ...] | None = None
    #: Whether a row (its parameters as given) may share a call at all; None: every row may.
    batchable: Callable[[Mapping[str, Any]], bool] | None = None
    #: The parameter that turns on guidance run as one [unconditional, conditional] batch: what
    #: ``guidance_cutoff`` halves (tasks.denoiser_hooks); None: the pipeline has none.
    batched_guidance: str | None = None
    gpu_dtype: str = "float16"  # what `dtype: auto` means on a GPU, as its docs load it
    components: Mapping[str, Component] = field(default_factory=dict)
    tiny_base: str | None = None  # another family whose tiny checkpoint this one shares (None: its own)
    base_pipeline_class: str | None = None  # the class of the repo it is assembled on (an SD 1.5 base under an adapter)
    deprecated: bool = False  # its pipeline lives under diffusers.pipelines.deprecated (then it states `diffusers`)
    #: The diffusers releases its code works with, a PEP 440 specifier (">=0.42,<0.43"); None: any the project's
    #: pin allows. The registry refuses its rows where the installed diffusers is outside (models.resolve).
    diffusers: str | None = None
    frames_param: str | None = "num_frames"  # the parameter that counts frames (None: the input video decides)

    def __post_init__(self) -> None:
        missing = [spec.name for spec in fields(self) if getattr(self, spec.name) is _REQUIRED]
        if missing:
            raise FamilyError(f"Family(...) lacks {', '.join(missing)} (every family declares them: tasks/models/family.py)")
        if not (isinstance(self.params, type) and issubclass(self.params, VideoParams)):
            raise FamilyError(f"params must be a VideoParams subclass (tasks/models/base.py), not {self.params!r}")
        for name in ("load", "render", "build_tiny"):
            if not callable(getattr(self, name)):
                raise FamilyError(f"{name} must be a function, not {getattr(self, name)!r}")
        if self.uint8_conversion not in ("round", "truncate"):
            raise FamilyError(f"uint8_conversion is 'round' or 'truncate', not {self.uint8_conversion!r}")
        for name, spec in self.params.model_fields.items():
            try:
                scalar_type(spec.annotation)
            except TypeError as exc:
                raise FamilyError(f"params field {name!r}: {exc} (its results column needs one type)") from None
        known = set(self.params.model_fields)
        named = {"batch_fields": set(self.batch_fields or ()), "batched_guidance": {self.batched_guidance} - {None}}
        named["frames_param"] = {self.frames_param} - {None}
        for what, names in named.items():
            if names - known:
                raise FamilyError(f"{what} names {', '.join(sorted(names - known))}, which its params do not have")
        for name, component in self.components.items():
            if not isinstance(component, Component):
                raise FamilyError(f"components[{name!r}] must be a Component(description, build_tiny)")
        if self.deprecated and self.diffusers is None:
            raise FamilyError(
                "a deprecated family states the diffusers releases it works with (diffusers='>=0.42,<0.43'): "
                "a release may drop diffusers.pipelines.deprecated"
            )
        if self.diffusers is not None:
            try:
                SpecifierSet(self.diffusers)
            except InvalidSpecifier:
                raise FamilyError(
                    f"diffusers must be a version range like '>=0.42,<0.43', not {self.diffusers!r}"
                ) from None

    def works_with(self, diffusers_version: str) -> bool:
        """Whether its declared ``diffusers`` range holds that release; a development build counts (0.42.2.dev0 is
        in ``<0.43``, 0.43.0.dev0 is not)."""
        return self.diffusers is None or SpecifierSet(self.diffusers).contains(diffusers_version, prereleases=True)

    def render_one(self, pipe: Any, params: VideoParams, generator: torch.Generator, device: str) -> Rendered:
        """One video: a batch of one."""
        return self.render(pipe, [params], [generator], device)[0]

    def can_batch(self, params: Mapping[str, Any]) -> bool:
        """Whether a row with these parameters may share a pipeline call with others."""
        return self.batch_fields is not None and (self.batchable is None or self.batchable(params))

    @property
    def tiny_name(self) -> str:
        """The tiny checkpoint folder's name: its own, or the family's it shares."""
        return self.tiny_base or self.name


def one_video_per_call(render_video: Callable[[Any, Any, Any, str], Rendered]) -> RenderBatch:
    """``render`` for a family whose pipeline renders one video a call: each of the batch in turn.

    Such a family declares no ``batch_fields``, so the run hands it batches of one.
    """

    def render(pipe: Any, params_list: list[VideoParams], generators: list[Any], device: str) -> list[Rendered]:
        return [render_video(pipe, params, generator, device) for params, generator in zip(params_list, generators)]

    render.__doc__ = render_video.__doc__
    render.__wrapped__ = render_video  # type: ignore[attr-defined]
    return render
