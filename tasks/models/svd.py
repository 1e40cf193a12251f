"""Stable Video Diffusion (SVD, SVD-XT): image-to-video, conditioned on fps and motion.

Loaded and called as in the diffusers docs (``using-diffusers/svd``): fp16 weights
(``variant="fp16"``) on a GPU, the conditioning image resized to the output size
(1024x576 by default), frames decoded ``decode_chunk_size`` at a time. Rows that differ only
in their image and seed may share one call (``render_batch``, ``videosweep run --batch N``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field

from .base import (
    LoadOptions, Rendered, Stopwatch, VideoParams, decode_latents, from_pretrained, image_field, rendered_videos,
)
from .family import Family

if TYPE_CHECKING:
    import torch

#: The docs' frames are PIL images (the pipeline's default output): ``numpy_to_pil`` rounds.
UINT8_CONVERSION = "round"

#: Short keys for the released checkpoints.
MODELS = {
    "svd": "stabilityai/stable-video-diffusion-img2vid",
    "svd-xt": "stabilityai/stable-video-diffusion-img2vid-xt",
    "svd-xt-1-1": "stabilityai/stable-video-diffusion-img2vid-xt-1-1",
}


class Params(VideoParams):
    """The call parameters of ``StableVideoDiffusionPipeline``, with its own defaults."""

    image: Path = image_field("conditioning image; resized to width x height as the docs do")
    height: int = Field(576, ge=16, le=4096, multiple_of=8, description="output height in pixels")
    width: int = Field(1024, ge=16, le=4096, multiple_of=8, description="output width in pixels")
    num_frames: int | None = Field(
        None, ge=1, le=512, description="frames to generate; default: the UNet's (14 for svd, 25 for svd-xt)"
    )
    num_inference_steps: int = Field(25, ge=1, le=1000, description="denoising steps")
    min_guidance_scale: float = Field(1.0, ge=0.0, le=100.0, description="guidance on the first frame")
    max_guidance_scale: float = Field(3.0, ge=0.0, le=100.0, description="guidance on the last frame")
    fps: int = Field(7, ge=1, le=240, description="frame rate: conditioning (as fps - 1) and the mp4's rate")
    motion_bucket_id: int = Field(127, ge=0, le=255, description="amount of motion; higher moves more")
    noise_aug_strength: float = Field(
        0.02, ge=0.0, le=1.0, description="noise added to the image; more departs further from it"
    )
    decode_chunk_size: int | None = Field(
        None, ge=1, le=512, description="frames decoded at once; lower saves memory; default: all"
    )


def load(options: LoadOptions, device: str):
    """The pipeline, on ``device``, ready to call."""
    from diffusers import StableVideoDiffusionPipeline

    pipe = from_pretrained(StableVideoDiffusionPipeline, options)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def render_batch(pipe, params_list: list[Params], generators: list[torch.Generator], device: str) -> list[Rendered]:
    """Render videos whose parameters differ only in ``batch_fields`` in one pipeline call, each with its generator.

    The denoising loop and the decode are timed apart (:func:`~.base.rendered_videos` shares them out).
    """
    from diffusers.utils import load_image

    params = params_list[0]  # the call's parameters; only the images differ

    # 1. the conditioning images, resized as in the docs
    images = [load_image(str(each.image)).resize((params.width, params.height)) for each in params_list]

    # 2. encode the images and denoise; stop at the latents (diffusers draws each video's noise from its own generator)
    watch = Stopwatch(device)
    latents = pipe(
        images,
        height=params.height,
        width=params.width,
        num_frames=params.num_frames,
        num_inference_steps=params.num_inference_steps,
        min_guidance_scale=params.min_guidance_scale,
        max_guidance_scale=params.max_guidance_scale,
        fps=params.fps,
        motion_bucket_id=params.motion_bucket_id,
        noise_aug_strength=params.noise_aug_strength,
        generator=generators,
        output_type="latent",
    ).frames
    denoise_s = watch.lap()

    # 3. decode exactly as the pipeline does after its loop, one video at a time: a decode chunk of
    #    the batch's frames would run the temporal decoder across two videos
    num_frames = latents.shape[1]
    videos = [decode_latents(pipe, one, num_frames, params.decode_chunk_size or num_frames) for one in latents.split(1)]
    return rendered_videos(pipe, watch, denoise_s, videos, UINT8_CONVERSION, params.fps)


def build_tiny(path: Path) -> None:
    """Save a random-weight SVD in the layout of the real repo (fp32 and fp16 variant weights)."""
    import torch
    from diffusers import (
        AutoencoderKLTemporalDecoder,
        EulerDiscreteScheduler,
        StableVideoDiffusionPipeline,
        UNetSpatioTemporalConditionModel,
    )
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    from ._tiny import save_with_fp16_variant

    torch.manual_seed(0)
    unet = UNetSpatioTemporalConditionModel(
        sample_size=32,
        block_out_channels=(32, 64),
        layers_per_block=1,
        in_channels=8,
        out_channels=4,
        # attention only at the lower resolution keeps a 2-core CPU at ~0.1 s a step
        down_block_types=("DownBlockSpatioTemporal", "CrossAttnDownBlockSpatioTemporal"),
        up_block_types=("CrossAttnUpBlockSpatioTemporal", "UpBlockSpatioTemporal"),
        cross_attention_dim=32,
        num_attention_heads=(2, 4),
        projection_class_embeddings_input_dim=96,
        addition_time_embed_dim=32,
        num_frames=8,
    )
    torch.manual_seed(0)
    vae = AutoencoderKLTemporalDecoder(
        block_out_channels=[32, 32, 64],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 3,
        latent_channels=4,
    )
    torch.manual_seed(0)
    # SVD resizes the image to 224 px for its encoder, so the tiny encoder takes 224 px in 32 px patches.
    image_encoder = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=32,
            projection_dim=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=224,
            patch_size=32,
            intermediate_size=37,
        )
    )
    # The released checkpoints' scheduler config.
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        interpolation_type="linear",
        num_train_timesteps=1000,
        prediction_type="v_prediction",
        sigma_max=700.0,
        sigma_min=0.002,
        steps_offset=1,
        timestep_spacing="leading",
        timestep_type="continuous",
        use_karras_sigmas=True,
    )
    pipe = StableVideoDiffusionPipeline(
        vae=vae,
        image_encoder=image_encoder,
        unet=unet,
        scheduler=scheduler,
        feature_extractor=CLIPImageProcessor(crop_size=224, size=224),
    )
    save_with_fp16_variant(pipe, path)  # fp32 configs: the docs' plain from_pretrained(folder) loads float32


FAMILY = Family(
    name="svd",
    pipeline_class="StableVideoDiffusionPipeline",
    description="Stable Video Diffusion: image -> video, motion_bucket_id / fps / noise_aug_strength conditioning",
    models=MODELS,
    params=Params,
    load=load,
    render=render_batch,
    build_tiny=build_tiny,
    uint8_conversion=UINT8_CONVERSION,
    batch_fields=("image",),
    batched_guidance="max_guidance_scale",
)
