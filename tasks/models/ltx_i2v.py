"""LTX-Video image-to-video (``LTXImageToVideoPipeline``): the image is the first frame, the prompt the rest.

Loaded and called as in the diffusers docs (the ``LTXImageToVideoPipeline`` docstring): the
same repo as text-to-video (``Lightricks/LTX-Video``, whose model_index.json names
``LTXPipeline``: a row picks this family by its model key or by ``family: ltx-i2v``), in the
job's dtype (bfloat16 in the docs), the image as loaded (the pipeline resizes it to
width x height itself), the docs' negative prompt, 704x480, 161 frames, 50 steps, exported at
24 fps. The parameters are text-to-video's (:class:`tasks.models.ltx.Params`) plus the image;
``frame_rate`` (alias ``fps``), what a seed means (one stream through the decoder's noise) and the
rounding of the frames work as there.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from . import ltx
from .base import LoadOptions, Rendered, Stopwatch, from_pretrained, global_generator, image_field, rendered_videos
from .family import Family, one_video_per_call

if TYPE_CHECKING:
    import torch

#: The docs' frames are PIL images (the pipeline's default output): ``numpy_to_pil`` rounds.
UINT8_CONVERSION = ltx.UINT8_CONVERSION

#: Short keys for the released checkpoints.
MODELS = {
    "ltx-video-i2v": "Lightricks/LTX-Video",
}


class Params(ltx.Params):
    """The call parameters of ``LTXImageToVideoPipeline``: text-to-video's, with its defaults, and the image."""

    image: Path = image_field("the first frame; the pipeline resizes it to width x height")


def load(options: LoadOptions, device: str):
    """The pipeline, on ``device``, ready to call."""
    from diffusers import LTXImageToVideoPipeline

    pipe = from_pretrained(LTXImageToVideoPipeline, options)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def render(pipe, params: Params, generator: torch.Generator, device: str) -> Rendered:
    """Render one video; image encoding + denoising and the VAE decode are timed apart."""
    from diffusers.utils import load_image

    # 1. the image, as loaded: the pipeline's video processor resizes it to height x width
    image = load_image(str(params.image))

    # 2. encode prompt and image, denoise; stop at the (packed) latents
    watch = Stopwatch(device)
    latents = pipe(
        image=image,
        prompt=params.prompt,
        negative_prompt=params.negative_prompt,
        height=params.height,
        width=params.width,
        num_frames=params.num_frames,
        frame_rate=params.frame_rate,
        num_inference_steps=params.num_inference_steps,
        guidance_scale=params.guidance_scale,
        guidance_rescale=params.guidance_rescale,
        max_sequence_length=params.max_sequence_length,
        generator=generator,
        output_type="latent",
    ).frames
    denoise_s = watch.lap()

    # 3. decode as LTXImageToVideoPipeline does after its loop (no cast to the VAE's dtype there),
    #    its decode noise and the decoder's noise continuing the generator's stream (see ltx's module docstring)
    with global_generator(generator, device) as stream:
        frames = ltx.decode(pipe, latents, params, stream, cast_to_vae_dtype=False)
    return rendered_videos(pipe, watch, denoise_s, [frames], UINT8_CONVERSION, params.frame_rate)[0]


def build_tiny(path: Path) -> None:
    """The tiny checkpoint is ltx's (``tiny_base``); building it here gives the same folder."""
    ltx.build_tiny(path)


FAMILY = Family(
    name="ltx-i2v",
    pipeline_class="LTXImageToVideoPipeline",
    description="LTX-Video: image (+ text) -> video, the image as first frame; same repo and parameters as ltx",
    models=MODELS,
    params=Params,
    load=load,
    render=one_video_per_call(render),
    build_tiny=build_tiny,
    uint8_conversion=UINT8_CONVERSION,
    batched_guidance="guidance_scale",
    # the docs' dtype; `dtype: auto` on a GPU means this
    gpu_dtype="bfloat16",
    # The hub repo is shared with text-to-video, so is the tiny checkpoint.
    tiny_base="ltx",
)
