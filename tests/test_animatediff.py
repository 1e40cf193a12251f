"""The AnimateDiff family on its tiny checkpoints: an SD 1.5 base and a motion adapter in its own folder."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from videosweep.tasks.manifest import ManifestError, load_manifest
from videosweep.tasks.models import animatediff, ensure_built, folder_sha256, known_models
from videosweep.tasks.models.animatediff import FreeInitParams
from videosweep.tasks.models.base import LoadOptions

from .conftest import pipeline_call
from .family_contract import FamilyContract

PROMPT = "A space rocket with trails of smoke behind it launching into space from the desert, 4k, high resolution"
NEGATIVE = "bad quality, worse quality, low resolution"


def assert_sd15_base_and_adapter(ref, module) -> None:
    """The contract's layout check, for a family whose base repos are plain SD 1.5 pipelines.

    The contract asks model_index.json to name the family's pipeline (or the family to declare a
    tiny_base); the real AnimateDiff/PIA bases (emilianJR/epiCRealism, Realistic Vision) are
    ``StableDiffusionPipeline`` repos and the adapter is a repo of its own, so that is checked instead.
    """
    assert module.FAMILY.name and module.FAMILY.description
    index = json.loads((Path(ref.source) / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    assert index["unet"] == ["diffusers", "UNet2DConditionModel"]
    assert index["safety_checker"] == [None, None] and index["requires_safety_checker"] is False
    assert [name for name, _ in ref.components] == ["adapter"]
    adapter = Path(dict(ref.components)["adapter"])
    assert json.loads((adapter / "config.json").read_text())["_class_name"] == "MotionAdapter"
    assert (adapter / "diffusion_pytorch_model.safetensors").is_file()
    for weights in ("unet/diffusion_pytorch_model", "vae/diffusion_pytorch_model", "text_encoder/model"):
        assert (Path(ref.source) / f"{weights}.safetensors").is_file()
        assert (Path(ref.source) / f"{weights}.fp16.safetensors").is_file(), "an fp16 variant, as the contract asks"


@pytest.fixture(scope="module", autouse=True)
def built():
    """Build the tiny checkpoints before any manifest names them.

    tasks/manifest/rows.py checks a row's component folders (step 3) before it builds a tiny model
    (step 6, ``resolve_revision``), so on a fresh VIDEOSWEEP_HOME the tiny adapter folder does not
    exist yet and the row is refused; the fix belongs in the row checker (build tiny refs first).
    """
    ensure_built(known_models()["tiny-animatediff"])

DOCS_PROMPT = (
    "masterpiece, bestquality, highlydetailed, ultradetailed, sunset, "
    "orange sky, warm lighting, fishing boats, ocean waves seagulls, "
    "rippling water, wharf, silhouette, serene atmosphere, dusk, evening glow, "
    "golden hour, coastal landscape, seaside scenery"
)


class TestAnimateDiffContract(FamilyContract):
    family = "animatediff"
    not_call_parameters = set(FreeInitParams.model_fields)  # enable_free_init's (test_docs_arguments.py)

    def row(self, inputs):
        return dict(prompt=PROMPT, negative_prompt=NEGATIVE, height=32, width=48, num_frames=8, num_inference_steps=2)

    def half_precision_row(self, inputs):
        # smaller: the CPU's half-precision kernels are slow (2.3 s a render at the row's size, 0.4 s at this)
        return {**self.row(inputs), "num_frames": 2, "height": 32, "width": 32}

    def other_video(self, inputs):
        # no negative prompt: one video of the call on the empty prompt, the other on NEGATIVE
        return {"prompt": "a boat at sea, in the style of an oil painting", "negative_prompt": None}

    docs_fps = 10  # the docs' export_to_gif(frames, "animation.gif") writes at its default, 10 fps

    def docs_row(self, inputs):
        return dict(
            prompt=DOCS_PROMPT,
            negative_prompt="bad quality, worse quality",
            num_frames=8,
            guidance_scale=7.5,
            num_inference_steps=2,
            height=32,
            width=48,
        )

    def docs_recipe(self, folder, components, row, seed):
        """api/pipelines/animatediff, "AnimateDiffPipeline", as written, on the tiny checkpoints."""
        from diffusers import AnimateDiffPipeline, DDIMScheduler, MotionAdapter

        # Load the motion adapter (checkpoint path: the tiny adapter; dtype: float32, the docs: torch.float16)
        adapter = MotionAdapter.from_pretrained(components["adapter"], dtype=torch.float32)
        # load SD 1.5 based finetuned model (checkpoint path: the tiny SD 1.5 folder)
        model_id = folder
        pipe = AnimateDiffPipeline.from_pretrained(model_id, motion_adapter=adapter, dtype=torch.float32)
        scheduler = DDIMScheduler.from_pretrained(
            model_id,
            subfolder="scheduler",
            clip_sample=False,
            timestep_spacing="linspace",
            beta_schedule="linear",
            steps_offset=1,
        )
        pipe.scheduler = scheduler

        # enable memory savings (device: pipe.enable_model_cpu_offload() is left out, CPU only)
        pipe.vae.enable_slicing()

        output = pipe(
            prompt=(
                "masterpiece, bestquality, highlydetailed, ultradetailed, sunset, "
                "orange sky, warm lighting, fishing boats, ocean waves seagulls, "
                "rippling water, wharf, silhouette, serene atmosphere, dusk, evening glow, "
                "golden hour, coastal landscape, seaside scenery"
            ),
            negative_prompt="bad quality, worse quality",
            num_frames=row["num_frames"],  # sizes: 8 frames of 32 x 48, 2 steps (the docs: 16 of 512 x 512, 25 steps)
            guidance_scale=7.5,
            num_inference_steps=row["num_inference_steps"],
            generator=torch.Generator("cpu").manual_seed(seed),  # the docs' seed is 42
            height=row["height"],
            width=row["width"],
        )
        frames = output.frames[0]
        # export_to_gif(frames, "animation.gif") receives these PIL frames
        return np.stack([np.array(frame) for frame in frames])

    def test_registered_with_a_tiny_checkpoint_in_the_real_layout(self, ref):
        assert_sd15_base_and_adapter(ref, animatediff)


@pytest.fixture(scope="module")
def tiny(built) -> tuple[Path, Path]:
    ref = known_models()["tiny-animatediff"]
    return Path(ref.source), Path(dict(ref.components)["adapter"])


@pytest.fixture(scope="module")
def pipe(tiny):
    base, adapter = tiny
    return animatediff.load(LoadOptions(str(base), None, "float32", None, (("adapter", str(adapter), None),)), "cpu")


def small(**overrides) -> animatediff.Params:
    values = dict(prompt=PROMPT, negative_prompt=NEGATIVE, height=32, width=48, num_frames=8, num_inference_steps=2)
    return animatediff.Params(**{**values, **overrides})


def frames(pipe, seed: int = 7, **overrides) -> np.ndarray:
    return animatediff.FAMILY.render_one(pipe, small(**overrides), torch.Generator().manual_seed(seed), "cpu").frames


def manifest_error(tmp_path: Path, rows: list[dict]) -> str:
    path = tmp_path / "manifest.yaml"
    path.write_text(yaml.safe_dump({"defaults": {"model": "tiny-animatediff", "seed": 1}, "rows": rows}))
    with pytest.raises(ManifestError) as caught:
        load_manifest(path, "cpu")
    return str(caught.value)


def test_tiny_checkpoints_have_the_layout_of_the_real_repos(tiny):
    base, adapter = tiny
    scheduler = json.loads((base / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["_class_name"] == "PNDMScheduler"  # the SD 1.5 repos' own, which the docs replace
    assert scheduler["beta_schedule"] == "scaled_linear" and scheduler["clip_sample"] is False
    tokenizer = json.loads((base / "tokenizer" / "tokenizer_config.json").read_text())
    assert tokenizer["tokenizer_class"] == "CLIPTokenizer" and tokenizer["model_max_length"] == 77
    config = json.loads((adapter / "config.json").read_text())
    assert config["conv_in_channels"] is None and config["motion_max_seq_length"] == animatediff.MAX_FRAMES
    assert not list(adapter.glob("*.fp16.*")), "the docs load adapters without a variant"


def test_tiny_build_is_reproducible(tiny, tmp_path: Path):
    """Same bytes on every machine, so job ids of tiny-model rows agree everywhere."""
    animatediff.build_tiny(tmp_path / "base")
    animatediff.FAMILY.components["adapter"].build_tiny(tmp_path / "adapter")
    assert folder_sha256(tmp_path / "base") == folder_sha256(tiny[0])
    assert folder_sha256(tmp_path / "adapter") == folder_sha256(tiny[1])


def test_load_follows_the_docs(pipe, tiny):
    from diffusers import DDIMScheduler, MotionAdapter, UNetMotionModel

    assert isinstance(pipe.scheduler, DDIMScheduler)
    config = pipe.scheduler.config
    assert (config.clip_sample, config.timestep_spacing, config.beta_schedule, config.steps_offset) == (
        False,
        "linspace",
        "linear",
        1,
    )
    assert config.beta_start == 0.00085 and config.beta_end == 0.012  # the rest from the base repo
    assert pipe.vae.use_slicing
    assert isinstance(pipe.unet, UNetMotionModel) and pipe.unet.config.in_channels == 4
    # the motion modules are the adapter's
    adapter = MotionAdapter.from_pretrained(tiny[1])
    ours = pipe.unet.down_blocks[0].motion_modules.state_dict()
    theirs = adapter.down_blocks[0].motion_modules.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_a_row_may_swap_the_adapter(tiny, tmp_path: Path):
    """The adapter is a component: a row's `adapter:` replaces the model key's, in the job and the load."""
    from diffusers import MotionAdapter

    other = MotionAdapter.from_pretrained(tiny[1])
    with torch.no_grad():
        for parameter in other.parameters():
            parameter.mul_(0.5)
    other.save_pretrained(tmp_path / "other-adapter")
    path = tmp_path / "manifest.yaml"
    rows = [{}, {"adapter": "other-adapter"}]
    defaults = {"model": "tiny-animatediff", "seed": 1, "prompt": "a rocket"}
    path.write_text(yaml.safe_dump({"defaults": defaults, "rows": rows}))
    default_job, swapped_job = load_manifest(path, "cpu").jobs
    assert default_job.components == {"adapter": str(tiny[1])}
    assert swapped_job.components == {"adapter": str((tmp_path / "other-adapter").resolve())}
    assert default_job.job_id != swapped_job.job_id
    swapped = animatediff.load(swapped_job.load_options, "cpu")
    weight = next(iter(swapped.unet.down_blocks[0].motion_modules.parameters()))
    assert torch.equal(weight, next(iter(other.down_blocks[0].motion_modules.parameters())))


def test_prompt_is_required_and_bad_values_are_refused_at_once(tmp_path: Path):
    message = manifest_error(
        tmp_path,
        [
            {"num_frames": 8},
            {"prompt": "a rocket", "num_frames": 33, "height": 36, "clip_skip": 2},
            {"prompt": "a rocket", "adapter": "not a repo id"},
        ],
    )
    assert "missing 'prompt'" in message
    assert "num_frames=33" in message and "32" in message
    assert "height=36" in message and "multiple of 8" in message
    assert "unknown key 'clip_skip'" in message
    assert "adapter='not a repo id'" in message and "MotionAdapter" in message


def test_render_shape_fps_and_timings(pipe):
    rendered = animatediff.FAMILY.render_one(pipe, small(), torch.Generator().manual_seed(0), "cpu")
    assert rendered.frames.shape == (8, 32, 48, 3)
    assert rendered.frames.dtype == np.uint8
    assert rendered.fps == animatediff.FPS == 10  # the docs' export_to_gif default
    assert rendered.denoise_s > 0 and rendered.decode_s > 0


def test_size_defaults_to_the_unets(pipe):
    params = small(height=None, width=None, num_frames=2)
    rendered = animatediff.FAMILY.render_one(pipe, params, torch.Generator().manual_seed(0), "cpu")
    assert rendered.frames.shape == (2, 32, 32, 3)  # sample_size 8 x VAE scale factor 4


def test_call_parameters_reach_the_pipeline(pipe):
    """Each parameter reaches the pipeline's call as itself (a batch of one: prompts and generators as lists; no
    negative prompt is the empty one); the call stops at the latents, which render decodes."""
    params = small(prompt="a boat at sea", negative_prompt=None, num_frames=6, guidance_scale=3.5, eta=0.5)
    generator = torch.Generator().manual_seed(7)
    call = pipeline_call(pipe, lambda: animatediff.FAMILY.render_one(pipe, params, generator, "cpu"))
    assert call.args == () and call.kwargs == dict(
        prompt=["a boat at sea"],
        negative_prompt=[""],
        height=32,
        width=48,
        num_frames=6,
        num_inference_steps=2,
        guidance_scale=3.5,
        eta=0.5,
        generator=[generator],
        output_type="latent",
    )


def test_decode_chunk_size_changes_memory_not_pixels(pipe, monkeypatch):
    decode, calls = pipe.vae.decode, []

    def counting(latents, *args, **kwargs):
        calls.append(len(latents))
        return decode(latents, *args, **kwargs)

    first = frames(pipe)
    monkeypatch.setattr(pipe.vae, "decode", counting)
    chunked = frames(pipe, decode_chunk_size=3)
    assert calls == [3, 3, 2]
    assert np.array_equal(first, chunked)
