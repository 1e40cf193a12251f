"""The contract every model family meets, checked on its tiny checkpoint.

A family's test module subclasses :class:`FamilyContract` and supplies only what differs:
the family name, a small, fast row of parameters, and the diffusers docs' snippet as written
(adapted only in checkpoint path, sizes, dtype and device) with the manifest row that restates
it. The contract then checks the registry entry, the saved layout, that the params are the
pipeline's call parameters with its own defaults, shapes, seed determinism, that the docs' row
renders exactly the snippet's uint8 frames and that its mp4 is those frames through the
project's writer at the rate the docs export at, that ``fps`` is a row key of every family, and
that the family renders in float16 (from the fp16 variant) and bfloat16 on the CPU.

Each distinct video (row, seed) is rendered once per family and shared by the checks that look
at it; a check that must see a render happen (determinism, a hook, what a job left on the cached
pipeline) asks for a fresh one.
"""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
import yaml

from videosweep.tasks.jobs import Job
from videosweep.tasks.manifest import ManifestError, load_manifest
from videosweep.tasks.models import FAMILIES, ensure_built, known_models
from videosweep.tasks.render import RunContext, batches, pipeline_cache, render_job
from videosweep.tasks.denoiser_hooks import DeepCache, GuidanceCutoff
from videosweep.tasks.pipeline_options import step_cache_refusal
from videosweep.tasks.pipeline_setup import prepare_job
from videosweep.tasks.video import read_mp4, write_mp4


class FamilyContract:
    family: ClassVar[str]
    #: Params fields whose default deliberately differs from the pipeline's __call__ default (say why in the family module).
    defaults_differ: ClassVar[set[str]] = set()
    #: Params fields the pipeline's __call__ does not take, which the family handles itself (``fps`` aside, every
    #: family's): any other field is a call parameter of that name.
    not_call_parameters: ClassVar[set[str]] = set()
    #: The frame rate the family's docs snippet exports at (``export_to_video(..., fps=...)``, or
    #: ``export_to_gif``'s and ``export_to_video``'s default, 10).
    docs_fps: ClassVar[int]
    #: Why the docs row's mp4 is not at ``docs_fps``, where the family writes another rate by design; "" if it is.
    fps_differs: ClassVar[str] = ""
    #: Parts the docs load in float32 whatever the pipeline's dtype (Wan: "for better decoding quality").
    float32_by_docs: ClassVar[set[str]] = set()

    # -- what a family's test supplies ------------------------------------------------------------

    def row(self, inputs: Path) -> dict[str, Any]:
        """A small, fast row of the family's parameters (no model, no seed); files under ``inputs``."""
        raise NotImplementedError("return the family's parameters for a 2-step render of a few small frames")

    def half_precision_row(self, inputs: Path) -> dict[str, Any]:
        """The row :meth:`test_renders_in_half_precision_on_the_cpu` renders: the small row, unless the family says
        why another (values that amplify rounding; sizes at which the CPU's half-precision kernels are slow)."""
        return self.row(inputs)

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

    @pytest.fixture(scope="class")
    def inputs(self, tmp_path_factory) -> Path:
        """One folder of input files per family, so that its rows (and so its videos) are the same in every check."""
        from .conftest import ROCKET, make_video

        folder = tmp_path_factory.mktemp("inputs")
        (folder / "rocket.png").write_bytes(ROCKET.read_bytes())
        make_video(folder / "clip.mp4")
        return folder

    @pytest.fixture(scope="class", autouse=True)
    def _renders(self, request):
        """The videos this family's checks rendered, by what and (row, seed): see :meth:`render_frames`."""
        request.cls.renders = {}
        yield
        del request.cls.renders

    def jobs(self, tmp_path: Path, rows: list[dict[str, Any]], seeds: list[int]) -> list[Job]:
        manifest = {"name": "contract", "defaults": {"model": f"tiny-{self.family}"}, "rows": rows, "seeds": seeds}
        path = tmp_path / "manifest.yaml"
        path.write_text(yaml.safe_dump(manifest, sort_keys=False))
        return load_manifest(path, "cpu").jobs

    def render_frames(self, tmp_path: Path, row: dict[str, Any], seed: int, *, fresh: bool = False) -> np.ndarray:
        """The uint8 frames of one job, straight from the family's render (before mp4 encoding).

        Rendered once per family and (row, seed), unless ``fresh``: then rendered now (and kept).
        """
        key = ("frames", json.dumps(row, sort_keys=True), seed)
        if fresh or key not in self.renders:
            (job,) = self.jobs(tmp_path, [row], [seed])
            pipe, baseline, _, _ = pipeline_cache().get(job, "cpu", "contract")
            prepare_job(pipe, job.options, baseline)
            generator = torch.Generator("cpu").manual_seed(seed)
            self.renders[key] = FAMILIES[self.family].render_one(pipe, job.typed_params(), generator, "cpu").frames
        return self.renders[key]

    def render_step(self, tmp_path: Path, row: dict[str, Any], seed: int) -> tuple[dict[str, Any], np.ndarray, Path]:
        """One job through the render step (no Prefect), as ``videosweep run`` renders it: its ``ok`` record, the
        family's uint8 frames (before the mp4) and the mp4."""
        from .conftest import kept_renders

        (job,) = self.jobs(tmp_path, [row], [seed])
        run = RunContext("contract", tmp_path / "out", "cpu", "contract", str(tmp_path / "manifest.yaml"), "-")
        with pytest.MonkeyPatch.context() as patch:
            kept = kept_renders(patch, self.family)
            record = render_job(job, run)
        assert record["status"] == "ok", f"{record['error_type']}: {record['error']}"
        (rendered,) = kept
        return record, rendered.frames, run.out_root / record["video_path"]

    def render_mp4(self, tmp_path: Path, row: dict[str, Any], seed: int) -> tuple[np.ndarray, np.ndarray, float]:
        """:meth:`render_step`, once per family and (row, seed): the family's uint8 frames (kept for
        :meth:`render_frames` too), the frames decoded from its mp4, and the mp4's frame rate (its record's too)."""
        key = ("mp4", json.dumps(row, sort_keys=True), seed)
        if key not in self.renders:
            record, frames, video = self.render_step(tmp_path, row, seed)
            mp4, fps = read_mp4(video)
            assert record["video_fps"] == fps
            self.renders[("frames", key[1], seed)] = frames
            self.renders[key] = (frames, mp4, fps)
        return self.renders[key]

    def docs_frames(self, ref, inputs: Path) -> np.ndarray:
        """The frames of the docs' snippet (:meth:`docs_recipe`) for :meth:`docs_row` at seed 11, run once per family."""
        if "docs" not in self.renders:
            components = {name: Path(folder) for name, folder in ref.components}
            self.renders["docs"] = self.docs_recipe(Path(ref.source), components, self.docs_row(inputs), 11)
        return self.renders["docs"]

    # -- the contract -----------------------------------------------------------------------------

    def test_registered_with_a_tiny_checkpoint_in_the_real_layout(self, ref):
        spec = FAMILIES[self.family]
        assert spec.name == self.family and spec.description
        index = json.loads((Path(ref.source) / "model_index.json").read_text())
        # a family's own pipeline, or the base repo it is assembled on (an SD 1.5 base under a motion
        # adapter), or the pipeline of another family whose checkpoint it shares
        expected = {spec.pipeline_class, spec.base_pipeline_class}
        if spec.tiny_base is not None:
            expected |= {FAMILIES[spec.tiny_base].pipeline_class, FAMILIES[spec.tiny_base].base_pipeline_class}
        assert index["_class_name"] in expected, (index["_class_name"], expected)
        assert all(Path(folder).is_dir() and any(Path(folder).iterdir()) for _, folder in ref.components)
        assert list(Path(ref.source).rglob("*.fp16.safetensors")), "an fp16 variant, as the real repos have"

    def test_params_are_the_pipelines_call_parameters_with_its_defaults(self):
        import diffusers

        spec = FAMILIES[self.family]
        signature = inspect.signature(getattr(diffusers, spec.pipeline_class).__call__).parameters
        fields = spec.params.model_fields
        assert {name for name in fields if name not in signature} - {"fps"} == self.not_call_parameters
        for name, field in fields.items():
            if name in self.defaults_differ or name not in signature or field.is_required():
                continue
            assert field.default == signature[name].default, name

    def test_same_seed_same_frames_other_seed_other_frames(self, tmp_path, inputs):
        """Torch's global RNG is moved between renders: noise drawn outside the job's generator shows."""
        row = self.row(inputs)
        torch.manual_seed(1)
        first = self.render_frames(tmp_path, row, 3, fresh=True)
        assert first.dtype == np.uint8 and first.ndim == 4 and first.shape[-1] == 3
        torch.manual_seed(2)
        assert np.array_equal(first, self.render_frames(tmp_path, row, 3, fresh=True))
        assert not np.array_equal(first, self.render_frames(tmp_path, row, 4))

    def test_manifest_row_renders_the_docs_recipe_exactly(self, tmp_path, inputs, ref):
        """The docs' snippet by hand and the row that restates it, rendered by the render step: the same uint8
        frames (max abs 0)."""
        ours, _, _ = self.render_mp4(tmp_path, self.docs_row(inputs), 11)
        theirs = self.docs_frames(ref, inputs)
        assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
        off = np.abs(ours.astype(int) - theirs.astype(int))
        assert off.max() == 0, f"the docs' frames differ: max {off.max()} levels, {np.count_nonzero(off)} of {off.size} values"

    def test_the_docs_rows_mp4_is_the_docs_frames_through_the_writer(self, tmp_path, inputs, ref):
        """The render step's mp4 of the docs' row (what ``videosweep run`` writes) decodes to the snippet's frames
        encoded by ``tasks.video.write_mp4``, at the rate the docs export at (or the family's documented own)."""
        _, ours, fps = self.render_mp4(tmp_path, self.docs_row(inputs), 11)
        if self.fps_differs:
            assert fps != self.docs_fps, f"the docs' rate now: drop fps_differs ({self.fps_differs})"
        else:
            assert fps == self.docs_fps, f"the mp4 plays at {fps} fps, the docs' at {self.docs_fps}"
        write_mp4(self.docs_frames(ref, inputs), int(fps), tmp_path / "hand.mp4")
        hand, hand_fps = read_mp4(tmp_path / "hand.mp4")
        assert hand_fps == fps and hand.shape == ours.shape, (hand_fps, fps, hand.shape, ours.shape)
        off = np.abs(ours.astype(int) - hand.astype(int))
        assert off.max() == 0, f"the decoded mp4s differ: max {off.max()} levels, {np.count_nonzero(off)} of {off.size} values"

    def test_frames_are_converted_to_uint8_as_the_docs_convert_them(self):
        from videosweep.tasks.models.base import to_uint8_frames

        conversion = FAMILIES[self.family].uint8_conversion
        ramp = np.linspace(0.0, 1.0, 1021, dtype=np.float32).reshape(1, 1, -1, 1)
        docs = (ramp * 255).round() if conversion == "round" else ramp * 255
        assert np.array_equal(to_uint8_frames(ramp, conversion), docs.astype(np.uint8))

    def test_fps_is_a_row_key_the_mp4s_rate(self, tmp_path, inputs):
        """Every family takes ``fps``; a row that leaves it out keeps the params (and so the job id) it had before.
        The small row renders end to end: its mp4 is the family's frames through the project's writer at that rate."""
        row = self.row(inputs)
        (plain,) = self.jobs(tmp_path, [row], [3])
        (faster,) = self.jobs(tmp_path, [{**row, "fps": 12}], [3])
        assert faster.job_id != plain.job_id
        if self.family != "svd":  # the one family that had `fps` before: every other's params are as they were
            assert "fps" not in plain.params
        default = FAMILIES[self.family].params.model_fields["fps"].default
        if default is not None:  # the docs' rate: the same video as leaving it out, the same id
            (same,) = self.jobs(tmp_path, [{**row, "fps": default}], [3])
            assert same.job_id == plain.job_id
        frames, mp4, fps = self.render_mp4(tmp_path, {**row, "fps": 12}, 3)
        assert fps == 12
        write_mp4(frames, 12, tmp_path / "hand.mp4")
        hand, _ = read_mp4(tmp_path / "hand.mp4")
        assert hand.shape == mp4.shape and np.array_equal(hand, mp4)

    def test_guidance_cutoff_at_zero_renders_what_guidance_off_renders(self, tmp_path, inputs, monkeypatch):
        """Past the cutoff the denoiser gets the conditional half of the batch only: from step 0, that is no guidance."""
        knob = FAMILIES[self.family].batched_guidance
        row = self.row(inputs)
        if knob is None:
            with pytest.raises(ManifestError, match="does not run guidance as one"):
                self.jobs(tmp_path, [{**row, "guidance_cutoff": 0.5}], [1])
            return
        guided = {**row, knob: 4.0}
        full = self.render_frames(tmp_path, guided, 3)
        cut = self.render_frames(tmp_path, {**guided, "guidance_cutoff": 0.0}, 3)
        off = self.render_frames(tmp_path, {**row, knob: 1.0}, 3)
        assert np.abs(cut.astype(int) - off.astype(int)).max() <= 2
        assert np.abs(cut.astype(int) - full.astype(int)).max() > 8, "guidance made no difference: the test shows nothing"
        halved = []  # per denoiser call: the full batch it was cut from, or None
        after = GuidanceCutoff.after
        monkeypatch.setattr(GuidanceCutoff, "after", lambda hook, *a: halved.append(hook.halved) or after(hook, *a))
        self.render_frames(tmp_path, {**guided, "guidance_cutoff": 0.5}, 3, fresh=True)
        assert halved[0] is None and halved[-1] % 2 == 0, f"2 steps, cut at 0.5: the first step guided, the last not: {halved}"
        assert np.array_equal(self.render_frames(tmp_path, guided, 3, fresh=True), full), "the cutoff's hooks outlived their job"
        with pytest.raises(ManifestError, match=f"{knob} is 1.0, so there is no guidance to cut"):
            self.jobs(tmp_path, [{**row, knob: 1.0, "guidance_cutoff": 0.5}], [1])

    def test_first_block_cache_renders_or_is_refused_before_anything_renders(self, tmp_path, inputs):
        """A ``step_cache: {type: first_block}`` row either renders or is refused at validation, never failing the job."""
        row = {**self.row(inputs), "step_cache": {"type": "first_block", "threshold": 0.05}}
        if refusal := step_cache_refusal(FAMILIES[self.family].pipeline_class, "first_block"):
            with pytest.raises(ManifestError, match=re.escape(refusal)):
                self.jobs(tmp_path, [row], [1])
            return
        assert self.render_frames(tmp_path, row, 3).shape == self.render_frames(tmp_path, self.row(inputs), 3).shape

    def test_deep_cache_reuses_the_unets_deep_blocks_between_full_calls(self, tmp_path, inputs, monkeypatch):
        row = self.row(inputs)
        if step_cache_refusal(FAMILIES[self.family].pipeline_class, "deep_cache"):
            with pytest.raises(ManifestError, match="deep_cache skips a UNet's deep blocks"):
                self.jobs(tmp_path, [{**row, "step_cache": {"type": "deep_cache"}}], [1])
            return
        plain = self.render_frames(tmp_path, row, 3)
        every_call = self.render_frames(tmp_path, {**row, "step_cache": {"type": "deep_cache", "interval": 1}}, 3)
        assert np.array_equal(every_call, plain), "interval 1 runs the whole UNet on every call"
        reused = []  # per denoiser call: whether it took the deep blocks' kept outputs
        before = DeepCache.before
        monkeypatch.setattr(DeepCache, "before", lambda hook, *a: before(hook, *a) or reused.append(hook.reuse))
        cached = self.render_frames(tmp_path, {**row, "step_cache": {"type": "deep_cache", "interval": 2}}, 3, fresh=True)
        assert reused[:2] == [False, True], reused
        assert cached.shape == plain.shape and not np.array_equal(cached, plain)
        assert np.array_equal(self.render_frames(tmp_path, row, 3, fresh=True), plain), "the cache outlived its job"

    def test_a_batch_renders_what_each_video_renders_alone(self, tmp_path, inputs):
        """``run --batch``: where the family renders several rows in one call, each video is its one-per-call self."""
        spec = FAMILIES[self.family]
        if spec.batch_fields is None:  # one video per call, whatever --batch says
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
        batched = spec.render(pipe, [job.typed_params() for job in jobs], generators, "cpu")
        alone = [self.render_frames(tmp_path, row, seed) for row, seed in zip(rows, seeds)]
        for together, by_itself in zip(batched, alone):
            assert together.frames.shape == by_itself.shape
            assert np.abs(together.frames.astype(int) - by_itself.astype(int)).max() <= 2
        assert np.abs(batched[0].frames.astype(int) - alone[2].astype(int)).max() > 8, "the bound tells two seeds apart"

    @pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
    def test_renders_in_half_precision_on_the_cpu(self, tmp_path, inputs, dtype):
        """On a GPU every family loads in float16 (from the fp16 weight variant) or bfloat16; here the small row
        renders so through the render step on the CPU, where a float32 tensor meeting a half-precision weight
        raises as on a GPU: the record is ``ok``, the pipeline that rendered holds every part in that dtype (but
        what the docs keep in float32), the denoiser is fed that dtype on every call, and the frames are the
        float32 render's up to precision (no NaN gone black, no garbage)."""
        row = self.half_precision_row(inputs)
        reference = self.render_frames(tmp_path, row, 3)
        half = {**row, "dtype": dtype}
        (job,) = self.jobs(tmp_path, [half], [3])
        pipe, _, _, _ = pipeline_cache().get(job, "cpu", "contract")  # the pipeline render_job will take: watch it
        fed: list[torch.dtype] = []

        def watch(module, args, kwargs):
            fed.append(kwargs.get("hidden_states", kwargs.get("sample", args[0] if args else None)).dtype)

        # the network that takes the latents: a denoiser, or LTX-2's latent upsampler (a pipeline that does not denoise)
        denoiser = getattr(pipe, "transformer", None) or getattr(pipe, "unet", None) or pipe.latent_upsampler
        handle = denoiser.register_forward_pre_hook(watch, with_kwargs=True)
        try:
            record, frames, video = self.render_step(tmp_path, half, 3)
        finally:
            handle.remove()
        assert record["cache_hit"], "rendered by another pipeline than the one inspected"
        assert record["dtype"] == dtype
        assert record["variant"] == ("fp16" if dtype == "float16" else None), "float16 reads the fp16 files, as the docs do"
        assert not wrong_dtypes(pipe, getattr(torch, dtype), self.float32_by_docs)
        assert fed and set(fed) == {getattr(torch, dtype)}, f"the denoiser was fed {fed}"
        assert read_mp4(video)[0].shape == frames.shape == reference.shape, "the mp4 holds the frames"
        assert frames.std() > 5, "a flat video: NaN latents decode to black"
        difference = np.abs(frames.astype(int) - reference.astype(int))
        # measured (seed 3): mean 0.01-0.21 levels in float16, 0.3-1.8 in bfloat16; NaN or garbage is tens
        bound = {"float16": 1.0, "bfloat16": 4.0}[dtype]
        assert difference.mean() < bound, f"mean {difference.mean():.2f} levels from the float32 render"

    def other_video(self, inputs: Path) -> dict[str, Any]:
        """The values of a second video of the same call: another value of each of the family's ``batch_fields``."""
        raise NotImplementedError("a family with batch_fields says how a second video of its batch differs")


def wrong_dtypes(pipe, dtype: torch.dtype, float32_parts: set[str] = frozenset()) -> dict[str, set[str]]:
    """Per part of ``pipe``, its parameters not in ``dtype`` (``float32_parts``: not in float32).

    Modules a class keeps in float32 (``_keep_in_fp32_modules``: Wan's norms and time embedder,
    T5's ``wo``) may be float32 in any dtype, as ``from_pretrained`` leaves them.
    """
    wrong = {}
    for part, module in pipe.components.items():
        if not isinstance(module, torch.nn.Module):
            continue
        expected = torch.float32 if part in float32_parts else dtype
        keep = {*(getattr(module, "_keep_in_fp32_modules", None) or ())}
        keep |= {*(getattr(module, "_keep_in_fp32_modules_strict", None) or ())}
        found = {
            name
            for name, parameter in module.named_parameters()
            if parameter.dtype != expected and not (parameter.dtype == torch.float32 and keep & set(name.split(".")))
        }
        if found:
            wrong[part] = found
    return wrong
