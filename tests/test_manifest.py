"""Manifest -> job table: expansion, CSV/Parquet tables, validation messages, job ids, grid axes.

Most manifests here name ``svd-xt``, a real hub id: validation resolves it without loading or
downloading weights. One test uses ``tiny-svd``, which builds a random-weight checkpoint under
``$VIDEOSWEEP_HOME`` the first time.
"""

import itertools
import re
import shutil
import textwrap
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import yaml
from PIL import Image

from videosweep.tasks.manifest import ManifestError, load_manifest

from .conftest import ROCKET

IMAGE = "inputs/rocket.png"  # relative to the manifest's folder
FAKE_IMAGE = "inputs/fake.png"  # a .png holding text


# -- helpers ---------------------------------------------------------------------------------------


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A manifest folder with inputs/rocket.png and inputs/fake.png (text bytes, not an image)."""
    (tmp_path / "inputs").mkdir()
    shutil.copy(ROCKET, tmp_path / IMAGE)
    (tmp_path / FAKE_IMAGE).write_text("not a png, only text\n")
    return tmp_path


def write_yaml(folder: Path, doc: str | dict, name: str = "manifest.yaml") -> Path:
    """Write a YAML manifest: plain text (dedented) as written by a person, or a dict dumped in its key order."""
    path = folder / name
    path.write_text(textwrap.dedent(doc) if isinstance(doc, str) else yaml.safe_dump(doc, sort_keys=False))
    return path


def write_table(folder: Path, records: list[dict], suffix: str) -> Path:
    """Write a CSV or Parquet manifest; a None cell becomes an empty cell (NaN in a numeric column)."""
    path = folder / f"manifest{suffix}"
    frame = pd.DataFrame(records)
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return path


def load(path: Path):
    return load_manifest(path, "cpu")


def load_error(path: Path) -> ManifestError:
    with pytest.raises(ManifestError) as info:
        load(path)
    return info.value


def line_of(error: ManifestError, fragment: str) -> str:
    """The one line of the error's text that contains ``fragment``."""
    lines = [line for line in str(error).splitlines() if fragment in line]
    assert len(lines) == 1, f"{fragment!r} in {len(lines)} lines of:\n{error}"
    return lines[0]


def single_job_doc(**values) -> dict:
    """One job of svd-xt on the rocket image, with ``values`` on top."""
    return {"defaults": {"model": "svd-xt", "image": IMAGE, "seed": 42, **values}}


def single_job_id(folder: Path, doc: dict | str, name: str = "manifest.yaml") -> str:
    (job,) = load(write_yaml(folder, doc, name)).jobs
    return job.job_id


# -- 1. YAML expansion: defaults x rows x sweep x zip x seeds ---------------------------------------

EXPANSION = """\
    defaults:
      model: svd-xt
      image: inputs/rocket.png
      num_inference_steps: 10
      fps: 7
    rows:
      - {num_inference_steps: 20}
      - {fps: 12}
    sweep:
      motion_bucket_id: [60, 120, 180]
      noise_aug_strength: [0.02, 0.1]
    zip:
      min_guidance_scale: [1.0, 2.0]
      max_guidance_scale: [3.0, 4.0]
    seeds: [42, 43]
"""


def test_expansion_is_the_product_of_rows_sweep_zip_and_seeds(folder):
    jobs = load(write_yaml(folder, EXPANSION)).jobs

    assert len(jobs) == 2 * (3 * 2) * 2 * 2 == 48
    assert [job.index for job in jobs] == list(range(48))
    assert [job.origin for job in jobs] == ["rows[0]"] * 24 + ["rows[1]"] * 24
    assert len({job.job_id for job in jobs}) == 48

    combos = {
        (
            job.origin,
            job.coords["motion_bucket_id"],
            job.coords["noise_aug_strength"],
            (job.coords["min_guidance_scale"], job.coords["max_guidance_scale"]),
            job.seed,
        )
        for job in jobs
    }
    # zip pairs its lists element-wise: (1.0, 3.0) and (2.0, 4.0), never (1.0, 4.0)
    expected = set(itertools.product(["rows[0]", "rows[1]"], [60, 120, 180], [0.02, 0.1], [(1.0, 3.0), (2.0, 4.0)], [42, 43]))
    assert combos == expected


def test_coords_hold_the_swept_values_and_params_follow_them(folder):
    jobs = load(write_yaml(folder, EXPANSION)).jobs

    for job in jobs:
        assert list(job.coords) == [
            "motion_bucket_id",
            "noise_aug_strength",
            "min_guidance_scale",
            "max_guidance_scale",
            "seed",
        ]
        assert job.coords["seed"] == job.seed
        for key, value in job.coords.items():
            if key != "seed":
                assert job.params[key] == value
    assert jobs[0].coords == {
        "motion_bucket_id": 60,
        "noise_aug_strength": 0.02,
        "min_guidance_scale": 1.0,
        "max_guidance_scale": 3.0,
        "seed": 42,
    }


def test_row_values_override_defaults(folder):
    jobs = load(write_yaml(folder, EXPANSION)).jobs

    by_origin = {origin: [job.params for job in jobs if job.origin == origin] for origin in ("rows[0]", "rows[1]")}
    assert {(p["num_inference_steps"], p["fps"]) for p in by_origin["rows[0]"]} == {(20, 7)}
    assert {(p["num_inference_steps"], p["fps"]) for p in by_origin["rows[1]"]} == {(10, 12)}
    # a key nobody sets keeps the model's own default
    assert {p["height"] for p in by_origin["rows[0]"] + by_origin["rows[1]"]} == {576}


def test_without_rows_the_defaults_are_the_one_row(folder):
    (job,) = load(write_yaml(folder, single_job_doc(fps=9))).jobs

    assert job.origin == "defaults"
    assert job.coords == {}
    assert (job.seed, job.params["fps"], job.model, job.family, job.dtype) == (42, 9, "svd-xt", "svd", "float32")


@pytest.mark.parametrize(
    ("section", "key", "spec", "expected"),
    [
        ("sweep", "motion_bucket_id", {"from": 60, "to": 180, "step": 60}, [60, 120, 180]),
        ("sweep", "noise_aug_strength", {"from": 0.02, "to": 0.1, "num": 3}, [0.02, 0.06, 0.1]),
        ("sweep", "noise_aug_strength", {"from": 0.0, "to": 0.3, "step": 0.1}, [0.0, 0.1, 0.2, 0.3]),
        ("sweep", "motion_bucket_id", {"from": 0, "to": 10, "num": 3}, [0, 5, 10]),
        ("zip", "fps", {"from": 6, "to": 8, "step": 1}, [6, 7, 8]),
        ("seeds", "seed", {"from": 42, "count": 3}, [42, 43, 44]),
    ],
)
def test_range_forms_expand_with_both_ends(folder, section, key, spec, expected):
    doc = {"defaults": {"model": "svd-xt", "image": IMAGE}}
    if section == "seeds":
        doc["seeds"] = spec
    else:
        doc[section] = {key: spec}
        doc["seeds"] = [1]
    jobs = load(write_yaml(folder, doc)).jobs

    values = [job.coords[key] for job in jobs]
    assert values == expected
    assert [type(value) for value in values] == [type(value) for value in expected]  # ints stay ints


@pytest.mark.parametrize(
    ("section", "spec", "where"),
    [
        ("sweep", {"fps": []}, "sweep.fps"),
        ("sweep", {"fps": 7}, "sweep.fps"),
        ("sweep", {"fps": {"from": 10, "to": 1, "step": 1}}, "sweep.fps"),
        ("sweep", {"fps": {"from": 1, "to": 10, "step": 0}}, "sweep.fps"),
        ("sweep", {"fps": {"from": 1, "count": 3}}, "sweep.fps"),  # count is for seeds only
        ("seeds", {"from": 1.5, "count": 2}, "seeds"),
        ("seeds", {"from": 1, "to": 3}, "seeds"),
    ],
)
def test_malformed_value_lists_are_reported(folder, section, spec, where):
    doc = {"defaults": {"model": "svd-xt", "image": IMAGE}, section: spec}
    if section != "seeds":
        doc["seeds"] = [1]
    error = load_error(write_yaml(folder, doc))

    (problem,) = error.problems
    assert problem.where == where
    assert "must be a non-empty list, {from: A, to: B, step: S} or {from: A, to: B, num: N}" in problem.message
    assert ("{from: A, count: N}" in problem.message) == (section == "seeds")


# -- 2. CSV and Parquet: one job per row -----------------------------------------------------------


@pytest.mark.parametrize(
    ("suffix", "origins"),
    [(".csv", ["line 2", "line 3", "line 4"]), (".parquet", ["row 0", "row 1", "row 2"])],
)
def test_table_is_one_job_per_row_with_model_defaults_for_gaps(folder, monkeypatch, suffix, origins):
    elsewhere = folder / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # relative paths must resolve against the manifest, not the working folder
    records = [
        {"model": "svd-xt", "image": IMAGE, "seed": 1, "motion_bucket_id": 60, "num_frames": None, "dtype": None},
        {"model": "svd-xt", "image": IMAGE, "seed": 2, "motion_bucket_id": None, "num_frames": 14, "dtype": "float16"},
        {"model": "svd-xt", "image": str(ROCKET), "seed": 3, "motion_bucket_id": 200, "num_frames": None, "dtype": None},
    ]
    jobs = load(write_table(folder, records, suffix)).jobs

    assert [job.origin for job in jobs] == origins
    assert [job.coords for job in jobs] == [{}, {}, {}]
    assert [job.seed for job in jobs] == [1, 2, 3]
    # int columns with gaps (floats with NaN in pandas) come back as ints; gaps take the model's defaults
    assert [job.params["motion_bucket_id"] for job in jobs] == [60, 127, 200]
    assert [job.params["num_frames"] for job in jobs] == [None, 14, None]
    assert all(type(job.params["motion_bucket_id"]) is int for job in jobs)
    assert [job.dtype for job in jobs] == ["float32", "float16", "float32"]
    assert [job.params["image"] for job in jobs] == [str((folder / IMAGE).resolve())] * 2 + [str(ROCKET)]
    assert len({job.input_sha256["image"] for job in jobs}) == 1


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_table_row_and_yaml_row_get_the_same_job_id(folder, suffix):
    yaml_id = single_job_id(folder, single_job_doc(motion_bucket_id=60, num_frames=14))
    records = [
        {"model": "svd-xt", "image": IMAGE, "seed": 42, "motion_bucket_id": 60, "num_frames": 14},
        {"model": "svd-xt", "image": IMAGE, "seed": 42, "motion_bucket_id": 61, "num_frames": None},  # gap -> float column
    ]
    table_jobs = load(write_table(folder, records, suffix)).jobs

    assert table_jobs[0].job_id == yaml_id


def test_empty_table_is_an_error(folder):
    path = folder / "manifest.csv"
    path.write_text("model,image,seed\n")

    error = load_error(path)
    assert [problem.message for problem in error.problems] == ["the table has no rows"]


# -- 3. validation: every problem, naming the file, the job, the key -------------------------------

# rows[1] of this manifest expands to jobs 2 and 3, the ones each case below breaks.
BAD_ROW_WHERES = ["job 2 (rows[1], fps=7, seed=42)", "job 3 (rows[1], fps=12, seed=42)"]


def two_row_doc(bad_row: dict) -> dict:
    return {
        "defaults": {"model": "svd-xt", "height": 64, "width": 64},
        "rows": [{"image": IMAGE}, bad_row],
        "sweep": {"fps": [7, 12]},
        "seeds": [42],
    }


@pytest.mark.parametrize(
    ("bad_row", "key", "fragments"),
    [
        pytest.param(
            {"image": IMAGE, "motion_bucket": 200},
            "motion_bucket",
            ["unknown key 'motion_bucket' for svd-xt (family svd)", "did you mean 'motion_bucket_id'?", "allowed: model,"],
            id="unknown-key",
        ),
        pytest.param(
            {"image": IMAGE, "num_inference_steps": "many"},
            "num_inference_steps",
            ["num_inference_steps='many'", "valid integer", "(denoising steps)"],
            id="wrong-type",
        ),
        pytest.param(
            {"image": IMAGE, "motion_bucket_id": 300},
            "motion_bucket_id",
            ["motion_bucket_id=300", "less than or equal to 255"],
            id="out-of-range",
        ),
        pytest.param(
            {"image": IMAGE, "height": 100},
            "height",
            ["height=100", "multiple of 8"],
            id="height-not-multiple-of-8",
        ),
        pytest.param(
            {"image": IMAGE, "dtype": "float64"},
            "dtype",
            ["dtype='float64'", "'float32', 'float16' or 'bfloat16'"],
            id="unknown-dtype",
        ),
        pytest.param(
            {},
            "image",
            ["missing 'image'", "svd-xt is an image-to-video model", "add `image: path/to/image.png`"],
            id="no-image",
        ),
        pytest.param(
            {"image": "inputs/nope.png"},
            "image",
            ["image='inputs/nope.png'", "no such file", "nope.png"],
            id="missing-image-file",
        ),
        pytest.param(
            {"image": FAKE_IMAGE},
            "image",
            ["image='inputs/fake.png'", "not a readable image"],
            id="unreadable-image",
        ),
        pytest.param(
            {"image": IMAGE, "model": "svd-xxl"},
            "model",
            ["unknown model 'svd-xxl' (did you mean 'svd-xt'", "`videosweep models` lists the"],
            id="unknown-model",
        ),
    ],
)
def test_bad_row_is_reported_with_file_job_key_and_message(folder, bad_row, key, fragments):
    path = write_yaml(folder, two_row_doc(bad_row))
    error = load_error(path)

    assert error.path == path
    assert [problem.where for problem in error.problems] == BAD_ROW_WHERES
    assert {problem.key for problem in error.problems} == {key}
    text = str(error)
    assert text.splitlines()[0] == f"{path}: 2 problems, nothing rendered"
    # both jobs of the row share one message line, which names them and the key
    line = line_of(error, fragments[0])
    assert line.startswith(f"  - {BAD_ROW_WHERES[0]}; {BAD_ROW_WHERES[1]}: ")
    assert key in line
    for fragment in fragments:
        assert fragment in line


# (manifest, where, key, fragments) for problems of the manifest's shape rather than of one row's values
STRUCTURE_CASES = {
    "unknown-top-level-key": (
        {**single_job_doc(), "sweeps": {"fps": [7, 8]}},
        "{path}",
        "sweeps",
        ["unknown top-level key 'sweeps'", "did you mean 'sweep'?", "allowed: name, description, defaults"],
    ),
    "zip-lists-of-unequal-length": (
        {**single_job_doc(), "zip": {"min_guidance_scale": [1.0, 2.0], "max_guidance_scale": [3.0]}},
        "zip",
        "zip",
        ["zip lists must have one length", "'min_guidance_scale': 2", "'max_guidance_scale': 1"],
    ),
    "key-swept-and-set-in-row": (
        {**single_job_doc(), "rows": [{}, {"fps": 9}], "sweep": {"fps": [7, 8]}},
        "rows[1]",
        "fps",
        ["'fps' is set in this row and also swept; keep one"],
    ),
    "seed-in-row-and-seeds": (
        {"defaults": {"model": "svd-xt", "image": IMAGE}, "rows": [{"seed": 5}], "seeds": [1, 2]},
        "rows[0]",
        "seed",
        ["'seed' is set in this row and also swept"],
    ),
    "key-in-sweep-and-zip": (
        {**single_job_doc(), "sweep": {"fps": [7, 8]}, "zip": {"fps": [7, 8]}},
        "sweep.fps",
        "fps",
        ["'fps' is in both sweep and zip"],
    ),
    "seed-in-seeds-and-sweep": (
        {"defaults": {"model": "svd-xt", "image": IMAGE}, "sweep": {"seed": [1, 2]}, "seeds": [1, 2]},
        "sweep.seed",
        "seed",
        ["seed is swept both by `seeds:` and by `sweep:`"],
    ),
    "missing-seed": (
        {"defaults": {"model": "svd-xt", "image": IMAGE}},
        "job 0 (defaults)",
        "seed",
        ["missing 'seed'", "`seeds: [...]`"],
    ),
    "missing-model": (
        {"defaults": {"image": IMAGE, "seed": 1}},
        "job 0 (defaults)",
        "model",
        ["missing 'model'", "a short key"],
    ),
    "duplicate-rows": (
        # fps 7 is the default: both rows describe the same video
        {"defaults": {"model": "svd-xt", "image": IMAGE}, "rows": [{"fps": 7}, {}], "seeds": [42]},
        "job 1 (rows[1], seed=42)",
        None,
        ["renders the same video as job 0 (rows[0], seed=42)"],
    ),
    "bad-name": (
        {**single_job_doc(), "name": "my demo/1"},
        "name",
        "name",
        ["name='my demo/1' must be a folder name"],
    ),
}


@pytest.mark.parametrize(("doc", "where", "key", "fragments"), list(STRUCTURE_CASES.values()), ids=list(STRUCTURE_CASES))
def test_bad_manifest_shape_is_reported(folder, doc, where, key, fragments):
    path = write_yaml(folder, doc)
    error = load_error(path)

    (problem,) = error.problems
    assert (problem.where, problem.key) == (where.format(path=path), key)
    for fragment in fragments:
        assert fragment in problem.message
    assert str(error).splitlines() == [f"{path}: 1 problem, nothing rendered", f"  - {problem.where}: {problem.message}"]


def test_all_problems_of_a_manifest_are_reported_at_once(folder):
    doc = {
        "defaults": {"model": "svd-xt", "seed": 7},
        "rows": [
            {"image": IMAGE, "motion_bucket_id": 300},
            {"image": IMAGE},
            {"image": FAKE_IMAGE, "num_inference_steps": "many", "height": 100},
            {"model": "nonesuch", "image": IMAGE},
        ],
    }
    error = load_error(write_yaml(folder, doc))

    assert sorted((problem.where, problem.key) for problem in error.problems) == [
        ("job 0 (rows[0])", "motion_bucket_id"),
        ("job 2 (rows[2])", "height"),
        ("job 2 (rows[2])", "image"),
        ("job 2 (rows[2])", "num_inference_steps"),
        ("job 3 (rows[3])", "model"),
    ]
    text = str(error)
    assert ": 5 problems, nothing rendered" in text.splitlines()[0]
    for fragment in ("motion_bucket_id=300", "height=100", "not a readable image", "num_inference_steps='many'", "'nonesuch'"):
        assert fragment in text


def test_table_problems_name_the_csv_line(folder):
    records = [
        {"model": "svd-xt", "image": IMAGE, "seed": 1, "motion_bucket_id": 60},
        {"model": "svd-xt", "image": IMAGE, "seed": 2, "motion_bucket_id": 300},
        {"model": "svd-xt", "image": "inputs/nope.png", "seed": None, "motion_bucket_id": None},
    ]
    path = write_table(folder, records, ".csv")
    error = load_error(path)

    assert sorted((problem.where, problem.key) for problem in error.problems) == [
        ("job 1 (line 3)", "motion_bucket_id"),
        ("job 2 (line 4)", "image"),
        ("job 2 (line 4)", "seed"),
    ]
    assert "job 1 (line 3): motion_bucket_id=300" in line_of(error, "motion_bucket_id=300")
    assert str(error).startswith(f"{path}: 3 problems")


def test_identical_problems_are_grouped_on_one_line(folder):
    doc = {"defaults": {"model": "svd-xt", "image": IMAGE, "motion_bucket_id": 300}, "seeds": [1, 2, 3, 4, 5]}
    error = load_error(write_yaml(folder, doc))

    assert len(error.problems) == 5
    line = line_of(error, "motion_bucket_id=300")
    assert line.startswith("  - job 0 (defaults, seed=1); job 1 (defaults, seed=2); job 2 (defaults, seed=3); and 2 more: ")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("absent.yaml", None, "no such manifest file"),
        ("manifest.txt", "model: svd-xt\n", "unknown manifest type '.txt'"),
        ("manifest.yaml", "defaults: [unclosed\n", "not valid YAML"),
        ("manifest.yaml", "- just\n- a list\n", "a YAML manifest is a mapping"),
    ],
)
def test_unreadable_manifest_files(folder, name, content, message):
    path = folder / name
    if content is not None:
        path.write_text(content)
    error = load_error(path)

    (problem,) = error.problems
    assert message in problem.message
    assert str(error).startswith(f"{path}: 1 problem")


# -- 4. job ids: stable, and decided by exactly what decides the pixels ----------------------------


def test_job_ids_are_stable_across_loads_and_short_hex(folder):
    path = write_yaml(folder, EXPANSION)
    first, second = load(path).jobs, load(path).jobs

    assert [job.job_id for job in first] == [job.job_id for job in second]
    assert all(re.fullmatch(r"[0-9a-f]{16}", job.job_id) for job in first)


def test_job_ids_do_not_depend_on_key_order(folder):
    doc = yaml.safe_load(textwrap.dedent(EXPANSION))
    reordered = {key: dict(reversed(value.items())) if isinstance(value, dict) else value for key, value in reversed(doc.items())}
    reordered["rows"] = [dict(reversed(row.items())) for row in doc["rows"]]
    assert list(reordered["sweep"]) != list(doc["sweep"])

    def ids_by_coords(path):
        return {(job.origin, frozenset(job.coords.items())): job.job_id for job in load(path).jobs}

    assert ids_by_coords(write_yaml(folder, doc, "a.yaml")) == ids_by_coords(write_yaml(folder, reordered, "b.yaml"))


@pytest.mark.parametrize(
    "change",
    [
        {"motion_bucket_id": 128},
        {"noise_aug_strength": 0.03},
        {"num_frames": 14},
        {"decode_chunk_size": 2},
        {"seed": 43},
        {"dtype": "float16"},
        {"dtype": "bfloat16"},
        {"variant": "fp16"},
        {"model": "svd"},
        {"revision": "0123456789abcdef0123456789abcdef01234567"},
    ],
    ids=lambda change: "-".join(f"{key}={value}" for key, value in change.items()),
)
def test_job_id_changes_with_each_pixel_deciding_value(folder, change):
    base = single_job_id(folder, single_job_doc(), "base.yaml")
    changed = single_job_id(folder, single_job_doc(**change), "changed.yaml")

    assert changed != base


def test_job_id_changes_with_the_generator_device():
    """Checked on the hash itself: a manifest refuses generator_device=cuda without a GPU."""
    from videosweep.tasks.jobs import compute_job_id

    values = dict(family="svd", model_id="m/x", model_revision="r", is_local=False, dtype="float16", variant=None)
    values.update(seed=1, params={"a": 1}, input_sha256={})
    assert compute_job_id(generator_device="cpu", **values) != compute_job_id(generator_device="cuda", **values)


def test_cuda_generator_without_a_gpu_is_refused(folder):
    error = load_error(write_yaml(folder, single_job_doc(generator_device="cuda")))
    assert "generator_device='cuda' needs a CUDA device, not 'cpu'" in line_of(error, "generator_device")


def test_empty_rows_are_refused(folder):
    doc = single_job_doc()
    doc["rows"] = []
    assert line_of(load_error(write_yaml(folder, doc)), "must be a list").startswith("  - rows: rows must be")


def test_one_key_on_two_grid_axes_is_refused(folder):
    doc = single_job_doc()
    doc.update(sweep={"fps": [6, 7]}, grid={"x": "fps", "y": "fps"})
    assert line_of(load_error(write_yaml(folder, doc)), "uses one key on two axes").startswith("  - grid: grid=")


@pytest.mark.parametrize(
    "explicit",
    [
        {"motion_bucket_id": 127},
        {"noise_aug_strength": 0.02},
        {"height": 576, "width": 1024},
        {"num_frames": None},
        {"dtype": "float32"},  # what auto means on the CPU
        {"variant": "none"},  # what auto means in float32
        {"generator_device": "cpu"},
        {"model": "stabilityai/stable-video-diffusion-img2vid-xt", "family": "svd"},  # svd-xt by its hub id
    ],
    ids=lambda explicit: "-".join(f"{key}={value}" for key, value in explicit.items()),
)
def test_job_id_is_the_same_for_a_default_written_or_omitted(folder, explicit):
    omitted = single_job_id(folder, single_job_doc(), "omitted.yaml")
    written = single_job_id(folder, single_job_doc(**explicit), "written.yaml")

    assert written == omitted


def test_job_id_follows_image_content_not_image_path(folder):
    base = single_job_id(folder, single_job_doc(), "base.yaml")

    moved = folder / "elsewhere" / "renamed.png"
    moved.parent.mkdir()
    shutil.copy(ROCKET, moved)
    assert single_job_id(folder, single_job_doc(image="elsewhere/renamed.png"), "moved.yaml") == base
    assert single_job_id(folder, single_job_doc(image=str(moved)), "absolute.yaml") == base

    with Image.open(ROCKET) as image:
        edited = image.convert("RGB")
    pixel = edited.getpixel((0, 0))
    edited.putpixel((0, 0), tuple((channel + 1) % 256 for channel in pixel))
    edited.save(folder / "inputs" / "edited.png")
    assert single_job_id(folder, single_job_doc(image="inputs/edited.png"), "edited.yaml") != base


def test_local_model_is_identified_by_content(folder):
    """tiny-svd is a local folder: its revision is a content hash (building it takes a few seconds once)."""
    (job,) = load(write_yaml(folder, single_job_doc(model="tiny-svd"))).jobs

    assert job.family == "svd"
    assert job.model_revision.startswith("sha256:") and len(job.model_revision) == len("sha256:") + 64
    assert Path(job.model_id).is_absolute() and (Path(job.model_id) / "model_index.json").is_file()
    assert (job.dtype, job.variant) == ("float32", None)
    assert job.job_id != single_job_id(folder, single_job_doc(), "hub.yaml")


# -- 5. grids --------------------------------------------------------------------------------------

GRID_DOC = {
    "defaults": {"model": "svd-xt", "image": IMAGE},
    "sweep": {"motion_bucket_id": [60, 180], "noise_aug_strength": [0.02, 0.1]},
    "seeds": [42, 43],
}


def test_grid_axes_are_kept(folder):
    grid = {"x": "motion_bucket_id", "y": "noise_aug_strength", "z": "seed"}
    manifest = load(write_yaml(folder, {**GRID_DOC, "grid": grid}))

    assert manifest.grids == [grid]
    assert len(manifest.jobs) == 8


def test_grid_axis_that_is_not_swept_names_the_swept_keys(folder):
    error = load_error(write_yaml(folder, {**GRID_DOC, "grid": {"x": "motion_bucket_id", "y": "fps"}}))

    (problem,) = error.problems
    assert (problem.where, problem.key) == ("grid", "y")
    assert problem.message == "y='fps' is not a swept key; swept: motion_bucket_id, noise_aug_strength, seed"


@pytest.mark.parametrize(
    ("grids", "where", "fragment"),
    [
        ({"y": "seed"}, "grid", "must be a mapping with x and optional y, z"),
        ({"x": "seed", "w": "motion_bucket_id"}, "grid", "must be a mapping with x and optional y, z"),
        ([{"x": "seed"}, {"x": "fps"}], "grid[1]", "x='fps' is not a swept key"),
        ({"x": ["seed", "motion_bucket_id"]}, "grid", "is not a swept key"),
    ],
)
def test_malformed_grids_are_reported(folder, grids, where, fragment):
    error = load_error(write_yaml(folder, {**GRID_DOC, "grid": grids}))

    (problem,) = error.problems
    assert problem.where == where
    assert fragment in problem.message


def test_a_check_across_fields_is_reported_not_dropped(folder, monkeypatch):
    """A family's model validator (t0 < t1, say) fails without a field: the row must still be reported."""
    from pydantic import model_validator

    from videosweep.tasks.models import FAMILIES, svd

    class Checked(svd.Params):
        @model_validator(mode="after")
        def _frames_fit_the_chunk(self):
            if self.decode_chunk_size and self.num_frames and self.decode_chunk_size > self.num_frames:
                raise ValueError("decode_chunk_size must not exceed num_frames")
            return self

    monkeypatch.setitem(FAMILIES, "svd", replace(svd.FAMILY, params=Checked))
    error = load_error(write_yaml(folder, single_job_doc(num_frames=4, decode_chunk_size=8)))
    assert line_of(error, "decode_chunk_size must not exceed num_frames").startswith("  - job 0 (defaults): decode")


@pytest.mark.parametrize("model, variant", [("modelscope-1.7b", "fp16"), ("zeroscope-576w", None)])
def test_a_model_key_can_say_its_repo_has_no_fp16_files(folder, model, variant):
    doc = {"defaults": {"model": model, "prompt": "a rocket", "seed": 1}}
    (job,) = load_manifest(write_yaml(folder, doc), "cuda").jobs  # validation only: no GPU needed
    assert (job.dtype, job.variant) == ("float16", variant)


def test_an_image_is_not_a_video_input(folder):
    doc = {"defaults": {"model": "zeroscope-xl", "prompt": "a rocket", "video": IMAGE, "seed": 1}}
    assert "is an image; a video input needs a video file" in line_of(load_error(write_yaml(folder, doc)), "video=")


@pytest.mark.parametrize(
    "model, dtype", [("cogvideox-2b", "float16"), ("cogvideox-5b", "bfloat16"), ("ltx-video", "bfloat16"), ("svd-xt", "float16")]
)
def test_auto_dtype_on_a_gpu_is_the_documented_one(folder, model, dtype):
    doc = {"defaults": {"model": model, "prompt": "a rocket", "seed": 1}}
    if model == "svd-xt":
        doc["defaults"] = {"model": model, "image": IMAGE, "seed": 1}
    (job,) = load_manifest(write_yaml(folder, doc), "cuda").jobs  # validation only: no GPU needed
    assert job.dtype == dtype
    assert load_manifest(write_yaml(folder, doc, "cpu.yaml"), "cpu").jobs[0].dtype == "float32"
