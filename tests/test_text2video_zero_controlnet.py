"""Text2Video-Zero with pose / edge control on the tiny SD 1.5 and a tiny ControlNet in its own folder."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from videosweep.tasks.manifest import ManifestError, load_manifest
from videosweep.tasks.models import ensure_built, folder_sha256, known_models, text2video_zero_controlnet, tiny_folder
from videosweep.tasks.models.base import LoadOptions
from videosweep.tasks.models.text2video_zero_controlnet import canny_edges
from videosweep.tasks.video import write_mp4

from .conftest import make_video, pipeline_call
from .family_contract import FamilyContract

PROMPT = "Darth Vader dancing in a desert"
MODEL = "tiny-text2video-zero-controlnet"


@pytest.fixture(scope="module", autouse=True)
def built():
    ensure_built(known_models()[MODEL])


class TestTextToVideoZeroControlNetContract(FamilyContract):
    family = "text2video-zero-controlnet"
    # the control video, read and turned into control images here; its frames are the call's image=
    not_call_parameters = {"video", "num_frames", "control", "canny_low", "canny_high", "canny_sigma"}

    def row(self, inputs):
        return dict(
            prompt=PROMPT,
            negative_prompt="blurry",
            video=str(inputs / "clip.mp4"),
            num_frames=4,
            height=32,
            width=48,
            num_inference_steps=2,
        )

    docs_fps = 4  # the docs' imageio.mimsave("video.mp4", result, fps=4)

    def docs_row(self, inputs):
        # the docs' clip of pose skeletons is taken as it is (control: frames), its first frame_count = 8 frames,
        # written at their fps=4 (not the input's rate, this family's default)
        return dict(prompt=PROMPT, video=str(inputs / "clip.mp4"), num_frames=8, height=32, width=48, num_inference_steps=2, fps=4)

    def docs_recipe(self, folder, components, row, seed):
        """api/pipelines/text_to_video_zero, "Text-To-Video with Pose Control" (steps 2 and 3), as written, on the tiny checkpoints."""
        import imageio
        from diffusers import ControlNetModel, StableDiffusionControlNetPipeline
        from diffusers.pipelines.deprecated.text_to_video_synthesis.pipeline_text_to_video_zero import (
            CrossFrameAttnProcessor,  # forced by diffusers 0.42.1: the docs' path lacks "deprecated."
        )
        from PIL import Image

        video_path = row["video"]  # path: the row's clip for the docs' dance1_corr.mp4 download
        reader = imageio.get_reader(video_path, "ffmpeg")
        frame_count = 8
        pose_images = [Image.fromarray(reader.get_data(i)) for i in range(frame_count)]

        # checkpoint paths: the tiny folders; dtype: float32 (the docs: torch.float16); device: no .to("cuda")
        model_id = folder
        controlnet = ControlNetModel.from_pretrained(components["controlnet"], torch_dtype=torch.float32)
        pipe = StableDiffusionControlNetPipeline.from_pretrained(model_id, controlnet=controlnet, torch_dtype=torch.float32)

        # Set the attention processor
        pipe.unet.set_attn_processor(CrossFrameAttnProcessor(batch_size=2))
        pipe.controlnet.set_attn_processor(CrossFrameAttnProcessor(batch_size=2))

        # fix latents for all frames
        torch.manual_seed(seed)  # the docs draw the latents from torch's global RNG unseeded: seeded here
        # sizes: latents of the row's height x width (the docs: 64 x 64, 512 px); device: the CPU; dtype: float32
        latents = torch.randn((1, 4, row["height"] // 8, row["width"] // 8)).repeat(len(pose_images), 1, 1, 1)

        prompt = "Darth Vader dancing in a desert"
        result = pipe(
            prompt=[prompt] * len(pose_images),
            image=pose_images,
            latents=latents,
            height=row["height"],  # sizes: the row's, and 2 steps (the docs: 512 x 512 from the UNet, 50 steps)
            width=row["width"],
            num_inference_steps=row["num_inference_steps"],
        ).images
        reader.close()
        # imageio.mimsave("video.mp4", result, fps=4) writes these PIL frames as arrays
        return np.stack([np.asarray(frame) for frame in result])


# -- helpers -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny() -> tuple[Path, Path]:
    ref = known_models()[MODEL]
    return Path(ref.source), Path(dict(ref.components)["controlnet"])


def options(base: Path, controlnet: Path, dtype: str = "float32") -> LoadOptions:
    return LoadOptions(str(base), None, dtype, None, (("controlnet", str(controlnet), None),))


@pytest.fixture(scope="module")
def pipe(tiny):
    return text2video_zero_controlnet.load(options(*tiny), "cpu")


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """The rocket panning left to right: 8 frames, 64x96, 8 fps."""
    return make_video(tmp_path_factory.mktemp("clips") / "clip.mp4")


def small(video: Path, **overrides) -> text2video_zero_controlnet.Params:
    values = dict(prompt=PROMPT, video=video, num_frames=4, height=32, width=48, num_inference_steps=2)
    return text2video_zero_controlnet.Params(**{**values, **overrides})


def frames(pipe, video: Path, seed: int = 0, **overrides) -> np.ndarray:
    params = small(video, **overrides)
    return text2video_zero_controlnet.FAMILY.render_one(pipe, params, torch.Generator().manual_seed(seed), "cpu").frames


def manifest_problems(tmp_path: Path, **row) -> str:
    """The error load_manifest raises for one tiny row (fails the test if it raises none)."""
    path = tmp_path / "manifest.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "rows": [{"model": MODEL, "seed": 0, **row}]}, sort_keys=False))
    with pytest.raises(ManifestError) as error:
        load_manifest(path, "cpu")
    return str(error.value)


# -- the checkpoints ------------------------------------------------------------------------------


def test_tiny_base_is_the_shared_sd15_and_the_controlnet_fits_it(tiny):
    base, controlnet = tiny
    assert base == tiny_folder("text2video-zero")  # the plain family's SD 1.5, safety checker and all
    index = json.loads((base / "model_index.json").read_text())
    assert index["safety_checker"] == ["stable_diffusion", "StableDiffusionSafetyChecker"]
    config = json.loads((controlnet / "config.json").read_text())
    assert config["_class_name"] == "ControlNetModel"
    assert not list(controlnet.glob("*.fp16.*")), "the docs load ControlNets without a variant"
    unet = json.loads((base / "unet" / "config.json").read_text())
    for key in ("block_out_channels", "down_block_types", "layers_per_block", "cross_attention_dim", "norm_num_groups"):
        assert config[key] == unet[key], key
    # the control image is halved as often as the VAE halves pixels, to meet the latents
    vae = json.loads((base / "vae" / "config.json").read_text())
    assert len(config["conditioning_embedding_out_channels"]) == len(vae["block_out_channels"])


def test_tiny_controlnet_build_is_reproducible(tiny, tmp_path: Path):
    """Same bytes on every machine, so job ids of tiny-model rows agree everywhere."""
    text2video_zero_controlnet.FAMILY.components["controlnet"].build_tiny(tmp_path / "controlnet")
    assert folder_sha256(tmp_path / "controlnet") == folder_sha256(tiny[1])


def test_load_follows_the_docs(pipe, tiny):
    from diffusers import ControlNetModel
    from diffusers.pipelines.deprecated.text_to_video_synthesis.pipeline_text_to_video_zero import (
        CrossFrameAttnProcessor,
    )

    for network in (pipe.unet, pipe.controlnet):
        processors = list(network.attn_processors.values())
        assert processors and all(isinstance(p, CrossFrameAttnProcessor) and p.batch_size == 2 for p in processors)
    saved = ControlNetModel.from_pretrained(tiny[1]).state_dict()
    assert all(torch.equal(value, saved[key]) for key, value in pipe.controlnet.state_dict().items())


# -- parameters, checked when the manifest is read -----------------------------------------------


def test_a_control_video_is_required(tmp_path: Path):
    message = manifest_problems(tmp_path, prompt=PROMPT)
    assert "missing 'video'" in message and "add `video: path/to/video.mp4`" in message
    assert "missing 'prompt'" in manifest_problems(tmp_path, video=str(make_video(tmp_path / "c.mp4")))


def test_bad_values_are_refused_at_once(tmp_path: Path):
    video = str(make_video(tmp_path / "clip.mp4"))
    rows = [
        {"guidance_scale": 1.0},
        {"canny_low": 50},  # control is frames
        {"control": "canny", "canny_low": 250},  # above the default high of 200
        {"control": "openpose"},
        {"control_guidance_start": 0.6, "control_guidance_end": 0.4},
        {"num_frames": 65},
        {"height": 32},
        {"clip_skip": 2},
    ]
    path = tmp_path / "manifest.yaml"
    defaults = {"model": MODEL, "seed": 0, "prompt": PROMPT, "video": video}
    path.write_text(yaml.safe_dump({"name": "t", "defaults": defaults, "rows": rows}, sort_keys=False))
    with pytest.raises(ManifestError) as error:
        load_manifest(path, "cpu")
    message = str(error.value)
    assert "guidance_scale=1.0: Input should be greater than 1" in message and "guided batch" in message
    assert "canny_low only applies with `control: canny` (control is 'frames')" in message
    assert "canny_low=250 is above canny_high=200" in message
    assert "control='openpose'" in message and "'frames', 'pose' or 'canny'" in message
    assert "control_guidance_start=0.6 must be below control_guidance_end=0.4" in message
    assert "num_frames=65" in message and "64" in message
    assert "give both height and width" in message
    assert "unknown key 'clip_skip'" in message


def test_canny_settings_with_canny_control_are_accepted(tmp_path: Path):
    path = tmp_path / "manifest.yaml"
    row = dict(model=MODEL, seed=0, prompt=PROMPT, video=str(make_video(tmp_path / "clip.mp4")))
    row.update(control="canny", canny_low=50, canny_high=120, canny_sigma=1.0)
    path.write_text(yaml.safe_dump({"name": "t", "rows": [row]}, sort_keys=False))
    (job,) = load_manifest(path, "cpu").jobs
    assert job.typed_params().canny_low == 50
    assert job.components == {"controlnet": str(tiny_folder("text2video-zero-controlnet-controlnet"))}


# -- rendering -----------------------------------------------------------------------------------


def test_render_shape_fps_timings_and_default_size(pipe, clip, tmp_path: Path):
    rendered = text2video_zero_controlnet.FAMILY.render_one(pipe, small(clip), torch.Generator().manual_seed(0), "cpu")
    assert rendered.frames.shape == (4, 32, 48, 3) and rendered.frames.dtype == np.uint8
    assert rendered.fps == 8  # the input video's
    assert rendered.denoise_s > 0 and rendered.decode_s > 0
    # unset: every frame of the video, at its own size, and its own frame rate
    other = make_video(tmp_path / "slow.mp4", frames=5, fps=12)
    assert frames(pipe, other, num_frames=None, height=None, width=None).shape == (5, 64, 96, 3)
    assert text2video_zero_controlnet.FAMILY.render_one(
        pipe, small(other), torch.Generator().manual_seed(0), "cpu"
    ).fps == 12


def test_every_frame_starts_from_the_same_latent(pipe, clip, tmp_path: Path):
    """One latent repeated, the first frame's attention for all: only the control tells frames apart."""
    still = tmp_path / "still.mp4"
    write_mp4(np.stack([make_frame()] * 4), 8, still)
    out = frames(pipe, still)
    assert all(np.array_equal(out[0], frame) for frame in out[1:])
    uncontrolled = frames(pipe, clip, controlnet_conditioning_scale=0.0)
    assert all(np.array_equal(uncontrolled[0], frame) for frame in uncontrolled[1:])
    controlled = frames(pipe, clip)
    assert not np.array_equal(controlled[0], controlled[-1])
    assert not np.array_equal(controlled, frames(pipe, clip, seed=1))


def make_frame() -> np.ndarray:
    frame = np.zeros((64, 96, 3), np.uint8)
    frame[16:48, 24:72] = (220, 180, 40)
    return frame


def test_canny_control_feeds_the_edges_of_each_frame(pipe, clip):
    """control: canny renders what the pipeline renders from the edge images, as the ControlNet docs make them."""
    from diffusers.utils.torch_utils import randn_tensor
    from PIL import Image

    from videosweep.tasks.video import read_video

    ours = frames(pipe, clip, seed=4, control="canny", canny_low=40, canny_high=90)
    resized = [frame.resize((48, 32)) for frame in read_video(clip)[0][:4]]
    edges = [canny_edges(np.asarray(frame), 40, 90) for frame in resized]
    assert all(edge.any() for edge in edges)
    images = [Image.fromarray(np.stack([edge] * 3, axis=-1)) for edge in edges]
    latents = randn_tensor((1, 4, 4, 6), generator=torch.Generator().manual_seed(4)).repeat(4, 1, 1, 1)
    theirs = pipe(
        prompt=[PROMPT] * 4, image=images, latents=latents, num_inference_steps=2, output_type="np"
    ).images
    assert np.array_equal(ours, (theirs * 255).round().astype(np.uint8))
    assert not np.array_equal(ours, frames(pipe, clip, seed=4))  # the raw frames control something else


def test_call_parameters_reach_the_pipeline(pipe, clip):
    """Each parameter reaches the pipeline's call as itself, prompts once per frame; the control frames as read
    (the pipeline resizes them); one latent from the job's generator, repeated for every frame, as the docs fix it."""
    from diffusers.utils.torch_utils import randn_tensor

    from videosweep.tasks.video import read_video

    params = small(
        clip,
        prompt="a boat at sea",
        negative_prompt="blurry",
        guidance_scale=3.0,
        eta=0.5,
        controlnet_conditioning_scale=0.5,
        control_guidance_start=0.25,
        control_guidance_end=0.75,
    )
    generator = torch.Generator().manual_seed(7)
    call = pipeline_call(pipe, lambda: text2video_zero_controlnet.FAMILY.render_one(pipe, params, generator, "cpu"))
    images = call.kwargs.pop("image")
    assert [np.asarray(image).tolist() for image in images] == [np.asarray(f).tolist() for f in read_video(clip)[0][:4]]
    latents = call.kwargs.pop("latents")
    assert torch.equal(latents, randn_tensor((1, 4, 4, 6), generator=torch.Generator().manual_seed(7)).repeat(4, 1, 1, 1))
    assert call.args == () and call.kwargs == dict(
        prompt=["a boat at sea"] * 4,
        height=32,
        width=48,
        num_inference_steps=2,
        guidance_scale=3.0,
        negative_prompt=["blurry"] * 4,
        eta=0.5,
        generator=generator,
        controlnet_conditioning_scale=0.5,
        control_guidance_start=0.25,
        control_guidance_end=0.75,
        output_type="latent",
    )


def test_videos_that_do_not_fit_are_refused(pipe, clip, tmp_path: Path):
    with pytest.raises(ValueError, match="num_frames=9, but the video .* has only 8 frames"):
        frames(pipe, clip, num_frames=9)
    odd = make_video(tmp_path / "odd.mp4", frames=2, height=36, width=52)
    with pytest.raises(ValueError, match="52x36, not a multiple of 8 .* give height and width"):
        frames(pipe, odd, num_frames=None, height=None, width=None)
    assert frames(pipe, odd, num_frames=None).shape == (2, 32, 48, 3)  # resized, it renders
    long = tmp_path / "long.mp4"
    write_mp4(np.stack([make_frame()] * 65), 8, long)
    with pytest.raises(ValueError, match="65 frames, more than 64 in one batch; set num_frames"):
        frames(pipe, long, num_frames=None)


def test_safety_checker_runs_on_our_decode(tiny, clip):
    """Flagged frames come out black, as from the pipeline's own decode: the checker is not skipped."""
    flagging = text2video_zero_controlnet.load(options(*tiny), "cpu")
    with torch.no_grad():  # thresholds below any score: every frame is flagged
        flagging.safety_checker.concept_embeds_weights.fill_(-2.0)
    out = frames(flagging, clip)
    assert out.shape == (4, 32, 48, 3) and not out.any()


# -- the numpy Canny -----------------------------------------------------------------------------


def step(left: int, right: int, rows: int = 8, cols: int = 10, at: int = 5) -> np.ndarray:
    image = np.full((rows, cols), left, np.uint8)
    image[:, at:] = right
    return image


def test_canny_marks_a_step_once_on_its_left_side_like_cv2():
    """A 0 -> 255 step: Sobel gives 1020 on both sides; cv2 keeps the left one (its ties go right)."""
    edges = canny_edges(step(0, 255), 100, 200)
    assert edges.dtype == np.uint8 and set(np.unique(edges)) == {0, 255}
    assert np.array_equal(np.flatnonzero(edges.any(axis=0)), [4]) and edges[:, 4].all()
    assert np.array_equal(canny_edges(step(0, 255).T, 100, 200), edges.T)  # rows as columns
    assert not canny_edges(np.full((8, 10), 128, np.uint8), 100, 200).any()


def test_canny_thresholds_and_hysteresis():
    # a step of 30 gives |gx| = 4 * 30 = 120: above 100 (low) but not 200 (high): no edge starts
    assert not canny_edges(step(100, 130), 100, 200).any()
    assert canny_edges(step(100, 130), 100, 110).any()
    # strong in the top half, weak in the bottom half: the weak half joins the line it continues
    joined = step(100, 130)
    joined[:4, 5:] = 200
    assert canny_edges(joined, 100, 200)[5:, 4].all()  # the weak rows (the corner rows are diagonal)
    # a weak line apart from the strong one is dropped
    apart = step(100, 130, cols=20, at=15)
    apart[:, :5] = 0  # 0 -> 100: strong
    edges = canny_edges(apart, 100, 200)
    assert edges[:, 4].all() and not edges[:, 10:].any()


def test_canny_takes_the_strongest_channel_and_blurs_on_request():
    color = np.zeros((8, 10, 3), np.uint8)
    color[:, 5:, 2] = 255  # an edge in blue only
    assert np.array_equal(canny_edges(color, 100, 200), canny_edges(step(0, 255), 100, 200))
    noise = np.random.default_rng(0).integers(0, 256, (32, 32), dtype=np.uint8)
    assert canny_edges(noise, 100, 200, sigma=2.0).sum() < canny_edges(noise, 100, 200).sum() / 2
