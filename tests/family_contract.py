"""The contract every model family meets, checked on its tiny checkpoint.

A family's test module subclasses :class:`FamilyContract` and supplies only what differs:
the family name, a small, fast row of parameters, and the diffusers docs' snippet as written
(adapted only in checkpoint path, sizes, dtype and device) with the manifest row that restates
it. The contract then checks the registry entry, the saved layout, defaults against the
pipeline's own signature, the fp16 variant, shapes, seed determinism, that the docs' row
renders exactly the snippet's uint8 frames and that its mp4 is those frames through the
project's writer at the rate the docs export at, and that ``fps`` is a row key of every family.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
import yaml

from tasks.jobs import Job
from tasks.manifest import ManifestError, load_manifest
from tasks.models import FAMILIES, ensure_built, known_models
from tasks.render import RunContext, batches, pipeline_cache, render_job
from tasks.denoiser_hooks import DeepCache, GuidanceCutoff
from tasks.tuning import prepare_job, step_cache_refusal
from tasks.video import read_mp4, write_mp4


class FamilyContract:
    family: ClassVar[str]
    #: Params fields whose default deliberately differs from the pipeline's __call__ default
    #: (say why in the family module), or that the pipeline does not take by that name.
    defaults_differ: ClassVar[set[str]] = set()
    #: The frame rate the family's docs snippet exports at (``export_to_video(..., fps=...)``, or
    #: ``export_to_gif``'s and ``export_to_video``'s default, 10).
    docs_fps: ClassVar[int]
    #: Why the docs row's mp4 is not at ``docs_fps``, where the family writes another rate by design; "" if it is.
    fps_differs: ClassVar[str] = ""

    # -- what a family's test supplies ------------------------------------------------------------

    def row(self, inputs: Path) -> dict[str, Any]:
        """A small, fast row of the family's parameters (no model, no seed); files under ``inputs``."""
        raise NotImplementedError("return the family's parameters for a 2-step render of a few small frames")

    def docs_row(self, inputs: Path) -> dict[str, Any]:
        """The manifest row that restates the family's docs snippet (:meth:`docs_recipe`): its values, at the tiny sizes."""
        raise NotImplementedError("return the docs snippet's values as a row (no model, no seed), at tiny sizes")

    def docs_recipe(self, folder: Path, components: dict[str, Path], row: dict[str, Any], seed: int) -> np.ndarray:
        """The family's diffusers docs snippet as written, run by hand on the tiny checkpoint at ``folder``.

        Adapted only in checkpoint path, sizes (and step counts), dtype and device, each adaptation
        named in a comment; these adapted values (input files, sizes, steps) are read from ``row``
        (:meth:`docs_row`), everything else is the snippet's own text. Its seed is ``seed``, given
        the way the snippet seeds (``torch.manual_seed(seed)`` for the docs' ``torch.manual_seed(42)``,
        ``torch.Generator("cpu").manual_seed(seed)`` for theirs; where the snippet passes no
        generator, torch's global RNG, which its call draws from, is seeded before the call).
        Returns the uint8 frames (frames, height, width, 3) the snippet's export receives: PIL
        frames as arrays, numpy frames converted as its export converts them.
        """
        raise NotImplementedError("the docs snippet as written, adapted only in path, sizes, dtype and device")

    # -- fixtures ---------------------------------------------------------------------------------

    @pytest.fixture(scope="class")
    def ref(self):
        ref = known_models()[f"tiny-{self.family}"]
        ensure_built(ref)
        return ref

    @pytest.fixture
    def inputs(self, tmp_path: Path) -> Path:
        from .conftest import ROCKET, make_video

        folder = tmp_path / "inputs"
        folder.mkdir()
        (folder / "rocket.png").write_bytes(ROCKET.read_bytes())
        make_video(folder / "clip.mp4")
        return folder

    def jobs(self, tmp_path: Path, rows: list[dict[str, Any]], seeds: list[int]) -> list[Job]:
        manifest = {"name": "contract", "defaults": {"model": f"tiny-{self.family}"}, "rows": rows, "seeds": seeds}
        path = tmp_path / "manifest.yaml"
        path.write_text(yaml.safe_dump(manifest, sort_keys=False))
        return load_manifest(path, "cpu").jobs

    def render(self, tmp_path: Path, rows: list[dict[str, Any]], seeds: list[int]) -> list[np.ndarray]:
        """Render rows through the manifest and the render step (no Prefect); frames decoded from the mp4s."""
        jobs = self.jobs(tmp_path, rows, seeds)
        run = RunContext("contract", tmp_path / "out", "cpu", "contract", str(tmp_path / "manifest.yaml"), "-")
        return [frames for frames, _ in self.render_mp4s(tmp_path, rows, seeds)]

    def render_mp4s(self, tmp_path: Path, rows: list[dict[str, Any]], seeds: list[int]) -> list[tuple[np.ndarray, float]]:
        """:meth:`render`, with each mp4's frame rate: (decoded frames, fps) per job."""
        jobs = self.jobs(tmp_path, rows, seeds)
        run = RunContext("contract", tmp_path / "out", "cpu", "contract", str(tmp_path / "manifest.yaml"), "-")
        records = [render_job(job, run) for job in jobs]
        assert [record["status"] for record in records] == ["ok"] * len(jobs), [r["error"] for r in records]
        return [read_mp4(run.out_root / record["video_path"]) for record in records]

    def render_frames(self, tmp_path: Path, row: dict[str, Any], seed: int) -> np.ndarray:
        """The uint8 frames of one job, straight from the family's render (before mp4 encoding)."""
        (job,) = self.jobs(tmp_path, [row], [seed])
        pipe, baseline, _, _ = pipeline_cache().get(job, "cpu", "contract")
        prepare_job(pipe, job.options, baseline)
        generator = torch.Generator("cpu").manual_seed(seed)
        return FAMILIES[self.family].render(pipe, job.typed_params(), generator, "cpu").frames

    # -- the contract -----------------------------------------------------------------------------

    def test_registered_with_a_tiny_checkpoint_in_the_real_layout(self, ref):
        module = FAMILIES[self.family]
        assert module.FAMILY == self.family and module.DESCRIPTION
        index = json.loads((Path(ref.source) / "model_index.json").read_text())
        # a family's own pipeline, or the base repo it is assembled on (an SD 1.5 base under a motion
        # adapter), or another family's checkpoint it shares
        expected = {module.PIPELINE_CLASS, getattr(module, "BASE_PIPELINE_CLASS", None)}
        assert index["_class_name"] in expected or hasattr(module, "TINY_NAME")
        assert all(Path(folder).is_dir() and any(Path(folder).iterdir()) for _, folder in ref.components)
        assert list(Path(ref.source).rglob("*.fp16.safetensors")), "an fp16 variant, as the real repos have"

    def test_params_defaults_are_the_pipelines_own(self):
        import diffusers

        module = FAMILIES[self.family]
        signature = inspect.signature(getattr(diffusers, module.PIPELINE_CLASS).__call__).parameters
        for name, field in module.Params.model_fields.items():
            if name in self.defaults_differ or name not in signature or field.is_required():
                continue
            assert field.default == signature[name].default, name

    def test_same_seed_same_frames_other_seed_other_frames(self, tmp_path, inputs):
        """Torch's global RNG is moved between renders: noise drawn outside the job's generator shows."""
        row = self.row(inputs)
        torch.manual_seed(1)
        first = self.render_frames(tmp_path, row, 7)
        assert first.dtype == np.uint8 and first.ndim == 4 and first.shape[-1] == 3
        torch.manual_seed(2)
        assert np.array_equal(first, self.render_frames(tmp_path, row, 7))
        assert not np.array_equal(first, self.render_frames(tmp_path, row, 8))

    def test_manifest_row_renders_the_docs_recipe_exactly(self, tmp_path, inputs, ref):
        """The docs' snippet by hand and the row that restates it: the same uint8 frames (max abs 0)."""
        row = self.docs_row(inputs)
        ours = self.render_frames(tmp_path, row, 11)
        components = {name: Path(folder) for name, folder in ref.components}
        theirs = self.docs_recipe(Path(ref.source), components, row, 11)
        assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
        off = np.abs(ours.astype(int) - theirs.astype(int))
        assert off.max() == 0, f"the docs' frames differ: max {off.max()} levels, {np.count_nonzero(off)} of {off.size} values"

    def test_the_docs_rows_mp4_is_the_docs_frames_through_the_writer(self, tmp_path, inputs, ref):
        """The render step's mp4 of the docs' row (what ``videosweep run`` writes) decodes to the snippet's frames
        encoded by ``tasks.video.write_mp4``, at the rate the docs export at (or the family's documented own)."""
        row = self.docs_row(inputs)
        ((ours, fps),) = self.render_mp4s(tmp_path, [row], [11])
        if self.fps_differs:
            assert fps != self.docs_fps, f"the docs' rate now: drop fps_differs ({self.fps_differs})"
        else:
            assert fps == self.docs_fps, f"the mp4 plays at {fps} fps, the docs' at {self.docs_fps}"
        components = {name: Path(folder) for name, folder in ref.components}
        theirs = self.docs_recipe(Path(ref.source), components, row, 11)
        write_mp4(theirs, int(fps), tmp_path / "hand.mp4")
        hand, hand_fps = read_mp4(tmp_path / "hand.mp4")
        assert hand_fps == fps and hand.shape == ours.shape, (hand_fps, fps, hand.shape, ours.shape)
        off = np.abs(ours.astype(int) - hand.astype(int))
        assert off.max() == 0, f"the decoded mp4s differ: max {off.max()} levels, {np.count_nonzero(off)} of {off.size} values"

    def test_frames_are_converted_to_uint8_as_the_docs_convert_them(self):
        from tasks.models.base import to_uint8_frames

        module = FAMILIES[self.family]
        assert module.UINT8_CONVERSION in ("round", "truncate")
        ramp = np.linspace(0.0, 1.0, 1021, dtype=np.float32).reshape(1, 1, -1, 1)
        docs = (ramp * 255).round() if module.UINT8_CONVERSION == "round" else ramp * 255
        assert np.array_equal(to_uint8_frames(ramp, module.UINT8_CONVERSION), docs.astype(np.uint8))

    def test_fps_is_a_row_key_the_mp4s_rate(self, tmp_path, inputs):
        """Every family takes ``fps``; a row that leaves it out keeps the params (and so the job id) it had before."""
        row = self.row(inputs)
        (plain,) = self.jobs(tmp_path, [row], [3])
        (faster,) = self.jobs(tmp_path, [{**row, "fps": 12}], [3])
        assert faster.job_id != plain.job_id
        if self.family != "svd":  # the one family that had `fps` before: every other's params are as they were
            assert "fps" not in plain.params
        default = FAMILIES[self.family].Params.model_fields["fps"].default
        if default is not None:  # the docs' rate: the same video as leaving it out, the same id
            (same,) = self.jobs(tmp_path, [{**row, "fps": default}], [3])
            assert same.job_id == plain.job_id
        ((_, fps),) = self.render_mp4s(tmp_path, [{**row, "fps": 12}], [3])
        assert fps == 12

    def test_renders_end_to_end_to_mp4(self, tmp_path, inputs):
        (frames,) = self.render(tmp_path, [self.row(inputs)], [3])
        assert frames.ndim == 4 and len(frames) >= 1

    def test_fp16_variant_loads(self, ref):
        from tasks.models.base import LoadOptions

        module = FAMILIES[self.family]
        components = tuple((name, folder, None) for name, folder in ref.components)
        pipe = module.load(LoadOptions(ref.source, None, "float16", "fp16", components), "cpu")
        denoiser = getattr(pipe, "transformer", None) or pipe.unet
        assert denoiser.dtype == torch.float16

    def test_guidance_cutoff_at_zero_renders_what_guidance_off_renders(self, tmp_path, inputs, monkeypatch):
        """Past the cutoff the denoiser gets the conditional half of the batch only: from step 0, that is no guidance."""
        knob = getattr(FAMILIES[self.family], "BATCHED_GUIDANCE", None)
        row = self.row(inputs)
        if knob is None:
            with pytest.raises(ManifestError, match="does not run guidance as one"):
                self.jobs(tmp_path, [{**row, "guidance_cutoff": 0.5}], [1])
            return
        guided = {**row, knob: 4.0}
        full = self.render_frames(tmp_path, guided, 5)
        cut = self.render_frames(tmp_path, {**guided, "guidance_cutoff": 0.0}, 5)
        off = self.render_frames(tmp_path, {**row, knob: 1.0}, 5)
        assert np.abs(cut.astype(int) - off.astype(int)).max() <= 2
        assert np.abs(cut.astype(int) - full.astype(int)).max() > 8, "guidance made no difference: the test shows nothing"
        halved = []  # per denoiser call: the full batch it was cut from, or None
        after = GuidanceCutoff.after
        monkeypatch.setattr(GuidanceCutoff, "after", lambda hook, *a: halved.append(hook.halved) or after(hook, *a))
        self.render_frames(tmp_path, {**guided, "guidance_cutoff": 0.5}, 5)
        assert halved[0] is None and halved[-1] % 2 == 0, f"2 steps, cut at 0.5: the first step guided, the last not: {halved}"
        assert np.array_equal(self.render_frames(tmp_path, guided, 5), full), "the cutoff's hooks outlived their job"
        with pytest.raises(ManifestError, match=f"{knob} is 1.0, so there is no guidance to cut"):
            self.jobs(tmp_path, [{**row, knob: 1.0, "guidance_cutoff": 0.5}], [1])

    def test_deep_cache_reuses_the_unets_deep_blocks_between_full_calls(self, tmp_path, inputs, monkeypatch):
        row = self.row(inputs)
        if step_cache_refusal(FAMILIES[self.family].PIPELINE_CLASS, "deep_cache"):
            with pytest.raises(ManifestError, match="deep_cache skips a UNet's deep blocks"):
                self.jobs(tmp_path, [{**row, "step_cache": {"type": "deep_cache"}}], [1])
            return
        plain = self.render_frames(tmp_path, row, 5)
        every_call = self.render_frames(tmp_path, {**row, "step_cache": {"type": "deep_cache", "interval": 1}}, 5)
        assert np.array_equal(every_call, plain), "interval 1 runs the whole UNet on every call"
        reused = []  # per denoiser call: whether it took the deep blocks' kept outputs
        before = DeepCache.before
        monkeypatch.setattr(DeepCache, "before", lambda hook, *a: before(hook, *a) or reused.append(hook.reuse))
        cached = self.render_frames(tmp_path, {**row, "step_cache": {"type": "deep_cache", "interval": 2}}, 5)
        assert reused[:2] == [False, True], reused
        assert cached.shape == plain.shape and not np.array_equal(cached, plain)
        assert np.array_equal(self.render_frames(tmp_path, row, 5), plain), "the cache outlived its job"

    def test_a_batch_renders_what_each_video_renders_alone(self, tmp_path, inputs):
        """``run --batch``: where the family renders several rows in one call, each video is its one-per-call self."""
        module = FAMILIES[self.family]
        if not hasattr(module, "render_batch"):  # one video per call, whatever --batch says
            jobs = self.jobs(tmp_path, [self.row(inputs)], [3, 4])
            assert jobs[0].batch_key is None and [len(batch) for batch in batches(jobs, 4)] == [1, 1]
            return
        rows = [self.row(inputs), {**self.row(inputs), **self.other_video(inputs)}, self.row(inputs)]
        seeds = [3, 3, 4]
        jobs = [self.jobs(tmp_path, [row], [seed])[0] for row, seed in zip(rows, seeds)]
        assert jobs[0].batch_key == jobs[1].batch_key == jobs[2].batch_key is not None
        pipe, baseline, _, _ = pipeline_cache().get(jobs[0], "cpu", "contract")
        prepare_job(pipe, jobs[0].options, baseline)
        generators = [torch.Generator("cpu").manual_seed(seed) for seed in seeds]
        batched = module.render_batch(pipe, [job.typed_params() for job in jobs], generators, "cpu")
        alone = [self.render_frames(tmp_path, row, seed) for row, seed in zip(rows, seeds)]
        for together, by_itself in zip(batched, alone):
            assert together.frames.shape == by_itself.shape
            assert np.abs(together.frames.astype(int) - by_itself.astype(int)).max() <= 2
        assert np.abs(batched[0].frames.astype(int) - alone[2].astype(int)).max() > 8, "the bound tells two seeds apart"

    def other_video(self, inputs: Path) -> dict[str, Any]:
        """The values of a second video of the same call: another value of each of the family's ``BATCH_FIELDS``."""
        raise NotImplementedError("a family with render_batch says how a second video of its batch differs")
