"""CogVideoX 5B image-to-video (``CogVideoXImageToVideoPipeline``): the image as first frame, a prompt for the rest.

Loaded and called as in the diffusers docs (the ``CogVideoXImageToVideoPipeline`` docstring):
``from_pretrained`` in the job's dtype (bfloat16 in the docs), ``pipe(image, prompt,
use_dynamic_cfg=True)`` with the pipeline's other defaults (49 frames, 50 steps, guidance 6),
exported at 8 fps. The image is passed as loaded: the pipeline resizes it to height x width
itself (no crop, so another aspect ratio is stretched). Its transformer concatenates the image's
latents to the noise (32 input channels) and has learned positional embeddings, so it renders
its trained 480 x 720 only, with exactly 226 prompt tokens: other values are refused per job.
The frame and size rules are text-to-video's (:mod:`.cogvideox`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field

from . import cogvideox
from ._tiny import t5_text_parts
from .base import LoadOptions, Rendered, Stopwatch, from_pretrained, image_field, rendered_videos
from .family import Family, one_video_per_call

if TYPE_CHECKING:
    import torch

#: The docs' frames are PIL images (the pipeline's default output): ``numpy_to_pil`` rounds.
UINT8_CONVERSION = "round"

#: Short keys for the released checkpoints.
MODELS = {
    "cogvideox-5b-i2v": {"source": "THUDM/CogVideoX-5b-I2V", "dtype": "bfloat16", "variant": "none"},  # as the docs load it
}


class Params(cogvideox.Params):
    """The call parameters of ``CogVideoXImageToVideoPipeline``, with its own defaults: the text-to-video ones plus the image."""

    image: Path = image_field("the first frame; the pipeline resizes it to height x width (stretching another aspect)")
    height: int | None = Field(
        None,
        ge=16,
        le=4096,
        multiple_of=cogvideox.SIZE_MULTIPLE,
        description="output height; default: the transformer's (480, the only one 5B-I2V renders)",
    )
    width: int | None = Field(
        None,
        ge=16,
        le=4096,
        multiple_of=cogvideox.SIZE_MULTIPLE,
        description="output width; default: the transformer's (720, the only one 5B-I2V renders)",
    )
    num_frames: int = Field(
        49, ge=1, le=1025, description="frames to generate, 8k or 8k+1, the image first (49: 6 s at 8 fps)"
    )


def load(options: LoadOptions, device: str):
    """The pipeline, on ``device``, ready to call."""
    from diffusers import CogVideoXImageToVideoPipeline

    pipe = from_pretrained(CogVideoXImageToVideoPipeline, options)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def render(pipe, params: Params, generator: torch.Generator, device: str) -> Rendered:
    """Render one video; image encoding with the denoising loop, then the VAE decode, timed apart."""
    from diffusers.utils import load_image

    cogvideox.check_call(pipe, params)

    # 1. the image, as the docs load it (the pipeline resizes it)
    image = load_image(str(params.image))

    # 2. encode the prompt and the image (its latents drawn from the generator), denoise; stop at the latents
    watch = Stopwatch(device)
    latents = pipe(
        image=image,
        prompt=params.prompt,
        negative_prompt=params.negative_prompt,
        height=params.height,
        width=params.width,
        num_frames=params.num_frames,
        num_inference_steps=params.num_inference_steps,
        guidance_scale=params.guidance_scale,
        use_dynamic_cfg=params.use_dynamic_cfg,
        eta=params.eta,
        max_sequence_length=params.max_sequence_length,
        generator=generator,
        output_type="latent",
    ).frames
    denoise_s = watch.lap()

    # 3. decode exactly as the pipeline does after its loop (the same code as text-to-video)
    frames = cogvideox.decode(pipe, latents, params.num_frames)
    return rendered_videos(pipe, watch, denoise_s, [frames], UINT8_CONVERSION, params.fps)[0]


def build_tiny(path: Path) -> None:
    """Save a random-weight CogVideoX 5B-I2V-like pipeline in the real layout, fp32 and fp16 variant.

    Its own checkpoint: the transformer takes 4 noise + 4 image latent channels and has learned
    positional embeddings for its 32 x 48 px sample size, as 5B-I2V for 480 x 720.
    """
    from diffusers import CogVideoXImageToVideoPipeline

    from ._tiny import save_with_fp16_variant

    tokenizer, text_encoder = t5_text_parts()
    pipe = CogVideoXImageToVideoPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=cogvideox.tiny_vae(),
        transformer=cogvideox.tiny_transformer(in_channels=8, learned_positions=True),
        scheduler=cogvideox.tiny_scheduler(),
    )
    save_with_fp16_variant(pipe, path)  # fp32 configs: the docs' plain from_pretrained(folder) loads float32


FAMILY = Family(
    name="cogvideox-i2v",
    pipeline_class="CogVideoXImageToVideoPipeline",
    description="CogVideoX 5B-I2V: image (+ text) -> video from the image, 49 frames at 720x480, 8 fps (docs: bfloat16)",
    models=MODELS,
    params=Params,
    load=load,
    render=one_video_per_call(render),
    build_tiny=build_tiny,
    uint8_conversion=UINT8_CONVERSION,
    batched_guidance="guidance_scale",
)
