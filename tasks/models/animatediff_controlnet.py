"""AnimateDiff with ControlNet (``AnimateDiffControlNetPipeline``): a control video + prompt -> video.

Loaded and called as in the diffusers docs (``api/pipelines/animatediff``, "AnimateDiffControlNetPipeline";
the pipeline's docstring is the same code)::

    controlnet = ControlNetModel.from_single_file("control_v11f1p_sd15_depth.pth", dtype=torch.float16)
    motion_adapter = MotionAdapter.from_pretrained("wangfuyun/AnimateLCM")
    vae = AutoencoderKL.from_pretrained("stabilityai/sd-vae-ft-mse", dtype=torch.float16)
    pipe = AnimateDiffControlNetPipeline.from_pretrained("SG161222/Realistic_Vision_V5.1_noVAE",
        motion_adapter=motion_adapter, controlnet=controlnet, vae=vae).to(device="cuda", dtype=torch.float16)
    pipe.scheduler = LCMScheduler.from_config(pipe.scheduler.config, beta_schedule="linear")
    pipe.load_lora_weights("wangfuyun/AnimateLCM", weight_name="AnimateLCM_sd15_t2v_lora.safetensors", ...)
    conditioning_frames = [depth_detector(frame) for frame in video]  # controlnet_aux's ZoeDetector
    video = pipe(prompt=..., negative_prompt=..., num_frames=len(video), num_inference_steps=10,
                 guidance_scale=2.0, conditioning_frames=conditioning_frames,
                 generator=torch.Generator().manual_seed(42)).frames[0]
    export_to_gif(video, "animatediff_controlnet.gif", fps=8)

The base, the motion adapter, the ControlNet and the VAE are separate hub repos, so the last three
are components: a model key names them all, and a row may swap any (``adapter:``, ``controlnet:``,
``vae:``). Each loads in the job's dtype (float16 on a GPU), the ControlNet with
``ControlNetModel.from_pretrained`` (the docs: "Diffusers-format controlnets, such as
lllyasviel/sd-controlnet-depth, to use .from_pretrained()"; ``lllyasviel/control_v11f1p_sd15_depth``
holds the docs' ``.pth`` in that format).

Where this differs from the docs' code, and why:
- the docs' example runs AnimateLCM: its adapter, the LCM scheduler and its LoRA on the UNet
  (``load_lora_weights``, which needs the ``peft`` package: not a dependency of this project, and
  not installed here). The adapter without its LoRA is not the docs' model, so the keys take the
  docs' alternative, "the original motion adapters ... guoyww/animatediff-motion-adapter-v1-5-3",
  with the scheduler the AnimateDiff docs give those: the base repo's config as DDIM
  (``clip_sample=False, timestep_spacing="linspace", beta_schedule="linear", steps_offset=1``).
- the control images come from a video file: ``control: frames`` takes its frames as they are
  (a depth, pose or edge video; the docs' ZoeDetector depth estimation needs ``controlnet_aux``
  and a model this project does not ship), ``control: canny`` computes Canny edges of each frame
  at the output size (``text2video_zero_controlnet.canny_edges``, a numpy ``cv2.Canny``).
- ``height`` and ``width`` unset are the control video's size (multiples of 8, or the row is
  refused); the pipeline's unset size is its UNet's (512x512), to which it would stretch them.

Refused here, where the pipeline would fail late or go on silently:
- more frames than the adapter holds (32): a longer video without ``num_frames`` is refused, as is
  a swapped adapter with fewer temporal positions than the clip;
- ``control_guidance_start`` not below ``control_guidance_end`` (the pipeline raises only after the
  pipeline is loaded), and Canny settings on a row that takes its frames as they are.

The ControlNet's residuals hold one row per frame and guidance half, which ``guidance_cutoff``
does not split (``tasks.denoiser_hooks``), so guidance is not offered to it. One video per call:
the pipeline takes one control clip for all of a call's prompts. Frames are the docs' PIL images
(rounded to uint8), written at 8 fps (``export_to_gif(..., fps=8)``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from . import animatediff
from .animatediff_sdxl import check_frames
from .base import (
    LoadOptions, Rendered, Stopwatch,
    decode_latents, fps_field, from_pretrained, rendered_videos, torch_dtype, video_field,
)
from .family import Component, Family, one_video_per_call
from .text2video_zero_controlnet import ControlledParams

if TYPE_CHECKING:
    import torch

#: The docs' frames are PIL images (the pipeline's default output, written with ``export_to_gif``): rounded.
UINT8_CONVERSION = "round"

_BASE = "SG161222/Realistic_Vision_V5.1_noVAE"
_ADAPTER = "guoyww/animatediff-motion-adapter-v1-5-3"
_VAE = "stabilityai/sd-vae-ft-mse"

#: Short keys: the docs' base and VAE, the original adapter the docs name, and a ControlNet each.
MODELS = {
    "animatediff-controlnet-depth": {  # the docs' control_v11f1p_sd15_depth, in diffusers format
        "source": _BASE,
        "variant": "none",  # the docs load it without a variant
        "adapter": _ADAPTER,
        "controlnet": "lllyasviel/control_v11f1p_sd15_depth",
        "vae": _VAE,
    },
    "animatediff-controlnet-openpose": {  # as the docs' video-to-video ControlNet example loads it
        "source": _BASE,
        "variant": "none",
        "adapter": _ADAPTER,
        "controlnet": "lllyasviel/sd-controlnet-openpose",
        "vae": _VAE,
    },
    "animatediff-controlnet-canny": {
        "source": _BASE,
        "variant": "none",
        "adapter": _ADAPTER,
        "controlnet": "lllyasviel/sd-controlnet-canny",
        "vae": _VAE,
    },
}

#: ``export_to_gif(video, "animatediff_controlnet.gif", fps=8)``.
FPS = 8


class Params(ControlledParams):
    """The call parameters of ``AnimateDiffControlNetPipeline``, with its own defaults, and the control video."""

    prompt: str = Field(min_length=1, description="what the video shows")
    negative_prompt: str | None = Field(None, description="what to steer away from; default: the empty prompt")
    video: Path = video_field(
        "the video the control images come from, one per frame (a file, or '@<row id>' for another row's output)"
    )
    control: Literal["frames", "canny"] = Field(
        "frames",
        description="frames: the video already holds the control images (depth maps, pose skeletons, edges); "
        "canny: Canny edges of each frame",
    )
    canny_low: int = Field(100, ge=0, le=2040, description="control: canny only: lower hysteresis threshold (cv2.Canny's)")
    canny_high: int = Field(
        200,
        ge=0,
        le=2040,
        validate_default=True,  # so that a canny_low above the default high is refused
        description="control: canny only: upper threshold; edges start above it (cv2.Canny's)",
    )
    canny_sigma: float = Field(
        0.0, ge=0.0, le=10.0, description="control: canny only: Gaussian blur (px) before the edges; 0: none, as cv2.Canny"
    )
    num_frames: int | None = Field(
        None,
        ge=1,
        le=animatediff.MAX_FRAMES,
        description="use the video's first N frames; default: all of them (the adapters hold at most 32)",
    )
    num_inference_steps: int = Field(50, ge=1, le=1000, description="denoising steps")
    guidance_scale: float = Field(7.5, ge=0.0, le=100.0, description="classifier-free guidance; <= 1 turns it off")
    eta: float = Field(0.0, ge=0.0, le=1.0, description="DDIM eta: 0 is deterministic DDIM, 1 is DDPM-like noise")
    controlnet_conditioning_scale: float = Field(
        1.0, ge=0.0, le=10.0, description="weight of the ControlNet's residuals; 0 ignores the control"
    )
    control_guidance_start: float = Field(0.0, ge=0.0, le=1.0, description="fraction of the steps where control starts")
    control_guidance_end: float = Field(
        1.0,
        ge=0.0,
        le=1.0,
        validate_default=True,  # so that a start past the default end is refused
        description="fraction of the steps where control stops; > control_guidance_start",
    )
    decode_chunk_size: int = Field(16, ge=1, le=512, description="frames the VAE decodes at once; lower saves memory")
    fps: int = fps_field(FPS)


def load(options: LoadOptions, device: str):
    """The pipeline, on ``device``, ready to call."""
    from diffusers import AnimateDiffControlNetPipeline, AutoencoderKL, ControlNetModel, DDIMScheduler
    from diffusers.utils import logging as diffusers_logging

    # 1. the ControlNet and the VAE (no weight variant, as the docs load them) and the adapter, in the job's dtype
    diffusers_logging.disable_progress_bar()
    dtype = torch_dtype(options.dtype)
    source, revision = options.component("controlnet")
    controlnet = ControlNetModel.from_pretrained(source, dtype=dtype, **animatediff.revision_kwargs(source, revision))
    source, revision = options.component("vae")
    vae = AutoencoderKL.from_pretrained(source, dtype=dtype, **animatediff.revision_kwargs(source, revision))
    # 2. the base with all three (the pipeline builds the motion UNet from the base's UNet and the adapter)
    pipe = from_pretrained(
        AnimateDiffControlNetPipeline,
        options,
        motion_adapter=animatediff.load_adapter(options),
        controlnet=controlnet,
        vae=vae,
    )
    # 3. the AnimateDiff docs' scheduler for the original adapters (the base repo's config as DDIM)
    pipe.scheduler = DDIMScheduler.from_pretrained(
        options.source,
        subfolder="scheduler",
        clip_sample=False,
        timestep_spacing="linspace",
        beta_schedule="linear",
        steps_offset=1,
        **animatediff.revision_kwargs(options.source, options.revision),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def control_frames(pipe, params: Params) -> tuple[list, int, int]:
    """The control images (the video's first ``num_frames`` frames, or all; Canny edges of them for ``control:
    canny``, found at the output size so that they stay one pixel thin) and the output's width and height."""
    import numpy as np
    from PIL import Image

    from ..video import output_size, read_video
    from .text2video_zero_controlnet import canny_edges

    frames, _ = read_video(params.video, params.num_frames, animatediff.MAX_FRAMES)
    check_frames(pipe, len(frames))
    width, height = output_size(frames[0].size, params.width, params.height, pipe.vae_scale_factor)
    if params.control == "canny":
        frames = [frame.resize((width, height)) if frame.size != (width, height) else frame for frame in frames]
        edges = (canny_edges(np.asarray(frame), params.canny_low, params.canny_high, params.canny_sigma) for frame in frames)
        frames = [Image.fromarray(np.stack([edge] * 3, axis=-1)) for edge in edges]
    return frames, width, height


def render(pipe, params: Params, generator: torch.Generator, device: str) -> Rendered:
    """Render one video; the denoising (prompt and control encoding included) and the decode are timed apart."""
    frames, width, height = control_frames(pipe, params)

    # 1. encode the prompt and the control frames, denoise; stop at the latents
    watch = Stopwatch(device)
    latents = pipe(
        prompt=params.prompt,
        negative_prompt=params.negative_prompt,
        num_frames=len(frames),
        height=height,
        width=width,
        num_inference_steps=params.num_inference_steps,
        guidance_scale=params.guidance_scale,
        eta=params.eta,
        generator=generator,
        conditioning_frames=frames,
        controlnet_conditioning_scale=params.controlnet_conditioning_scale,
        control_guidance_start=params.control_guidance_start,
        control_guidance_end=params.control_guidance_end,
        decode_chunk_size=params.decode_chunk_size,
        output_type="latent",
    ).frames
    denoise_s = watch.lap()

    # 2. decode exactly as the pipeline does after its loop (decode_chunk_size frames per VAE call)
    video = decode_latents(pipe, latents, params.decode_chunk_size)
    return rendered_videos(pipe, watch, denoise_s, [video], UINT8_CONVERSION, params.fps)[0]


# -- the tiny checkpoints --------------------------------------------------------------------------


def build_tiny(path: Path) -> None:
    """The shared tiny base (``tiny_base``): AnimateDiff's Stable Diffusion 1.5, built by its function."""
    animatediff.build_tiny_sd15(path)


def build_tiny_adapter(path: Path) -> None:
    """The tiny motion adapter: AnimateDiff's, built by its function (the same bytes)."""
    animatediff.build_tiny_adapter(path)


def build_tiny_controlnet(path: Path) -> None:
    """Save a random-weight ``ControlNetModel`` that fits the tiny SD 1.5 UNet of ``animatediff``, in its own folder.

    Modelled on diffusers' ``tests/pipelines/animatediff`` ControlNet dummy, sized to the tiny UNet
    (two levels of 16/32 channels, cross-attention first, 4 norm groups, 2-channel heads). Its
    conditioning embedding halves the control image twice, to meet the tiny VAE's 4x latents (the
    real one halves it three times for SD's 8x). fp32 only: the docs load ControlNets without a variant.
    """
    import torch
    from diffusers import ControlNetModel

    torch.manual_seed(0)
    controlnet = ControlNetModel(
        in_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        block_out_channels=animatediff.TINY_BLOCK_OUT_CHANNELS,
        layers_per_block=animatediff.TINY_LAYERS_PER_BLOCK,
        norm_num_groups=animatediff.TINY_NORM_GROUPS,
        cross_attention_dim=32,
        attention_head_dim=2,
        conditioning_embedding_out_channels=(8, 8, 16),
    )
    # A fresh ControlNet adds nothing (its "zero convolutions" are zeros, for training); random weights that keep
    # the control image's signal let the tiny control frames shape the video, as a trained ControlNet's do.
    with torch.no_grad():
        for module in controlnet.controlnet_cond_embedding.modules():
            if isinstance(module, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(module.weight)
        for conv in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]:
            torch.nn.init.normal_(conv.weight, std=0.1)
    controlnet.save_pretrained(path)


def build_tiny_vae(path: Path) -> None:
    """Save a random-weight ``AutoencoderKL`` shaped as the tiny SD 1.5 base's (three levels, 4x), other weights
    (as sd-vae-ft-mse is SD 1.5's VAE, fine-tuned), in its own folder; fp32 only, as the docs load it."""
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(1)
    vae = AutoencoderKL(
        block_out_channels=[16, 32, 32],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 3,
        up_block_types=["UpDecoderBlock2D"] * 3,
        latent_channels=4,
        sample_size=32,
        norm_num_groups=animatediff.TINY_NORM_GROUPS,
    )
    vae.save_pretrained(path)


FAMILY = Family(
    name="animatediff-controlnet",
    pipeline_class="AnimateDiffControlNetPipeline",
    description="AnimateDiff with ControlNet: prompt + control video (depth, pose, edges; or canny of any video) -> "
    "video, a MotionAdapter and a ControlNet in SD 1.5, DDIM, 8 fps (no depth or pose estimation here)",
    models=MODELS,
    params=Params,
    load=load,
    render=one_video_per_call(render),
    build_tiny=build_tiny,
    uint8_conversion=UINT8_CONVERSION,
    components={
        "adapter": Component(description="MotionAdapter (motion module weights)", build_tiny=build_tiny_adapter),
        "controlnet": Component(description="ControlNetModel (depth, pose, canny...)", build_tiny=build_tiny_controlnet),
        "vae": Component(description="AutoencoderKL (the docs: stabilityai/sd-vae-ft-mse)", build_tiny=build_tiny_vae),
    },
    # AnimateDiff's tiny SD 1.5 base; the component folders are this family's
    tiny_base="animatediff",
    # the adapter and ControlNet ride on a plain SD 1.5 repo
    base_pipeline_class="StableDiffusionPipeline",
)
