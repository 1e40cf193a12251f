"""LTX-2 latent upsampling (``LTX2LatentUpsamplePipeline``) as a chain stage: a video -> the same video at twice its
width and height, through the LTX-2 video VAE and its spatial latent upsampler (no denoising, no prompt).

Loaded and called as in the diffusers docs (the ``LTX2LatentUpsamplePipeline`` docstring, diffusers 0.42.1), whose
second stage upsamples the first stage's frames::

    pipe = LTX2ImageToVideoPipeline.from_pretrained("Lightricks/LTX-2", torch_dtype=torch.bfloat16)
    video, audio = pipe(image=..., prompt=..., width=768, height=512, num_frames=121, frame_rate=24.0, ...,
                        output_type="pil", return_dict=False)
    latent_upsampler = LTX2LatentUpsamplerModel.from_pretrained(
        "Lightricks/LTX-2", subfolder="latent_upsampler", torch_dtype=torch.bfloat16)
    upsample_pipe = LTX2LatentUpsamplePipeline(vae=pipe.vae, latent_upsampler=latent_upsampler)
    upsample_pipe.vae.enable_tiling()
    upsample_pipe.to(device="cuda", dtype=torch.bfloat16)
    video = upsample_pipe(video=video, width=768, height=512, output_type="np", return_dict=False)[0]
    encode_video(video[0], fps=frame_rate, audio=audio[0].float().cpu(), ...)

Here the first stage is another row (``video: "@<row id>"``: an ``ltx2`` or ``ltx2-i2v`` row, whose frames a
chained row reads losslessly) or a video file; this family is the second stage alone. ``load`` builds the
pipeline as the docs do: ``LTX2LatentUpsamplerModel.from_pretrained(repo, subfolder="latent_upsampler")``, and the
VAE the docs take from the first stage's pipeline (``pipe.vae``) read from the same repo's ``vae`` folder
(``AutoencoderKLLTX2Video.from_pretrained(repo, subfolder="vae")``: the same weights, in the same dtype), VAE
tiling on, the whole pipeline moved to the device in the job's dtype (bfloat16 in the docs).

The pipeline encodes the frames with the VAE (the latents *sampled* from its posterior, with the job's generator:
so a seed matters), upsamples them 2x in space, optionally AdaIN-filters and tone-maps them, and decodes. It is
called with ``output_type="latent"`` and the upsampled latents decoded here exactly as its ``__call__`` decodes
them (:func:`decode`): ``denoise_s`` is the encode + upsample, ``decode_s`` the VAE decode. The frames are the
docs' numpy frames rounded as ``encode_video`` rounds them (``UINT8_CONVERSION``), written at the input video's
frame rate (the docs export at the first stage's ``frame_rate``) unless the row sets ``fps``. One video a call
(the pipeline encodes one input video: "batched video input is not yet tested/supported").

Sound: the pipeline makes none. The docs' export puts the *first* stage's audio into the upsampled mp4; here the
upsample stage's mp4 is silent, and the source row's mp4 keeps its sound. (A chained row reads its source's
lossless frames, which carry no audio; taking the sound back out of the source's mp4 would re-encode its AAC
stream, not carry it.)

Parameters are the pipeline's call parameters for a video input, with its defaults, except ``height``, ``width``
and ``num_frames`` (the pipeline's 512 x 768 and 121 describe LTX-2's default first-stage output): None here, the
input video's own size and frame count, so a chained row needs neither. The pipeline's ``height`` / ``width`` are
the *input's* size, which it resizes the frames to before encoding (the output is twice that); ``num_frames`` takes
the video's first frames. ``latents`` / ``latents_normalized`` / the patch sizes are for latents handed over in
memory, not a row's.

Refused here, where the pipeline would go on silently (or fail only once the job runs):
- a video of other than 8k+1 frames: the pipeline cuts it to the last 8k+1 with a warning (10 frames come out
  as 9); ``num_frames`` takes the first 8k+1 explicitly;
- sides that are not multiples of 32 (the VAE's 32x; the pipeline raises only once the job runs) or below 64 px
  (as ``ltx2``: a one-latent side cannot be reflect-padded by the VAE), the video's own where no size is given;
- a negative ``adain_factor``: the pipeline documents [-10, 10] but applies AdaIN only above 0, so a negative
  value would do nothing;
- ``decode_timestep`` / ``decode_noise_scale`` for a VAE without timestep conditioning (LTX-2's), which ignores them;
- a row ``scheduler``, ``scheduler_config``, ``step_cache``: the pipeline has no scheduler and no denoiser (its setup fails the job, naming the key).

The pipeline has neither a scheduler nor a denoiser: a job's setup (``tasks.pipeline_setup``) refuses a row's
``scheduler``, ``scheduler_config``, ``step_cache`` and ``forward_chunking`` for it, naming the option, and its
record's ``scheduler_class`` is null; ``guidance_cutoff`` is refused at validation (no ``batched_guidance``).

The hub layout cannot be checked offline: ``Lightricks/LTX-2`` is taken to hold the ``ltx2`` family's components
(its ``model_index.json`` names ``LTX2Pipeline``) and a ``latent_upsampler`` folder (the docs' subfolder) with an
``LTX2LatentUpsamplerModel``'s ``config.json`` and plain weight files, read in bfloat16 as the docs read it (no
``*.fp16.*`` files assumed). The tiny twin is that layout: the ``ltx2`` family's tiny LTX-2 (its builders, so the
same VAE weights a chained ``tiny-ltx2`` row renders with) and a tiny upsampler (the class defaults' structure:
3-D convolutions, the 2x rational resampler) with its fp16 variant. Its ``model_index.json`` also lists
``latent_upsampler`` (``["ltx2", "LTX2LatentUpsamplerModel"]``), so that ``LTX2LatentUpsamplePipeline.from_pretrained``
of the folder loads the two parts; whether the real repo's lists it could not be checked (``load`` never reads it).
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, ValidationInfo, field_validator

from . import ltx2
from .base import (
    LoadOptions, Rendered, Stopwatch, VideoParams, check_packed_frames, fps_field, rendered_videos, torch_dtype,
    video_field,
)
from .family import Family, one_video_per_call
from .ltx import decode_noise

if TYPE_CHECKING:
    import numpy as np
    import torch

#: The docs export numpy frames with ``encode_video``, which computes ``(video * 255).round()``.
UINT8_CONVERSION = "round"

#: Short keys for the released checkpoints: the LTX-2 repo's VAE and latent upsampler, in bfloat16 (the docs' dtype).
MODELS = {
    "ltx-2-upsample": {"source": "Lightricks/LTX-2", "dtype": "bfloat16", "variant": "none"},
}

#: The repo folder of the upsampler (the docs' ``subfolder="latent_upsampler"``) and of the VAE.
UPSAMPLER_FOLDER = "latent_upsampler"
VAE_FOLDER = "vae"
#: How much larger each side comes out (the upsampler's 2x spatial scale).
SCALE = 2


class Params(VideoParams):
    """The call parameters of ``LTX2LatentUpsamplePipeline`` for a video input, with its own defaults (``height``,
    ``width``, ``num_frames``: the input video's own)."""

    video: Path = video_field(
        "input video (a file, or '@<row id>' for another row's output, an ltx2 row's say): 8k+1 frames, sides "
        "multiples of 32; the output is twice its width and height"
    )
    height: int | None = Field(
        None,
        ge=ltx2.MIN_SIDE,
        le=4096,
        multiple_of=ltx2.SPATIAL_FACTOR,
        description="the input's height: the frames are resized to it before encoding (the output is twice it); "
        "default: the video's",
    )
    width: int | None = Field(
        None,
        ge=ltx2.MIN_SIDE,
        le=4096,
        multiple_of=ltx2.SPATIAL_FACTOR,
        validate_default=True,  # so that a height without a width is refused
        description="the input's width: the frames are resized to it before encoding (the output is twice it); "
        "default: the video's",
    )
    num_frames: int | None = Field(
        None,
        ge=1,
        le=1025,
        description="take the video's first num_frames frames (8k+1); default: all of them, which must be 8k+1",
    )
    decode_timestep: float = ltx2.Params.model_fields["decode_timestep"]
    decode_noise_scale: float | None = ltx2.Params.model_fields["decode_noise_scale"]
    adain_factor: float = Field(
        0.0,
        ge=0.0,
        le=10.0,
        description="AdaIN: blend the upsampled latents toward the input latents' per-channel mean and std (0: off; "
        "the pipeline skips values <= 0, so negatives are refused)",
    )
    tone_map_compression_ratio: float = Field(
        0.0, ge=0.0, le=1.0, description="sigmoid tone-mapping of the upsampled latents' range (0: off, 1: full)"
    )
    fps: int | None = fps_field(None)

    @field_validator("width")
    @classmethod
    def _sizes_in_pairs(cls, width: int | None, info: ValidationInfo) -> int | None:
        if "height" in info.data and (info.data["height"] is None) != (width is None):
            raise ValueError("give both height and width (the size to resize the input to), or neither (the video's)")
        return width

    @field_validator("num_frames")
    @classmethod
    def _num_frames_8k_plus_1(cls, value: int | None) -> int | None:
        return value if value is None else check_packed_frames(value, ltx2.TEMPORAL_FACTOR, "LTX-2")


def load(options: LoadOptions, device: str):
    """The pipeline as the docs assemble it, on ``device`` in the job's dtype: the repo's latent upsampler and VAE,
    VAE tiling on."""
    from diffusers import AutoencoderKLLTX2Video, LTX2LatentUpsamplePipeline
    from diffusers.pipelines.ltx2.latent_upsampler import LTX2LatentUpsamplerModel
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.disable_progress_bar()
    dtype = torch_dtype(options.dtype)
    kwargs: dict[str, Any] = {"torch_dtype": dtype}
    if options.variant:
        kwargs["variant"] = options.variant
    if options.revision and not Path(options.source).is_dir():
        kwargs["revision"] = options.revision
    latent_upsampler = LTX2LatentUpsamplerModel.from_pretrained(options.source, subfolder=UPSAMPLER_FOLDER, **kwargs)
    vae = AutoencoderKLLTX2Video.from_pretrained(options.source, subfolder=VAE_FOLDER, **kwargs)  # the docs' pipe.vae
    pipe = LTX2LatentUpsamplePipeline(vae=vae, latent_upsampler=latent_upsampler)
    pipe.vae.enable_tiling()
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device=device, dtype=dtype)


def input_frames(params: Params) -> tuple[list, int, int, int]:
    """The video's frames the VAE encodes (PIL images: its first ``num_frames``, or all of them if 8k+1), its frame
    rate, and the (width, height) the pipeline is given: the row's, else the video's own."""
    from ..video import read_input_video

    check = partial(check_packed_frames, factor=ltx2.TEMPORAL_FACTOR, model="LTX-2")
    video, fps = read_input_video(params.video, params.num_frames, check)
    if params.width is not None:
        return video, fps, params.width, params.height
    width, height = video[0].size
    if width % ltx2.SPATIAL_FACTOR or height % ltx2.SPATIAL_FACTOR or min(width, height) < ltx2.MIN_SIDE:
        raise ValueError(
            f"the video {params.video} is {width}x{height}: the LTX-2 VAE takes sides that are multiples of "
            f"{ltx2.SPATIAL_FACTOR}, at least {ltx2.MIN_SIDE}; give height and width to resize it"
        )
    return video, fps, width, height


def check_call(pipe, params: Params) -> None:
    """Refuse what the loaded pipeline would ignore: decode settings its VAE does not take."""
    if not pipe.vae.config.timestep_conditioning:
        for key, default in (("decode_timestep", 0.0), ("decode_noise_scale", None)):
            if getattr(params, key) != default:
                raise ValueError(
                    f"{key}={getattr(params, key)!r}: this VAE has no timestep conditioning (LTX-2's has none), so "
                    "the pipeline ignores it; drop it from the row"
                )


def decode(pipe, latents: torch.Tensor, params: Params, generator: torch.Generator) -> np.ndarray:
    """Float frames in [0, 1], (frames, H, W, 3): ``LTX2LatentUpsamplePipeline.__call__``'s decode of the upsampled
    latents, verbatim, for a batch of one (the decode noise of a timestep-aware VAE from the job's generator, after
    the encode's draw, as the pipeline draws it)."""
    import torch

    device = pipe._execution_device
    with torch.no_grad():
        latents, timestep = decode_noise(pipe, latents, params, generator, device)

        video = pipe.vae.decode(latents, timestep, return_dict=False)[0]
        return pipe.video_processor.postprocess_video(video, output_type="np")[0]


def render(pipe, params: Params, generator: torch.Generator, device: str) -> Rendered:
    """Upsample one video; the encode + upsample and the VAE decode are timed apart."""
    check_call(pipe, params)
    video, fps, width, height = input_frames(params)

    # 1. encode the frames (latents sampled with the job's generator), upsample them 2x, AdaIN / tone-map; stop there
    watch = Stopwatch(device)
    (latents,) = pipe(
        video=video,
        height=height,
        width=width,
        adain_factor=params.adain_factor,
        tone_map_compression_ratio=params.tone_map_compression_ratio,
        generator=generator,
        output_type="latent",
        return_dict=False,
    )
    denoise_s = watch.lap()

    # 2. decode exactly as the pipeline does after the upsampler
    frames = decode(pipe, latents, params, generator)
    return rendered_videos(pipe, watch, denoise_s, [frames], UINT8_CONVERSION, params.fps or fps)[0]


# -- the tiny checkpoint -------------------------------------------------------------------------

#: The tiny upsampler's width (a multiple of 32: its GroupNorms have 32 groups) and residual blocks per stage.
TINY_UPSAMPLER_WIDTH = 32
TINY_UPSAMPLER_BLOCKS = 1
#: The tiny VAE's latent channels (``ltx2.tiny_vae``'s ``latent_channels``): the upsampler's in and out channels.
TINY_LATENT_CHANNELS = 8


def tiny_latent_upsampler():
    """An LTX2LatentUpsamplerModel over the tiny VAE's 8 latent channels, the class defaults' structure (3-D
    convolutions, a 2x rational spatial resampler), width 32, one residual block before and after."""
    import torch
    from diffusers.pipelines.ltx2.latent_upsampler import LTX2LatentUpsamplerModel

    torch.manual_seed(0)
    return LTX2LatentUpsamplerModel(
        in_channels=TINY_LATENT_CHANNELS,
        mid_channels=TINY_UPSAMPLER_WIDTH,
        num_blocks_per_stage=TINY_UPSAMPLER_BLOCKS,
        dims=3,
        spatial_upsample=True,
        temporal_upsample=False,
        rational_spatial_scale=float(SCALE),
        use_rational_resampler=True,
    )


def build_tiny(path: Path) -> None:
    """Save the tiny LTX-2 repo (the ``ltx2`` family's, by its function) with a ``latent_upsampler`` folder beside
    its components (fp32 and fp16 weights), listed in ``model_index.json`` (see the module's docstring)."""
    import shutil
    import tempfile

    import torch

    path = Path(path)
    ltx2.build_tiny(path)
    upsampler = tiny_latent_upsampler()
    upsampler.save_pretrained(path / UPSAMPLER_FOLDER)
    with tempfile.TemporaryDirectory(prefix="videosweep-fp16-") as scratch:
        upsampler.to(torch.float16).save_pretrained(scratch, variant="fp16")
        for file in sorted(Path(scratch).glob("*.fp16.*")):
            shutil.copyfile(file, path / UPSAMPLER_FOLDER / file.name)
    index_path = path / "model_index.json"
    index = json.loads(index_path.read_text())
    index[UPSAMPLER_FOLDER] = ["ltx2", "LTX2LatentUpsamplerModel"]
    index_path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


FAMILY = Family(
    name="ltx2-upsample",
    pipeline_class="LTX2LatentUpsamplePipeline",
    description="LTX-2: video -> the video at 2x width and height (VAE encode, latent upsampler, decode); chain stage",
    models=MODELS,
    params=Params,
    load=load,
    render=one_video_per_call(render),
    build_tiny=build_tiny,
    uint8_conversion=UINT8_CONVERSION,
    # the repo it reads is LTX-2's: its model_index.json names LTX2Pipeline
    base_pipeline_class="LTX2Pipeline",
    # the docs' dtype; `dtype: auto` on a GPU means this
    gpu_dtype="bfloat16",
)
