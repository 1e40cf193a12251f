"""AnimateDiff SDXL: prompt -> video, the SDXL motion adapter (beta) plugged into Stable Diffusion XL.

Loaded and called as in the diffusers docs (``api/pipelines/animatediff``, "AnimateDiffSDXLPipeline";
the ``AnimateDiffSDXLPipeline`` docstring is the same code)::

    adapter = MotionAdapter.from_pretrained("guoyww/animatediff-motion-adapter-sdxl-beta", dtype=torch.float16)
    scheduler = DDIMScheduler.from_pretrained(model_id, subfolder="scheduler", clip_sample=False,
                                              timestep_spacing="linspace", beta_schedule="linear", steps_offset=1)
    pipe = AnimateDiffSDXLPipeline.from_pretrained(model_id, motion_adapter=adapter, scheduler=scheduler,
                                                   dtype=torch.float16, variant="fp16")
    pipe.vae.enable_slicing(); pipe.vae.enable_tiling()
    output = pipe(prompt=..., negative_prompt=..., num_inference_steps=20, guidance_scale=8,
                  width=1024, height=1024, num_frames=16)
    export_to_gif(output.frames[0], "animation.gif")

with ``model_id = "stabilityai/stable-diffusion-xl-base-1.0"``: the base in float16 from its fp16
weight files (``variant: auto``), the adapter without a variant (as ``animatediff.load_adapter``
loads every adapter). The docstring names the adapter's first home,
``a-r-r-o-w/animatediff-motion-adapter-sdxl-beta``; the docs page and the key name guoyww's copy
(the same files). A row may swap the adapter (``adapter:``), as in ``animatediff``.

The docs pass no generator: their call draws the initial noise from torch's global RNG. Here it
is drawn from the job's generator, the same numbers on the CPU (``torch.manual_seed(seed)``
seeds the global generator as a job's is seeded), so a seed means one video whatever ran before.

Two departures from the docs' code, both for diffusers 0.42.1 bugs. ``UNetMotionModel.from_unet2d`` (which the
pipeline calls to add the adapter's motion modules to the base's UNet) copies every part of the
UNet but SDXL's ``add_embedding``, the MLP that embeds the pooled text embedding and the size
conditioning (diffusers 0.42.1; left for later in the review of diffusers PR #6721). The docs'
pipeline runs that MLP with fresh random weights, other ones on every load: the video depends on
what torch's RNG held when the pipeline was built, and the conditioning is noise. Here the motion
UNet is built from the base's UNet as the pipeline builds it, and the base's ``add_embedding``
weights are copied in: every other weight is the docs' pipeline's.

The decode after the loop is the pipeline's (``output_type="latent"`` stops before it), with the
second fix: a float16 SDXL VAE with ``force_upcast`` must decode in float32 ("it overflows in
float16"), and the pipeline's ``upcast_vae()`` leaves its first convolutions in float16, which
diffusers 0.42.1's decoder no longer casts back from: the docs' float16 call fails there
("Input type (Half) and bias type (float) should be the same"). Here the whole VAE decodes in
float32 (what ``StableDiffusionXLPipeline.upcast_vae`` does now: ``vae.to(torch.float32)``) and is
cast back after. The VAE decodes all of a video's frames in one call (sliced one frame at a time,
tiled above the VAE's sample size, as the docs switch on). Frames are PIL images in the docs
(``export_to_gif``): rounded to uint8, written at 10 fps (``export_to_gif``'s default).

Rows that differ only in their prompts and seed share one call (``--batch``). A negative prompt is
not one of them: SDXL turns an unset negative prompt into zero embeddings
(``force_zeros_for_empty_prompt``) but encodes the empty string otherwise, and a call's negative
prompts are either all unset or all strings, so rows share a call only where their negative prompt
is the same.

Refused here, where the pipeline would fail late or go on silently:
- more frames than the adapter's temporal positions (32 for the released adapter): it fails deep
  inside the UNet after the prompt encoding; ``num_frames`` is checked on the row (at most 32) and
  against the loaded adapter's ``motion_max_seq_length`` before the call;
- ``clip_skip`` is not a parameter (as in ``animatediff``: broken with transformers >= 5.6).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field

from . import animatediff
from ._tiny import clip_text_parts
from .base import (
    LoadOptions, Rendered, Stopwatch, VideoParams, decode_latents, fps_field, from_pretrained, rendered_videos,
    torch_dtype,
)
from .family import Component, Family

if TYPE_CHECKING:
    import torch

#: The docs' frames are PIL images (the pipeline's default output, written with ``export_to_gif``): rounded.
UINT8_CONVERSION = "round"

#: Short keys for the released checkpoints: the SDXL base and the SDXL motion adapter, as the docs pair them.
MODELS = {
    "animatediff-sdxl-beta": {
        "source": "stabilityai/stable-diffusion-xl-base-1.0",
        "adapter": "guoyww/animatediff-motion-adapter-sdxl-beta",
    },
}

#: ``export_to_gif(frames, "animation.gif")`` writes at its default rate.
FPS = 10

#: The SDXL beta adapter's ``motion_max_seq_length``.
MAX_FRAMES = 32


class Params(VideoParams):
    """The call parameters of ``AnimateDiffSDXLPipeline``, with its own defaults."""

    prompt: str = Field(min_length=1, description="what the video shows")
    negative_prompt: str | None = Field(
        None, description="what to steer away from; default: none (SDXL then guides away from zero embeddings)"
    )
    height: int | None = Field(
        None, ge=16, le=4096, multiple_of=8, description="output height in pixels; default: the UNet's (1024 for SDXL)"
    )
    width: int | None = Field(
        None, ge=16, le=4096, multiple_of=8, description="output width in pixels; default: the UNet's (1024 for SDXL)"
    )
    num_frames: int = Field(16, ge=1, le=MAX_FRAMES, description="frames to generate; the SDXL adapter holds at most 32")
    num_inference_steps: int = Field(50, ge=1, le=1000, description="denoising steps")
    guidance_scale: float = Field(5.0, ge=0.0, le=100.0, description="classifier-free guidance; <= 1 turns it off")
    guidance_rescale: float = Field(
        0.0, ge=0.0, le=1.0, description="rescale the guided prediction toward the conditional one's spread (0: off)"
    )
    eta: float = Field(0.0, ge=0.0, le=1.0, description="DDIM eta: 0 is deterministic DDIM, 1 is DDPM-like noise")
    fps: int = fps_field(FPS)


def load(options: LoadOptions, device: str):
    """The pipeline, on ``device``, ready to call."""
    from diffusers import AnimateDiffSDXLPipeline, DDIMScheduler, UNet2DConditionModel, UNetMotionModel

    # 1. the docs' scheduler: the base repo's config as DDIM, with linear betas and linspace steps
    scheduler = DDIMScheduler.from_pretrained(
        options.source,
        subfolder="scheduler",
        clip_sample=False,
        timestep_spacing="linspace",
        beta_schedule="linear",
        steps_offset=1,
        **animatediff.revision_kwargs(options.source, options.revision),
    )
    # 2. the motion UNet from the base's UNet and the adapter, as the pipeline builds it, and SDXL's added-condition
    #    embedding, which that build leaves at random (diffusers 0.42.1; see the module's docstring)
    adapter = animatediff.load_adapter(options)
    unet = component_from_pretrained(UNet2DConditionModel, options, subfolder="unet")
    motion_unet = UNetMotionModel.from_unet2d(unet, adapter)
    motion_unet.add_embedding.load_state_dict(unet.add_embedding.state_dict())
    del unet
    # 3. the base with both (the pipeline keeps a UNetMotionModel as it is)
    pipe = from_pretrained(AnimateDiffSDXLPipeline, options, unet=motion_unet, motion_adapter=adapter, scheduler=scheduler)
    # 4. the docs' memory savings
    pipe.vae.enable_slicing()
    pipe.vae.enable_tiling()
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def component_from_pretrained(model_cls, options: LoadOptions, subfolder: str):
    """One part of the base repo, read as the pipeline's ``from_pretrained`` reads it (dtype, weight variant, revision)."""
    kwargs = {"subfolder": subfolder, "dtype": torch_dtype(options.dtype)}
    if options.variant:
        kwargs["variant"] = options.variant
    return model_cls.from_pretrained(options.source, **kwargs, **animatediff.revision_kwargs(options.source, options.revision))


def check_frames(pipe, num_frames: int) -> None:
    """Refuse more frames than the loaded adapter has temporal positions for (it would fail inside the UNet)."""
    limit = pipe.unet.config.motion_max_seq_length
    if num_frames > limit:
        raise ValueError(
            f"num_frames={num_frames}, but this motion adapter holds at most {limit} frames (its motion_max_seq_length)"
        )


def render_batch(pipe, params_list: list[Params], generators: list[torch.Generator], device: str) -> list[Rendered]:
    """Render videos whose parameters differ only in ``batch_fields`` in one pipeline call, each with its generator.

    The denoising loop and the decode are timed apart (:func:`~.base.rendered_videos` shares them out).
    """
    import torch

    params = params_list[0]  # the call's parameters; only the prompts differ
    check_frames(pipe, params.num_frames)
    negative = params.negative_prompt  # one for the call: not a batch field

    # 1. encode the prompts and denoise; stop at the latents (each video's noise from its own generator)
    watch = Stopwatch(device)
    latents = pipe(
        prompt=[one.prompt for one in params_list],
        negative_prompt=None if negative is None else [negative] * len(params_list),
        height=params.height,
        width=params.width,
        num_frames=params.num_frames,
        num_inference_steps=params.num_inference_steps,
        guidance_scale=params.guidance_scale,
        guidance_rescale=params.guidance_rescale,
        eta=params.eta,
        generator=generators,
        output_type="latent",
    ).frames
    denoise_s = watch.lap()

    # 2. decode as the pipeline does after its loop, a float16 VAE that asks for it in float32 (see the docstring)
    upcast = pipe.vae.dtype == torch.float16 and pipe.vae.config.force_upcast
    if upcast:
        pipe.vae.to(dtype=torch.float32)
        latents = latents.float()
    try:
        videos = [decode_latents(pipe, one) for one in latents.split(1)]
    finally:
        if upcast:
            pipe.vae.to(dtype=torch.float16)
    return rendered_videos(pipe, watch, denoise_s, videos, UINT8_CONVERSION, params.fps)


# -- the tiny checkpoints --------------------------------------------------------------------------

#: The tiny SDXL UNet's blocks: SDXL's pattern (no attention at the first level, linear projections,
#: more transformer layers deeper down), two levels. The tiny adapter matches them.
TINY_BLOCK_OUT_CHANNELS = (16, 32)
TINY_LAYERS_PER_BLOCK = 1
TINY_NORM_GROUPS = 4
#: SDXL's micro-conditioning: six size numbers, each embedded in this many channels, beside the pooled text embedding.
TINY_TIME_EMBED_DIM = 8


def build_tiny(path: Path) -> None:
    """Save a random-weight Stable Diffusion XL pipeline in the layout of stabilityai/stable-diffusion-xl-base-1.0.

    Modelled on diffusers' ``tests/pipelines/animatediff`` SDXL dummy components, smaller: a two-level
    UNet with SDXL's ``text_time`` added conditioning, two 2-layer CLIP text encoders (the second with a
    projection, as CLIP-bigG) whose penultimate states are concatenated into the cross-attention
    (32 + 32), a three-level VAE (scale factor 4; ``force_upcast`` and scaling factor as SDXL's), so
    the UNet's ``sample_size=16`` makes the default output 64x64 and the VAE's 64 tiles above that,
    the base repo's Euler scheduler config. fp32 weights and an fp16 variant, as the real repo holds.
    """
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModelWithProjection

    from ._tiny import save_with_fp16_variant

    tokenizer, text_encoder = clip_text_parts()
    torch.manual_seed(1)
    text_encoder_2 = CLIPTextModelWithProjection(text_encoder.config)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=TINY_BLOCK_OUT_CHANNELS,
        layers_per_block=TINY_LAYERS_PER_BLOCK,
        transformer_layers_per_block=(1, 2),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=TINY_TIME_EMBED_DIM,
        projection_class_embeddings_input_dim=6 * TINY_TIME_EMBED_DIM + text_encoder_2.config.projection_dim,
        cross_attention_dim=text_encoder.config.hidden_size + text_encoder_2.config.hidden_size,
        norm_num_groups=TINY_NORM_GROUPS,
    )
    torch.manual_seed(0)
    vae = AutoencoderKL(
        block_out_channels=[16, 32, 32],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 3,
        up_block_types=["UpDecoderBlock2D"] * 3,
        latent_channels=4,
        sample_size=64,
        norm_num_groups=TINY_NORM_GROUPS,
        scaling_factor=0.13025,
        force_upcast=True,
    )
    # stabilityai/stable-diffusion-xl-base-1.0's scheduler_config.json (the docs' DDIM reads it)
    scheduler = EulerDiscreteScheduler.from_config(
        {
            "beta_start": 0.00085,
            "beta_end": 0.012,
            "beta_schedule": "scaled_linear",
            "clip_sample": False,
            "interpolation_type": "linear",
            "num_train_timesteps": 1000,
            "prediction_type": "epsilon",
            "sample_max_value": 1.0,
            "set_alpha_to_one": False,
            "skip_prk_steps": True,
            "steps_offset": 1,
            "timestep_spacing": "leading",
            "trained_betas": None,
            "use_karras_sigmas": False,
        }
    )
    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=unet,
        scheduler=scheduler,
        force_zeros_for_empty_prompt=True,
    )
    save_with_fp16_variant(pipe, path)


def build_tiny_adapter(path: Path) -> None:
    """Save a random-weight SDXL ``MotionAdapter`` that fits :func:`build_tiny`'s UNet (no motion mid block, as the
    SDXL beta adapter has none), in its own folder, without a weight variant (the docs load none)."""
    import torch
    from diffusers import MotionAdapter

    torch.manual_seed(0)
    adapter = MotionAdapter(
        block_out_channels=TINY_BLOCK_OUT_CHANNELS,
        motion_layers_per_block=TINY_LAYERS_PER_BLOCK,
        motion_norm_num_groups=TINY_NORM_GROUPS,
        motion_num_attention_heads=2,
        motion_max_seq_length=MAX_FRAMES,
        use_motion_mid_block=False,
    )
    adapter.save_pretrained(path)


FAMILY = Family(
    name="animatediff-sdxl",
    pipeline_class="AnimateDiffSDXLPipeline",
    description="AnimateDiff SDXL (beta): prompt -> video, the SDXL MotionAdapter in Stable Diffusion XL, DDIM, 10 fps",
    models=MODELS,
    params=Params,
    load=load,
    render=render_batch,
    build_tiny=build_tiny,
    uint8_conversion=UINT8_CONVERSION,
    batch_fields=("prompt",),
    batched_guidance="guidance_scale",
    components={
        "adapter": Component(description="SDXL MotionAdapter (motion module weights)", build_tiny=build_tiny_adapter),
    },
    # the adapter rides on a plain SDXL repo
    base_pipeline_class="StableDiffusionXLPipeline",
)
