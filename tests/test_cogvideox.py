"""The CogVideoX text-to-video family on its tiny checkpoint: the contract, the frame and size rules
the pipeline leaves unchecked, dynamic CFG, the CogVideoX schedulers, the positional-embedding
limits, and the decode of a CogVideoX 1.5-style checkpoint (padded latent frames)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from videosweep.tasks.manifest import ManifestError, load_manifest
from videosweep.tasks.models import cogvideox, ensure_built, folder_sha256, known_models
from videosweep.tasks.models.base import LoadOptions
from videosweep.tasks.pipeline_setup import Baseline, prepare_job

from .conftest import pipeline_call
from .family_contract import FamilyContract

PROMPT = "A rocket lifts off from its launch pad at dawn, smoke billowing"
NEGATIVE = "blurry, static, low quality"
DOCS_PROMPT = (
    "A panda, dressed in a small, red jacket and a tiny hat, sits on a wooden stool in a serene bamboo forest. "
    "The panda's fluffy paws strum a miniature acoustic guitar, producing soft, melodic tunes. Nearby, a few other "
    "pandas gather, watching curiously and some clapping in rhythm. Sunlight filters through the tall bamboo, "
    "casting a gentle glow on the scene. The panda's face is expressive, showing concentration and joy as it plays. "
    "The background includes a small, flowing stream and vibrant green foliage, enhancing the peaceful and magical "
    "atmosphere of this unique musical performance."
)


class TestCogVideoXContract(FamilyContract):
    family = "cogvideox"

    def row(self, inputs):
        return dict(
            prompt=PROMPT,
            negative_prompt=NEGATIVE,
            num_frames=9,
            num_inference_steps=2,
            guidance_scale=6.0,
            use_dynamic_cfg=True,
        )

    def other_video(self, inputs):
        # another prompt, and no negative prompt: one video of the call on the empty one, the other on NEGATIVE
        return {"prompt": "A sailboat drifts across a calm lake at noon", "negative_prompt": None}

    docs_fps = 8  # the docs' export_to_video(video, "output.mp4", fps=8)

    def docs_row(self, inputs):
        return dict(prompt=DOCS_PROMPT, guidance_scale=6, num_frames=9, num_inference_steps=2)

    def docs_recipe(self, folder, components, row, seed):
        """The ``CogVideoXPipeline`` docstring's example (diffusers 0.42.1), as written, on the tiny checkpoint."""
        from diffusers import CogVideoXPipeline

        # checkpoint path: the tiny folder; dtype: float32 (the docs: torch.float16); device: no .to("cuda")
        pipe = CogVideoXPipeline.from_pretrained(folder, torch_dtype=torch.float32)
        prompt = (
            "A panda, dressed in a small, red jacket and a tiny hat, sits on a wooden stool in a serene bamboo forest. "
            "The panda's fluffy paws strum a miniature acoustic guitar, producing soft, melodic tunes. Nearby, a few other "
            "pandas gather, watching curiously and some clapping in rhythm. Sunlight filters through the tall bamboo, "
            "casting a gentle glow on the scene. The panda's face is expressive, showing concentration and joy as it plays. "
            "The background includes a small, flowing stream and vibrant green foliage, enhancing the peaceful and magical "
            "atmosphere of this unique musical performance."
        )
        torch.manual_seed(seed)  # the docs pass no generator: their call draws from torch's global RNG, seeded here
        video = pipe(
            prompt=prompt,
            guidance_scale=6,
            num_inference_steps=row["num_inference_steps"],  # steps: 2 (the docs: 50)
            num_frames=row["num_frames"],  # sizes: 9 frames (the docs: the transformer's 49)
        ).frames[0]
        # export_to_video(video, "output.mp4", fps=8) receives these PIL frames
        return np.stack([np.array(frame) for frame in video])


@pytest.fixture(scope="module")
def tiny_cogvideox() -> Path:
    ref = known_models()["tiny-cogvideox"]
    ensure_built(ref)
    return Path(ref.source)


@pytest.fixture(scope="module")
def pipe(tiny_cogvideox):
    return cogvideox.load(LoadOptions(str(tiny_cogvideox), None, "float32", None), "cpu")


def small(**overrides) -> cogvideox.Params:
    return cogvideox.Params(**{**dict(prompt=PROMPT, num_frames=9, num_inference_steps=2), **overrides})


def frames(pipe, seed: int = 0, **overrides) -> np.ndarray:
    return cogvideox.FAMILY.render_one(pipe, small(**overrides), torch.Generator().manual_seed(seed), "cpu").frames


def manifest_problems(tmp_path: Path, **row) -> str:
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({"defaults": {"model": "tiny-cogvideox", "seed": 0}, "rows": [row]}))
    with pytest.raises(ManifestError) as caught:
        load_manifest(path, "cpu")
    return str(caught.value)


def test_tiny_checkpoint_has_the_layout_of_the_real_repo(tiny_cogvideox: Path):
    index = json.loads((tiny_cogvideox / "model_index.json").read_text())
    assert index["_class_name"] == "CogVideoXPipeline"
    assert index["text_encoder"] == ["transformers", "T5EncoderModel"]
    assert index["tokenizer"][1].startswith("T5Tokenizer")
    assert index["scheduler"] == ["diffusers", "CogVideoXDDIMScheduler"]
    transformer = json.loads((tiny_cogvideox / "transformer" / "config.json").read_text())
    assert transformer["in_channels"] == 4 and transformer["use_rotary_positional_embeddings"]  # 5B-like
    assert transformer["max_text_seq_length"] == 226
    for weights in ("transformer/diffusion_pytorch_model", "vae/diffusion_pytorch_model", "text_encoder/model"):
        assert (tiny_cogvideox / f"{weights}.safetensors").is_file()
        assert (tiny_cogvideox / f"{weights}.fp16.safetensors").is_file()


def test_tiny_build_is_reproducible(tiny_cogvideox: Path, tmp_path: Path):
    cogvideox.build_tiny(tmp_path / "again")
    assert folder_sha256(tmp_path / "again") == folder_sha256(tiny_cogvideox)


def test_defaults_are_the_transformers_size_and_length_at_8_fps(pipe):
    rendered = cogvideox.FAMILY.render_one(pipe, cogvideox.Params(prompt=PROMPT, num_inference_steps=2), torch.Generator(), "cpu")
    assert rendered.frames.shape == (9, 32, 48, 3)  # sample_frames, sample_height * 8, sample_width * 8
    assert rendered.fps == 8 and rendered.denoise_s > 0 and rendered.decode_s > 0


def test_8k_frames_come_out_as_asked(pipe):
    assert frames(pipe, num_frames=8, height=16, width=16).shape == (8, 16, 16, 3)


def test_the_pipeline_would_silently_change_other_frame_counts(pipe):
    """Why 13 is refused: the pipeline itself returns 16 frames for it."""
    video = pipe(prompt=PROMPT, num_frames=13, height=16, width=16, num_inference_steps=1, output_type="np").frames[0]
    assert len(video) == cogvideox.decoded_frames(13) == 16
    assert [cogvideox.decoded_frames(n) for n in (1, 8, 9, 12, 48, 49)] == [1, 8, 9, 9, 48, 49]


def test_frame_counts_other_than_8k_or_8k_plus_1_are_refused(tmp_path: Path):
    message = manifest_problems(tmp_path, prompt=PROMPT, num_frames=13)
    assert "8k or 8k+1" in message and "into 16 frames" in message and "nearest: 9 or 16" in message
    assert "nearest: 1 or 8" in manifest_problems(tmp_path, prompt=PROMPT, num_frames=3)


def test_sizes_must_be_multiples_of_16(pipe, tmp_path: Path):
    assert "multiple of 16" in manifest_problems(tmp_path, prompt=PROMPT, height=40, width=48)
    with pytest.raises(RuntimeError):  # the pipeline checks 8 only, then fails inside the transformer
        pipe(prompt=PROMPT, height=40, width=48, num_frames=1, num_inference_steps=1, output_type="latent")


def test_prompt_is_required(tmp_path: Path):
    assert "missing 'prompt'" in manifest_problems(tmp_path, num_frames=9)


def test_call_parameters_reach_the_pipeline(pipe):
    """Each parameter reaches the pipeline's call as itself (a batch of one: prompts and generators as lists)."""
    params = small(
        negative_prompt=NEGATIVE, height=16, width=32, guidance_scale=4.0, use_dynamic_cfg=True, max_sequence_length=16
    )
    generator = torch.Generator().manual_seed(7)
    call = pipeline_call(pipe, lambda: cogvideox.FAMILY.render_one(pipe, params, generator, "cpu"))
    assert call.args == () and call.kwargs == dict(
        prompt=[PROMPT],
        negative_prompt=[NEGATIVE],
        height=16,
        width=32,
        num_frames=9,
        num_inference_steps=2,
        guidance_scale=4.0,
        use_dynamic_cfg=True,
        eta=0.0,
        max_sequence_length=16,
        generator=[generator],
        output_type="latent",
    )


def test_eta_is_refused_where_the_scheduler_ignores_it_and_works_with_ddim(pipe):
    with pytest.raises(ValueError, match="CogVideoXDDIMScheduler ignores eta; add `scheduler: ddim`"):
        frames(pipe, eta=1.0)
    baseline = Baseline.of(pipe)
    try:
        prepare_job(pipe, {"scheduler": "ddim"}, baseline)
        assert not np.array_equal(frames(pipe), frames(pipe, eta=1.0))
    finally:
        prepare_job(pipe, {}, baseline)


def test_the_cogvideox_dpm_scheduler_row_option(pipe):
    """`scheduler: cogvideox-dpm` (the CogVideoX demos' choice) renders what swapping it in by hand does."""
    from diffusers import CogVideoXDPMScheduler

    baseline = Baseline.of(pipe)
    try:
        prepare_job(pipe, {"scheduler": "cogvideox-dpm"}, baseline)
        assert isinstance(pipe.scheduler, CogVideoXDPMScheduler)
        ours = frames(pipe, seed=4)
        prepare_job(pipe, {}, baseline)
        pipe.scheduler = CogVideoXDPMScheduler.from_config(pipe.scheduler.config)
        by_hand = pipe(
            prompt=PROMPT, num_frames=9, num_inference_steps=2, generator=torch.manual_seed(4), output_type="np"
        )
    finally:
        prepare_job(pipe, {}, baseline)
    assert np.array_equal(ours, (by_hand.frames[0] * 255).round().astype(np.uint8))
    assert not np.array_equal(ours, frames(pipe, seed=4))


def test_sincos_embeddings_take_exactly_their_prompt_length(tiny_cogvideox: Path):
    """2B's sincos (as 5B-I2V's learned) embeddings are laid out for 226 prompt tokens: another length is refused."""
    from diffusers import CogVideoXPipeline, CogVideoXTransformer3DModel

    pipe = CogVideoXPipeline.from_pretrained(tiny_cogvideox, torch_dtype=torch.float32)
    config = pipe.transformer.config
    pipe.transformer = CogVideoXTransformer3DModel.from_config(config, use_rotary_positional_embeddings=False)
    pipe.set_progress_bar_config(disable=True)
    with pytest.raises(ValueError, match="exactly 226 prompt tokens; drop max_sequence_length"):
        frames(pipe, max_sequence_length=16)
    with pytest.raises(RuntimeError):  # what the pipeline does with it
        pipe(prompt=PROMPT, num_frames=1, num_inference_steps=1, max_sequence_length=16, output_type="latent")
    assert frames(pipe).shape == (9, 32, 48, 3)


def test_rotary_checkpoints_take_a_shorter_prompt(pipe):
    assert frames(pipe, max_sequence_length=16).shape == (9, 32, 48, 3)


@pytest.fixture(scope="module")
def cogvideox_15(tmp_path_factory, tiny_cogvideox) -> Path:
    """A CogVideoX 1.5-style checkpoint: latent frames in pairs (patch_size_t=2), so 3 get one of padding."""
    from diffusers import CogVideoXPipeline, CogVideoXTransformer3DModel

    folder = tmp_path_factory.mktemp("cogvideox15") / "tiny-cogvideox15"
    base = CogVideoXPipeline.from_pretrained(tiny_cogvideox, torch_dtype=torch.float32)
    torch.manual_seed(0)
    transformer = CogVideoXTransformer3DModel.from_config(base.transformer.config, patch_size_t=2)
    CogVideoXPipeline(
        tokenizer=base.tokenizer,
        text_encoder=base.text_encoder,
        vae=base.vae,
        transformer=transformer,
        scheduler=base.scheduler,
    ).save_pretrained(folder)
    return folder


def test_padded_latent_frames_are_dropped_as_the_pipeline_does(cogvideox_15: Path):
    pipe = cogvideox.load(LoadOptions(str(cogvideox_15), None, "float32", None), "cpu")
    ours = frames(pipe, seed=2)
    theirs = pipe(prompt=PROMPT, num_frames=9, num_inference_steps=2, generator=torch.manual_seed(2), output_type="np")
    assert ours.shape == (9, 32, 48, 3)
    assert np.array_equal(ours, (theirs.frames[0] * 255).round().astype(np.uint8))
