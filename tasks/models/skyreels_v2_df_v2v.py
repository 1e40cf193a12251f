"""SkyReels-V2 diffusion forcing, video-to-video (``SkyReelsV2DiffusionForcingVideoToVideoPipeline``): extends a
video, its last ``overlap_history`` frames the clean history the new frames are denoised after.

Loaded and called as on the diffusers docs page (``api/pipelines/skyreels_v2``, "Video-to-Video Generation")::

    vae = AutoencoderKLWan.from_pretrained(model_id, subfolder="vae", torch_dtype=torch.float32, device_map="cuda")
    pipeline = SkyReelsV2DiffusionForcingVideoToVideoPipeline.from_pretrained(
        model_id, vae=vae, torch_dtype=torch.bfloat16, device_map="cuda")
    flow_shift = 5.0  # 8.0 for T2V, 5.0 for I2V
    pipeline.scheduler = UniPCMultistepScheduler.from_config(pipeline.scheduler.config, flow_shift=flow_shift)
    video = load_video("input_video.mp4")
    output = pipeline(video=video, prompt=prompt, height=720, width=1280, guidance_scale=5.0, overlap_history=17,
                      num_inference_steps=30, num_frames=257, base_num_frames=121).frames[0]
    export_to_video(output, "video.mp4", fps=24, quality=8)
    # Total frames will be the number of frames of the given video + 257

(The docstring's own example passes no video and ``overlap_history=None``, which fails in the
pipeline: the page's is the recipe.) The checkpoints are the diffusion-forcing repos, loaded as
video-to-video; the tiny checkpoint is the ``skyreels-v2-df`` family's (``tiny_base``).
Everything else is text-to-video diffusion forcing's (``skyreels_v2_df``: the VAE alone in
float32, ``flow_shift``, ``fps`` conditioning and the mp4's rate, the job's generator as torch's
global RNG, which ``addnoise_condition``'s noise on the history frames is drawn from), with the
pipeline's guidance 6.0.

What the pipeline renders: every frame of the video, resized to height x width (no crop), then
``num_frames`` generated frames, the first ``overlap_history`` of which re-render the video's last
ones (the history, encoded by the VAE and held clean); a video past ``base_num_frames`` goes on
window by window, as text-to-video's. The mp4 holds the video's frames + ``num_frames``. A
manifest chains it after another row with ``video: "@<row id>"`` (a diffusion-forcing
text-to-video row, say), reading its source's lossless frames. One video per call.

Refused here, where the pipeline would go on silently or fail only once the job runs:
- ``overlap_history`` unset (the pipeline fails on it), not 4k+1 (the VAE encodes the first 4k+1
  of the video's last frames and drops the rest: the new frames would follow an earlier frame
  than the video's last), not below ``num_frames`` (no new frame: the pipeline fails) or
  ``base_num_frames``; a video shorter than it, when the job reads the video;
- ``num_frames`` not 4k+1: the pipeline rounds it (its default, 120, to 121, which is this
  family's default);
- ``causal_block_size`` not dividing the history's latent frames (the pipeline cuts the history
  to whole blocks, with a warning only) or every window's (the frames past the last block stay
  the noise they started as).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field, ValidationInfo, field_validator

from . import skyreels_v2, skyreels_v2_df, wan
from .base import (
    LoadOptions, Rendered, Stopwatch, VideoParams, check_packed_frames, from_pretrained, global_generator,
    rendered_videos, video_field,
)
from .family import Family, one_video_per_call

if TYPE_CHECKING:
    import numpy as np
    import torch

#: The docs export the pipeline's default numpy frames with ``export_to_video``: ``(frame * 255).astype(np.uint8)``.
UINT8_CONVERSION = "truncate"

#: Short keys for the released checkpoints: the diffusion-forcing repos (the docstring's list), loaded as video-to-video.
MODELS = {
    "skyreels-v2-df-v2v-1.3b-540p": skyreels_v2.plain_weights("Skywork/SkyReels-V2-DF-1.3B-540P-Diffusers"),
    "skyreels-v2-df-v2v-14b-540p": skyreels_v2.plain_weights("Skywork/SkyReels-V2-DF-14B-540P-Diffusers"),
    # 720P: height 720, width 1280, base_num_frames 121 (the docs page's example)
    "skyreels-v2-df-v2v-14b-720p": skyreels_v2.plain_weights("Skywork/SkyReels-V2-DF-14B-720P-Diffusers"),
}

_DF = skyreels_v2_df.Params.model_fields
_FRAMES = "SkyReels-V2 (Wan)"


def check_frames(value: int) -> int:
    return check_packed_frames(value, wan.TEMPORAL_FACTOR, _FRAMES)


class Params(VideoParams):
    """The call parameters of ``SkyReelsV2DiffusionForcingVideoToVideoPipeline``, with its own defaults (``num_frames``
    as the pipeline rounds its 120), and the docs' scheduler shift; the fields it shares with text-to-video diffusion
    forcing are ``skyreels_v2_df``'s."""

    video: Path = video_field(
        "the video to extend (a file, or '@<row id>' for another row's output); resized to width x height, it opens "
        "the output"
    )
    prompt: str = Field(min_length=1, description="what happens next in the video")
    negative_prompt: str | None = _DF["negative_prompt"]
    height: int = _DF["height"]
    width: int = _DF["width"]
    num_frames: int = Field(
        121,
        ge=1,
        le=4097,
        description="frames generated after the video, 4k+1, its last overlap_history frames re-rendered first "
        "(the mp4: the video's frames + num_frames); the pipeline's 120 rounds to 121",
    )
    num_inference_steps: int = _DF["num_inference_steps"]
    guidance_scale: float = _DF["guidance_scale"]
    max_sequence_length: int = _DF["max_sequence_length"]
    flow_shift: float | None = _DF["flow_shift"]
    base_num_frames: int = _DF["base_num_frames"]
    overlap_history: int = Field(
        ge=1,
        le=1025,
        description="the video's last frames the new ones continue from, 4k+1 (17 or 37 recommended); also the "
        "overlap of windows past base_num_frames",
    )
    addnoise_condition: float = _DF["addnoise_condition"]
    ar_step: int = _DF["ar_step"]
    causal_block_size: int | None = Field(
        None,
        ge=1,
        le=256,
        validate_default=True,  # so that frame counts it does not divide are refused when it is left unset too
        description="latent frames per block (5 with ar_step 5); default: the transformer's (1)",
    )
    fps: int = _DF["fps"]

    @field_validator("num_frames", "base_num_frames")
    @classmethod
    def _4k_plus_1(cls, value: int, info: ValidationInfo) -> int:
        return check_frames(value) if info.field_name == "num_frames" else value

    @field_validator("overlap_history")
    @classmethod
    def _history(cls, overlap: int, info: ValidationInfo) -> int:
        check_frames(overlap)
        frames, base = info.data.get("num_frames"), info.data.get("base_num_frames")
        if frames is not None and overlap >= frames:
            raise ValueError(
                f"must be below num_frames={frames}: num_frames counts the history re-rendered first, so no new frame "
                "would be generated (the pipeline fails)"
            )
        if base is not None and overlap >= base:
            raise ValueError(f"must be below base_num_frames={base}: a window holds the history and new frames")
        return overlap

    @field_validator("causal_block_size")
    @classmethod
    def _whole_blocks(cls, block: int | None, info: ValidationInfo) -> int | None:
        frames, base, overlap = (info.data.get(name) for name in ("num_frames", "base_num_frames", "overlap_history"))
        if block is None or frames is None or base is None or overlap is None:
            return block
        history = skyreels_v2_df.latent_frames(overlap)
        if history % block:
            raise ValueError(
                f"must divide the history's {history} latent frames ((overlap_history - 1) / 4 + 1): the pipeline cuts "
                "the history to whole blocks, so the new frames would not follow the video's last ones"
            )
        sizes = skyreels_v2_df.windows(frames, base, overlap)
        if any(size % block for size in sizes):
            raise ValueError(
                f"must divide the latent frames of every window ({', '.join(map(str, sizes))}; (frames - 1) / 4 + 1): "
                "the pipeline denoises whole blocks only and leaves the frames past the last one as noise"
            )
        return block


def load(options: LoadOptions, device: str):
    """The pipeline, on ``device``, ready to call: the VAE in float32 as the docs load it."""
    from diffusers import SkyReelsV2DiffusionForcingVideoToVideoPipeline

    pipe = from_pretrained(SkyReelsV2DiffusionForcingVideoToVideoPipeline, options, vae=wan.load_vae(options))
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def input_frames(params: Params) -> list:
    """The video's frames as PIL images, all of them; refused if fewer than the history it continues from."""
    from ..video import read_video

    video, _ = read_video(params.video)
    if len(video) < params.overlap_history:
        raise ValueError(
            f"the video {params.video} has {len(video)} frames, fewer than overlap_history={params.overlap_history}: "
            "the pipeline would continue from all of them as a shorter history; lower overlap_history"
        )
    return video


def decode(pipe, video: list, latents: torch.Tensor, height: int, width: int) -> np.ndarray:
    """Float frames in [0, 1], (frames, H, W, 3): the pipeline's decode after its loop, verbatim: the input video as
    it preprocessed it, then the decoded latents (the history re-rendered, then the new frames)."""
    import torch
    from diffusers.utils.torch_utils import get_module_execution_device

    vae = pipe.vae
    with torch.no_grad():
        device = get_module_execution_device(vae)
        video_original = pipe.video_processor.preprocess_video(video, height=height, width=width).to(
            device, dtype=torch.float32
        )
        latents = latents.to(device, dtype=vae.dtype)
        latents_mean = (
            torch.tensor(vae.config.latents_mean).view(1, vae.config.z_dim, 1, 1, 1).to(latents.device, latents.dtype)
        )
        latents_std = 1.0 / torch.tensor(vae.config.latents_std).view(1, vae.config.z_dim, 1, 1, 1).to(
            latents.device, latents.dtype
        )
        latents = latents / latents_std + latents_mean
        video_generated = vae.decode(latents, return_dict=False)[0]
        frames = torch.cat([video_original, video_generated.to(video_original.dtype)], dim=2)
        return pipe.video_processor.postprocess_video(frames, output_type="np")[0]


def render(pipe, params: Params, generator: torch.Generator, device: str) -> Rendered:
    """Render one video; the history's encoding with the denoising loop (every window), then the decode, timed apart."""
    video = input_frames(params)

    # 1. encode the prompts and the history, denoise with the job's scheduler shift, the job's generator as torch's
    #    global RNG; stop at the latents
    watch = Stopwatch(device)
    with (
        wan.flow_shift(pipe, params.flow_shift) as scheduler,
        skyreels_v2_df.loaded_blocks(pipe.transformer),
        global_generator(generator, device) as stream,
    ):
        latents = pipe(
            video=video,
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

    # 2. decode as the pipeline does after its loop: the video's frames, then the generated ones
    frames = decode(pipe, video, latents, params.height, params.width)
    return rendered_videos(pipe, watch, denoise_s, [frames], UINT8_CONVERSION, params.fps, scheduler)[0]


def build_tiny(path: Path) -> None:
    """The shared tiny checkpoint (``tiny_base``): the ``skyreels-v2-df`` family's, built by its function."""
    skyreels_v2_df.build_tiny(path)


FAMILY = Family(
    name="skyreels-v2-df-v2v",
    pipeline_class="SkyReelsV2DiffusionForcingVideoToVideoPipeline",
    description="SkyReels-V2 diffusion forcing: video (+ text) -> the video extended by num_frames; chains after a row",
    models=MODELS,
    params=Params,
    load=load,
    render=one_video_per_call(render),
    build_tiny=build_tiny,
    uint8_conversion=UINT8_CONVERSION,
    # the diffusion-forcing repos' layout, loaded as video-to-video (their model_index.json names the text-to-video class)
    tiny_base="skyreels-v2-df",
    # as the docs load it; `dtype: auto` on a GPU means this
    gpu_dtype="bfloat16",
    # frames_param stays num_frames: the frames denoised (the mp4 holds the input video's frames too)
)
