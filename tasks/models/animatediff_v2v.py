"""AnimateDiff video-to-video (``AnimateDiffVideoToVideoPipeline``): a video + prompt -> the video re-rendered.

Loaded and called as in the diffusers docs (``api/pipelines/animatediff``,
"AnimateDiffVideoToVideoPipeline")::

    adapter = MotionAdapter.from_pretrained("guoyww/animatediff-motion-adapter-v1-5-2", dtype=torch.float16)
    model_id = "SG161222/Realistic_Vision_V5.1_noVAE"
    pipe = AnimateDiffVideoToVideoPipeline.from_pretrained(model_id, motion_adapter=adapter, dtype=torch.float16)
    pipe.scheduler = DDIMScheduler.from_pretrained(model_id, subfolder="scheduler", clip_sample=False,
                                                   timestep_spacing="linspace", beta_schedule="linear", steps_offset=1)
    pipe.vae.enable_slicing(); pipe.enable_model_cpu_offload()
    output = pipe(video=video, prompt=..., negative_prompt=..., guidance_scale=7.5, num_inference_steps=25,
                  strength=0.5, generator=torch.Generator("cpu").manual_seed(42))
    export_to_gif(output.frames[0], "animation.gif")

The base is a plain SD 1.5 repo (no weight variant in the docs: the key reads none) and the adapter
a component, as in ``animatediff``, whose tiny base this family shares (``tiny_base``); a row may
swap the adapter. ``enable_model_cpu_offload()`` is the row option ``offload: model``. The docs'
``load_video`` helper reads a file's frames as RGB PIL images; here ``tasks.video.read_video`` does
(the first ``num_frames`` of them, or all). A manifest chains the family after another row with
``video: "@<row id>"`` (an ``animatediff`` row, say); a chained row reads its source's lossless
frames. The frames are PIL images in the docs: rounded to uint8 and written at 10 fps, the rate of
the docs' ``export_to_gif``.

Where this differs from the pipeline, and why:
- ``height`` and ``width`` unset are the input video's size (each side a multiple of the VAE's
  scale, or the row is refused with the sizes to give); the pipeline's unset size is its UNet's
  (512x512 for SD 1.5), to which it would stretch any video silently. Given, the pipeline resizes
  every frame to them, as the docs' call does.
- guidance is not offered to ``guidance_cutoff``: the docs' DDIM scheduler keeps no ``begin_index``,
  so the cutoff (``tasks.denoiser_hooks``) would count a strength-shortened schedule from the full
  one's start, cutting guidance earlier than the row says.

Refused here, where the pipeline would fail late or go on silently:
- a ``strength`` x steps that runs no denoising step (``int(steps * strength)`` of them run);
- more frames than the adapter holds (32 for the released ones): a longer video without
  ``num_frames``, or a swapped adapter with fewer positions, fails inside the UNet otherwise;
- ``num_frames`` beyond the video's length (``read_video``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field

from . import animatediff
from .animatediff_sdxl import check_frames
from .base import (
    LoadOptions, Rendered, ResizedVideoParams, Stopwatch,
    decode_latents, fps_field, from_pretrained, rendered_videos, strength_runs_a_step, video_field,
)
from .family import Component, Family, one_video_per_call

if TYPE_CHECKING:
    import torch

#: The docs' frames are PIL images (the pipeline's default output, written with ``export_to_gif``): rounded.
UINT8_CONVERSION = "round"

#: Short keys for the released checkpoints: the docs' SD 1.5 base and motion adapter.
MODELS = {
    "animatediff-v2v-v1-5-2": {
        "source": "SG161222/Realistic_Vision_V5.1_noVAE",
        "variant": "none",  # the docs load it without a variant
        "adapter": "guoyww/animatediff-motion-adapter-v1-5-2",
    },
}

#: ``export_to_gif(frames, "animation.gif")`` writes at its default rate.
FPS = 10


class Params(ResizedVideoParams):
    """The call parameters of ``AnimateDiffVideoToVideoPipeline``, with its own defaults, and how many of the
    video's frames to take."""

    video: Path = video_field(
        "input video (a file, or '@<row id>' for another row's output); resized to width x height if given"
    )
    prompt: str = Field(min_length=1, description="what the re-rendered video shows")
    negative_prompt: str | None = Field(None, description="what to steer away from; default: the empty prompt")
    num_frames: int | None = Field(
        None,
        ge=1,
        le=animatediff.MAX_FRAMES,
        description="take the video's first num_frames frames; default: all of them (the adapters hold at most 32)",
    )
    strength: float = Field(0.8, ge=0.0, le=1.0, description="how far the video is re-noised: 0 keeps it, 1 ignores it")
    num_inference_steps: int = Field(
        50,
        ge=1,
        le=1000,
        validate_default=True,  # so that a strength too low for the default steps is refused
        description="denoising steps at strength 1; int(steps * strength) of them are run",
    )
    guidance_scale: float = Field(7.5, ge=0.0, le=100.0, description="classifier-free guidance; <= 1 turns it off")
    eta: float = Field(0.0, ge=0.0, le=1.0, description="DDIM eta: 0 is deterministic DDIM, 1 is DDPM-like noise")
    decode_chunk_size: int = Field(
        16, ge=1, le=512, description="frames the VAE encodes and decodes at once; lower saves memory"
    )
    fps: int = fps_field(FPS)

    _runs_a_step = strength_runs_a_step()


def load(options: LoadOptions, device: str):
    """The pipeline, on ``device``, ready to call."""
    from diffusers import AnimateDiffVideoToVideoPipeline, DDIMScheduler

    # 1. the adapter, then the base with it (the pipeline builds the motion UNet from both)
    pipe = from_pretrained(AnimateDiffVideoToVideoPipeline, options, motion_adapter=animatediff.load_adapter(options))
    # 2. the docs' scheduler: the base repo's config as DDIM, with linear betas and linspace steps
    pipe.scheduler = DDIMScheduler.from_pretrained(
        options.source,
        subfolder="scheduler",
        clip_sample=False,
        timestep_spacing="linspace",
        beta_schedule="linear",
        steps_offset=1,
        **animatediff.revision_kwargs(options.source, options.revision),
    )
    pipe.vae.enable_slicing()  # the docs' memory savings
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def input_frames(pipe, params: Params) -> tuple[list, int, int]:
    """The video's frames the pipeline takes (its first ``num_frames``, or all), and the output's width and height:
    the row's, else the video's (its sides must divide by the VAE's scale)."""
    from ..video import output_size, read_video

    video, _ = read_video(params.video, params.num_frames, animatediff.MAX_FRAMES)
    check_frames(pipe, len(video))
    width, height = output_size(video[0].size, params.width, params.height, pipe.vae_scale_factor)
    return video, width, height


def render(pipe, params: Params, generator: torch.Generator, device: str) -> Rendered:
    """Render one video; input encoding + denoising and the VAE decode are timed apart."""
    video, width, height = input_frames(pipe, params)

    # 1. encode the video and the prompt, denoise from strength; stop at the latents
    watch = Stopwatch(device)
    latents = pipe(
        video=video,
        prompt=params.prompt,
        negative_prompt=params.negative_prompt,
        height=height,
        width=width,
        num_inference_steps=params.num_inference_steps,
        guidance_scale=params.guidance_scale,
        strength=params.strength,
        eta=params.eta,
        generator=generator,
        decode_chunk_size=params.decode_chunk_size,
        output_type="latent",
    ).frames
    denoise_s = watch.lap()

    # 2. decode exactly as the pipeline does after its loop (decode_chunk_size frames per VAE call)
    frames = decode_latents(pipe, latents, params.decode_chunk_size)
    return rendered_videos(pipe, watch, denoise_s, [frames], UINT8_CONVERSION, params.fps)[0]


def build_tiny(path: Path) -> None:
    """The shared tiny base (``tiny_base``): AnimateDiff's Stable Diffusion 1.5, built by its function."""
    animatediff.build_tiny_sd15(path)


def build_tiny_adapter(path: Path) -> None:
    """The tiny motion adapter: AnimateDiff's, built by its function (the same bytes)."""
    animatediff.build_tiny_adapter(path)


FAMILY = Family(
    name="animatediff-v2v",
    pipeline_class="AnimateDiffVideoToVideoPipeline",
    description="AnimateDiff video-to-video: video (+ text) -> video, re-rendered from strength, a MotionAdapter in "
    "SD 1.5, DDIM, 10 fps; chains after another row's video",
    models=MODELS,
    params=Params,
    load=load,
    render=one_video_per_call(render),
    build_tiny=build_tiny,
    uint8_conversion=UINT8_CONVERSION,
    components={
        "adapter": Component(description="MotionAdapter (motion module weights)", build_tiny=build_tiny_adapter),
    },
    # AnimateDiff's tiny SD 1.5 base; the adapter folder is this family's (built alike)
    tiny_base="animatediff",
    # the adapter rides on a plain SD 1.5 repo
    base_pipeline_class="StableDiffusionPipeline",
)
