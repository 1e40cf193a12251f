"""LTX-2 text-to-video with audio (``LTX2Pipeline``): a Gemma 3 text encoder and text connectors, one DiT that
denoises video and audio latents together, a 1:192 video VAE, and an audio VAE whose mel spectrograms a vocoder
turns into a 24 kHz stereo waveform.

Loaded and called as in the diffusers docs (the ``LTX2Pipeline`` docstring, diffusers 0.42.1):
``LTX2Pipeline.from_pretrained("Lightricks/LTX-2", torch_dtype=torch.bfloat16)``, the docs' prompt and
negative prompt, 768x512, 121 frames at ``frame_rate=24.0``, 30 steps, guidance 3, ``output_type="np"``;
the docs export with ``encode_video(video[0], fps=frame_rate, audio=audio[0].float().cpu(),
audio_sample_rate=pipe.vocoder.config.output_sampling_rate)``: H.264 frames rounded to uint8 (its
``(video * 255).round()``: ``UINT8_CONVERSION``) and an AAC stream of the waveform as 16-bit samples.
videosweep writes the same (``tasks.video.write_mp4`` with the :class:`~.base.Audio` the render returns).

``frame_rate`` is the rate the mp4 plays at, the RoPE conditioning (divided by ``motion_speed``) and
what sets the audio's length (``num_frames / frame_rate`` seconds); ``fps`` is another name of it.
The pipeline's ``num_frames`` defaults to None, which means 121 for checkpoints without a duration
head (LTX-2.0, LTX-2.3); this family always gives a count (default 121: the pipeline's own meaning of
None here), so a job id says how long its video is. The other call parameters are the pipeline's,
with its defaults: CFG, spatio-temporal guidance (STG, at the pipeline's default block ``[28]``; the
block list is not a row key) and modality-isolation guidance, each with an audio counterpart
(``audio_*``: None, and 0, mean the video's value, as the pipeline reads ``audio_x or x``).

A seed means what the docs' call, which passes no generator, draws once torch's global RNG is
seeded with it: the video latents, then the audio latents, then (for a VAE with timestep
conditioning) the decode noise, all from the job's generator; the LTX-2 VAE injects no noise in
its decoder and the loop draws nothing else. The pipeline is called with ``output_type="latent"``
and its final latents taken at the last step (``callback_on_step_end``), then decoded here exactly as
its ``__call__`` decodes after its loop (:func:`decode`): so denoising and decoding (video VAE, audio
VAE and vocoder) are timed apart. Rows that differ only in their prompts and seed may share one call
(``run --batch``).

Guidance is not run as one [unconditional, conditional] batch that ``guidance_cutoff`` could halve:
the transformer returns a video and an audio prediction, and the cutoff's hook doubles only the
first; with STG and modality guidance the pipeline also calls the transformer on the conditional
half alone. ``batched_guidance`` is None, so such rows are refused at validation.

The hub layout cannot be checked offline: ``Lightricks/LTX-2``'s ``model_index.json`` is taken as
the pipeline's documented components (``scheduler``, ``vae``, ``audio_vae``, ``text_encoder``
(``Gemma3ForConditionalGeneration``), ``tokenizer`` (``GemmaTokenizerFast``), ``connectors``,
``transformer``, ``vocoder``), and the tiny twin is built from them with the class defaults' structure
(the defaults are LTX-2.0's: 128 learnable registers in each connector, so ``max_sequence_length`` is
a multiple of 128; reflect padding in the video decoder, so each side is at least 64 px). Whether the
repo holds ``*.fp16`` weight files cannot be checked either: ``ltx-2`` reads the plain weight files,
in bfloat16, as the docs load it.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator

from .base import (
    Audio, LoadOptions, Rendered, Stopwatch, VideoParams, check_packed_frames, fold_fps, fps_is, from_pretrained,
    prompt_lists, rendered_videos,
)
from .family import Family
from .ltx import decode_noise

if TYPE_CHECKING:
    import numpy as np
    import torch

#: The docs export numpy frames with ``encode_video``, which computes ``(video * 255).round()``.
UINT8_CONVERSION = "round"

#: Short keys for the released checkpoints: the plain weight files in bfloat16, as the docs load them.
MODELS = {
    "ltx-2": {"source": "Lightricks/LTX-2", "dtype": "bfloat16", "variant": "none"},
}

#: Frames after the first are packed by 8 in the VAE's latents (``vae.temporal_compression_ratio``).
TEMPORAL_FACTOR = 8
#: Pixels per latent on each side (``vae.spatial_compression_ratio``); ``check_inputs`` refuses others.
SPATIAL_FACTOR = 32
#: The smallest side: a side of one latent cannot be reflect-padded by the VAE decoder's first convolution.
MIN_SIDE = 2 * SPATIAL_FACTOR
#: Learnable registers of each text connector (LTX2TextConnectors' default, LTX-2.0's): the padded prompt length
#: must be a multiple of it.
CONNECTOR_REGISTERS = 128


def audio_scale(default: float, what: str) -> Any:
    return Field(
        default,
        ge=0.0,
        le=100.0,
        description=f"{what} for the audio; None or 0: the video's value (the pipeline reads `audio or video`)",
    )


class Params(VideoParams):
    """The call parameters of ``LTX2Pipeline``, with its own defaults (``num_frames``: what its None means here)."""

    prompt: str = Field(min_length=1, description="what the video shows and sounds like (long, detailed prompts)")
    negative_prompt: str | None = Field(
        None, description="what to steer away from (the docs: 'worst quality, inconsistent motion, blurry, ...')"
    )
    height: int = Field(
        512, ge=MIN_SIDE, le=4096, multiple_of=SPATIAL_FACTOR, description="output height in pixels (docs: 512)"
    )
    width: int = Field(
        768, ge=MIN_SIDE, le=4096, multiple_of=SPATIAL_FACTOR, description="output width in pixels (docs: 768)"
    )
    num_frames: int = Field(
        121, ge=1, le=1025, description="frames to generate, 8k+1 (121 is 5 s at 24 fps); the audio lasts as long"
    )
    frame_rate: int = Field(
        24, ge=1, le=240, description="frame rate: the mp4's, the RoPE conditioning and the audio's length (`fps`: the same)"
    )
    fps: int | None = fps_is("frame_rate")
    motion_speed: float = Field(
        1.0, gt=0.0, le=100.0, description="motion relative to real time (RoPE sees frame_rate / motion_speed)"
    )
    num_inference_steps: int = Field(30, ge=1, le=1000, description="denoising steps (video and audio together)")
    guidance_scale: float = Field(3.0, ge=0.0, le=100.0, description="classifier-free guidance of the video; 1 or less: off")
    stg_scale: float = Field(1.0, ge=0.0, le=100.0, description="spatio-temporal guidance of the video (0: off; one more pass)")
    modality_scale: float = Field(
        3.0, ge=0.0, le=100.0, description="modality-isolation guidance of the video (1 or less: off; one more pass)"
    )
    guidance_rescale: float = Field(
        0.7, ge=0.0, le=1.0, description="rescales guided video predictions toward the text branch's std"
    )
    audio_guidance_scale: float | None = audio_scale(7.0, "classifier-free guidance")
    audio_stg_scale: float | None = audio_scale(1.0, "spatio-temporal guidance")
    audio_modality_scale: float | None = audio_scale(3.0, "modality-isolation guidance")
    audio_guidance_rescale: float | None = Field(
        0.7, ge=0.0, le=1.0, description="guidance rescale for the audio; None or 0: the video's value"
    )
    decode_timestep: float = Field(
        0.0, ge=0.0, le=1.0, description="timestep the video VAE decodes at (only a timestep-aware VAE; LTX-2's is not)"
    )
    decode_noise_scale: float | None = Field(
        None, ge=0.0, le=1.0, description="noise mixed into the latents before a timestep-aware decode; default: decode_timestep"
    )
    use_cross_timestep: bool = Field(
        True, description="cross-modal attention modulated by the other modality's sigma (LTX-2.3+; False: LTX-2.0's way)"
    )
    max_sequence_length: int = Field(
        1024,
        ge=CONNECTOR_REGISTERS,
        le=8192,
        multiple_of=CONNECTOR_REGISTERS,
        description="prompt tokens kept (padded to this length; a multiple of the connectors' 128 registers)",
    )

    _fps = fold_fps("frame_rate")

    @field_validator("num_frames")
    @classmethod
    def _num_frames_8k_plus_1(cls, value: int) -> int:
        return check_packed_frames(value, TEMPORAL_FACTOR, "LTX-2")


def load(options: LoadOptions, device: str):
    """The pipeline, on ``device``, ready to call."""
    from diffusers import LTX2Pipeline

    pipe = from_pretrained(LTX2Pipeline, options)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def call_arguments(params: Params) -> dict[str, Any]:
    """The row's parameters as ``LTX2Pipeline.__call__`` (and ``LTX2ImageToVideoPipeline``'s) takes them, prompts
    aside; the decode's two (``decode_timestep``, ``decode_noise_scale``) are :func:`decode`'s."""
    return dict(
        height=params.height,
        width=params.width,
        num_frames=params.num_frames,
        frame_rate=float(params.frame_rate),
        motion_speed=params.motion_speed,
        num_inference_steps=params.num_inference_steps,
        guidance_scale=params.guidance_scale,
        stg_scale=params.stg_scale,
        modality_scale=params.modality_scale,
        guidance_rescale=params.guidance_rescale,
        audio_guidance_scale=params.audio_guidance_scale,
        audio_stg_scale=params.audio_stg_scale,
        audio_modality_scale=params.audio_modality_scale,
        audio_guidance_rescale=params.audio_guidance_rescale,
        use_cross_timestep=params.use_cross_timestep,
        max_sequence_length=params.max_sequence_length,
    )


class FinalLatents:
    """A ``callback_on_step_end`` that keeps the video latents after each step: after the call, the last step's,
    packed and normalized, as the pipeline holds them before its decode (``output_type="latent"`` returns them
    denormalized, in float32, where the pipeline's own decode denormalizes them in the text encoder's dtype)."""

    tensor_inputs = ["latents"]

    def __init__(self) -> None:
        self.latents = None

    def __call__(self, pipe, step: int, timestep, tensors: dict) -> dict:
        self.latents = tensors["latents"]
        return {}


def denoise(pipe, params: Params, generators: list, **inputs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """One pipeline call up to its decode: the packed, normalized video latents of its last step and the unpacked,
    denormalized audio latents (what the pipeline decodes), one row per video."""
    final = FinalLatents()
    _, audio_latents = pipe(
        **inputs,
        **call_arguments(params),
        generator=generators,
        output_type="latent",
        return_dict=False,
        callback_on_step_end=final,
        callback_on_step_end_tensor_inputs=final.tensor_inputs,
    )
    return final.latents, audio_latents


def decode(
    pipe, latents: torch.Tensor, audio_latents: torch.Tensor, params: Params, generator: torch.Generator
) -> tuple[np.ndarray, Audio]:
    """One video's float frames in [0, 1], (frames, H, W, 3), and its sound: ``LTX2Pipeline.__call__``'s decode after
    its loop, verbatim (``LTX2ImageToVideoPipeline``'s is the same), for a batch of one.

    ``latents`` are the last step's packed latents (:class:`FinalLatents`), ``audio_latents`` the
    call's (denormalized and unpacked before the pipeline's decode branch). The decode noise of a
    timestep-aware VAE is drawn from the video's generator, after the loop's draws, as the pipeline draws it.
    The waveform is what the docs hand their export: ``audio[0].float().cpu()``, at the vocoder's output rate.
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
        latents = latents.to(pipe.text_encoder.dtype)  # the pipeline's prompt_embeds.dtype

        latents, timestep = decode_noise(pipe, latents, params, generator, device)

        latents = pipe._denormalize_latents(
            latents, pipe.vae.latents_mean, pipe.vae.latents_std, pipe.vae.config.scaling_factor
        )
        latents = latents.to(pipe.vae.dtype)
        video = pipe.vae.decode(latents, timestep, return_dict=False)[0]
        frames = pipe.video_processor.postprocess_video(video, output_type="np")[0]

        audio_latents = audio_latents.to(pipe.audio_vae.dtype)
        mel_spectrograms = pipe.audio_vae.decode(audio_latents, return_dict=False)[0]
        waveform = pipe.vocoder(mel_spectrograms)[0].float().cpu().numpy()
    return frames, Audio(waveform, int(pipe.vocoder.config.output_sampling_rate))


def render_batch(pipe, params_list: list[Params], generators: list[torch.Generator], device: str) -> list[Rendered]:
    """Render videos whose parameters differ only in ``batch_fields`` in one pipeline call, each with its generator.

    The denoising loop and the decode (video VAE, audio VAE, vocoder) are timed apart.
    """
    params = params_list[0]  # the call's parameters; only the prompts differ

    # 1. encode the prompts, denoise video and audio together; keep the last step's latents (diffusers draws each
    #    video's video and audio noise from its own generator, and pads each prompt to max_sequence_length as alone)
    watch = Stopwatch(device)
    latents, audio_latents = denoise(pipe, params, generators, **prompt_lists(params_list))
    denoise_s = watch.lap()

    # 2. decode exactly as the pipeline does after its loop, one video at a time, with its own generator
    decoded = [
        decode(pipe, video, audio, each, generator)
        for video, audio, each, generator in zip(latents.split(1), audio_latents.split(1), params_list, generators)
    ]
    frames = [video for video, _ in decoded]
    sounds = [audio for _, audio in decoded]
    return rendered_videos(pipe, watch, denoise_s, frames, UINT8_CONVERSION, params.frame_rate, audio=sounds)


# -- the tiny checkpoint -------------------------------------------------------------------------

#: The tiny Gemma 3's text width and layers: the connectors read every layer's hidden states (layers + 1).
TINY_TEXT_WIDTH = 16
TINY_TEXT_LAYERS = 2
#: The tiny audio VAE's mel bins and latent channels; its latents pack (channels x mel bins / 4) features.
TINY_MEL_BINS = 16
TINY_AUDIO_LATENT_CHANNELS = 2


def gemma3_text_parts():
    """An in-memory Gemma tokenizer (characters as pieces, no merges) and a 2-layer Gemma 3 (text and a 1-layer
    SigLIP vision tower: ``Gemma3ForConditionalGeneration``, the class of LTX-2's ``text_encoder``) of width 16."""
    import torch
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3TextConfig, GemmaTokenizer, SiglipVisionConfig

    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<start_of_image>", "<end_of_image>", "<image_soft_token>"]
    pieces = specials + ["\u2581"] + list(string.ascii_letters + string.digits + string.punctuation)
    tokenizer = GemmaTokenizer(vocab={piece: index for index, piece in enumerate(pieces)}, merges=[])
    torch.manual_seed(0)
    text_encoder = Gemma3ForConditionalGeneration(
        Gemma3Config(
            text_config=Gemma3TextConfig(
                vocab_size=len(pieces),
                hidden_size=TINY_TEXT_WIDTH,
                intermediate_size=32,
                num_hidden_layers=TINY_TEXT_LAYERS,
                num_attention_heads=2,
                num_key_value_heads=1,
                head_dim=8,
                query_pre_attn_scalar=8,
                sliding_window=64,
                max_position_embeddings=4096,
                pad_token_id=0,
                eos_token_id=1,
                bos_token_id=2,
            ),
            vision_config=SiglipVisionConfig(
                hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=28, patch_size=14
            ),
            mm_tokens_per_image=4,
            boi_token_index=pieces.index("<start_of_image>"),
            eoi_token_index=pieces.index("<end_of_image>"),
            image_token_index=pieces.index("<image_soft_token>"),
        )
    )
    return tokenizer, text_encoder


def _spread_latent_statistics(vae, seed: int) -> None:
    """Give a VAE's ``latents_mean`` / ``latents_std`` (zeros and ones when built) values a trained one has, so that a
    render that skipped a (de)normalization would show."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        vae.latents_mean.copy_(torch.rand(vae.latents_mean.shape, generator=generator) * 0.2 - 0.1)
        vae.latents_std.copy_(torch.rand(vae.latents_std.shape, generator=generator) + 0.5)


def tiny_vae():
    """An 8-channel AutoencoderKLLTX2Video with the real compression (32x space: 4x4 patches and three 2x
    scalings; 8x time), LTX-2's decoder (no timestep conditioning, no injected noise), reflect padding."""
    import torch
    from diffusers import AutoencoderKLLTX2Video

    torch.manual_seed(0)
    vae = AutoencoderKLLTX2Video(
        latent_channels=8,
        block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 16, 32),
        layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, True, True),
        decoder_spatio_temporal_scaling=(True, True, True),
        decoder_inject_noise=(False, False, False, False),
        upsample_residual=(True, True, True),
        upsample_factor=(2, 2, 2),
        timestep_conditioning=False,
        patch_size=4,
        decoder_causal=False,
        spatial_compression_ratio=SPATIAL_FACTOR,
        temporal_compression_ratio=TEMPORAL_FACTOR,
    )
    _spread_latent_statistics(vae, 1)
    return vae


def tiny_audio_vae():
    """An AutoencoderKLLTX2Audio at the real rates (16 kHz mel frames every 160 samples, 4x in time and mel bins)
    over 16 mel bins and 2 latent channels."""
    import torch
    from diffusers import AutoencoderKLLTX2Audio

    torch.manual_seed(0)
    vae = AutoencoderKLLTX2Audio(
        base_channels=TINY_AUDIO_LATENT_CHANNELS * TINY_MEL_BINS // 4,  # the latents' packed width (mean / std)
        output_channels=2,
        ch_mult=(1, 2, 4),
        num_res_blocks=1,
        in_channels=2,
        latent_channels=TINY_AUDIO_LATENT_CHANNELS,
        mel_bins=TINY_MEL_BINS,
    )
    _spread_latent_statistics(vae, 2)
    return vae


def tiny_vocoder():
    """An LTX2Vocoder at the real output rate: 24 kHz, 240 samples per mel frame (6 x 5 x 2 x 2 x 2), stereo."""
    import torch
    from diffusers.pipelines.ltx2 import LTX2Vocoder

    torch.manual_seed(0)
    return LTX2Vocoder(
        in_channels=2 * TINY_MEL_BINS,
        hidden_channels=32,
        out_channels=2,
        upsample_kernel_sizes=[12, 10, 4, 4, 4],
        upsample_factors=[6, 5, 2, 2, 2],
        resnet_kernel_sizes=[3],
        resnet_dilations=[[1]],
        output_sampling_rate=24000,
    )


def tiny_connectors():
    """LTX2TextConnectors over the tiny Gemma's layers (LTX-2.0's kind: one shared projection), 128 registers each."""
    import torch
    from diffusers.pipelines.ltx2 import LTX2TextConnectors

    torch.manual_seed(0)
    return LTX2TextConnectors(
        caption_channels=TINY_TEXT_WIDTH,
        text_proj_in_factor=TINY_TEXT_LAYERS + 1,
        video_connector_num_attention_heads=2,
        video_connector_attention_head_dim=8,
        video_connector_num_layers=1,
        video_connector_num_learnable_registers=CONNECTOR_REGISTERS,
        audio_connector_num_attention_heads=2,
        audio_connector_attention_head_dim=8,
        audio_connector_num_layers=1,
        audio_connector_num_learnable_registers=CONNECTOR_REGISTERS,
    )


def tiny_transformer():
    """A 2-layer LTX2VideoTransformer3DModel, video and audio streams of width 16."""
    import torch
    from diffusers import LTX2VideoTransformer3DModel

    audio_features = TINY_AUDIO_LATENT_CHANNELS * TINY_MEL_BINS // 4
    torch.manual_seed(0)
    return LTX2VideoTransformer3DModel(
        in_channels=8,
        out_channels=8,
        num_attention_heads=2,
        attention_head_dim=8,
        cross_attention_dim=16,
        audio_in_channels=audio_features,
        audio_out_channels=audio_features,
        audio_num_attention_heads=2,
        audio_attention_head_dim=8,
        audio_cross_attention_dim=16,
        num_layers=2,
        caption_channels=TINY_TEXT_WIDTH,
    )


def tiny_scheduler():
    """Flow-matching Euler with resolution-dependent shift, the values the pipeline falls back on."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(
        use_dynamic_shifting=True,
        base_shift=0.95,
        max_shift=2.05,
        base_image_seq_len=1024,
        max_image_seq_len=4096,
        shift_terminal=0.1,
    )


def tiny_pipeline():
    """The tiny LTX2Pipeline's components, assembled (float32)."""
    from diffusers import LTX2Pipeline

    tokenizer, text_encoder = gemma3_text_parts()
    return LTX2Pipeline(
        scheduler=tiny_scheduler(),
        vae=tiny_vae(),
        audio_vae=tiny_audio_vae(),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        connectors=tiny_connectors(),
        transformer=tiny_transformer(),
        vocoder=tiny_vocoder(),
    )


def build_tiny(path: Path) -> None:
    """Save a random-weight LTX-2 in the layout of the pipeline's documented components (fp32 and fp16 weights).

    ``LTX2ImageToVideoPipeline`` loads the same folder (``ltx2-i2v`` shares it, as the hub repo is shared).
    """
    from ._tiny import save_with_fp16_variant

    save_with_fp16_variant(tiny_pipeline(), path)  # fp32 configs: the docs' plain from_pretrained(folder) loads float32


FAMILY = Family(
    name="ltx2",
    pipeline_class="LTX2Pipeline",
    description="LTX-2: text -> video with audio (AAC in the mp4), one DiT for both, Gemma 3 encoder, 32x / 8x VAE",
    models=MODELS,
    params=Params,
    load=load,
    render=render_batch,
    build_tiny=build_tiny,
    uint8_conversion=UINT8_CONVERSION,
    batch_fields=("prompt", "negative_prompt"),
    # the docs' dtype; `dtype: auto` on a GPU means this
    gpu_dtype="bfloat16",
)
