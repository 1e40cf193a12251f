"""SkyReels-V2 diffusion forcing, image-to-video (``SkyReelsV2DiffusionForcingImageToVideoPipeline``): the image's
latent pinned as the first latent frame, the rest denoised as diffusion forcing does, window by window past
``base_num_frames``; optionally a last image the video leads up to.

Loaded and called as in the ``SkyReelsV2DiffusionForcingImageToVideoPipeline`` docstring (diffusers 0.42.1)::

    vae = AutoencoderKLWan.from_pretrained(model_id, subfolder="vae", torch_dtype=torch.float32)
    pipe = SkyReelsV2DiffusionForcingImageToVideoPipeline.from_pretrained(model_id, vae=vae, torch_dtype=torch.bfloat16)
    flow_shift = 5.0  # 8.0 for T2V, 5.0 for I2V
    pipe.scheduler = UniPCMultistepScheduler.from_config(pipe.scheduler.config, flow_shift=flow_shift)
    image = Image.open("path/to/image.png")
    output = pipe(image=image, prompt=prompt, num_inference_steps=50, height=544, width=960, guidance_scale=5.0,
                  num_frames=97, ar_step=0, overlap_history=None, addnoise_condition=20).frames[0]
    export_to_video(output, "video.mp4", fps=24, quality=8)

The checkpoints are the diffusion-forcing repos (the docstring's list), whose model_index.json
names ``SkyReelsV2DiffusionForcingPipeline``: the keys here load them as image-to-video, and the
tiny checkpoint is the ``skyreels-v2-df`` family's (``tiny_base``): the same transformer, which
takes the image as a clean first latent frame, no image encoder. Everything else is text-to-video
diffusion forcing's (``skyreels_v2_df``: the VAE alone in float32, ``flow_shift``, ``fps``
conditioning, the job's generator as torch's global RNG, which ``addnoise_condition``'s noise is
drawn from, here on the image's frame in every video), with the pipeline's guidance 5.0. The
pipeline resizes the image (and ``last_image``) to height x width itself (no crop: another aspect
is stretched; the docs page's first-last-frame example sizes and crops by hand, which a row
restates with height and width). The image is read in RGB (``load_image``), as ``Image.open``
reads an RGB file. One video per call.

``last_image`` (the docs page's first-last-frame example): its latent is appended after the
video's latent frames, held clean, and dropped before the decode, so the video leads up to it
without showing it.

Refused here, beyond text-to-video diffusion forcing's rules (4k+1 frames, ``overlap_history``
past ``base_num_frames``, blocks dividing every window):
- ``causal_block_size`` above 1: the pipeline marks the image's one latent frame as done only in
  whole blocks (``num_pre_ready // causal_block_size`` of them: none), so it denoises the image's
  latent from full noise like any other frame, and the video silently does not start with it;
- ``last_image`` on a video past ``base_num_frames``: the pipeline fails in the last window.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field, ValidationInfo, field_validator

from . import skyreels_v2, skyreels_v2_df, wan
from .base import LoadOptions, Rendered, Stopwatch, from_pretrained, global_generator, image_field, rendered_videos
from .family import Family, one_video_per_call

if TYPE_CHECKING:
    import torch

#: The docs export the pipeline's default numpy frames with ``export_to_video``: ``(frame * 255).astype(np.uint8)``.
UINT8_CONVERSION = "truncate"

#: Short keys for the released checkpoints: the diffusion-forcing repos (the docstring's list), loaded as image-to-video.
MODELS = {
    "skyreels-v2-df-i2v-1.3b-540p": skyreels_v2.plain_weights("Skywork/SkyReels-V2-DF-1.3B-540P-Diffusers"),
    "skyreels-v2-df-i2v-14b-540p": skyreels_v2.plain_weights("Skywork/SkyReels-V2-DF-14B-540P-Diffusers"),
    # 720P: height 720, width 1280, base_num_frames 121
    "skyreels-v2-df-i2v-14b-720p": skyreels_v2.plain_weights("Skywork/SkyReels-V2-DF-14B-720P-Diffusers"),
}


class Params(skyreels_v2_df.Params):
    """The call parameters of ``SkyReelsV2DiffusionForcingImageToVideoPipeline``: text-to-video diffusion forcing's,
    guidance 5.0, the image and an optional last image."""

    prompt: str = Field(min_length=1, description="what happens in the video")
    guidance_scale: float = Field(5.0, ge=0.0, le=100.0, description="classifier-free guidance; 1 or less turns it off")
    image: Path = image_field("the first frame; the pipeline resizes it to width x height")
    last_image: Path | None = image_field(
        "an image the video leads up to (its latent follows the last frame, not shown); resized to width x height",
        first_frame=False,
        default=None,
    )

    @field_validator("causal_block_size")
    @classmethod
    def _image_frame_pinned(cls, block: int | None) -> int | None:
        if block is not None and block > 1:
            raise ValueError(
                f"must be 1 for image-to-video: the pipeline holds the image's latent frame only in whole blocks "
                f"(1 // {block} = none), so it would denoise the image from full noise and the video would not start "
                "with it; drop causal_block_size (ar_step works with blocks of 1)"
            )
        return block

    @field_validator("last_image")
    @classmethod
    def _last_image_in_one_window(cls, last: Path | None, info: ValidationInfo) -> Path | None:
        frames, base = info.data.get("num_frames"), info.data.get("base_num_frames")
        if last is not None and frames is not None and base is not None and frames > base:
            raise ValueError(
                f"num_frames={frames} is past base_num_frames={base}: the pipeline takes a last image in one window "
                "only (it fails in the last window of a long video); raise base_num_frames or drop last_image"
            )
        return last


def load(options: LoadOptions, device: str):
    """The pipeline, on ``device``, ready to call: the VAE in float32 as the docs load it."""
    from diffusers import SkyReelsV2DiffusionForcingImageToVideoPipeline

    pipe = from_pretrained(SkyReelsV2DiffusionForcingImageToVideoPipeline, options, vae=wan.load_vae(options))
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def render(pipe, params: Params, generator: torch.Generator, device: str) -> Rendered:
    """Render one video; image encoding with the denoising loop (every window), then the VAE decode, timed apart."""
    from diffusers.utils import load_image

    image = load_image(str(params.image))
    last_image = None if params.last_image is None else load_image(str(params.last_image))

    # 1. encode the prompts and the image(s), denoise with the job's scheduler shift, the job's generator as torch's
    #    global RNG; stop at the latents
    watch = Stopwatch(device)
    with (
        wan.flow_shift(pipe, params.flow_shift) as scheduler,
        skyreels_v2_df.loaded_blocks(pipe.transformer),
        global_generator(generator, device) as stream,
    ):
        latents = pipe(
            image=image,
            last_image=last_image,
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

    # 2. decode as the pipeline does after its loop: the last image's latent frame dropped first, then Wan's decode
    if last_image is not None:
        latents = latents[:, :, :-1]
    frames = wan.decode(pipe, latents)
    return rendered_videos(pipe, watch, denoise_s, [frames], UINT8_CONVERSION, params.fps, scheduler)[0]


def build_tiny(path: Path) -> None:
    """The shared tiny checkpoint (``tiny_base``): the ``skyreels-v2-df`` family's, built by its function."""
    skyreels_v2_df.build_tiny(path)


FAMILY = Family(
    name="skyreels-v2-df-i2v",
    pipeline_class="SkyReelsV2DiffusionForcingImageToVideoPipeline",
    description="SkyReels-V2 diffusion forcing: image (+ text, + last image) -> long video from the image (flow_shift 5.0)",
    models=MODELS,
    params=Params,
    load=load,
    render=one_video_per_call(render),
    build_tiny=build_tiny,
    uint8_conversion=UINT8_CONVERSION,
    # the diffusion-forcing repos' layout, loaded as image-to-video (their model_index.json names the text-to-video class)
    tiny_base="skyreels-v2-df",
    # as the docs load it; `dtype: auto` on a GPU means this
    gpu_dtype="bfloat16",
)
