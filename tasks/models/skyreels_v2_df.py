"""SkyReels-V2 diffusion forcing, text-to-video (``SkyReelsV2DiffusionForcingPipeline``): each latent frame on its
own noise level, so blocks of frames denoise in a staggered wave and a long video grows window by window.

Loaded and called as in the diffusers docs (``api/pipelines/skyreels_v2``, "Text-to-Video Generation")::

    vae = AutoModel.from_pretrained(model_id, subfolder="vae", dtype=torch.float32)
    pipeline = SkyReelsV2DiffusionForcingPipeline.from_pretrained(model_id, vae=vae, dtype=torch.bfloat16)
    flow_shift = 8.0  # 8.0 for T2V, 5.0 for I2V
    pipeline.scheduler = UniPCMultistepScheduler.from_config(pipeline.scheduler.config, flow_shift=flow_shift)
    output = pipeline(prompt=prompt, num_inference_steps=30, height=544, width=960, num_frames=97,
                      base_num_frames=97, ar_step=5, causal_block_size=5, overlap_history=None,
                      addnoise_condition=20).frames[0]
    export_to_video(output, "video.mp4", fps=24, quality=8)

As text-to-video (``skyreels_v2.py``: VAE in float32, ``flow_shift``, truncated numpy frames),
with the pipeline's own defaults (50 steps, synchronous ``ar_step: 0``; the docs' asynchronous
recipe is a row: ``ar_step: 5, causal_block_size: 5, num_inference_steps: 30``). ``fps`` is the
pipeline's own parameter: the 1.3B model's fps conditioning (16 or anything else: two
embeddings) and the mp4's rate, one value, 24 as the docs export. The docs pass no generator,
and the pipeline draws ``addnoise_condition``'s noise (long videos) from torch's global RNG: the
call runs with the job's generator as that RNG (``base.global_generator``), one stream, as the
docs' call draws it. ``causal_block_size`` is written into the transformer's config by the
pipeline (``_set_ar_attention``); the loaded value comes back after each job, so a cached
pipeline renders the next job as loaded. One video per call.

Rules the pipeline does not check itself, or checks only once the job runs, refused here first:
- num_frames is 4k+1 (the pipeline rounds another count down, with a warning only);
- a video longer than ``base_num_frames`` needs ``overlap_history`` (the pipeline raises);
- ``causal_block_size`` divides the latent frames of every window (:func:`windows`): the
  pipeline schedules whole blocks only, and leaves the latent frames past the last one as the
  noise they started as, silently.

The hub repos could not be read offline. The tiny twin is text-to-video's parts in the layout
``scripts/convert_skyreelsv2_to_diffusers.py`` saves the DF repos in, with the 1.3B model's fps
embedding (``inject_sample_info``; the 14B DF models have none) and one frame per block.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field, ValidationInfo, field_validator

from . import skyreels_v2, wan
from ._tiny import t5_text_parts
from .base import LoadOptions, Rendered, Stopwatch, from_pretrained, global_generator, rendered_videos
from .family import Family, one_video_per_call

if TYPE_CHECKING:
    import torch

#: The docs export the pipeline's default numpy frames with ``export_to_video``: ``(frame * 255).astype(np.uint8)``.
UINT8_CONVERSION = "truncate"

#: Short keys for the released checkpoints (the docs' list; plain weight files, as text-to-video's).
MODELS = {
    "skyreels-v2-df-1.3b-540p": skyreels_v2.plain_weights("Skywork/SkyReels-V2-DF-1.3B-540P-Diffusers"),
    "skyreels-v2-df-14b-540p": skyreels_v2.plain_weights("Skywork/SkyReels-V2-DF-14B-540P-Diffusers"),
    # 720P: height 720, width 1280, base_num_frames 121
    "skyreels-v2-df-14b-720p": skyreels_v2.plain_weights("Skywork/SkyReels-V2-DF-14B-720P-Diffusers"),
}


def latent_frames(frames: int) -> int:
    """Latent frames of ``frames`` video frames: the first, then one per 4 (the Wan VAE)."""
    return (frames - 1) // wan.TEMPORAL_FACTOR + 1


def windows(num_frames: int, base_num_frames: int, overlap_history: int | None) -> list[int]:
    """The latent frames of each window the pipeline denoises, in order (its ``__call__`` and ``prepare_latents``):
    one window up to ``base_num_frames``, past it windows of that size overlapping by ``overlap_history``, the last
    one shorter."""
    total, base = latent_frames(num_frames), latent_frames(base_num_frames)
    if overlap_history is None or num_frames <= base_num_frames:
        return [total]
    overlap = latent_frames(overlap_history)
    count = 1 + (total - base - 1) // (base - overlap) + 1
    return [base] + [min(total - (step * (base - overlap) + overlap) + overlap, base) for step in range(1, count)]


class Params(skyreels_v2.Params):
    """The call parameters of ``SkyReelsV2DiffusionForcingPipeline``: text-to-video's, the diffusion-forcing schedule
    and the pipeline's own ``fps``."""

    num_frames: int = Field(97, ge=1, le=4097, description="frames to generate, 4k+1; past base_num_frames, window by window")
    base_num_frames: int = Field(
        97, ge=1, le=1025, description="frames of one window, the model's context (97 for 540P models, 121 for 720P)"
    )
    overlap_history: int | None = Field(
        None,
        ge=1,
        le=1025,
        validate_default=True,  # so that a long video without it is refused
        description="frames a window shares with the previous one; needed past base_num_frames (17 or 37 recommended)",
    )
    addnoise_condition: float = Field(
        0.0, ge=0.0, le=1000.0, description="noise added to the shared frames of a long video (20 recommended, below 50)"
    )
    ar_step: int = Field(0, ge=0, le=1000, description="steps each block lags the one before: 0 synchronous, 5 in the docs")
    causal_block_size: int | None = Field(
        None,
        ge=1,
        le=256,
        validate_default=True,  # so that frame counts it does not divide are refused when it is left unset too
        description="latent frames per block (5 with ar_step 5 in the docs); default: the transformer's (1)",
    )
    fps: int = Field(
        skyreels_v2.FPS,
        ge=1,
        le=240,
        # left out of the params a job id hashes at its default, as every family's fps (base.fps_field)
        exclude_if=lambda value: value == skyreels_v2.FPS,
        description="frames per second: the mp4's rate and the pipeline's fps (the 1.3B model tells 16 from others)",
    )

    @field_validator("overlap_history")
    @classmethod
    def _long_videos_overlap(cls, overlap: int | None, info: ValidationInfo) -> int | None:
        frames, base = info.data.get("num_frames"), info.data.get("base_num_frames")
        if frames is not None and base is not None and frames > base and overlap is None:
            raise ValueError(
                f"num_frames={frames} is past base_num_frames={base}: the video is made window by window, and each "
                "window overlaps the last; set overlap_history (17 or 37 recommended)"
            )
        if overlap is not None and base is not None and overlap >= base:
            raise ValueError(f"must be below base_num_frames={base}: a window overlaps the last by part of itself")
        return overlap

    @field_validator("causal_block_size")
    @classmethod
    def _whole_blocks(cls, block: int | None, info: ValidationInfo) -> int | None:
        frames, base = info.data.get("num_frames"), info.data.get("base_num_frames")
        if block is None or frames is None or base is None or "overlap_history" not in info.data:
            return block
        sizes = windows(frames, base, info.data["overlap_history"])
        if any(size % block for size in sizes):
            raise ValueError(
                f"must divide the latent frames of every window ({', '.join(map(str, sizes))}; (frames - 1) / 4 + 1): "
                "the pipeline denoises whole blocks only and leaves the frames past the last one as noise"
            )
        return block


def load(options: LoadOptions, device: str):
    """The pipeline, on ``device``, ready to call: the VAE in float32 as the docs load it."""
    from diffusers import SkyReelsV2DiffusionForcingPipeline

    pipe = from_pretrained(SkyReelsV2DiffusionForcingPipeline, options, vae=wan.load_vae(options))
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


@contextmanager
def loaded_blocks(transformer):
    """The transformer's ``num_frame_per_block`` back as loaded after a call that set ``causal_block_size``."""
    loaded = transformer.config.num_frame_per_block
    try:
        yield
    finally:
        transformer.register_to_config(num_frame_per_block=loaded)


def render(pipe, params: Params, generator: torch.Generator, device: str) -> Rendered:
    """Render one video; the denoising loop (every window) and the VAE decode are timed apart."""
    # 1. encode the prompts and denoise with the job's scheduler shift, the job's generator as torch's global RNG;
    #    stop at the latents
    watch = Stopwatch(device)
    with (
        wan.flow_shift(pipe, params.flow_shift) as scheduler,
        loaded_blocks(pipe.transformer),
        global_generator(generator, device) as stream,
    ):
        latents = pipe(
            prompt=params.prompt,
            negative_prompt=params.negative_prompt,
            height=params.height,
            width=params.width,
            num_frames=params.num_frames,
            num_inference_steps=params.num_inference_steps,
            guidance_scale=params.guidance_scale,
            max_sequence_length=params.max_sequence_length,
            overlap_history=params.overlap_history,
            addnoise_condition=params.addnoise_condition,
            base_num_frames=params.base_num_frames,
            ar_step=params.ar_step,
            causal_block_size=params.causal_block_size,
            fps=params.fps,
            generator=stream,
            output_type="latent",
        ).frames
    denoise_s = watch.lap()

    # 2. decode as the pipeline does after its loop (Wan's decode, line for line)
    frames = wan.decode(pipe, latents)
    return rendered_videos(pipe, watch, denoise_s, [frames], UINT8_CONVERSION, params.fps, scheduler)[0]


def build_tiny(path: Path) -> None:
    """Save a random-weight SkyReels-V2 diffusion-forcing pipeline (the 1.3B's fps embedding) in the real layout."""
    from diffusers import SkyReelsV2DiffusionForcingPipeline

    from ._tiny import save_with_fp16_variant

    tokenizer, text_encoder = t5_text_parts(umt5=True)
    pipe = SkyReelsV2DiffusionForcingPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        transformer=skyreels_v2.tiny_transformer(inject_sample_info=True),
        vae=wan.tiny_vae(),
        scheduler=skyreels_v2.tiny_scheduler(),
    )
    save_with_fp16_variant(pipe, path)  # fp32 configs: the docs' plain from_pretrained(folder) loads float32


FAMILY = Family(
    name="skyreels-v2-df",
    pipeline_class="SkyReelsV2DiffusionForcingPipeline",
    description="SkyReels-V2 diffusion forcing: text -> long video, frames denoised in staggered blocks, window by window",
    models=MODELS,
    params=Params,
    load=load,
    render=one_video_per_call(render),
    build_tiny=build_tiny,
    uint8_conversion=UINT8_CONVERSION,
    # as the docs load it; `dtype: auto` on a GPU means this
    gpu_dtype="bfloat16",
)
