"""Any diffusers video pipeline by class name (tasks/models/by_class.py), on LattePipeline: no curated family has it,
and this test builds its tiny twin."""

import inspect
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from typer.testing import CliRunner

from videosweep.flows.cli import app
from videosweep.tasks.manifest import ManifestError, load_manifest
from videosweep.tasks.models import FAMILY_OF_PIPELINE, by_class, family_spec, resolve
from videosweep.tasks.models.base import input_fields, to_uint8_frames
from videosweep.tasks.query import varying_parameters
from videosweep.tasks.record import own_columns
from videosweep.tasks.render import RunContext, render_job
from videosweep.tasks.reproduce import record_row
from videosweep.tasks.results import read_results, schema_of
from videosweep.tasks.video import read_mp4

from .conftest import kept_renders

PROMPT = "a cat | 猫 🐱 \u202eevil\u202c"
SMALL = dict(prompt=PROMPT, num_inference_steps=2, video_length=4, height=32, width=32, clean_caption=False)


def videosweep(*args):
    return CliRunner().invoke(app, [str(arg) for arg in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def latte(tmp_path_factory) -> Path:
    """A random-weight LattePipeline folder: T5 text encoder, SD VAE, a 1-layer Latte transformer, DDIM."""
    from diffusers import DDIMScheduler, LattePipeline, LatteTransformer3DModel

    from videosweep.tasks.models._tiny import sd_vae, t5_text_parts

    tokenizer, text_encoder = t5_text_parts()
    torch.manual_seed(0)
    transformer = LatteTransformer3DModel(
        sample_size=8,
        num_layers=1,
        patch_size=2,
        attention_head_dim=8,
        num_attention_heads=2,
        caption_channels=32,  # the T5's d_model
        in_channels=4,
        cross_attention_dim=16,
        out_channels=8,
        attention_bias=True,
        activation_fn="gelu-approximate",
        num_embeds_ada_norm=1000,
        norm_type="ada_norm_single",
        norm_elementwise_affine=False,
        norm_eps=1e-6,
        video_length=4,
    )
    pipe = LattePipeline(
        tokenizer=tokenizer, text_encoder=text_encoder, vae=sd_vae(), transformer=transformer, scheduler=DDIMScheduler()
    )
    folder = tmp_path_factory.mktemp("tiny-latte")
    pipe.save_pretrained(folder)
    return folder


def manifest(folder: Path, tmp_path: Path, rows: list[dict], **extra) -> Path:
    path = tmp_path / "latte.yaml"
    body = {"name": "latte", "defaults": {"model": str(folder), "pipeline": "LattePipeline", **SMALL}, "rows": rows}
    path.write_text(yaml.safe_dump({**body, **extra}, sort_keys=False, allow_unicode=True))
    return path


def test_every_video_pipeline_of_diffusers_reads_into_a_family_whose_columns_fit():
    pipelines = by_class.video_pipelines()
    assert {"LattePipeline", "MotifVideoPipeline", "WanPipeline", "StableVideoDiffusionPipeline"} <= set(pipelines)
    assert "StableDiffusionPipeline" not in pipelines  # an image pipeline
    for name in pipelines:
        spec = family_spec(FAMILY_OF_PIPELINE.get(name, name))
        assert spec.pipeline_class == name or name not in FAMILY_OF_PIPELINE
        if name in FAMILY_OF_PIPELINE:
            continue
        schema = schema_of(name)  # one type per column, none a record column's
        signature = inspect.signature(by_class.pipeline_class(name).__call__).parameters
        left_out = by_class.read_call(by_class.pipeline_class(name))[2]
        fields = spec.params.model_fields
        added = set() if "fps" in signature else {"fps"}  # the mp4's rate, where the call takes none
        assert set(fields) - added == set(signature) - {"self", "kwargs"} - set(left_out), name
        assert {"generator", "output_type"} & set(signature) <= set(left_out)
        for column, _ in own_columns(name):
            assert column in schema.names


def test_params_are_the_calls_with_its_defaults():
    params = family_spec("LattePipeline").params
    fields = params.model_fields
    assert (fields["num_inference_steps"].default, fields["guidance_scale"].default) == (50, 7.5)
    assert (fields["video_length"].default, fields["height"].default, fields["clean_caption"].default) == (16, 512, True)
    assert fields["fps"].default == by_class.DEFAULT_FPS  # Latte's call takes no frame rate
    assert "frames that are generated" in fields["video_length"].description  # from the docstring's Args
    left_out = by_class.read_call(by_class.pipeline_class("LattePipeline"))[2]
    assert {"latents", "prompt_embeds", "generator", "timesteps", "num_images_per_prompt"} <= set(left_out)
    assert "timesteps" not in fields  # list[int] | None is no scalar: not collapsed to an int
    with pytest.raises(ValueError, match="video_length"):
        params(video_length="four")
    with pytest.raises(ValueError, match="extra"):
        params(latents=1)
    # image and video inputs are read, hashed and recorded like a curated family's
    motif = input_fields(family_spec("MotifVideoImage2VideoPipeline").params)
    assert motif == {"image": "image"}
    cosmos = input_fields(family_spec("Cosmos2VideoToWorldPipeline").params)
    assert cosmos == {"image": "image", "video": "video"}


def test_a_row_renders_what_the_class_renders_called_by_hand(latte, tmp_path):
    from diffusers import LattePipeline

    (job,) = load_manifest(manifest(latte, tmp_path, [{"guidance_scale": 3.0}], seeds=[5]), "cpu").jobs
    assert (job.family, job.model_id) == ("LattePipeline", str(latte))
    run = RunContext("latte", tmp_path / "out", "cpu", "latte", str(tmp_path / "latte.yaml"), "-")
    with pytest.MonkeyPatch.context() as patch:
        kept = kept_renders(patch, "LattePipeline")
        record = render_job(job, run)
    assert record["status"] == "ok", record["error"]
    assert record["pipeline_class"] == "LattePipeline" and record["video_length"] == 4
    assert record["decode_s"] > 0 and record["denoise_s"] > 0  # the VAE's decode timed apart from the call

    pipe = LattePipeline.from_pretrained(latte)
    by_hand = pipe(
        **SMALL, guidance_scale=3.0, generator=torch.Generator("cpu").manual_seed(5), output_type="np"
    ).frames[0]
    expected = to_uint8_frames(by_hand, "truncate")  # diffusers.utils.export_to_video's conversion
    assert np.array_equal(kept[0].frames, expected)
    frames, fps = read_mp4(run.out_root / record["video_path"])
    assert frames.shape == (4, 32, 32, 3) and fps == by_class.DEFAULT_FPS


def test_videosweep_run_records_a_sweep_and_exports_it_back(latte, tmp_path):
    """Columns no curated family has (``mask_feature``, ``video_length``) are typed, swept and shown like any."""
    path = manifest(latte, tmp_path, [{}], sweep={"mask_feature": [True, False]}, seeds=[0])
    out = tmp_path / "out"
    result = videosweep("run", path, "--out", out)
    assert result.exit_code == 0, result.output
    table = read_results(out)
    assert sorted(table["mask_feature"]) == [False, True] and set(table["family"]) == {"LattePipeline"}
    assert table["mask_feature"].dtype == bool and table["video_length"].dtype.kind == "i"
    assert (table["status"] == "ok").all() and "mask_feature" in varying_parameters(table)
    for _, record in table.iterrows():
        frames, _ = read_mp4(out / record["video_path"])
        assert len(frames) == record["video_length"] == 4
    shown = videosweep("results", out)
    assert shown.exit_code == 0 and "mask_feature" in shown.output

    row = record_row(table.iloc[0].to_dict())
    assert row["pipeline"] == "LattePipeline" and "family" not in row
    exported = tmp_path / "exported.yaml"
    result = videosweep("export-manifest", out)
    assert result.exit_code == 0, result.output
    exported.write_text(result.stdout)
    again = load_manifest(exported, "cpu").jobs
    assert sorted(job.job_id for job in again) == sorted(table["job_id"])


def test_a_folder_whose_index_names_the_class_needs_no_pipeline_key(latte, tmp_path):
    assert resolve(str(latte)).family == "LattePipeline"
    path = tmp_path / "plain.yaml"
    path.write_text(yaml.safe_dump({"name": "plain", "rows": [{"model": str(latte), "seed": 1, **SMALL}]}))
    (plain,) = load_manifest(path, "cpu").jobs
    (named,) = load_manifest(manifest(latte, tmp_path, [{"seed": 1}]), "cpu").jobs
    assert plain.job_id == named.job_id


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"pipeline": "LatePipeline"}, "no pipeline class 'LatePipeline'; did you mean 'LattePipeline'"),
        ({"pipeline": "StableDiffusionPipeline"}, "is not a video pipeline"),
        ({"pipeline": "LattePipeline", "video_lenght": 4}, "did you mean 'video_length'"),
        ({"pipeline": "LattePipeline", "latents": 1}, "unknown key 'latents'"),
        ({"pipeline": "LattePipeline", "family": "wan"}, "give `pipeline:` or `family:`, not both"),
    ],
)
def test_a_wrong_class_or_key_is_refused_naming_the_fix(latte, tmp_path, row, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"name": "bad", "rows": [{"model": str(latte), "seed": 1, "prompt": "x", **row}]}))
    with pytest.raises(ManifestError, match=message.replace("(", r"\(").replace("|", r"\|")) as caught:
        load_manifest(path, "cpu")
    assert "job 0 (rows[0])" in str(caught.value)


def test_a_curated_class_picks_its_family_and_loads_a_key_of_the_same_checkpoint(tmp_path):
    path = tmp_path / "v2v.yaml"
    clip = tmp_path / "clip.mp4"
    from .conftest import make_video

    make_video(clip, frames=9)
    common = {"video": str(clip), "prompt": "x", "height": 32, "width": 32, "seed": 1}
    rows = [{"model": "tiny-wan", "pipeline": "WanVideoToVideoPipeline", **common}, {"model": "tiny-wan-v2v", **common}]
    path.write_text(yaml.safe_dump({"name": "v2v", "rows": rows}))
    with pytest.raises(ManifestError, match=r"job 1 \(rows\[1\]\): renders the same video as job 0"):
        load_manifest(path, "cpu")  # one checkpoint, one family: one job
    path.write_text(yaml.safe_dump({"name": "v2v", "rows": rows[:1]}))
    (by_pipeline,) = load_manifest(path, "cpu").jobs
    assert (by_pipeline.family, by_pipeline.model) == ("wan-v2v", "tiny-wan")

    path.write_text(yaml.safe_dump({"name": "v2v", "rows": [{"model": "tiny-wan", **common}]}))
    with pytest.raises(ManifestError, match="WanVideoToVideoPipeline takes it: add `pipeline: WanVideoToVideoPipeline`"):
        load_manifest(path, "cpu")
    path.write_text(yaml.safe_dump({"name": "v2v", "rows": [{"model": "tiny-wan", "pipeline": "MochiPipeline", "seed": 1}]}))
    with pytest.raises(ManifestError, match="of family 'wan', not 'mochi'"):
        load_manifest(path, "cpu")


def test_models_lists_the_pipelines_by_class_and_their_parameters():
    listing = videosweep("models")
    assert listing.exit_code == 0
    by_class_part = listing.output.split("by class name")[1]
    assert "LattePipeline" in by_class_part and "WanPipeline" not in by_class_part.split("a row names one")[0]
    one = videosweep("models", "--pipeline", "LattePipeline")
    assert one.exit_code == 0 and "video_length" in one.output and "latents" in one.output
    curated = videosweep("models", "--pipeline", "WanPipeline")
    assert curated.exit_code == 0 and "family wan" in curated.output
    wrong = videosweep("models", "--pipeline", "LatePipeline")
    assert wrong.exit_code == 2 and "did you mean 'LattePipeline'" in wrong.output
