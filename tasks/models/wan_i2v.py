"""Wan 2.1 / 2.2 image-to-video (``WanImageToVideoPipeline``): the first frame given, the rest generated.

Loaded and called as in the diffusers docs (the ``WanImageToVideoPipeline`` docstring and
``api/pipelines/wan``): the VAE and the CLIP image encoder in float32, the rest in the job's dtype
(bfloat16 in the docs); the output size follows the image's aspect ratio within a pixel budget
(``max_area = 480 * 832``, sides rounded down to the VAE x patch multiple) and the image is resized
to it; 81 frames, guidance 5.0, exported at 16 fps (``fps``), the frames truncated to uint8 as
``export_to_video`` converts them. Wan 2.1 I2V conditions on CLIP features of
the image (``image_encoder``, ``image_processor``); Wan 2.2 I2V A14B has neither, and instead two
transformers (``transformer_2``, ``boundary_ratio``) with a ``guidance_scale_2`` of its own.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field, ValidationInfo, field_validator

from . import wan
from ._tiny import t5_text_parts
from .base import LoadOptions, Rendered, Stopwatch, from_pretrained, image_field, rendered_videos
from .family import Family, one_video_per_call

if TYPE_CHECKING:
    import torch

#: The docs export the pipeline's default numpy frames with ``export_to_video``: ``(frame * 255).astype(np.uint8)``.
UINT8_CONVERSION = "truncate"

#: Short keys for the released checkpoints.
MODELS = {
    "wan2.1-i2v-14b-480p": "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers",
    "wan2.2-i2v-a14b": "Wan-AI/Wan2.2-I2V-A14B-Diffusers",  # no image encoder; transformer + transformer_2
}


class Params(wan.Params):
    """The call parameters of ``WanImageToVideoPipeline`` (the text-to-video ones plus the image), and the docs'
    sizing of the output to the image.

    ``height`` and ``width`` default to None, not to the pipeline's 480 x 832: the docs compute
    them from the image's aspect ratio within ``max_area`` and resize the image to them, which
    a fixed 480 x 832 would stretch. Given both, they are used as given (the image resized to them).
    """

    image: Path = image_field("the first frame; resized to width x height as the docs do")
    prompt: str = Field(min_length=1, description="what happens in the video")
    height: int | None = Field(
        None, ge=16, le=4096, multiple_of=16, description="output height; default: from the image's aspect and max_area"
    )
    width: int | None = Field(
        None,
        ge=16,
        le=4096,
        multiple_of=16,
        validate_default=True,  # so that a height without a width is refused too
        description="output width; default: from the image's aspect and max_area",
    )
    max_area: int = Field(
        480 * 832,
        ge=256,
        le=4096 * 4096,
        description="pixel budget of the default size: 399360 (480*832) for 480p models, 921600 (720*1280) for 720p",
    )
    num_frames: int = Field(81, ge=1, le=1025, description="frames, 4k+1, the image first (81 is 5 s at 16 fps)")

    @field_validator("width")
    @classmethod
    def _both_sides_or_neither(cls, width: int | None, info: ValidationInfo) -> int | None:
        if "height" in info.data and (info.data["height"] is None) != (width is None):
            raise ValueError(
                f"height={info.data['height']!r} with width={width!r}: "
                "give both, or neither to size the video from the image"
            )
        return width


def load(options: LoadOptions, device: str):
    """The pipeline, on ``device``, ready to call: VAE and (Wan 2.1) image encoder in float32, as the docs load them."""
    from diffusers import WanImageToVideoPipeline

    parts = {"vae": wan.load_vae(options)}
    if _has_image_encoder(options):
        parts["image_encoder"] = load_image_encoder(options)
    pipe = from_pretrained(WanImageToVideoPipeline, options, **parts)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def _has_image_encoder(options: LoadOptions) -> bool:
    """Wan 2.1 I2V has a CLIP image encoder; Wan 2.2 I2V's model_index.json lists it as [null, null]."""
    from diffusers import WanImageToVideoPipeline

    kwargs = {"revision": options.revision} if options.revision and not Path(options.source).is_dir() else {}
    index = WanImageToVideoPipeline.load_config(options.source, **kwargs)
    return (index.get("image_encoder") or [None])[0] is not None


def load_image_encoder(options: LoadOptions):
    """``CLIPVisionModel.from_pretrained(model_id, subfolder="image_encoder", torch_dtype=torch.float32)`` (docs)."""
    import torch
    from transformers import CLIPVisionModel

    return CLIPVisionModel.from_pretrained(
        options.source, subfolder="image_encoder", dtype=torch.float32, **wan.weight_files(options)
    )


def output_size(pipe, image_size: tuple[int, int], params: Params) -> tuple[int, int]:
    """(height, width): as given, else the docs' ``round(sqrt(max_area * aspect)) // mod * mod`` per side."""
    if params.height is not None and params.width is not None:
        return params.height, params.width
    transformer = pipe.transformer if pipe.transformer is not None else pipe.transformer_2
    mod_value = pipe.vae_scale_factor_spatial * transformer.config.patch_size[1]
    width, height = image_size
    aspect_ratio = height / width
    # the docs use numpy's sqrt and Python's round; math.sqrt agrees on a double
    out_height = round(math.sqrt(params.max_area * aspect_ratio)) // mod_value * mod_value
    out_width = round(math.sqrt(params.max_area / aspect_ratio)) // mod_value * mod_value
    if out_height < mod_value or out_width < mod_value:
        raise ValueError(
            f"max_area={params.max_area} leaves a {width}x{height} image {out_width}x{out_height} pixels; "
            f"raise max_area or give height and width (multiples of {mod_value})"
        )
    return out_height, out_width


def render(pipe, params: Params, generator: torch.Generator, device: str) -> Rendered:
    """Render one video; the denoising loop and the VAE decode are timed apart."""
    from diffusers.utils import load_image

    # 1. the first frame, sized and resized as in the docs
    image = load_image(str(params.image))
    height, width = output_size(pipe, image.size, params)
    image = image.resize((width, height))

    # 2. encode prompt and image, denoise with the job's scheduler shift; stop at the latents
    watch = Stopwatch(device)
    with wan.flow_shift(pipe, params.flow_shift) as scheduler:
        latents = pipe(
            image=image,
            prompt=params.prompt,
            negative_prompt=params.negative_prompt,
            height=height,
            width=width,
            num_frames=params.num_frames,
            num_inference_steps=params.num_inference_steps,
            guidance_scale=params.guidance_scale,
            guidance_scale_2=params.guidance_scale_2,
            max_sequence_length=params.max_sequence_length,
            generator=generator,
            output_type="latent",
        ).frames
    denoise_s = watch.lap()

    # 3. decode exactly as the pipeline does after its loop (the same code as text-to-video)
    frames = wan.decode(pipe, latents)
    return rendered_videos(pipe, watch, denoise_s, [frames], UINT8_CONVERSION, params.fps, scheduler)[0]


def build_tiny(path: Path) -> None:
    """Save a random-weight Wan 2.1 I2V pipeline (CLIP image encoder included) in the real layout, fp32 + fp16."""
    import torch
    from diffusers import WanImageToVideoPipeline
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    from ._tiny import save_with_fp16_variant

    tokenizer, text_encoder = t5_text_parts(umt5=True)
    torch.manual_seed(0)
    # The processor crops to 32 px, seen by the encoder in 8 px patches: 16 + 1 tokens of width 16.
    image_encoder = CLIPVisionModel(
        CLIPVisionConfig(
            hidden_size=16,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
            intermediate_size=37,
        )
    )
    pipe = WanImageToVideoPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=wan.tiny_vae(),
        scheduler=wan.tiny_scheduler(),
        image_processor=CLIPImageProcessor(crop_size=32, size=32),
        image_encoder=image_encoder,
        # 16 noise + 4 mask + 16 first-frame latent channels, as in Wan 2.1 I2V
        transformer=wan.tiny_transformer(in_channels=36, image_dim=16),
    )
    save_with_fp16_variant(pipe, path)  # fp32 configs: the docs' plain from_pretrained(folder) loads float32


FAMILY = Family(
    name="wan-i2v",
    pipeline_class="WanImageToVideoPipeline",
    description="Wan 2.1 / 2.2: image (+ text) -> video, the image as first frame; size from its aspect ratio",
    models=MODELS,
    params=Params,
    load=load,
    render=one_video_per_call(render),
    build_tiny=build_tiny,
    uint8_conversion=UINT8_CONVERSION,
    # as the docs load it; `dtype: auto` on a GPU means this
    gpu_dtype="bfloat16",
)
