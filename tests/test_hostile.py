"""What an unlucky or hostile user leaves in an output root, or gives as one: the run copes, says so in one line, loses nothing.

Stray scratch files of a killed run, a truncated or rewritten video, a truncated results part,
an --out that cannot be used, a manifest where the run writes, and the exit-code contract
(2: the input is wrong; 1 with a log file: a bug).
"""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from videosweep.flows.cli import app, main

from .conftest import ROCKET


def videosweep(*args):
    return CliRunner().invoke(app, [str(arg) for arg in args], catch_exceptions=False)


def small(folder: Path, seeds: int = 2) -> Path:
    (folder / "m.yaml").write_text(
        f"name: hostile\ndefaults: {{model: tiny-svd, image: {ROCKET}, height: 32, width: 48, num_frames: 2, "
        f"num_inference_steps: 1}}\nseeds: {{from: 1, count: {seeds}}}\n"
    )
    return folder / "m.yaml"


@pytest.fixture
def rendered(tiny_svd, tmp_path) -> Path:
    """An output root with two rendered jobs."""
    out = tmp_path / "out"
    result = videosweep("run", small(tmp_path), "--out", out, "--device", "cpu")
    assert result.exit_code == 0, result.output
    return out


def dead_pid() -> int:
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    return done.pid


def test_the_next_run_removes_what_a_kill_mid_write_left_and_keeps_what_a_live_process_writes(rendered, tmp_path):
    stale = [rendered / "videos" / f".abc.{dead_pid()}.tmp.mp4", rendered / "results" / f".part-x.{dead_pid()}.tmp.parquet"]
    live = rendered / "grids" / f".grid-x.{os.getpid()}.tmp.mp4"  # another command of this user, writing right now
    for path in [*stale, live]:
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"half a file")
    result = videosweep("run", small(tmp_path), "--out", rendered, "--device", "cpu")
    assert result.exit_code == 0 and "0 ok, 0 failed, 2 skipped" in result.output
    assert not any(path.exists() for path in stale)
    assert live.exists()


def test_a_truncated_or_rewritten_video_is_rendered_again(rendered, tmp_path):
    videos = sorted((rendered / "videos").glob("*.mp4"))
    truncated, rewritten = videos
    truncated.write_bytes(truncated.read_bytes()[:1000])
    data = bytearray(rewritten.read_bytes())
    data[-100:] = bytes(100)  # same size, other bytes (and a new mtime): only the sha256 can tell
    rewritten.write_bytes(bytes(data))

    result = videosweep("run", small(tmp_path), "--out", rendered, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "2 ok, 0 failed, 0 skipped" in result.output
    table = pd.read_parquet(rendered / "results")
    latest = table.sort_values("attempt").drop_duplicates("job_id", keep="last")
    assert list(latest["attempt"]) == [2, 2]
    for row in latest.itertuples():
        from videosweep.tasks.models import file_sha256

        assert file_sha256(rendered / row.video_path) == row.video_sha256
        assert (rendered / row.video_path).stat().st_size == row.video_bytes


def test_an_untouched_video_is_trusted_without_reading_it(rendered, monkeypatch):
    from videosweep.tasks import results

    monkeypatch.setattr(results, "file_sha256", lambda path: pytest.fail(f"hashed {path} although nothing changed"))
    assert len(results.history(rendered).finished) == 2


def test_a_truncated_results_part_is_set_aside_and_its_job_renders_again(rendered, tmp_path, caplog):
    part = sorted((rendered / "results").glob("part-*.parquet"))[0]
    os.truncate(part, 100)

    listing = videosweep("results", rendered)  # reading is not blocked: the part is skipped, with a warning
    assert listing.exit_code == 0, listing.output
    assert "1 of 1 jobs" in listing.output

    result = videosweep("run", small(tmp_path), "--out", rendered, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "1 ok, 0 failed, 1 skipped" in result.output
    set_aside = rendered / "results" / "_unreadable" / part.name
    assert set_aside.is_file() and not part.exists()
    assert any(str(set_aside) in message for message in caplog.messages), "the warning names where the part went"
    assert len(pd.read_parquet(rendered / "results")) == 2


@pytest.mark.parametrize("kind", ["a file", "read-only"])
def test_an_unusable_out_is_refused_in_one_line(tiny_svd, tmp_path, kind):
    out = tmp_path / "out"
    if kind == "a file":
        out.write_text("not a folder")
    else:
        out.mkdir()
        if os.geteuid() == 0:  # root writes anywhere a mode allows: a read-only mount is what refuses it
            mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(out)], capture_output=True)
            if mounted.returncode != 0:
                pytest.skip("root here cannot mount a read-only tmpfs")
        else:
            out.chmod(0o555)
    try:
        result = videosweep("run", small(tmp_path), "--out", out, "--device", "cpu")
    finally:
        if kind == "read-only" and os.geteuid() == 0:
            subprocess.run(["umount", "-l", str(out)], check=False)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and f"--out {out}" in result.output
    assert "choose another --out" in result.output and len(result.output.strip().splitlines()) == 1


def test_a_manifest_where_the_run_writes_is_refused(tiny_svd, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    lock = out / "manifest.lock.yaml"
    lock.write_text(small(tmp_path).read_text())
    before = lock.read_text()
    result = videosweep("run", lock, "--out", out, "--device", "cpu")
    assert result.exit_code == 2 and "move it out of there" in result.output
    assert lock.read_text() == before, "the manifest was overwritten"


def test_a_bug_exits_1_with_one_line_naming_the_log_and_bad_input_exits_2(tiny_svd, tmp_path, monkeypatch, capsys):
    from videosweep.flows import process
    from videosweep.tasks import manifest

    monkeypatch.setenv("VIDEOSWEEP_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(process, "_log_path", None)
    monkeypatch.setattr(process, "handle_interrupts", lambda: None)  # this test process keeps its own signals

    def broken(*args, **kwargs):
        raise KeyError("a bug, not the user's input")

    monkeypatch.setattr(manifest, "load_manifest", broken)
    with pytest.raises(SystemExit) as ended:
        main(["validate", str(small(tmp_path)), "--device", "cpu"])
    err = capsys.readouterr().err
    assert ended.value.code == 1
    assert err.count("\n") == 1 and "internal error" in err and "KeyError" in err
    log = process.log_path()
    assert str(log) in err and "Traceback" in log.read_text() and "Traceback" not in err

    monkeypatch.undo()
    monkeypatch.setattr(process, "handle_interrupts", lambda: None)
    with pytest.raises(SystemExit) as ended:
        main(["validate", str(tmp_path / "missing.yaml"), "--device", "cpu"])
    assert ended.value.code == 2 and "no such manifest file" in capsys.readouterr().err


def test_too_small_a_disk_is_refused_before_anything_starts_without_a_traceback(tiny_svd, tmp_path):
    """As a user sees it (the console entry point, a real small disk): one line, exit 2, nothing written."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        command = [sys.executable, "-m", "videosweep.flows.cli", "run", str(small(tmp_path)), "--out", str(disk / "out"), "--device", "cpu"]
        done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=Path(__file__).parent.parent)
        leftovers = sorted(path.name for path in (disk / "out").rglob("*") if path.is_file())
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and done.stderr.strip().count("\n") == 0
    assert "MiB free" in done.stderr and "choose another --out" in done.stderr
    assert leftovers == ["lock"], "nothing but the root's lock file is written"
