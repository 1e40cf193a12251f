"""Parts that several tiny checkpoints share: text encoders and their tokenizers, built in memory,
and the one way a tiny pipeline is saved (:func:`save_with_fp16_variant`).

Not a family (the registry skips ``_`` modules). Each builder seeds torch itself, so a part's
weights do not depend on what was built before it.
"""

from __future__ import annotations

import shutil
import string
import tempfile
from pathlib import Path


def save_with_fp16_variant(pipe, path: Path) -> None:
    """Save ``pipe`` as the real repos hold it: float32 weights and configs, plus ``*.fp16.*`` weight files.

    The fp16 variant is saved aside and only the files the float32 save did not write (the
    variant's weights, and a shard index if any) are copied in. Saving it over the folder would
    rewrite the shared ``config.json`` of every transformers component (text and image encoders,
    safety checker) with ``dtype: float16``, and ``Pipeline.from_pretrained(folder)`` without a
    dtype, as the docs write it, would then load those components in half precision beside a
    float32 UNet (``mat1 and mat2 must have the same dtype``). Leaves ``pipe`` in float16.
    """
    import torch

    path = Path(path)
    pipe.save_pretrained(path)
    with tempfile.TemporaryDirectory(prefix="videosweep-fp16-") as scratch:
        pipe.to(torch.float16).save_pretrained(scratch, variant="fp16")
        for file in sorted(Path(scratch).rglob("*")):
            target = path / file.relative_to(scratch)
            if file.is_file() and not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(file, target)


def clip_text_parts():
    """A character-level CLIP tokenizer (every printable ASCII character) and a 2-layer CLIP text encoder."""
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    specials = ["<|startoftext|>", "<|endoftext|>"]
    characters = [chr(code) for code in range(33, 127)]
    pieces = specials + characters + [f"{character}</w>" for character in characters]
    tokenizer = CLIPTokenizer(vocab={piece: index for index, piece in enumerate(pieces)}, merges=[], model_max_length=77)
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            projection_dim=32,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    return tokenizer, text_encoder


def t5_text_parts(umt5: bool = False, model_max_length: int | None = None):
    """An in-memory T5 tokenizer (characters as pieces) and a 2-layer T5 (or UMT5, as Wan uses) encoder."""
    import torch
    from transformers import T5Config, T5EncoderModel, T5Tokenizer, UMT5Config, UMT5EncoderModel

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    pieces += [(char, -3.0) for char in string.ascii_letters + string.digits + string.punctuation]
    extra = {"model_max_length": model_max_length} if model_max_length else {}
    tokenizer = T5Tokenizer(vocab=pieces, extra_ids=0, **extra)
    config_cls, model_cls = (UMT5Config, UMT5EncoderModel) if umt5 else (T5Config, T5EncoderModel)
    torch.manual_seed(0)
    text_encoder = model_cls(
        config_cls(
            vocab_size=len(pieces),
            d_model=32,
            d_kv=8,
            d_ff=37,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
        )
    )
    return tokenizer, text_encoder


def sd_vae():
    """A Stable Diffusion AutoencoderKL with the real one's four levels, so pixels -> latents is 8x as there."""
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
        block_out_channels=(8, 8, 16, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=32,
    )


# -- Qwen2.5-VL and ByT5 text parts (HunyuanVideo 1.5) ---------------------------------------------

#: Qwen2-VL's chat template (Qwen/Qwen2.5-VL-7B-Instruct's ``chat_template``): what
#: ``apply_chat_template`` turns a pipeline's system and user messages into.
QWEN2_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: "
    "{% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video {{ video_count.value }}: "
    "{% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def qwen2_tokenizer():
    """An in-memory Qwen2 byte-level BPE tokenizer without merges (each UTF-8 byte a token), with the chat
    markers and Qwen2-VL's chat template; it pads on the right, as the HunyuanVideo 1.5 repos' does."""
    from tokenizers import pre_tokenizers
    from transformers import Qwen2Tokenizer

    vocab = {piece: index for index, piece in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    return Qwen2Tokenizer(
        vocab=vocab,
        merges=[],
        padding_side="right",
        extra_special_tokens=["<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
                              "<|video_pad|>"],  # fmt: skip
        chat_template=QWEN2_VL_CHAT_TEMPLATE,
    )


def qwen2_5_vl_text_parts():
    """:func:`qwen2_tokenizer` and a 2-layer Qwen2.5-VL text model of width 16 (diffusers' tests' sizes)."""
    import torch
    from transformers import Qwen2_5_VLTextConfig, Qwen2_5_VLTextModel

    tokenizer = qwen2_tokenizer()
    torch.manual_seed(0)
    text_encoder = Qwen2_5_VLTextModel(
        Qwen2_5_VLTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=16,
            intermediate_size=16,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
            rope_scaling={"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"},
            rope_theta=1000000.0,
            bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
            eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    return tokenizer, text_encoder


def byt5_text_parts():
    """The ByT5 tokenizer (bytes as tokens, no files) and a 2-layer T5 encoder over its 384 ids."""
    import torch
    from transformers import ByT5Tokenizer, T5Config, T5EncoderModel

    tokenizer = ByT5Tokenizer()
    torch.manual_seed(0)
    text_encoder = T5EncoderModel(
        T5Config(
            vocab_size=len(tokenizer),
            d_model=32,
            d_kv=8,
            d_ff=37,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
        )
    )
    return tokenizer, text_encoder
