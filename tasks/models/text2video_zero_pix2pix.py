"""Video Instruct-Pix2Pix (Text2Video-Zero): a video + an edit instruction -> the edited video.

Loaded and called as in the diffusers docs (``api/pipelines/text_to_video_zero``, "Video
Instruct-Pix2Pix"): ``StableDiffusionInstructPix2PixPipeline.from_pretrained("timbrooks/instruct-pix2pix",
torch_dtype=torch.float16)`` (no weight variant; the repo's own scheduler and safety checker),
Text2Video-Zero's ``CrossFrameAttnProcessor(batch_size=3)`` on the UNet (every frame's
self-attention looks at the first frame), the instruction repeated per frame, the video's frames
as ``image=``, the pipeline's own defaults (100 steps, guidance 7.5, image guidance 1.5), the
whole clip in one call.

Where this differs from the docs' code, and why:
- the docs import the processor from ``diffusers.pipelines.text_to_video_synthesis``; in diffusers
  0.42.1 that module lives under ``diffusers.pipelines.deprecated`` (the old path fails).
- the docs pass no generator (torch's global RNG draws the noise); here the job's generator does.
- ``guidance_scale`` must be > 1 and ``image_guidance_scale`` >= 1: ``batch_size=3`` tells the
  processor that the UNet sees the frames three times (text, image, unconditional), which the
  pipeline does only with both guidances on; otherwise the processor would cut the one batch of
  frames in three and anchor them on the wrong frames.
- ``height`` / ``width`` resize the input frames (PIL's default filter) before the call; by
  default the video's own size is kept, and a size the VAE cannot take (not a multiple of 8) is
  refused where the pipeline would silently round it down.
- the decode after the loop is done here (``output_type="latent"`` stops before it), timed apart:
  the pipeline's own steps, VAE decode, safety checker, postprocess.

The output is written at the input video's frame rate: its frames are the input's, edited one for
one (the docs write their 8 frames at ``fps=4``, the rate Text2Video-Zero's own code samples its
inputs at: a row sets ``fps: 4`` for the docs' file).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field

from ._tiny import clip_text_parts, sd_vae
from .base import (
    ResizedVideoParams, LoadOptions, Rendered, Stopwatch, fps_field, from_pretrained, rendered_videos, video_field,
)
from .family import Family, one_video_per_call
from ..video import output_size, read_video
from .text2video_zero_controlnet import MAX_FRAMES, decode_frames

if TYPE_CHECKING:
    import torch

#: The docs write the pipeline's default PIL frames (``imageio.mimsave``): ``numpy_to_pil`` rounds.
UINT8_CONVERSION = "round"

#: Short keys for the released checkpoints.
MODELS = {
    "t2v-zero-pix2pix": {"source": "timbrooks/instruct-pix2pix", "variant": "none"},  # the docs load it without one
}


class Params(ResizedVideoParams):
    """The call parameters of ``StableDiffusionInstructPix2PixPipeline``, with its own defaults, and the input video."""

    prompt: str = Field(min_length=1, description="the edit instruction, e.g. 'make it Van Gogh Starry Night style'")
    video: Path = video_field("the video to edit (a file, or '@<row id>' for another row's output)")
    num_frames: int | None = Field(
        None, ge=1, le=MAX_FRAMES, description=f"edit the video's first N frames; default: all (at most {MAX_FRAMES})"
    )
    num_inference_steps: int = Field(100, ge=1, le=1000, description="denoising steps")
    guidance_scale: float = Field(
        7.5,
        gt=1.0,
        le=100.0,
        description="how closely to follow the instruction; must be > 1: the cross-frame attention expects the guided batch",
    )
    image_guidance_scale: float = Field(
        1.5,
        ge=1.0,
        le=100.0,
        description="how closely to keep to the input frames; must be >= 1 (the pipeline's guided batch)",
    )
    negative_prompt: str | None = Field(None, description="what to steer away from; default: the empty prompt")
    eta: float = Field(0.0, ge=0.0, le=1.0, description="DDIM eta (scheduler: ddim only): 0 is deterministic DDIM")
    fps: int | None = fps_field(None)


def load(options: LoadOptions, device: str):
    """The pipeline, on ``device``, ready to call."""
    from diffusers import StableDiffusionInstructPix2PixPipeline
    from diffusers.pipelines.deprecated.text_to_video_synthesis.pipeline_text_to_video_zero import (
        CrossFrameAttnProcessor,
    )

    pipe = from_pretrained(StableDiffusionInstructPix2PixPipeline, options)
    # cross-frame attention; batch_size=3: the text, image and unconditional thirds of the batch
    pipe.unet.set_attn_processor(CrossFrameAttnProcessor(batch_size=3))
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def render(pipe, params: Params, generator: torch.Generator, device: str) -> Rendered:
    """Render one video; input encoding + denoising and the VAE decode are timed apart."""
    # 1. the input frames: the video's first num_frames, resized to the output size if one is given
    frames, fps = read_video(params.video, params.num_frames, MAX_FRAMES)
    width, height = output_size(frames[0].size, params.width, params.height, pipe.vae_scale_factor)
    frames = [frame.resize((width, height)) if frame.size != (width, height) else frame for frame in frames]
    count = len(frames)

    # 2. encode the instructions and the frames, denoise all frames in one batch; stop at the latents
    watch = Stopwatch(device)
    negative = [params.negative_prompt] * count if params.negative_prompt is not None else None
    latents = pipe(
        prompt=[params.prompt] * count,
        image=frames,
        num_inference_steps=params.num_inference_steps,
        guidance_scale=params.guidance_scale,
        image_guidance_scale=params.image_guidance_scale,
        negative_prompt=negative,  # a list, as the prompt is: the pipeline refuses a str beside a list
        eta=params.eta,
        generator=generator,
        output_type="latent",
    ).images
    denoise_s = watch.lap()

    # 3. decode exactly as the pipeline does after its loop (the ControlNet family's decode, without a generator)
    video = decode_frames(pipe, latents)
    return rendered_videos(pipe, watch, denoise_s, [video], UINT8_CONVERSION, params.fps or fps)[0]


def build_tiny(path: Path) -> None:
    """Save a random-weight InstructPix2Pix in the layout of the real repo (fp32 and fp16 variant weights).

    Modelled on diffusers' ``tests/pipelines/stable_diffusion/test_stable_diffusion_instruction_pix2pix``
    dummy components: an SD 1.5 UNet whose ``conv_in`` takes 8 channels (the noisy latents and
    the input image's latents), two levels deep; a four-level VAE (8x, as the real one); a 2-layer
    CLIP text encoder; a tiny safety checker and its feature extractor, as the real repo ships
    them; the real repo's Euler-ancestral scheduler config.
    """
    import torch
    from diffusers import (
        EulerAncestralDiscreteScheduler,
        StableDiffusionInstructPix2PixPipeline,
        UNet2DConditionModel,
    )
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPImageProcessor

    from ._tiny import save_with_fp16_variant

    tokenizer, text_encoder = clip_text_parts()
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=8,  # noisy latents + image latents
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(16, 32),
        layers_per_block=1,
        norm_num_groups=8,
        cross_attention_dim=32,
        attention_head_dim=4,
    )
    vae = sd_vae()
    torch.manual_seed(0)
    layers = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4)
    safety_checker = StableDiffusionSafetyChecker(
        CLIPConfig(text_config=layers, vision_config={**layers, "image_size": 32, "patch_size": 8}, projection_dim=32)
    )
    # Euler ancestral with SD 1.5's betas: what timbrooks/instruct-pix2pix ships, as far as its model card
    # and users' code show (they also set it explicitly); not checked against the hub, which is offline here
    scheduler = EulerAncestralDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        prediction_type="epsilon",
        steps_offset=1,
    )
    pipe = StableDiffusionInstructPix2PixPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=safety_checker,
        feature_extractor=CLIPImageProcessor(crop_size=32, size=32),  # the tiny checker's 32 px input
    )
    save_with_fp16_variant(pipe, path)  # fp32 configs: the docs' plain from_pretrained(folder) loads float32


FAMILY = Family(
    name="text2video-zero-pix2pix",
    pipeline_class="StableDiffusionInstructPix2PixPipeline",
    description="Video Instruct-Pix2Pix (Text2Video-Zero): video + edit instruction -> edited video, cross-frame attention",
    models=MODELS,
    params=Params,
    load=load,
    render=one_video_per_call(render),
    build_tiny=build_tiny,
    uint8_conversion=UINT8_CONVERSION,
    # Its cross-frame attention processor is imported from diffusers.pipelines.deprecated (there since
    # 0.38): the releases it is checked on; widen it once its contract test passes on a newer one.
    diffusers=">=0.42,<0.43",
)
