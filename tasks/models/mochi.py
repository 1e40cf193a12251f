"""Mochi 1 preview text-to-video (``MochiPipeline``): a T5 text encoder and an asymmetric DiT (AsymmDiT).

Loaded and called as in the diffusers docs (``api/pipelines/mochi``, "Using a lower precision
variant to save memory")::

    pipe = MochiPipeline.from_pretrained("genmo/mochi-1-preview", variant="bf16", dtype=torch.bfloat16)
    pipe.enable_model_cpu_offload()
    pipe.vae.enable_tiling()
    frames = pipe(prompt, num_frames=85).frames[0]
    export_to_video(frames, "mochi.mp4", fps=30)

``from_pretrained`` in the job's dtype from the repo's ``*.bf16.*`` files (the ``mochi-1`` key),
the pipeline's own 480 x 848, 64 steps and guidance 4.5, PIL frames (rounded,
``UINT8_CONVERSION``) exported at 30 fps (``fps``). The docs' memory savers are row options
(``offload: model``, ``vae_tiling: true``). Rows that differ only in their prompts and seed may
share one call (``render_batch``, ``videosweep run --batch N``).

Rules the pipeline does not check itself, refused here before anything renders:
- height and width are multiples of 16 (VAE 8x, then 2x2 patches; the pipeline checks 8 only
  and fails inside the transformer otherwise);
- num_frames is 6k+1: the VAE packs the frames after the first by 6, and a count between
  silently comes out shorter (84 -> 79);
- at least 2 steps: the pipeline's linear-quadratic schedule divides by half the step count.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field, field_validator

from ._tiny import t5_text_parts
from .base import (
    LoadOptions, Rendered, Stopwatch, VideoParams, check_packed_frames, fps_field, from_pretrained, prompt_lists,
    rendered_videos,
)
from .family import Family

if TYPE_CHECKING:
    import numpy as np
    import torch

#: The docs' frames are PIL images (the pipeline's default output): ``numpy_to_pil`` rounds.
UINT8_CONVERSION = "round"

#: Short keys for the released checkpoints.
MODELS = {
    # the docs' low-memory recipe: the repo's bf16 variant in bfloat16 (*.bf16.* transformer and VAE files; the T5 has
    # plain files only, which diffusers then reads)
    "mochi-1": {"source": "genmo/mochi-1-preview", "variant": "bf16", "dtype": "bfloat16"},
}

#: The frame rate the docs export at (``export_to_video(frames, "mochi.mp4", fps=30)``).
FPS = 30
#: Frames after the first are packed by 6 in the VAE's latents (``pipe.vae_temporal_scale_factor``).
TEMPORAL_FACTOR = 6


class Params(VideoParams):
    """The call parameters of ``MochiPipeline``, with its own defaults."""

    prompt: str = Field(min_length=1, description="what the video shows")
    negative_prompt: str | None = Field(None, description="what to steer away from; default: the empty prompt")
    height: int | None = Field(
        None, ge=16, le=4096, multiple_of=16, description="output height; default: the pipeline's (480)"
    )
    width: int | None = Field(None, ge=16, le=4096, multiple_of=16, description="output width; default: the pipeline's (848)")
    num_frames: int = Field(19, ge=1, le=1025, description="frames to generate, 6k+1 (85 is the docs', 2.8 s at 30 fps)")
    num_inference_steps: int = Field(
        64, ge=2, le=1000, description="denoising steps (at least 2: the linear-quadratic schedule halves them)"
    )
    guidance_scale: float = Field(4.5, ge=0.0, le=100.0, description="classifier-free guidance; 1 or less turns it off")
    max_sequence_length: int = Field(256, ge=1, le=256, description="prompt tokens (padded to this length)")
    fps: int = fps_field(FPS)

    @field_validator("num_frames")
    @classmethod
    def _num_frames_6k_plus_1(cls, value: int) -> int:
        return check_packed_frames(value, TEMPORAL_FACTOR, "Mochi")


def load(options: LoadOptions, device: str):
    """The pipeline, on ``device``, ready to call."""
    from diffusers import MochiPipeline

    pipe = from_pretrained(MochiPipeline, options)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def check_call(pipe, params_list: list[Params]) -> None:
    """Refuse a call whose negative prompts the pipeline would encode otherwise than alone.

    A checkpoint whose model_index.json sets ``force_zeros_for_empty_prompt`` (what the docs'
    "Reproducing the results from the Genmo Mochi repo" passes to ``from_pretrained``) zeroes empty
    prompts, and the pipeline zeroes every negative prompt of a call when its last one is empty;
    mixed calls fail, and the run renders their videos one per call.
    """
    empty = {not params.negative_prompt for params in params_list}
    if pipe.config.force_zeros_for_empty_prompt and len(empty) > 1:
        raise ValueError(
            "this checkpoint zeroes empty negative prompts (force_zeros_for_empty_prompt), and the pipeline zeroes "
            "every negative prompt of a call by its last one: render rows with and without negative_prompt apart"
        )


def decode(pipe, latents: torch.Tensor) -> np.ndarray:
    """Float frames in [0, 1], (frames, H, W, 3): the pipeline's own decode after its loop, verbatim."""
    import torch

    vae = pipe.vae
    with torch.no_grad():
        has_latents_mean = hasattr(vae.config, "latents_mean") and vae.config.latents_mean is not None
        has_latents_std = hasattr(vae.config, "latents_std") and vae.config.latents_std is not None
        if has_latents_mean and has_latents_std:
            latents_mean = torch.tensor(vae.config.latents_mean).view(1, 12, 1, 1, 1).to(latents.device, latents.dtype)
            latents_std = torch.tensor(vae.config.latents_std).view(1, 12, 1, 1, 1).to(latents.device, latents.dtype)
            latents = latents * latents_std / vae.config.scaling_factor + latents_mean
        else:
            latents = latents / vae.config.scaling_factor
        video = vae.decode(latents, return_dict=False)[0]
        return pipe.video_processor.postprocess_video(video, output_type="np")[0]


def render_batch(pipe, params_list: list[Params], generators: list[torch.Generator], device: str) -> list[Rendered]:
    """Render videos whose parameters differ only in ``batch_fields`` in one pipeline call, each with its generator.

    The denoising loop and the decode are timed apart (:func:`~.base.rendered_videos` shares them out).
    """
    params = params_list[0]  # the call's parameters; only the prompts differ
    check_call(pipe, params_list)

    # 1. encode the prompts and denoise; stop at the latents (diffusers draws each video's noise from its own
    #    generator, pads each prompt to max_sequence_length as alone, and attends to each prompt's own tokens)
    watch = Stopwatch(device)
    latents = pipe(
        **prompt_lists(params_list),
        height=params.height,
        width=params.width,
        num_frames=params.num_frames,
        num_inference_steps=params.num_inference_steps,
        guidance_scale=params.guidance_scale,
        max_sequence_length=params.max_sequence_length,
        generator=generators,
        output_type="latent",
    ).frames
    denoise_s = watch.lap()

    # 2. decode exactly as the pipeline does after its loop, one video at a time, each as it decodes alone
    videos = [decode(pipe, one) for one in latents.split(1)]
    return rendered_videos(pipe, watch, denoise_s, videos, UINT8_CONVERSION, params.fps)


# -- the tiny checkpoint -------------------------------------------------------------------------


def tiny_vae():
    """An AutoencoderKLMochi of 32 channels a level (diffusers' tests; its group norms take 32 groups):
    8x spatial, 6x temporal, 12 latent channels and the real latents' mean and std, as the real one."""
    import torch
    from diffusers import AutoencoderKLMochi

    torch.manual_seed(0)
    return AutoencoderKLMochi(
        latent_channels=12,
        out_channels=3,
        encoder_block_out_channels=(32, 32, 32, 32),
        decoder_block_out_channels=(32, 32, 32, 32),
        layers_per_block=(1, 1, 1, 1, 1),
    )


def tiny_transformer():
    """A 2-layer MochiTransformer3DModel (diffusers' tests' sizes), 256 prompt tokens as the real one."""
    import torch
    from diffusers import MochiTransformer3DModel

    torch.manual_seed(0)
    return MochiTransformer3DModel(
        patch_size=2,
        num_attention_heads=2,
        attention_head_dim=8,
        num_layers=2,
        pooled_projection_dim=16,
        in_channels=12,
        qk_norm="rms_norm",
        text_embed_dim=32,
        time_embed_dim=4,
        activation_fn="swiglu",
        max_sequence_length=256,
    )


def tiny_scheduler():
    """The real repo's scheduler (diffusers' conversion script): flow-matching Euler on inverted sigmas,
    which the pipeline feeds its linear-quadratic schedule."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(invert_sigmas=True)


def build_tiny(path: Path) -> None:
    """Save a random-weight Mochi pipeline in the real layout: float32 weights, the repo's ``*.bf16.*`` transformer
    and VAE files (the T5 has none there), and the ``*.fp16.*`` files every tiny twin has (the repo has none)."""
    import copy

    import torch
    from diffusers import MochiPipeline

    from ._tiny import save_with_fp16_variant

    tokenizer, text_encoder = t5_text_parts(model_max_length=256)  # the repo's T5 tokenizer keeps 256 tokens
    pipe = MochiPipeline(
        scheduler=tiny_scheduler(),
        vae=tiny_vae(),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=tiny_transformer(),
    )
    for part in ("transformer", "vae"):  # copies: save_with_fp16_variant needs the float32 weights
        copy.deepcopy(getattr(pipe, part)).to(torch.bfloat16).save_pretrained(path / part, variant="bf16")
    save_with_fp16_variant(pipe, path)  # fp32 configs: the docs' plain from_pretrained(folder) loads float32


FAMILY = Family(
    name="mochi",
    pipeline_class="MochiPipeline",
    description="Mochi 1 preview: text -> video, 10B AsymmDiT with a T5-XXL encoder, 480x848, 30 fps (docs: bf16 variant)",
    models=MODELS,
    params=Params,
    load=load,
    render=render_batch,
    build_tiny=build_tiny,
    uint8_conversion=UINT8_CONVERSION,
    batch_fields=("prompt", "negative_prompt"),
    batched_guidance="guidance_scale",
    # as the docs load it; `dtype: auto` on a GPU means this
    gpu_dtype="bfloat16",
)
