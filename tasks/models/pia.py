"""PIA (Personalized Image Animator): image + prompt -> video (deprecated in diffusers since 0.38, still importable).

Loaded and called as in the diffusers docs (``api/pipelines/pia`` and the ``PIAPipeline``
docstring in ``diffusers/pipelines/deprecated/pia``): ``MotionAdapter.from_pretrained(adapter)``
and ``PIAPipeline.from_pretrained(base, motion_adapter=adapter)`` in float16, the base repo's
scheduler config as an ``EulerDiscreteScheduler``, VAE slicing on, the image resized to the output
size (512x512 by default), a generator on the CPU. The docs add ``enable_model_cpu_offload()``:
here the row option ``offload: model``. PIA's adapter carries, besides the motion modules, a
9-channel input convolution (latents + mask + image latents), which the pipeline puts into the
UNet it builds from the SD 1.5 base and the adapter.

FreeInit: ``free_init: true`` and the ``free_init_*`` keys are ``pipe.enable_free_init(...)``'s
arguments, with its defaults (``use_fast_sampling`` False among them); the docs' example,
``enable_free_init(method="butterworth", use_fast_sampling=True)``, is ``free_init: true,
free_init_use_fast_sampling: true``. The pipeline is cached between jobs, so every job switches
it on or off (``animatediff.set_free_init``). The docs' FreeInit example also swaps in ``DDIMScheduler.from_config(pipe.scheduler.config)``
(row option ``scheduler: ddim``): with this family's Euler scheduler FreeInit fails in diffusers
0.42.1 (FreeInit's re-noising looks up timestep 999, which Euler's "leading" SD 1.5 schedule
lacks: IndexError), so such a job fails with a message saying so.

Departures from the docs, both forced by this stack:
- the docs' ``pipe.enable_vae_slicing()`` is gone from this pipeline in diffusers 0.42.1
  (AttributeError); slicing is switched on where it lives, ``pipe.vae.enable_slicing()``.
- ``clip_skip`` is not a parameter: with transformers >= 5.6 it fails (diffusers issue #14124).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field, ValidationInfo, field_validator

from . import animatediff
from .base import (
    LoadOptions, Rendered, Stopwatch, VideoParams,
    decode_latents, fps_field, from_pretrained, image_field, rendered_videos,
)
from .family import Component, Family, one_video_per_call

if TYPE_CHECKING:
    import torch

#: The docs' frames are PIL images (the pipeline's default output, written with ``export_to_gif``):
#: ``numpy_to_pil`` rounds.
UINT8_CONVERSION = "round"

#: Short keys for the released checkpoints: the SD 1.5 base and PIA's adapter, as the docs pair them.
MODELS = {
    "pia": {
        "source": "SG161222/Realistic_Vision_V6.0_B1_noVAE",
        "variant": "none",  # the docs load it without a variant
        "adapter": "openmmlab/PIA-condition-adapter",
    },
}


#: The default ``fps``: the rate the docs' ``export_to_gif(frames, "pia-animation.gif")`` writes at, its
#: default 10. The pipeline takes no fps (this family wrote AnimateDiff's 8 before ``fps`` was a row key).
FPS = 10

#: ``prepare_mask_coef_by_statistics``'s presets: 0-2 small/moderate/large motion, 3-5 loops,
#: 6-8 style transfer (small/moderate/large).
MOTION_SCALES = 9


class Params(VideoParams, animatediff.FreeInitParams):
    """The call parameters of ``PIAPipeline``, with its own defaults, and FreeInit."""

    image: Path = image_field("the image to animate (the first frame); resized to width x height as the docs do")
    prompt: str = Field(min_length=1, description="what the video shows and how it moves")
    negative_prompt: str | None = Field(None, description="what to steer away from; default: the empty prompt")
    height: int | None = Field(
        None, ge=16, le=4096, multiple_of=8, description="output height in pixels; default: the UNet's (512 for SD 1.5)"
    )
    width: int | None = Field(
        None, ge=16, le=4096, multiple_of=8, description="output width in pixels; default: the UNet's (512 for SD 1.5)"
    )
    num_frames: int = Field(
        16,
        ge=1,
        le=animatediff.MAX_FRAMES,
        description="frames to generate; the adapter holds at most 32",
    )
    num_inference_steps: int = Field(50, ge=1, le=1000, description="denoising steps")
    strength: float = Field(
        1.0, gt=0.0, le=1.0, description="how far the frames may go from the image; below 1 starts from it, noised"
    )
    guidance_scale: float = Field(7.5, ge=0.0, le=100.0, description="classifier-free guidance; <= 1 turns it off")
    eta: float = Field(0.0, ge=0.0, le=1.0, description="DDIM eta (only with scheduler: ddim); 0 is deterministic")
    motion_scale: int = Field(
        0, ge=0, lt=MOTION_SCALES, description="motion preset: 0-2 small/moderate/large, 3-5 loop, 6-8 style transfer"
    )
    fps: int = fps_field(FPS)
    free_init: bool = Field(
        False, description="FreeInit: refine the initial noise's low frequencies (slower; fails with euler: use ddim)"
    )

    @field_validator("strength")
    @classmethod
    def _leaves_a_step(cls, strength: float, info: ValidationInfo) -> float:
        # the pipeline denoises int(num_inference_steps * strength) steps; none fails deep inside it
        steps = info.data.get("num_inference_steps")
        if steps is not None and int(steps * strength) < 1:
            raise ValueError(f"with num_inference_steps={steps} this strength leaves no denoising step; raise either")
        return strength


def load(options: LoadOptions, device: str):
    """The pipeline, on ``device``, ready to call."""
    from diffusers import EulerDiscreteScheduler, PIAPipeline

    # 1. the adapter, then the base with it (the pipeline builds the 9-channel motion UNet from both)
    pipe = from_pretrained(PIAPipeline, options, motion_adapter=animatediff.load_adapter(options))
    # 2. the docs' scheduler: Euler from the base repo's config
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.vae.enable_slicing()  # the docs' pipe.enable_vae_slicing(), which diffusers 0.42 no longer has
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def render(pipe, params: Params, generator: torch.Generator, device: str) -> Rendered:
    """Render one video; the denoising loop and the VAE decode are timed apart."""
    from diffusers.utils import load_image

    # 1. FreeInit on or off: the cached pipeline keeps the last job's setting otherwise
    animatediff.set_free_init(pipe, params)

    # 2. the image, resized to the output size as the docs do (the pipeline does not resize it)
    default_size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    height, width = params.height or default_size, params.width or default_size
    image = load_image(str(params.image)).resize((width, height))

    # 3. encode prompt and image, denoise; stop at the latents
    watch = Stopwatch(device)
    try:
        latents = pipe(
            image=image,
            prompt=params.prompt,
            negative_prompt=params.negative_prompt,
            strength=params.strength,
            height=height,
            width=width,
            num_frames=params.num_frames,
            num_inference_steps=params.num_inference_steps,
            guidance_scale=params.guidance_scale,
            eta=params.eta,
            motion_scale=params.motion_scale,
            generator=generator,
            output_type="latent",
        ).frames
    except IndexError as exc:
        if params.free_init:
            raise ValueError(
                f"FreeInit fails with {type(pipe.scheduler).__name__} in diffusers 0.42 (its re-noising asks for "
                "timestep 999, which this schedule lacks); add `scheduler: ddim` to the row, as the docs' FreeInit "
                "example does"
            ) from exc
        raise
    denoise_s = watch.lap()

    # 4. decode exactly as the pipeline does after its loop (all frames in one VAE call, sliced)
    frames = decode_latents(pipe, latents)
    return rendered_videos(pipe, watch, denoise_s, [frames], UINT8_CONVERSION, params.fps)[0]


def build_tiny(path: Path) -> None:
    """The tiny base: AnimateDiff's Stable Diffusion 1.5 pipeline (same bytes), as the real base repos are."""
    animatediff.build_tiny_sd15(path)


def build_tiny_adapter(path: Path) -> None:
    """The tiny PIA adapter: motion modules plus the 9-channel conv_in (latents, mask, image latents)."""
    animatediff.build_tiny_motion_adapter(path, conv_in_channels=9)


FAMILY = Family(
    name="pia",
    pipeline_class="PIAPipeline",
    description="deprecated in diffusers: PIA: image + prompt -> video, a PIA MotionAdapter in SD 1.5, FreeInit, 10 fps",
    models=MODELS,
    params=Params,
    load=load,
    render=one_video_per_call(render),
    build_tiny=build_tiny,
    uint8_conversion=UINT8_CONVERSION,
    batched_guidance="guidance_scale",
    components={
        "adapter": Component(description="PIA MotionAdapter (motion modules and 9-channel conv_in)", build_tiny=build_tiny_adapter),
    },
    # the same tiny SD 1.5 base; the adapter folder is PIA's own
    tiny_base="animatediff",
    # adapters ride on a plain SD 1.5 repo
    base_pipeline_class="StableDiffusionPipeline",
    deprecated=True,
    # The releases it is checked on; widen it once its contract test passes on a newer one.
    diffusers=">=0.42,<0.43",
)
