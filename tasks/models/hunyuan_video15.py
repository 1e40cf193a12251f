"""HunyuanVideo 1.5 text-to-video (``HunyuanVideo15Pipeline``): an 8.3B DiT on a 16x / 4x causal VAE, prompted
through a Qwen2.5-VL text model and a glyph-aware ByT5 (for text in quotes).

Loaded and called as in the diffusers docs (``api/pipelines/hunyuan_video15``, the "memory"
example)::

    pipeline = HunyuanVideo15Pipeline.from_pretrained("HunyuanVideo-1.5-Diffusers-480p_t2v", dtype=torch.bfloat16)
    pipeline.enable_model_cpu_offload()
    pipeline.vae.enable_tiling()
    video = pipeline(prompt=prompt, num_frames=61, num_inference_steps=30).frames[0]
    export_to_video(video, "output.mp4", fps=15)

``from_pretrained`` in the job's dtype (bfloat16 on a GPU, as the docs), the pipeline's own
121 frames and 50 steps, its numpy frames truncated to uint8 as ``export_to_video`` converts
them (``UINT8_CONVERSION``), exported at 15 fps (``fps``). Unset, height and width are the
pipeline's: the 16:9 size nearest the checkpoint's ``target_size`` (480 x 848 for 480p). The
docs' memory savers are row options (``offload: model``, ``vae_tiling: true``).

Guidance is not a call parameter: the pipeline runs classifier-free guidance through its
``guider`` component (6.0 in the released repos, 1.0 in the distilled ones), and the docs change it
with ``pipe.guider = pipe.guider.new(guidance_scale=...)``; here that is the ``guidance_scale``
row key, applied to one job at a time (:func:`guidance`). The guider runs the conditional and
unconditional predictions as two denoiser calls, not one batch, so ``guidance_cutoff`` does not
apply. Rows that differ only in their prompts and seed may share one call (``render_batch``,
``videosweep run --batch N``).

Rules the pipeline does not check itself, refused here before anything renders:
- num_frames is 4k+1: the VAE packs the frames after the first by 4, and a count between
  silently comes out shorter;
- height and width are multiples of 16 (the VAE's 16x, 1x1 patches): the pipeline floors
  others silently to a smaller video; and both or neither (the pipeline raises otherwise).

Not verified offline: the hub layout of the ``hunyuanvideo-community`` repos (the model keys'
ids are the ones published for diffusers; the docs' snippet names ``HunyuanVideo-1.5-Diffusers-480p_t2v``
without its organisation, the pipeline's docstring ``hunyuanvideo-community/HunyuanVideo-1.5-480p_t2v``
without ``-Diffusers``). diffusers' conversion script (``scripts/convert_hunyuan_video1_5_to_diffusers.py``)
saves them without weight variants, so the keys read the plain files (``variant: none``). The tiny
twin is built from the pipeline's documented components in that script's layout: ``tokenizer`` /
``text_encoder`` (Qwen2.5-VL), ``tokenizer_2`` / ``text_encoder_2`` (ByT5; the repos' ByT5 also
has the Glyph-SDXL colour and font tokens, left out), ``transformer``, ``vae``, a
flow-matching Euler ``scheduler`` (shift 5.0, as 480p) and a classifier-free ``guider`` (6.0).
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field, ValidationInfo, field_validator

from ._tiny import byt5_text_parts, qwen2_5_vl_text_parts
from .base import (
    LoadOptions, Rendered, Stopwatch, VideoParams, check_packed_frames, fps_field, from_pretrained, prompt_lists,
    rendered_videos,
)
from .family import Family

if TYPE_CHECKING:
    import numpy as np
    import torch

#: The docs export the pipeline's default numpy frames with ``export_to_video``: ``(frame * 255).astype(np.uint8)``.
UINT8_CONVERSION = "truncate"


def hub_models(*names: str) -> dict[str, dict[str, str]]:
    """Model keys for ``hunyuanvideo-community/HunyuanVideo-1.5-Diffusers-<name>``: bfloat16 as the docs load them,
    the plain weight files (the conversion script saves no variants)."""
    return {
        f"hunyuanvideo1.5-{name.replace('_', '-')}": {
            "source": f"hunyuanvideo-community/HunyuanVideo-1.5-Diffusers-{name}",
            "dtype": "bfloat16",
            "variant": "none",
        }
        for name in names
    }


#: Short keys for the released checkpoints (the distilled one's guider is 1.0: no guidance).
MODELS = hub_models("480p_t2v", "720p_t2v", "480p_t2v_distilled")

#: The frame rate the docs export at (``export_to_video(video, "output.mp4", fps=15)``).
FPS = 15
#: Frames after the first are packed by 4 in the VAE's latents (``vae.temporal_compression_ratio``).
TEMPORAL_FACTOR = 4


class BaseParams(VideoParams):
    """The call parameters both HunyuanVideo 1.5 pipelines take, with their defaults, and the guider's scale."""

    prompt: str = Field(
        min_length=1, description="what the video shows; text in quotes is also read by the glyph encoder"
    )
    negative_prompt: str | None = Field(None, description="what to steer away from; default: the empty prompt")
    num_frames: int = Field(121, ge=1, le=1025, description="frames to generate, 4k+1 (121 is 8 s at 15 fps)")
    num_inference_steps: int = Field(50, ge=1, le=1000, description="denoising steps")
    guidance_scale: float | None = Field(
        None,
        ge=0.0,
        le=100.0,
        description="classifier-free guidance, set on the pipeline's guider as the docs do; 1 turns it off; "
        "default: the checkpoint's (6.0, distilled 1.0)",
    )
    fps: int = fps_field(FPS)

    @field_validator("num_frames")
    @classmethod
    def _num_frames_4k_plus_1(cls, value: int) -> int:
        return check_packed_frames(value, TEMPORAL_FACTOR, "HunyuanVideo 1.5")


class Params(BaseParams):
    """The call parameters of ``HunyuanVideo15Pipeline``, with its own defaults, and the guider's scale."""

    height: int | None = Field(
        None, ge=16, le=4096, multiple_of=16, description="output height; default: the pipeline's (480 for 480p)"
    )
    width: int | None = Field(
        None,
        ge=16,
        le=4096,
        multiple_of=16,
        validate_default=True,  # so that a height without a width is refused too
        description="output width; default: the pipeline's (848 for 480p)",
    )

    @field_validator("width")
    @classmethod
    def _both_sides_or_neither(cls, width: int | None, info: ValidationInfo) -> int | None:
        if "height" in info.data and (info.data["height"] is None) != (width is None):
            raise ValueError(
                f"height={info.data['height']!r} with width={width!r}: "
                "give both, or neither for the pipeline's 16:9 size"
            )
        return width


def load(options: LoadOptions, device: str):
    """The pipeline, on ``device``, ready to call."""
    from diffusers import HunyuanVideo15Pipeline

    pipe = from_pretrained(HunyuanVideo15Pipeline, options)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


@contextmanager
def guidance(pipe, scale: float | None):
    """The docs' ``pipe.guider = pipe.guider.new(guidance_scale=...)`` for one job; the loaded guider comes back
    afterwards, so cached pipelines stay as loaded."""
    loaded = pipe.guider
    if scale is not None:
        pipe.guider = loaded.new(guidance_scale=scale)
    try:
        yield
    finally:
        pipe.guider = loaded


def decode(pipe, latents: torch.Tensor) -> np.ndarray:
    """Float frames in [0, 1], (frames, H, W, 3): the pipeline's own decode after its loop, verbatim."""
    import torch

    vae = pipe.vae
    with torch.no_grad():
        latents = latents.to(vae.dtype) / vae.config.scaling_factor
        video = vae.decode(latents, return_dict=False)[0]
        return pipe.video_processor.postprocess_video(video, output_type="np")[0]


def render_batch(pipe, params_list: list[Params], generators: list[torch.Generator], device: str) -> list[Rendered]:
    """Render videos whose parameters differ only in ``batch_fields`` in one pipeline call, each with its generator.

    The denoising loop and the decode are timed apart (:func:`~.base.rendered_videos` shares them out).
    """
    params = params_list[0]  # the call's parameters; only the prompts differ

    # 1. encode the prompts and denoise with the job's guidance; stop at the latents (diffusers draws each video's
    #    noise from its own generator, and pads each prompt to the encoders' fixed lengths as alone)
    watch = Stopwatch(device)
    with guidance(pipe, params.guidance_scale):
        latents = pipe(
            **prompt_lists(params_list),
            height=params.height,
            width=params.width,
            num_frames=params.num_frames,
            num_inference_steps=params.num_inference_steps,
            generator=generators,
            output_type="latent",
        ).frames
    denoise_s = watch.lap()

    # 2. decode exactly as the pipeline does after its loop, one video at a time, each as it decodes alone
    videos = [decode(pipe, one) for one in latents.split(1)]
    return rendered_videos(pipe, watch, denoise_s, videos, UINT8_CONVERSION, params.fps)


# -- the tiny checkpoint -------------------------------------------------------------------------

#: The tiny transformer's pixel budget: its 16:9 size is 32 x 48 (the real 480p's 640 gives 480 x 848).
TINY_TARGET_SIZE = 48


def tiny_vae():
    """An AutoencoderKLHunyuanVideo15 of 16 channels a level and 8 latent channels, with the real one's five levels,
    so pixels -> latents is 16x spatial and 4x temporal as there."""
    import torch
    from diffusers import AutoencoderKLHunyuanVideo15

    torch.manual_seed(0)
    return AutoencoderKLHunyuanVideo15(latent_channels=8, block_out_channels=(16, 16, 16, 16, 16), layers_per_block=1)


def tiny_transformer(task_type: str = "t2v", image_embed_dim: int = 16):
    """A 2-layer HunyuanVideo15Transformer3DModel (diffusers' tests' widths) over the tiny VAE's latents, the noise
    beside the conditioning latents and mask (8 + 8 + 1 channels, as the real 32 + 32 + 1)."""
    import torch
    from diffusers import HunyuanVideo15Transformer3DModel

    torch.manual_seed(0)
    return HunyuanVideo15Transformer3DModel(
        in_channels=17,
        out_channels=8,
        num_attention_heads=2,
        attention_head_dim=8,
        num_layers=2,
        num_refiner_layers=1,
        mlp_ratio=2.0,
        text_embed_dim=16,  # the tiny Qwen2.5-VL's width
        text_embed_2_dim=32,  # the tiny ByT5's
        image_embed_dim=image_embed_dim,
        rope_axes_dim=(2, 2, 4),
        target_size=TINY_TARGET_SIZE,
        task_type=task_type,
    )


def tiny_parts() -> dict:
    """What both tiny pipelines share: text encoders, VAE, scheduler and guider, as the 480p repos configure them."""
    from diffusers import FlowMatchEulerDiscreteScheduler
    from diffusers.guiders import ClassifierFreeGuidance

    tokenizer, text_encoder = qwen2_5_vl_text_parts()
    tokenizer_2, text_encoder_2 = byt5_text_parts()
    return dict(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        tokenizer_2=tokenizer_2,
        text_encoder_2=text_encoder_2,
        vae=tiny_vae(),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=5.0),
        guider=ClassifierFreeGuidance(guidance_scale=6.0),
    )


def build_tiny(path: Path) -> None:
    """Save a random-weight HunyuanVideo 1.5 text-to-video pipeline in the conversion script's layout: float32
    weights, and the ``*.fp16.*`` files every tiny twin has (the repos have none, see the module docstring)."""
    from diffusers import HunyuanVideo15Pipeline

    from ._tiny import save_with_fp16_variant

    pipe = HunyuanVideo15Pipeline(**tiny_parts(), transformer=tiny_transformer())
    save_with_fp16_variant(pipe, path)  # fp32 configs: the docs' plain from_pretrained(folder) loads float32


FAMILY = Family(
    name="hunyuan-video15",
    pipeline_class="HunyuanVideo15Pipeline",
    description="HunyuanVideo 1.5: text -> video, 8.3B DiT with Qwen2.5-VL + ByT5 text encoders, 480p/720p, 15 fps",
    models=MODELS,
    params=Params,
    load=load,
    render=render_batch,
    build_tiny=build_tiny,
    uint8_conversion=UINT8_CONVERSION,
    batch_fields=("prompt", "negative_prompt"),
    # as the docs load it; `dtype: auto` on a GPU means this
    gpu_dtype="bfloat16",
)
