"""The LTX-2 latent upsample stage on its tiny checkpoint (the tiny LTX-2 repo with a latent_upsampler folder): the
contract, the 2x output, the 8k+1 / 32 px refusals, what the pipeline has not (a scheduler, a denoiser), and the
tiny manifest chaining an ``ltx2`` row into it."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from videosweep.tasks.jobs import job_video_path
from videosweep.tasks.manifest import ManifestError, load_manifest
from videosweep.tasks.models import ensure_built, known_models, ltx2_upsample
from videosweep.tasks.models.base import LoadOptions
from videosweep.tasks.pipeline_setup import Baseline, UnsupportedOption, prepare_job
from videosweep.tasks.plan import in_order
from videosweep.tasks.render import RunContext, pipeline_cache, render_job
from videosweep.tasks.video import audio_stream, read_mp4, read_video

from .conftest import REPO, make_video, pipeline_call
from .family_contract import FamilyContract

DOCS_PROMPT = (
    "A young girl stands calmly in the foreground, looking directly at the camera, as a house fire rages in the "
    "background."
)


def clip9(inputs: Path) -> Path:
    """9 frames (8k+1) of 64x64 (LTX-2's smallest side) at 24 fps: the size and rate of a tiny ltx2 row's video."""
    path = inputs / "clip9.mp4"
    if not path.exists():
        make_video(path, frames=9, height=64, width=64, fps=24)
    return path


class TestLTX2UpsampleContract(FamilyContract):
    family = "ltx2-upsample"
    # None: the input video's own size and frame count (the pipeline's 512 x 768 x 121 are LTX-2's default first
    # stage's, which describe the input, not a default the stage should resize to)
    defaults_differ = {"height", "width", "num_frames"}
    docs_fps = 24  # the docs' encode_video(video[0], fps=frame_rate, ...) with frame_rate = 24.0: the input's rate

    def row(self, inputs):
        return dict(video=str(clip9(inputs)))

    def docs_row(self, inputs):
        return dict(video=str(clip9(inputs)), width=64, height=64)

    def docs_recipe(self, folder, components, row, seed):
        """The ``LTX2LatentUpsamplePipeline`` docstring's example (diffusers 0.42.1), as written, on the tiny
        checkpoint; its first stage's frames are the row's input video."""
        from diffusers import LTX2ImageToVideoPipeline, LTX2LatentUpsamplePipeline
        from diffusers.pipelines.ltx2.latent_upsampler import LTX2LatentUpsamplerModel
        from diffusers.utils import load_video

        # checkpoint path: the tiny folder; dtype: float32 (the docs: torch.bfloat16)
        pipe = LTX2ImageToVideoPipeline.from_pretrained(folder, torch_dtype=torch.float32)
        # device: the docs' pipe.enable_model_cpu_offload() is left out (CPU only)

        # the first stage: the docs' video, pipe(image=image, prompt=..., width=768, height=512, num_frames=121,
        # frame_rate=frame_rate, num_inference_steps=40, guidance_scale=4.0, output_type="pil", ...)'s PIL frames in
        # memory, is the row's input video, read as PIL frames (64 x 64, 9 frames at 24 fps)
        video = load_video(row["video"])
        frame_rate = 24.0

        latent_upsampler = LTX2LatentUpsamplerModel.from_pretrained(
            folder, subfolder="latent_upsampler", torch_dtype=torch.float32  # path: the tiny folder; dtype: float32
        )
        upsample_pipe = LTX2LatentUpsamplePipeline(vae=pipe.vae, latent_upsampler=latent_upsampler)
        upsample_pipe.vae.enable_tiling()
        upsample_pipe.to(device="cpu", dtype=torch.float32)  # device and dtype: the CPU, float32 (the docs: cuda, bf16)

        torch.manual_seed(seed)  # the docs pass no generator: their call draws from torch's global RNG, seeded here
        video = upsample_pipe(
            video=video,
            width=row["width"],  # sizes: 64 x 64 (the docs: 768 x 512)
            height=row["height"],
            output_type="np",
            return_dict=False,
        )[0]
        # encode_video(video[0], fps=frame_rate, audio=..., ...) rounds the numpy frames: (video * 255).round()
        return (video[0] * 255).round().astype("uint8")

    # -- what the contract asks of a denoiser, for a pipeline that has none -----------------------------

    def test_deep_cache_reuses_the_unets_deep_blocks_between_full_calls(self, tmp_path, inputs):
        """No denoiser to cache: validation lets a deep_cache row through (tasks.pipeline_options.step_cache_refusal
        refuses it only for pipelines whose class takes a transformer), and the job's setup refuses it, naming the
        option, before any render."""
        row = {**self.row(inputs), "step_cache": {"type": "deep_cache", "interval": 2}}
        (job,) = self.jobs(tmp_path, [row], [1])
        pipe, baseline, _, _ = pipeline_cache().get(job, "cpu", "contract")
        refusal = r"step_cache: LTX2LatentUpsamplePipeline has no denoiser \(it does not denoise\); drop it from the row"
        with pytest.raises(UnsupportedOption, match=refusal):
            prepare_job(pipe, job.options, baseline)
        prepare_job(pipe, self.jobs(tmp_path, [self.row(inputs)], [1])[0].options, baseline)  # the next job's setup


# -- the tiny checkpoint, directly -----------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny() -> Path:
    ref = known_models()["tiny-ltx2-upsample"]
    ensure_built(ref)
    return Path(ref.source)


@pytest.fixture(scope="module")
def pipe(tiny):
    return ltx2_upsample.load(LoadOptions(str(tiny), None, "float32", None), "cpu")


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("clips")
    clip9(folder)
    make_video(folder / "clip17.mp4", frames=17, height=64, width=64, fps=12)
    make_video(folder / "clip8.mp4", frames=8, height=64, width=64, fps=24)
    make_video(folder / "odd.mp4", frames=9, height=64, width=80, fps=24)  # 80: not a multiple of 32
    return folder


def small(video: Path, **overrides) -> ltx2_upsample.Params:
    return ltx2_upsample.Params(video=video, **overrides)


def upsample(pipe, params: ltx2_upsample.Params, seed: int = 0):
    return ltx2_upsample.FAMILY.render_one(pipe, params, torch.Generator().manual_seed(seed), "cpu")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_tiny_checkpoint_is_the_tiny_ltx2_repo_with_a_latent_upsampler(tiny: Path):
    """The LTX-2 repo's layout (model_index.json names LTX2Pipeline) with the docs' latent_upsampler folder; its VAE
    is tiny-ltx2's, byte for byte, so a chained tiny-ltx2 row is encoded by the VAE that decoded it."""
    index = json.loads((tiny / "model_index.json").read_text())
    assert index["_class_name"] == "LTX2Pipeline"
    assert index["latent_upsampler"] == ["ltx2", "LTX2LatentUpsamplerModel"]
    assert index["vae"] == ["diffusers", "AutoencoderKLLTX2Video"]
    config = json.loads((tiny / "latent_upsampler" / "config.json").read_text())
    assert config["_class_name"] == "LTX2LatentUpsamplerModel" and config["in_channels"] == 8
    assert config["spatial_upsample"] and not config["temporal_upsample"] and config["rational_spatial_scale"] == 2.0
    for variant in ("", ".fp16"):
        assert (tiny / "latent_upsampler" / f"diffusion_pytorch_model{variant}.safetensors").is_file()
    ltx2_ref = known_models()["tiny-ltx2"]
    ensure_built(ltx2_ref)
    for name in ("config.json", "diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors"):
        name = f"vae/{name}"
        assert sha256(tiny / name) == sha256(Path(ltx2_ref.source) / name), name


def test_loaded_as_the_docs_assemble_it(pipe):
    assert type(pipe).__name__ == "LTX2LatentUpsamplePipeline" and set(pipe.components) == {"vae", "latent_upsampler"}
    assert pipe.vae.use_tiling  # the docs' upsample_pipe.vae.enable_tiling()
    assert pipe.vae_spatial_compression_ratio == 32 and pipe.vae_temporal_compression_ratio == 8
    assert not hasattr(pipe, "scheduler") and not hasattr(pipe, "transformer")  # nothing denoises


def test_the_output_is_twice_the_inputs_size_with_its_frames(pipe, clips: Path):
    """9 frames of 64x64 come out as 9 frames of 128x128 at the input's rate; a given size is the input's, resized;
    num_frames takes the first 8k+1 frames of a longer video."""
    plain = upsample(pipe, small(clips / "clip9.mp4"))
    assert plain.frames.shape == (9, 128, 128, 3) and plain.frames.dtype == np.uint8 and plain.fps == 24
    assert plain.audio is None and plain.denoise_s > 0 and plain.decode_s > 0
    assert plain.frames.std() > 5
    resized = upsample(pipe, small(clips / "clip9.mp4", height=64, width=96, fps=10))
    assert resized.frames.shape == (9, 128, 192, 3) and resized.fps == 10
    first = upsample(pipe, small(clips / "clip17.mp4", num_frames=9))
    assert first.frames.shape == (9, 128, 128, 3) and first.fps == 12


def test_call_parameters_reach_the_pipeline(pipe, clips: Path):
    params = small(clips / "clip17.mp4", num_frames=9, adain_factor=0.5, tone_map_compression_ratio=0.25)
    generator = torch.Generator().manual_seed(7)
    call = pipeline_call(pipe, lambda: ltx2_upsample.FAMILY.render_one(pipe, params, generator, "cpu"))
    video = call.kwargs.pop("video")
    expected = read_video(clips / "clip17.mp4", 9)[0]
    assert [np.asarray(frame).tolist() for frame in video] == [np.asarray(frame).tolist() for frame in expected]
    assert call.args == () and call.kwargs == dict(
        height=64,
        width=64,
        adain_factor=0.5,
        tone_map_compression_ratio=0.25,
        generator=generator,
        output_type="latent",
        return_dict=False,
    )


def test_adain_and_tone_mapping_change_the_video(pipe, clips: Path):
    plain = upsample(pipe, small(clips / "clip9.mp4")).frames.astype(int)
    for knob in ({"adain_factor": 1.0}, {"tone_map_compression_ratio": 1.0}):
        assert np.abs(upsample(pipe, small(clips / "clip9.mp4", **knob)).frames.astype(int) - plain).max() > 8, knob


def manifest_problems(tmp_path: Path, **row) -> str:
    make_video(tmp_path / "clip.mp4", frames=9, height=64, width=64, fps=24)
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({"defaults": {"model": "tiny-ltx2-upsample", "seed": 0}, "rows": [row]}))
    with pytest.raises(ManifestError) as caught:
        load_manifest(path, "cpu")
    return str(caught.value)


def test_bad_rows_are_refused_naming_the_key(tmp_path: Path):
    assert "missing 'video': tiny-ltx2-upsample is a video-to-video model" in manifest_problems(tmp_path, fps=12)
    message = manifest_problems(tmp_path, video="clip.mp4", num_frames=10, height=48, width=64, adain_factor=-1.0)
    assert "num_frames=10" in message and "8k+1" in message and "nearest: 9 or 17" in message
    assert "height=48" in message and "multiple of 32" in message
    assert "adain_factor=-1.0" in message and "greater than or equal to 0" in message
    assert "height=32" in manifest_problems(tmp_path, video="clip.mp4", height=32, width=64)  # below 64 px
    assert "give both height and width" in manifest_problems(tmp_path, video="clip.mp4", height=64)
    tone_mapped = manifest_problems(tmp_path, video="clip.mp4", tone_map_compression_ratio=1.5)
    assert "tone_map_compression_ratio=1.5" in tone_mapped and "less than or equal to 1" in tone_mapped
    assert "unknown key 'prompt' for tiny-ltx2-upsample" in manifest_problems(tmp_path, video="clip.mp4", prompt="a")
    assert "does not run guidance as one" in manifest_problems(tmp_path, video="clip.mp4", guidance_cutoff=0.5)


def test_videos_the_pipeline_would_cut_or_fail_on_are_refused(pipe, clips: Path):
    """8 frames (the pipeline would keep 1), a side that is no multiple of 32 (it would raise inside the job)."""
    with pytest.raises(ValueError, match=r"has 8 frames, which must be 8k\+1 .* nearest: 1 or 9; set num_frames"):
        upsample(pipe, small(clips / "clip8.mp4"))
    with pytest.raises(ValueError, match=r"is 80x64: the LTX-2 VAE takes sides that are multiples of 32.*give height"):
        upsample(pipe, small(clips / "odd.mp4"))
    assert upsample(pipe, small(clips / "odd.mp4", height=64, width=64)).frames.shape == (9, 128, 128, 3)
    with pytest.raises(ValueError, match="num_frames=17, but the video .* has only 9 frames"):
        upsample(pipe, small(clips / "clip9.mp4", num_frames=17))


def test_what_the_loaded_pipeline_would_ignore_is_refused(pipe, clips: Path):
    """LTX-2's VAE has no timestep conditioning: decode_timestep / decode_noise_scale would do nothing; a row's
    scheduler, scheduler_config, forward_chunking or step cache has nothing to act on (the job's setup refuses it)."""
    assert not pipe.vae.config.timestep_conditioning
    with pytest.raises(ValueError, match=r"decode_timestep=0.05: this VAE has no timestep conditioning"):
        upsample(pipe, small(clips / "clip9.mp4", decode_timestep=0.05))
    with pytest.raises(ValueError, match=r"decode_noise_scale=0.1: this VAE has no timestep conditioning"):
        upsample(pipe, small(clips / "clip9.mp4", decode_noise_scale=0.1))
    baseline = Baseline.of(pipe)
    for chosen in ({"scheduler": "euler"}, {"scheduler_config": {"shift": 2.0}}):
        with pytest.raises(UnsupportedOption, match=r"scheduler: LTX2LatentUpsamplePipeline has no scheduler"):
            prepare_job(pipe, chosen, baseline)
    for chosen in ({"forward_chunking": True}, {"step_cache": {"type": "deep_cache"}}):
        with pytest.raises(UnsupportedOption, match=f"{next(iter(chosen))}"):
            prepare_job(pipe, chosen, baseline)
    prepare_job(pipe, {}, baseline)  # a plain row's setup


def test_the_tiny_manifest_chains_text_to_video_into_the_upsampler(tmp_path: Path):
    """The tiny example, job by job: tiny-ltx2's 9 frames of 64x64 with sound, upsampled by tiny-ltx2-upsample from
    their lossless copy to 9 frames of 128x128 at the source's 24 fps; the upsampled mp4 is silent, the source's
    keeps its sound."""
    path = REPO / "manifests" / "tiny" / "ltx2-upsample.yaml"
    source, taker = in_order(load_manifest(path, "cpu").jobs)
    assert (source.model, taker.model) == ("tiny-ltx2", "tiny-ltx2-upsample") and taker.depends_on == [source.job_id]
    run = RunContext("chain", tmp_path / "out", "cpu", "chain", str(path), "-")
    records = [render_job(job, run) for job in (source, taker)]
    assert [record["status"] for record in records] == ["ok", "ok"], [record["error"] for record in records]
    assert '"lossless": true' in records[1]["chain_inputs_json"]
    assert records[1]["scheduler_class"] is None and records[1]["denoise_s"] > 0 and records[1]["decode_s"] > 0
    frames, fps = read_mp4(run.out_root / job_video_path(taker.job_id))
    assert frames.shape == (9, 128, 128, 3) and fps == 24
    assert read_mp4(run.out_root / job_video_path(source.job_id))[0].shape == (9, 64, 64, 3)
    assert audio_stream(run.out_root / job_video_path(source.job_id))["codec"] == "aac"
    assert audio_stream(run.out_root / job_video_path(taker.job_id)) is None


def test_the_real_manifest_restates_the_docs():
    real = in_order(load_manifest(REPO / "manifests" / "ltx2-upsample.yaml", "cuda").jobs)  # validation only
    assert [job.model for job in real] == ["ltx-2", "ltx-2-upsample"] and real[1].depends_on == [real[0].job_id]
    first, second = (job.params for job in real)
    assert first["prompt"] == DOCS_PROMPT
    assert first["negative_prompt"] == "worst quality, inconsistent motion, blurry, jittery, distorted"
    assert (first["width"], first["height"], first["num_frames"], first["frame_rate"]) == (768, 512, 121, 24)
    assert (first["num_inference_steps"], first["guidance_scale"]) == (40, 4.0)
    assert (second["width"], second["height"]) == (768, 512)
    assert all(job.dtype == "bfloat16" and job.variant is None for job in real)
