"""Where and with what a video was made, kept where a rerun finds it.

- The software and machine of a process: library versions, the workflow's commit, host, GPU.
- At render time each input file is kept by content under ``OUT/inputs/<sha256><suffix>``, and
  the run's expanded job table is written to ``OUT/manifest.lock.yaml``.
- Each mp4 carries the part of its record that made it (``JobRecord.embedded``) in its
  ``comment`` tag (:data:`METADATA_TAG`); :func:`read_embedded_record` reads it back.
"""

from __future__ import annotations

import functools
import json
import platform
import shutil
import socket
import subprocess
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ReproduceError
from .files import write_atomic
from .layout import KEPT_INPUTS_DIR, LOCK_FILE
from .models import file_sha256

if TYPE_CHECKING:
    from .jobs import Job
    from .manifest import Manifest

SOURCE_DIR = Path(__file__).resolve().parent.parent
#: Larger input files (long videos) are not copied under OUT/inputs/; a rerun needs the original.
KEEP_MAX_BYTES = 64 * 2**20
#: The container tag that holds the embedded record.
METADATA_TAG = "comment"


@functools.cache
def environment() -> dict[str, str | None]:
    """The record columns that are the same for every job of a process."""

    def version(package: str) -> str | None:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return None

    import torch

    return {
        "python_version": platform.python_version(),
        "torch_version": torch.__version__,
        "diffusers_version": version("diffusers"),
        "transformers_version": version("transformers"),
        "videosweep_version": version("videosweep"),
        "git_commit": git_commit(),
        "host": socket.gethostname(),
    }


def git_commit() -> str | None:
    """The commit of the videosweep checkout that runs, ``+dirty`` with uncommitted changes; None outside git."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(SOURCE_DIR), *args], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def gpu_name(device: str) -> str | None:
    if not device.startswith("cuda"):
        return None
    import torch

    return torch.cuda.get_device_name(device)


def keep_inputs(job: Job, out_root: Path) -> None:
    """Copy each input file of ``job`` to ``OUT/inputs/<sha256><suffix>`` (atomically, once), so a rerun finds it by hash.

    Raises if a file no longer has the hash the job id was computed with: the video would not be the job's.
    """
    for key, digest in job.input_sha256.items():
        if digest.startswith("job:"):  # another job's video: it stays under OUT/videos/
            continue
        source = Path(job.params[key])
        kept = out_root / KEPT_INPUTS_DIR / f"{digest}{source.suffix}"
        if kept.is_file() or source.stat().st_size > KEEP_MAX_BYTES:
            continue

        def copy_checked(scratch: Path) -> None:
            shutil.copyfile(source, scratch)
            now = file_sha256(scratch)
            if now != digest:
                raise ReproduceError(
                    f"{key}: {source} changed after the manifest was checked (sha256 {now}, expected {digest}); run again"
                )

        write_atomic(kept, copy_checked)


def write_lock(manifest: Manifest, out_root: Path) -> Path:
    """``OUT/manifest.lock.yaml``: the expanded job table of a run, with resolved revisions and input hashes."""
    import yaml

    lock = {
        "manifest": str(manifest.path.resolve()),
        "manifest_sha256": manifest.sha256,
        "device": manifest.device,
        "jobs": [job.model_dump(mode="json") for job in manifest.jobs],
    }
    return write_atomic(out_root / LOCK_FILE, lambda scratch: scratch.write_text(yaml.safe_dump(lock, sort_keys=False)))


def read_embedded_record(video: Path) -> dict[str, Any]:
    """The record an mp4 carries; ReproduceError if it carries none."""
    from .video import read_mp4_metadata

    if not video.is_file():
        raise ReproduceError(f"no such file {video}")
    text = read_mp4_metadata(video).get(METADATA_TAG)
    try:
        record = json.loads(text) if text else None
    except ValueError:
        record = None
    if not isinstance(record, dict) or "job_id" not in record:
        tag = f"its '{METADATA_TAG}' tag is {text!r}" if text else f"no '{METADATA_TAG}' tag: not rendered by videosweep"
        raise ReproduceError(f"{video} carries no videosweep record ({tag})")
    return record
