"""Per-row pipeline options from the diffusers docs: scheduler choice, memory and speed switches.

Two kinds, applied in two places:
- how a pipeline is *loaded* (``offload``, ``compile``): part of the pipeline cache key, so rows
  that differ in them never share a cached pipeline;
- how a loaded pipeline is *set up for one job* (scheduler, FreeU, VAE slicing/tiling, forward
  chunking): applied before every job and reset to the pipeline's loaded state when a row leaves
  one unset, so nothing leaks from one job into the next.

Options that change pixels (scheduler and its config, FreeU, VAE tiling) count in the job id;
the others only change speed and memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Collection
from typing import Any, Literal

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
#: The options whose value changes a video's pixels, and so its job id.
PIXEL_OPTIONS = ("scheduler", "scheduler_config", "freeu", "vae_tiling")
#: The options that decide how a pipeline is loaded, and so its cache key.
LOAD_OPTIONS = ("offload", "compile")


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
    forward_chunking: int | None = Field(
        None, ge=1, description="feed-forward layers of the denoiser in chunks of this many (less memory)"
    )
    freeu: dict[str, float] | None = Field(None, description="FreeU scales {s1, s2, b1, b2} (changes the look)")
    compile: bool = Field(False, description="torch.compile the denoiser (slow first job, faster after)")

    @field_validator("scheduler")
    @classmethod
    def _known_scheduler(cls, value: str | None) -> str | None:
        if value is not None and value not in SCHEDULERS and not value.endswith("Scheduler"):
            raise ValueError(f"unknown scheduler; use one of {', '.join(SCHEDULERS)} or a diffusers class name")
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
    return tuple(sorted((key, value) for key, value in chosen.items() if key in LOAD_OPTIONS))


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
    if chosen.get("compile"):
        name = "transformer" if getattr(pipe, "transformer", None) is not None else "unet"
        setattr(pipe, name, torch.compile(getattr(pipe, name)))
    return pipe


def prepare_job(pipe: Any, chosen: dict[str, Any], baseline: Baseline, best_effort: Collection[str] = ()) -> list[str]:
    """Set ``pipe`` up for one job: the row's options, or the loaded state where it set none.

    An option the pipeline lacks is an error, except those in ``best_effort`` (the memory ladder's
    own): they are left out, and returned.
    """
    import diffusers

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

    denoiser = getattr(pipe, "transformer", None) or getattr(pipe, "unet", None)
    chunks = chosen.get("forward_chunking")
    if chunks is not None:
        if hasattr(denoiser, "enable_forward_chunking"):
            denoiser.enable_forward_chunking(chunk_size=chunks, dim=1)
        else:
            unsupported("forward_chunking", denoiser)
    elif hasattr(denoiser, "disable_forward_chunking"):
        denoiser.disable_forward_chunking()
    return skipped

