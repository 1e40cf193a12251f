"""AnimateDiff: prompt -> video, a motion adapter plugged into a Stable Diffusion 1.5 checkpoint.

Loaded and called as in the diffusers docs (``using-diffusers/text-img2vid``, the AnimateDiff
tab; ``api/pipelines/animatediff``): ``MotionAdapter.from_pretrained(adapter)`` and
``AnimateDiffPipeline.from_pretrained(base, motion_adapter=adapter)``, both in float16; the
base repo's scheduler config loaded as a ``DDIMScheduler`` with ``clip_sample=False,
timestep_spacing="linspace", beta_schedule="linear", steps_offset=1``; VAE slicing on. The docs
add ``enable_model_cpu_offload()``: here the row option ``offload: model``. The base and the
adapter are separate hub repos, so the adapter is a component: a model key names both, and a row
may swap the adapter (``adapter: guoyww/animatediff-motion-adapter-v1-5-3``). Rows that differ
only in their prompts and seed may share one call (``render_batch``, ``videosweep run --batch N``).

FreeInit (the docs' "Using FreeInit"): ``free_init: true`` and the ``free_init_*`` keys are
``pipe.enable_free_init(...)``'s arguments, with its defaults; the docs' example,
``enable_free_init(method="butterworth", use_fast_sampling=True)``, is ``free_init: true,
free_init_use_fast_sampling: true`` (their DDIM setup is this family's). Set for every job.

Departures from the docs, both forced by this stack:
- the docs' ``pipe.enable_vae_slicing()`` is gone from this pipeline in diffusers 0.42.1
  (AttributeError); slicing is switched on where it lives, ``pipe.vae.enable_slicing()``.
- ``clip_skip`` is not a parameter: with transformers >= 5.6 it fails (``'CLIPTextModel'
  object has no attribute 'text_model'``, diffusers issue #14124); every job uses the
  pipeline's default (None).

The base repos are plain Stable Diffusion 1.5 pipelines (``model_index.json`` says
``StableDiffusionPipeline``); the pipeline turns their ``UNet2DConditionModel`` into a
``UNetMotionModel`` with the adapter's motion modules when it is built. ``build_tiny_sd15``
builds that base and is shared with the PIA family, which plugs a different adapter into it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from ._tiny import clip_text_parts
from .base import (
    LoadOptions, Rendered, Stopwatch, VideoParams,
    decode_latents, fps_field, from_pretrained, prompt_lists, rendered_videos, torch_dtype,
)
from .family import Component, Family

if TYPE_CHECKING:
    import torch

#: The docs' frames are PIL images (the pipeline's default output, written with ``export_to_gif``):
#: ``numpy_to_pil`` rounds.
UINT8_CONVERSION = "round"

#: Short keys for the released checkpoints: the SD 1.5 base and its motion adapter, as the docs pair them.
MODELS = {
    "animatediff-v1-5-2": {
        "source": "emilianJR/epiCRealism",
        "variant": "none",  # the docs load it without a variant
        "adapter": "guoyww/animatediff-motion-adapter-v1-5-2",
    },
}


#: The default ``fps``: the rate the docs' ``export_to_gif(frames, "animation.gif")`` writes at, its
#: default 10. The pipeline takes no fps (its docstring: "16 frames which at 8 frames per seconds
#: amounts to 2 seconds of video"; this family wrote 8 fps before ``fps`` was a row key).
FPS = 10

#: The released adapters' ``motion_max_seq_length``: their temporal position embeddings hold 32
#: frames, and a longer video fails inside the UNet.
MAX_FRAMES = 32


class FreeInitParams(BaseModel):
    """FreeInit's row keys, for AnimateDiff and PIA: ``pipe.enable_free_init``'s arguments, with its defaults (diffusers 0.42.1)."""

    free_init: bool = Field(
        False, description="FreeInit (the docs' enable_free_init): refine the initial noise's low frequencies in rounds (slower)"
    )
    free_init_iters: int = Field(3, ge=1, le=10, description="FreeInit rounds (num_iters)")
    free_init_method: Literal["butterworth", "gaussian", "ideal"] = Field(
        "butterworth", description="FreeInit low-pass filter (diffusers 0.42 has no 'box')"
    )
    free_init_use_fast_sampling: bool = Field(
        False, description="FreeInit coarse-to-fine sampling: the early rounds take fewer steps (faster); the docs set it"
    )
    free_init_order: int = Field(4, ge=1, description="order of the butterworth filter: higher is closer to ideal, lower to gaussian")
    free_init_spatial_stop_frequency: float = Field(
        0.25, ge=0.0, le=1.0, description="FreeInit filter's normalized spatial stop frequency (d_s)"
    )
    free_init_temporal_stop_frequency: float = Field(
        0.25, ge=0.0, le=1.0, description="FreeInit filter's normalized temporal stop frequency (d_t)"
    )


class Params(VideoParams, FreeInitParams):
    """The call parameters of ``AnimateDiffPipeline``, with its own defaults."""

    prompt: str = Field(min_length=1, description="what the video shows")
    negative_prompt: str | None = Field(None, description="what to steer away from; default: the empty prompt")
    height: int | None = Field(
        None, ge=16, le=4096, multiple_of=8, description="output height in pixels; default: the UNet's (512 for SD 1.5)"
    )
    width: int | None = Field(
        None, ge=16, le=4096, multiple_of=8, description="output width in pixels; default: the UNet's (512 for SD 1.5)"
    )
    num_frames: int = Field(
        16, ge=1, le=MAX_FRAMES, description="frames to generate; the adapters hold at most 32"
    )
    num_inference_steps: int = Field(50, ge=1, le=1000, description="denoising steps")
    guidance_scale: float = Field(7.5, ge=0.0, le=100.0, description="classifier-free guidance; <= 1 turns it off")
    eta: float = Field(0.0, ge=0.0, le=1.0, description="DDIM eta: 0 is deterministic DDIM, 1 is DDPM-like noise")
    decode_chunk_size: int = Field(16, ge=1, le=512, description="frames the VAE decodes at once; lower saves memory")
    fps: int = fps_field(FPS)


def set_free_init(pipe, params) -> None:
    """FreeInit on with the row's ``enable_free_init`` arguments (every one passed), or off: the cached pipeline
    keeps the last job's setting otherwise. For AnimateDiff and PIA (their ``free_init*`` keys)."""
    if params.free_init:
        pipe.enable_free_init(
            num_iters=params.free_init_iters,
            use_fast_sampling=params.free_init_use_fast_sampling,
            method=params.free_init_method,
            order=params.free_init_order,
            spatial_stop_frequency=params.free_init_spatial_stop_frequency,
            temporal_stop_frequency=params.free_init_temporal_stop_frequency,
        )
    else:
        pipe.disable_free_init()


def revision_kwargs(source: str, revision: str | None) -> dict[str, Any]:
    """``revision=`` for a hub repo, as ``base.from_pretrained`` passes it (nothing for a local folder)."""
    return {"revision": revision} if revision and not Path(source).is_dir() else {}


def load_adapter(options: LoadOptions):
    """The row's ``MotionAdapter``, in the pipeline's dtype, as the docs load it (no weight variant)."""
    from diffusers import MotionAdapter
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.disable_progress_bar()
    source, revision = options.component("adapter")
    return MotionAdapter.from_pretrained(source, dtype=torch_dtype(options.dtype), **revision_kwargs(source, revision))


def load(options: LoadOptions, device: str):
    """The pipeline, on ``device``, ready to call."""
    from diffusers import AnimateDiffPipeline, DDIMScheduler

    # 1. the adapter, then the base with it (the pipeline builds the motion UNet from both)
    pipe = from_pretrained(AnimateDiffPipeline, options, motion_adapter=load_adapter(options))
    # 2. the docs' scheduler: the base repo's config as DDIM, with linear betas and linspace steps
    pipe.scheduler = DDIMScheduler.from_pretrained(
        options.source,
        subfolder="scheduler",
        clip_sample=False,
        timestep_spacing="linspace",
        beta_schedule="linear",
        steps_offset=1,
        **revision_kwargs(options.source, options.revision),
    )
    pipe.vae.enable_slicing()  # the docs' pipe.enable_vae_slicing(), which diffusers 0.42 no longer has
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def render_batch(pipe, params_list: list[Params], generators: list[torch.Generator], device: str) -> list[Rendered]:
    """Render videos whose parameters differ only in ``batch_fields`` in one pipeline call, each with its generator.

    The denoising loop and the decode are timed apart (:func:`~.base.rendered_videos` shares them out).
    """
    params = params_list[0]  # the call's parameters; only the prompts differ
    set_free_init(pipe, params)

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

    # 2. decode exactly as the pipeline does after its loop (decode_chunk_size frames per VAE call), one video at
    #    a time, so that a chunk never holds two videos' frames
    videos = [decode_latents(pipe, one, params.decode_chunk_size) for one in latents.split(1)]
    return rendered_videos(pipe, watch, denoise_s, videos, UINT8_CONVERSION, params.fps)


#: The tiny UNet's blocks: the SD 1.5 pattern (attention at the higher resolution), two levels.
#: A tiny motion adapter must match them: the same channels and layers per block.
TINY_BLOCK_OUT_CHANNELS = (16, 32)
TINY_LAYERS_PER_BLOCK = 1
TINY_NORM_GROUPS = 4


def build_tiny_sd15(path: Path) -> None:
    """Save a random-weight Stable Diffusion 1.5 pipeline in the layout of the real base repos.

    Modelled on diffusers' ``tests/pipelines/animatediff`` and ``tests/pipelines/pia`` dummy
    components, smaller: a two-level UNet, a three-level VAE (scale factor 4, so the UNet's
    ``sample_size=8`` makes the default output 32x32), a 2-layer CLIP text encoder, the SD 1.5
    PNDM scheduler config; ``safety_checker=None, feature_extractor=None`` as the diffusers tests
    build it. fp32 weights and an fp16 variant.
    """
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    from ._tiny import save_with_fp16_variant

    tokenizer, text_encoder = clip_text_parts()
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=TINY_BLOCK_OUT_CHANNELS,
        layers_per_block=TINY_LAYERS_PER_BLOCK,
        cross_attention_dim=32,
        attention_head_dim=2,
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
        sample_size=32,
        norm_num_groups=TINY_NORM_GROUPS,
    )
    # The SD 1.5 repos' scheduler_config.json, clip_sample included (a key PNDM ignores but keeps,
    # so a DDIM made from this config reads it, as it does from the real repos').
    scheduler = PNDMScheduler.from_config(
        {
            "beta_start": 0.00085,
            "beta_end": 0.012,
            "beta_schedule": "scaled_linear",
            "num_train_timesteps": 1000,
            "set_alpha_to_one": False,
            "skip_prk_steps": True,
            "steps_offset": 1,
            "clip_sample": False,
            "trained_betas": None,
        }
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    save_with_fp16_variant(pipe, path)  # fp32 configs: the docs' plain from_pretrained(folder) loads float32


def build_tiny_motion_adapter(path: Path, conv_in_channels: int | None = None) -> None:
    """Save a random-weight ``MotionAdapter`` that fits :func:`build_tiny_sd15`'s UNet, in its own folder."""
    import torch
    from diffusers import MotionAdapter

    torch.manual_seed(0)
    adapter = MotionAdapter(
        block_out_channels=TINY_BLOCK_OUT_CHANNELS,
        motion_layers_per_block=TINY_LAYERS_PER_BLOCK,
        motion_norm_num_groups=TINY_NORM_GROUPS,
        motion_num_attention_heads=2,
        motion_max_seq_length=MAX_FRAMES,
        conv_in_channels=conv_in_channels,
    )
    adapter.save_pretrained(path)


def build_tiny(path: Path) -> None:
    """The tiny base: a Stable Diffusion 1.5 pipeline, as the real base repos are."""
    build_tiny_sd15(path)


def build_tiny_adapter(path: Path) -> None:
    """The tiny AnimateDiff motion adapter (4 input channels: the UNet's own conv_in is kept)."""
    build_tiny_motion_adapter(path)


FAMILY = Family(
    name="animatediff",
    pipeline_class="AnimateDiffPipeline",
    description="AnimateDiff: prompt -> video, a MotionAdapter in a Stable Diffusion 1.5 checkpoint, DDIM, 10 fps",
    models=MODELS,
    params=Params,
    load=load,
    render=render_batch,
    build_tiny=build_tiny,
    uint8_conversion=UINT8_CONVERSION,
    batch_fields=("prompt", "negative_prompt"),
    batched_guidance="guidance_scale",
    components={
        "adapter": Component(description="MotionAdapter (motion module weights)", build_tiny=build_tiny_adapter),
    },
    # the adapter rides on a plain SD 1.5 repo
    base_pipeline_class="StableDiffusionPipeline",
)
