"""Per-row pipeline options from the diffusers docs: scheduler choice, memory and speed switches.

This module is the options' model: the fields, their validation, and what each one changes,
declared on the field itself (:func:`option_kind`):
- ``pixels``: the video (scheduler and its config, FreeU, VAE tiling, the step cache, the
  guidance cutoff), so the job id;
- ``load``: how a pipeline is loaded (``offload``, ``compile``, ``channels_last``, ``attention``),
  so the pipeline cache key: rows that differ in them never share a cached pipeline;
- ``speed``: speed and memory only (and pixels by floating-point noise at most).
Everything but the load options is set on a loaded pipeline before each job, and reset to its
loaded state when a row leaves it unset (``tasks.pipeline_setup``). What manifest validation asks
of an option is here too: the ``*_refusal`` functions say why a family's pipeline cannot take one
(they read the pipeline class, importing diffusers only when called).

Where the docs call a method with arguments, a row can give them all: ``forward_chunking: true``
is the docs' ``enable_forward_chunking()`` (its own defaults), ``{chunk_size, dim}`` anything
else; ``compile`` takes ``{mode, fullgraph}`` per part, as ``torch.compile(..., fullgraph=True)``.
"""

from __future__ import annotations

import functools
import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: Short names for the schedulers users sweep; any diffusers ``*Scheduler`` class name works too.
SCHEDULERS = {
    "ddim": "DDIMScheduler",
    "ddpm": "DDPMScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler-a": "EulerAncestralDiscreteScheduler",
    "heun": "HeunDiscreteScheduler",
    "lms": "LMSDiscreteScheduler",
    "pndm": "PNDMScheduler",
    "dpm++": "DPMSolverMultistepScheduler",
    "dpm++-single": "DPMSolverSinglestepScheduler",
    "unipc": "UniPCMultistepScheduler",
    "deis": "DEISMultistepScheduler",
    "lcm": "LCMScheduler",
    "tcd": "TCDScheduler",
    "flow-euler": "FlowMatchEulerDiscreteScheduler",
    "cogvideox-ddim": "CogVideoXDDIMScheduler",
    "cogvideox-dpm": "CogVideoXDPMScheduler",
}

#: What an option changes: the video (so the job id), how the pipeline is loaded (so the pipeline
#: cache key), or speed and memory only.
OptionKind = Literal["pixels", "load", "speed"]

#: torch.compile modes (``compile: <mode>`` or ``compile: {<part>: <mode>}``).
CompileMode = Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]
#: What ``compile`` can name: the denoiser (unet or transformer, whichever the pipeline has) or the VAE's decoder.
COMPILE_TARGETS = ("denoiser", "unet", "transformer", "vae")


class CompileSpec(BaseModel):
    """``torch.compile``'s arguments for one part: ``compile: {unet: {mode: reduce-overhead, fullgraph: true}}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: CompileMode = Field("default", description="torch.compile mode")
    fullgraph: bool = Field(
        False, description="torch.compile(fullgraph=True): the part compiles to one graph, and a graph break is an error"
    )


class ForwardChunking(BaseModel):
    """``enable_forward_chunking(chunk_size, dim)``'s arguments, with its defaults (diffusers 0.42.1)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    chunk_size: int | None = Field(
        None, ge=1, description="how many along dim each feed-forward call takes; unset: the method's default (None, taken as 1)"
    )
    dim: Literal[0, 1] = Field(
        0, description="what is sliced: 0 the batch (videos x frames, the method's default), 1 the tokens (lightest, slowest)"
    )


#: ``attention:`` names -> diffusers attention backends (``ModelMixin.set_attention_backend``).
ATTENTION_BACKENDS = {
    "sdpa": "native",
    "sdpa-cudnn": "_native_cudnn",
    "sdpa-flash": "_native_flash",
    "sdpa-efficient": "_native_efficient",
    "sdpa-math": "_native_math",
    "flash": "flash",
    "sage": "sage",
    "xformers": "xformers",
}


class FirstBlockCache(BaseModel):
    """Skip the rest of the transformer's blocks while the first block's output barely changes (diffusers FirstBlockCacheConfig)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["first_block"]
    threshold: float = Field(0.05, gt=0, description="relative change below which a step reuses the cached residual; higher: faster, rougher")


class PyramidBroadcast(BaseModel):
    """Reuse attention outputs across steps within a timestep range (diffusers PyramidAttentionBroadcastConfig)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["pyramid_attention_broadcast"]
    spatial_attention_block_skip_range: int | None = Field(2, ge=1, description="compute spatial attention every N steps")
    temporal_attention_block_skip_range: int | None = Field(None, ge=1, description="temporal attention every N steps")
    cross_attention_block_skip_range: int | None = Field(None, ge=1, description="cross-attention every N steps")
    timestep_skip_range: tuple[int, int] = Field((100, 800), description="timesteps within which attention is reused")


class DeepCacheOption(BaseModel):
    """Reuse a UNet's deep features across denoiser calls (DeepCache; tasks.denoiser_hooks.DeepCache)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["deep_cache"]
    interval: int = Field(3, ge=1, description="run the whole UNet every N calls, the outer levels only in between")
    depth: int = Field(1, ge=1, description="UNet levels recomputed on the calls between (more: slower, closer)")


StepCache = Annotated[FirstBlockCache | PyramidBroadcast | DeepCacheOption, Field(discriminator="type")]
#: The step caches that hook transformer blocks through diffusers' own cache configs.
TRANSFORMER_CACHES = ("first_block", "pyramid_attention_broadcast")


def _option(default: Any, kind: OptionKind, **field: Any) -> Any:
    """A :class:`PipelineOptions` field that declares what it changes (read by :func:`option_kind`)."""
    return Field(default, json_schema_extra={"kind": kind}, **field)


class PipelineOptions(BaseModel):
    """Row keys for every family (unset: the pipeline as its family loads it)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    scheduler: str | None = _option(
        None, "pixels", description=f"scheduler: {', '.join(SCHEDULERS)}, or a diffusers *Scheduler class name"
    )
    scheduler_config: dict[str, Any] | None = _option(
        None, "pixels", description="overrides of the scheduler's config, e.g. {timestep_spacing: trailing}"
    )
    offload: Literal["none", "model", "sequential"] = _option(
        "none", "load", description="model: enable_model_cpu_offload; sequential: enable_sequential_cpu_offload (GPU only)"
    )
    vae_slicing: bool | None = _option(None, "speed", description="decode one video of a batch at a time (less memory)")
    vae_tiling: bool | None = _option(
        None, "pixels", description="decode in overlapping tiles (much less memory, may show seams)"
    )
    forward_chunking: bool | int | ForwardChunking | None = _option(
        None,
        "speed",
        description="the denoiser's feed-forward layers in chunks (less memory): true is the docs'"
        " enable_forward_chunking() (its defaults: chunks of 1 along dim 0), N chunks of N along dim 0,"
        " {chunk_size: N, dim: 0|1} both as given (the Zeroscope docs: {chunk_size: 1, dim: 1})",
    )
    freeu: dict[str, float] | None = _option(None, "pixels", description="FreeU scales {s1, s2, b1, b2} (changes the look)")
    compile: bool | CompileMode | dict[str, CompileMode | CompileSpec] = _option(
        False,
        "load",
        description="torch.compile: true (the denoiser), a mode, {mode: M, fullgraph: true} (the denoiser, as the docs'"
        " torch.compile(pipe.unet, mode=M, fullgraph=True)), or {unet|transformer|denoiser|vae: mode or {mode, fullgraph}};"
        " the first job of a shape compiles (minutes on a GPU), later ones and later runs reuse it",
    )
    channels_last: bool = _option(
        False, "load", description="denoiser and VAE weights in channels-last memory layout (speed only)"
    )
    cudnn_benchmark: bool = _option(
        False, "speed", description="let cuDNN time its convolution algorithms per shape (speed only)"
    )
    attention: Literal[tuple(ATTENTION_BACKENDS)] | None = _option(  # type: ignore[valid-type]
        None, "load", description="the transformer's attention kernel (diffusers' attention dispatcher); default: sdpa"
    )
    step_cache: StepCache | None = _option(
        None,
        "pixels",
        description="reuse denoiser work across steps; faster, changes the video. Transformers: {type: first_block,"
        " threshold: 0.05} or {type: pyramid_attention_broadcast, ...}; UNets: {type: deep_cache, interval: 3, depth: 1}",
    )
    guidance_cutoff: float | None = _option(
        None,
        "pixels",
        ge=0.0,
        le=1.0,
        description="classifier-free guidance for this fraction of the denoising schedule only, then the conditional"
        " prediction alone (half the denoiser's batch): e.g. 0.6 saves about 20% of the denoising; changes the video",
    )

    @field_validator("scheduler")
    @classmethod
    def _known_scheduler(cls, value: str | None) -> str | None:
        if value is not None and value not in SCHEDULERS and not value.endswith("Scheduler"):
            raise ValueError(f"unknown scheduler; use one of {', '.join(SCHEDULERS)} or a diffusers class name")
        return value

    @field_validator("compile", mode="before")
    @classmethod
    def _compile_targets(cls, value: Any) -> Any:
        if isinstance(value, dict) and value and set(value) <= set(CompileSpec.model_fields):
            value = {"denoiser": value}  # {mode, fullgraph}: the denoiser's arguments
        if isinstance(value, dict):
            unknown = set(value) - set(COMPILE_TARGETS)
            if unknown or not value:
                raise ValueError(
                    f"compile takes parts {', '.join(COMPILE_TARGETS)} (e.g. {{unet: max-autotune, vae: default}}),"
                    " or the denoiser's {mode, fullgraph} (e.g. {mode: reduce-overhead, fullgraph: true})"
                )
            for part, spec in value.items():
                if isinstance(spec, dict) and set(spec) - set(CompileSpec.model_fields):
                    extra = ", ".join(map(str, sorted(set(spec) - set(CompileSpec.model_fields), key=str)))
                    raise ValueError(f"compile: {part} takes mode and fullgraph, not {extra}")
        return value

    @field_validator("forward_chunking", mode="before")
    @classmethod
    def _chunking(cls, value: Any) -> Any:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not (float(value).is_integer() and value >= 1):
            raise ValueError(
                f"a chunk size must be a whole number greater than or equal to 1, not {value}"
                " (true: the docs' enable_forward_chunking(), chunks of 1 along dim 0)"
            )
        if isinstance(value, dict) and set(value) - set(ForwardChunking.model_fields):
            extra = ", ".join(map(str, sorted(set(value) - set(ForwardChunking.model_fields), key=str)))
            raise ValueError(f"takes chunk_size and dim (enable_forward_chunking's arguments), not {extra}")
        if isinstance(value, dict) and value.get("dim", 0) not in (0, 1):
            raise ValueError(f"dim must be 0 (the batch) or 1 (the tokens), not {value['dim']!r}")
        return value

    @field_validator("freeu")
    @classmethod
    def _freeu_scales(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value is not None and set(value) != {"s1", "s2", "b1", "b2"}:
            raise ValueError("FreeU takes exactly s1, s2, b1, b2 (e.g. {s1: 0.9, s2: 0.2, b1: 1.2, b2: 1.4})")
        return value

    def chosen(self) -> dict[str, Any]:
        """The options a row set (JSON-able): what a job carries and records."""
        return self.model_dump(exclude_defaults=True)


@functools.cache
def option_kind(name: str) -> OptionKind:
    """What the pipeline option ``name`` changes, as its field declares it."""
    return PipelineOptions.model_fields[name].json_schema_extra["kind"]


def pixel_options(chosen: dict[str, Any]) -> dict[str, Any]:
    """The options of ``chosen`` that change the video: what the job id counts."""
    return {key: value for key, value in chosen.items() if option_kind(key) == "pixels"}


def load_options(chosen: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    """The load-time options as a hashable key (a dict value as its JSON)."""
    frozen = {key: json.dumps(value, sort_keys=True) if isinstance(value, dict) else value for key, value in chosen.items()}
    return tuple(sorted((key, value) for key, value in frozen.items() if option_kind(key) == "load"))


def compile_targets(value: bool | str | dict[str, Any]) -> dict[str, str]:
    """``compile``'s value as {part: mode}: ``true`` is the denoiser in the default mode."""
    return {part: spec.mode for part, spec in compile_specs(value).items()}


def compile_specs(value: bool | str | dict[str, Any]) -> dict[str, CompileSpec]:
    """``compile``'s value as {part: its torch.compile arguments}: ``true`` is the denoiser in the default mode."""
    if isinstance(value, dict):
        if value and set(value) <= set(CompileSpec.model_fields):  # {mode, fullgraph}: the denoiser's
            value = {"denoiser": value}
        return {
            part: CompileSpec.model_validate(spec if isinstance(spec, dict) else {"mode": spec})
            for part, spec in value.items()
        }
    if isinstance(value, str):
        return {"denoiser": CompileSpec(mode=value)}
    return {"denoiser": CompileSpec()} if value else {}


def forward_chunking_args(value: Any) -> dict[str, Any] | None:
    """``forward_chunking``'s value as ``enable_forward_chunking``'s keyword arguments; None when off.

    ``true``: none (the docs' call; the method's defaults, chunks of 1 along dim 0); ``N``:
    ``chunk_size=N`` (dim 0, the default); ``{chunk_size, dim}``: what the row gave, and nothing else.
    """
    if value is None or value is False:
        return None
    if value is True:
        return {}
    if isinstance(value, int):
        return {"chunk_size": value}
    given = value if isinstance(value, dict) else value.model_dump(exclude_unset=True)
    return ForwardChunking.model_validate(given).model_dump(include=set(given))


def freeu_refusal(pipeline_class: str) -> str | None:
    """Why a pipeline class cannot take ``freeu`` (None if it can)."""
    import diffusers

    if hasattr(getattr(diffusers, pipeline_class), "enable_freeu"):
        return None
    return f"freeu: {pipeline_class} has no FreeU; drop it"


def step_cache_refusal(pipeline_class: str, cache_type: str) -> str | None:
    """Why a pipeline class cannot take a ``step_cache`` of ``cache_type`` (None if it can)."""
    import inspect

    import diffusers

    transformer = "transformer" in inspect.signature(getattr(diffusers, pipeline_class).__init__).parameters
    if cache_type in TRANSFORMER_CACHES and not transformer:
        return (
            f"step_cache: {pipeline_class} denoises with a UNet, and diffusers' {cache_type} cache works on transformers"
            " (Wan, LTX, CogVideoX); use {type: deep_cache} or drop it"
        )
    if cache_type == "deep_cache" and transformer:
        return (
            f"step_cache: deep_cache skips a UNet's deep blocks, and {pipeline_class} denoises with a transformer;"
            " use first_block"
        )
    if cache_type == "first_block" and transformer and not _first_block_cacheable(getattr(diffusers, pipeline_class)):
        return (
            f"step_cache: diffusers {diffusers.__version__} has no first-block cache for {pipeline_class}'s transformer"
            " blocks (it knows Wan's, LTX's, CogVideoX's and Mochi's among others); drop step_cache"
        )
    if cache_type == "first_block" and not _opens_cache_context(getattr(diffusers, pipeline_class)):
        return (
            f"step_cache: {pipeline_class} calls its transformer outside a cache context (diffusers"
            f" {diffusers.__version__}), where the first-block cache fails; drop step_cache"
        )
    return None


def _opens_cache_context(pipeline: type) -> bool:
    """Whether ``pipeline``'s call opens ``transformer.cache_context(...)``, where the first-block cache keeps its
    state (read from its source; a pipeline whose source cannot be read is given the benefit of the doubt)."""
    import inspect

    try:
        return "cache_context" in inspect.getsource(pipeline.__call__)
    except (OSError, TypeError):
        return True


def _first_block_cacheable(pipeline: type) -> bool:
    """Whether diffusers' first-block cache knows the blocks of ``pipeline``'s transformer.

    The cache looks each block's class up in diffusers' ``TransformerBlockRegistry`` and fails on an
    unknown one when the first job starts; it then reads the block's ``hidden_states`` argument by
    name, and fails on a registered block whose forward calls it otherwise (Kandinsky 5's
    ``visual_embed`` in diffusers 0.42). A transformer's block classes live in (or are imported
    into) its model module, so a module that holds no such class cannot be cached.
    """
    import inspect
    import sys
    import typing

    from diffusers.hooks._helpers import TransformerBlockRegistry

    hint = typing.get_type_hints(pipeline.__init__).get("transformer")
    models = [kind for kind in (typing.get_args(hint) or (hint,)) if inspect.isclass(kind)]

    def registered(kind: type) -> bool:
        try:
            TransformerBlockRegistry.get(kind)
        except ValueError:
            return False
        return "hidden_states" in inspect.signature(kind.forward).parameters

    return any(
        registered(value)
        for model in models
        for value in vars(sys.modules[model.__module__]).values()
        if inspect.isclass(value)
    )


def guidance_cutoff_refusal(family: Any, params: Any) -> str | None:
    """Why a row of ``family`` (its :class:`~.models.family.Family`) cannot take ``guidance_cutoff`` (None if it can).

    A family whose pipeline runs guidance as one [unconditional, conditional] batch names the
    parameter that turns it on, ``batched_guidance``.
    """
    from .models import FAMILIES

    knob = family.batched_guidance
    if knob is None:
        able = sorted(name for name, spec in FAMILIES.items() if spec.batched_guidance)
        return (
            f"guidance_cutoff: {family.pipeline_class} does not run guidance as one [unconditional, conditional] batch"
            f" (the families that do: {', '.join(able)}); drop it"
        )
    if getattr(params, knob) <= 1:
        return f"guidance_cutoff: {knob} is {getattr(params, knob)}, so there is no guidance to cut; drop it or raise {knob}"
    return None
