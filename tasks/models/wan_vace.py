"""Wan 2.1 VACE (``WanVACEPipeline``): text -> video under any mix of a control/source video, a mask and a
reference image.

Loaded and called as in the diffusers docs (the ``WanVACEPipeline`` docstring; the
``api/pipelines/wan`` page describes VACE's inputs but has no snippet)::

    vae = AutoencoderKLWan.from_pretrained(model_id, subfolder="vae", torch_dtype=torch.float32)
    pipe = WanVACEPipeline.from_pretrained(model_id, vae=vae, torch_dtype=torch.bfloat16)
    pipe.scheduler = UniPCMultistepScheduler.from_config(pipe.scheduler.config, flow_shift=3.0)
    video, mask = prepare_video_and_mask(first_frame, last_frame, height, width, num_frames)
    output = pipe(video=video, mask=mask, prompt=..., negative_prompt=..., height=512, width=512,
                  num_frames=81, num_inference_steps=30, guidance_scale=5.0,
                  generator=torch.Generator().manual_seed(42)).frames[0]
    export_to_video(output, "output.mp4", fps=16)

The VAE in float32, the rest in the job's dtype (bfloat16 in the docs); the docs' UniPC shift is
the ``flow_shift`` parameter, as in ``wan``; the pipeline's 480 x 832, 81 frames, 50 steps and
guidance 5.0; exported at 16 fps (``fps``), the frames truncated to uint8 as ``export_to_video``
converts them. The row's inputs, each optional (none at all is plain text-to-video):

- ``video``: the frames to condition on (a control video such as depth or pose, or a clip to
  repaint); a file or another row's output (``"@<row id>"``, chained as in ``video-to-video-sd``).
  Its first ``num_frames`` frames are taken and each is resized to ``width`` x ``height``, as the
  docs' ``prepare_video_and_mask`` resizes its frames (PIL's default filter);
- ``mask``: a video, black where ``video`` is kept and white where it is generated (the docs:
  "black ... will not generate new content for that area"); its first ``num_frames`` frames,
  turned to grey (``"L"``, the docs' mask mode) and resized with nearest-neighbour, so that a
  mask of any size stays black and white. Without it the whole video is generated under its control;
- ``reference_image``: one image of a subject or look to bring in. The pipeline takes a list;
  a manifest value is one file (a parameter has one column type), so one reference image a row.

The docs' first-and-last-frame snippet builds its video and mask in memory from two images; a
row gives them as files (``tests/test_wan_vace.py`` writes them with the snippet's own function,
losslessly, and renders the snippet's frames exactly). Wan 2.2 VACE checkpoints (two
transformers) are the same pipeline and take ``guidance_scale_2``; no official diffusers repo of
one exists, so none has a key.

What could not be checked offline: the hub repos' files. The keys name the repos the docstring
lists (``Wan-AI/Wan2.1-VACE-1.3B-diffusers``, ``Wan-AI/Wan2.1-VACE-14B-diffusers``); the tiny twin
is built from the pipeline's documented components (``WanVACEPipeline(tokenizer, text_encoder,
vae, scheduler, transformer)`` with a ``WanVACETransformer3DModel``), with the Wan text-to-video
twin's sizes and scheduler, and an fp16 variant as the Wan repos have.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field, ValidationInfo, field_validator

from . import wan
from ._tiny import t5_text_parts
from .base import LoadOptions, Rendered, Stopwatch, from_pretrained, image_field, rendered_videos, video_field
from .family import Family, one_video_per_call

if TYPE_CHECKING:
    import torch

#: The docs export the pipeline's default numpy frames with ``export_to_video``: ``(frame * 255).astype(np.uint8)``.
UINT8_CONVERSION = "truncate"

#: Short keys for the released checkpoints (the docstring's "Available checkpoints").
MODELS = {
    "wan2.1-vace-1.3b": "Wan-AI/Wan2.1-VACE-1.3B-diffusers",
    "wan2.1-vace-14b": "Wan-AI/Wan2.1-VACE-14B-diffusers",
}


class Params(wan.Params):
    """The call parameters of ``WanVACEPipeline`` (the text-to-video ones plus its conditions), with its own defaults.

    ``reference_image`` is the pipeline's ``reference_images`` as a list of one.
    """

    video: Path | None = video_field(
        "frames to condition on: a control video or a clip to repaint (a file, or '@<row id>'); "
        "its first num_frames frames, resized to width x height; default: none",
        default=None,
    )
    mask: Path | None = video_field(
        "a video, black where `video` is kept and white where it is generated; its first num_frames frames; "
        "default: generate everything under the video's control",
        default=None,
    )
    reference_image: Path | None = image_field(
        "an image of a subject or look to bring into the video (the pipeline pads it to the frame); default: none",
        first_frame=False,
        default=None,
    )
    conditioning_scale: float = Field(
        1.0, ge=0.0, le=10.0, description="weight of the VACE conditions (video, mask, reference) in every VACE layer"
    )

    @field_validator("mask")
    @classmethod
    def _mask_needs_a_video(cls, mask: Path | None, info: ValidationInfo) -> Path | None:
        if mask is not None and "video" in info.data and info.data["video"] is None:  # (a bad video: reported as such)
            raise ValueError(
                "a mask marks which parts of `video` to keep and to generate: add `video:`, or drop the mask"
            )
        return mask


def load(options: LoadOptions, device: str):
    """The pipeline, on ``device``, ready to call: the VAE in float32 as the docs load it."""
    from diffusers import WanVACEPipeline

    pipe = from_pretrained(WanVACEPipeline, options, vae=wan.load_vae(options))
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def conditions(params: Params) -> dict:
    """The pipeline's ``video``, ``mask`` and ``reference_images`` from the row's files (None where not given)."""
    from diffusers.utils import load_image
    from PIL import Image

    from ..video import read_video

    size = (params.width, params.height)
    video = mask = reference_images = None
    if params.video is not None:
        video = [frame.resize(size) for frame in read_video(params.video, params.num_frames)[0]]
    if params.mask is not None:
        frames = read_video(params.mask, params.num_frames)[0]
        mask = [frame.convert("L").resize(size, Image.Resampling.NEAREST) for frame in frames]
    if params.reference_image is not None:
        reference_images = [load_image(str(params.reference_image))]
    return {"video": video, "mask": mask, "reference_images": reference_images}


def render(pipe, params: Params, generator: torch.Generator, device: str) -> Rendered:
    """Render one video; condition encoding + denoising and the VAE decode are timed apart."""
    inputs = conditions(params)

    # encode the prompt and the conditions, denoise with the job's scheduler shift; stop at the latents
    watch = Stopwatch(device)
    with wan.flow_shift(pipe, params.flow_shift) as scheduler:
        latents = pipe(
            prompt=params.prompt,
            negative_prompt=params.negative_prompt,
            **inputs,
            conditioning_scale=params.conditioning_scale,
            height=params.height,
            width=params.width,
            num_frames=params.num_frames,
            num_inference_steps=params.num_inference_steps,
            guidance_scale=params.guidance_scale,
            guidance_scale_2=params.guidance_scale_2,
            max_sequence_length=params.max_sequence_length,
            generator=generator,
            output_type="latent",
        ).frames
    denoise_s = watch.lap()

    # decode as the pipeline does after its loop: first drop the reference images' leading latent frames
    references = len(inputs["reference_images"] or ())
    frames = wan.decode(pipe, latents[:, :, references:])
    return rendered_videos(pipe, watch, denoise_s, [frames], UINT8_CONVERSION, params.fps, scheduler)[0]


def tiny_transformer():
    """A WanVACETransformer3DModel of the Wan text-to-video twin's sizes, with VACE blocks beside both layers.

    96 control channels, as in the real models: 16 latent channels of the kept and of the
    generated part of the video each, and the mask's 8 x 8 pixels per latent pixel.
    """
    import torch
    from diffusers import WanVACETransformer3DModel

    sizes = {key: value for key, value in wan.tiny_transformer().config.items() if not key.startswith("_")}
    torch.manual_seed(0)
    return WanVACETransformer3DModel.from_config({**sizes, "vace_layers": [0, 1], "vace_in_channels": 96})


def build_tiny(path: Path) -> None:
    """Save a random-weight Wan 2.1 VACE pipeline in the real layout (fp32 and fp16 variant weights)."""
    from diffusers import WanVACEPipeline

    from ._tiny import save_with_fp16_variant

    tokenizer, text_encoder = t5_text_parts(umt5=True)
    pipe = WanVACEPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=wan.tiny_vae(),
        scheduler=wan.tiny_scheduler(),
        transformer=tiny_transformer(),
    )
    save_with_fp16_variant(pipe, path)  # fp32 configs: the docs' plain from_pretrained(folder) loads float32


FAMILY = Family(
    name="wan-vace",
    pipeline_class="WanVACEPipeline",
    description="Wan 2.1 VACE: text (+ control/source video, mask, reference image) -> video; chains after another row",
    models=MODELS,
    params=Params,
    load=load,
    render=one_video_per_call(render),
    build_tiny=build_tiny,
    uint8_conversion=UINT8_CONVERSION,
    # as the docs load it; `dtype: auto` on a GPU means this
    gpu_dtype="bfloat16",
)
