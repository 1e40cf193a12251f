"""The LTX-2 image-to-video family (video with audio) on the tiny LTX-2 checkpoint: the contract, the docs' sound,
the image as first frame, ``image_crf`` and PyAV, and the example manifests."""

import numpy as np
import pytest
import torch
import yaml

from videosweep.tasks.manifest import ManifestError, load_manifest
from videosweep.tasks.models import FAMILIES, ltx2_i2v
from videosweep.tasks.models.base import Audio

from .conftest import REPO
from .family_contract import FamilyContract

PROMPT = "A white rocket stands on its launch pad at dawn, then lifts off with a deep roar into a clear sky"
NEGATIVE = "worst quality, inconsistent motion, blurry, jittery, distorted"
DOCS_PROMPT = (
    "A young girl stands calmly in the foreground, looking directly at the camera, as a house fire rages in the "
    "background."
)


class TestLTX2ImageToVideoContract(FamilyContract):
    family = "ltx2-i2v"
    defaults_differ = {"num_frames"}  # as ltx2: the pipeline's None means 121 frames without a duration head
    docs_fps = 24  # the docs' encode_video(video[0], fps=frame_rate, ...) with frame_rate = 24.0

    def row(self, inputs):
        return dict(
            image=str(inputs / "rocket.png"),
            image_crf=0,  # the pipeline's default re-compression needs PyAV, not installed here
            prompt=PROMPT,
            negative_prompt=NEGATIVE,
            height=64,
            width=64,
            num_frames=9,
            num_inference_steps=2,
            max_sequence_length=128,
        )

    def docs_row(self, inputs):
        return dict(
            image=str(inputs / "rocket.png"),
            image_crf=0,
            prompt=DOCS_PROMPT,
            negative_prompt=NEGATIVE,
            width=64,
            height=64,
            num_frames=9,
            num_inference_steps=2,
        )

    def docs_recipe(self, folder, components, row, seed):
        """The ``LTX2ImageToVideoPipeline`` docstring's example (diffusers 0.42.1), as written, on the tiny checkpoint;
        its sound is kept in ``renders["docs_audio"]``."""
        from diffusers import LTX2ImageToVideoPipeline
        from diffusers.utils import load_image

        # checkpoint path: the tiny folder; dtype: float32 (the docs: torch.bfloat16)
        pipe = LTX2ImageToVideoPipeline.from_pretrained(folder, torch_dtype=torch.float32)
        # device: the docs' pipe.enable_model_cpu_offload() is left out (CPU only)

        image = load_image(row["image"])  # input file: the rocket (the docs: a picture on the hub)
        prompt = "A young girl stands calmly in the foreground, looking directly at the camera, as a house fire rages in the background."
        negative_prompt = "worst quality, inconsistent motion, blurry, jittery, distorted"

        frame_rate = 24.0
        torch.manual_seed(seed)  # the docs pass no generator: their call draws from torch's global RNG, seeded here
        video, audio = pipe(
            image=image,
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
            image_crf=row["image_crf"],  # dependency: 0, as loaded (the docs' default CRF 33 needs PyAV, not installed)
        )
        self.renders["docs_audio"] = Audio(audio[0].float().cpu().numpy(), pipe.vocoder.config.output_sampling_rate)
        return (video[0] * 255).round().astype("uint8")  # what encode_video receives, rounded as it rounds

    def test_the_docs_rows_sound_is_the_docs_sound(self, tmp_path, inputs, ref):
        self.docs_frames(ref, inputs)
        theirs = self.renders["docs_audio"]
        record, _, _ = self.render_step(tmp_path, self.docs_row(inputs), 11)
        assert record["audio_sha256"] == theirs.sha256() and record["audio_samples"] == theirs.samples
        assert (record["audio_sample_rate"], record["audio_channels"]) == (24000, 2)


def test_a_row_that_needs_pyav_without_it_fails_naming_the_fix(monkeypatch, tmp_path):
    """The pipeline's default CRF (33 for a Gemma 3 encoder) re-compresses the image with PyAV: without it, the job
    fails before it renders, saying what to do; image_crf 0 needs nothing."""
    import diffusers.utils

    from videosweep.tasks.models import known_models, ensure_built
    from videosweep.tasks.models.base import LoadOptions

    monkeypatch.setattr(diffusers.utils, "is_av_available", lambda: False)
    ref = known_models()["tiny-ltx2-i2v"]
    ensure_built(ref)
    pipe = ltx2_i2v.load(LoadOptions(ref.source, None, "float32", None), "cpu")
    params = ltx2_i2v.Params(image=str(REPO / "manifests" / "inputs" / "rocket.png"), prompt=PROMPT, height=64, width=64,
                             num_frames=9, num_inference_steps=2, max_sequence_length=128)  # fmt: skip
    with pytest.raises(ltx2_i2v.PyAVMissing, match=r"CRF 33 with PyAV, which is not installed: pip install av, or set image_crf: 0"):
        FAMILIES["ltx2-i2v"].render_one(pipe, params, torch.Generator().manual_seed(0), "cpu")
    assert ltx2_i2v.check_crf(pipe, params.model_copy(update={"image_crf": 0})) == 0
    rendered = FAMILIES["ltx2-i2v"].render_one(pipe, params.model_copy(update={"image_crf": 0}),
                                               torch.Generator().manual_seed(0), "cpu")  # fmt: skip
    assert rendered.frames.shape == (9, 64, 64, 3) and rendered.audio.channels == 2


def test_image_crf_is_checked(tmp_path):
    path = tmp_path / "m.yaml"
    row = {"image": str(REPO / "manifests" / "inputs" / "rocket.png"), "prompt": PROMPT, "image_crf": 60}
    path.write_text(yaml.safe_dump({"defaults": {"model": "tiny-ltx2-i2v", "seed": 0}, "rows": [row]}))
    with pytest.raises(ManifestError, match="image_crf=60"):
        load_manifest(path, "cpu")


def test_example_manifests_validate_and_the_tiny_one_mirrors_the_real_one():
    real = load_manifest(REPO / "manifests" / "ltx2-i2v.yaml", "cuda")  # validation only: what auto means on a GPU
    tiny = load_manifest(REPO / "manifests" / "tiny" / "ltx2-i2v.yaml", "cpu")
    assert {job.model for job in real.jobs} == {"ltx-2-i2v"} and {job.model for job in tiny.jobs} == {"tiny-ltx2-i2v"}
    assert {job.family for job in real.jobs} == {job.family for job in tiny.jobs} == {"ltx2-i2v"}
    assert len(real.jobs) == len(tiny.jobs) == 4
    assert all(job.dtype == "bfloat16" and job.variant is None for job in real.jobs)
    assert {job.params.get("image_crf") for job in real.jobs} == {None, 0}
    assert {job.params["image_crf"] for job in tiny.jobs} == {0}
    for ours, theirs in zip(real.jobs, tiny.jobs):
        for key in ("prompt", "negative_prompt", "frame_rate", "guidance_scale"):
            assert ours.params[key] == theirs.params[key], key
    assert np.array_equal(sorted({job.params["audio_guidance_scale"] for job in tiny.jobs}), [1.0, 7.0])
