"""Kandinsky 5.0 Video text-to-video (``Kandinsky5T2VPipeline``): Qwen2.5-VL and CLIP text encoders, a
flow-matching DiT and the HunyuanVideo VAE.

Loaded and called as in the diffusers docs (``api/pipelines/kandinsky5_video``, "Basic
Text-to-Video Generation", Lite)::

    pipe = Kandinsky5T2VPipeline.from_pretrained(model_id, dtype=torch.bfloat16)
    pipe = pipe.to("cuda")
    output = pipe(prompt=prompt, negative_prompt=negative_prompt, height=512, width=768,
                  num_frames=121, num_inference_steps=50, guidance_scale=5.0).frames[0]
    export_to_video(output, "output.mp4", fps=24, quality=9)

``from_pretrained`` in the job's dtype, the pipeline's own 512 x 768, 121 frames, 50 steps and
guidance 5.0, PIL frames (rounded, ``UINT8_CONVERSION``) exported at 24 fps (``fps``; the mp4's
quality is the project's writer's). A negative prompt left unset is the pipeline's own ("Static,
2D cartoon, ...", the text the docs pass). The nocfg and distilled checkpoints are run with
``guidance_scale: 1.0`` (and the distilled ones with 16 steps), as the docs say. One video per
call: the transformer attends to every padded prompt token of a batch (the pipeline computes the
prompts' lengths but passes no mask), so a video would depend on the other prompts of its call;
and guidance runs as two transformer passes, not one batch, so ``guidance_cutoff`` does not apply.

Rules the pipeline does not check itself, refused here before anything renders:
- num_frames is 4k+1: the VAE packs the frames after the first by 4, and the pipeline renders
  another count, with a warning only (119 -> 117, 120 -> 121);
- at most 509 frames and 2048 pixels a side: the transformer's rotary tables hold 128 positions
  per axis (latent frames; height and width in 2x2 patches of the 8x latents), and a longer axis
  fails inside it with an index error.
(Height and width must be multiples of 16, which the pipeline checks too.)

The tiny twin: the hub repos' files could not be read offline. It is built from the pipeline's
documented components (``Kandinsky5T2VPipeline.__init__``, diffusers' own tests) in the
layout ``save_pretrained`` writes, with configs as a third-party port describes the released
Lite transformer's (``visual_cond`` on, regular attention, 16 latent channels, 1x2x2 patches)
and a flow-matching Euler scheduler of shift 5. One part differs from the real repos by necessity:
their ``tokenizer`` is a ``Qwen2VLProcessor``, whose video processor transformers builds only
with torchvision, which videosweep does not install; the twin holds that processor's text
tokenizer (``Qwen2Tokenizer``), which is what the pipeline calls (``images=None, videos=None``).
Loading a real Kandinsky 5 repo therefore needs ``pip install torchvision`` (transformers says so
when it is missing).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field, field_validator

from ._tiny import clip_text_parts
from .base import LoadOptions, Rendered, Stopwatch, VideoParams, fps_field, from_pretrained, rendered_videos
from .family import Family, one_video_per_call

if TYPE_CHECKING:
    import numpy as np
    import torch

#: The docs' frames are PIL images (the pipeline's default output): ``numpy_to_pil`` rounds.
UINT8_CONVERSION = "round"

#: Short keys for the released checkpoints (the docs' table; bfloat16 as the docs load them).
MODELS = {
    "kandinsky5-lite": "kandinskylab/Kandinsky-5.0-T2V-Lite-sft-5s-Diffusers",
    "kandinsky5-lite-10s": "kandinskylab/Kandinsky-5.0-T2V-Lite-sft-10s-Diffusers",
    "kandinsky5-lite-nocfg": "kandinskylab/Kandinsky-5.0-T2V-Lite-nocfg-5s-Diffusers",  # guidance_scale: 1.0
    "kandinsky5-lite-distilled": "kandinskylab/Kandinsky-5.0-T2V-Lite-distilled16steps-5s-Diffusers",  # 16 steps, 1.0
    "kandinsky5-pro": "kandinskylab/Kandinsky-5.0-T2V-Pro-sft-5s-Diffusers",  # 19B: the docs offload it
}

#: The frame rate the docs export at (``export_to_video(output, "output.mp4", fps=24, quality=9)``).
FPS = 24
#: Frames after the first are packed by 4 in the VAE's latents (``vae.config.temporal_compression_ratio``).
TEMPORAL_FACTOR = 4
#: Positions in each of the transformer's rotary tables (``Kandinsky5RoPE3D``'s ``max_pos``).
ROPE_POSITIONS = 128
MAX_FRAMES = (ROPE_POSITIONS - 1) * TEMPORAL_FACTOR + 1  # 509
MAX_SIDE = ROPE_POSITIONS * 16  # 8x VAE, then 2x2 patches


class Params(VideoParams):
    """The call parameters of ``Kandinsky5T2VPipeline``, with its own defaults."""

    prompt: str = Field(min_length=1, description="what the video shows")
    negative_prompt: str | None = Field(
        None, description="what to steer away from, with guidance on; default: the pipeline's ('Static, 2D cartoon, ...')"
    )
    height: int = Field(512, ge=16, le=MAX_SIDE, multiple_of=16, description="output height in pixels")
    width: int = Field(768, ge=16, le=MAX_SIDE, multiple_of=16, description="output width in pixels")
    num_frames: int = Field(
        121, ge=1, le=MAX_FRAMES, description="frames to generate, 4k+1 (121 is 5 s at 24 fps; the 10s models: 241)"
    )
    num_inference_steps: int = Field(50, ge=1, le=1000, description="denoising steps (the distilled models: 16)")
    guidance_scale: float = Field(
        5.0, ge=0.0, le=100.0, description="classifier-free guidance; 1 or less turns it off (nocfg and distilled: 1.0)"
    )
    max_sequence_length: int = Field(512, ge=1, le=1024, description="Qwen prompt tokens kept")
    fps: int = fps_field(FPS)

    @field_validator("num_frames")
    @classmethod
    def _num_frames_4k_plus_1(cls, value: int) -> int:
        return check_frames(value)


def check_frames(value: int) -> int:
    """Refuse a frame count that is not 4k+1, naming the count the pipeline would render instead.

    Its rounding (``num_frames // 4 * 4 + 1``) is its own: 118 and 119 go down to 117, 120 up to
    121, unlike the other families' packing VAEs (``base.check_packed_frames``).
    """
    if (value - 1) % TEMPORAL_FACTOR:
        below = (value - 1) // TEMPORAL_FACTOR * TEMPORAL_FACTOR + 1
        raise ValueError(
            f"must be 4k+1 (Kandinsky 5's VAE packs the frames after the first by 4, and the pipeline would render "
            f"{value // TEMPORAL_FACTOR * TEMPORAL_FACTOR + 1} frames for {value}); nearest: {below} or {below + 4}"
        )
    return value


def load(options: LoadOptions, device: str):
    """The pipeline, on ``device``, ready to call."""
    from diffusers import Kandinsky5T2VPipeline

    pipe = from_pretrained(Kandinsky5T2VPipeline, options)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def decode(pipe, latents: torch.Tensor, params: Params) -> np.ndarray:
    """Float frames in [0, 1], (frames, H, W, 3): the pipeline's own decode after its loop, verbatim (one video)."""
    import torch

    latent_frames = (params.num_frames - 1) // pipe.vae_scale_factor_temporal + 1
    latent_height = params.height // pipe.vae_scale_factor_spatial
    latent_width = params.width // pipe.vae_scale_factor_spatial
    with torch.no_grad():
        latents = latents.to(pipe.vae.dtype)
        video = latents.reshape(1, 1, latent_frames, latent_height, latent_width, latents.shape[-1])
        video = video.permute(0, 1, 5, 2, 3, 4)  # [batch, num_videos, channels, frames, height, width]
        video = video.reshape(1, latents.shape[-1], latent_frames, latent_height, latent_width)
        video = video / pipe.vae.config.scaling_factor
        video = pipe.vae.decode(video).sample
        return pipe.video_processor.postprocess_video(video, output_type="np")[0]


def render(pipe, params: Params, generator: torch.Generator, device: str, **inputs) -> Rendered:
    """Render one video (``inputs``: the image-to-video pipeline's ``image``); the loop and the decode timed apart."""
    # 1. encode the prompts and denoise; stop at the latents
    watch = Stopwatch(device)
    latents = pipe(
        **inputs,
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

    # 2. decode exactly as the pipeline does after its loop
    frames = decode(pipe, latents, params)
    return rendered_videos(pipe, watch, denoise_s, [frames], UINT8_CONVERSION, params.fps)[0]


# -- the tiny checkpoint -------------------------------------------------------------------------

#: The Qwen2.5-VL tokenizer's special tokens the processor and template use.
QWEN_SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"
]
#: Template words the twin's tokenizer splits in two, so that the template's system part is the 128 tokens the
#: pipeline cuts off (``prompt_template_encode_start_idx``), as the real tokenizer makes it; the rest are one token
#: each. Which words the real one splits could not be checked offline: these are the template's rarest three.
SPLIT_WORDS = {" dynamism": (" dynam", "ism"), " scren": (" scr", "en"), " postprocessing": (" post", "processing")}


def prompt_template() -> str:
    """The chat template the pipeline wraps each prompt in (set in its ``__init__``, which needs no components)."""
    from diffusers import Kandinsky5T2VPipeline

    pipe = Kandinsky5T2VPipeline.__new__(Kandinsky5T2VPipeline)
    Kandinsky5T2VPipeline.__init__(pipe, *([None] * 7))
    return pipe.prompt_template


def tiny_qwen_tokenizer():
    """A byte-level BPE ``Qwen2Tokenizer`` (the real pre-tokenizer) trained on the pipeline's prompt template.

    Every byte is a token, so any prompt encodes; the template's words are one token each (but
    :data:`SPLIT_WORDS`), so its system part is 128 tokens and the pipeline keeps exactly the
    prompt's. Training on the same text gives the same merges on every machine.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer

    reference = Qwen2Tokenizer()._tokenizer  # an empty vocabulary with the real normalizer and pre-tokenizer
    backend = Tokenizer(models.BPE())
    backend.normalizer = reference.normalizer
    backend.pre_tokenizer = reference.pre_tokenizer
    text = prompt_template().replace("{}", "")
    for word, pieces in SPLIT_WORDS.items():
        text = text.replace(word, "\n\n".join(pieces))
    trainer = trainers.BpeTrainer(
        vocab_size=2048,  # more than the template needs: training stops when every word is one token
        special_tokens=QWEN_SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # the pieces of a split word and the special tokens are trained apart, so no merge joins them
    chunks = re.split(r"\n\n|" + "|".join(re.escape(token) for token in QWEN_SPECIAL_TOKENS), text)
    backend.train_from_iterator(chunks, trainer)
    model = json.loads(backend.to_str())["model"]
    tokenizer = Qwen2Tokenizer(vocab=model["vocab"], merges=[tuple(merge) for merge in model["merges"]])
    tokenizer.add_special_tokens({"additional_special_tokens": QWEN_SPECIAL_TOKENS[1:]})
    return tokenizer


def tiny_qwen_encoder(tokenizer):
    """A 2-layer Qwen2.5-VL of width 32 (diffusers' tests' sizes; a 1-block vision tower the pipeline never runs),
    its vocabulary and special token ids ``tokenizer``'s."""
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    ids = dict(zip(QWEN_SPECIAL_TOKENS, tokenizer.convert_tokens_to_ids(QWEN_SPECIAL_TOKENS)))
    torch.manual_seed(0)
    config = Qwen2_5_VLConfig(
        text_config={
            "hidden_size": 32,
            "intermediate_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "vocab_size": len(tokenizer),
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "rope_scaling": {"mrope_section": [2, 2, 4], "rope_type": "default", "type": "default"},
            "rope_theta": 1000000.0,
        },
        vision_config={"depth": 1, "hidden_size": 32, "intermediate_size": 32, "num_heads": 2, "out_hidden_size": 32},
        vocab_size=len(tokenizer),
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    return Qwen2_5_VLForConditionalGeneration(config)


def tiny_vae():
    """An AutoencoderKLHunyuanVideo with the real one's four levels (8x spatial, 4x temporal, 16 latent channels,
    its scaling factor) at 8-16 channels a level."""
    import torch
    from diffusers import AutoencoderKLHunyuanVideo

    torch.manual_seed(0)
    return AutoencoderKLHunyuanVideo(
        latent_channels=16,
        block_out_channels=(8, 8, 16, 16),
        layers_per_block=1,
        norm_num_groups=4,
        spatial_compression_ratio=8,
        temporal_compression_ratio=4,
    )


def tiny_transformer(text_dim: int, pooled_dim: int):
    """A Kandinsky5Transformer3DModel of width 32 (2 text, 2 visual blocks) with the Lite model's structure:
    16 latent channels in and out, 1x2x2 patches, visual conditioning channels, regular attention."""
    import torch
    from diffusers import Kandinsky5Transformer3DModel
    from diffusers.models.transformers.transformer_kandinsky import Kandinsky5Modulation

    torch.manual_seed(0)
    transformer = Kandinsky5Transformer3DModel(
        in_visual_dim=16,
        out_visual_dim=16,
        in_text_dim=text_dim,
        in_text_dim2=pooled_dim,
        time_dim=16,
        patch_size=(1, 2, 2),
        model_dim=32,
        ff_dim=64,
        num_text_blocks=2,
        num_visual_blocks=2,
        axes_dims=(4, 6, 6),  # one head of 16 per 16 of width, as the real (16, 24, 24) heads of 64
        visual_cond=True,
        attention_type="regular",
    )
    # The class starts its modulations (the gates and shifts that the time and the pooled CLIP prompt drive) at zero,
    # which gates every block's output off: untrained, the prompts would not reach the video. A trained model's are
    # not zero; these get random values.
    for module in transformer.modules():
        if isinstance(module, Kandinsky5Modulation):
            torch.nn.init.normal_(module.out_layer.weight, std=0.2)
            torch.nn.init.normal_(module.out_layer.bias, std=0.2)
    return transformer


def tiny_scheduler():
    """Flow-matching Euler of shift 5, as the released 5-second models are described."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(shift=5.0)


def tiny_parts() -> dict:
    """The components of a tiny Kandinsky 5 pipeline (text-to-video and image-to-video take the same)."""
    tokenizer = tiny_qwen_tokenizer()
    tokenizer_2, text_encoder_2 = clip_text_parts()
    return dict(
        transformer=tiny_transformer(text_dim=32, pooled_dim=text_encoder_2.config.hidden_size),
        vae=tiny_vae(),
        text_encoder=tiny_qwen_encoder(tokenizer),
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        scheduler=tiny_scheduler(),
    )


def build_tiny(path: Path) -> None:
    """Save a random-weight Kandinsky 5 text-to-video pipeline in the layout of the repos (fp32 + fp16 variant
    weights); see the module's docstring for what could not be checked offline."""
    from diffusers import Kandinsky5T2VPipeline

    from ._tiny import save_with_fp16_variant

    save_with_fp16_variant(Kandinsky5T2VPipeline(**tiny_parts()), path)


FAMILY = Family(
    name="kandinsky5",
    pipeline_class="Kandinsky5T2VPipeline",
    description="Kandinsky 5.0 Video: text -> video, flow-matching DiT with Qwen2.5-VL + CLIP text, 512x768, 24 fps",
    models=MODELS,
    params=Params,
    load=load,
    render=one_video_per_call(render),
    build_tiny=build_tiny,
    uint8_conversion=UINT8_CONVERSION,
    # as the docs load it; `dtype: auto` on a GPU means this
    gpu_dtype="bfloat16",
)
