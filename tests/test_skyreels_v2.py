"""The SkyReels-V2 text-to-video family on its tiny checkpoint: the contract (the pipeline docstring's recipe), the
conversion script's layout, the docs' scheduler shift, and the 4k+1 frame rule."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from videosweep.tasks.manifest import ManifestError, load_manifest
from videosweep.tasks.models import ensure_built, folder_sha256, known_models, skyreels_v2
from videosweep.tasks.models.base import LoadOptions

from .family_contract import FamilyContract

PROMPT = "A rocket lifts off at dawn, smoke billowing"
NEGATIVE = "Bright tones, overexposed, static, blurred details"
DOCS_PROMPT = (
    "A cat and a dog baking a cake together in a kitchen. The cat is carefully measuring flour, while the dog is "
    "stirring the batter with a wooden spoon. The kitchen is cozy, with sunlight streaming through the window."
)


class TestSkyReelsV2Contract(FamilyContract):
    family = "skyreels-v2"
    not_call_parameters = {"flow_shift"}  # the docs' scheduler swap (wan.flow_shift)
    float32_by_docs = {"vae"}  # the docs' AutoencoderKLWan in float32

    def row(self, inputs):
        return dict(
            prompt=PROMPT,
            negative_prompt=NEGATIVE,
            height=32,
            width=32,
            num_frames=9,
            num_inference_steps=2,
            max_sequence_length=16,
            flow_shift=8.0,
        )

    def other_video(self, inputs):
        # prompts shorter than max_sequence_length (16 tokens), where the row's are cut at it: other padding
        return {"prompt": "A sailboat", "negative_prompt": "Dark, noisy"}

    docs_fps = 24  # the docstring's export_to_video(output, "video.mp4", fps=24, quality=8)

    def docs_row(self, inputs):
        return dict(prompt=DOCS_PROMPT, height=32, width=32, num_frames=9, guidance_scale=6.0, flow_shift=8.0,
                    num_inference_steps=2, dtype="bfloat16")  # fmt: skip

    def docs_recipe(self, folder, components, row, seed):
        """The ``SkyReelsV2Pipeline`` docstring's example (diffusers 0.42.1), as written, on the tiny checkpoint."""
        from diffusers import AutoencoderKLWan, SkyReelsV2Pipeline, UniPCMultistepScheduler

        model_id = folder  # checkpoint path: the tiny folder
        vae = AutoencoderKLWan.from_pretrained(model_id, subfolder="vae", torch_dtype=torch.float32)
        pipe = SkyReelsV2Pipeline.from_pretrained(model_id, vae=vae, torch_dtype=torch.bfloat16)
        flow_shift = 8.0  # 8.0 for T2V, 5.0 for I2V
        pipe.scheduler = UniPCMultistepScheduler.from_config(pipe.scheduler.config, flow_shift=flow_shift)
        # device: the docs' pipe.to("cuda") is left out (CPU only)

        prompt = "A cat and a dog baking a cake together in a kitchen. The cat is carefully measuring flour, while the dog is stirring the batter with a wooden spoon. The kitchen is cozy, with sunlight streaming through the window."

        torch.manual_seed(seed)  # the docs pass no generator: their call draws from torch's global RNG, seeded here
        output = pipe(
            prompt=prompt,
            num_inference_steps=row["num_inference_steps"],  # sizes: 2 steps, 32 x 32, 9 frames (the docs: 50, 544 x 960, 97)
            height=row["height"],
            width=row["width"],
            guidance_scale=6.0,  # 6.0 for T2V, 5.0 for I2V
            num_frames=row["num_frames"],
        ).frames[0]
        # export_to_video(output, "video.mp4", fps=24, quality=8) converts the numpy frames so
        return np.stack([(frame * 255).astype(np.uint8) for frame in output])


@pytest.fixture(scope="module")
def tiny_skyreels() -> Path:
    ref = known_models()["tiny-skyreels-v2"]
    ensure_built(ref)
    return Path(ref.source)


@pytest.fixture(scope="module")
def pipe(tiny_skyreels):
    return skyreels_v2.load(LoadOptions(str(tiny_skyreels), None, "float32", None), "cpu")


def frames(pipe, seed: int = 0, **overrides) -> np.ndarray:
    values = dict(prompt=PROMPT, height=32, width=32, num_frames=9, num_inference_steps=2, max_sequence_length=16)
    params = skyreels_v2.Params(**{**values, **overrides})
    return skyreels_v2.FAMILY.render_one(pipe, params, torch.Generator().manual_seed(seed), "cpu").frames


def test_tiny_checkpoint_has_the_layout_of_the_conversion_script(tiny_skyreels: Path, tmp_path: Path):
    index = json.loads((tiny_skyreels / "model_index.json").read_text())
    assert index["_class_name"] == "SkyReelsV2Pipeline"
    assert index["text_encoder"] == ["transformers", "UMT5EncoderModel"]
    assert index["transformer"] == ["diffusers", "SkyReelsV2Transformer3DModel"]
    assert index["vae"] == ["diffusers", "AutoencoderKLWan"]
    transformer = json.loads((tiny_skyreels / "transformer" / "config.json").read_text())
    assert (transformer["in_channels"], transformer["inject_sample_info"], transformer["num_frame_per_block"]) == (16, False, 1)
    scheduler = json.loads((tiny_skyreels / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["_class_name"] == "UniPCMultistepScheduler"
    assert scheduler["prediction_type"] == "flow_prediction" and scheduler["use_flow_sigmas"]
    assert scheduler["flow_shift"] == 1.0  # the script sets none: the docs' 8.0 is the row's flow_shift
    for weights in ("transformer/diffusion_pytorch_model", "vae/diffusion_pytorch_model", "text_encoder/model"):
        assert (tiny_skyreels / f"{weights}.safetensors").is_file()
        assert (tiny_skyreels / f"{weights}.fp16.safetensors").is_file()
    skyreels_v2.build_tiny(tmp_path / "again")  # the same bytes on every machine, so tiny rows' job ids agree
    assert folder_sha256(tmp_path / "again") == folder_sha256(tiny_skyreels)


def test_the_real_keys_read_plain_weight_files():
    """The conversion script saves no fp16 variant: a float16 row of a real key reads the plain files."""
    assert {known_models()[key].variant for key in skyreels_v2.MODELS} == {"none"}
    assert known_models()["tiny-skyreels-v2"].variant == "auto"


def test_render_shape_fps_timings_and_the_scheduler_shift(pipe):
    params = skyreels_v2.Params(prompt=PROMPT, height=32, width=48, num_frames=9, num_inference_steps=2, flow_shift=8.0)
    rendered = skyreels_v2.FAMILY.render_one(pipe, params, torch.Generator().manual_seed(0), "cpu")
    assert rendered.frames.shape == (9, 32, 48, 3) and rendered.frames.dtype == np.uint8
    assert rendered.fps == 24 and rendered.denoise_s > 0 and rendered.decode_s > 0
    assert rendered.scheduler.config.flow_shift == 8.0  # the job's scheduler, recorded
    assert pipe.scheduler.config.flow_shift == 1.0  # and the cached pipeline keeps its own
    assert not np.array_equal(frames(pipe), frames(pipe, flow_shift=8.0))


def test_frame_counts_other_than_4k_plus_1_are_refused(tmp_path: Path):
    path = tmp_path / "m.yaml"
    row = {"prompt": PROMPT, "num_frames": 96}
    path.write_text(yaml.safe_dump({"defaults": {"model": "tiny-skyreels-v2", "seed": 0}, "rows": [row]}))
    with pytest.raises(ManifestError, match=r"num_frames=96.*must be 4k\+1.*nearest: 93 or 97"):
        load_manifest(path, "cpu")


def test_prompt_negative_prompt_and_guidance_change_the_video(pipe):
    first = frames(pipe, negative_prompt=NEGATIVE)
    assert not np.array_equal(first, frames(pipe, prompt="A quiet lake at night", negative_prompt=NEGATIVE))
    assert not np.array_equal(first, frames(pipe))
    assert not np.array_equal(first, frames(pipe, negative_prompt=NEGATIVE, guidance_scale=1.0))
