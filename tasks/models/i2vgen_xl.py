"""I2VGen-XL: image + prompt -> video (deprecated in diffusers since 0.38, still importable).

Loaded and called as in the pipeline's docstring example (``I2VGenXLPipeline`` in
``diffusers/pipelines/deprecated/i2vgen_xl``): fp16 weights (``variant="fp16"``), a prompt, the
conditioning image as loaded (the pipeline center-crops it to width x height itself), a
negative prompt, 50 steps at guidance 9.0, the repo's DDIM scheduler. The docs add
``enable_model_cpu_offload()``; a batch worker keeps the pipeline on its GPU instead.

A seed means what the docs' ``generator = torch.manual_seed(8888)`` means: torch's default
generator of the job's generator device, seeded, passed as the call's generator
(:func:`~tasks.models.base.global_generator`, which also leaves the process's global RNG as it
was). ``prepare_image_latents`` samples the VAE's latent distribution with
``self.vae.encode(image).latent_dist.sample()``, without the call's generator, so that noise
comes from torch's global RNG; in the docs' call that RNG *is* the generator: on the CPU the image
noise and then the latents are one stream. (A separate ``torch.Generator`` next to a separately
seeded global RNG, as this family did before, gives other frames on the CPU.) On a GPU the image
noise comes from the GPU's global RNG, seeded with the seed, and the latents from the CPU's, as
the docs' call does there.

The frames are converted as the docs' PIL frames are (rounded: ``UINT8_CONVERSION``). ``fps`` is
another name of ``target_fps``: one rate, the UNet's conditioning and the mp4's (default 16, the
pipeline's). The docs' ``export_to_gif`` writes at its own default, 10 fps, while conditioning on
16: a row that wants the docs' file rate sets ``fps: 10``, which also conditions the model on 10
(two rates that could disagree are not offered).

One departure from a plain call, for this stack: ``clip_skip=None``; the pipeline passes
``clip_skip=1`` by default, which reads ``text_encoder.text_model``, gone in transformers >= 5.6
(diffusers issue #14124).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field

from ._tiny import clip_text_parts, sd_vae
from .base import (
    LoadOptions,
    Rendered,
    Stopwatch,
    VideoParams,
    decode_latents,
    fold_fps,
    fps_is,
    from_pretrained,
    global_generator,
    image_field,
    rendered_videos,
)
from .family import Family, one_video_per_call

if TYPE_CHECKING:
    import torch

#: The docs' frames are PIL images (the pipeline's default output): ``numpy_to_pil`` rounds.
UINT8_CONVERSION = "round"

#: Short keys for the released checkpoints.
MODELS = {
    "i2vgen-xl": "ali-vilab/i2vgen-xl",
}


class Params(VideoParams):
    """The call parameters of ``I2VGenXLPipeline``, with its own defaults."""

    prompt: str = Field(min_length=1, description="what the video shows and how it moves")
    image: Path = image_field("conditioning (first) image; the pipeline center-crops it to width x height")
    negative_prompt: str | None = Field(None, description="what to steer away from; default: the empty prompt")
    height: int = Field(704, ge=16, le=4096, multiple_of=8, description="output height in pixels")
    width: int = Field(1280, ge=16, le=4096, multiple_of=8, description="output width in pixels")
    target_fps: int = Field(
        16, ge=1, le=240, description="frame rate: UNet micro-conditioning and the mp4's rate (row key `fps`: the same)"
    )
    fps: int | None = fps_is("target_fps")
    num_frames: int = Field(16, ge=1, le=512, description="frames to generate")
    num_inference_steps: int = Field(50, ge=1, le=1000, description="denoising steps")
    guidance_scale: float = Field(9.0, ge=0.0, le=100.0, description="classifier-free guidance; <= 1 turns it off")
    eta: float = Field(0.0, ge=0.0, le=1.0, description="DDIM eta: 0 is deterministic DDIM, 1 is DDPM-like noise")
    decode_chunk_size: int | None = Field(
        1, ge=1, le=512, description="frames decoded at once; higher uses more memory; None: all at once"
    )

    _fps = fold_fps("target_fps")


def load(options: LoadOptions, device: str):
    """The pipeline, on ``device``, ready to call."""
    from diffusers import I2VGenXLPipeline

    pipe = from_pretrained(I2VGenXLPipeline, options)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def render(pipe, params: Params, generator: torch.Generator, device: str) -> Rendered:
    """Render one video; the denoising loop and the VAE decode are timed apart."""
    from diffusers.utils import load_image

    # 1. the conditioning image, as loaded: the pipeline crops and resizes it itself
    image = load_image(str(params.image))

    # 2. encode prompt and image, denoise; stop at the latents (the docs' seeding: one stream, see above)
    watch = Stopwatch(device)
    with global_generator(generator, device) as docs_generator:
        latents = pipe(
            prompt=params.prompt,
            image=image,
            height=params.height,
            width=params.width,
            target_fps=params.target_fps,
            num_frames=params.num_frames,
            num_inference_steps=params.num_inference_steps,
            guidance_scale=params.guidance_scale,
            negative_prompt=params.negative_prompt,
            eta=params.eta,
            generator=docs_generator,
            output_type="latent",
            clip_skip=None,  # the default 1 fails with transformers >= 5.6 (diffusers #14124)
        ).frames
    denoise_s = watch.lap()

    # 3. decode exactly as the pipeline does after its loop
    frames = decode_latents(pipe, latents, decode_chunk_size=params.decode_chunk_size)
    return rendered_videos(pipe, watch, denoise_s, [frames], UINT8_CONVERSION, params.target_fps)[0]


def build_tiny(path: Path) -> None:
    """Save a random-weight I2VGen-XL in the layout of the real repo (fp32 and fp16 variant weights)."""
    import torch
    from diffusers import DDIMScheduler, I2VGenXLPipeline
    from diffusers.models.unets import I2VGenXLUNet
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    from ._tiny import save_with_fp16_variant

    tokenizer, text_encoder = clip_text_parts()
    torch.manual_seed(0)
    # the real UNet's block types, two levels deep instead of four
    unet = I2VGenXLUNet(
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
        up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
        block_out_channels=(16, 32),
        layers_per_block=1,
        norm_num_groups=8,
        cross_attention_dim=32,
        attention_head_dim=4,
    )
    vae = sd_vae()
    torch.manual_seed(0)
    # the pipeline resizes the image to the feature extractor's crop size (224 px in the real repo)
    image_encoder = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=32,
            projection_dim=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=32,
            patch_size=8,
            intermediate_size=37,
        )
    )
    # The released checkpoint's scheduler config (ali-vilab/i2vgen-xl, scheduler/scheduler_config.json).
    scheduler = DDIMScheduler(
        beta_start=0.0001,
        beta_end=0.02,
        beta_schedule="squaredcos_cap_v2",
        clip_sample=False,
        num_train_timesteps=1000,
        prediction_type="v_prediction",
        rescale_betas_zero_snr=True,
        set_alpha_to_one=True,
        steps_offset=1,
        timestep_spacing="leading",
    )
    pipe = I2VGenXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        image_encoder=image_encoder,
        feature_extractor=CLIPImageProcessor(crop_size=32, size=32),
        unet=unet,
        scheduler=scheduler,
    )
    save_with_fp16_variant(pipe, path)  # fp32 configs: the docs' plain from_pretrained(folder) loads float32


FAMILY = Family(
    name="i2vgen-xl",
    pipeline_class="I2VGenXLPipeline",
    description="deprecated in diffusers: I2VGen-XL: image + prompt -> video, target_fps conditioning, DDIM",
    models=MODELS,
    params=Params,
    load=load,
    render=one_video_per_call(render),
    build_tiny=build_tiny,
    uint8_conversion=UINT8_CONVERSION,
    batched_guidance="guidance_scale",
    deprecated=True,
    # The releases it is checked on; widen it once its contract test passes on a newer one.
    diffusers=">=0.42,<0.43",
)
