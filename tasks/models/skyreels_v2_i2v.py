"""SkyReels-V2 image-to-video (``SkyReelsV2ImageToVideoPipeline``): the image as the first frame, conditioned on its
CLIP features too (Wan 2.1 I2V's architecture).

Loaded and called as in the ``SkyReelsV2ImageToVideoPipeline`` docstring (diffusers 0.42.1)::

    vae = AutoencoderKLWan.from_pretrained(model_id, subfolder="vae", torch_dtype=torch.float32)
    pipe = SkyReelsV2ImageToVideoPipeline.from_pretrained(model_id, vae=vae, torch_dtype=torch.bfloat16)
    flow_shift = 5.0  # 8.0 for T2V, 5.0 for I2V
    pipe.scheduler = UniPCMultistepScheduler.from_config(pipe.scheduler.config, flow_shift=flow_shift)
    image = Image.open("path/to/image.png")
    output = pipe(image=image, prompt=prompt, num_inference_steps=50, height=544, width=960,
                  guidance_scale=5.0, num_frames=97).frames[0]
    export_to_video(output, "video.mp4", fps=24, quality=8)

As text-to-video (``skyreels_v2.py``: the VAE alone in float32, the scheduler swap as
``flow_shift``, truncated numpy frames at 24 fps), plus the image, which the pipeline resizes
to height x width itself (unlike Wan's docs, the docstring sizes nothing from the image's aspect:
an image of another aspect is stretched, as there); guidance 5.0 is the pipeline's own default.
The image is read in RGB (``load_image``), as ``Image.open`` reads an RGB file. One video per
call: the pipeline encodes one image for every prompt of a call.

The hub repos could not be read offline. The tiny twin is built in the layout
``scripts/convert_skyreelsv2_to_diffusers.py`` saves them in: text-to-video's parts with a
36-channel transformer (16 noise + 4 mask + 16 first-frame latent channels) taking CLIP image
features, a ``CLIPVisionModelWithProjection`` image encoder and, as ``image_processor``, the
``CLIPProcessor`` that ``AutoProcessor`` loads for laion's CLIP-ViT-H-14 (an image processor
with a CLIP tokenizer the pipeline never calls).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field

from . import skyreels_v2, wan
from ._tiny import clip_text_parts, t5_text_parts
from .base import LoadOptions, Rendered, Stopwatch, from_pretrained, image_field, rendered_videos
from .family import Family, one_video_per_call

if TYPE_CHECKING:
    import torch

#: The docs export the pipeline's default numpy frames with ``export_to_video``: ``(frame * 255).astype(np.uint8)``.
UINT8_CONVERSION = "truncate"

#: Short keys for the released checkpoints (the docstring's list; plain weight files, as text-to-video's).
MODELS = {
    "skyreels-v2-i2v-1.3b-540p": skyreels_v2.plain_weights("Skywork/SkyReels-V2-I2V-1.3B-540P-Diffusers"),
    "skyreels-v2-i2v-14b-540p": skyreels_v2.plain_weights("Skywork/SkyReels-V2-I2V-14B-540P-Diffusers"),
    "skyreels-v2-i2v-14b-720p": skyreels_v2.plain_weights("Skywork/SkyReels-V2-I2V-14B-720P-Diffusers"),
}


class Params(skyreels_v2.Params):
    """The call parameters of ``SkyReelsV2ImageToVideoPipeline``: text-to-video's plus the image, guidance 5.0."""

    image: Path = image_field("the first frame; the pipeline resizes it to width x height")
    prompt: str = Field(min_length=1, description="what happens in the video")
    guidance_scale: float = Field(5.0, ge=0.0, le=100.0, description="classifier-free guidance; 1 or less turns it off")


def load(options: LoadOptions, device: str):
    """The pipeline, on ``device``, ready to call: the VAE in float32 as the docs load it."""
    from diffusers import SkyReelsV2ImageToVideoPipeline

    pipe = from_pretrained(SkyReelsV2ImageToVideoPipeline, options, vae=wan.load_vae(options))
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def render(pipe, params: Params, generator: torch.Generator, device: str) -> Rendered:
    """Render one video; the denoising loop and the VAE decode are timed apart."""
    from diffusers.utils import load_image

    # 1. encode prompt and image, denoise with the job's scheduler shift; stop at the latents
    watch = Stopwatch(device)
    with wan.flow_shift(pipe, params.flow_shift) as scheduler:
        latents = pipe(
            image=load_image(str(params.image)),
            prompt=params.prompt,
            negative_prompt=params.negative_prompt,
            height=params.height,
            width=params.width,
            num_frames=params.num_frames,
            num_inference_steps=params.num_inference_steps,
            guidance_scale=params.guidance_scale,
            max_sequence_length=params.max_sequence_length,
            generator=generator,
            output_type="latent",
        ).frames
    denoise_s = watch.lap()

    # 2. decode as the pipeline does after its loop (Wan's decode, line for line)
    frames = wan.decode(pipe, latents)
    return rendered_videos(pipe, watch, denoise_s, [frames], UINT8_CONVERSION, params.fps, scheduler)[0]


def build_tiny(path: Path) -> None:
    """Save a random-weight SkyReels-V2 I2V pipeline (CLIP image encoder and processor) in the real layout, fp32 + fp16."""
    import torch
    from diffusers import SkyReelsV2ImageToVideoPipeline
    from transformers import CLIPImageProcessor, CLIPProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    from ._tiny import save_with_fp16_variant

    tokenizer, text_encoder = t5_text_parts(umt5=True)
    clip_tokenizer, _ = clip_text_parts()
    torch.manual_seed(0)
    # The processor crops to 32 px, seen by the encoder in 8 px patches: 16 + 1 tokens of width 16.
    image_encoder = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=16,
            projection_dim=16,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
            intermediate_size=37,
        )
    )
    pipe = SkyReelsV2ImageToVideoPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        image_encoder=image_encoder,
        image_processor=CLIPProcessor(image_processor=CLIPImageProcessor(crop_size=32, size=32), tokenizer=clip_tokenizer),
        transformer=skyreels_v2.tiny_transformer(in_channels=36, image_dim=16),
        vae=wan.tiny_vae(),
        scheduler=skyreels_v2.tiny_scheduler(),
    )
    save_with_fp16_variant(pipe, path)  # fp32 configs: the docs' plain from_pretrained(folder) loads float32


FAMILY = Family(
    name="skyreels-v2-i2v",
    pipeline_class="SkyReelsV2ImageToVideoPipeline",
    description="SkyReels-V2: image (+ text) -> video, the image as first frame, resized to the size (flow_shift 5.0)",
    models=MODELS,
    params=Params,
    load=load,
    render=one_video_per_call(render),
    build_tiny=build_tiny,
    uint8_conversion=UINT8_CONVERSION,
    # as the docs load it; `dtype: auto` on a GPU means this
    gpu_dtype="bfloat16",
)
