"""Kandinsky 5.0 Video image-to-video (``Kandinsky5I2VPipeline``): the first frame given, the rest generated.

Loaded and called as in the ``Kandinsky5I2VPipeline`` docstring (diffusers 0.42.1)::

    pipe = Kandinsky5I2VPipeline.from_pretrained(model_id, torch_dtype=torch.bfloat16)
    pipe = pipe.to("cuda")
    image = load_image(".../astronaut.jpg")
    output = pipe(image=image, prompt=prompt, negative_prompt=negative_prompt, height=512, width=768,
                  num_frames=121, num_inference_steps=50, guidance_scale=5.0).frames[0]
    export_to_video(output, "output.mp4", fps=24, quality=9)

The pipeline resizes the image to ``height`` x ``width`` itself; frames are PIL (rounded) and
exported at 24 fps, as in text-to-video (``kandinsky5``, whose parameters, decode and tiny
parts this family shares). The docs page's own image-to-video snippet
(``api/pipelines/kandinsky5_video``) cannot be run as written: it loads the checkpoint with
``Kandinsky5T2VPipeline`` and never passes the image; the docstring is the recipe here.

Rules the pipeline does not check itself, refused here before anything renders (besides
text-to-video's):
- at least 17 frames: after the loop the pipeline evens out the first 4 latent frames against
  the ones after them (``normalize_first_frame``); with fewer than 5 latent frames there are
  none, and the statistics of nothing turn the whole video into NaN (a black mp4); with a single
  latent frame it returns a tuple and fails.

The tiny twin is text-to-video's parts in ``Kandinsky5I2VPipeline``'s repo layout (the same
caveats: the hub's files could not be read offline; its ``tokenizer`` is the processor's text
tokenizer); its transformer's visual conditioning channels carry the image's mask, as the
I2V checkpoints' do.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field

from . import kandinsky5
from .base import LoadOptions, Rendered, from_pretrained, image_field
from .family import Family, one_video_per_call

if TYPE_CHECKING:
    import torch

#: Short keys for the released checkpoints (the docs' table).
MODELS = {
    "kandinsky5-pro-i2v": "kandinskylab/Kandinsky-5.0-I2V-Pro-sft-5s-Diffusers",  # 19B: the docs offload it
}

#: The fewest frames whose first latent frames the pipeline can normalise: 5 latent frames.
MIN_FRAMES = 4 * kandinsky5.TEMPORAL_FACTOR + 1


class Params(kandinsky5.Params):
    """The call parameters of ``Kandinsky5I2VPipeline``: the text-to-video ones plus the image."""

    image: Path = image_field("the first frame; the pipeline resizes it to width x height")
    prompt: str = Field(min_length=1, description="what happens in the video")
    num_frames: int = Field(
        121,
        ge=MIN_FRAMES,
        le=kandinsky5.MAX_FRAMES,
        description=f"frames, 4k+1, the image first; at least {MIN_FRAMES} (121 is 5 s at 24 fps)",
    )


def load(options: LoadOptions, device: str):
    """The pipeline, on ``device``, ready to call."""
    from diffusers import Kandinsky5I2VPipeline

    pipe = from_pretrained(Kandinsky5I2VPipeline, options)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def render(pipe, params: Params, generator: torch.Generator, device: str) -> Rendered:
    """Render one video from its first frame: text-to-video's call with the image, and its decode.

    The pipeline's latents come back with their first frames normalised already (it does so
    before its ``output_type`` branch), so the decode is text-to-video's.
    """
    from diffusers.utils import load_image

    return kandinsky5.render(pipe, params, generator, device, image=load_image(str(params.image)))


def build_tiny(path: Path) -> None:
    """Save a random-weight Kandinsky 5 image-to-video pipeline in the repos' layout (fp32 + fp16 variant weights)."""
    from diffusers import Kandinsky5I2VPipeline

    from ._tiny import save_with_fp16_variant

    save_with_fp16_variant(Kandinsky5I2VPipeline(**kandinsky5.tiny_parts()), path)


FAMILY = Family(
    name="kandinsky5-i2v",
    pipeline_class="Kandinsky5I2VPipeline",
    description="Kandinsky 5.0 Video: image (+ text) -> video, the image as first frame, 512x768, 24 fps",
    models=MODELS,
    params=Params,
    load=load,
    render=one_video_per_call(render),
    build_tiny=build_tiny,
    uint8_conversion=kandinsky5.UINT8_CONVERSION,
    # as the docs load it; `dtype: auto` on a GPU means this
    gpu_dtype="bfloat16",
)
