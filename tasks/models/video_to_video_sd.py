"""Zeroscope XL video-to-video: a video + prompt -> the video re-rendered (deprecated in diffusers since 0.38).

Loaded and called as in the diffusers docs (``api/pipelines/text_to_video``, "zeroscope_v2_576w &
zeroscope_v2_XL"): float16 weights (no variant: the docs load the Zeroscope repos without one,
so the key reads none), the scheduler swapped for
``DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)``, VAE slicing on, each input
frame resized (PIL's default filter) to the output size, ``strength=0.6``. The docs upscale a
576x320 Zeroscope video to 1024x576; a manifest chains the two with ``video: "@<row id>"``.
``enable_model_cpu_offload()`` and ``unet.enable_forward_chunking(chunk_size=1, dim=1)`` of the
docs are the row options ``offload: model`` and ``forward_chunking: {chunk_size: 1, dim: 1}``.

Departures from the docs, forced by diffusers 0.42.1:
- ``pipe.enable_vae_slicing()`` is gone from this pipeline; ``pipe.vae.enable_slicing()`` is
  what the pipeline's own docstring example calls.
- ``clip_skip`` is not a parameter (broken with transformers >= 5.6, diffusers issue #14124).
- the input video comes from a file (``tasks.video.read_video``), not from the first pipeline's
  frames in memory; a chained row (``video: "@<row id>"``) reads the file that keeps its source's
  frames losslessly (FFV1, ``videos/<job id>.mkv``), so it gets exactly the docs' frames. Only a
  source rendered before videosweep kept them is read from its H.264 mp4 (its record says so).

The output is written at the input video's frame rate (the frames are the input's, re-rendered)
unless the row sets ``fps``; the docs' ``export_to_video`` writes 10 fps, the rate of the 576w
video it upscales (a chained text-to-video-sd row's default). The frames are truncated as that
export converts the pipeline's numpy frames (``UINT8_CONVERSION``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field

from .base import (
    ResizedVideoParams, LoadOptions, Rendered, Stopwatch,
    decode_latents, fps_field, from_pretrained, rendered_videos, strength_runs_a_step, video_field,
)
from .family import Family, one_video_per_call

if TYPE_CHECKING:
    import torch

#: The docs export the pipeline's default numpy frames with ``export_to_video``: ``(frame * 255).astype(np.uint8)``.
UINT8_CONVERSION = "truncate"

#: Short keys for the released checkpoints.
MODELS = {
    "zeroscope-xl": {"source": "cerspense/zeroscope_v2_XL", "variant": "none"},  # the docs load it without one
}


class Params(ResizedVideoParams):
    """The call parameters of ``VideoToVideoSDPipeline``, with its own defaults, and the docs' resize."""

    prompt: str = Field(min_length=1, description="what the re-rendered video shows")
    video: Path = video_field("input video (a file, or '@<row id>' for another row's output); all its frames are used")
    negative_prompt: str | None = Field(None, description="what to steer away from; default: the empty prompt")
    strength: float = Field(0.6, ge=0.0, le=1.0, description="how far the video is re-noised: 0 keeps it, 1 ignores it")
    num_inference_steps: int = Field(
        50,
        ge=1,
        le=1000,
        validate_default=True,  # so that a strength too low for the default steps is refused
        description="denoising steps at strength 1; int(steps * strength) of them are run",
    )
    guidance_scale: float = Field(15.0, ge=0.0, le=100.0, description="classifier-free guidance; <= 1 turns it off")
    eta: float = Field(0.0, ge=0.0, le=1.0, description="DDIM eta; ignored by the docs' DPM++ scheduler")
    fps: int | None = fps_field(None)

    _runs_a_step = strength_runs_a_step()


def load(options: LoadOptions, device: str):
    """The pipeline, on ``device``, ready to call."""
    from diffusers import DPMSolverMultistepScheduler, VideoToVideoSDPipeline

    pipe = from_pretrained(VideoToVideoSDPipeline, options)
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)  # as the docs do
    pipe.vae.enable_slicing()  # the docs' pipe.enable_vae_slicing(), which diffusers 0.42 no longer has
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def render(pipe, params: Params, generator: torch.Generator, device: str) -> Rendered:
    """Render one video; input encoding + denoising and the VAE decode are timed apart."""
    from ..video import output_size, read_video

    # 1. the input frames, resized as in the docs; the VAE needs sides divisible by its scale
    video, fps = read_video(params.video)
    size = output_size(video[0].size, params.width, params.height, pipe.vae_scale_factor)
    if params.width is not None:
        video = [frame.resize(size) for frame in video]

    # 2. encode the video and the prompt, denoise from strength; stop at the latents
    watch = Stopwatch(device)
    latents = pipe(
        params.prompt,
        video=video,
        strength=params.strength,
        negative_prompt=params.negative_prompt,
        num_inference_steps=params.num_inference_steps,
        guidance_scale=params.guidance_scale,
        eta=params.eta,
        generator=generator,
        output_type="latent",
    ).frames
    denoise_s = watch.lap()

    # 3. decode exactly as the pipeline does after its loop (all frames in one VAE call, sliced)
    frames = decode_latents(pipe, latents)
    return rendered_videos(pipe, watch, denoise_s, [frames], UINT8_CONVERSION, params.fps or fps)[0]


def build_tiny(path: Path) -> None:
    """The shared tiny checkpoint (``tiny_base``): text-to-video-sd's, built by its function."""
    from .text_to_video_sd import build_tiny as build_text_to_video_sd

    build_text_to_video_sd(path)


FAMILY = Family(
    name="video-to-video-sd",
    pipeline_class="VideoToVideoSDPipeline",
    description="deprecated in diffusers: Zeroscope XL video + prompt -> video (upscale / re-render), strength, DPM++",
    models=MODELS,
    params=Params,
    load=load,
    render=one_video_per_call(render),
    build_tiny=build_tiny,
    uint8_conversion=UINT8_CONVERSION,
    frames_param=None,  # the input video decides
    batched_guidance="guidance_scale",
    # The tiny checkpoint is text-to-video-sd's: the same UNet3DConditionModel repo layout,
    # loaded here with VideoToVideoSDPipeline (its model_index.json names TextToVideoSDPipeline).
    tiny_base="text-to-video-sd",
    deprecated=True,
    # The releases it is checked on; widen it once its contract test passes on a newer one.
    diffusers=">=0.42,<0.43",
)
