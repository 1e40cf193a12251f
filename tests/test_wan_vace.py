"""The Wan VACE family on its tiny checkpoint: contract (video, mask and reference image in one row), the docs'
first-and-last-frame recipe from files, how each condition reaches the pipeline, and the tiny example's chain."""

import json
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
import yaml

from videosweep.tasks.jobs import job_video_path
from videosweep.tasks.manifest import ManifestError, load_manifest
from videosweep.tasks.models import ensure_built, folder_sha256, known_models, wan_vace
from videosweep.tasks.models.base import LoadOptions, conditioning_image
from videosweep.tasks.plan import in_order
from videosweep.tasks.render import RunContext, render_job
from videosweep.tasks.video import read_mp4, read_video, write_lossless

from .conftest import REPO, ROCKET, make_video, pipeline_call
from .family_contract import FamilyContract
from .test_wan import DOCS_NEGATIVE

PROMPT = "A rocket lifts off at dawn, smoke billowing"
DOCS_PROMPT = (
    "CG animation style, a small blue bird takes off from the ground, flapping its wings. The bird's feathers are "
    "delicate, with a unique pattern on its chest. The background shows a blue sky with white clouds under bright "
    "sunshine. The camera follows the bird upward, capturing its flight and the vastness of the sky from a close-up, "
    "low-angle perspective."
)
MASK = REPO / "manifests" / "inputs" / "vace-centre-mask.mkv"


def prepare_video_and_mask(
    first_img: PIL.Image.Image, last_img: PIL.Image.Image, height: int, width: int, num_frames: int
):
    """The ``WanVACEPipeline`` docstring's helper (diffusers 0.42.1), verbatim but for this docstring and its signature's line breaks."""
    first_img = first_img.resize((width, height))
    last_img = last_img.resize((width, height))
    frames = []
    frames.append(first_img)
    # Ideally, this should be 127.5 to match original code, but they perform computation on numpy arrays
    # whereas we are passing PIL images. If you choose to pass numpy arrays, you can set it to 127.5 to
    # match the original code.
    frames.extend([PIL.Image.new("RGB", (width, height), (128, 128, 128))] * (num_frames - 2))
    frames.append(last_img)
    mask_black = PIL.Image.new("L", (width, height), 0)
    mask_white = PIL.Image.new("L", (width, height), 255)
    mask = [mask_black, *[mask_white] * (num_frames - 2), mask_black]
    return frames, mask


def first_and_last_frames(inputs: Path) -> tuple[PIL.Image.Image, PIL.Image.Image]:
    """Stand-ins for the docs' two hub images: the rocket, and the rocket mirrored."""
    first = PIL.Image.open(inputs / "rocket.png").convert("RGB")
    return first, first.transpose(PIL.Image.Transpose.FLIP_LEFT_RIGHT)


def docs_inputs(inputs: Path, height: int, width: int, num_frames: int) -> tuple[Path, Path]:
    """The docs' in-memory video and mask as files a row names: written losslessly, read back value for value."""
    video_path, mask_path = inputs / "docs-video.mkv", inputs / "docs-mask.mkv"
    if not video_path.exists():
        video, mask = prepare_video_and_mask(*first_and_last_frames(inputs), height, width, num_frames)
        write_lossless(np.stack([np.asarray(frame) for frame in video]), 16, video_path)
        write_lossless(np.stack([np.asarray(frame.convert("RGB")) for frame in mask]), 16, mask_path)
    return video_path, mask_path


class TestWanVACEContract(FamilyContract):
    family = "wan-vace"
    not_call_parameters = {"flow_shift", "reference_image"}  # the docs' scheduler swap; reference_images=[it]
    float32_by_docs = {"vae"}  # the docs' AutoencoderKLWan in float32

    def row(self, inputs):
        # every condition at once: a clip's first 5 frames (64x96, resized), the centre mask, the rocket as reference
        clip = inputs / "clip9.mp4"
        if not clip.exists():
            make_video(clip, frames=9)
        return dict(
            prompt=PROMPT,
            negative_prompt="blurry",
            video=str(clip),
            mask=str(MASK),
            reference_image=str(inputs / "rocket.png"),
            height=32,
            width=32,
            num_frames=5,
            num_inference_steps=2,
            max_sequence_length=16,
            flow_shift=5.0,
        )

    docs_fps = 16  # the docs' export_to_video(output, "output.mp4", fps=16)

    def docs_row(self, inputs):
        video, mask = docs_inputs(inputs, 32, 32, 9)
        return dict(
            prompt=DOCS_PROMPT,
            negative_prompt=DOCS_NEGATIVE,
            video=str(video),
            mask=str(mask),
            height=32,
            width=32,
            num_frames=9,
            num_inference_steps=2,
            guidance_scale=5.0,
            flow_shift=3.0,
        )

    def docs_recipe(self, folder, components, row, seed):
        """The ``WanVACEPipeline`` docstring's example (diffusers 0.42.1), as written, on the tiny checkpoint."""
        from diffusers import AutoencoderKLWan, WanVACEPipeline
        from diffusers.schedulers.scheduling_unipc_multistep import UniPCMultistepScheduler

        model_id = folder  # checkpoint path: the tiny folder
        vae = AutoencoderKLWan.from_pretrained(model_id, subfolder="vae", torch_dtype=torch.float32)
        pipe = WanVACEPipeline.from_pretrained(model_id, vae=vae, torch_dtype=torch.float32)  # dtype: float32 (the docs: bfloat16)
        flow_shift = 3.0  # 5.0 for 720P, 3.0 for 480P
        pipe.scheduler = UniPCMultistepScheduler.from_config(pipe.scheduler.config, flow_shift=flow_shift)
        # device: the docs' pipe.to("cuda") is left out (CPU only)

        prompt = "CG animation style, a small blue bird takes off from the ground, flapping its wings. The bird's feathers are delicate, with a unique pattern on its chest. The background shows a blue sky with white clouds under bright sunshine. The camera follows the bird upward, capturing its flight and the vastness of the sky from a close-up, low-angle perspective."
        negative_prompt = "Bright tones, overexposed, static, blurred details, subtitles, style, works, paintings, images, static, overall gray, worst quality, low quality, JPEG compression residue, ugly, incomplete, extra fingers, poorly drawn hands, poorly drawn faces, deformed, disfigured, misshapen limbs, fused fingers, still picture, messy background, three legs, many people in the background, walking backwards"
        first_frame, last_frame = first_and_last_frames(Path(row["video"]).parent)  # path: the docs' two hub images

        height = row["height"]  # sizes: 32 x 32, 9 frames, 2 steps (the docs: 512 x 512, 81 frames, 30 steps)
        width = row["width"]
        num_frames = row["num_frames"]
        video, mask = prepare_video_and_mask(first_frame, last_frame, height, width, num_frames)

        output = pipe(
            video=video,
            mask=mask,
            prompt=prompt,
            negative_prompt=negative_prompt,
            height=height,
            width=width,
            num_frames=num_frames,
            num_inference_steps=row["num_inference_steps"],
            guidance_scale=5.0,
            generator=torch.Generator().manual_seed(seed),  # seed: the docs' 42
        ).frames[0]
        # export_to_video(output, "output.mp4", fps=16) converts the numpy frames so
        return np.stack([(frame * 255).astype(np.uint8) for frame in output])


@pytest.fixture(scope="module")
def tiny() -> Path:
    ref = known_models()["tiny-wan-vace"]
    ensure_built(ref)
    return Path(ref.source)


@pytest.fixture(scope="module")
def pipe(tiny):
    return wan_vace.load(LoadOptions(str(tiny), None, "float32", None), "cpu")


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("clip") / "clip.mp4", frames=9)


def small(**overrides) -> wan_vace.Params:
    values = dict(prompt=PROMPT, height=32, width=32, num_frames=5, num_inference_steps=2, max_sequence_length=16)
    return wan_vace.Params(**{**values, **overrides})


def render(pipe, seed: int = 0, **overrides) -> np.ndarray:
    return wan_vace.FAMILY.render_one(pipe, small(**overrides), torch.Generator().manual_seed(seed), "cpu").frames


def problems(tmp_path: Path, row: dict) -> str:
    path = tmp_path / "manifest.yaml"
    path.write_text(yaml.safe_dump({"defaults": {"model": "tiny-wan-vace", "seed": 1}, "rows": [row]}))
    with pytest.raises(ManifestError) as caught:
        load_manifest(path, "cpu")
    return str(caught.value)


def test_tiny_checkpoint_has_the_layout_of_the_real_repo(tiny: Path):
    index = json.loads((tiny / "model_index.json").read_text())
    assert index["_class_name"] == "WanVACEPipeline"
    assert index["transformer"] == ["diffusers", "WanVACETransformer3DModel"]
    assert index["vae"] == ["diffusers", "AutoencoderKLWan"]
    assert index["text_encoder"] == ["transformers", "UMT5EncoderModel"]
    assert index["transformer_2"] == [None, None] and index["boundary_ratio"] is None  # Wan 2.1
    transformer = json.loads((tiny / "transformer" / "config.json").read_text())
    assert transformer["vace_in_channels"] == 96 and transformer["vace_layers"] == [0, 1]
    for weights in ("transformer/diffusion_pytorch_model", "vae/diffusion_pytorch_model", "text_encoder/model"):
        assert (tiny / f"{weights}.safetensors").is_file() and (tiny / f"{weights}.fp16.safetensors").is_file()


def test_tiny_build_is_reproducible(tiny: Path, tmp_path: Path):
    wan_vace.build_tiny(tmp_path / "again")
    assert folder_sha256(tmp_path / "again") == folder_sha256(tiny)


def test_a_mask_needs_a_video_and_the_prompt_is_required(tmp_path: Path):
    message = problems(tmp_path, {"mask": str(MASK)})
    assert "missing 'prompt'" in message
    assert "a mask marks which parts of `video` to keep and to generate: add `video:`, or drop the mask" in message
    assert "reference_image=" in problems(tmp_path, {"prompt": PROMPT, "reference_image": "nowhere.png"})


def test_conditions_reach_the_pipeline_as_the_docs_build_them(pipe, clip):
    """The video's first num_frames frames resized (PIL's default filter), the mask grey and resized nearest (so still
    black and white), the reference image as a list of one, and every other parameter as itself."""
    params = small(video=clip, mask=MASK, reference_image=ROCKET, conditioning_scale=0.5, flow_shift=8.0)
    generator = torch.Generator().manual_seed(7)
    call = pipeline_call(pipe, lambda: wan_vace.FAMILY.render_one(pipe, params, generator, "cpu"))
    assert call.scheduler.config.flow_shift == 8.0
    video, mask, references = (call.kwargs.pop(key) for key in ("video", "mask", "reference_images"))
    assert [np.asarray(frame).tolist() for frame in video] == [
        np.asarray(frame.resize((32, 32))).tolist() for frame in read_video(clip, 5)[0]
    ]
    centre = np.zeros((32, 32), np.uint8)
    centre[8:24, 8:24] = 255  # the 16x16 mask's 8x8 centre, doubled
    assert len(mask) == 5 and all(frame.mode == "L" and np.array_equal(np.asarray(frame), centre) for frame in mask)
    rocket = np.asarray(PIL.Image.open(ROCKET).convert("RGB"))
    assert len(references) == 1 and np.array_equal(np.asarray(references[0]), rocket)
    assert call.args == () and call.kwargs == dict(
        prompt=PROMPT,
        negative_prompt=None,
        conditioning_scale=0.5,
        height=32,
        width=32,
        num_frames=5,
        num_inference_steps=2,
        guidance_scale=5.0,
        guidance_scale_2=None,
        max_sequence_length=16,
        generator=generator,
        output_type="latent",
    )


def test_each_condition_changes_the_video_and_a_reference_adds_no_frame(pipe, clip):
    """The reference image's latent frame leads the pipeline's latents and is dropped before the decode, as the
    pipeline drops it: num_frames frames with or without it."""
    plain = render(pipe)
    videos = [render(pipe, video=clip), render(pipe, video=clip, mask=MASK), render(pipe, reference_image=ROCKET)]
    assert all(video.shape == plain.shape == (5, 32, 32, 3) for video in videos)
    for one, other in zip([plain, *videos], videos):
        assert not np.array_equal(one, other)


def test_a_video_or_mask_shorter_than_num_frames_is_refused(pipe, tmp_path: Path):
    short = make_video(tmp_path / "short.mp4", frames=4)
    with pytest.raises(ValueError, match="num_frames=5, but the video .*short.mp4 has only 4 frames"):
        render(pipe, video=short)
    with pytest.raises(ValueError, match="num_frames=5, but the video .*short.mp4 has only 4 frames"):
        render(pipe, video=make_video(tmp_path / "long.mp4", frames=9), mask=short)


def test_the_reference_image_is_no_first_frame():
    """First-frame metrics compare a video's first frame with an image-to-video row's image, not with a reference."""
    assert conditioning_image(small(reference_image=ROCKET)) is None


def test_the_tiny_manifest_chains_text_to_video_into_vace(tmp_path: Path):
    """The tiny example, rendered job by job: tiny-wan's bird repainted by tiny-wan-vace from its lossless frames,
    under the committed mask, with the reference image; and a render from the reference image alone."""
    path = REPO / "manifests" / "tiny" / "wan-vace.yaml"
    source, alone, taker = in_order(load_manifest(path, "cpu").jobs)
    assert [job.model for job in (source, alone, taker)] == ["tiny-wan", "tiny-wan-vace", "tiny-wan-vace"]
    assert taker.depends_on == [source.job_id] and taker.params["mask"].endswith("vace-centre-mask.mkv")
    run = RunContext("chain", tmp_path / "out", "cpu", "chain", str(path), "-")
    records = [render_job(job, run) for job in (source, alone, taker)]
    assert [record["status"] for record in records] == ["ok"] * 3, [record["error"] for record in records]
    assert '"lossless": true' in records[2]["chain_inputs_json"]
    for job in (alone, taker):
        frames, fps = read_mp4(run.out_root / job_video_path(job.job_id))
        assert frames.shape == (9, 32, 32, 3) and fps == 16


def test_the_real_manifest_keeps_the_docs_values():
    real = in_order(load_manifest(REPO / "manifests" / "wan-vace.yaml", "cpu").jobs)
    assert [job.model for job in real] == ["wan2.1-t2v-1.3b", "wan2.1-vace-1.3b", "wan2.1-vace-1.3b"]
    for job in real[1:]:
        values = [job.params[key] for key in ("height", "width", "num_frames", "num_inference_steps", "guidance_scale")]
        assert values == [512, 512, 81, 30, 5.0] and job.params["flow_shift"] == 3.0
        assert job.params["negative_prompt"] == DOCS_NEGATIVE
    assert real[0].params["prompt"] == DOCS_PROMPT
