"""OUT/report.html as written: self-contained, every value escaped, its data whole; posters, manifests, other attempts.

``sweep_root`` builds the output root the browser tests (tests/test_report_page.py) open too: records
written through the project's writer, tiny real mp4s, a failed job, a job tried twice, a rerun
under OUT/reruns, a hostile prompt, a manifest on disk and two grid sidecars.
"""

import hashlib
import json
import os
import re
import shlex
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from videosweep.tasks.report import write_report
from videosweep.tasks.results import write_record
from videosweep.tasks.video import write_mp4

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
GRID_SIZE = (48, 64)  # height, width of the fake grids
XSS = "<script>window.injected = 1</script>"
HOSTILE_PROMPT = "</script><script>window.injected = 2</script> <b>bold</b> \x1b]0;pwned\x07 صاروخ 🚀"
PROMPTS = ("a rocket at dawn", HOSTILE_PROMPT)
MANIFEST_TEXT = "# the sweep </script> <i>as written</i>\nname: demo\nsweep:\n  motion_bucket_id: [60, 180]\n"
FAILED = (180, 42, PROMPTS[0])  # (motion, seed, prompt) of the job that failed
RETRIED = (60, 42, PROMPTS[0])  # failed once, then ok
RERUN = (60, 43, PROMPTS[0])  # rendered again under OUT/reruns


def clip(frames: int, height: int, width: int, shade: int) -> np.ndarray:
    """A bar sliding right over a flat background: frames that differ, cheap to encode."""
    video = np.full((frames, height, width, 3), shade, np.uint8)
    for index in range(frames):
        video[index, :, index * width // frames : index * width // frames + 4] = 255
    return video


def job_id_of(motion: int, seed: int, prompt: str) -> str:
    return hashlib.sha256(f"{motion}/{seed}/{prompt}".encode()).hexdigest()[:16]


def record_of(root: Path, motion: int, seed: int, prompt: str, index: int, manifest: Path, **values) -> dict:
    """A record as render_job writes it, with its clip written when ``status`` is ok."""
    job_id = job_id_of(motion, seed, prompt)
    params = {"motion_bucket_id": motion, "prompt": prompt, "num_frames": 8, "fps": 8}
    record = {
        "job_id": job_id,
        "run_id": "run-1",
        "attempt": 1,
        "status": "ok",
        "manifest_name": "demo",
        "manifest_path": str(manifest),
        "manifest_sha256": hashlib.sha256(MANIFEST_TEXT.encode()).hexdigest(),
        "job_index": index,
        "origin": "sweep",
        "model": "tiny-svd",
        "sweep_json": json.dumps({"motion_bucket_id": motion, "seed": seed, "prompt": prompt}),
        "params_json": json.dumps(params),
        "motion_bucket_id": motion,
        "prompt": prompt,
        "seed": seed,
        "device": "cpu",
        "torch_version": "2.13.0",
        "load_s": 0.5,
        "denoise_s": 1.0 + index / 10,
        "decode_s": 0.25,
        "export_s": 0.125,
        "total_s": 2.0 + index / 10,
        "queued_at": T0,
        "started_at": T0 + timedelta(seconds=index),
        "finished_at": T0 + timedelta(seconds=index + 1),
        **values,
    }
    if record["status"] == "ok":
        video = f"videos/{job_id}.mp4"
        write_mp4(clip(8, 24, 32, 20 * index), 8, root / video)
        record.update(
            video_path=video, video_frames=8, video_fps=8.0, video_width=32, video_height=24,
            motion_score=motion / 1000 + seed / 1e5, flicker=0.001,
        )  # fmt: skip
    return record


def sweep_root(base: Path) -> Path:
    """A 2 (motion) x 2 (seed) x 2 (prompt) sweep in a root whose path needs quoting, and its report."""
    root = base / "my out's root"
    manifest = base / "demo.yaml"
    manifest.write_text(MANIFEST_TEXT)
    index = 0
    for motion in (60, 180):
        for seed in (42, 43):
            for prompt in PROMPTS:
                key = (motion, seed, prompt)
                if key == RETRIED:
                    failed = {"status": "failed", "error_type": "OutOfMemoryError", "error": "first try"}
                    write_record(root, record_of(root, *key, index, manifest, **failed))
                    write_record(root, record_of(root, *key, index, manifest, attempt=2, run_id="run-2"))
                elif key == FAILED:
                    error = {"error_type": "RuntimeError", "error": XSS + "\nsecond line"}
                    write_record(root, record_of(root, *key, index, manifest, status="failed", **error))
                else:
                    write_record(root, record_of(root, *key, index, manifest))
                if key == RERUN:
                    rerun = root / "reruns"
                    write_record(rerun, record_of(rerun, *key, index, manifest, run_id="run-rerun", total_s=9.5))
                index += 1
    write_grid_sidecars(root)
    write_report(root)
    return root


def write_grid_sidecars(root: Path) -> None:
    """Two grids (one per seed) as ``draw_grids`` describes them: mp4, animated WebP, sidecar."""
    (root / "grids").mkdir()
    for seed in (42, 43):
        name = f"motion_bucket_id-seed-{seed}"
        frames = clip(4, *GRID_SIZE, shade=seed)
        write_mp4(frames, 8, root / "grids" / f"{name}.mp4")
        images = [Image.fromarray(frame) for frame in frames]
        images[0].save(root / "grids" / f"{name}.webp", save_all=True, append_images=images[1:], duration=125, loop=0)
        sidecar = {
            "name": name, "title": f"motion_bucket_id <i>&</i> seed={seed}", "mp4": f"grids/{name}.mp4",
            "preview": f"grids/{name}.webp", "x": "motion_bucket_id", "y": None, "z": "seed", "z_value": seed,
            "fixed": {"model": "tiny-svd"}, "rows": 1, "cols": 2, "frames": 4, "fps": 8,
            "width": GRID_SIZE[1], "height": GRID_SIZE[0],
            "cells": [{"row": 0, "col": col, "job_id": None, "x": m, "y": None, "status": "ok"} for col, m in enumerate((60, 180))],
        }  # fmt: skip
        (root / "grids" / f"{name}.json").write_text(json.dumps(sidecar))


@pytest.fixture(scope="module")
def out_root(tmp_path_factory) -> Path:
    return sweep_root(tmp_path_factory.mktemp("report"))


def page_json(page: str) -> dict:
    found = re.search(r'<script type="application/json" id="sweep-data">(.*?)</script>', page, re.DOTALL)
    return json.loads(found.group(1))


def test_report_is_written_whole_and_self_contained(out_root: Path):
    page = (out_root / "report.html").read_text()
    assert not [path for path in out_root.rglob(".*")], "scratch files left behind"
    assert "<script src" not in page and "stylesheet" not in page and "http" not in page.split("<script>")[0]
    references = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert len(references) == 2 * 4 + 1 + 1  # per grid: mp4 source, preview, two links; the favicon; the kept manifest
    for reference in references:
        if reference != "data:,":
            assert not urlparse(reference).scheme and (out_root / unquote(reference)).is_file(), reference
    data = page_json(page)
    for job in data["jobs"]:  # what the script will link: files of the root
        for path in (job["video"], job["poster"], *(other["video"] for other in job["others"])):
            assert path is None or (out_root / path).is_file(), path


def test_no_value_can_close_the_data_or_become_markup(out_root: Path):
    page = (out_root / "report.html").read_text()
    blob = page.split('id="sweep-data">', 1)[1].split("</script>", 1)[0]
    assert "<" not in blob and ">" not in blob  # a prompt holding </script> stays inside, as \u003c
    assert "\x1b" not in blob  # what the script shows is printable; the tables keep values whole, escaped for HTML
    assert XSS not in page and "window.injected = 2</script>" not in page
    assert "&lt;script&gt;window.injected = 1&lt;/script&gt;" not in page  # the error travels in the data only
    data = page_json(page)
    (prompt,) = [axis for axis in data["axes"] if axis["name"] == "prompt"]
    shown = "</script><script>window.injected = 2</script> <b>bold</b>  صاروخ 🚀"  # the escape sequence dropped
    assert shown in prompt["labels"]
    (failed,) = [job for job in data["jobs"] if job["status"] == "failed"]
    assert failed["error"] == f"RuntimeError: {XSS}\nsecond line"  # line by line, each printable
    assert "motion_bucket_id &lt;i&gt;&amp;&lt;/i&gt; seed=42" in page and "<i>&</i>" not in page  # grid captions
    assert "# the sweep &lt;/script&gt; &lt;i&gt;as written&lt;/i&gt;" in page  # the manifest as written


def test_the_data_holds_axes_measures_timings_and_the_rerun_line(out_root: Path):
    data = page_json((out_root / "report.html").read_text())
    assert [axis["name"] for axis in data["axes"]] == ["motion_bucket_id", "seed", "prompt"]
    assert data["axes"][0]["labels"] == ["60", "180"] and data["axes"][2]["labels"][1] == PROMPTS[0] and data["start"] == {"x": "motion_bucket_id", "y": None, "z": "seed"}
    assert {measure["name"] for measure in data["measures"]} >= {"motion_score", "flicker", "load_s", "denoise_s", "total_s"}
    assert len(data["jobs"]) == 8 and [job["n"] for job in data["jobs"]] == list(range(8))
    first = data["jobs"][0]
    assert first["values"] == [0, 0, 1] and first["measures"]["decode_s"] == 0.25 and first["seconds"] == 1.0
    assert first["rerun"] == f"videosweep rerun {shlex.quote(str(out_root.resolve()))} {first['id']}"
    assert "'\"'\"'" in first["rerun"]  # the quote in "my out's root", quoted for a shell
    common = dict(data["common"])
    assert common["torch_version"] == "2.13.0" and common["model"] == "tiny-svd" and "prompt" not in common
    assert dict(first["record"])["prompt"] == PROMPTS[0]  # varies: per job


def test_earlier_attempts_and_reruns_are_listed_with_their_videos(out_root: Path):
    jobs = {job["id"]: job for job in page_json((out_root / "report.html").read_text())["jobs"]}
    retried = jobs[job_id_of(*RETRIED)]
    assert retried["attempt"] == 2 and retried["status"] == "ok"
    (earlier,) = retried["others"]
    assert (earlier["where"], earlier["attempt"], earlier["status"], earlier["video"]) == ("this root", 1, "failed", None)
    assert earlier["error"] == "OutOfMemoryError: first try"
    (rerun,) = jobs[job_id_of(*RERUN)]["others"]
    assert rerun["where"] == "reruns/" and rerun["run"] == "run-rerun" and rerun["total_s"] == 9.5
    assert rerun["video"] == f"reruns/videos/{job_id_of(*RERUN)}.mp4"


def test_posters_are_first_frames_written_once_and_again_when_the_video_changes(tmp_path: Path):
    root = sweep_root(tmp_path)
    job_id = job_id_of(60, 43, PROMPTS[1])
    poster = root / "posters" / f"{job_id}.jpg"
    with Image.open(poster) as image:
        assert image.size == (32, 24) and image.format == "JPEG"
    assert len(list((root / "posters").iterdir())) == 7  # every ok job; the failed one has none
    written = poster.stat().st_mtime_ns
    write_report(root)
    assert poster.stat().st_mtime_ns == written  # reused
    video = root / "videos" / f"{job_id}.mp4"
    write_mp4(clip(8, 24, 32, 250), 8, video)
    os.utime(video, ns=(written + 10**9, written + 10**9))
    write_report(root)
    with Image.open(poster) as image:
        assert np.asarray(image)[0, -1].mean() > 200  # the new video's bright first frame
    (root / "videos" / f"{job_id_of(180, 43, PROMPTS[0])}.mp4").write_bytes(b"not a video")
    data = page_json(write_report(root).read_text())  # a video ffmpeg cannot read: no new poster, no error
    assert not [path for path in root.rglob(".*")]
    assert len(data["jobs"]) == 8


def test_the_manifest_is_kept_as_written_and_a_changed_one_is_said(tmp_path: Path):
    root = sweep_root(tmp_path)
    (manifest,) = page_json((root / "report.html").read_text())["manifests"]
    assert manifest["text"] == MANIFEST_TEXT.rstrip("\n") and (root / manifest["file"]).read_text() == MANIFEST_TEXT
    (tmp_path / "demo.yaml").write_text("edited after the run\n")
    (root / manifest["file"]).unlink()
    (manifest,) = page_json(write_report(root).read_text())["manifests"]
    assert "text" not in manifest and "changed or is gone" in manifest["note"]


def test_a_root_without_results_or_grids_gets_a_page(tmp_path: Path):
    page = write_report(tmp_path).read_text()
    assert "No grids in this output root." in page and "0: 0 ok, 0 failed, 0 skipped" in page
    data = page_json(page)
    assert data["jobs"] == [] and data["axes"] == [] and data["manifests"] == []


def test_videosweep_grid_refreshes_the_page_with_its_new_grid(tmp_path: Path):
    from videosweep.flows.cli import app

    root = sweep_root(tmp_path)
    result = CliRunner().invoke(app, ["grid", str(root), "--x", "seed", "--y", "motion_bucket_id", "--z", "prompt"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == str(root / "report.html")
    page = (root / "report.html").read_text()
    new = sorted(path.stem for path in (root / "grids").glob("grid-x=seed*.json"))
    assert len(new) == 2 and all(f'data-name="{name}"' in page for name in new)
