"""Wan 2.1 / 2.2 text-to-video (``WanPipeline``): a UMT5 text encoder and a flow-matching video DiT.

Loaded and called as in the diffusers docs (``api/pipelines/wan`` and the ``WanPipeline``
docstring): the VAE (``AutoencoderKLWan``) in float32 "for better decoding quality", the rest in
the job's dtype (bfloat16 in the docs), 81 frames, guidance 5.0, exported at 16 fps (``fps``) as
``export_to_video`` converts the numpy frames, ``(frame * 255).astype(np.uint8)`` (truncated:
``UINT8_CONVERSION``). The docs swap in ``UniPCMultistepScheduler.from_config(..., flow_shift=...)`` (3.0 for 480p, 5.0 for 720p):
here that is the ``flow_shift`` parameter, applied to one job at a time; unset, the checkpoint's
own scheduler runs. Wan 2.2 A14B is the same pipeline with a second transformer for the
low-noise steps (``transformer_2``, ``boundary_ratio`` in its model_index.json) and its own
``guidance_scale_2``. Rows that differ only in their prompts and seed may share one call
(``render_batch``, ``videosweep run --batch N``).
"""

from __future__ import annotations

from contextlib import contextmanager
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
    import torch

#: The docs export the pipeline's default numpy frames with ``export_to_video``: ``(frame * 255).astype(np.uint8)``.
UINT8_CONVERSION = "truncate"

#: Short keys for the released checkpoints.
MODELS = {
    "wan2.1-t2v-1.3b": "Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
    "wan2.1-t2v-14b": "Wan-AI/Wan2.1-T2V-14B-Diffusers",
    "wan2.2-t2v-a14b": "Wan-AI/Wan2.2-T2V-A14B-Diffusers",  # WanPipeline with transformer + transformer_2
}

#: The frame rate the docs export at (``export_to_video(output, "output.mp4", fps=16)``).
FPS = 16
#: Frames after the first are packed by 4 in the VAE's latents (``vae.config.scale_factor_temporal``).
TEMPORAL_FACTOR = 4


class Params(VideoParams):
    """The call parameters of ``WanPipeline``, with its own defaults, and the docs' scheduler shift."""

    prompt: str = Field(min_length=1, description="what the video shows")
    negative_prompt: str | None = Field(None, description="what to steer away from (the docs pass a long list)")
    height: int = Field(480, ge=16, le=4096, multiple_of=16, description="output height in pixels")
    width: int = Field(832, ge=16, le=4096, multiple_of=16, description="output width in pixels")
    num_frames: int = Field(81, ge=1, le=1025, description="frames to generate, 4k+1 (81 is 5 s at 16 fps)")
    num_inference_steps: int = Field(50, ge=1, le=1000, description="denoising steps")
    guidance_scale: float = Field(5.0, ge=0.0, le=100.0, description="classifier-free guidance; 1 or less turns it off")
    guidance_scale_2: float | None = Field(
        None,
        ge=0.0,
        le=100.0,
        description="guidance of the low-noise expert (Wan 2.2 A14B only); default: guidance_scale",
    )
    max_sequence_length: int = Field(512, ge=1, le=512, description="prompt tokens kept (padded to this length)")
    flow_shift: float | None = Field(
        None,
        gt=0.0,
        le=100.0,
        description="UniPC flow_shift as the docs set it (3.0 for 480p, 5.0 for 720p); default: the checkpoint's",
    )
    fps: int = fps_field(FPS)

    @field_validator("num_frames")
    @classmethod
    def _num_frames_4k_plus_1(cls, value: int) -> int:
        return check_packed_frames(value, TEMPORAL_FACTOR, "Wan")


def load(options: LoadOptions, device: str):
    """The pipeline, on ``device``, ready to call: the VAE in float32 as the docs load it."""
    from diffusers import WanPipeline

    pipe = from_pretrained(WanPipeline, options, vae=load_vae(options))
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def load_vae(options: LoadOptions):
    """``AutoencoderKLWan.from_pretrained(model_id, subfolder="vae", torch_dtype=torch.float32)``, as in the docs."""
    import torch
    from diffusers import AutoencoderKLWan

    files = weight_files(options)
    return AutoencoderKLWan.from_pretrained(options.source, subfolder="vae", dtype=torch.float32, **files)


def weight_files(options: LoadOptions) -> dict[str, str]:
    """Which weight files a separately loaded part reads: those ``base.from_pretrained`` reads."""
    kwargs = {}
    if options.variant:
        kwargs["variant"] = options.variant
    if options.revision and not Path(options.source).is_dir():
        kwargs["revision"] = options.revision
    return kwargs


@contextmanager
def flow_shift(pipe, shift: float | None):
    """The docs' ``pipe.scheduler = UniPCMultistepScheduler.from_config(pipe.scheduler.config, flow_shift=...)``
    for one job; the loaded scheduler comes back afterwards, so cached pipelines stay as loaded."""
    from diffusers import UniPCMultistepScheduler

    loaded = pipe.scheduler
    if shift is not None:
        pipe.scheduler = UniPCMultistepScheduler.from_config(loaded.config, flow_shift=shift)
    try:
        yield pipe.scheduler
    finally:
        pipe.scheduler = loaded


def decode(pipe, latents: torch.Tensor):
    """Float frames in [0, 1], (frames, H, W, 3): the pipeline's own decode after its loop, verbatim."""
    import torch
    from diffusers.utils.torch_utils import get_module_execution_device

    vae = pipe.vae
    with torch.no_grad():
        latents = latents.to(get_module_execution_device(vae), dtype=vae.dtype)
        latents_mean = (
            torch.tensor(vae.config.latents_mean).view(1, vae.config.z_dim, 1, 1, 1).to(latents.device, latents.dtype)
        )
        latents_std = 1.0 / torch.tensor(vae.config.latents_std).view(1, vae.config.z_dim, 1, 1, 1).to(
            latents.device, latents.dtype
        )
        latents = latents / latents_std + latents_mean
        video = vae.decode(latents, return_dict=False)[0]
        return pipe.video_processor.postprocess_video(video, output_type="np")[0]


def render_batch(pipe, params_list: list[Params], generators: list[torch.Generator], device: str) -> list[Rendered]:
    """Render videos whose parameters differ only in ``batch_fields`` in one pipeline call, each with its generator.

    The denoising loop and the decode are timed apart (:func:`~.base.rendered_videos` shares them out).
    """
    params = params_list[0]  # the call's parameters; only the prompts differ

    # 1. encode the prompts and denoise, with the job's scheduler shift; stop at the latents (diffusers draws
    #    each video's noise from its own generator, and pads each prompt to max_sequence_length as alone)
    watch = Stopwatch(device)
    with flow_shift(pipe, params.flow_shift) as scheduler:
        latents = pipe(
            **prompt_lists(params_list),
            height=params.height,
            width=params.width,
            num_frames=params.num_frames,
            num_inference_steps=params.num_inference_steps,
            guidance_scale=params.guidance_scale,
            guidance_scale_2=params.guidance_scale_2,
            max_sequence_length=params.max_sequence_length,
            generator=generators,
            output_type="latent",
        ).frames
    denoise_s = watch.lap()

    # 2. decode exactly as the pipeline does after its loop, one video at a time, each as it decodes alone
    videos = [decode(pipe, one) for one in latents.split(1)]
    return rendered_videos(pipe, watch, denoise_s, videos, UINT8_CONVERSION, params.fps, scheduler)


# -- the tiny checkpoint -------------------------------------------------------------------------


def tiny_vae():
    """A 3-channel-base AutoencoderKLWan (diffusers' tests): 8x spatial, 4x temporal, 16 latent channels."""
    import torch
    from diffusers import AutoencoderKLWan

    torch.manual_seed(0)
    return AutoencoderKLWan(
        base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
    )


def tiny_transformer(in_channels: int = 16, image_dim: int | None = None):
    """A 2-layer WanTransformer3DModel (diffusers' tests' sizes); ``in_channels=36, image_dim`` for image-to-video."""
    import torch
    from diffusers import WanTransformer3DModel

    torch.manual_seed(0)
    return WanTransformer3DModel(
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
    )


def tiny_scheduler():
    """The real repos' scheduler: UniPC on flow sigmas, shift 3.0 (the docs' "default for Wan")."""
    from diffusers import UniPCMultistepScheduler

    return UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)


def build_tiny(path: Path) -> None:
    """Save a random-weight Wan 2.1 text-to-video pipeline in the real layout (fp32 and fp16 variant weights)."""
    from diffusers import WanPipeline

    from ._tiny import save_with_fp16_variant

    tokenizer, text_encoder = t5_text_parts(umt5=True)
    pipe = WanPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=tiny_vae(),
        scheduler=tiny_scheduler(),
        transformer=tiny_transformer(),
    )
    save_with_fp16_variant(pipe, path)  # fp32 configs: the docs' plain from_pretrained(folder) loads float32


FAMILY = Family(
    name="wan",
    pipeline_class="WanPipeline",
    description="Wan 2.1 / 2.2: text -> video, flow-matching DiT with a UMT5 text encoder (2.2 A14B: two experts)",
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
