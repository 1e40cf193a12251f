"""The PIA family on its tiny checkpoints: an SD 1.5 base, a 9-channel PIA adapter, the image, FreeInit."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from videosweep.tasks.manifest import ManifestError, load_manifest
from videosweep.tasks.models import ensure_built, folder_sha256, known_models, pia
from videosweep.tasks.models.animatediff import FreeInitParams
from videosweep.tasks.models.base import LoadOptions

from .conftest import ROCKET, pipeline_call
from .family_contract import FamilyContract
from .test_animatediff import assert_sd15_base_and_adapter

PROMPT = "a rocket lifting off"
NEGATIVE = "wrong white balance, dark, sketches, worst quality, low quality, deformed, distorted"


@pytest.fixture(scope="module", autouse=True)
def built():
    """Build the tiny checkpoints before any manifest names them (see test_animatediff.built)."""
    ensure_built(known_models()["tiny-pia"])


class TestPIAContract(FamilyContract):
    family = "pia"
    not_call_parameters = set(FreeInitParams.model_fields)  # enable_free_init's (test_docs_arguments.py)

    def row(self, inputs):
        return dict(
            image=str(inputs / "rocket.png"),
            prompt=PROMPT,
            negative_prompt=NEGATIVE,
            height=32,
            width=48,
            num_frames=4,
            num_inference_steps=2,
        )

    docs_fps = 10  # the docs' export_to_gif(frames, "pia-animation.gif") writes at its default, 10 fps

    def docs_row(self, inputs):
        # the docs define a negative prompt but do not pass it to the call
        return dict(
            image=str(inputs / "rocket.png"),
            prompt="cat in a field",
            height=32,
            width=48,
            num_frames=8,
            num_inference_steps=2,
        )

    def docs_recipe(self, folder, components, row, seed):
        """api/pipelines/pia, "Usage example", as written, on the tiny checkpoints."""
        from diffusers import EulerDiscreteScheduler, MotionAdapter, PIAPipeline
        from diffusers.utils import load_image

        # checkpoint paths: the tiny adapter and SD 1.5 folders; dtype: float32 (the docs: torch.float16)
        adapter = MotionAdapter.from_pretrained(components["adapter"])
        pipe = PIAPipeline.from_pretrained(folder, motion_adapter=adapter, torch_dtype=torch.float32)

        pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
        # device: the docs' pipe.enable_model_cpu_offload() is left out (CPU only)
        pipe.vae.enable_slicing()  # the docs' pipe.enable_vae_slicing(), which diffusers 0.42.1 removed

        image = load_image(row["image"])  # path: a local image for the docs' cat_6.png URL
        image = image.resize((row["width"], row["height"]))  # sizes: (512, 512) in the docs
        prompt = "cat in a field"
        negative_prompt = "wrong white balance, dark, sketches,worst quality,low quality"  # noqa: F841 (unused, as there)

        generator = torch.Generator("cpu").manual_seed(seed)  # the docs' seed is 0
        output = pipe(
            image=image,
            prompt=prompt,
            generator=generator,
            height=row["height"],  # sizes: the docs leave the UNet's 512 x 512, 16 frames, 50 steps
            width=row["width"],
            num_frames=row["num_frames"],
            num_inference_steps=row["num_inference_steps"],
        )
        frames = output.frames[0]
        # export_to_gif(frames, "pia-animation.gif") receives these PIL frames
        return np.stack([np.array(frame) for frame in frames])

    def test_registered_with_a_tiny_checkpoint_in_the_real_layout(self, ref):
        assert_sd15_base_and_adapter(ref, pia)
        adapter = json.loads((Path(dict(ref.components)["adapter"]) / "config.json").read_text())
        assert adapter["conv_in_channels"] == 9

    def test_free_init_is_the_docs_free_init_example(self, tmp_path, inputs, ref):
        """api/pipelines/pia, "Using FreeInit": DDIM from the loaded config, enable_free_init(method=
        "butterworth", use_fast_sampling=True); here with 2 rounds to stay fast."""
        from diffusers import DDIMScheduler, MotionAdapter, PIAPipeline
        from diffusers.utils import load_image

        row = {**self.row(inputs), "scheduler": "ddim", "free_init": True, "free_init_iters": 2}
        row["free_init_use_fast_sampling"] = True  # the docs' example; diffusers' default is False
        ours = self.render_frames(tmp_path, row, 5)

        adapter = MotionAdapter.from_pretrained(dict(ref.components)["adapter"], dtype=torch.float32)
        pipe = PIAPipeline.from_pretrained(ref.source, motion_adapter=adapter, dtype=torch.float32)
        pipe.enable_free_init(method="butterworth", use_fast_sampling=True, num_iters=2)
        pipe.vae.enable_slicing()
        # the docs swap DDIM in from the base's config; the family's loaded Euler keeps that config
        pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
        image = load_image(row["image"]).resize((row["width"], row["height"]))
        theirs = pipe(
            image=image,
            prompt=row["prompt"],
            negative_prompt=row["negative_prompt"],
            height=row["height"],
            width=row["width"],
            num_frames=row["num_frames"],
            num_inference_steps=row["num_inference_steps"],
            generator=torch.Generator("cpu").manual_seed(5),
            output_type="np",
        ).frames[0]
        assert np.array_equal(ours, (theirs * 255).round().astype(np.uint8))

    def test_free_init_is_set_for_every_job_of_a_cached_pipeline(self, tmp_path, inputs):
        plain = {**self.row(inputs), "scheduler": "ddim"}
        first = self.render_frames(tmp_path, plain, 5)
        free_init = {**plain, "free_init": True, "free_init_iters": 2, "free_init_use_fast_sampling": True}
        freeinit = self.render_frames(tmp_path, free_init, 5)  # the docs' example's video (the test above)
        assert not np.array_equal(first, freeinit)
        assert np.array_equal(first, self.render_frames(tmp_path, plain, 5, fresh=True))  # switched off again
        gaussian = {**free_init, "free_init_method": "gaussian"}
        assert not np.array_equal(freeinit, self.render_frames(tmp_path, gaussian, 5))

    def test_same_seed_same_frames_with_free_init(self, tmp_path, inputs):
        """FreeInit's fresh noise comes from the job's generator: a rerun with torch's global RNG moved agrees."""
        row = {**self.row(inputs), "scheduler": "ddim", "free_init": True, "free_init_iters": 2}
        torch.manual_seed(1)
        first = self.render_frames(tmp_path, row, 5, fresh=True)
        torch.manual_seed(2)
        assert np.array_equal(first, self.render_frames(tmp_path, row, 5, fresh=True))

    def test_free_init_with_the_euler_scheduler_fails_with_a_fix(self, tmp_path, inputs):
        """diffusers 0.42.1: FreeInit re-noises at timestep 999, which Euler's leading SD 1.5 schedule
        lacks (IndexError in add_noise); the job's error says to use DDIM, as the docs' example does."""
        row = {**self.row(inputs), "free_init": True, "free_init_iters": 2}
        with pytest.raises(ValueError, match="scheduler: ddim"):
            self.render_frames(tmp_path, row, 5)


@pytest.fixture(scope="module")
def tiny(built) -> tuple[Path, Path]:
    ref = known_models()["tiny-pia"]
    return Path(ref.source), Path(dict(ref.components)["adapter"])


@pytest.fixture(scope="module")
def pipe(tiny):
    return pia.load(LoadOptions(str(tiny[0]), None, "float32", None, (("adapter", str(tiny[1]), None),)), "cpu")


def small(**overrides) -> pia.Params:
    values = dict(
        image=ROCKET, prompt=PROMPT, negative_prompt=NEGATIVE, height=32, width=48, num_frames=8, num_inference_steps=2
    )
    return pia.Params(**{**values, **overrides})


def frames(pipe, seed: int = 7, **overrides) -> np.ndarray:
    return pia.FAMILY.render_one(pipe, small(**overrides), torch.Generator().manual_seed(seed), "cpu").frames


def manifest_error(tmp_path: Path, rows: list[dict]) -> str:
    (tmp_path / "rocket.png").write_bytes(ROCKET.read_bytes())
    path = tmp_path / "manifest.yaml"
    path.write_text(yaml.safe_dump({"defaults": {"model": "tiny-pia", "seed": 1}, "rows": rows}))
    with pytest.raises(ManifestError) as caught:
        load_manifest(path, "cpu")
    return str(caught.value)


def test_the_base_is_animatediffs_and_the_adapter_its_own(tiny):
    """Same SD 1.5 base bytes as AnimateDiff's tiny base; a different adapter (9-channel conv_in)."""
    base, adapter = tiny
    animatediff_ref = known_models()["tiny-animatediff"]
    ensure_built(animatediff_ref)
    assert folder_sha256(base) == folder_sha256(Path(animatediff_ref.source))
    assert folder_sha256(adapter) != folder_sha256(Path(dict(animatediff_ref.components)["adapter"]))


def test_tiny_adapter_build_is_reproducible(tiny, tmp_path: Path):
    pia.FAMILY.components["adapter"].build_tiny(tmp_path / "adapter")
    assert folder_sha256(tmp_path / "adapter") == folder_sha256(tiny[1])


def test_load_follows_the_docs(pipe, tiny):
    from diffusers import EulerDiscreteScheduler, MotionAdapter, UNet2DConditionModel, UNetMotionModel

    assert isinstance(pipe.scheduler, EulerDiscreteScheduler)
    assert pipe.scheduler.config.beta_schedule == "scaled_linear"  # from the base repo's config, untouched
    assert pipe.vae.use_slicing
    # the UNet built from base + adapter: 9 input channels, the base's weights on the first 4
    assert isinstance(pipe.unet, UNetMotionModel) and pipe.unet.config.in_channels == 9
    base_unet = UNet2DConditionModel.from_pretrained(tiny[0], subfolder="unet")
    adapter = MotionAdapter.from_pretrained(tiny[1])
    weight = pipe.unet.conv_in.weight
    assert torch.equal(weight[:, :4], base_unet.conv_in.weight)
    assert torch.equal(weight[:, 4:], adapter.conv_in.weight[:, 4:])


def test_image_and_prompt_are_required_and_bad_values_refused_at_once(tmp_path: Path):
    message = manifest_error(
        tmp_path,
        [
            {"num_frames": 8},
            {"image": "rocket.png", "prompt": "a rocket", "free_init_method": "box", "motion_scale": 9},
            {"image": "rocket.png", "prompt": "a rocket", "num_inference_steps": 10, "strength": 0.05},
            {"image": "missing.png", "prompt": "a rocket", "clip_skip": 2},
        ],
    )
    assert "missing 'prompt'" in message
    assert "missing 'image'" in message
    assert "free_init_method='box'" in message and "'butterworth', 'gaussian' or 'ideal'" in message
    assert "motion_scale=9" in message
    assert "strength=0.05" in message and "leaves no denoising step" in message
    assert "missing.png" in message and "no such file" in message
    assert "unknown key 'clip_skip'" in message


def test_render_shape_fps_and_timings(pipe):
    rendered = pia.FAMILY.render_one(pipe, small(), torch.Generator().manual_seed(0), "cpu")
    assert rendered.frames.shape == (8, 32, 48, 3)
    assert rendered.frames.dtype == np.uint8
    assert rendered.fps == pia.FPS == 10  # the docs' export_to_gif default
    assert rendered.denoise_s > 0 and rendered.decode_s > 0


def test_size_defaults_to_the_unets_and_the_image_follows(pipe):
    params = small(height=None, width=None, num_frames=2)
    rendered = pia.FAMILY.render_one(pipe, params, torch.Generator().manual_seed(0), "cpu")
    assert rendered.frames.shape == (2, 32, 32, 3)  # sample_size 8 x VAE scale factor 4


def test_call_parameters_reach_the_pipeline(pipe):
    """Each parameter reaches the pipeline's call as itself; the image resized to the output size, as the docs do."""
    from PIL import Image

    params = small(prompt="a boat at sea", negative_prompt=None, strength=0.5, guidance_scale=1.0, eta=0.5, motion_scale=2)
    generator = torch.Generator().manual_seed(7)
    call = pipeline_call(pipe, lambda: pia.FAMILY.render_one(pipe, params, generator, "cpu"))
    assert np.array_equal(np.asarray(call.kwargs.pop("image")), np.asarray(Image.open(ROCKET).convert("RGB").resize((48, 32))))
    assert call.args == () and call.kwargs == dict(
        prompt="a boat at sea",
        negative_prompt=None,
        strength=0.5,
        height=32,
        width=48,
        num_frames=8,
        num_inference_steps=2,
        guidance_scale=1.0,
        eta=0.5,
        motion_scale=2,
        generator=generator,
        output_type="latent",
    )
