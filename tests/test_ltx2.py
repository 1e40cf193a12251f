"""The LTX-2 text-to-video family (video with audio) on its tiny checkpoint: the contract, the docs' sound as
well as their frames, the audio's length, an end-to-end ``videosweep run`` whose mp4 carries an AAC stream that
decodes, its record's audio columns, ``inspect``, and the 8k+1 / 64 px / 128-token rules."""

import json
import subprocess
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from videosweep.flows.cli import app
from videosweep.tasks.manifest import ManifestError, load_manifest
from videosweep.tasks.models import ensure_built, folder_sha256, known_models, ltx2
from videosweep.tasks.models.base import Audio, LoadOptions
from videosweep.tasks.results import read_results
from videosweep.tasks.video import audio_stream, read_audio, read_mp4, write_mp4

from .conftest import REPO, pipeline_call
from .family_contract import FamilyContract

PROMPT = "A woman with long brown hair smiles at another woman with long blonde hair, warm sunset light"
NEGATIVE = "worst quality, inconsistent motion, blurry, jittery, distorted"
DOCS_PROMPT = (
    "A woman with long brown hair and light skin smiles at another woman with long blonde hair. The woman with brown "
    "hair wears a black jacket and has a small, barely noticeable mole on her right cheek. The camera angle is a "
    "close-up, focused on the woman with brown hair's face. The lighting is warm and natural, likely from the setting "
    "sun, casting a soft glow on the scene. The scene appears to be real-life footage"
)


def small_row() -> dict:
    return dict(
        prompt=PROMPT,
        negative_prompt=NEGATIVE,
        height=64,
        width=64,
        num_frames=9,
        num_inference_steps=2,
        max_sequence_length=128,
    )


class TestLTX2Contract(FamilyContract):
    family = "ltx2"
    # the pipeline's None means 121 frames for a checkpoint without a duration head; a row always gives a count
    defaults_differ = {"num_frames"}
    docs_fps = 24  # the docs' encode_video(video[0], fps=frame_rate, ...) with frame_rate = 24.0

    def row(self, inputs):
        return small_row()

    def other_video(self, inputs):
        return {"prompt": "A sailboat on a lake, gulls crying", "negative_prompt": "dark, noisy"}

    def docs_row(self, inputs):
        return dict(prompt=DOCS_PROMPT, negative_prompt=NEGATIVE, width=64, height=64, num_frames=9, num_inference_steps=2)

    def docs_recipe(self, folder, components, row, seed):
        """The ``LTX2Pipeline`` docstring's example (diffusers 0.42.1), as written, on the tiny checkpoint.

        What its ``encode_video`` receives is kept too: the frames (returned) and the sound (``renders["docs_audio"]``).
        """
        from diffusers import LTX2Pipeline

        # checkpoint path: the tiny folder; dtype: float32 (the docs: torch.bfloat16)
        pipe = LTX2Pipeline.from_pretrained(folder, torch_dtype=torch.float32)
        # device: the docs' pipe.enable_model_cpu_offload() is left out (CPU only)

        prompt = "A woman with long brown hair and light skin smiles at another woman with long blonde hair. The woman with brown hair wears a black jacket and has a small, barely noticeable mole on her right cheek. The camera angle is a close-up, focused on the woman with brown hair's face. The lighting is warm and natural, likely from the setting sun, casting a soft glow on the scene. The scene appears to be real-life footage"
        negative_prompt = "worst quality, inconsistent motion, blurry, jittery, distorted"

        frame_rate = 24.0
        torch.manual_seed(seed)  # the docs pass no generator: their call draws from torch's global RNG, seeded here
        video, audio = pipe(
            prompt=prompt,
            negative_prompt=negative_prompt,
            width=row["width"],  # sizes: 64 x 64, 9 frames, 2 steps (the docs: 768 x 512, 121 frames, 30 steps)
            height=row["height"],
            num_frames=row["num_frames"],
            frame_rate=frame_rate,
            num_inference_steps=row["num_inference_steps"],
            guidance_scale=3.0,
            output_type="np",
            return_dict=False,
        )
        # encode_video(video[0], fps=frame_rate, audio=audio[0].float().cpu(),
        #              audio_sample_rate=pipe.vocoder.config.output_sampling_rate, output_path="video.mp4")
        # receives these: it rounds the numpy frames, (video * 255).round().astype("uint8")
        self.renders["docs_audio"] = Audio(audio[0].float().cpu().numpy(), pipe.vocoder.config.output_sampling_rate)
        return (video[0] * 255).round().astype("uint8")

    # -- the sound: what the contract checks of the frames, for the audio ----------------------------

    def test_the_docs_rows_sound_is_the_docs_sound_and_its_mp4_carries_it(self, tmp_path, inputs, ref):
        """The render step's sound for the docs' row is the snippet's waveform exactly (max abs 0), at the vocoder's
        rate; its mp4's AAC stream was encoded from those samples (the record's hash), decodes to as many, and
        decodes as the snippet's sound through ``write_mp4`` does."""
        self.docs_frames(ref, inputs)
        theirs = self.renders["docs_audio"]
        record, _, video = self.render_step(tmp_path, self.docs_row(inputs), 11)
        ours = self.kept_audio
        assert ours.sample_rate == theirs.sample_rate == 24000 and ours.waveform.shape == theirs.waveform.shape
        assert np.array_equal(ours.waveform, theirs.waveform), np.abs(ours.waveform - theirs.waveform).max()
        assert record["audio_sha256"] == theirs.sha256() and record["audio_samples"] == theirs.samples
        assert (record["audio_sample_rate"], record["audio_channels"]) == (24000, 2)
        decoded, rate = read_audio(video)
        assert rate == 24000 and decoded.shape == theirs.waveform.shape
        write_mp4(self.docs_frames(ref, inputs), 24, tmp_path / "hand.mp4", audio=theirs)
        assert np.array_equal(read_audio(tmp_path / "hand.mp4")[0], decoded)
        assert np.array_equal(read_mp4(tmp_path / "hand.mp4")[0], read_mp4(video)[0])

    @pytest.fixture(autouse=True)
    def _keep_audio(self, monkeypatch):
        """``render_step`` keeps the rendered frames; the sound of its last render is kept here."""
        from videosweep.tasks.models import FAMILIES

        spec, owner = FAMILIES[self.family], self

        def render(*args, **kwargs):
            videos = spec.render(*args, **kwargs)
            owner.kept_audio = videos[-1].audio
            return videos

        from dataclasses import replace

        monkeypatch.setitem(FAMILIES, self.family, replace(spec, render=render))


# -- the tiny checkpoint, directly -----------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_ltx2() -> Path:
    ref = known_models()["tiny-ltx2"]
    ensure_built(ref)
    return Path(ref.source)


@pytest.fixture(scope="module")
def pipe(tiny_ltx2):
    return ltx2.load(LoadOptions(str(tiny_ltx2), None, "float32", None), "cpu")


def small(**overrides) -> ltx2.Params:
    return ltx2.Params(**{**small_row(), **overrides})


def test_tiny_checkpoint_has_the_documented_components(tiny_ltx2: Path):
    index = json.loads((tiny_ltx2 / "model_index.json").read_text())
    assert index["_class_name"] == "LTX2Pipeline"
    assert index["text_encoder"] == ["transformers", "Gemma3ForConditionalGeneration"]
    assert index["tokenizer"][1] in ("GemmaTokenizer", "GemmaTokenizerFast")
    assert index["audio_vae"] == ["diffusers", "AutoencoderKLLTX2Audio"]
    assert index["vae"] == ["diffusers", "AutoencoderKLLTX2Video"]
    assert index["connectors"] == ["ltx2", "LTX2TextConnectors"]
    assert index["vocoder"] == ["ltx2", "LTX2Vocoder"]
    for weights in ("transformer/diffusion_pytorch_model", "vae/diffusion_pytorch_model", "audio_vae/diffusion_pytorch_model",
                    "connectors/diffusion_pytorch_model", "vocoder/diffusion_pytorch_model", "text_encoder/model"):  # fmt: skip
        assert (tiny_ltx2 / f"{weights}.safetensors").is_file(), weights
        assert (tiny_ltx2 / f"{weights}.fp16.safetensors").is_file(), weights
    vae = json.loads((tiny_ltx2 / "vae" / "config.json").read_text())
    assert not vae["timestep_conditioning"] and not any(vae["decoder_inject_noise"])  # as LTX-2's


def test_tiny_rates_are_the_real_ones(pipe):
    assert pipe.vae_spatial_compression_ratio == ltx2.SPATIAL_FACTOR == 32
    assert pipe.vae_temporal_compression_ratio == ltx2.TEMPORAL_FACTOR == 8
    assert pipe.audio_sampling_rate == 16000 and pipe.audio_hop_length == 160
    assert pipe.vocoder.config.output_sampling_rate == 24000


def test_tiny_build_is_reproducible(tiny_ltx2: Path, tmp_path: Path):
    ltx2.build_tiny(tmp_path / "again")
    assert folder_sha256(tmp_path / "again") == folder_sha256(tiny_ltx2)


def test_the_sound_lasts_as_long_as_the_video_and_follows_the_seed(pipe):
    """The pipeline sizes the audio latents by num_frames / frame_rate: 17 frames at 24 fps is 0.71 s of sound."""
    long = ltx2.FAMILY.render_one(pipe, small(num_frames=17), torch.Generator().manual_seed(0), "cpu")
    assert long.frames.shape == (17, 64, 64, 3) and long.fps == 24
    assert long.audio.channels == 2 and long.audio.sample_rate == 24000
    assert abs(long.audio.duration_s - 17 / 24) < 0.06, long.audio.duration_s
    assert long.denoise_s > 0 and long.decode_s > 0
    again = ltx2.FAMILY.render_one(pipe, small(num_frames=17), torch.Generator().manual_seed(0), "cpu")
    other = ltx2.FAMILY.render_one(pipe, small(num_frames=17), torch.Generator().manual_seed(1), "cpu")
    assert np.array_equal(again.audio.waveform, long.audio.waveform)
    assert not np.array_equal(other.audio.waveform, long.audio.waveform)


def test_call_parameters_reach_the_pipeline(pipe):
    params = small(frame_rate=25, guidance_scale=4.0, audio_guidance_scale=None, stg_scale=0.0, use_cross_timestep=False)
    generator = torch.Generator().manual_seed(7)
    call = pipeline_call(pipe, lambda: ltx2.FAMILY.render_one(pipe, params, generator, "cpu"))
    kwargs = dict(call.kwargs)
    callback = kwargs.pop("callback_on_step_end")
    assert isinstance(callback, ltx2.FinalLatents) and kwargs.pop("callback_on_step_end_tensor_inputs") == ["latents"]
    assert call.args == () and kwargs == dict(
        prompt=[PROMPT],
        negative_prompt=[NEGATIVE],
        height=64,
        width=64,
        num_frames=9,
        frame_rate=25.0,
        motion_speed=1.0,
        num_inference_steps=2,
        guidance_scale=4.0,
        stg_scale=0.0,
        modality_scale=3.0,
        guidance_rescale=0.7,
        audio_guidance_scale=None,
        audio_stg_scale=1.0,
        audio_modality_scale=3.0,
        audio_guidance_rescale=0.7,
        use_cross_timestep=False,
        max_sequence_length=128,
        generator=[generator],
        output_type="latent",
        return_dict=False,
    )


def manifest_problems(tmp_path: Path, **row) -> str:
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({"defaults": {"model": "tiny-ltx2", "seed": 0}, "rows": [row]}))
    with pytest.raises(ManifestError) as caught:
        load_manifest(path, "cpu")
    return str(caught.value)


def test_frames_sizes_and_prompt_length_are_checked(tmp_path: Path):
    assert "8k+1" in manifest_problems(tmp_path, prompt=PROMPT, num_frames=10)
    assert "height=32" in manifest_problems(tmp_path, prompt=PROMPT, height=32, width=64)
    assert "multiple of 128" in manifest_problems(tmp_path, prompt=PROMPT, max_sequence_length=100)
    assert "does not run guidance as one" in manifest_problems(tmp_path, prompt=PROMPT, guidance_cutoff=0.5)


def test_example_manifests_validate_and_the_tiny_one_mirrors_the_real_one():
    real = load_manifest(REPO / "manifests" / "ltx2.yaml", "cuda")  # validation only: what auto means on a GPU
    tiny = load_manifest(REPO / "manifests" / "tiny" / "ltx2.yaml", "cpu")
    assert {job.model for job in real.jobs} == {"ltx-2"} and {job.model for job in tiny.jobs} == {"tiny-ltx2"}
    assert len(real.jobs) == len(tiny.jobs) == 4
    assert all(job.dtype == "bfloat16" and job.variant is None for job in real.jobs)
    for ours, theirs in zip(real.jobs, tiny.jobs):
        for key in ("prompt", "negative_prompt", "frame_rate", "guidance_scale", "use_cross_timestep"):
            assert ours.params[key] == theirs.params[key], key
    assert all(job.params["num_frames"] == 121 and (job.params["height"], job.params["width"]) == (512, 768)
               for job in real.jobs)  # fmt: skip


# -- end to end: videosweep run, the mp4's audio stream, the record, inspect ---------------------------


def videosweep(*args):
    return CliRunner().invoke(app, [str(arg) for arg in args], catch_exceptions=False)


def test_a_tiny_run_leaves_mp4s_whose_audio_decodes_and_records_that_say_so(tmp_path: Path, tiny_ltx2):
    manifest = yaml.safe_load((REPO / "manifests" / "tiny" / "ltx2.yaml").read_text())
    # two videos of the tiny manifest, and their grid
    manifest["rows"], manifest["seeds"], manifest["grid"] = manifest["rows"][:1], [0, 1], {"x": "seed"}
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    result = videosweep("run", tmp_path / "m.yaml", "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    rows = sorted(read_results(tmp_path / "out").itertuples(), key=lambda row: row.seed)
    assert [row.status for row in rows] == ["ok", "ok"] and {row.family for row in rows} == {"ltx2"}
    assert rows[0].audio_sha256 != rows[1].audio_sha256  # each seed its own sound
    row = rows[0]
    video = tmp_path / "out" / row.video_path

    # ffmpeg itself (not the project's reader): the audio stream decodes cleanly, to the recorded samples
    decoded = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-nostdin", "-i", str(video), "-map", "0:a:0",
         "-f", "s16le", "-acodec", "pcm_s16le", "-"],
        capture_output=True, check=False,
    )  # fmt: skip
    assert decoded.returncode == 0 and not decoded.stderr, decoded.stderr
    samples = np.frombuffer(decoded.stdout, dtype="<i2").reshape(-1, 2)
    assert len(samples) == row.audio_samples and np.abs(samples).max() > 0, "a silent or cut stream"
    assert (row.audio_sample_rate, row.audio_channels) == (24000, 2)
    assert row.audio_duration_s == pytest.approx(row.audio_samples / 24000)
    assert abs(row.audio_duration_s - row.video_frames / row.video_fps) < 0.06
    assert len(row.audio_sha256) == 64
    stream = audio_stream(video)
    assert stream["codec"] == "aac" and stream["sample_rate"] == 24000 and stream["channels"] == 2

    shown = videosweep("inspect", video)
    assert shown.exit_code == 0, shown.output
    assert f"job_id: {row.job_id}" in shown.output and f"audio_sha256: {row.audio_sha256}" in shown.output
    assert "audio_stream:" in shown.output and "codec: aac (LC)" in shown.output
    assert f"samples: {row.audio_samples}" in shown.output and "sample_rate: 24000" in shown.output

    # the grid is silent, and its sidecar (and inspect) say which cells have sound
    (grid,) = sorted((tmp_path / "out" / "grids").glob("*.mp4"))
    assert audio_stream(grid) is None
    sidecar = json.loads(grid.with_suffix(".json").read_text())
    assert [cell.get("audio") for cell in sidecar["cells"]] == [True, True] and "report.html" in sidecar["audio_note"]
    told = videosweep("inspect", grid)
    assert told.exit_code == 0 and "(ok, with sound)" in told.output and "sound: the grid is silent" in told.output
