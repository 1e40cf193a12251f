"""Compacting the results parts: the same table before and after, readers meanwhile see every attempt once,
a kill at any step leaves a root that reads the same and that the next compaction finishes; `videosweep compact`."""

import json
import os
import signal
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from videosweep.flows.cli import app
from videosweep.tasks import results
from videosweep.tasks.outroot import claim
from videosweep.tasks.results import COMPACTED_PREFIX, JOURNAL, compact, compact_after_run, read_results, write_record

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def attempt(index: int, number: int = 1, run: str = "run-1", status: str = "ok") -> dict:
    """Attempt ``number`` of job ``index``: a few typed columns filled, the others null, as a real part."""
    finished = T0 + timedelta(seconds=10 * index + number)
    return {
        "job_id": f"{index:016x}", "run_id": run, "attempt": number, "status": status, "job_index": index,
        "seed": 1000 + index, "motion_bucket_id": 60 + index, "noise_aug_strength": 0.02 * index,
        "video_width": 48, "cache_hit": index % 2 == 0, "total_s": 3.0 + index, "load_s": 30.0 if index == 0 else 0.0,
        "motion_score": None if status != "ok" else 0.01 * index, "started_at": finished - timedelta(seconds=3),
        "finished_at": finished, "sweep_json": json.dumps({"seed": 1000 + index}),
    }


def build(root: Path, jobs: int) -> list[tuple[str, int]]:
    """``jobs`` jobs, the first three failed once and rendered again by a second run, and one part of an older
    version of videosweep (two columns); every (job_id, attempt) written."""
    for index in range(jobs):
        write_record(root, attempt(index, status="failed" if index < 3 else "ok"))
    for index in range(3):
        write_record(root, attempt(index, 2, "run-2"))
    pq.write_table(pa.table({"job_id": ["0" * 15 + "f"], "status": ["ok"]}), root / "results" / "part-0-old.parquet")
    return seen(root)


def parts(root: Path) -> list[str]:
    return sorted(path.name for path in (root / "results").glob("part-*.parquet"))


def seen(root: Path) -> list[tuple[str, int]]:
    """(job_id, attempt) of every row read, sorted (-1: the older part's attempt, which it lacks)."""
    table = read_results(root, ["job_id", "attempt"])
    return sorted(zip(table["job_id"], table["attempt"].fillna(-1).astype(int)))


def test_compaction_keeps_every_attempt_and_the_table_reads_the_same(tmp_path: Path):
    build(tmp_path, 12)
    before = read_results(tmp_path)
    done = compact(tmp_path)
    assert (done.parts_before, done.parts_after, done.merged, done.rows) == (16, 1, 16, 16)
    [part] = parts(tmp_path)
    assert part.startswith(COMPACTED_PREFIX) and not (tmp_path / "results" / JOURNAL).exists()
    pd.testing.assert_frame_equal(read_results(tmp_path), before)  # values, order and dtypes
    pd.testing.assert_frame_equal(read_results(tmp_path, ["job_id", "status"]), before[["job_id", "status"]])
    assert pq.read_schema(tmp_path / "results" / part).names == before.columns.tolist()  # every column, for plain readers
    assert len(pd.read_parquet(tmp_path / "results")) == 16

    write_record(tmp_path, attempt(50))  # a later run adds a part; compacting again merges it with the compacted one
    after_run = read_results(tmp_path)
    assert compact(tmp_path).merged == 2 and len(parts(tmp_path)) == 1
    pd.testing.assert_frame_equal(read_results(tmp_path), after_run)
    assert compact(tmp_path).merged == 0  # one part: nothing to do


def test_an_unreadable_part_is_left_where_it_is(tmp_path: Path, caplog):
    build(tmp_path, 4)
    broken = tmp_path / "results" / "part-00-broken.parquet"
    broken.write_bytes(b"PAR1 not really")
    before = read_results(tmp_path)
    compact(tmp_path)
    assert broken.exists() and len(parts(tmp_path)) == 2
    pd.testing.assert_frame_equal(read_results(tmp_path), before)


def killed_compaction(root: Path, call: int) -> bool:
    """Compact ``root`` in a forked child that SIGKILLs itself at its ``call``-th rename or delete (os.replace,
    os.unlink); whether it got that far and died there."""
    child = os.fork()
    if child == 0:  # pragma: no cover - the child: it dies, or exits 0 having finished before that call
        try:
            calls = [0]

            def dying(real):
                def wrapper(*args, **kwargs):
                    calls[0] += 1
                    if calls[0] == call:
                        os.kill(os.getpid(), signal.SIGKILL)
                    return real(*args, **kwargs)

                return wrapper

            os.replace, os.unlink = dying(os.replace), dying(os.unlink)
            compact(root)
        finally:
            os._exit(0)
    _, status = os.waitpid(child, 0)
    return os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


@pytest.fixture(scope="module")
def built_root(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    root = tmp_path_factory.mktemp("kills") / "root"
    build(root, 10)
    return root, read_results(root)


# renames and deletes of a compaction of 14 parts: no journal of a killed one to remove (1), journal renamed (2),
# its scratch name unlinked (3), compacted part renamed (4), its scratch unlinked (5), 14 replaced parts
# deleted (6-19), journal deleted (20)
@pytest.mark.parametrize("call", [2, 3, 4, 5, 12, 20])
def test_a_kill_at_any_step_reads_the_same_and_the_next_compaction_finishes(built_root, tmp_path: Path, call):
    import shutil

    source, before = built_root
    root = tmp_path / "root"
    shutil.copytree(source, root)
    assert killed_compaction(root, call)
    pd.testing.assert_frame_equal(read_results(root), before)
    with claim(root, "compaction", "test"):  # as `videosweep compact`: the root's tidying removes the dead scratch files
        compact(root)
    assert len(parts(root)) == 1 and not (root / "results" / JOURNAL).exists()
    assert not [path.name for path in (root / "results").iterdir() if path.name.startswith(".")]
    pd.testing.assert_frame_equal(read_results(root), before)


def test_a_reader_whose_listing_is_compacted_away_reads_again(tmp_path: Path, monkeypatch):
    """The window a concurrent reader can fall in: it listed the small parts, then they were compacted and deleted."""
    build(tmp_path, 6)
    before = read_results(tmp_path)
    stale = results.live_parts(tmp_path)
    compact(tmp_path)
    listings = iter([stale])
    real = results.live_parts
    monkeypatch.setattr(results, "live_parts", lambda root: next(listings, None) or real(root))
    pd.testing.assert_frame_equal(read_results(tmp_path), before)


def test_readers_during_a_compaction_see_every_attempt_once(tmp_path: Path):
    expected = build(tmp_path, 20)
    child = os.fork()
    if child == 0:  # pragma: no cover - the child compacts, slowed down so that reads fall in every step
        try:
            def slowed(real, seconds):
                def wrapper(*args, **kwargs):
                    time.sleep(seconds)
                    return real(*args, **kwargs)

                return wrapper

            os.unlink, os.replace = slowed(os.unlink, 0.02), slowed(os.replace, 0.1)
            compact(tmp_path)
        finally:
            os._exit(0)
    reads = 0
    while os.waitpid(child, os.WNOHANG) == (0, 0):
        assert seen(tmp_path) == expected
        reads += 1
    assert reads >= 2 and len(parts(tmp_path)) == 1 and seen(tmp_path) == expected


def test_the_end_of_a_run_compacts_only_when_there_is_enough_to_gain(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(results, "AUTO_COMPACT_PARTS", 4)
    monkeypatch.setattr(results, "MAX_COMPACTED", 2)
    for index in range(3):
        write_record(tmp_path, attempt(index))
    assert compact_after_run(tmp_path).merged == 0 and len(parts(tmp_path)) == 3  # little to do: left as is
    write_record(tmp_path, attempt(3))
    assert compact_after_run(tmp_path).merged == 4
    for index in range(4, 8):
        write_record(tmp_path, attempt(index))
    compact_after_run(tmp_path)  # the new small parts only: the first compacted part is not rewritten
    assert [name.startswith(COMPACTED_PREFIX) for name in parts(tmp_path)] == [True, True]
    before = read_results(tmp_path)
    for index in range(8, 12):
        write_record(tmp_path, attempt(index))
    compact_after_run(tmp_path)  # MAX_COMPACTED compacted parts: everything into one
    assert len(parts(tmp_path)) == 1 and len(read_results(tmp_path)) == 12
    pd.testing.assert_frame_equal(read_results(tmp_path).iloc[:8], before)


def test_the_end_of_a_run_leaves_the_parts_when_the_disk_is_full(tmp_path: Path, monkeypatch, caplog):
    build(tmp_path, 4)
    monkeypatch.setattr(results, "AUTO_COMPACT_PARTS", 2)
    before = read_results(tmp_path)

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pq, "write_table", full)
    assert compact_after_run(tmp_path) is None
    assert "videosweep compact" in caplog.text and len(parts(tmp_path)) == 8
    pd.testing.assert_frame_equal(read_results(tmp_path), before)


def videosweep(*args) -> object:
    return CliRunner().invoke(app, [*map(str, args)], catch_exceptions=False)


def test_cli_compacts_and_refuses_a_root_a_run_holds(tmp_path: Path):
    build(tmp_path, 4)
    before = read_results(tmp_path)
    holding, release = threading.Event(), threading.Event()

    def run():
        with claim(tmp_path, "20260101T000000-abcdef", "sweep"):
            holding.set()
            release.wait(30)

    holder = threading.Thread(target=run)
    holder.start()
    try:
        holding.wait(30)
        busy = videosweep("compact", tmp_path)
    finally:
        release.set()
        holder.join()
    assert busy.exit_code == 2 and "Traceback" not in busy.output
    assert "cannot compact now: run 20260101T000000-abcdef of manifest 'sweep'" in busy.output
    assert len(parts(tmp_path)) == 8

    result = videosweep("compact", tmp_path)
    assert result.exit_code == 0, result.output
    assert "compacted 8 parts (8 attempts) into one: 8 files" in result.output and len(parts(tmp_path)) == 1
    pd.testing.assert_frame_equal(read_results(tmp_path), before)
    assert "nothing to compact: 1 part(s)" in videosweep("compact", tmp_path).output
    missing = videosweep("compact", tmp_path / "nowhere")
    assert missing.exit_code == 2 and "no results under" in missing.output and not (tmp_path / "nowhere").exists()
