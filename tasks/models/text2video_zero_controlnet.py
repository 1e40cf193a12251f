"""Text2Video-Zero with pose or edge control: a control video + prompt -> video, an SD 1.5 ControlNet.

Loaded and called as in the diffusers docs (``api/pipelines/text_to_video_zero``, "Text-To-Video
with Pose Control" and "Text-To-Video with Edge Control"): ``ControlNetModel.from_pretrained``
(openpose or canny) and ``StableDiffusionControlNetPipeline.from_pretrained(sd15,
controlnet=controlnet)``, both in float16; Text2Video-Zero's ``CrossFrameAttnProcessor(batch_size=2)``
set on the UNet and on the ControlNet (every frame's self-attention looks at the first frame); one
latent ``randn(1, 4, h/8, w/8)`` repeated for every frame; the prompt repeated per frame; the
control frames as ``image=``; the whole clip in one call. The base and the ControlNet are separate
hub repos, so the ControlNet is a component: a model key names both, a row may swap it.

Where this differs from the docs' code, and why:
- the docs import the processor from ``diffusers.pipelines.text_to_video_synthesis``; in diffusers
  0.42.1 that module lives under ``diffusers.pipelines.deprecated`` (the old path fails).
- the docs draw the shared latent from torch's global RNG (``torch.randn(..., device="cuda")``);
  here it is drawn from the job's generator (same shape and dtype), so a seed means one video.
- ``guidance_scale`` must be > 1: ``batch_size=2`` tells the processor that the UNet sees the
  frames twice (unconditional, conditional); without guidance it would split the one batch of
  frames in two and anchor half of them on the wrong frame (or fail on an odd frame count).
- the control images come from a video file: ``control: frames`` (or ``pose``) takes its frames
  as they are (the docs' pose clip already holds OpenPose skeletons; pose *estimation* needs a
  model this project does not ship), ``control: canny`` computes Canny edges of each frame first
  (the ControlNet docs use ``cv2.Canny(image, 100, 200)``; OpenCV is not installed here, so
  :func:`canny_edges` is a numpy approximation of it).
- the decode after the loop is done here (``output_type="latent"`` stops before it), timed apart:
  the pipeline's own steps, VAE decode, safety checker, postprocess.

The output is written at the input video's frame rate: its frames are the input's, one for one
(the docs write their 8 frames at ``fps=4``, the rate Text2Video-Zero's own code samples its
inputs at: a row sets ``fps: 4`` for the docs' file).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, ValidationInfo, field_validator

from ..video import output_size, read_video
from .animatediff import revision_kwargs
from .base import (
    ResizedVideoParams,
    LoadOptions,
    Rendered,
    Stopwatch,
    fps_field,
    from_pretrained,
    rendered_videos,
    torch_dtype,
    video_field,
)
from .family import Component, Family, one_video_per_call

if TYPE_CHECKING:
    import numpy as np
    import torch

#: The docs write the pipeline's default PIL frames (``imageio.mimsave``): ``numpy_to_pil`` rounds.
UINT8_CONVERSION = "round"


#: Short keys for the checkpoints the docs pair (the docs still name runwayml/stable-diffusion-v1-5,
#: which moved to stable-diffusion-v1-5/stable-diffusion-v1-5).
MODELS = {
    "t2v-zero-pose": {
        "source": "stable-diffusion-v1-5/stable-diffusion-v1-5",
        "controlnet": "lllyasviel/sd-controlnet-openpose",
    },
    "t2v-zero-canny": {
        "source": "stable-diffusion-v1-5/stable-diffusion-v1-5",
        "controlnet": "lllyasviel/sd-controlnet-canny",
    },
}


#: The clip is one batch (twice that with guidance) and the docs' processor materialises every
#: self-attention map: memory grows with every frame. The docs use 8 frames.
MAX_FRAMES = 64


class ControlledParams(ResizedVideoParams):
    """Base of the ``Params`` of a family that takes a control video (its ``control``, ``canny_*`` and
    ``control_guidance_*`` fields): the checks their values need together."""

    # Field validators, not a model validator: the manifest reports an error under the key it names.
    @field_validator("canny_low", "canny_high", "canny_sigma", check_fields=False)
    @classmethod
    def _canny_settings_need_canny(cls, value: float, info: ValidationInfo) -> float:
        default = cls.model_fields[info.field_name].default
        if value != default and info.data.get("control", "canny") != "canny":
            raise ValueError(f"{info.field_name} only applies with `control: canny` (control is {info.data['control']!r})")
        return value

    @field_validator("canny_high", check_fields=False)
    @classmethod
    def _thresholds_in_order(cls, high: int, info: ValidationInfo) -> int:
        low = info.data.get("canny_low")
        if low is not None and low > high:
            raise ValueError(f"canny_low={low} is above canny_high={high}; the low threshold must be the smaller")
        return high

    @field_validator("control_guidance_end", check_fields=False)
    @classmethod
    def _control_window(cls, end: float, info: ValidationInfo) -> float:
        start = info.data.get("control_guidance_start")
        if start is not None and start >= end:
            raise ValueError(f"control_guidance_start={start} must be below control_guidance_end={end} (the pipeline's rule)")
        return end


class Params(ControlledParams):
    """The call parameters of ``StableDiffusionControlNetPipeline``, with its own defaults, and the control video."""

    prompt: str = Field(min_length=1, description="what the video shows (the same prompt for every frame)")
    video: Path = video_field(
        "the video the control images come from, one per frame (a file, or '@<row id>' for another row's output)"
    )
    control: Literal["frames", "pose", "canny"] = Field(
        "frames",
        description="frames/pose: the video already holds the control images (pose skeletons, edges); "
        "canny: Canny edges of each frame",
    )
    canny_low: int = Field(100, ge=0, le=2040, description="control: canny only: lower hysteresis threshold (cv2.Canny's)")
    canny_high: int = Field(
        200,
        ge=0,
        le=2040,
        validate_default=True,  # so that a canny_low above the default high is refused
        description="control: canny only: upper threshold; edges start above it (cv2.Canny's)",
    )
    canny_sigma: float = Field(
        0.0, ge=0.0, le=10.0, description="control: canny only: Gaussian blur (px) before the edges; 0: none, as cv2.Canny"
    )
    num_frames: int | None = Field(
        None, ge=1, le=MAX_FRAMES, description=f"use the video's first N frames; default: all (at most {MAX_FRAMES})"
    )
    num_inference_steps: int = Field(50, ge=1, le=1000, description="denoising steps")
    guidance_scale: float = Field(
        7.5,
        gt=1.0,
        le=100.0,
        description="classifier-free guidance; must be > 1: the cross-frame attention expects the guided batch",
    )
    negative_prompt: str | None = Field(None, description="what to steer away from; default: the empty prompt")
    eta: float = Field(0.0, ge=0.0, le=1.0, description="DDIM eta (scheduler: ddim only): 0 is deterministic DDIM")
    controlnet_conditioning_scale: float = Field(
        1.0, ge=0.0, le=10.0, description="weight of the ControlNet's residuals; 0 ignores the control"
    )
    control_guidance_start: float = Field(0.0, ge=0.0, le=1.0, description="fraction of the steps where control starts")
    control_guidance_end: float = Field(
        1.0,
        ge=0.0,
        le=1.0,
        validate_default=True,  # so that a start past the default end is refused
        description="fraction of the steps where control stops; > control_guidance_start",
    )
    fps: int | None = fps_field(None)


def load(options: LoadOptions, device: str):
    """The pipeline, on ``device``, ready to call."""
    from diffusers import ControlNetModel, StableDiffusionControlNetPipeline
    from diffusers.pipelines.deprecated.text_to_video_synthesis.pipeline_text_to_video_zero import (
        CrossFrameAttnProcessor,
    )
    from diffusers.utils import logging as diffusers_logging

    # 1. the ControlNet (no weight variant, as the docs load it), then the base with it
    diffusers_logging.disable_progress_bar()
    source, revision = options.component("controlnet")
    controlnet = ControlNetModel.from_pretrained(source, dtype=torch_dtype(options.dtype), **revision_kwargs(source, revision))
    pipe = from_pretrained(StableDiffusionControlNetPipeline, options, controlnet=controlnet)
    # 2. cross-frame attention in both networks; batch_size=2: unconditional and conditional halves
    pipe.unet.set_attn_processor(CrossFrameAttnProcessor(batch_size=2))
    pipe.controlnet.set_attn_processor(CrossFrameAttnProcessor(batch_size=2))
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def render(pipe, params: Params, generator: torch.Generator, device: str) -> Rendered:
    """Render one video; the denoising (prompt and control encoding included) and the decode are timed apart."""
    import numpy as np
    import torch
    from diffusers.utils.torch_utils import randn_tensor
    from PIL import Image

    # 1. the control frames: the video's first num_frames; frames/pose go in as they are (the
    #    pipeline resizes them to height x width), Canny edges are found at the output size, so
    #    that they stay one pixel thin
    frames, fps = read_video(params.video, params.num_frames, MAX_FRAMES)
    width, height = output_size(frames[0].size, params.width, params.height, pipe.vae_scale_factor)
    if params.control == "canny":
        frames = [frame.resize((width, height)) if frame.size != (width, height) else frame for frame in frames]
        edges = (canny_edges(np.asarray(frame), params.canny_low, params.canny_high, params.canny_sigma) for frame in frames)
        frames = [Image.fromarray(np.stack([edge] * 3, axis=-1)) for edge in edges]
    count = len(frames)

    # 2. one initial latent for every frame, as the docs fix it (drawn from the job's generator)
    watch = Stopwatch(device)
    shape = (1, pipe.unet.config.in_channels, height // pipe.vae_scale_factor, width // pipe.vae_scale_factor)
    latents = randn_tensor(shape, generator=generator, device=torch.device(device), dtype=pipe.unet.dtype)
    latents = latents.repeat(count, 1, 1, 1)

    # 3. encode the prompts and denoise all frames in one batch; stop at the latents
    negative = [params.negative_prompt] * count if params.negative_prompt is not None else None
    latents = pipe(
        prompt=[params.prompt] * count,
        image=frames,
        height=height,
        width=width,
        num_inference_steps=params.num_inference_steps,
        guidance_scale=params.guidance_scale,
        negative_prompt=negative,  # a list, as the prompt is: the pipeline refuses a str beside a list
        eta=params.eta,
        generator=generator,
        latents=latents,
        controlnet_conditioning_scale=params.controlnet_conditioning_scale,
        control_guidance_start=params.control_guidance_start,
        control_guidance_end=params.control_guidance_end,
        output_type="latent",
    ).images
    denoise_s = watch.lap()

    # 4. decode exactly as the pipeline does after its loop
    video = decode_frames(pipe, latents, generator)
    return rendered_videos(pipe, watch, denoise_s, [video], UINT8_CONVERSION, params.fps or fps)[0]


# -- helpers shared with the Video Instruct-Pix2Pix family ----------------------------------------


def decode_frames(pipe, latents: torch.Tensor, generator: torch.Generator | None = None) -> np.ndarray:
    """Float frames (frames, H, W, 3) in [0, 1]: the decode after the loop of ``StableDiffusionControlNetPipeline``
    (which hands the VAE the call's generator) and of ``StableDiffusionInstructPix2PixPipeline`` (which does not:
    ``generator=None``; an AutoencoderKL draws nothing): VAE, safety checker (it blacks out flagged frames),
    postprocess without denormalising those."""
    import torch

    with torch.no_grad():
        image = pipe.vae.decode(latents / pipe.vae.config.scaling_factor, return_dict=False, generator=generator)[0]
        image, nsfw = pipe.run_safety_checker(image, pipe._execution_device, prompt_dtype(pipe))
    denormalize = [True] * len(image) if nsfw is None else [not flagged for flagged in nsfw]
    return pipe.image_processor.postprocess(image, output_type="np", do_denormalize=denormalize)


def prompt_dtype(pipe) -> torch.dtype:
    """The dtype the pipeline's prompt embeddings have (it hands that to the safety checker)."""
    return pipe.text_encoder.dtype if pipe.text_encoder is not None else pipe.unet.dtype


def canny_edges(image: np.ndarray, low: float, high: float, sigma: float = 0.0) -> np.ndarray:
    """Canny edges of a uint8 image (H, W) or (H, W, C): uint8, 255 on edges, 0 elsewhere.

    Approximates ``cv2.Canny(image, low, high)`` (aperture 3, L1 gradient), which OpenCV does as
    follows, and so does this: 3x3 Sobel gradients with a replicated border, per channel, keeping
    the channel with the largest ``|gx| + |gy|`` at each pixel; non-maximum suppression along the
    gradient quantised to 0/45/90/135 degrees (ties go to the right and lower neighbour); pixels
    above ``high`` start edges, which grow through 8-connected pixels above ``low``. cv2.Canny
    blurs nothing first; ``sigma > 0`` adds the textbook Gaussian blur (for noisy video frames).
    """
    import numpy as np

    pixels = image.astype(np.float64)
    if pixels.ndim == 2:
        pixels = pixels[..., None]

    # 1. optional Gaussian blur (separable, mirrored border)
    if sigma > 0:
        pixels = _gaussian_blur(pixels, sigma)

    # 2. Sobel gradients per channel (unnormalised, as cv2's: up to 4 * 255 per axis); strongest channel
    p = np.pad(pixels, ((1, 1), (1, 1), (0, 0)), mode="edge")
    gx = (p[:-2, 2:] + 2 * p[1:-1, 2:] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[1:-1, :-2] + p[2:, :-2])
    gy = (p[2:, :-2] + 2 * p[2:, 1:-1] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[:-2, 1:-1] + p[:-2, 2:])
    magnitude = np.abs(gx) + np.abs(gy)
    strongest = magnitude.argmax(axis=-1)[..., None]
    gx, gy, magnitude = (np.take_along_axis(a, strongest, axis=-1)[..., 0] for a in (gx, gy, magnitude))

    # 3. non-maximum suppression: keep a pixel only if it beats its two neighbours across the edge
    rows, cols = magnitude.shape
    padded = np.pad(magnitude, 1)  # zeros outside the image

    def shifted(dy: int, dx: int) -> np.ndarray:
        """The magnitude at (y + dy, x + dx) for every pixel."""
        return padded[1 + dy : 1 + dy + rows, 1 + dx : 1 + dx + cols]

    ax, ay = np.abs(gx), np.abs(gy)
    tan22 = np.tan(np.pi / 8)
    across_x = ay < ax * tan22  # gradient along x: the edge runs up-down
    across_y = ay > ax / tan22  # gradient along y: the edge runs left-right
    diagonal = ~(across_x | across_y)
    same_sign = gx * gy > 0  # gradient towards lower right (or upper left), else lower left
    before = np.where(same_sign, shifted(-1, -1), shifted(-1, 1))
    after = np.where(same_sign, shifted(1, 1), shifted(1, -1))
    local_max = (
        (across_x & (magnitude > shifted(0, -1)) & (magnitude >= shifted(0, 1)))
        | (across_y & (magnitude > shifted(-1, 0)) & (magnitude >= shifted(1, 0)))
        | (diagonal & (magnitude > before) & (magnitude > after))
    )
    candidates = local_max & (magnitude > low)

    # 4. hysteresis: strong pixels start edges, which grow through 8-connected candidates
    edges = candidates & (magnitude > high)
    while True:
        padded_edges = np.pad(edges, 1)
        around = [padded_edges[1 + dy : 1 + dy + rows, 1 + dx : 1 + dx + cols] for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
        grown = np.logical_or.reduce(around) & candidates
        if np.array_equal(grown, edges):
            return edges.astype(np.uint8) * 255
        edges = grown


def _gaussian_blur(pixels: np.ndarray, sigma: float) -> np.ndarray:
    """(H, W, C) blurred by a normalised Gaussian of ``sigma`` pixels, rows then columns."""
    import numpy as np

    radius = max(1, int(np.ceil(3 * sigma)))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    for axis in (0, 1):
        pad = [(0, 0)] * 3
        pad[axis] = (radius, radius)
        padded = np.pad(pixels, pad, mode="reflect")
        length = pixels.shape[axis]
        pixels = sum(
            weight * np.take(padded, np.arange(offset, offset + length), axis=axis) for offset, weight in enumerate(taps)
        )
    return pixels


# -- the tiny checkpoints --------------------------------------------------------------------------


def build_tiny(path: Path) -> None:
    """The shared tiny base (``tiny_base``): the plain Text2Video-Zero family's SD 1.5, built by its function."""
    from .text2video_zero import build_tiny as build_sd15

    build_sd15(path)


def build_tiny_controlnet(path: Path) -> None:
    """Save a random-weight ``ControlNetModel`` that fits the tiny SD 1.5 UNet, in its own folder.

    Modelled on diffusers' ``tests/pipelines/controlnet`` dummy ControlNet, sized to the tiny
    UNet (two levels of 16/32 channels, cross-attention first, 8 norm groups, 4-channel heads).
    Its conditioning embedding halves the control image three times, as the real one does, to
    meet the 8x VAE's latents. fp32 only: the docs load ControlNets without a weight variant.
    """
    import torch
    from diffusers import ControlNetModel

    torch.manual_seed(0)
    controlnet = ControlNetModel(
        in_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        block_out_channels=(16, 32),
        layers_per_block=1,
        norm_num_groups=8,
        cross_attention_dim=32,
        attention_head_dim=4,
        conditioning_embedding_out_channels=(8, 8, 16, 16),
    )
    # A fresh ControlNet is a no-op, made for training: its "zero convolutions" (after the control
    # image's embedding, and on each residual it hands the UNet) are zeros, and the embedding's
    # default init shrinks the image's signal below its biases. Random weights that keep the
    # signal's scale let the tiny control images shape the frames, as a trained ControlNet's do.
    with torch.no_grad():
        for module in controlnet.controlnet_cond_embedding.modules():
            if isinstance(module, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(module.weight)
        for conv in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]:
            torch.nn.init.normal_(conv.weight, std=0.1)
    controlnet.save_pretrained(path)


FAMILY = Family(
    name="text2video-zero-controlnet",
    pipeline_class="StableDiffusionControlNetPipeline",
    description="Text2Video-Zero with control: prompt + pose or edge video -> video, an SD 1.5 ControlNet with cross-frame "
    "attention and one shared latent (pose videos must already show skeletons: no pose estimation here)",
    models=MODELS,
    params=Params,
    load=load,
    render=one_video_per_call(render),
    build_tiny=build_tiny,
    uint8_conversion=UINT8_CONVERSION,
    components={
        "controlnet": Component(description="ControlNetModel (pose or canny)", build_tiny=build_tiny_controlnet),
    },
    # The tiny SD 1.5 of the plain Text2Video-Zero family: all seven parts of the real repo (safety
    # checker included) and an 8x VAE, as stable-diffusion-v1-5. The ControlNet folder is this family's.
    tiny_base="text2video-zero",
    # Its cross-frame attention processor is imported from diffusers.pipelines.deprecated (there since
    # 0.38): the releases it is checked on; widen it once its contract test passes on a newer one.
    diffusers=">=0.42,<0.43",
)
