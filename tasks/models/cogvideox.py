"""CogVideoX 2B / 5B text-to-video (``CogVideoXPipeline``): a T5 text encoder and an expert DiT.

Loaded and called as in the diffusers docs (the ``CogVideoXPipeline`` docstring and
``api/pipelines/cogvideox``): ``from_pretrained`` in the job's dtype (the docs load 2B in
float16 and 5B in bfloat16), ``guidance_scale=6``, 50 steps, the transformer's own size and
length (480 x 720, 49 frames), exported at 8 fps; ``use_dynamic_cfg=True`` for 5B (the
I2V docstring and the model cards). The checkpoints' scheduler (``CogVideoXDDIMScheduler``)
runs unless a row picks another (``scheduler: cogvideox-dpm``, as the CogVideoX demos do).
Rows that differ only in their prompts and seed may share one call (``render_batch``,
``videosweep run --batch N``).

Rules the pipeline does not check itself, refused here before anything renders:
- height and width are multiples of 16 (VAE 8x, then 2x2 patches; the pipeline checks 8 only
  and fails inside the transformer otherwise);
- num_frames is 8k or 8k+1: the VAE packs the frames after the first by 4, and decodes an odd
  number of latent frames to 4k+1 frames, an even number to 4k, so any other count silently
  comes out longer or shorter (13 -> 16, 12 -> 9);
- checkpoints with sincos (2B) or learned (5B-I2V) positional embeddings take exactly
  ``max_text_seq_length`` (226) prompt tokens, and learned ones only their trained size.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field, field_validator

from ._tiny import t5_text_parts
from .base import (
    LoadOptions, Rendered, Stopwatch, VideoParams,
    fps_field, from_pretrained, prompt_lists, rendered_videos,
)
from .family import Family

if TYPE_CHECKING:
    import numpy as np
    import torch

#: The docs' frames are PIL images (the pipeline's default output): ``numpy_to_pil`` rounds.
UINT8_CONVERSION = "round"

#: Short keys for the released checkpoints.
MODELS = {
    # the docs load 2b in float16 and 5b in bfloat16; the repos hold half-precision weights
    # under the plain file names, with no *.fp16.* variant files
    "cogvideox-2b": {"source": "THUDM/CogVideoX-2b", "dtype": "float16", "variant": "none"},
    "cogvideox-5b": {"source": "THUDM/CogVideoX-5b", "dtype": "bfloat16", "variant": "none"},
}

#: The frame rate the docs export at (``export_to_video(video, "output.mp4", fps=8)``).
FPS = 8
#: Frames after the first are packed by 4 in the VAE's latents (``vae.config.temporal_compression_ratio``).
TEMPORAL_FACTOR = 4
#: Height and width divide by the VAE's 8x downsampling times the transformer's 2x2 patches.
SIZE_MULTIPLE = 16


def check_num_frames(value: int | None) -> int | None:
    """Refuse a frame count the VAE would not give back as asked (see the module docstring)."""
    if value is not None and value % 8 not in (0, 1):
        below = value // 8 * 8
        candidates = {n for n in (below, below + 1, below + 8, below + 9) if n >= 1}
        near = sorted(candidates, key=lambda n: (abs(n - value), n))
        raise ValueError(
            f"must be 8k or 8k+1 (CogVideoX's VAE would turn {value} into {decoded_frames(value)} frames); "
            f"nearest: {min(near[:2])} or {max(near[:2])}"
        )
    return value


def decoded_frames(num_frames: int) -> int:
    """How many frames the VAE decodes from the latents of ``num_frames`` (CogVideoX 1.0)."""
    latent = (num_frames - 1) // TEMPORAL_FACTOR + 1
    return 1 + TEMPORAL_FACTOR * (latent - 1) if latent % 2 else TEMPORAL_FACTOR * latent


class Params(VideoParams):
    """The call parameters of ``CogVideoXPipeline``, with its own defaults."""

    prompt: str = Field(min_length=1, description="what the video shows (CogVideoX likes long, detailed prompts)")
    negative_prompt: str | None = Field(None, description="what to steer away from; default: the empty prompt")
    height: int | None = Field(
        None, ge=16, le=4096, multiple_of=SIZE_MULTIPLE, description="output height; default: the transformer's (480)"
    )
    width: int | None = Field(
        None, ge=16, le=4096, multiple_of=SIZE_MULTIPLE, description="output width; default: the transformer's (720)"
    )
    num_frames: int | None = Field(
        None, ge=1, le=1025, description="frames to generate, 8k or 8k+1; default: the transformer's (49, 6 s at 8 fps)"
    )
    num_inference_steps: int = Field(50, ge=1, le=1000, description="denoising steps")
    guidance_scale: float = Field(6.0, ge=0.0, le=100.0, description="classifier-free guidance; 1 or less turns it off")
    use_dynamic_cfg: bool = Field(
        False, description="raise the guidance over the steps (cosine schedule); the docs use it for 5B"
    )
    eta: float = Field(
        0.0, ge=0.0, le=1.0, description="DDIM eta, with `scheduler: ddim` (the CogVideoX schedulers ignore it)"
    )
    max_sequence_length: int = Field(
        226, ge=1, le=226, description="prompt tokens (padded to this length); 2B and 5B-I2V take exactly 226"
    )
    fps: int = fps_field(FPS)

    @field_validator("num_frames")
    @classmethod
    def _num_frames_8k(cls, value: int | None) -> int | None:
        return check_num_frames(value)


def load(options: LoadOptions, device: str):
    """The pipeline, on ``device``, ready to call."""
    from diffusers import CogVideoXPipeline

    pipe = from_pretrained(CogVideoXPipeline, options)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def check_call(pipe, params) -> None:
    """Refuse, before encoding anything, what this checkpoint's positional embeddings (or its scheduler) cannot take."""
    scheduler = type(pipe.scheduler).__name__
    if params.eta and scheduler in ("CogVideoXDDIMScheduler", "CogVideoXDPMScheduler"):
        raise ValueError(
            f"eta={params.eta}: {scheduler} ignores eta; add `scheduler: ddim` to the row to use it, or drop eta"
        )
    config = pipe.transformer.config
    fixed_text = config.use_learned_positional_embeddings or not config.use_rotary_positional_embeddings
    if fixed_text and params.max_sequence_length != config.max_text_seq_length:
        raise ValueError(
            f"max_sequence_length={params.max_sequence_length}: this checkpoint's positional embeddings take exactly "
            f"{config.max_text_seq_length} prompt tokens; drop max_sequence_length"
        )
    if config.use_learned_positional_embeddings:
        scale = pipe.vae_scale_factor_spatial
        size = (config.sample_height * scale, config.sample_width * scale)
        asked = (params.height or size[0], params.width or size[1])
        if asked != size:
            raise ValueError(
                f"height x width = {asked[0]} x {asked[1]}: this checkpoint's learned positional embeddings render "
                f"{size[0]} x {size[1]} only; drop height and width"
            )


def decode(pipe, latents: torch.Tensor, num_frames: int | None) -> np.ndarray:
    """Float frames in [0, 1], (frames, H, W, 3): the pipeline's own decode after its loop.

    ``latents`` are ``output_type="latent"``'s, which keep CogVideoX 1.5's padding frames (added
    where the latent frames do not divide by ``patch_size_t``); the pipeline drops them first.
    """
    import torch

    latent_frames = (num_frames or pipe.transformer.config.sample_frames) - 1
    latent_frames = latent_frames // pipe.vae_scale_factor_temporal + 1
    patch_size_t = pipe.transformer.config.patch_size_t
    additional_frames = 0
    if patch_size_t is not None and latent_frames % patch_size_t != 0:
        additional_frames = patch_size_t - latent_frames % patch_size_t
    with torch.no_grad():
        video = pipe.decode_latents(latents[:, additional_frames:])
        return pipe.video_processor.postprocess_video(video=video, output_type="np")[0]


def render_batch(pipe, params_list: list[Params], generators: list[torch.Generator], device: str) -> list[Rendered]:
    """Render videos whose parameters differ only in ``batch_fields`` in one pipeline call, each with its generator.

    The denoising loop and the decode are timed apart (:func:`~.base.rendered_videos` shares them out).
    """
    params = params_list[0]  # the call's parameters; only the prompts differ
    check_call(pipe, params)

    # 1. encode the prompts and denoise; stop at the latents (diffusers draws each video's noise, the
    #    initial and any scheduler's, from its own generator, and pads each prompt to max_sequence_length as alone)
    watch = Stopwatch(device)
    latents = pipe(
        **prompt_lists(params_list),
        height=params.height,
        width=params.width,
        num_frames=params.num_frames,
        num_inference_steps=params.num_inference_steps,
        guidance_scale=params.guidance_scale,
        use_dynamic_cfg=params.use_dynamic_cfg,
        eta=params.eta,
        max_sequence_length=params.max_sequence_length,
        generator=generators,
        output_type="latent",
    ).frames
    denoise_s = watch.lap()

    # 2. decode exactly as the pipeline does after its loop, one video at a time, each as it decodes alone
    videos = [decode(pipe, one, params.num_frames) for one in latents.split(1)]
    return rendered_videos(pipe, watch, denoise_s, videos, UINT8_CONVERSION, params.fps)


# -- the tiny checkpoint -------------------------------------------------------------------------


def tiny_vae():
    """A 4-level AutoencoderKLCogVideoX of 8 channels (diffusers' tests): 8x spatial, 4x temporal, as the real one.

    Scaling as in the 5B repos (``scaling_factor=0.7``, ``invert_scale_latents``).
    """
    import torch
    from diffusers import AutoencoderKLCogVideoX

    torch.manual_seed(0)
    return AutoencoderKLCogVideoX(
        in_channels=3,
        out_channels=3,
        down_block_types=("CogVideoXDownBlock3D",) * 4,
        up_block_types=("CogVideoXUpBlock3D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=2,
        temporal_compression_ratio=TEMPORAL_FACTOR,
        scaling_factor=0.7,
        invert_scale_latents=True,
    )


def tiny_transformer(in_channels: int = 4, learned_positions: bool = False):
    """A 2-layer CogVideoXTransformer3DModel with 5B's rotary embeddings (diffusers' tests' sizes).

    Its sample size is 32 x 48 px (480 x 720 scaled down), 9 frames, 226 prompt tokens as the real
    ones; ``in_channels=8, learned_positions=True`` is the image-to-video transformer (5B-I2V).
    """
    import torch
    from diffusers import CogVideoXTransformer3DModel

    torch.manual_seed(0)
    return CogVideoXTransformer3DModel(
        num_attention_heads=2,
        attention_head_dim=16,  # RoPE needs a multiple of 16
        in_channels=in_channels,
        out_channels=4,
        time_embed_dim=2,
        text_embed_dim=32,
        num_layers=2,
        sample_width=6,  # latent: 48 px
        sample_height=4,  # latent: 32 px
        sample_frames=9,  # 3 latent frames
        patch_size=2,
        temporal_compression_ratio=TEMPORAL_FACTOR,
        max_text_seq_length=226,
        use_rotary_positional_embeddings=True,
        use_learned_positional_embeddings=learned_positions,
    )


def tiny_scheduler():
    """The 5B repos' scheduler config: CogVideoX DDIM, v-prediction, zero-SNR betas, trailing timesteps."""
    from diffusers import CogVideoXDDIMScheduler

    return CogVideoXDDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        num_train_timesteps=1000,
        prediction_type="v_prediction",
        rescale_betas_zero_snr=True,
        set_alpha_to_one=True,
        snr_shift_scale=1.0,
        steps_offset=0,
        timestep_spacing="trailing",
    )


def build_tiny(path: Path) -> None:
    """Save a random-weight CogVideoX (5B-like) text-to-video pipeline in the real layout, fp32 and fp16 variant."""
    from diffusers import CogVideoXPipeline

    from ._tiny import save_with_fp16_variant

    tokenizer, text_encoder = t5_text_parts()
    pipe = CogVideoXPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=tiny_vae(),
        transformer=tiny_transformer(),
        scheduler=tiny_scheduler(),
    )
    save_with_fp16_variant(pipe, path)  # fp32 configs: the docs' plain from_pretrained(folder) loads float32


FAMILY = Family(
    name="cogvideox",
    pipeline_class="CogVideoXPipeline",
    description="CogVideoX 2B / 5B: text -> video, 49 frames at 720x480, 8 fps (docs: 2b in float16, 5b in bfloat16)",
    models=MODELS,
    params=Params,
    load=load,
    render=render_batch,
    build_tiny=build_tiny,
    uint8_conversion=UINT8_CONVERSION,
    batch_fields=("prompt", "negative_prompt"),
    batched_guidance="guidance_scale",
)
