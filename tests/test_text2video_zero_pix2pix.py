"""Video Instruct-Pix2Pix (Text2Video-Zero) on its tiny InstructPix2Pix checkpoint."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from videosweep.tasks.manifest import ManifestError, load_manifest
from videosweep.tasks.models import ensure_built, folder_sha256, known_models, text2video_zero_pix2pix
from videosweep.tasks.models.base import LoadOptions

from .conftest import make_video, pipeline_call
from .family_contract import FamilyContract

PROMPT = "make it Van Gogh Starry Night style"
MODEL = "tiny-text2video-zero-pix2pix"


class TestVideoInstructPix2PixContract(FamilyContract):
    family = "text2video-zero-pix2pix"
    not_call_parameters = {"video", "num_frames", "height", "width"}  # the input video, read and resized here

    def row(self, inputs):
        return dict(prompt=PROMPT, video=str(inputs / "clip.mp4"), num_frames=4, height=32, width=48, num_inference_steps=2)

    docs_fps = 4  # the docs' imageio.mimsave("edited_video.mp4", result, fps=4)

    def docs_row(self, inputs):
        # the docs' first frame_count = 8 frames at the video's own size, written at their fps=4 (not the input's rate)
        return dict(prompt=PROMPT, video=str(inputs / "clip.mp4"), num_frames=8, num_inference_steps=2, fps=4)

    def docs_recipe(self, folder, components, row, seed):
        """api/pipelines/text_to_video_zero, "Video Instruct-Pix2Pix" (steps 2 and 3), as written, on the tiny checkpoint."""
        import imageio
        from diffusers import StableDiffusionInstructPix2PixPipeline
        from diffusers.pipelines.deprecated.text_to_video_synthesis.pipeline_text_to_video_zero import (
            CrossFrameAttnProcessor,  # forced by diffusers 0.42.1: the docs' path lacks "deprecated."
        )
        from PIL import Image

        video_path = row["video"]  # path: the row's clip for the docs' camel.mp4 download
        reader = imageio.get_reader(video_path, "ffmpeg")
        frame_count = 8
        video = [Image.fromarray(reader.get_data(i)) for i in range(frame_count)]

        # checkpoint path: the tiny folder; dtype: float32 (the docs: torch.float16); device: no .to("cuda")
        model_id = folder
        pipe = StableDiffusionInstructPix2PixPipeline.from_pretrained(model_id, torch_dtype=torch.float32)
        pipe.unet.set_attn_processor(CrossFrameAttnProcessor(batch_size=3))

        prompt = "make it Van Gogh Starry Night style"
        torch.manual_seed(seed)  # the docs pass no generator: their call draws from torch's global RNG, seeded here
        result = pipe(
            prompt=[prompt] * len(video), image=video, num_inference_steps=row["num_inference_steps"]  # steps: 2 (the docs: 100)
        ).images
        reader.close()
        # imageio.mimsave("edited_video.mp4", result, fps=4) writes these PIL frames as arrays
        return np.stack([np.asarray(frame) for frame in result])


@pytest.fixture(scope="module")
def tiny() -> Path:
    ref = known_models()[MODEL]
    ensure_built(ref)
    return Path(ref.source)


@pytest.fixture(scope="module")
def pipe(tiny: Path):
    return text2video_zero_pix2pix.load(LoadOptions(str(tiny), None, "float32", None), "cpu")


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """The rocket panning left to right: 8 frames, 64x96, 8 fps."""
    return make_video(tmp_path_factory.mktemp("clips") / "clip.mp4")


def small(video: Path, **overrides) -> text2video_zero_pix2pix.Params:
    values = dict(prompt=PROMPT, video=video, num_frames=4, height=32, width=48, num_inference_steps=2)
    return text2video_zero_pix2pix.Params(**{**values, **overrides})


def frames(pipe, video: Path, seed: int = 0, **overrides) -> np.ndarray:
    params = small(video, **overrides)
    return text2video_zero_pix2pix.FAMILY.render_one(pipe, params, torch.Generator().manual_seed(seed), "cpu").frames


# -- the checkpoint ------------------------------------------------------------------------------


def test_tiny_checkpoint_has_the_layout_of_the_real_repo(tiny: Path):
    index = json.loads((tiny / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionInstructPix2PixPipeline"
    assert index["safety_checker"] == ["stable_diffusion", "StableDiffusionSafetyChecker"]
    for weights in ("unet/diffusion_pytorch_model", "vae/diffusion_pytorch_model", "text_encoder/model"):
        assert (tiny / f"{weights}.safetensors").is_file()
        assert (tiny / f"{weights}.fp16.safetensors").is_file()
    unet = json.loads((tiny / "unet" / "config.json").read_text())
    assert unet["in_channels"] == 8 and unet["out_channels"] == 4  # noisy latents + the frame's latents
    scheduler = json.loads((tiny / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["_class_name"] == "EulerAncestralDiscreteScheduler"


def test_tiny_build_is_reproducible(tiny: Path, tmp_path: Path):
    """Same bytes on every machine, so job ids of tiny-model rows agree everywhere."""
    text2video_zero_pix2pix.build_tiny(tmp_path / "again")
    assert folder_sha256(tmp_path / "again") == folder_sha256(tiny)


def test_load_sets_cross_frame_attention_for_three_branches(pipe):
    from diffusers.pipelines.deprecated.text_to_video_synthesis.pipeline_text_to_video_zero import (
        CrossFrameAttnProcessor,
    )

    processors = list(pipe.unet.attn_processors.values())
    assert processors and all(isinstance(p, CrossFrameAttnProcessor) and p.batch_size == 3 for p in processors)


# -- parameters, checked when the manifest is read -----------------------------------------------


def test_a_video_is_required_and_bad_values_are_refused_at_once(tmp_path: Path):
    video = str(make_video(tmp_path / "clip.mp4"))
    rows = [
        {"video": None},
        {"guidance_scale": 1.0},
        {"image_guidance_scale": 0.9},
        {"height": 32},
        {"num_frames": 0},
        {"strength": 0.5},
    ]
    path = tmp_path / "manifest.yaml"
    defaults = {"model": MODEL, "seed": 0, "prompt": PROMPT, "video": video}
    path.write_text(yaml.safe_dump({"name": "t", "defaults": defaults, "rows": rows}, sort_keys=False))
    with pytest.raises(ManifestError) as error:
        load_manifest(path, "cpu")
    message = str(error.value)
    assert "video=None: must be a path to a video file" in message
    assert "guidance_scale=1.0: Input should be greater than 1" in message
    assert "image_guidance_scale=0.9: Input should be greater than or equal to 1" in message
    assert "give both height and width" in message
    assert "num_frames=0" in message
    assert "unknown key 'strength'" in message
    path.write_text(yaml.safe_dump({"name": "t", "rows": [{"model": MODEL, "seed": 0, "prompt": PROMPT}]}))
    with pytest.raises(ManifestError, match="missing 'video'.*add `video: path/to/video.mp4`"):
        load_manifest(path, "cpu")


# -- rendering -----------------------------------------------------------------------------------


def test_render_shape_fps_timings_and_default_size(pipe, clip, tmp_path: Path):
    rendered = text2video_zero_pix2pix.FAMILY.render_one(pipe, small(clip), torch.Generator().manual_seed(0), "cpu")
    assert rendered.frames.shape == (4, 32, 48, 3) and rendered.frames.dtype == np.uint8
    assert rendered.fps == 8  # the input video's
    assert rendered.denoise_s > 0 and rendered.decode_s > 0
    other = make_video(tmp_path / "slow.mp4", frames=3, fps=12)
    rendered = text2video_zero_pix2pix.FAMILY.render_one(
        pipe, small(other, num_frames=None, height=None, width=None), torch.Generator().manual_seed(0), "cpu"
    )
    assert rendered.frames.shape == (3, 64, 96, 3) and rendered.fps == 12


def test_the_edit_follows_the_input_frames(pipe, clip):
    """Each output frame is its own input frame edited: the panning shows."""
    first = frames(pipe, clip)
    assert not np.array_equal(first[0], first[-1])


def test_call_parameters_reach_the_pipeline(pipe, clip):
    """Each parameter reaches the pipeline's call as itself, the instruction once per frame; the input frames
    resized to the row's size."""
    from videosweep.tasks.video import read_video

    params = small(clip, negative_prompt="blurry", guidance_scale=3.0, image_guidance_scale=2.0, eta=0.5)
    generator = torch.Generator().manual_seed(7)
    call = pipeline_call(pipe, lambda: text2video_zero_pix2pix.FAMILY.render_one(pipe, params, generator, "cpu"))
    images = call.kwargs.pop("image")
    expected = [frame.resize((48, 32)) for frame in read_video(clip)[0][:4]]
    assert [np.asarray(image).tolist() for image in images] == [np.asarray(frame).tolist() for frame in expected]
    assert call.args == () and call.kwargs == dict(
        prompt=[PROMPT] * 4,
        num_inference_steps=2,
        guidance_scale=3.0,
        image_guidance_scale=2.0,
        negative_prompt=["blurry"] * 4,
        eta=0.5,
        generator=generator,
        output_type="latent",
    )


def test_videos_that_do_not_fit_are_refused(pipe, clip, tmp_path: Path):
    with pytest.raises(ValueError, match="num_frames=9, but the video .* has only 8 frames"):
        frames(pipe, clip, num_frames=9)
    odd = make_video(tmp_path / "odd.mp4", frames=2, height=36, width=52)
    with pytest.raises(ValueError, match="52x36, not a multiple of 8 .* give height and width"):
        frames(pipe, odd, num_frames=None, height=None, width=None)


def test_safety_checker_runs_on_our_decode(tiny: Path, clip):
    """Flagged frames come out black, as from the pipeline's own decode: the checker is not skipped."""
    flagging = text2video_zero_pix2pix.load(LoadOptions(str(tiny), None, "float32", None), "cpu")
    with torch.no_grad():  # thresholds below any score: every frame is flagged
        flagging.safety_checker.concept_embeds_weights.fill_(-2.0)
    out = frames(flagging, clip)
    assert out.shape == (4, 32, 48, 3) and not out.any()
