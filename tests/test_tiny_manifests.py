"""`videosweep run` on the tiny example manifests of the families added with issue 17: each renders every job
through the whole command (Prefect flow, render, export, results, grids, report), not the render step alone."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from videosweep.flows.cli import app
from videosweep.tasks.results import read_results
from videosweep.tasks.video import check_mp4

TINY = Path(__file__).resolve().parent.parent / "manifests" / "tiny"
FAMILIES = [
    "animatediff-sdxl",
    "animatediff-v2v",
    "animatediff-controlnet",
    "cogvideox-v2v",
    "skyreels-v2-df-i2v",
    "skyreels-v2-df-v2v",
    "ltx2-i2v",
    "ltx2-upsample",
]


@pytest.mark.parametrize("family", FAMILIES)
def test_the_tiny_manifest_renders_through_videosweep_run(family, tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["run", str(TINY / f"{family}.yaml"), "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    table = read_results(out)
    assert family in set(table["family"]) and (table["status"] == "ok").all()
    for _, record in table.iterrows():
        assert check_mp4(out / record["video_path"]) == record["video_frames"]
    assert (out / "report.html").is_file()
