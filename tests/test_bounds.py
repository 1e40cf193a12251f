"""Hostile manifests: each is refused (exit 2, a short message naming the limit or key and the fix, nothing written).

Alias bombs and echoed values, job counts (sweeps, seeds, ranges, tables, rows that take other
rows' videos), file sizes, image and video sizes, run names, files that are not text. Small
:class:`Limits` stand in for real-size cases that would be slow; the alias bomb is real-size,
since refusing it must be cheap. The manifests name ``svd-xt`` (validation reads no weights).
"""

import hashlib
import itertools
import json
import os
import random
import shutil
import struct
import textwrap
import zlib
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from videosweep.flows.cli import app
from videosweep.tasks.errors import InputError
from videosweep.tasks.jobs import JobIdMaker, compute_job_id
from videosweep.tasks.manifest import Limits, ManifestError, load_manifest
from videosweep.tasks.manifest.chains import _pairings, _Sources
from videosweep.tasks.manifest.entries import _Entry
from videosweep.tasks.models import is_local
from videosweep.tasks.pipeline_options import pixel_options

from .conftest import ROCKET, make_video

MiB = 1 << 20
ROW = "model: svd-xt, image: rocket.png"  # a valid row's keys, but for its seed


@pytest.fixture
def folder(tmp_path: Path, monkeypatch) -> Path:
    """The working directory (where outputs/<name> would land) holding rocket.png beside the manifests."""
    shutil.copy(ROCKET, tmp_path / "rocket.png")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(folder: Path, text: str, name: str = "m.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def files(folder: Path) -> set[Path]:
    return set(folder.rglob("*"))


def refused(folder: Path, manifest: Path, *fragments: str, command: str = "validate") -> str:
    """Run ``videosweep COMMAND manifest``: exit 2, a short message holding ``fragments``, no file written; the message."""
    before = files(folder)
    extra = ["--out", str(folder / "out")] if command == "run" else []
    result = CliRunner().invoke(app, [command, str(manifest), "--device", "cpu", *extra])
    assert result.exit_code == 2, result.output
    assert len(result.output) < 3000, result.output[:3000]
    for fragment in fragments:
        assert fragment in result.output, result.output
    assert files(folder) == before  # no outputs/<name>, no --out
    return result.output


def load_error(path: Path, **limits) -> ManifestError:
    with pytest.raises(ManifestError) as caught:
        load_manifest(path, "cpu", Limits(**limits))
    return caught.value


def test_a_manifest_error_is_an_input_error():
    assert issubclass(ManifestError, InputError) and issubclass(ManifestError, ValueError)
    assert Limits().max_jobs == 100_000 and Limits().max_image_pixels == 2**26


# -- 1. alias bombs and echoed values --------------------------------------------------------------


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """``levels`` anchors, each a list of ``width`` aliases of the one before: width**levels values, about 1 KB."""
    lines = ["  a: &a [" + ", ".join(['"lol"'] * width) + "]"]
    for previous, name in itertools.pairwise("abcdefghijklmnop"[:levels]):
        lines.append(f"  {name}: &{name} [" + ", ".join([f"*{previous}"] * width) + "]")
    return "description:\n" + "\n".join(lines) + f"\nname: *{'abcdefghijklmnop'[levels - 1]}\n"


def test_an_alias_bomb_is_refused_at_once(folder):
    bomb = write(folder, alias_bomb() + f"defaults: {{{ROW}, seed: 1}}\n")
    assert bomb.stat().st_size < 1100

    for command in ("validate", "run"):
        refused(folder, bomb, "more than 8,388,608 values once its aliases (*name) are expanded", command=command)


def test_an_alias_bomb_as_a_row_value_is_refused(folder):
    bomb = write(folder, alias_bomb(levels=4).replace("name: *d", f"defaults: {{{ROW}, seed: 1, prompt: *d}}"))

    error = load_error(bomb, max_yaml_values=1000)
    assert "more than 1,000 values once its aliases" in str(error)


def test_a_big_document_without_aliases_is_told_to_split(folder):
    path = write(folder, f"defaults: {{{ROW}}}\nseeds: [{', '.join(map(str, range(100)))}]\n")
    assert Limits().yaml_values() == 8 * MiB  # half the YAML size limit: no file within it reaches that written out

    message = str(load_error(path, max_yaml_values=50))
    assert "holds more than 50 values (the limit); split it into smaller manifests" in message
    assert "alias" not in message


def test_an_alias_of_itself_is_refused(folder):
    path = write(folder, f"description: &loop [1, *loop]\ndefaults: {{{ROW}, seed: 1}}\n")

    refused(folder, path, "nests deeper than 32 levels (or an alias refers to itself)")


def test_aliases_used_as_meant_still_work(folder):
    path = write(
        folder,
        f"""\
        defaults: &base {{{ROW}, seed: 1}}
        rows:
          - {{<<: *base, fps: 8}}
          - <<: *base
            fps: 9
          - {{fps: 10, motion_bucket_id: &motion 90}}
          - {{fps: 11, motion_bucket_id: *motion}}
        """,
    )

    jobs = load_manifest(path, "cpu").jobs
    assert [job.params["fps"] for job in jobs] == [8, 9, 10, 11]
    assert [job.params["motion_bucket_id"] for job in jobs] == [127, 127, 90, 90]


LONG = "x" * 1_000_000
ONE_JOB = {"model": "svd-xt", "image": "rocket.png", "seed": 1}


@pytest.mark.parametrize(
    ("doc", "key"),
    [
        ({"defaults": {**ONE_JOB, "motion_bucket_id": LONG}}, "motion_bucket_id="),
        ({"name": LONG, "defaults": ONE_JOB}, "name="),
        ({"defaults": {**ONE_JOB, LONG: 1}}, "unknown key"),
        ({"defaults": ONE_JOB, "sweep": {LONG: 1}}, "sweep."),
        ({"defaults": {**ONE_JOB, "image": LONG + ".png"}}, "image="),
        ({"defaults": ONE_JOB, "grid": {"x": LONG}}, "x="),
    ],
    ids=["value", "name", "key", "sweep-key", "path", "grid"],
)
def test_a_long_value_is_echoed_shortened(folder, doc, key):
    path = write(folder, yaml.safe_dump(doc, width=2 * len(LONG)))

    output = refused(folder, path, key, "x" * 90 + "…")
    assert "chars)" in output


@pytest.mark.parametrize(("key", "shown"), [("model", "model 'mmmmm"), ("family", "unknown family 'mmmmm")])
def test_a_long_model_or_family_is_echoed_shortened(folder, key, shown):
    path = write(folder, yaml.safe_dump({"defaults": {**ONE_JOB, key: "m" * 3000}}))

    refused(folder, path, shown, "m" * 90 + "…", "(3,000 chars)")


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ({"image": "a\0b.png"}, "image='a\\x00b.png': not a usable path (embedded null byte)"),
        ({"image": "a" * 5000 + ".png"}, "not a readable image (OSError: [Errno 36] File name too long"),
        ({"model": "svd-xt/" + "m" * 300}, "model 'svd-xt/mmm"),
    ],
    ids=["nul-byte", "path-too-long", "model-name-too-long"],
)
def test_a_value_the_file_system_refuses_is_a_problem(folder, values, fragment):
    path = write(folder, yaml.safe_dump({"defaults": {**ONE_JOB, **values}}, width=10_000))

    refused(folder, path, fragment)


def test_an_endless_range_is_a_problem(folder):
    path = write(folder, f"defaults: {{{ROW}, seed: 1}}\nsweep:\n  fps: {{from: 0, to: .inf, step: 1}}\n")

    refused(folder, path, "sweep.fps={'from': 0, 'to': inf, 'step': 1} must be a non-empty list")


def test_many_problems_show_fifty_lines_and_a_count(folder):
    rows = "\n".join(f"  - {{motion_bucket_id: {300 + index}}}" for index in range(200))
    path = write(folder, f"defaults: {{{ROW}, seed: 1}}\nrows:\n{rows}\n")

    lines = str(load_error(path)).splitlines()
    assert lines[0].endswith(": 200 problems, nothing rendered")
    assert all(len(line) < 200 for line in lines)
    assert len(lines) == 1 + 50 + 1
    assert lines[-1] == "  ... and 150 more problems"


# -- 2. job counts, before anything is built ------------------------------------------------------


def test_ten_billion_seeds_are_refused_before_any_is_made(folder):
    path = write(folder, f"defaults: {{{ROW}}}\nseeds: {{from: 0, count: 10000000000}}\n")

    for command in ("validate", "run"):
        refused(folder, path, "expands to 10,000,000,000 jobs", "limit of 100,000", "--max-jobs N", command=command)


def test_a_sweep_past_the_limit_names_its_factors(folder):
    path = write(
        folder,
        f"""\
        defaults: {{{ROW}}}
        rows: [{{fps: 7}}, {{fps: 8}}]
        sweep:
          motion_bucket_id: {{from: 0, to: 99, step: 1}}
          noise_aug_strength: {{from: 0.0, to: 1.0, num: 5}}
        zip: {{min_guidance_scale: [1, 2], max_guidance_scale: [3, 4]}}
        seeds: [1, 2, 3]
        """,
    )

    message = str(load_error(path, max_jobs=5000))
    assert "expands to 6,000 jobs (2 rows x 100 motion_bucket_id x 5 noise_aug_strength x 2 zip positions x 3 seeds)" in message
    assert "more than the limit of 5,000" in message and "--max-jobs N" in message
    assert len(load_manifest(path, "cpu", Limits(max_jobs=6000)).jobs) == 6000


@pytest.mark.parametrize(
    "spec",
    ["{from: 0, to: 1, step: 1.0e-300}", "{from: 0, to: 1, num: 100000000000000000000}", "{from: 0, to: 1.0e+300, step: 1.0e-300}"],
)
def test_a_range_is_counted_from_its_numbers(folder, spec):
    path = write(folder, f"defaults: {{{ROW}, seed: 1}}\nsweep:\n  noise_aug_strength: {spec}\n")

    refused(folder, path, "jobs (1 row x", "more than the limit of 100,000")


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_table_past_the_limit_is_refused(folder, suffix):
    frame = pd.DataFrame({"model": "svd-xt", "image": "rocket.png", "seed": range(12)})
    path = folder / f"table{suffix}"
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)

    message = str(load_error(path, max_jobs=10))
    assert "more than the limit of 10 jobs (one per row)" in message and "--max-jobs N" in message
    assert ("has 13 lines" if suffix == ".csv" else "has 12 rows") in message
    assert len(load_manifest(path, "cpu", Limits(max_jobs=12)).jobs) == 12


def test_rows_that_take_videos_are_counted_before_they_multiply(folder):
    # 20 source jobs under one id; a row taking two of their videos pairs with every combination: 400 jobs
    sources = "\n".join(f"  - {{id: low, model: zeroscope-576w, num_frames: 8, seed: {seed}}}" for seed in range(20))
    taker = '  - {model: zeroscope-xl, video: "@low", negative_prompt: "@low", seed: 1, height: 576, width: 1024}'
    path = write(folder, f"defaults: {{prompt: a rocket}}\nrows:\n{sources}\n{taker}\n")

    message = str(load_error(path, max_jobs=100))
    assert "more than 100 jobs (the limit): 20 before this row" in message
    assert "adds 400" in message and "--max-jobs N" in message
    assert len(load_manifest(path, "cpu", Limits(max_jobs=420)).jobs) == 420


def test_pairing_by_index_matches_the_full_product():
    """The index that counts a taking row's pairings makes the pairs (and order) of filtering every combination."""
    rng = random.Random(7)

    class FakeJob:
        def __init__(self, coords: dict) -> None:
            self.coords = coords

    for _ in range(300):
        sources = []
        for _ in range(rng.randint(1, 3)):
            source = _Sources()
            for _ in range(rng.randint(0, 5)):
                keys = rng.sample(["seed", "fps", "motion"], rng.randint(0, 3))
                source.add(FakeJob({key: rng.choice([1, 2, 2.0, [1], None]) for key in keys}))
            sources.append(source)
        wanted = {key: rng.choice([1, 2, [1], None]) for key in rng.sample(["seed", "fps", "motion"], rng.randint(0, 3))}

        expected = []
        for combo in itertools.product(*(source.jobs for source in sources)):
            merged = {}
            for job in combo:
                merged.update(job.coords)
            if not any(merged.get(key, value) != value for key, value in wanted.items()):
                expected.append(combo)
        pairs = _pairings(_Entry({}, "rows[9]", wanted), sources)
        assert pairs.count == len(expected)
        assert list(pairs) == expected


# -- 2b. a legitimate sweep: fast, and the same job ids as the one-job-at-a-time computation ------------


def test_sweep_job_ids_are_those_of_compute_job_id(folder):
    path = write(
        folder,
        f"""\
        defaults: {{{ROW}}}
        rows: [{{}}, {{scheduler: euler, vae_tiling: true}}, {{dtype: float16}}]
        sweep:
          motion_bucket_id: [60, 120]
          noise_aug_strength: [0.0, -0.0, 0.1]
        seeds: [1, 2]
        """,
    )

    jobs = load_manifest(path, "cpu").jobs
    assert len({job.job_id for job in jobs}) == len(jobs) == 3 * 2 * 3 * 2
    for job in jobs:
        assert job.job_id == compute_job_id(
            family=job.family,
            model_id=job.model_id,
            model_revision=job.model_revision,
            is_local=is_local(job.model_id),
            dtype=job.dtype,
            variant=job.variant,
            generator_device=job.generator_device,
            seed=job.seed,
            params=job.params,
            input_sha256=job.input_sha256,
            components={key: (None, job.component_revisions[key]) for key in job.components},
            options=pixel_options(job.options),
        )


def canonical_job_id(*, seed, params, input_sha256, components=None, options=None, **fixed) -> str:
    """The job id formula written out, as compute_job_id had it before JobIdMaker: the canonical JSON's sha256."""
    identity = {
        "scheme": 1,
        "family": fixed["family"],
        "model": None if fixed["is_local"] else fixed["model_id"],
        "revision": fixed["model_revision"],
        "dtype": fixed["dtype"],
        "variant": fixed["variant"],
        "generator_device": fixed["generator_device"],
        "seed": seed,
        "params": {key: input_sha256.get(key, value) for key, value in params.items()},
    }
    if components:
        identity["components"] = components
    if options:
        identity["options"] = options
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def test_job_ids_are_the_canonical_json_hash_byte_for_byte():
    rng = random.Random(3)
    for _ in range(500):
        fixed = {
            "family": rng.choice(["svd", 'a"b', "ü"]),
            "model_id": rng.choice(["org/name", "/a/folder"]),
            "model_revision": rng.choice(["sha256:ab", "c" * 40]),
            "is_local": rng.random() < 0.5,
            "dtype": rng.choice(["float32", "bfloat16"]),
            "variant": rng.choice([None, "fp16"]),
            "generator_device": rng.choice(["cpu", "cuda"]),
            "components": rng.choice([None, {}, {"b": (None, "sha256:x"), "a": ("o/n", "c")}]),
            "options": rng.choice([None, {}, {"scheduler": "euler", "freeu": {"s1": 0.9}, "step_cache": {"type": "x"}}]),
        }
        params = {"image": "/p.png", "fps": rng.randint(1, 30), "noise": rng.random(), "prompt": rng.choice([None, 'ü\n"'])}
        hashes = rng.choice([{}, {"image": "feed"}])
        seed = rng.choice([0, 2**63 - 1, rng.randint(0, 10**9)])
        expected = canonical_job_id(**fixed, seed=seed, params=params, input_sha256=hashes)
        maker = JobIdMaker(**fixed)
        assert maker.job_id(maker.params_part(params, hashes), seed) == expected
        assert compute_job_id(**fixed, seed=seed, params=params, input_sha256=hashes) == expected


#: Fixed inputs and the ids compute_job_id gave them when it built the JSON itself: a job's id must never move.
GOLDEN_JOB_IDS = [
    (
        dict(
            family="svd",
            model_id="stabilityai/stable-video-diffusion-img2vid-xt",
            model_revision="9e43909513c6714f1bc78bcb44d96e733cd242aa",
            is_local=False,
            dtype="float16",
            variant="fp16",
            generator_device="cpu",
            seed=42,
            params={"image": "/data/rocket.png", "num_frames": 14, "motion_bucket_id": 127, "noise_aug_strength": 0.02},
            input_sha256={"image": "5f2b0e8d" * 8},
        ),
        "93dcf3913c2627bf",
    ),
    (
        dict(
            family="animatediff",
            model_id="/models/tiny",
            model_revision="sha256:" + "ab" * 32,
            is_local=True,
            dtype="float32",
            variant=None,
            generator_device="cuda",
            seed=2**63 - 1,
            params={"prompt": 'a "rocket" über the sea\n', "guidance_scale": 7.5, "negative_prompt": None},
            input_sha256={},
            components={
                "motion_adapter": ("guoyww/animatediff-motion-adapter-v1-5-2", "c" * 40),
                "controlnet": (None, "sha256:" + "01" * 32),
            },
            options={"scheduler": "euler", "freeu": {"s1": 0.9, "s2": 0.2, "b1": 1.2, "b2": 1.4}},
        ),
        "435075e5dfae8673",
    ),
    (
        dict(
            family="svd",
            model_id="m/x",
            model_revision="r",
            is_local=False,
            dtype="bfloat16",
            variant=None,
            generator_device="cpu",
            seed=0,
            params={"video": "@0123456789abcdef", "strength": -0.0},
            input_sha256={"video": "job:0123456789abcdef"},
            components={},
            options={},
        ),
        "c9e21234897391fa",
    ),
]


@pytest.mark.parametrize(("values", "job_id"), GOLDEN_JOB_IDS, ids=["hub", "local-components-options", "chained-empty"])
def test_job_ids_of_fixed_inputs_never_change(values, job_id):
    assert compute_job_id(**values) == job_id
    assert canonical_job_id(**values) == job_id


# -- 3. the file's size, before it is read --------------------------------------------------------


def test_a_manifest_past_the_default_size_is_refused_unread(folder):
    path = folder / "big.yaml"
    with open(path, "wb") as handle:
        handle.truncate(50 * MiB)  # sparse: 50 MiB by its size, nothing to read

    refused(folder, path, "is 50 MiB, more than the 16 MiB limit for a YAML manifest", "--max-manifest-mb N")


@pytest.mark.parametrize(("name", "default"), [("m.yaml", 16), ("m.csv", 256)])
def test_the_size_limit_is_per_kind_and_can_be_set(folder, name, default):
    path = write(folder, "model,image,seed\nsvd-xt,rocket.png,1\n" if name.endswith(".csv") else f"defaults: {{{ROW}, seed: 1}}\n", name)
    assert Limits().manifest_bytes(Path(name).suffix) == default * MiB

    message = str(load_error(path, max_manifest_bytes=20))
    assert f"is {path.stat().st_size} bytes, more than the 20 bytes limit" in message
    assert "--max-manifest-mb N" in message
    assert load_manifest(path, "cpu", Limits(max_manifest_bytes=MiB)).jobs


# -- 4. image and video sizes, from the header, before decoding -----------------------------------------


def png_declaring(path: Path, width: int, height: int) -> Path:
    """A few-hundred-byte PNG whose header declares ``width`` x ``height`` (a decompression bomb's header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\0" * (width + 1) * 4)  # its first rows only
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b""))
    return path


def test_an_image_declaring_too_many_pixels_is_refused_before_decoding(folder):
    png_declaring(folder / "bomb.png", 20000, 20000)
    path = write(folder, "defaults: {model: svd-xt, image: bomb.png, seed: 1}\n")

    for command in ("validate", "run"):
        refused(
            folder,
            path,
            "job 0 (defaults): image='bomb.png': the image is 20000x20000 (400,000,000 pixels)",
            "more than the limit of 67,108,864 (8192x8192)",
            "give a smaller image",
            command=command,
        )


def test_the_pixel_limit_can_be_set(folder):
    path = write(folder, f"defaults: {{{ROW}, seed: 1}}\n")

    assert "more than the limit of 100 (10x10)" in str(load_error(path, max_image_pixels=100))
    assert load_manifest(path, "cpu", Limits(max_image_pixels=2**20)).jobs


def test_an_image_the_decoder_fails_on_is_a_problem(folder):
    data = (folder / "rocket.png").read_bytes()
    (folder / "cut.png").write_bytes(data[: len(data) // 2])  # a valid header, half its pixels
    header = data[: data.index(b"IDAT") - 4]
    (folder / "garbled.png").write_bytes(header + struct.pack(">I", 8) + b"IDAT" + b"not zlib" + b"\0" * 4 + data[-12:])
    path = write(folder, "defaults: {model: svd-xt, seed: 1}\nrows: [{image: cut.png}, {image: garbled.png}]\n")

    error = load_error(path)
    assert [(problem.where, problem.key) for problem in error.problems] == [("job 0 (rows[0])", "image"), ("job 1 (rows[1])", "image")]
    assert all("not a readable image" in problem.message for problem in error.problems)


def test_a_video_whose_frames_are_too_large_is_refused(folder):
    make_video(folder / "clip.mp4", frames=2, height=64, width=96)
    path = write(folder, "defaults: {model: zeroscope-xl, prompt: a rocket, video: clip.mp4, seed: 1}\n")

    message = str(load_error(path, max_image_pixels=96 * 64 - 1))
    assert "video='clip.mp4': the video's frames are 96x64 (6,144 pixels), more than the limit of 6,143" in message
    assert load_manifest(path, "cpu", Limits(max_image_pixels=96 * 64)).jobs


# -- 5. run names ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["..", ".", ".hidden", "-x", "a/b", "../up", "a b", "x" * 101, "", "ünï"])
def test_an_unsafe_name_is_refused(folder, name):
    path = write(folder, yaml.safe_dump({"name": name, "defaults": {"model": "svd-xt", "image": "rocket.png", "seed": 1}}))

    for command in ("validate", "run"):
        refused(folder, path, "must be a folder name: 1-100 letters, digits", command=command)


@pytest.mark.parametrize("name", ["demo", "v1.2_run-3", "A" * 100])
def test_a_safe_name_is_kept(folder, name):
    path = write(folder, yaml.safe_dump({"name": name, "defaults": {"model": "svd-xt", "image": "rocket.png", "seed": 1}}))

    assert load_manifest(path, "cpu").name == name


@pytest.mark.parametrize(
    ("stem", "suffix", "fix"),
    [
        ('"><img src=x onerror=alert(3)>', ".csv", "rename the file"),
        (".hidden", ".parquet", "rename the file"),
        ("two words", ".yaml", "rename the file, or add `name: my-run` to it"),
    ],
)
def test_a_file_stem_that_is_no_folder_name_is_refused(folder, stem, suffix, fix):
    path = folder / f"{stem}{suffix}"
    frame = pd.DataFrame([{"model": "svd-xt", "image": "rocket.png", "seed": 1}])
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        path.write_text(f"defaults: {{{ROW}, seed: 1}}\n")

    refused(folder, path, f"the file name {stem!r} names the run", fix)
    if suffix == ".yaml":  # a name: of its own fixes it
        path.write_text(f"name: words\ndefaults: {{{ROW}, seed: 1}}\n")
        assert load_manifest(path, "cpu").name == "words"


# -- 6. files that are not a UTF-8 text manifest --------------------------------------------------------


@pytest.mark.parametrize("name", ["bom.yaml", "bom.csv"])
def test_utf8_with_a_byte_order_mark_is_text(folder, name):
    text = "model,image,seed\nsvd-xt,rocket.png,1\n" if name.endswith(".csv") else f"defaults: {{{ROW}, seed: 1}}\n"
    path = folder / name
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())

    assert len(load_manifest(path, "cpu").jobs) == 1


@pytest.mark.parametrize(
    ("name", "make", "fragment"),
    [
        ("m.yaml", lambda path: path.mkdir(), "is a folder, not a manifest file"),
        ("m.yaml", lambda path: os.mkfifo(path), "is not a regular file (a pipe, socket or device)"),
        ("m.yaml", lambda path: path.write_bytes("defaults: {prompt: café}\n".encode("latin-1")), "is not UTF-8 text (byte 0xe9 at offset 22)"),
        ("m.csv", lambda path: path.write_bytes("model,prompt\nsvd-xt,café\n".encode("latin-1")), "is not UTF-8 text"),
        ("m.yaml", lambda path: path.write_bytes(bytes(range(256)) * 8), "is not a text file (a NUL byte at offset 0"),
        ("m.yaml", lambda path: path.write_text("défauts: {\u0007}\n"), "not valid YAML"),
        ("m.yaml", lambda path: path.write_text("defaults: {seed: " + "9" * 5000 + "}\n"), "not valid YAML: a value no type takes"),
        ("m.yaml", lambda path: path.write_text("description: " + "[" * 5000 + "]" * 5000 + "\n"), "not valid YAML"),
        ("m.parquet", lambda path: path.write_bytes(os.urandom(2000)), "cannot read the table"),
    ],
    ids=["folder", "fifo", "latin-1-yaml", "latin-1-csv", "binary", "control-char", "huge-int", "deep", "parquet-garbage"],
)
def test_a_file_that_is_no_text_manifest_is_one_problem(folder, name, make, fragment):
    path = folder / name
    make(path)

    output = refused(folder, path, fragment)
    assert output.splitlines()[0].endswith(": 1 problem, nothing rendered")
