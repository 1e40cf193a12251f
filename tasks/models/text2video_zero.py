"""Text2Video-Zero: text -> video from a plain Stable Diffusion 1.5 (deprecated in diffusers since 0.38).

Loaded and called as in the diffusers docs (``api/pipelines/text_to_video_zero``, "Text-To-Video"):
``TextToVideoZeroPipeline.from_pretrained(sd15, torch_dtype=torch.float16).to("cuda")``, then
``pipe(prompt=prompt).images``, converted by hand with ``(r * 255).astype("uint8")`` (truncated:
``UINT8_CONVERSION``) and written out at 4 fps (``fps``, a row key). Nothing else is set up: the SD 1.5 repo's own
scheduler (PNDM) and safety checker run as they do there. The diffusers test of this pipeline
swaps in ``DDIMScheduler.from_config(pipe.scheduler.config)``, the paper's sampler: a row gets
that with ``scheduler: ddim``. (The pipeline copies the scheduler after the first frame's steps
and reuses the copy for all frames, so PNDM's multistep history, the first frame's alone, is
broadcast onto every frame for its next steps; stateless DDIM has no such history.)

How it works, and what the parameters mean: the first frame is denoised to step ``t1`` and on
to ``t0``; its ``t0`` latents are copied to the other frames, shifted by the motion field
(``motion_field_strength_x/y`` per frame), noised back to ``t1`` and denoised together with the
first frame, every frame's self-attention looking at the first frame (cross-frame attention).

Three departures from a plain call, all for this stack:
- ``t0 < t1 < num_inference_steps`` is checked when the row is read: the defaults 44/47 are for
  50 steps; with fewer the pipeline dies of an IndexError mid-call, and out of order it skips steps.
- a repo saved without a safety checker (``[null, null]`` in model_index.json, as many SD 1.5
  fine-tunes are) is loaded with those parts passed as ``None``, the one way this pipeline reloads it.
- the decode after the loop is done here (``output_type="latent"`` stops before it), so that it
  is timed apart; it runs the pipeline's own ``decode_latents`` and ``run_safety_checker``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, ValidationInfo, field_validator

from ._tiny import clip_text_parts, sd_vae
from .base import LoadOptions, Rendered, Stopwatch, VideoParams, fps_field, from_pretrained, rendered_videos
from .family import Family, one_video_per_call

if TYPE_CHECKING:
    import torch

#: The docs convert the pipeline's float frames by hand: ``[(r * 255).astype("uint8") for r in result]``.
UINT8_CONVERSION = "truncate"

#: Short keys for the checkpoints the docs use (any SD 1.5 repo or folder works as a model).
MODELS = {
    "text2video-zero-sd15": "stable-diffusion-v1-5/stable-diffusion-v1-5",
}

#: The frame rate the docs write at (``imageio.mimsave("video.mp4", result, fps=4)``).
FPS = 4


class Params(VideoParams):
    """The call parameters of ``TextToVideoZeroPipeline``, with its own defaults."""

    prompt: str = Field(min_length=1, description="what the video shows")
    negative_prompt: str | None = Field(None, description="what to steer away from; default: the empty prompt")
    video_length: int = Field(8, ge=1, le=256, description="frames to generate (the docs write them at 4 fps)")
    height: int | None = Field(
        None, ge=8, le=4096, multiple_of=8, description="output height in pixels; default: the UNet's (512 for SD 1.5)"
    )
    width: int | None = Field(
        None, ge=8, le=4096, multiple_of=8, description="output width in pixels; default: the UNet's (512 for SD 1.5)"
    )
    num_inference_steps: int = Field(50, ge=1, le=1000, description="denoising steps (t0 and t1 count in these)")
    guidance_scale: float = Field(7.5, ge=0.0, le=100.0, description="classifier-free guidance; <= 1 turns it off")
    eta: float = Field(0.0, ge=0.0, le=1.0, description="DDIM eta (scheduler: ddim only): 0 is deterministic DDIM")
    motion_field_strength_x: float = Field(
        12.0, ge=-512.0, le=512.0, description="rightward shift per frame, in 1/512ths of the frame width"
    )
    motion_field_strength_y: float = Field(
        12.0, ge=-512.0, le=512.0, description="downward shift per frame, in 1/512ths of the frame height"
    )
    t0: int = Field(
        44, ge=0, le=999, validate_default=True, description="step (of num_inference_steps) where motion is added; < t1"
    )
    t1: int = Field(
        47,
        ge=1,
        le=1000,
        validate_default=True,
        description="step the warped frames are noised back to; t0 < t1 < num_inference_steps",
    )
    fps: int = fps_field(FPS)

    @field_validator("t1")
    @classmethod
    def _t0_below_t1_below_steps(cls, t1: int, info: ValidationInfo) -> int:
        """The pipeline indexes its timesteps with -t0-1 and -t1-1; out of order they go wrong late or silently."""
        steps, t0 = info.data.get("num_inference_steps"), info.data.get("t0")
        if steps is None or t0 is None:  # already reported as invalid themselves
            return t1
        if not t0 < t1 < steps:
            raise ValueError(
                f"needs t0 < t1 < num_inference_steps, got t0={t0}, t1={t1}, num_inference_steps={steps}; "
                "the defaults t0=44, t1=47 are for 50 steps: with fewer steps set both below num_inference_steps"
            )
        return t1


def load(options: LoadOptions, device: str):
    """The pipeline, on ``device``, ready to call."""
    from diffusers import TextToVideoZeroPipeline

    pipe = from_pretrained(TextToVideoZeroPipeline, options, **_absent_parts(options))
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def _absent_parts(options: LoadOptions) -> dict[str, Any]:
    """``{part: None}`` for the parts a repo's model_index.json saves as ``[null, null]``.

    ``TextToVideoZeroPipeline`` declares no optional components, so ``from_pretrained`` refuses a
    repo without a safety checker ("expected [...] but only {...} were passed") unless those parts
    are passed as ``None``; the real SD 1.5 repo has them, many fine-tunes do not.
    """
    if Path(options.source).is_dir():
        index_file = Path(options.source) / "model_index.json"
    else:
        from huggingface_hub import hf_hub_download

        index_file = Path(hf_hub_download(options.source, "model_index.json", revision=options.revision))
    index = json.loads(index_file.read_text())
    return {part: None for part, entry in index.items() if entry == [None, None]}


def render(pipe, params: Params, generator: torch.Generator, device: str) -> Rendered:
    """Render one video; the denoising and the VAE decode (with the safety check) are timed apart."""
    import torch

    # 1. encode the prompt and denoise first frame, then all frames; stop at the latents
    watch = Stopwatch(device)
    latents = pipe(
        prompt=params.prompt,
        video_length=params.video_length,
        height=params.height,
        width=params.width,
        num_inference_steps=params.num_inference_steps,
        guidance_scale=params.guidance_scale,
        negative_prompt=params.negative_prompt,
        eta=params.eta,
        generator=generator,
        motion_field_strength_x=params.motion_field_strength_x,
        motion_field_strength_y=params.motion_field_strength_y,
        t0=params.t0,
        t1=params.t1,
        output_type="latent",
    ).images  # (frames, channels, h, w): this pipeline returns frames flat, in `.images`
    denoise_s = watch.lap()

    # 2. decode exactly as the pipeline does after its loop: all frames at once, then the safety
    #    checker (it blacks out flagged frames), on the device and in the dtype the pipeline uses
    with torch.no_grad():
        frames = pipe.decode_latents(latents)
        frames, _ = pipe.run_safety_checker(frames, pipe._execution_device, pipe.text_encoder.dtype)
    return rendered_videos(pipe, watch, denoise_s, [frames], UINT8_CONVERSION, params.fps)[0]


# -- the tiny checkpoint -------------------------------------------------------------------------


def build_tiny(path: Path) -> None:
    """Save a random-weight Stable Diffusion 1.5 in the layout of the real repo (fp32 and fp16 variant weights).

    All seven parts of ``stable-diffusion-v1-5/stable-diffusion-v1-5`` (safety checker and its
    feature extractor included, so the docs' plain ``from_pretrained`` loads it), two levels
    deep instead of four, with the repo's own PNDM scheduler config.
    """
    import torch
    from diffusers import PNDMScheduler, TextToVideoZeroPipeline, UNet2DConditionModel
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPImageProcessor

    from ._tiny import save_with_fp16_variant

    tokenizer, text_encoder = clip_text_parts()
    torch.manual_seed(0)
    # the real UNet's block types (cross-attention where the cross-frame attention goes), two levels
    unet = UNet2DConditionModel(
        sample_size=8,  # default size 64 px, as the real 64 gives 512 px
        in_channels=4,
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
    # its concept embeddings start as ones: random image embeddings never come near them, so
    # the tiny checker flags nothing (a test raises its thresholds to see it black frames out)
    layers = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4)
    safety_checker = StableDiffusionSafetyChecker(
        CLIPConfig(
            text_config=layers,
            vision_config={**layers, "image_size": 32, "patch_size": 8},
            projection_dim=32,
        )
    )
    # The released checkpoint's scheduler config (stable-diffusion-v1-5, scheduler/scheduler_config.json).
    scheduler = PNDMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        set_alpha_to_one=False,
        skip_prk_steps=True,
        steps_offset=1,
    )
    # PNDM takes no clip_sample, but the real config carries `"clip_sample": false`, and
    # `scheduler: ddim` (DDIMScheduler.from_config) reads it: DDIM's default would clip.
    scheduler.register_to_config(clip_sample=False)
    pipe = TextToVideoZeroPipeline(
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
    name="text2video-zero",
    pipeline_class="TextToVideoZeroPipeline",
    description="deprecated in diffusers: Text2Video-Zero: text -> video from any SD 1.5, "
    "motion-field warped latents and cross-frame attention",
    models=MODELS,
    params=Params,
    load=load,
    render=one_video_per_call(render),
    build_tiny=build_tiny,
    uint8_conversion=UINT8_CONVERSION,
    frames_param="video_length",
    deprecated=True,
    # The releases it is checked on; widen it once its contract test passes on a newer one.
    diffusers=">=0.42,<0.43",
)
