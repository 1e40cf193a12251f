"""A loaded pipeline set up as a row's pipeline options ask (``tasks.pipeline_options``, the options' model).

Applied in two places:
- :func:`prepare_load`: the load options (offload, compile, channels-last, attention kernel), once,
  on a freshly loaded pipeline;
- :func:`prepare_job`: the rest (scheduler, FreeU, VAE slicing/tiling, forward chunking, cuDNN
  autotuning, the step cache, the guidance cutoff), before every job, each reset to the
  pipeline's loaded state (:class:`Baseline`) when a row leaves it unset, so nothing leaks from
  one job into the next.

Compiled graphs are kept on disk under ``$VIDEOSWEEP_HOME/compile-cache`` (:func:`use_compile_cache`),
so a later run of the same shapes loads them instead of compiling again.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .denoiser_hooks import DeepCache, GuidanceCutoff, detach_all, has_unet_levels
from .pipeline_options import (
    ATTENTION_BACKENDS,
    SCHEDULERS,
    DeepCacheOption,
    FirstBlockCache,
    PipelineOptions,
    compile_specs,
    forward_chunking_args,
)


class UnsupportedOption(ValueError):
    """A row's option that its pipeline does not have."""


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


@dataclass
class Baseline:
    """A loaded pipeline's own setup, restored for jobs that leave an option unset."""

    scheduler: Any
    vae_slicing: bool | None
    vae_tiling: bool | None

    @classmethod
    def of(cls, pipe: Any) -> Baseline:
        vae = getattr(pipe, "vae", None)
        # no scheduler: a pipeline that does not denoise (LTX-2's latent upsampler)
        return cls(getattr(pipe, "scheduler", None), getattr(vae, "use_slicing", None), getattr(vae, "use_tiling", None))


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
        if denoiser is None:
            raise UnsupportedOption(f"attention: {type(pipe).__name__} has no denoiser (it does not denoise); drop it")
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
    if (name or overrides) and baseline.scheduler is None:
        raise UnsupportedOption(
            f"scheduler: {type(pipe).__name__} has no scheduler (it does not denoise); drop scheduler and scheduler_config"
        )
    if name or overrides:
        scheduler_cls = getattr(diffusers, SCHEDULERS.get(name, name)) if name else type(baseline.scheduler)
        pipe.scheduler = scheduler_cls.from_config(baseline.scheduler.config, **overrides)
    elif baseline.scheduler is not None:
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
            unsupported("forward_chunking", pipe if denoiser is None else denoiser)
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
    if denoiser is not None:
        detach_all(denoiser)
    cache = PipelineOptions.model_validate({"step_cache": chosen.get("step_cache")}).step_cache
    cutoff = chosen.get("guidance_cutoff")
    if denoiser is None and (cache is not None or (cutoff is not None and cutoff < 1)):
        option = "step_cache" if cache is not None else "guidance_cutoff"
        raise UnsupportedOption(f"{option}: {type(pipe).__name__} has no denoiser (it does not denoise); drop it from the row")
    if cache is not None:
        _attach_step_cache(cache, pipe, denoiser)
    if cutoff is not None and cutoff < 1:
        GuidanceCutoff(pipe, cutoff).attach(denoiser)
    return skipped


def _attach_step_cache(cache: Any, pipe: Any, denoiser: Any) -> None:
    """Hook a row's ``step_cache`` into ``denoiser``: DeepCache is ours (tasks.denoiser_hooks), the
    transformer caches are diffusers' own (``enable_cache`` with their config)."""
    if isinstance(cache, DeepCacheOption):
        if not has_unet_levels(denoiser):
            raise UnsupportedOption(f"step_cache: deep_cache needs a UNet, not {type(denoiser).__name__}; drop it from the row")
        DeepCache(cache.interval, cache.depth).attach(denoiser)
        return
    if not hasattr(denoiser, "enable_cache"):
        raise UnsupportedOption(f"step_cache is not supported by {type(denoiser).__name__}; drop it from the row")
    denoiser.enable_cache(_diffusers_cache_config(cache, pipe))


def _diffusers_cache_config(cache: Any, pipe: Any) -> Any:
    """diffusers' config for a ``first_block`` or ``pyramid_attention_broadcast`` step cache."""
    from diffusers import FirstBlockCacheConfig, PyramidAttentionBroadcastConfig

    if isinstance(cache, FirstBlockCache):
        return FirstBlockCacheConfig(threshold=cache.threshold)
    return PyramidAttentionBroadcastConfig(
        spatial_attention_block_skip_range=cache.spatial_attention_block_skip_range,
        temporal_attention_block_skip_range=cache.temporal_attention_block_skip_range,
        cross_attention_block_skip_range=cache.cross_attention_block_skip_range,
        spatial_attention_timestep_skip_range=cache.timestep_skip_range,
        temporal_attention_timestep_skip_range=cache.timestep_skip_range,
        cross_attention_timestep_skip_range=cache.timestep_skip_range,
        current_timestep_callback=lambda: pipe.current_timestep,
    )
