"""Wan 2.1 video-to-video (``WanVideoToVideoPipeline``): a video + prompt -> the video re-rendered from ``strength``.

Loaded and called as in the diffusers docs (the ``WanVideoToVideoPipeline`` docstring; the
``api/pipelines/wan`` page has no snippet of its own)::

    vae = AutoencoderKLWan.from_pretrained(model_id, subfolder="vae", torch_dtype=torch.float32)
    pipe = WanVideoToVideoPipeline.from_pretrained(model_id, vae=vae, torch_dtype=torch.bfloat16)
    pipe.scheduler = UniPCMultistepScheduler.from_config(pipe.scheduler.config, flow_shift=3.0)
    output = pipe(video=load_video(...), prompt=..., negative_prompt=..., height=480, width=720,
                  guidance_scale=5.0, strength=0.7).frames[0]
    export_to_video(output, "output.mp4", fps=16)

The checkpoints are the text-to-video repos (the docstring: "Available models:
Wan-AI/Wan2.1-T2V-14B-Diffusers, Wan-AI/Wan2.1-T2V-1.3B-Diffusers"), whose model_index.json names
``WanPipeline``: the keys here load them as video-to-video, and the tiny checkpoint is the
``wan`` family's (``tiny_base``). Wan 2.2 A14B has no video-to-video pipeline (its second
transformer would be dropped), so it has no key. The VAE in float32, the rest in the job's dtype
(bfloat16 in the docs); the docs' UniPC shift is the ``flow_shift`` parameter, as in ``wan``.
The pipeline resizes every input frame to ``height`` x ``width`` itself (no size from the
video: its defaults are 480 x 832, as for text-to-video); the output is exported at 16 fps
(``fps``), the frames truncated to uint8 as ``export_to_video`` converts them.

A manifest chains it after another row with ``video: "@<row id>"`` (a Wan text-to-video row,
say, whose frames it re-renders); a chained row reads its source's lossless frames.

Refused here, where the pipeline would go on silently:
- a video whose frame count is not 4k+1: the VAE encodes the first 4k+1 frames and drops the
  rest (8 frames come out as 5); ``num_frames`` takes the video's first frames explicitly;
- a ``strength`` x steps that runs no denoising step (the pipeline would fail on an empty schedule).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field, field_validator

from . import wan
from .base import (
    LoadOptions, Rendered, Stopwatch, VideoParams, check_packed_frames, fps_field, from_pretrained, rendered_videos,
    strength_runs_a_step, video_field,
)
from .family import Family, one_video_per_call

if TYPE_CHECKING:
    import torch

#: The docs export the pipeline's default numpy frames with ``export_to_video``: ``(frame * 255).astype(np.uint8)``.
UINT8_CONVERSION = "truncate"

#: Short keys for the released checkpoints: the text-to-video repos, loaded as video-to-video.
MODELS = {
    "wan2.1-v2v-1.3b": "Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
    "wan2.1-v2v-14b": "Wan-AI/Wan2.1-T2V-14B-Diffusers",
}

#: The frame rate the docs export at (``export_to_video(output, "output.mp4", fps=16)``).
FPS = 16


class Params(VideoParams):
    """The call parameters of ``WanVideoToVideoPipeline``, with its own defaults; the docs' scheduler shift, and
    how many of the video's frames to take. The fields it shares with text-to-video are ``wan``'s."""

    video: Path = video_field(
        "input video (a file, or '@<row id>' for another row's output); the pipeline resizes it to width x height"
    )
    prompt: str = Field(min_length=1, description="what the re-rendered video shows")
    negative_prompt: str | None = wan.Params.model_fields["negative_prompt"]
    height: int = wan.Params.model_fields["height"]
    width: int = wan.Params.model_fields["width"]
    num_frames: int | None = Field(
        None,
        ge=1,
        le=1025,
        description="take the video's first num_frames frames (4k+1); default: all of them, which must be 4k+1",
    )
    strength: float = Field(0.8, ge=0.0, le=1.0, description="how far the video is re-noised: 0 keeps it, 1 ignores it")
    num_inference_steps: int = Field(
        50,
        ge=1,
        le=1000,
        validate_default=True,  # so that a strength too low for the default steps is refused
        description="denoising steps at strength 1; int(steps * strength) of them are run",
    )
    guidance_scale: float = wan.Params.model_fields["guidance_scale"]
    max_sequence_length: int = wan.Params.model_fields["max_sequence_length"]
    flow_shift: float | None = wan.Params.model_fields["flow_shift"]
    fps: int = fps_field(FPS)

    @field_validator("num_frames")
    @classmethod
    def _num_frames_4k_plus_1(cls, value: int | None) -> int | None:
        return value if value is None else check_packed_frames(value, wan.TEMPORAL_FACTOR, "Wan")

    _runs_a_step = strength_runs_a_step()


def load(options: LoadOptions, device: str):
    """The pipeline, on ``device``, ready to call: the VAE in float32 as the docs load it."""
    from diffusers import WanVideoToVideoPipeline

    pipe = from_pretrained(WanVideoToVideoPipeline, options, vae=wan.load_vae(options))
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def input_frames(params: Params) -> list:
    """The video's frames the VAE encodes, as PIL images: its first ``num_frames``, or all of them if 4k+1."""
    from ..video import read_input_video

    check = partial(check_packed_frames, factor=wan.TEMPORAL_FACTOR, model="Wan")
    video, _ = read_input_video(params.video, params.num_frames, check)
    return video


def render(pipe, params: Params, generator: torch.Generator, device: str) -> Rendered:
    """Render one video; input encoding + denoising and the VAE decode are timed apart."""
    video = input_frames(params)

    # encode the video and the prompt, denoise from strength with the job's scheduler shift; stop at the latents
    watch = Stopwatch(device)
    with wan.flow_shift(pipe, params.flow_shift) as scheduler:
        latents = pipe(
            video=video,
            prompt=params.prompt,
            negative_prompt=params.negative_prompt,
            height=params.height,
            width=params.width,
            num_inference_steps=params.num_inference_steps,
            guidance_scale=params.guidance_scale,
            strength=params.strength,
            max_sequence_length=params.max_sequence_length,
            generator=generator,
            output_type="latent",
        ).frames
    denoise_s = watch.lap()

    # decode exactly as the pipeline does after its loop (the same code as text-to-video)
    frames = wan.decode(pipe, latents)
    return rendered_videos(pipe, watch, denoise_s, [frames], UINT8_CONVERSION, params.fps, scheduler)[0]


def build_tiny(path: Path) -> None:
    """The shared tiny checkpoint (``tiny_base``): the ``wan`` family's, built by its function."""
    wan.build_tiny(path)


FAMILY = Family(
    name="wan-v2v",
    pipeline_class="WanVideoToVideoPipeline",
    description="Wan 2.1: video (+ text) -> video, re-rendered from strength; chains after another row's video",
    models=MODELS,
    params=Params,
    load=load,
    render=one_video_per_call(render),
    build_tiny=build_tiny,
    uint8_conversion=UINT8_CONVERSION,
    # the text-to-video repos' layout, loaded as WanVideoToVideoPipeline (their model_index.json names WanPipeline)
    tiny_base="wan",
    # as the docs load it; `dtype: auto` on a GPU means this
    gpu_dtype="bfloat16",
)
