"""Where and with what a video was made: library versions, the workflow's commit, host, GPU."""

from __future__ import annotations

import functools
import platform
import socket
import subprocess
from importlib import metadata
from pathlib import Path

SOURCE_DIR = Path(__file__).resolve().parent.parent


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
