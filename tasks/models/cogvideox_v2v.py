"""CogVideoX 2B / 5B video-to-video (``CogVideoXVideoToVideoPipeline``): a video + prompt -> the video re-rendered
from ``strength``.

Loaded and called as in the diffusers docs (the ``CogVideoXVideoToVideoPipeline`` docstring)::

    # Models: "THUDM/CogVideoX-2b" or "THUDM/CogVideoX-5b"
    pipe = CogVideoXVideoToVideoPipeline.from_pretrained("THUDM/CogVideoX-5b", torch_dtype=torch.bfloat16)
    pipe.scheduler = CogVideoXDPMScheduler.from_config(pipe.scheduler.config)
    video = pipe(video=input_video, prompt=prompt, strength=0.8, guidance_scale=6, num_inference_steps=50).frames[0]
    export_to_video(video, "output.mp4", fps=8)

The checkpoints are the text-to-video repos, whose model_index.json names ``CogVideoXPipeline``:
the keys here load them as video-to-video, and the tiny checkpoint is the ``cogvideox`` family's
(``tiny_base``). ``from_pretrained`` in the job's dtype (bfloat16 for 5B in the docs; 2B in
float16, as the text-to-video docs load it), then the docs' scheduler swap to
``CogVideoXDPMScheduler`` from the repo's config (a row may pick another: ``scheduler:
cogvideox-ddim`` is the checkpoint's own). The pipeline resizes every input frame to height x
width (default: the transformer's 480 x 720; no crop, so another aspect is stretched); its other
defaults are the pipeline's (strength 0.8, 50 steps, guidance 6). The docs' frames are PIL
images, exported at 8 fps (``fps``). One video per call: the pipeline encodes one input video,
whatever the number of prompts.

A manifest chains it after another row with ``video: "@<row id>"`` (a CogVideoX text-to-video
row, say, whose frames it re-renders); a chained row reads its source's lossless frames.

Refused here, where the pipeline would go on silently (or fail only once the job runs):
- a video whose frame count is not 8k or 8k+1: the VAE encodes the frames after the first by 4
  and decodes an odd number of latent frames to 4k+1 frames, an even number to 4k, so any other
  count comes out longer or shorter (12 frames come out as 9, 13 as 16: ``cogvideox``'s rule);
  ``num_frames`` takes the video's first frames explicitly;
- a ``strength`` x steps that runs no denoising step (``int(steps * strength)`` of them run);
- ``guidance_cutoff`` (no ``batched_guidance``): the pipeline skips the first steps of the
  schedule for ``strength`` without telling the scheduler, so the cutoff would be placed in the
  full schedule, not in the steps run;
- what text-to-video refuses per checkpoint (``cogvideox.check_call``): ``eta`` with a CogVideoX
  scheduler (which ignores it), and a ``max_sequence_length`` other than 226 for 2B's sincos
  positional embeddings; sizes are multiples of 16 (VAE 8x, then 2x2 patches).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field, field_validator

from . import cogvideox
from .base import (
    LoadOptions, Rendered, Stopwatch, VideoParams, from_pretrained, rendered_videos, strength_runs_a_step, video_field,
)
from .family import Family, one_video_per_call

if TYPE_CHECKING:
    import torch

#: The docs' frames are PIL images (the pipeline's default output): ``numpy_to_pil`` rounds.
UINT8_CONVERSION = "round"

#: Short keys for the released checkpoints: the text-to-video repos, loaded as video-to-video.
MODELS = {
    # the docstring loads 5b in bfloat16; 2b in float16 as the text-to-video docs do (no *.fp16.* files in either)
    "cogvideox-2b-v2v": {"source": "THUDM/CogVideoX-2b", "dtype": "float16", "variant": "none"},
    "cogvideox-5b-v2v": {"source": "THUDM/CogVideoX-5b", "dtype": "bfloat16", "variant": "none"},
}

_T2V = cogvideox.Params.model_fields


class Params(VideoParams):
    """The call parameters of ``CogVideoXVideoToVideoPipeline``, with its own defaults, and how many of the video's
    frames to take. The fields it shares with text-to-video are ``cogvideox``'s."""

    video: Path = video_field(
        "input video (a file, or '@<row id>' for another row's output); the pipeline resizes it to width x height"
    )
    prompt: str = Field(min_length=1, description="what the re-rendered video shows (CogVideoX likes long prompts)")
    negative_prompt: str | None = _T2V["negative_prompt"]
    height: int | None = _T2V["height"]
    width: int | None = _T2V["width"]
    num_frames: int | None = Field(
        None,
        ge=1,
        le=1025,
        description="take the video's first num_frames frames (8k or 8k+1); default: all of them, which must be 8k or 8k+1",
    )
    strength: float = Field(0.8, ge=0.0, le=1.0, description="how far the video is re-noised: 0 keeps it, 1 ignores it")
    num_inference_steps: int = Field(
        50,
        ge=1,
        le=1000,
        validate_default=True,  # so that a strength too low for the default steps is refused
        description="denoising steps at strength 1; int(steps * strength) of them are run",
    )
    guidance_scale: float = _T2V["guidance_scale"]
    use_dynamic_cfg: bool = _T2V["use_dynamic_cfg"]
    eta: float = _T2V["eta"]
    max_sequence_length: int = _T2V["max_sequence_length"]
    fps: int = _T2V["fps"]

    @field_validator("num_frames")
    @classmethod
    def _num_frames_8k(cls, value: int | None) -> int | None:
        return cogvideox.check_num_frames(value)

    _runs_a_step = strength_runs_a_step()


def load(options: LoadOptions, device: str):
    """The pipeline, on ``device``, ready to call, with the docs' ``CogVideoXDPMScheduler``."""
    from diffusers import CogVideoXDPMScheduler, CogVideoXVideoToVideoPipeline

    pipe = from_pretrained(CogVideoXVideoToVideoPipeline, options)
    pipe.scheduler = CogVideoXDPMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def input_frames(params: Params) -> list:
    """The video's frames the VAE encodes, as PIL images: its first ``num_frames``, or all of them if 8k or 8k+1."""
    from ..video import read_input_video

    video, _ = read_input_video(params.video, params.num_frames, cogvideox.check_num_frames)
    return video


def render(pipe, params: Params, generator: torch.Generator, device: str) -> Rendered:
    """Render one video; input encoding + denoising and the VAE decode are timed apart."""
    video = input_frames(params)
    cogvideox.check_call(pipe, params)

    # 1. encode the video (its latents sampled from the generator) and the prompt, re-noise from strength, denoise;
    #    stop at the latents
    watch = Stopwatch(device)
    latents = pipe(
        video=video,
        prompt=params.prompt,
        negative_prompt=params.negative_prompt,
        height=params.height,
        width=params.width,
        num_inference_steps=params.num_inference_steps,
        strength=params.strength,
        guidance_scale=params.guidance_scale,
        use_dynamic_cfg=params.use_dynamic_cfg,
        eta=params.eta,
        max_sequence_length=params.max_sequence_length,
        generator=generator,
        output_type="latent",
    ).frames
    denoise_s = watch.lap()

    # 2. decode exactly as the pipeline does after its loop (CogVideoX 1.0: no padding frames to drop)
    frames = cogvideox.decode(pipe, latents, len(video))
    return rendered_videos(pipe, watch, denoise_s, [frames], UINT8_CONVERSION, params.fps)[0]


def build_tiny(path: Path) -> None:
    """The shared tiny checkpoint (``tiny_base``): the ``cogvideox`` family's, built by its function."""
    cogvideox.build_tiny(path)


FAMILY = Family(
    name="cogvideox-v2v",
    pipeline_class="CogVideoXVideoToVideoPipeline",
    description="CogVideoX 2B / 5B: video (+ text) -> video, re-rendered from strength; chains after another row's video",
    models=MODELS,
    params=Params,
    load=load,
    render=one_video_per_call(render),
    build_tiny=build_tiny,
    uint8_conversion=UINT8_CONVERSION,
    # no batched_guidance, though the pipeline batches [unconditional, conditional]: ``guidance_cutoff`` places a step
    # by the scheduler's begin_index, which this pipeline's strength leaves unset (it slices the schedule itself), so
    # a cutoff would count the steps a strength skips; refused instead (tasks.denoiser_hooks)
    # the text-to-video repos' layout, loaded as CogVideoXVideoToVideoPipeline (their model_index.json names
    # CogVideoXPipeline)
    tiny_base="cogvideox",
)
