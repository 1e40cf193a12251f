"""SkyReels-V2 text-to-video (``SkyReelsV2Pipeline``): Wan 2.1's architecture (a UMT5 text encoder, the Wan VAE
and a flow-matching video DiT), fine-tuned by Skywork for film-style shots.

Loaded and called as in the ``SkyReelsV2Pipeline`` docstring (diffusers 0.42.1; the docs page
``api/pipelines/skyreels_v2`` shows the diffusion-forcing pipelines, ``skyreels_v2_df.py``)::

    vae = AutoencoderKLWan.from_pretrained(model_id, subfolder="vae", torch_dtype=torch.float32)
    pipe = SkyReelsV2Pipeline.from_pretrained(model_id, vae=vae, torch_dtype=torch.bfloat16)
    flow_shift = 8.0  # 8.0 for T2V, 5.0 for I2V
    pipe.scheduler = UniPCMultistepScheduler.from_config(pipe.scheduler.config, flow_shift=flow_shift)
    output = pipe(prompt=prompt, num_inference_steps=50, height=544, width=960, guidance_scale=6.0,
                  num_frames=97).frames[0]
    export_to_video(output, "video.mp4", fps=24, quality=8)

The VAE in float32, the rest in the job's dtype (bfloat16 in the docs), the pipeline's own
544 x 960, 97 frames, 50 steps and guidance 6.0, the docs' scheduler swap as ``flow_shift``
(unset: the checkpoint's own scheduler, whose shift the conversion script leaves at UniPC's 1.0,
so the docs' recipe is ``flow_shift: 8.0``), numpy frames truncated to uint8 as ``export_to_video``
converts them, at 24 fps (``fps``; the mp4's quality is the project's writer's). The docs'
pieces shared with Wan are Wan's own code here (``wan.load_vae``, ``wan.flow_shift``,
``wan.decode``). Rows that differ only in their prompts and seed may share one call, as Wan's:
each prompt is padded with zeros to ``max_sequence_length`` as alone, and no mask reaches the
transformer (``render_batch``, ``videosweep run --batch N``).

The hub repos could not be read offline. The tiny twin is built in the layout
``scripts/convert_skyreelsv2_to_diffusers.py`` (diffusers) saves the real ones in: UMT5
tokenizer and encoder, ``SkyReelsV2Transformer3DModel``, the Wan VAE, a UniPC flow-matching
scheduler (``use_flow_sigmas``, shift left at 1.0), plain float32 weight files (the script saves
no variant, so the keys read no variant; the twin adds ``*.fp16.*`` files, as every tiny twin does).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field, field_validator

from . import wan
from ._tiny import t5_text_parts
from .base import (
    LoadOptions, Rendered, Stopwatch, VideoParams, check_packed_frames, fps_field, from_pretrained, prompt_lists,
    rendered_videos,
)
from .family import Family

if TYPE_CHECKING:
    import torch

#: The docs export the pipeline's default numpy frames with ``export_to_video``: ``(frame * 255).astype(np.uint8)``.
UINT8_CONVERSION = "truncate"


def plain_weights(repo: str) -> dict[str, str]:
    """A ``MODELS`` entry for a SkyReels-V2 repo: the conversion script saves plain weight files, no fp16 variant."""
    return {"source": repo, "variant": "none"}


#: Short keys for the released checkpoints (the docstring's list).
MODELS = {
    "skyreels-v2-t2v-14b-540p": plain_weights("Skywork/SkyReels-V2-T2V-14B-540P-Diffusers"),
    "skyreels-v2-t2v-14b-720p": plain_weights("Skywork/SkyReels-V2-T2V-14B-720P-Diffusers"),  # height 720, width 1280
}

#: The frame rate the docs export at (``export_to_video(output, "video.mp4", fps=24, quality=8)``).
FPS = 24


class Params(VideoParams):
    """The call parameters of ``SkyReelsV2Pipeline``, with its own defaults, and the docs' scheduler shift."""

    prompt: str = Field(min_length=1, description="what the video shows")
    negative_prompt: str | None = Field(None, description="what to steer away from, with guidance on")
    height: int = Field(544, ge=16, le=4096, multiple_of=16, description="output height in pixels (720P models: 720)")
    width: int = Field(960, ge=16, le=4096, multiple_of=16, description="output width in pixels (720P models: 1280)")
    num_frames: int = Field(97, ge=1, le=1025, description="frames to generate, 4k+1 (97 is 4 s at 24 fps)")
    num_inference_steps: int = Field(50, ge=1, le=1000, description="denoising steps")
    guidance_scale: float = Field(6.0, ge=0.0, le=100.0, description="classifier-free guidance; 1 or less turns it off")
    max_sequence_length: int = Field(512, ge=1, le=512, description="prompt tokens kept (padded to this length)")
    flow_shift: float | None = Field(
        None,
        gt=0.0,
        le=100.0,
        description="UniPC flow_shift as the docs set it (8.0 for text-to-video, 5.0 for image-to-video); "
        "default: the checkpoint's",
    )
    fps: int = fps_field(FPS)

    @field_validator("num_frames")
    @classmethod
    def _num_frames_4k_plus_1(cls, value: int) -> int:
        return check_packed_frames(value, wan.TEMPORAL_FACTOR, "SkyReels-V2 (Wan)")


def load(options: LoadOptions, device: str):
    """The pipeline, on ``device``, ready to call: the VAE in float32 as the docs load it."""
    from diffusers import SkyReelsV2Pipeline

    pipe = from_pretrained(SkyReelsV2Pipeline, options, vae=wan.load_vae(options))
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def render_batch(pipe, params_list: list[Params], generators: list[torch.Generator], device: str) -> list[Rendered]:
    """Render videos whose parameters differ only in ``batch_fields`` in one pipeline call, each with its generator;
    the denoising loop and the decode are timed apart."""
    params = params_list[0]  # the call's parameters; only the prompts differ

    # 1. encode the prompts and denoise with the job's scheduler shift; stop at the latents
    watch = Stopwatch(device)
    with wan.flow_shift(pipe, params.flow_shift) as scheduler:
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

    # 2. decode as the pipeline does after its loop (Wan's decode, line for line), one video at a time
    videos = [wan.decode(pipe, one) for one in latents.split(1)]
    return rendered_videos(pipe, watch, denoise_s, videos, UINT8_CONVERSION, params.fps, scheduler)


# -- the tiny checkpoint -------------------------------------------------------------------------


def tiny_transformer(in_channels: int = 16, image_dim: int | None = None, inject_sample_info: bool = False):
    """A 2-layer SkyReelsV2Transformer3DModel (diffusers' tests' sizes, Wan's tiny twin's); ``in_channels=36,
    image_dim`` for image-to-video, ``inject_sample_info`` for the fps embedding of the 1.3B diffusion-forcing model."""
    import torch
    from diffusers import SkyReelsV2Transformer3DModel

    torch.manual_seed(0)
    return SkyReelsV2Transformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=in_channels,
        out_channels=16,
        text_dim=32,
        freq_dim=256,
        ffn_dim=32,
        num_layers=2,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
        image_dim=image_dim,
        inject_sample_info=inject_sample_info,
    )


def tiny_scheduler():
    """The conversion script's scheduler: UniPC on flow sigmas, its shift left at the default 1.0."""
    from diffusers import UniPCMultistepScheduler

    return UniPCMultistepScheduler(prediction_type="flow_prediction", num_train_timesteps=1000, use_flow_sigmas=True)


def build_tiny(path: Path) -> None:
    """Save a random-weight SkyReels-V2 text-to-video pipeline in the real layout (fp32, and fp16 variant weights)."""
    from diffusers import SkyReelsV2Pipeline

    from ._tiny import save_with_fp16_variant

    tokenizer, text_encoder = t5_text_parts(umt5=True)
    pipe = SkyReelsV2Pipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        transformer=tiny_transformer(),
        vae=wan.tiny_vae(),
        scheduler=tiny_scheduler(),
    )
    save_with_fp16_variant(pipe, path)  # fp32 configs: the docs' plain from_pretrained(folder) loads float32


FAMILY = Family(
    name="skyreels-v2",
    pipeline_class="SkyReelsV2Pipeline",
    description="SkyReels-V2: text -> video on Wan 2.1's DiT, film-style shots at 540P/720P (flow_shift 8.0 as the docs)",
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
