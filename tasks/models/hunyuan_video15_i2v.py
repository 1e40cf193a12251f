"""HunyuanVideo 1.5 image-to-video (``HunyuanVideo15ImageToVideoPipeline``): the first frame given, the rest
generated; the text-to-video model's parts plus a SigLIP image encoder.

Loaded and called as in the diffusers docs (the ``HunyuanVideo15ImageToVideoPipeline``
docstring; the docs page has no image-to-video snippet)::

    pipe = HunyuanVideo15ImageToVideoPipeline.from_pretrained(model_id, torch_dtype=torch.float16)
    pipe.vae.enable_tiling()
    output = pipe(prompt=prompt, image=image, num_inference_steps=50).frames[0]
    export_to_video(output, "output.mp4", fps=24)

The pipeline takes no height or width: it sizes the video itself, to the bucket of the
checkpoint's ``target_size`` nearest the image's aspect ratio (480p: 480 x 848 for a 16:9 image),
and crops the image to it. The rest is as in text-to-video (``hunyuan_video15``): the pipeline's
121 frames (4k+1) and 50 steps, ``guidance_scale`` set on the guider for one job, numpy frames
truncated to uint8 as ``export_to_video`` converts them, exported at the docstring's 24 fps
(``fps``). One image per call, so one video per call. The 480p step-distilled checkpoint feeds
its transformer the next step's time too (``use_meanflow``); the pipeline does that itself.

Not verified offline, as for text-to-video: the ``hunyuanvideo-community`` repos' layout (the
conversion script's, with ``image_encoder`` / ``feature_extractor`` from FLUX.1-Redux's SigLIP)
and that they hold no weight variants. The docstring loads float16; the keys load bfloat16, as
the docs page loads text-to-video.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field

from . import hunyuan_video15
from .base import LoadOptions, Rendered, Stopwatch, fps_field, from_pretrained, image_field, rendered_videos
from .family import Family, one_video_per_call

if TYPE_CHECKING:
    import torch

#: The docs export the pipeline's default numpy frames with ``export_to_video``: ``(frame * 255).astype(np.uint8)``.
UINT8_CONVERSION = "truncate"

#: Short keys for the released checkpoints (the distilled ones' guider is 1.0: no guidance).
MODELS = hunyuan_video15.hub_models(
    "480p_i2v", "720p_i2v", "480p_i2v_distilled", "720p_i2v_distilled", "480p_i2v_step_distilled"
)

#: The frame rate the docstring exports at (``export_to_video(output, "output.mp4", fps=24)``).
FPS = 24


class Params(hunyuan_video15.BaseParams):
    """The call parameters of ``HunyuanVideo15ImageToVideoPipeline`` (the text-to-video ones but the size, plus the
    image), with its own defaults, and the guider's scale."""

    image: Path = image_field("the first frame; cropped to the checkpoint's size bucket nearest its aspect ratio")
    prompt: str = Field(
        min_length=1, description="what happens in the video; text in quotes is also read by the glyph encoder"
    )
    num_frames: int = Field(121, ge=1, le=1025, description="frames, 4k+1, the image first (121 is 5 s at 24 fps)")
    fps: int = fps_field(FPS)


def load(options: LoadOptions, device: str):
    """The pipeline, on ``device``, ready to call."""
    from diffusers import HunyuanVideo15ImageToVideoPipeline

    pipe = from_pretrained(HunyuanVideo15ImageToVideoPipeline, options)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def render(pipe, params: Params, generator: torch.Generator, device: str) -> Rendered:
    """Render one video; the denoising loop and the VAE decode are timed apart."""
    from diffusers.utils import load_image

    # 1. encode image and prompts, denoise with the job's guidance; stop at the latents
    image = load_image(str(params.image))
    watch = Stopwatch(device)
    with hunyuan_video15.guidance(pipe, params.guidance_scale):
        latents = pipe(
            image=image,
            prompt=params.prompt,
            negative_prompt=params.negative_prompt,
            num_frames=params.num_frames,
            num_inference_steps=params.num_inference_steps,
            generator=generator,
            output_type="latent",
        ).frames
    denoise_s = watch.lap()

    # 2. decode exactly as the pipeline does after its loop (the same code as text-to-video)
    frames = hunyuan_video15.decode(pipe, latents)
    return rendered_videos(pipe, watch, denoise_s, [frames], UINT8_CONVERSION, params.fps)[0]


def build_tiny(path: Path) -> None:
    """Save a random-weight HunyuanVideo 1.5 image-to-video pipeline in the conversion script's layout (SigLIP image
    encoder and its processor included), float32 weights and the ``*.fp16.*`` files every tiny twin has."""
    import torch
    from diffusers import HunyuanVideo15ImageToVideoPipeline
    from transformers import SiglipImageProcessor, SiglipVisionConfig, SiglipVisionModel

    from ._tiny import save_with_fp16_variant

    torch.manual_seed(0)
    # The processor resizes to 32 px, seen by the encoder in 8 px patches: 16 tokens of width 16 (the real: 27 x 27
    # patches of 14 px at 384 px, 729 tokens of width 1152).
    image_encoder = SiglipVisionModel(
        SiglipVisionConfig(
            hidden_size=16,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
        )
    )
    pipe = HunyuanVideo15ImageToVideoPipeline(
        **hunyuan_video15.tiny_parts(),
        transformer=hunyuan_video15.tiny_transformer(task_type="i2v", image_embed_dim=16),
        image_encoder=image_encoder,
        feature_extractor=SiglipImageProcessor(size={"height": 32, "width": 32}),
    )
    save_with_fp16_variant(pipe, path)  # fp32 configs: the docs' plain from_pretrained(folder) loads float32


FAMILY = Family(
    name="hunyuan-video15-i2v",
    pipeline_class="HunyuanVideo15ImageToVideoPipeline",
    description="HunyuanVideo 1.5: image (+ text) -> video, the image as first frame; size from its aspect, 24 fps",
    models=MODELS,
    params=Params,
    load=load,
    render=one_video_per_call(render),
    build_tiny=build_tiny,
    uint8_conversion=UINT8_CONVERSION,
    # as the docs load text-to-video; `dtype: auto` on a GPU means this
    gpu_dtype="bfloat16",
)
