"""One manifest, many families, one chain: rendered through the CLI and the Prefect flow on the CPU."""

import json

import pandas as pd
from typer.testing import CliRunner

from videosweep.flows.cli import app
from videosweep.tasks.manifest import load_manifest

from .conftest import ROCKET, make_video

P = "prompt: a rocket lifting off at dawn"
MIXED = f"""
name: mixed
defaults: {{num_inference_steps: 2}}
rows:
  - {{model: tiny-svd, image: {ROCKET}, height: 32, width: 48, num_frames: 4}}
  - {{model: tiny-i2vgen-xl, {P}, image: {ROCKET}, height: 32, width: 48, num_frames: 4}}
  - {{model: tiny-wan, {P}, height: 32, width: 48, num_frames: 5}}
  - {{model: tiny-wan-i2v, {P}, image: {ROCKET}, max_area: 1536, num_frames: 5}}
  - {{model: tiny-text2video-zero, {P}, height: 32, width: 48, video_length: 3, t0: 0, t1: 1}}
  - {{id: low-res, model: tiny-text-to-video-sd, {P}, height: 32, width: 48, num_frames: 4}}
  - {{model: tiny-video-to-video-sd, {P}, video: "@low-res", strength: 0.6, num_inference_steps: 4}}
  - {{model: tiny-video-to-video-sd, {P}, video: clip.mp4, strength: 0.6, num_inference_steps: 4}}
seeds: [1, 2]
"""


def test_a_mixed_manifest_loads_each_pipeline_once_and_records_every_job(tmp_path, fresh_pipeline_cache):
    (tmp_path / "mixed.yaml").write_text(MIXED)
    make_video(tmp_path / "clip.mp4", frames=4, height=32, width=48)
    jobs = load_manifest(tmp_path / "mixed.yaml", "cpu").jobs
    assert len(jobs) == 16 and len({job.family for job in jobs}) == 7

    result = CliRunner().invoke(app, ["run", str(tmp_path / "mixed.yaml"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(tmp_path / "out" / "results")
    assert sorted(table["job_id"]) == sorted(job.job_id for job in jobs)
    assert (table["status"] == "ok").all(), table.loc[table["status"] != "ok", "error"].tolist()

    # each pipeline loaded once: one cache miss per model
    misses = table.groupby("model")["cache_hit"].apply(lambda hits: int((~hits).sum()))
    assert (misses == 1).all(), misses.to_dict()

    # the chain: each upscaled job took its own source's video, and rendered after it
    chained = table[table["input_video_sha256"].str.startswith("job:", na=False)]
    sources = table.set_index("job_id")
    assert len(chained) == 2
    for row in chained.itertuples():
        source = sources.loc[row.input_video_sha256.removeprefix("job:")]
        assert source["model"] == "tiny-text-to-video-sd" and source["seed"] in (1, 2)
        assert source["finished_at"] <= row.started_at
        assert json.loads(row.sweep_json)["seed"] == row.seed
