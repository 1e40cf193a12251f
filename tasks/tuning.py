"""Per-row pipeline options from the diffusers docs: scheduler choice, memory and speed switches.

Two kinds, applied in two places:
- how a pipeline is *loaded* (``offload``, ``compile``, ``channels_last``, ``attention``): part of
  the pipeline cache key, so rows that differ in them never share a cached pipeline;
- how a loaded pipeline is *set up for one job* (scheduler, FreeU, VAE slicing/tiling, forward
  chunking, cuDNN autotuning, the step cache, the guidance cutoff): applied before every job and
  reset to the pipeline's loaded state when a row leaves one unset, so nothing leaks from one job
  into the next.

Options that change pixels (scheduler and its config, FreeU, VAE tiling, the step cache, the
guidance cutoff) count in the job id; the others only change speed and memory (and pixels by
floating-point noise at most).
Where the docs call a method with arguments, a row can give them all: ``forward_chunking: true``
is the docs' ``enable_forward_chunking()`` (its own defaults), ``{chunk_size, dim}`` anything
else; ``compile`` takes ``{mode, fullgraph}`` per part, as ``torch.compile(..., fullgraph=True)``.
Compiled graphs are kept on disk under ``$VIDEOSWEEP_HOME/compile-cache`` (:func:`use_compile_cache`),
so a later run of the same shapes loads them instead of compiling again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .denoiser_hooks import DeepCache, GuidanceCutoff, detach_all, has_unet_levels

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
#: The options whose value changes a video's pixels, and so its job id.
PIXEL_OPTIONS = ("scheduler", "scheduler_config", "freeu", "vae_tiling", "step_cache", "guidance_cutoff")
#: The options that decide how a pipeline is loaded, and so its cache key.
LOAD_OPTIONS = ("offload", "compile", "channels_last", "attention")

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


class DiffusersCache(BaseModel):
    """A step cache that diffusers hooks into a transformer's blocks itself (``enable_cache`` with its ``config``)."""

    def attach(self, pipe: Any, denoiser: Any) -> None:
        if not hasattr(denoiser, "enable_cache"):
            raise UnsupportedOption(f"step_cache is not supported by {type(denoiser).__name__}; drop it from the row")
        denoiser.enable_cache(self.config(pipe))


class FirstBlockCache(DiffusersCache):
    """Skip the rest of the transformer's blocks while the first block's output barely changes (diffusers FirstBlockCacheConfig)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["first_block"]
    threshold: float = Field(0.05, gt=0, description="relative change below which a step reuses the cached residual; higher: faster, rougher")

    def config(self, pipe: Any) -> Any:
        from diffusers import FirstBlockCacheConfig

        return FirstBlockCacheConfig(threshold=self.threshold)


class PyramidBroadcast(DiffusersCache):
    """Reuse attention outputs across steps within a timestep range (diffusers PyramidAttentionBroadcastConfig)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["pyramid_attention_broadcast"]
    spatial_attention_block_skip_range: int | None = Field(2, ge=1, description="compute spatial attention every N steps")
    temporal_attention_block_skip_range: int | None = Field(None, ge=1, description="temporal attention every N steps")
    cross_attention_block_skip_range: int | None = Field(None, ge=1, description="cross-attention every N steps")
    timestep_skip_range: tuple[int, int] = Field((100, 800), description="timesteps within which attention is reused")

    def config(self, pipe: Any) -> Any:
        from diffusers import PyramidAttentionBroadcastConfig

        return PyramidAttentionBroadcastConfig(
            spatial_attention_block_skip_range=self.spatial_attention_block_skip_range,
            temporal_attention_block_skip_range=self.temporal_attention_block_skip_range,
            cross_attention_block_skip_range=self.cross_attention_block_skip_range,
            spatial_attention_timestep_skip_range=self.timestep_skip_range,
            temporal_attention_timestep_skip_range=self.timestep_skip_range,
            cross_attention_timestep_skip_range=self.timestep_skip_range,
            current_timestep_callback=lambda: pipe.current_timestep,
        )


class DeepCacheOption(BaseModel):
    """Reuse a UNet's deep features across denoiser calls (DeepCache; tasks.denoiser_hooks.DeepCache)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["deep_cache"]
    interval: int = Field(3, ge=1, description="run the whole UNet every N calls, the outer levels only in between")
    depth: int = Field(1, ge=1, description="UNet levels recomputed on the calls between (more: slower, closer)")

    def attach(self, pipe: Any, denoiser: Any) -> None:
        if not has_unet_levels(denoiser):
            raise UnsupportedOption(f"step_cache: deep_cache needs a UNet, not {type(denoiser).__name__}; drop it from the row")
        DeepCache(self.interval, self.depth).attach(denoiser)


#: The step caches that hook transformer blocks through diffusers' own cache configs.
TRANSFORMER_CACHES = ("first_block", "pyramid_attention_broadcast")

StepCache = Annotated[FirstBlockCache | PyramidBroadcast | DeepCacheOption, Field(discriminator="type")]


class PipelineOptions(BaseModel):
    """Row keys for every family (unset: the pipeline as its family loads it)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    scheduler: str | None = Field(
        None, description=f"scheduler: {', '.join(SCHEDULERS)}, or a diffusers *Scheduler class name"
    )
    scheduler_config: dict[str, Any] | None = Field(
        None, description="overrides of the scheduler's config, e.g. {timestep_spacing: trailing}"
    )
    offload: Literal["none", "model", "sequential"] = Field(
        "none", description="model: enable_model_cpu_offload; sequential: enable_sequential_cpu_offload (GPU only)"
    )
    vae_slicing: bool | None = Field(None, description="decode one video of a batch at a time (less memory)")
    vae_tiling: bool | None = Field(None, description="decode in overlapping tiles (much less memory, may show seams)")
    forward_chunking: bool | int | ForwardChunking | None = Field(
        None,
        description="the denoiser's feed-forward layers in chunks (less memory): true is the docs'"
        " enable_forward_chunking() (its defaults: chunks of 1 along dim 0), N chunks of N along dim 0,"
        " {chunk_size: N, dim: 0|1} both as given (the Zeroscope docs: {chunk_size: 1, dim: 1})",
    )
    freeu: dict[str, float] | None = Field(None, description="FreeU scales {s1, s2, b1, b2} (changes the look)")
    compile: bool | CompileMode | dict[str, CompileMode | CompileSpec] = Field(
        False,
        description="torch.compile: true (the denoiser), a mode, {mode: M, fullgraph: true} (the denoiser, as the docs'"
        " torch.compile(pipe.unet, mode=M, fullgraph=True)), or {unet|transformer|denoiser|vae: mode or {mode, fullgraph}};"
        " the first job of a shape compiles (minutes on a GPU), later ones and later runs reuse it",
    )
    channels_last: bool = Field(False, description="denoiser and VAE weights in channels-last memory layout (speed only)")
    cudnn_benchmark: bool = Field(False, description="let cuDNN time its convolution algorithms per shape (speed only)")
    attention: Literal[tuple(ATTENTION_BACKENDS)] | None = Field(  # type: ignore[valid-type]
        None, description="the transformer's attention kernel (diffusers' attention dispatcher); default: sdpa"
    )
    step_cache: StepCache | None = Field(
        None,
        description="reuse denoiser work across steps; faster, changes the video. Transformers: {type: first_block,"
        " threshold: 0.05} or {type: pyramid_attention_broadcast, ...}; UNets: {type: deep_cache, interval: 3, depth: 1}",
    )
    guidance_cutoff: float | None = Field(
        None,
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


class UnsupportedOption(ValueError):
    """A row's option that its pipeline does not have."""


def pixel_options(chosen: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in chosen.items() if key in PIXEL_OPTIONS}


def load_options(chosen: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    """The load-time options as a hashable key (a dict value as its JSON)."""
    frozen = {key: json.dumps(value, sort_keys=True) if isinstance(value, dict) else value for key, value in chosen.items()}
    return tuple(sorted((key, value) for key, value in frozen.items() if key in LOAD_OPTIONS))


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


def denoiser_of(pipe: Any) -> Any:
    return getattr(pipe, "transformer", None) or getattr(pipe, "unet", None)


def compile_cache_dir() -> Path:
    from .models import videosweep_home

    return videosweep_home() / "compile-cache"


def use_compile_cache() -> Path:
    """Keep torch.compile's work on disk (inductor's FX-graph and AOT-autograd caches) under
    ``$VIDEOSWEEP_HOME/compile-cache``, unless TORCHINDUCTOR_CACHE_DIR names another folder."""
    import torch._functorch.config as functorch_config
    import torch._inductor.config as inductor_config
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    # importing torch already sets the variable to its default (a per-user folder under /tmp)
    given = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if given is None or os.path.abspath(given) == os.path.abspath(default_cache_dir()):
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(compile_cache_dir())
    folder = Path(os.environ["TORCHINDUCTOR_CACHE_DIR"])
    folder.mkdir(parents=True, exist_ok=True)
    inductor_config.fx_graph_cache = True
    if hasattr(functorch_config, "enable_autograd_cache"):
        functorch_config.enable_autograd_cache = True
    return folder


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
    return None


def guidance_cutoff_refusal(family: Any, params: Any) -> str | None:
    """Why a row of ``family`` (its module) cannot take ``guidance_cutoff`` (None if it can).

    A family whose pipeline runs guidance as one [unconditional, conditional] batch names the
    parameter that turns it on, ``BATCHED_GUIDANCE``.
    """
    from .models import FAMILIES

    knob = getattr(family, "BATCHED_GUIDANCE", None)
    if knob is None:
        able = sorted(name for name, module in FAMILIES.items() if hasattr(module, "BATCHED_GUIDANCE"))
        return (
            f"guidance_cutoff: {family.PIPELINE_CLASS} does not run guidance as one [unconditional, conditional] batch"
            f" (the families that do: {', '.join(able)}); drop it"
        )
    if getattr(params, knob) <= 1:
        return f"guidance_cutoff: {knob} is {getattr(params, knob)}, so there is no guidance to cut; drop it or raise {knob}"
    return None


@dataclass
class Baseline:
    """A loaded pipeline's own setup, restored for jobs that leave an option unset."""

    scheduler: Any
    vae_slicing: bool | None
    vae_tiling: bool | None

    @classmethod
    def of(cls, pipe: Any) -> Baseline:
        vae = getattr(pipe, "vae", None)
        return cls(pipe.scheduler, getattr(vae, "use_slicing", None), getattr(vae, "use_tiling", None))


def prepare_load(pipe: Any, chosen: dict[str, Any], device: str) -> Any:
    """Apply the load-time options to a freshly loaded pipeline (on the CPU when it is to be offloaded)."""
    import torch

    offload = chosen.get("offload", "none")
    if offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
    denoiser = denoiser_of(pipe)
    if chosen.get("channels_last"):
        for module in (denoiser, getattr(pipe, "vae", None)):
            if module is not None:
                _to_channels_last(module)
    backend = chosen.get("attention")
    if backend:
        _set_attention_backend(denoiser, ATTENTION_BACKENDS[backend])
    targets = compile_specs(chosen.get("compile", False))
    if targets:
        use_compile_cache()
    for target, spec in targets.items():
        if target == "vae":  # the decode is what runs per video; compiling the VAE's forward would miss it
            module = getattr(getattr(pipe, "vae", None), "decoder", None)
        elif target == "denoiser":
            module = denoiser
        else:
            module = getattr(pipe, target, None)
        if not isinstance(module, torch.nn.Module):
            raise UnsupportedOption(f"compile: {type(pipe).__name__} has no {target}; use denoiser or vae")
        # in place: the part keeps its class and methods; torch.compile(module, mode=..., fullgraph=...) as the docs call it
        module.compile(mode=None if spec.mode == "default" else spec.mode, fullgraph=spec.fullgraph)
    return pipe


def _to_channels_last(module: Any) -> None:
    """4-D weights to channels_last, 5-D (3-D convolutions) to channels_last_3d."""
    import torch

    formats = {4: torch.channels_last, 5: torch.channels_last_3d}
    for tensor in (*module.parameters(), *module.buffers()):
        if tensor.dim() in formats:
            tensor.data = tensor.data.contiguous(memory_format=formats[tensor.dim()])


def _set_attention_backend(denoiser: Any, backend: str) -> None:
    from diffusers.models.attention_dispatch import _AttentionBackendRegistry

    dispatched = [m for m in denoiser.modules() if hasattr(getattr(m, "processor", None), "_attention_backend")]
    if not dispatched:
        raise UnsupportedOption(
            f"attention: {type(denoiser).__name__} calls torch's SDPA itself, not diffusers' attention dispatcher; drop it"
        )
    active = _AttentionBackendRegistry._active_backend
    try:
        denoiser.set_attention_backend(backend)
    finally:  # set_attention_backend also sets a process-wide default; keep it to this pipeline
        _AttentionBackendRegistry.set_active_backend(active)


def prepare_job(pipe: Any, chosen: dict[str, Any], baseline: Baseline, best_effort: Collection[str] = ()) -> list[str]:
    """Set ``pipe`` up for one job: the row's options, or the loaded state where it set none.

    An option the pipeline lacks is an error, except those in ``best_effort`` (the memory ladder's
    own): they are left out, and returned.
    """
    import diffusers
    import torch

    # scheduler: a fresh one from the loaded config (plus overrides), or the loaded one back
    name = chosen.get("scheduler")
    overrides = chosen.get("scheduler_config") or {}
    if name or overrides:
        scheduler_cls = getattr(diffusers, SCHEDULERS.get(name, name)) if name else type(baseline.scheduler)
        pipe.scheduler = scheduler_cls.from_config(baseline.scheduler.config, **overrides)
    else:
        pipe.scheduler = baseline.scheduler

    skipped: list[str] = []

    def unsupported(option: str, owner: Any) -> None:
        if option not in best_effort:
            raise UnsupportedOption(f"{option} is not supported by {type(owner).__name__}; drop it from the row")
        skipped.append(option)

    freeu = chosen.get("freeu")
    if freeu is not None:
        if not hasattr(pipe, "enable_freeu"):
            raise UnsupportedOption(f"freeu is not supported by {type(pipe).__name__}; drop it from the row")
        pipe.enable_freeu(**freeu)
    elif hasattr(pipe, "disable_freeu"):
        pipe.disable_freeu()

    vae = getattr(pipe, "vae", None)
    for option, loaded in (("vae_slicing", baseline.vae_slicing), ("vae_tiling", baseline.vae_tiling)):
        wanted = chosen.get(option, loaded)
        if wanted is None:
            continue
        method = ("enable_" if wanted else "disable_") + option.removeprefix("vae_")
        try:
            getattr(vae, method)()
        except (AttributeError, NotImplementedError):  # some VAEs define the method only to refuse
            if wanted:
                unsupported(option, vae)

    denoiser = denoiser_of(pipe)
    chunking = forward_chunking_args(chosen.get("forward_chunking"))
    if chunking is not None:
        if hasattr(denoiser, "enable_forward_chunking"):
            denoiser.enable_forward_chunking(**chunking)  # no arguments for `true`: the docs' call, the method's defaults
        else:
            unsupported("forward_chunking", denoiser)
    elif hasattr(denoiser, "disable_forward_chunking"):
        denoiser.disable_forward_chunking()
    elif denoiser is not None:  # SVD's UNet can enable it but not disable it: what the others' disable does
        for module in denoiser.modules():
            if hasattr(module, "set_chunk_feed_forward"):
                module.set_chunk_feed_forward(chunk_size=None, dim=0)  # as diffusers calls it (keywords)

    torch.backends.cudnn.benchmark = bool(chosen.get("cudnn_benchmark", False))

    # the step cache and the guidance cutoff: attached afresh for each job (their state is per video), removed when unset
    if getattr(denoiser, "is_cache_enabled", False):
        denoiser.disable_cache()
    detach_all(denoiser)
    cache = PipelineOptions.model_validate({"step_cache": chosen.get("step_cache")}).step_cache
    if cache is not None:
        cache.attach(pipe, denoiser)
    cutoff = chosen.get("guidance_cutoff")
    if cutoff is not None and cutoff < 1:
        GuidanceCutoff(pipe, cutoff).attach(denoiser)
    return skipped

