"""Sweep grids from a results table: cell order, labels, fitting, empty cells, collisions, size cap, CLI.

The tables are synthetic: solid-colour clips written with write_mp4 and records written with
write_record, so a cell's colour says which job it shows. The demo manifest end to end is in test_run.py.
"""

import hashlib
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from videosweep.tasks.grid import draw_grids
from videosweep.tasks.results import SCHEMA, write_record
from videosweep.tasks.video import read_mp4, write_mp4

T0 = datetime(2025, 1, 1, tzinfo=timezone.utc)


def color_of(index: int) -> tuple[int, int, int]:
    """Distinct, saturated colours far apart from one another and from the grid's greys."""
    palette = [
        (230, 40, 40),
        (40, 200, 40),
        (40, 60, 230),
        (230, 220, 40),
        (220, 40, 220),
        (40, 210, 220),
        (250, 140, 20),
        (140, 60, 20),
        (120, 250, 160),
        (130, 20, 160),
        (250, 170, 200),
        (20, 110, 90),
    ]
    return palette[index]


def add_job(
    out: Path,
    job_id: str,
    sweep: dict,
    *,
    status: str = "ok",
    color=(200, 0, 0),
    frames: int = 4,
    size: tuple[int, int] = (48, 32),
    fps: int = 8,
    attempt: int = 1,
    finished: datetime = T0,
) -> None:
    """One job's record (and, if ok, its solid-colour clip), as render_job writes them."""
    params = {
        "height": size[1],
        "width": size[0],
        "num_frames": frames,
        "fps": fps,
        "motion_bucket_id": 127,
        "noise_aug_strength": 0.02,
        "image": "/somewhere/inputs/rocket.png",
    }
    params.update({key: value for key, value in sweep.items() if key != "seed"})
    record = {
        "job_id": job_id,
        "status": status,
        "attempt": attempt,
        "started_at": finished,
        "finished_at": finished,
        "sweep_json": json.dumps(sweep, sort_keys=True),
        "params_json": json.dumps(params, sort_keys=True),
        "model": "tiny-svd",
        "seed": sweep.get("seed", 42),
        **{key: value for key, value in params.items() if key in SCHEMA.names},
    }
    if status == "ok":
        clip = np.empty((frames, size[1], size[0], 3), dtype=np.uint8)
        clip[:] = color
        height, width = write_mp4(clip, fps, out / "videos" / f"{job_id}.mp4")
        record.update(
            video_path=f"videos/{job_id}.mp4",
            video_frames=frames,
            video_width=width,
            video_height=height,
            video_fps=float(fps),
        )
    else:
        record.update(error_type="RuntimeError", error="boom")
    write_record(out, record)


def sweep_3x2(out: Path, seeds=(42, 43), **job) -> dict[tuple, tuple]:
    """motion_bucket_id 3 values x noise_aug_strength 2 values x seeds; returns {(motion, noise, seed): colour}."""
    colors = {}
    for index, (seed, noise, motion) in enumerate(
        (s, n, m)
        for s in seeds
        for n in (0.1, 0.02)
        for m in (180, 60, 120)  # written out of order on purpose
    ):
        colors[(motion, noise, seed)] = color_of(index)
        add_job(
            out,
            f"job-{motion}-{noise}-{seed}",
            {"motion_bucket_id": motion, "noise_aug_strength": noise, "seed": seed},
            color=color_of(index),
            **job,
        )
    return colors


def centre(frame: np.ndarray, box) -> np.ndarray:
    left, top, width, height = box
    return frame[top + height // 2, left + width // 2].astype(int)


def assert_color(frame: np.ndarray, box, color) -> None:
    got = centre(frame, box)
    assert np.abs(got - np.array(color)).max() < 24, f"cell {box}: {got.tolist()} is not {color}"


def sidecar(grid) -> dict:
    return json.loads(grid.sidecar.read_text())


def test_3x2_sweep_with_two_seeds_gives_one_grid_per_seed_in_cell_order(tmp_path: Path):
    colors = sweep_3x2(tmp_path)
    grids = draw_grids(tmp_path, "motion_bucket_id", "noise_aug_strength", "seed")
    assert [grid.name for grid in grids] == [
        "grid-x=motion_bucket_id-y=noise_aug_strength-seed=42",
        "grid-x=motion_bucket_id-y=noise_aug_strength-seed=43",
    ]
    for grid, seed in zip(grids, (42, 43)):
        meta = sidecar(grid)
        assert (meta["rows"], meta["cols"], meta["z"], meta["z_value"]) == (2, 3, "seed", seed)
        assert meta["x_values"] == [60, 120, 180] and meta["y_values"] == [0.02, 0.1]  # sorted numerically
        assert meta["fixed"]["seed"] == seed and meta["fixed"]["model"] == "tiny-svd"
        assert "motion_bucket_id" not in meta["fixed"] and meta["title"].startswith(f"seed={seed} · model=tiny-svd")
        assert meta["mp4"] == f"grids/{grid.name}.mp4" and meta["preview"] == f"grids/{grid.name}.webp"
        frames, fps = read_mp4(tmp_path / meta["mp4"])
        assert frames.shape == (4, meta["height"], meta["width"], 3) and fps == 8 == meta["fps"]
        for cell in meta["cells"]:
            assert cell["status"] == "ok"
            assert (cell["x"], cell["y"]) == (meta["x_values"][cell["col"]], meta["y_values"][cell["row"]])
            assert cell["job_id"] == f"job-{cell['x']}-{cell['y']}-{seed}"
            for frame in (frames[0], frames[-1]):
                assert_color(frame, cell["box"], colors[(cell["x"], cell["y"], seed)])
        with Image.open(tmp_path / meta["preview"]) as preview:  # its frames are all alike here: see the hold test
            assert preview.is_animated is False and preview.size[0] <= 960 and preview.size[1] <= 540
            assert abs(preview.size[0] / preview.size[1] - meta["width"] / meta["height"]) < 0.01
    assert not [path for path in (tmp_path / "grids").iterdir() if path.name.startswith(".")]


def test_labels_are_drawn_in_the_title_axis_bands_and_row_column(tmp_path: Path):
    sweep_3x2(tmp_path, seeds=(42,))
    (grid,) = draw_grids(tmp_path, "motion_bucket_id", "noise_aug_strength")
    frame = read_mp4(tmp_path / "grids" / f"{grid.name}.mp4")[0][0]
    left, top = grid.cells[0].box[:2]
    bands = {
        "title": frame[: top // 3],
        "column labels": frame[top // 2 : top - 2, left:],
        "row labels": frame[top:, : left - 2],
    }
    for where, band in bands.items():  # light text on the dark background
        assert (band.max(axis=-1) > 120).sum() > 20, f"nothing drawn in the {where}"
        assert (band.max(axis=-1) < 40).mean() > 0.5, f"the {where} is not a label band"


def test_frame_count_is_the_longest_clip_and_shorter_ones_hold_or_loop(tmp_path: Path):
    add_job(tmp_path, "short", {"motion_bucket_id": 60}, color=color_of(0), frames=3)
    add_job(tmp_path, "long", {"motion_bucket_id": 120}, color=color_of(1), frames=9)
    # the short clip: 3 frames whose colours tell them apart
    clip = np.stack([np.full((32, 48, 3), color_of(i), np.uint8) for i in (2, 3, 4)])
    write_mp4(clip, 8, tmp_path / "videos" / "short.mp4")
    (held,) = draw_grids(tmp_path, "motion_bucket_id", fit="hold")
    frames = read_mp4(held.mp4)[0]
    assert len(frames) == held.frames == 9 and held.y_values == [] and sidecar(held)["rows"] == 1
    assert_color(frames[0], held.cells[0].box, color_of(2))
    assert_color(frames[8], held.cells[0].box, color_of(4))  # held its last frame
    assert_color(frames[8], held.cells[1].box, color_of(1))
    with Image.open(held.preview) as preview:
        assert preview.is_animated and preview.size == (held.width, held.height)
    (looped,) = draw_grids(tmp_path, "motion_bucket_id", fit="loop")
    frames = read_mp4(looped.mp4)[0]
    for index, expected in ((3, 2), (4, 3), (8, 4)):
        assert_color(frames[index], looped.cells[0].box, color_of(expected))


def test_gif_preview_alone(tmp_path: Path):
    add_job(tmp_path, "a", {"motion_bucket_id": 60}, color=color_of(0))
    add_job(tmp_path, "b", {"motion_bucket_id": 120}, color=color_of(1))
    (grid,) = draw_grids(tmp_path, "motion_bucket_id", formats=("gif",))
    assert grid.mp4 is None and grid.preview == tmp_path / "grids" / f"{grid.name}.gif"
    assert sorted(p.suffix for p in (tmp_path / "grids").iterdir()) == [".gif", ".json"]
    with Image.open(grid.preview) as preview:
        pixel = np.asarray(preview.convert("RGB"))
    left, top, width, height = grid.cells[1].box
    scale = preview.size[0] / grid.width
    got = pixel[round((top + height / 2) * scale), round((left + width / 2) * scale)].astype(int)
    assert np.abs(got - color_of(1)).max() < 24
    assert sidecar(grid)["mp4"] is None


def test_mixed_sizes_and_frame_rates_are_letterboxed_and_resampled_by_time(tmp_path: Path):
    add_job(tmp_path, "wide", {"motion_bucket_id": 60}, color=color_of(0), size=(64, 32), fps=8, frames=8)
    add_job(tmp_path, "tall", {"motion_bucket_id": 120}, color=color_of(1), size=(32, 64), fps=8, frames=8)
    add_job(tmp_path, "slow", {"motion_bucket_id": 180}, color=color_of(2), size=(64, 32), fps=4, frames=4)
    (grid,) = draw_grids(tmp_path, "motion_bucket_id")
    assert grid.fps == 8 and grid.frames == 8  # the slow clip lasts as long at 8 fps
    frames = read_mp4(grid.mp4)[0]
    wide, tall, slow = (cell.box for cell in grid.cells)
    assert wide[2:] == tall[2:] == slow[2:] and wide[2] == wide[3]  # one square cell holds both shapes
    for index in (0, 7):
        assert_color(frames[index], tall, color_of(1))
        assert_color(frames[index], slow, color_of(2))
        left, top, width, height = tall
        assert frames[index, top + height // 2, left + 2].max() < 30  # letterbox bars beside the tall clip
        left, top, width, height = wide
        assert frames[index, top + 2, left + width // 2].max() < 30  # and above the wide one


def test_failed_and_missing_jobs_are_labelled_empty_cells(tmp_path: Path):
    colors = sweep_3x2(tmp_path, seeds=(42,))
    (tmp_path / "results").joinpath(
        next(p.name for p in (tmp_path / "results").iterdir() if "job-120-0.1-42" in p.name)
    ).unlink()  # 120 x 0.1: no record at all
    add_job(
        tmp_path,
        "job-60-0.1-42",
        {"motion_bucket_id": 60, "noise_aug_strength": 0.1, "seed": 42},
        status="failed",
        attempt=2,
        finished=T0 + timedelta(hours=1),
    )  # a later attempt failed
    (grid,) = draw_grids(tmp_path, "motion_bucket_id", "noise_aug_strength")
    frame = read_mp4(grid.mp4)[0][-1]
    status = {(cell.x, cell.y): cell for cell in grid.cells}
    assert status[(60, 0.1)].status == "failed" and status[(60, 0.1)].job_id == "job-60-0.1-42"
    assert status[(120, 0.1)].status == "missing" and status[(120, 0.1)].job_id is None
    for cell in grid.cells:
        left, top, width, height = cell.box
        inside = frame[top + 2 : top + height - 2, left + 2 : left + width - 2].astype(int)
        if cell.status == "ok":
            assert_color(frame, cell.box, colors[(cell.x, cell.y, 42)])
        else:  # grey, with its status written across the middle
            assert inside.std() > 5 and np.abs(inside[2, 2] - 48).max() < 10


def test_records_colliding_on_a_cell_make_one_grid_per_remaining_value(tmp_path: Path):
    sweep_3x2(tmp_path)  # two seeds, and no axis for seed
    grids = draw_grids(tmp_path, "motion_bucket_id", "noise_aug_strength")
    assert [(grid.name, grid.group) for grid in grids] == [
        ("grid-x=motion_bucket_id-y=noise_aug_strength-seed=42", {"seed": 42}),
        ("grid-x=motion_bucket_id-y=noise_aug_strength-seed=43", {"seed": 43}),
    ]
    # y collapsed onto x: the noise values separate the records now
    grids = draw_grids(tmp_path, "motion_bucket_id", where="seed == 43")
    assert [grid.group for grid in grids] == [{"noise_aug_strength": 0.02}, {"noise_aug_strength": 0.1}]
    digest = hashlib.sha256(b"seed == 43").hexdigest()[:8]  # a filtered grid does not replace the whole one
    assert grids[0].name == f"grid-x=motion_bucket_id-noise_aug_strength=0.02-where={digest}"
    assert all(grid.fixed["seed"] == 43 for grid in grids)


def test_records_identical_in_every_parameter_are_refused(tmp_path: Path):
    add_job(tmp_path, "one", {"motion_bucket_id": 60})
    add_job(tmp_path, "two", {"motion_bucket_id": 60})
    with pytest.raises(ValueError, match="one and two have the same parameters"):
        draw_grids(tmp_path, "motion_bucket_id")


def test_the_size_cap_shrinks_cells(tmp_path: Path):
    for index, (motion, noise) in enumerate((m, n / 10) for m in range(6) for n in range(6)):
        add_job(
            tmp_path,
            f"j{index}",
            {"motion_bucket_id": motion, "noise_aug_strength": noise},
            color=color_of(index % 12),
            size=(256, 144),
            frames=2,
        )
    (grid,) = draw_grids(tmp_path, "motion_bucket_id", "noise_aug_strength", max_width=640, max_height=360)
    frames = read_mp4(grid.mp4)[0]
    assert frames.shape[1:3] == (grid.height, grid.width) and grid.width <= 640 and grid.height <= 360
    box = grid.cells[0].box
    assert box[2] < 256 and abs(box[2] / box[3] - 16 / 9) < 0.1
    assert_color(frames[0], grid.cells[7].box, color_of(7 % 12))
    with pytest.raises(ValueError, match="does not fit in 100x60"):
        draw_grids(tmp_path, "motion_bucket_id", "noise_aug_strength", max_width=100, max_height=60)


def test_unknown_parameters_are_named_with_the_ones_that_vary(tmp_path: Path):
    sweep_3x2(tmp_path, seeds=(42,))
    varying = "parameters that vary: motion_bucket_id, noise_aug_strength$"
    with pytest.raises(ValueError, match="unknown parameter 'motion_bucket' for x; " + varying):
        draw_grids(tmp_path, "motion_bucket")
    with pytest.raises(ValueError, match="unknown parameter 'sed' for z"):
        draw_grids(tmp_path, "motion_bucket_id", z="sed")
    with pytest.raises(ValueError, match="where 'sed == 42': unknown parameter 'sed'; " + varying):
        draw_grids(tmp_path, "motion_bucket_id", where="sed == 42")
    with pytest.raises(ValueError, match="match where"):
        draw_grids(tmp_path, "motion_bucket_id", where="seed == 7")
    with pytest.raises(ValueError, match=r"where 'seed ==' is not a pandas query over this table \(SyntaxError"):
        draw_grids(tmp_path, "motion_bucket_id", where="seed ==")
    with pytest.raises(ValueError, match="one parameter on two axes"):
        draw_grids(tmp_path, "seed", "seed")
    with pytest.raises(ValueError, match="no results in"):
        draw_grids(tmp_path / "elsewhere", "seed")


def test_job_ids_restrict_to_a_run(tmp_path: Path):
    sweep_3x2(tmp_path, seeds=(42,))
    add_job(tmp_path, "other-run", {"motion_bucket_id": 240, "noise_aug_strength": 0.1, "seed": 42})
    (grid,) = draw_grids(
        tmp_path,
        "motion_bucket_id",
        "noise_aug_strength",
        job_ids=[f"job-{m}-{n}-42" for m in (60, 120, 180) for n in (0.02, 0.1)],
    )
    assert grid.x_values == [60, 120, 180]


def test_cli_draws_grids_and_refuses_bad_input_plainly(tmp_path: Path):
    from videosweep.flows.cli import app

    sweep_3x2(tmp_path)
    runner = CliRunner()
    result = runner.invoke(
        app,
        ["grid", str(tmp_path), "--x", "motion_bucket_id", "--y", "noise_aug_strength", "--z", "seed", "--fit", "loop"],
    )
    assert result.exit_code == 0, result.output
    written = sorted(Path(line) for line in result.output.split())
    assert written == sorted([*(tmp_path / "grids").iterdir(), tmp_path / "report.html"])  # the page refreshed
    assert {p.suffix for p in written} == {".mp4", ".webp", ".json", ".html"} and len(written) == 7
    result = runner.invoke(app, ["grid", str(tmp_path), "--x", "motion"])
    assert result.exit_code == 2 and "unknown parameter 'motion' for x" in result.output
    assert "Traceback" not in result.output
    result = runner.invoke(app, ["grid", str(tmp_path / "nothing"), "--x", "seed"])
    assert result.exit_code == 2 and "no results in" in result.output


def test_a_parameter_zipped_with_an_axis_is_shown_with_its_values(tmp_path: Path):
    """min_guidance_scale moves with max_guidance_scale (a zip): under each column, in the title, never 'fixed'."""
    colors = {}
    pairs = [(3.0, 1.0), (2.0, 0.5), (4.0, 1.5)]  # (max, min), written out of order
    for index, ((top, bottom), noise) in enumerate((pair, noise) for pair in pairs for noise in (0.02, 0.1)):
        sweep = {"max_guidance_scale": top, "min_guidance_scale": bottom, "noise_aug_strength": noise}
        add_job(tmp_path, f"j{index}", sweep, color=color_of(index))
        colors[(top, noise)] = color_of(index)
    (by_column,) = draw_grids(tmp_path, "max_guidance_scale", "noise_aug_strength", formats=("mp4",))
    meta = sidecar(by_column)
    assert meta["x_values"] == [2.0, 3.0, 4.0] and meta["x_partners"] == {"min_guidance_scale": [0.5, 1.0, 1.5]}
    assert meta["x_labels"] == [
        "max_guidance_scale=2, min_guidance_scale=0.5",
        "max_guidance_scale=3, min_guidance_scale=1",
        "max_guidance_scale=4, min_guidance_scale=1.5",
    ]
    assert meta["y_labels"] == ["noise_aug_strength=0.02", "noise_aug_strength=0.1"] and meta["y_partners"] == {}
    assert "min_guidance_scale" not in meta["fixed"] and meta["per_cell"] == []
    assert meta["title"].startswith("min_guidance_scale moves with max_guidance_scale · model=tiny-svd")
    cells = {(cell["x"], cell["params"]["min_guidance_scale"]) for cell in meta["cells"]}
    assert cells == {(2.0, 0.5), (3.0, 1.0), (4.0, 1.5)}

    # on y: beside each row's value
    (by_row,) = draw_grids(tmp_path, "noise_aug_strength", "max_guidance_scale", formats=("mp4",))
    meta = sidecar(by_row)
    assert meta["y_partners"] == {"min_guidance_scale": [0.5, 1.0, 1.5]} and meta["x_partners"] == {}
    assert meta["y_labels"][0] == "max_guidance_scale=2, min_guidance_scale=0.5"
    assert "min_guidance_scale moves with max_guidance_scale" in meta["title"]
    frame = read_mp4(by_row.mp4)[0][0]
    for cell in meta["cells"]:  # the taller row labels did not move a video out of its cell
        assert_color(frame, cell["box"], colors[(cell["y"], cell["x"])])


def test_a_parameter_that_follows_neither_axis_is_named_per_cell(tmp_path: Path):
    for index, (a, b, eta) in enumerate([(60, 0.02, 0.0), (120, 0.02, 1.0), (60, 0.1, 1.0), (120, 0.1, 0.0)]):
        add_job(tmp_path, f"j{index}", {"motion_bucket_id": a, "noise_aug_strength": b, "eta": eta})
    (grid,) = draw_grids(tmp_path, "motion_bucket_id", "noise_aug_strength", formats=("mp4",))
    meta = sidecar(grid)
    assert meta["per_cell"] == ["eta"] and "eta" not in meta["fixed"] and "eta varies per cell" in meta["title"]
    assert {(cell["x"], cell["y"]): cell["params"] for cell in meta["cells"]}[(120, 0.02)] == {"eta": 1.0}


def test_unset_values_say_default_and_are_not_listed_as_fixed(tmp_path: Path):
    """A parameter left to the pipeline's default is never drawn as ``name=``: "default" where it tells grids,
    rows or columns apart, left out of the title (and listed under ``defaults``) where it is the same throughout."""
    for index, (motion, chunk) in enumerate((m, c) for m in (60, 120) for c in (None, 4)):
        add_job(tmp_path, f"j{index}", {"motion_bucket_id": motion, "decode_chunk_size": chunk, "fps_id": None})
    set_chunk, unset_chunk = (sidecar(grid) for grid in draw_grids(
        tmp_path, "motion_bucket_id", z="decode_chunk_size", formats=("mp4",)
    ))
    assert set_chunk["name"] == "grid-x=motion_bucket_id-decode_chunk_size=4"
    assert unset_chunk["name"] == "grid-x=motion_bucket_id-decode_chunk_size=default"
    assert unset_chunk["title"].startswith("decode_chunk_size=default · model=tiny-svd")
    assert (set_chunk["fixed"]["decode_chunk_size"], set_chunk["defaults"]) == (4, ["fps_id"])
    assert "decode_chunk_size" not in unset_chunk["fixed"]
    assert unset_chunk["defaults"] == ["decode_chunk_size", "fps_id"]
    for meta in (set_chunk, unset_chunk):
        assert "fps_id" not in meta["fixed"] and "fps_id" not in meta["title"]
        assert not [item for item in meta["title"].split(" · ") if item.endswith("=")]
    (by_chunk,) = draw_grids(tmp_path, "decode_chunk_size", "motion_bucket_id", formats=("mp4",))
    assert sidecar(by_chunk)["x_labels"] == ["decode_chunk_size=4", "decode_chunk_size=default"]
