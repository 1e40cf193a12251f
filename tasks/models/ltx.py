"""LTX-Video text-to-video (``LTXPipeline``): a T5 text encoder, a video DiT, and a 1:192 Video-VAE.

Loaded and called as in the diffusers docs (the ``LTXPipeline`` docstring and
``api/pipelines/ltx_video``): ``LTXPipeline.from_pretrained("Lightricks/LTX-Video")`` in the job's
dtype (the docs load bfloat16 and recommend it for the transformer; the VAE and text encoder
"can also be torch.float32 or torch.float16"), a prompt and the docs' negative prompt, 704x480,
161 frames, 50 steps, exported at 24 fps. The docs page adds ``decode_timestep=0.03,
decode_noise_scale=0.025`` for the timestep-aware VAEs (LTX-Video 0.9.1 and later); with a
0.9.0 VAE (``timestep_conditioning: false``) those two do nothing.

``frame_rate`` is both the transformer's RoPE conditioning (the temporal interpolation scale is
``vae_temporal_compression_ratio / frame_rate``) and the rate the mp4 is written at, so the file
plays at the speed the model was told; ``fps`` is another name of it (one value, so the two
cannot disagree). Its default is the pipeline's 25; the docs' call leaves it at 25 and exports
at 24: a manifest that wants 24 fps sets ``frame_rate: 24`` (or ``fps: 24``), which also
conditions the model on 24. The docs' frames are PIL images (``numpy_to_pil`` rounds:
``UINT8_CONVERSION``).

A seed means what the docs' call, which passes no generator, draws once torch's global RNG is
seeded with it: every number from one stream, the latents, then the decode noise, then the
noise the 0.9.1+ Video-VAE decoder injects (``decoder_inject_noise``; ``AutoencoderKLLTXVideo.decode``
takes no generator, it draws from the global RNG). The loop runs on the job's generator (the
latents; the loop draws nothing from the global RNG), and each video is decoded under
:func:`~tasks.models.base.global_generator`, which continues that generator's stream in the
global RNG (and restores the process's RNG after). Rows that differ only in their prompts and
seed may share one call (``render_batch``, ``videosweep run --batch N``): each video's generator
draws its latents as alone, and each video is decoded alone continuing its own generator, so its
decoder noise is the noise it gets rendered alone. On a GPU the docs' unseeded call draws
everything from the GPU's RNG: ``generator_device: cuda`` is that stream; with the default CPU
generator the latents and decode noise come from the CPU and the decoder's noise from the GPU's
RNG seeded with the seed (the docs' call with ``generator=torch.manual_seed(seed)``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field, field_validator

from ._tiny import t5_text_parts
from .base import (
    LoadOptions, Rendered, Stopwatch, VideoParams, check_packed_frames, fold_fps, fps_is, from_pretrained,
    global_generator, prompt_lists, rendered_videos,
)
from .family import Family

if TYPE_CHECKING:
    import numpy as np
    import torch

#: The docs' frames are PIL images (the pipeline's default output): ``numpy_to_pil`` rounds.
UINT8_CONVERSION = "round"

#: Short keys for the released checkpoints.
MODELS = {
    "ltx-video": "Lightricks/LTX-Video",
}

#: Frames after the first are packed by 8 in the VAE's latents (``vae.temporal_compression_ratio``).
TEMPORAL_FACTOR = 8
#: Pixels per latent on each side (``vae.spatial_compression_ratio``); ``check_inputs`` refuses others.
SPATIAL_FACTOR = 32


class Params(VideoParams):
    """The call parameters of ``LTXPipeline``, with its own defaults."""

    prompt: str = Field(min_length=1, description="what the video shows (LTX likes long, detailed prompts)")
    negative_prompt: str | None = Field(
        None, description="what to steer away from (the docs: 'worst quality, inconsistent motion, blurry, ...')"
    )
    height: int = Field(
        512, ge=SPATIAL_FACTOR, le=4096, multiple_of=SPATIAL_FACTOR, description="output height in pixels (docs: 480)"
    )
    width: int = Field(
        704, ge=SPATIAL_FACTOR, le=4096, multiple_of=SPATIAL_FACTOR, description="output width in pixels (docs: 704)"
    )
    num_frames: int = Field(161, ge=1, le=1025, description="frames to generate, 8k+1 (161 is 6.7 s at 24 fps)")
    frame_rate: int = Field(
        25, ge=1, le=240, description="frame rate: the transformer's RoPE conditioning and the mp4's rate (`fps`: the same)"
    )
    fps: int | None = fps_is("frame_rate")
    num_inference_steps: int = Field(50, ge=1, le=1000, description="denoising steps")
    guidance_scale: float = Field(
        3.0, ge=0.0, le=100.0, description="classifier-free guidance; 1 or less turns it off (distilled models: 1)"
    )
    guidance_rescale: float = Field(
        0.0, ge=0.0, le=1.0, description="rescales guided noise toward the text branch's std (fixes overexposure)"
    )
    decode_timestep: float = Field(
        0.0, ge=0.0, le=1.0, description="timestep the VAE decodes at (0.9.1+ timestep-aware VAEs; docs: 0.03-0.05)"
    )
    decode_noise_scale: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="noise mixed into the latents before decoding (0.9.1+; docs: 0.025); default: decode_timestep",
    )
    max_sequence_length: int = Field(128, ge=1, le=512, description="prompt tokens kept (padded to this length)")

    _fps = fold_fps("frame_rate")

    @field_validator("num_frames")
    @classmethod
    def _num_frames_8k_plus_1(cls, value: int) -> int:
        return check_packed_frames(value, TEMPORAL_FACTOR, "LTX")


def load(options: LoadOptions, device: str):
    """The pipeline, on ``device``, ready to call."""
    from diffusers import LTXPipeline

    pipe = from_pretrained(LTXPipeline, options)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def decode(
    pipe, latents: torch.Tensor, params: Params, generator: torch.Generator, *, cast_to_vae_dtype: bool = True
) -> np.ndarray:
    """Float frames in [0, 1], (frames, H, W, 3): ``LTXPipeline.__call__``'s decode after its loop, verbatim.

    ``latents`` are the packed tokens ``output_type="latent"`` returns. The decode noise is drawn
    from the call's generator, after the loop's draws, as the pipeline draws it.
    ``LTXImageToVideoPipeline`` decodes the same way, except that it skips the cast to the VAE's
    dtype (``cast_to_vae_dtype=False``) and draws that noise with ``torch.randn`` where
    ``LTXPipeline`` uses ``randn_tensor``: the same numbers wherever the generator is on the
    device, and ``randn_tensor`` also works with a CPU generator on a GPU, where ``torch.randn``
    raises.
    """
    import torch

    device = pipe._execution_device
    latent_num_frames = (params.num_frames - 1) // pipe.vae_temporal_compression_ratio + 1
    latent_height = params.height // pipe.vae_spatial_compression_ratio
    latent_width = params.width // pipe.vae_spatial_compression_ratio
    with torch.no_grad():
        latents = pipe._unpack_latents(
            latents,
            latent_num_frames,
            latent_height,
            latent_width,
            pipe.transformer_spatial_patch_size,
            pipe.transformer_temporal_patch_size,
        )
        latents = pipe._denormalize_latents(
            latents, pipe.vae.latents_mean, pipe.vae.latents_std, pipe.vae.config.scaling_factor
        )
        latents = latents.to(pipe.text_encoder.dtype)  # the pipeline's prompt_embeds.dtype

        latents, timestep = decode_noise(pipe, latents, params, generator, device)

        if cast_to_vae_dtype:
            latents = latents.to(pipe.vae.dtype)
        video = pipe.vae.decode(latents, timestep, return_dict=False)[0]
        return pipe.video_processor.postprocess_video(video, output_type="np")[0]


def decode_noise(pipe, latents, params, generator, device) -> tuple:
    """The latents and the decoder's timestep, as the LTX pipelines (LTX-Video, LTX-2) prepare them for a VAE with
    timestep conditioning: noise from ``generator`` mixed in at ``decode_noise_scale`` (else ``decode_timestep``);
    the latents as they are and no timestep for a VAE without it."""
    import torch
    from diffusers.utils.torch_utils import randn_tensor

    if not pipe.vae.config.timestep_conditioning:
        return latents, None
    noise = randn_tensor(latents.shape, generator=generator, device=device, dtype=latents.dtype)
    decode_timestep = [params.decode_timestep]
    decode_noise_scale = decode_timestep if params.decode_noise_scale is None else [params.decode_noise_scale]
    timestep = torch.tensor(decode_timestep, device=device, dtype=latents.dtype)
    scale = torch.tensor(decode_noise_scale, device=device, dtype=latents.dtype)[:, None, None, None, None]
    return (1 - scale) * latents + scale * noise, timestep


def render_batch(pipe, params_list: list[Params], generators: list[torch.Generator], device: str) -> list[Rendered]:
    """Render videos whose parameters differ only in ``batch_fields`` in one pipeline call, each with its generator.

    The denoising loop and the decode are timed apart (:func:`~.base.rendered_videos` shares them out).
    """
    params = params_list[0]  # the call's parameters; only the prompts differ

    # 1. encode the prompts and denoise; stop at the (packed) latents (diffusers draws each video's noise from
    #    its own generator, and pads and masks each prompt to max_sequence_length as alone; the loop draws
    #    nothing from the global RNG)
    watch = Stopwatch(device)
    latents = pipe(
        **prompt_lists(params_list),
        height=params.height,
        width=params.width,
        num_frames=params.num_frames,
        frame_rate=params.frame_rate,
        num_inference_steps=params.num_inference_steps,
        guidance_scale=params.guidance_scale,
        guidance_rescale=params.guidance_rescale,
        max_sequence_length=params.max_sequence_length,
        generator=generators,
        output_type="latent",
    ).frames
    denoise_s = watch.lap()

    # 2. decode exactly as the pipeline does after its loop, one video at a time, its decode noise and its
    #    decoder's noise continuing its own generator's stream in the global RNG (see above), as alone
    videos = []
    for one, each, generator in zip(latents.split(1), params_list, generators):
        with global_generator(generator, device) as stream:
            videos.append(decode(pipe, one, each, stream))
    return rendered_videos(pipe, watch, denoise_s, videos, UINT8_CONVERSION, params.frame_rate)


# -- the tiny checkpoint -------------------------------------------------------------------------


def tiny_vae():
    """An 8-channel AutoencoderKLLTXVideo with the 0.9.1 structure and the real compression (32x space, 8x time).

    As in ``convert_ltx_to_diffusers.py --version 0.9.1``: 4x4 patches, three 2x scalings each way,
    a 3-block decoder with residual 2x upsamplers, noise injected in its up blocks, and timestep
    conditioning (so ``decode_timestep`` / ``decode_noise_scale`` matter). The noise scales are
    zeros when built; trained ones are not, so they are set to 0.5 here to make the noise count.
    """
    import torch
    from diffusers import AutoencoderKLLTXVideo

    torch.manual_seed(0)
    vae = AutoencoderKLLTXVideo(
        in_channels=3,
        out_channels=3,
        latent_channels=8,
        block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 16, 32),
        layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, True, False),
        decoder_spatio_temporal_scaling=(True, True, True),
        decoder_inject_noise=(False, True, True, True),
        upsample_residual=(True, True, True),
        upsample_factor=(2, 2, 2),
        timestep_conditioning=True,
        patch_size=4,
        patch_size_t=1,
        encoder_causal=True,
        decoder_causal=False,
    )
    with torch.no_grad():
        for name, parameter in vae.named_parameters():
            if "per_channel_scale" in name:
                parameter.fill_(0.5)
    return vae


def tiny_transformer():
    """A 2-layer LTXVideoTransformer3DModel (diffusers' tests' sizes, one more layer)."""
    import torch
    from diffusers import LTXVideoTransformer3DModel

    torch.manual_seed(0)
    return LTXVideoTransformer3DModel(
        in_channels=8,
        out_channels=8,
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=4,
        attention_head_dim=8,
        cross_attention_dim=32,
        num_layers=2,
        caption_channels=32,
    )


def tiny_scheduler():
    """The real repo's scheduler: flow-matching Euler with resolution-dependent shift (as converted by diffusers)."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(
        use_dynamic_shifting=True,
        base_shift=0.95,
        max_shift=2.05,
        base_image_seq_len=1024,
        max_image_seq_len=4096,
        shift_terminal=0.1,
    )


def build_tiny(path: Path) -> None:
    """Save a random-weight LTX-Video in the layout of the real repo (fp32 and fp16 variant weights).

    ``LTXImageToVideoPipeline`` loads the same folder (``ltx-i2v`` shares it, as the hub repo is shared).
    """
    from diffusers import LTXPipeline

    from ._tiny import save_with_fp16_variant

    tokenizer, text_encoder = t5_text_parts(model_max_length=128)
    pipe = LTXPipeline(
        scheduler=tiny_scheduler(),
        vae=tiny_vae(),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=tiny_transformer(),
    )
    save_with_fp16_variant(pipe, path)  # fp32 configs: the docs' plain from_pretrained(folder) loads float32


FAMILY = Family(
    name="ltx",
    pipeline_class="LTXPipeline",
    description="LTX-Video: text -> video, DiT with a T5 encoder and a 32x / 8x Video-VAE, frame_rate conditioning",
    models=MODELS,
    params=Params,
    load=load,
    render=render_batch,
    build_tiny=build_tiny,
    uint8_conversion=UINT8_CONVERSION,
    batch_fields=("prompt", "negative_prompt"),
    batched_guidance="guidance_scale",
    # the docs' dtype; `dtype: auto` on a GPU means this
    gpu_dtype="bfloat16",
)
