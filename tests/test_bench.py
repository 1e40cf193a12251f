"""The GPU benchmark's code paths, run at tiny size on the CPU: a device session is short and in one go.

No timing is asserted (speed goals live in bench/, measured side by side): only that every
variant renders, the JSON a GPU run leaves behind is complete, and the fidelity column means
what the table says.
"""

import json
import os
import subprocess
import sys

from .conftest import REPO

VARIANTS = ["eager", "bare", "docs", "deep-cache-3", "cutoff-0.6", "batch2-render"]


def test_the_gpu_benchmark_runs_every_variant_it_is_given_at_tiny_size(tmp_path):
    out = tmp_path / "speed.json"
    command = [sys.executable, "bench/speed_gpu.py", "--tiny", "--variants", *VARIANTS, "--json", str(out)]
    done = subprocess.run(
        command, cwd=REPO, env=os.environ | {"OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-3000:]

    results = json.loads(out.read_text())
    rows = {row["variant"]: row for row in results["variants"]}
    assert list(rows) == VARIANTS
    assert all(row.get("s_per_video", 0) > 0 for row in rows.values()), [row.get("note") for row in rows.values()]
    assert rows["batch2-render"]["videos_per_call"] == 2 and rows["batch2-render"]["way"] == "render_job, --batch 2"
    assert rows["eager"]["psnr_db"] == 100 and rows["bare"]["psnr_db"] == 100, "the same frames by hand and through a row"
    assert rows["deep-cache-3"]["psnr_db"] < 60, "a quality trade moves the pixels, and the table shows it"
    assert rows["docs"]["x_docs"] == 1 and "tax" in results
    assert "SVD-XT tiny, CPU" in done.stdout and "orchestration tax" in done.stdout


def test_the_crash_harness_kills_resumes_and_finds_nothing_lost(tmp_path):
    """bench/crash.py at a small size: two kills, then the final run; its checks are the ones the README states."""
    out = tmp_path / "crash.json"
    command = [sys.executable, "bench/crash.py", "--kills", "2", "--jobs", "4", "--seed", "3", "--json", str(out)]
    done = subprocess.run(
        command, cwd=REPO, env=os.environ | {"OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["kills"] == 2 and len(figures["rounds"]) == 2 and figures["failures"] == []
    assert figures["processes_left_behind"] == 0 and "every check passed" in done.stdout
