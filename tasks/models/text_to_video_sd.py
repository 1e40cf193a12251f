"""ModelScope text-to-video and Zeroscope 576w: prompt -> video (deprecated in diffusers since 0.38, still importable).

Loaded and called as in the diffusers docs (``api/pipelines/text_to_video``): weights in
float16 (the ModelScope repo from its ``variant="fp16"`` files; the docs load Zeroscope with
no variant, so its key reads none), the repo's own DDIM scheduler, default output numpy. The
docs' memory recipes add ``enable_model_cpu_offload()``, ``enable_vae_slicing()`` (the 64-frame
ModelScope call and Zeroscope) and, for Zeroscope, ``unet.enable_forward_chunking(chunk_size=1,
dim=1)``; here those are the row options ``offload: model``, ``vae_slicing: true`` and
``forward_chunking: {chunk_size: 1, dim: 1}`` (slicing decodes frame by frame: float noise that
the docs' truncating conversion can turn into one uint8 level, so it is off unless a row asks,
as in the docs' first call), and ``load`` puts the pipeline on its device. Rows that differ only in their prompts and seed may share one
call (``render_batch``, ``videosweep run --batch N``; rows with ``eta > 0`` never do).

The frames are what the docs' ``export_to_video(video_frames)`` makes of the numpy frames,
``(frame * 255).astype(np.uint8)`` (truncated: ``UINT8_CONVERSION``), and the mp4 is written at
its default rate, 10 fps (``fps``, a row key; the pipeline takes no frame rate).

Departures from the docs, both forced by diffusers 0.42.1:
- the docs' ``pipe.enable_vae_slicing()`` is gone from this pipeline (AttributeError); the row
  option ``vae_slicing: true`` switches it on where it lives, ``pipe.vae.enable_slicing()``.
- ``clip_skip`` is not a parameter: with transformers >= 5.6 it fails (``'CLIPTextModel'
  object has no attribute 'text_model'``, diffusers issue #14124); the pipeline's default
  (None) is what every job uses.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field

from ._tiny import clip_text_parts
from .base import (
    LoadOptions, Rendered, Stopwatch, VideoParams,
    decode_latents, fps_field, from_pretrained, prompt_lists, rendered_videos,
)
from .family import Family

if TYPE_CHECKING:
    import torch

#: The docs export the pipeline's default numpy frames with ``export_to_video``: ``(frame * 255).astype(np.uint8)``.
UINT8_CONVERSION = "truncate"

#: Short keys for the released checkpoints.
MODELS = {
    "modelscope-1.7b": "damo-vilab/text-to-video-ms-1.7b",
    "zeroscope-576w": {"source": "cerspense/zeroscope_v2_576w", "variant": "none"},  # the docs load it without one
}

#: The default ``fps``: the rate the docs' ``export_to_video(video_frames)`` writes at, its default 10.
#: The pipeline takes no fps (its docstring: "16 frames which at 8 frames per seconds amounts to 2
#: seconds of video"; this family wrote 8 fps before ``fps`` was a row key).
FPS = 10


class Params(VideoParams):
    """The call parameters of ``TextToVideoSDPipeline``, with its own defaults."""

    prompt: str = Field(min_length=1, description="what the video shows")
    negative_prompt: str | None = Field(None, description="what to steer away from; default: the empty prompt")
    height: int | None = Field(
        None,
        ge=16,
        le=4096,
        multiple_of=8,
        description="output height in pixels; default: UNet sample_size x VAE scale (256 for ModelScope)",
    )
    width: int | None = Field(
        None,
        ge=16,
        le=4096,
        multiple_of=8,
        description="output width in pixels; default: UNet sample_size x VAE scale (256 for ModelScope)",
    )
    num_frames: int = Field(16, ge=1, le=512, description="frames to generate (16 is 2 s at 8 fps)")
    num_inference_steps: int = Field(50, ge=1, le=1000, description="denoising steps")
    guidance_scale: float = Field(9.0, ge=0.0, le=100.0, description="classifier-free guidance; <= 1 turns it off")
    eta: float = Field(0.0, ge=0.0, le=1.0, description="DDIM eta: 0 is deterministic DDIM, 1 is DDPM-like noise")
    fps: int = fps_field(FPS)


def load(options: LoadOptions, device: str):
    """The pipeline, on ``device``, ready to call."""
    from diffusers import TextToVideoSDPipeline

    pipe = from_pretrained(TextToVideoSDPipeline, options)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def batchable(params: dict) -> bool:
    """Whether a row may share a call: not with ``eta > 0``, whose DDIM noise the pipeline draws for the
    videos' frames flattened into one batch, from a list of one generator per video (IndexError)."""
    return not params.get("eta")


def render_batch(pipe, params_list: list[Params], generators: list[torch.Generator], device: str) -> list[Rendered]:
    """Render videos whose parameters differ only in ``batch_fields`` in one pipeline call, each with its generator.

    The denoising loop and the decode are timed apart (:func:`~.base.rendered_videos` shares them out).

    Rows with ``eta > 0`` never come here together (:func:`batchable`).
    """
    params = params_list[0]  # the call's parameters; only the prompts differ

    # 1. encode the prompts and denoise; stop at the latents (diffusers draws each video's noise from its own generator)
    watch = Stopwatch(device)
    latents = pipe(
        **prompt_lists(params_list),
        height=params.height,
        width=params.width,
        num_frames=params.num_frames,
        num_inference_steps=params.num_inference_steps,
        guidance_scale=params.guidance_scale,
        eta=params.eta,
        generator=generators,
        output_type="latent",
    ).frames
    denoise_s = watch.lap()

    # 2. decode exactly as the pipeline does after its loop (all of a video's frames in one VAE call, sliced),
    #    one video at a time, so that a VAE call never holds two videos' frames
    videos = [decode_latents(pipe, one) for one in latents.split(1)]
    return rendered_videos(pipe, watch, denoise_s, videos, UINT8_CONVERSION, params.fps)


def build_tiny(path: Path) -> None:
    """Save a random-weight ModelScope-style pipeline in the layout of the real repo (fp32 and fp16 weights).

    Modelled on diffusers' ``tests/pipelines/text_to_video_synthesis`` dummy components, a little
    wider: the real UNet's block types two levels deep, a three-level VAE (scale factor 4, so the
    UNet's ``sample_size=8`` makes the default output 32x32), a 2-layer CLIP text encoder.
    """
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, TextToVideoSDPipeline, UNet3DConditionModel

    from ._tiny import save_with_fp16_variant

    tokenizer, text_encoder = clip_text_parts()
    torch.manual_seed(0)
    unet = UNet3DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        # attention only at the lower resolution keeps a 2-core CPU at ~0.1 s a step
        down_block_types=("DownBlock3D", "CrossAttnDownBlock3D"),
        up_block_types=("CrossAttnUpBlock3D", "UpBlock3D"),
        block_out_channels=(16, 32),
        layers_per_block=1,
        cross_attention_dim=32,
        attention_head_dim=4,
        norm_num_groups=4,
    )
    torch.manual_seed(0)
    vae = AutoencoderKL(
        block_out_channels=[16, 32, 32],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 3,
        up_block_types=["UpDecoderBlock2D"] * 3,
        latent_channels=4,
        sample_size=32,
        norm_num_groups=4,
    )
    # The released checkpoints' scheduler: DDIM over scaled-linear betas, epsilon prediction.
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        num_train_timesteps=1000,
        prediction_type="epsilon",
        steps_offset=1,
    )
    pipe = TextToVideoSDPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler
    )
    save_with_fp16_variant(pipe, path)  # fp32 configs: the docs' plain from_pretrained(folder) loads float32


FAMILY = Family(
    name="text-to-video-sd",
    pipeline_class="TextToVideoSDPipeline",
    description="deprecated in diffusers: ModelScope / Zeroscope text -> video (UNet3D, DDIM), 10 fps",
    models=MODELS,
    params=Params,
    load=load,
    render=render_batch,
    build_tiny=build_tiny,
    uint8_conversion=UINT8_CONVERSION,
    batch_fields=("prompt", "negative_prompt"),
    batchable=batchable,
    batched_guidance="guidance_scale",
    deprecated=True,
    # The releases it is checked on; widen it once its contract test passes on a newer one.
    diffusers=">=0.42,<0.43",
)
