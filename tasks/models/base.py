"""What every model family shares: the params base class, the render output, and the load path.

A family module (``svd.py``, ...) declares its pipeline, its hub ids, a pydantic ``Params``
model, ``load``, ``render`` and ``build_tiny``; for ``videosweep run --batch``, optionally
``render_batch(pipe, params_list, generators, device) -> list[Rendered]``, ``BATCH_FIELDS``
(the parameters that may differ between the videos of one call) and ``batchable(params)``; for
``guidance_cutoff``, ``BATCHED_GUIDANCE`` (the parameter that turns batched guidance on). The helpers here keep those
modules short without hiding the diffusers calls a reader wants to see.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

if TYPE_CHECKING:
    import numpy as np
    import torch


class VideoParams(BaseModel):
    """Base of each family's ``Params``: unknown keys are errors, and a validated row is frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ResizedVideoParams(VideoParams):
    """Base of the ``Params`` of a family that takes a video: an optional output size, both sides or neither."""

    height: int | None = Field(
        None, ge=16, le=4096, multiple_of=8, description="resize the input frames to this height; default: the video's"
    )
    width: int | None = Field(
        None,
        ge=16,
        le=4096,
        multiple_of=8,
        validate_default=True,  # so that a height without a width is refused
        description="resize the input frames to this width; default: the video's",
    )

    # a field validator, not a model validator: the manifest reports the error under its key
    @field_validator("width")
    @classmethod
    def _sizes_in_pairs(cls, width: int | None, info: ValidationInfo) -> int | None:
        if "height" in info.data and (info.data["height"] is None) != (width is None):
            raise ValueError("give both height and width (the output size), or neither (the input video's size)")
        return width


def image_field(description: str, **kwargs: Any) -> Any:
    """An input image file: resolved against the manifest's folder, checked, and hashed into the job id."""
    return Field(description=description, json_schema_extra={"input": "image"}, **kwargs)


def video_field(description: str, **kwargs: Any) -> Any:
    """An input video file (or another row's output), handled like an image field."""
    return Field(description=description, json_schema_extra={"input": "video"}, **kwargs)


def input_fields(params_cls: type[VideoParams]) -> dict[str, str]:
    """The fields of ``params_cls`` that name input files, and their kind ("image" or "video")."""
    return {
        name: field.json_schema_extra["input"]
        for name, field in params_cls.model_fields.items()
        if isinstance(field.json_schema_extra, dict) and "input" in field.json_schema_extra
    }


def conditioning_image(params: VideoParams) -> Path | None:
    """The image an image-to-video row animates (its first frame should match it), or None."""
    images = [name for name, kind in input_fields(type(params)).items() if kind == "image"]
    return Path(getattr(params, images[0])) if images else None


@dataclass
class Rendered:
    """One rendered video, in memory: uint8 frames shaped (frames, height, width, 3)."""

    frames: np.ndarray
    fps: int
    denoise_s: float  # this video's: its share (time / videos) where a call rendered several
    decode_s: float
    scheduler: Any = None  # the scheduler the call used, where the family swapped one in for this job only


def prompt_lists(params_list: list[Any]) -> dict[str, list[str]]:
    """The prompts and negative prompts of one call's videos, as the lists a pipeline takes for a batch.

    A negative prompt left unset is the empty one, as each pipeline reads ``None`` alone; a list of
    prompts cannot hold ``None``.
    """
    return {
        "prompt": [params.prompt for params in params_list],
        "negative_prompt": [params.negative_prompt or "" for params in params_list],
    }


def one_call(videos: list[np.ndarray], fps: int, denoise_s: float, decode_s: float, scheduler: Any = None) -> list[Rendered]:
    """The videos of one pipeline call (``render_batch``), each timed at its share of the call: time / videos."""
    count = len(videos)
    return [Rendered(frames, fps, denoise_s / count, decode_s / count, scheduler) for frames in videos]


@dataclass(frozen=True)
class LoadOptions:
    """How a pipeline is loaded: together with the model id, the key of the pipeline cache."""

    source: str  # hub repo id or local folder
    revision: str | None
    dtype: str  # "float32" | "float16" | "bfloat16"
    variant: str | None  # e.g. "fp16": which weight files to read
    components: tuple[tuple[str, str, str | None], ...] = ()  # (name, hub id or folder, revision)

    def component(self, name: str) -> tuple[str, str | None]:
        """The source and revision of a separately stored part (``adapter``, ``controlnet``)."""
        for component, source, revision in self.components:
            if component == name:
                return source, revision
        raise KeyError(f"no component {name!r} in these load options")


def torch_dtype(name: str) -> torch.dtype:
    import torch

    return getattr(torch, name)


def from_pretrained(pipeline_cls: Any, options: LoadOptions, **components: Any) -> Any:
    """``pipeline_cls.from_pretrained`` as the diffusers docs call it (dtype, fp16 variant, revision)."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()  # a batch log wants no per-component bars
    transformers_logging.disable_progress_bar()
    kwargs: dict[str, Any] = {"dtype": torch_dtype(options.dtype), **components}
    if options.variant:
        kwargs["variant"] = options.variant
    if options.revision and not Path(options.source).is_dir():
        kwargs["revision"] = options.revision
    return pipeline_cls.from_pretrained(options.source, **kwargs)


@contextmanager
def seeded_global_rng(seed: int, device: str):
    """Seed torch's global RNG (CPU, and ``device``'s GPU) with ``seed`` for a block; the caller's state comes back after.

    For pipelines that draw some noise without the call's generator (I2VGen-XL's image latents,
    LTX's decoder noise): seeding that RNG with the job's seed makes the job reproducible. Only
    the RNGs a render can draw from are forked and seeded (``torch.manual_seed`` would also seed
    every other GPU's, outside the fork).
    """
    import torch

    cuda: list[int] = []
    if device.startswith("cuda"):
        index = torch.device(device).index
        cuda.append(torch.cuda.current_device() if index is None else index)
    with torch.random.fork_rng(devices=cuda):
        torch.random.default_generator.manual_seed(seed)
        for index in cuda:
            torch.cuda.default_generators[index].manual_seed(seed)
        yield


def synchronize(device: str) -> None:
    """Wait for queued GPU work, so that a wall-clock split between two steps is honest."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize(device)


class Stopwatch:
    """Wall-clock laps that wait for the device first: ``lap()`` returns seconds since the last lap."""

    def __init__(self, device: str) -> None:
        self.device = device
        self._last = time.perf_counter()

    def lap(self) -> float:
        synchronize(self.device)
        now = time.perf_counter()
        elapsed, self._last = now - self._last, now
        return elapsed


def to_uint8_frames(frames: np.ndarray) -> np.ndarray:
    """Float frames in [0, 1] to uint8, rounded the way diffusers' ``numpy_to_pil`` rounds."""
    import numpy as np

    return (np.clip(frames, 0.0, 1.0) * 255).round().astype(np.uint8)
