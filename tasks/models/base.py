"""What every model family shares: the params base class, the render output, and the load path.

A family module (``svd.py``, ...) declares its pipeline, its hub ids, a pydantic ``Params``
model, ``load``, ``render`` and ``build_tiny`` in its ``FAMILY = Family(...)`` record
(``family.py``). Every family takes an ``fps`` row key (:func:`fps_field`, or :func:`fps_is`
where the pipeline has a frame-rate parameter of its own) and converts float frames to uint8 as
its docs do (:func:`to_uint8_frames`). The helpers here keep those modules short without hiding
the diffusers calls a reader wants to see: each family still makes its own pipeline call and its
own decode, and :func:`rendered_videos` does what every render does after them.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

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


def image_field(description: str, *, first_frame: bool = True, **kwargs: Any) -> Any:
    """An input image file: resolved against the manifest's folder, checked, and hashed into the job id.

    ``first_frame=False``: an image the video is conditioned on but need not open with (Wan VACE's
    reference image), which the first-frame metrics (:func:`conditioning_image`) leave alone.
    """
    extra = {"input": "image"} if first_frame else {"input": "image", "first_frame": False}
    return Field(description=description, json_schema_extra=extra, **kwargs)


def video_field(description: str, **kwargs: Any) -> Any:
    """An input video file (or another row's output), handled like an image field."""
    return Field(description=description, json_schema_extra={"input": "video"}, **kwargs)


def scalar_type(annotation: Any) -> type:
    """The one value type of a parameter's annotation (``int | None`` -> int, ``Path`` and ``Literal["a"]`` -> str):
    its column type in the results table. A parameter must have one (``Family`` checks it)."""
    import types
    import typing

    args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        annotation = args[0]
    if typing.get_origin(annotation) is typing.Literal:
        annotation = type(typing.get_args(annotation)[0])
    if annotation is Path:
        return str
    if annotation not in (bool, int, float, str):
        raise TypeError(f"{annotation!r} is not one of bool, int, float, str, Path (or one of them | None)")
    return annotation


def check_packed_frames(value: int, factor: int, model: str) -> int:
    """Refuse a frame count that a VAE packing the frames after the first by ``factor`` would not give back
    (Wan 4, Mochi 6, LTX 8: the pipelines round such a count down, silently or with a warning)."""
    if (value - 1) % factor:
        below = (value - 1) // factor * factor + 1
        raise ValueError(
            f"must be {factor}k+1 ({model}'s VAE packs the frames after the first by {factor} and would turn "
            f"{value} into {below} frames); nearest: {below} or {below + factor}"
        )
    return value


def input_fields(params_cls: type[VideoParams]) -> dict[str, str]:
    """The fields of ``params_cls`` that name input files, and their kind ("image" or "video")."""
    return {
        name: field.json_schema_extra["input"]
        for name, field in params_cls.model_fields.items()
        if isinstance(field.json_schema_extra, dict) and "input" in field.json_schema_extra
    }


def conditioning_image(params: VideoParams) -> Path | None:
    """The image an image-to-video row animates (its first frame should match it), or None."""
    fields = type(params).model_fields
    images = [
        name
        for name, kind in input_fields(type(params)).items()
        if kind == "image" and fields[name].json_schema_extra.get("first_frame", True)
    ]
    return Path(getattr(params, images[0])) if images else None


def fps_field(default: int | None) -> Any:
    """The ``fps`` row key of a family whose pipeline takes no frame rate: the rate the mp4 is written at.

    ``default`` is the rate the family's docs export at (None: the input video's rate). The key was
    added after job ids existed: while it holds its default it is left out of the params a job id
    hashes (``exclude_if``), so the ids of rows that do not set it stayed as they were.
    """
    rate = "the input video's" if default is None else f"{default}, the rate the docs export at"
    description = f"frames per second of the mp4 (the pipeline takes no frame rate); default: {rate}"
    return Field(default, ge=1, le=240, description=description, exclude_if=lambda value: value == default)


def fps_is(name: str) -> Any:
    """``fps`` as another name of the pipeline's own frame-rate parameter ``name`` (I2VGen-XL's ``target_fps``,
    LTX's ``frame_rate``): one value, which conditions the model and is the mp4's rate, so they cannot disagree.

    Returns the ``fps`` field; pair it with :func:`fold_fps`, the class's ``mode="before"`` model
    validator, which moves a row's ``fps`` into ``name``: the field itself stays None (and out of
    dumps), so job ids hash ``name`` alone, as before ``fps`` existed, whichever key a row used.
    """
    return Field(None, ge=1, le=240, exclude=True, description=f"another name of {name} (give either, or both alike)")


def fold_fps(name: str) -> Any:
    """The model validator that makes ``fps`` and ``name`` one value (see :func:`fps_is`); two different values are refused."""

    def fold(cls: type[BaseModel], data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if data.get("fps") is not None:
            if data.get(name) is not None and data[name] != data["fps"]:
                raise ValueError(
                    f"fps={data['fps']!r} and {name}={data[name]!r}: for this family they are one parameter "
                    "(the model's frame-rate conditioning and the mp4's rate); give one of them"
                )
            data[name] = data["fps"]
        data.pop("fps", None)
        return data

    return model_validator(mode="before")(fold)


@dataclass(frozen=True)
class Audio:
    """The sound a family renders with its video (LTX-2): a float waveform in [-1, 1], (channels, samples), and its rate.

    What the docs hand their export (``audio[0].float().cpu()``, at ``pipe.vocoder.config.output_sampling_rate``).
    """

    waveform: np.ndarray  # float32, (channels, samples)
    sample_rate: int

    def __post_init__(self) -> None:
        import numpy as np

        waveform = np.asarray(self.waveform)
        if waveform.ndim != 2 or waveform.shape[0] not in (1, 2) or waveform.shape[1] == 0:
            raise ValueError(f"audio: expected a waveform shaped (1 or 2 channels, samples), got {waveform.shape}")
        if not np.issubdtype(waveform.dtype, np.floating):
            raise ValueError(f"audio: expected a float waveform in [-1, 1], got {waveform.dtype}")
        if not 1000 <= self.sample_rate <= 384000:
            raise ValueError(f"audio: sample rate {self.sample_rate} Hz is not a sound's")

    @property
    def channels(self) -> int:
        return int(self.waveform.shape[0])

    @property
    def samples(self) -> int:
        return int(self.waveform.shape[1])

    @property
    def duration_s(self) -> float:
        return self.samples / self.sample_rate

    def pcm16(self) -> np.ndarray:
        """The samples as the docs' export (``diffusers.utils.encode_video``) hands them to the AAC encoder: clipped
        to [-1, 1], times 32767, truncated to int16 (``.to(torch.int16)``); interleaved, shaped (samples, channels)."""
        import numpy as np

        clipped = np.clip(np.asarray(self.waveform, dtype=np.float32), -1.0, 1.0)
        return np.ascontiguousarray((clipped * 32767.0).astype(np.int16).T)

    def sha256(self) -> str:
        """The sha256 of :meth:`pcm16`'s little-endian bytes: the exact samples the mp4's AAC stream was encoded from."""
        import hashlib

        return hashlib.sha256(self.pcm16().astype("<i2").tobytes()).hexdigest()


def strength_runs_a_step() -> Any:
    """The ``num_inference_steps`` validator of a family whose pipeline re-noises an input by ``strength`` (declared
    before the steps, which set ``validate_default=True``): a pair that runs no denoising step is refused (the
    pipelines run ``int(steps * strength)`` of them, and fail on an empty schedule or return the input)."""

    def runs_a_step(cls: type[BaseModel], steps: int, info: ValidationInfo) -> int:
        strength = info.data.get("strength")
        if strength is not None and int(steps * strength) < 1:
            raise ValueError(
                f"strength={strength} x num_inference_steps={steps} runs no denoising step "
                "(the pipeline runs int(steps * strength) of them); raise one of them"
            )
        return steps

    return field_validator("num_inference_steps")(runs_a_step)


@dataclass
class Rendered:
    """One rendered video, in memory: uint8 frames shaped (frames, height, width, 3), and its sound where the family
    renders one (``audio``; None for the silent families, whose mp4 has no audio stream)."""

    frames: np.ndarray
    fps: int
    denoise_s: float  # this video's: its share (time / videos) where a call rendered several
    decode_s: float
    scheduler: Any = None  # the scheduler the call used, where the family swapped one in for this job only
    audio: Audio | None = None


def prompt_lists(params_list: list[Any]) -> dict[str, list[str]]:
    """The prompts and negative prompts of one call's videos, as the lists a pipeline takes for a batch.

    A negative prompt left unset is the empty one, as each pipeline reads ``None`` alone; a list of
    prompts cannot hold ``None``.
    """
    return {
        "prompt": [params.prompt for params in params_list],
        "negative_prompt": [params.negative_prompt or "" for params in params_list],
    }


def rendered_videos(
    pipe: Any,
    watch: Stopwatch,
    denoise_s: float,
    videos: list[np.ndarray],
    conversion: Uint8Conversion,
    fps: int,
    scheduler: Any = None,
    audio: list[Audio] | None = None,
) -> list[Rendered]:
    """The end of every render: the float frames in [0, 1] that one pipeline call's latents decoded to, one array
    per video, as :class:`Rendered` videos (with each video's ``audio``, where the family renders sound).

    Each video is converted to uint8 as the family's docs convert it, the pipeline's offload hooks
    are reset as after its own decode (a no-op without offload), and ``watch``'s lap since the
    denoising (``denoise_s``, the call itself) is the decode. A video's times are its share of the
    call's: time / videos.
    """
    frames = [to_uint8_frames(video, conversion) for video in videos]
    pipe.maybe_free_model_hooks()
    decode_s = watch.lap()
    count = len(frames)
    sounds = audio if audio is not None else [None] * count
    if len(sounds) != count:
        raise ValueError(f"{count} videos but {len(sounds)} sounds")
    return [Rendered(one, fps, denoise_s / count, decode_s / count, scheduler, sound) for one, sound in zip(frames, sounds)]


def decode_latents(pipe: Any, latents: torch.Tensor, *args: Any, **kwargs: Any) -> np.ndarray:
    """Float frames (frames, height, width, 3) in [0, 1]: ``pipe.decode_latents(latents, *args, **kwargs)`` and the
    numpy postprocess, the decode that the UNet video pipelines (AnimateDiff, SVD, ModelScope...) run after their loop."""
    import torch

    with torch.no_grad():
        video = pipe.decode_latents(latents, *args, **kwargs)
    return pipe.video_processor.postprocess_video(video=video, output_type="np")[0]


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
def global_generator(generator: torch.Generator, device: str):
    """Torch's global generator of ``generator``'s device, continuing ``generator``'s stream, for a block (forked).

    For families whose docs draw all the call's noise from torch's global RNG, as one stream:
    I2VGen-XL's docs pass ``generator=torch.manual_seed(seed)`` (the default CPU generator itself),
    so its image latents' noise, which the pipeline samples without the generator, and its
    latents come from one stream; LTX's docs pass no generator, so the latents, the decode noise
    and the VAE decoder's injected noise all come from the global RNG. Inside the block the global
    generator of ``generator``'s device holds ``generator``'s state (a fresh job generator: what
    ``torch.manual_seed(seed)`` makes it), and is yielded, to pass as the call's generator; the
    global RNGs of the other devices the call can draw from (``device``'s GPU) are seeded with the
    seed, as ``torch.manual_seed`` seeds them. On exit every one of them is as it was before.
    """
    import torch

    cuda: list[int] = []
    for where in (torch.device(device), generator.device):
        if where.type == "cuda":
            index = torch.cuda.current_device() if where.index is None else where.index
            if index not in cuda:
                cuda.append(index)
    with torch.random.fork_rng(devices=cuda):
        seed = generator.initial_seed()
        torch.random.default_generator.manual_seed(seed)
        for index in cuda:
            torch.cuda.default_generators[index].manual_seed(seed)
        if generator.device.type == "cuda":
            index = generator.device.index
            shared = torch.cuda.default_generators[torch.cuda.current_device() if index is None else index]
        else:
            shared = torch.random.default_generator
        shared.set_state(generator.get_state())
        yield shared


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


#: How a family's docs turn float frames in [0, 1] into uint8 (each family's ``UINT8_CONVERSION``):
#: "round" where the docs' frames go through PIL (the pipeline's default ``output_type="pil"``:
#: diffusers' ``numpy_to_pil`` computes ``(images * 255).round().astype("uint8")``), "truncate"
#: where the docs export numpy frames (``diffusers.utils.export_to_video`` computes
#: ``(frame * 255).astype(np.uint8)``, and the Text2Video-Zero page writes the same by hand).
Uint8Conversion = Literal["round", "truncate"]


def to_uint8_frames(frames: np.ndarray, conversion: Uint8Conversion) -> np.ndarray:
    """Float frames in [0, 1] to uint8 as the family's docs convert them (:data:`Uint8Conversion`).

    The frames are clipped to [0, 1] first (the pipelines' postprocessing clamps them already, so
    that changes nothing there); then scaled by 255 and rounded or truncated, in the frames' own
    float dtype, exactly the docs' expressions.
    """
    import numpy as np

    scaled = np.clip(frames, 0.0, 1.0) * 255
    if conversion == "round":
        scaled = scaled.round()
    elif conversion != "truncate":
        raise ValueError(f"unknown uint8 conversion {conversion!r}; one of 'round', 'truncate'")
    return scaled.astype(np.uint8)
