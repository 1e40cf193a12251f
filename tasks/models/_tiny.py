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
