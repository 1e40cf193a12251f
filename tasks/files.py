"""Files written aside and renamed: a reader (or a killed run) never sees half a file, and nothing half-written lasts.

Every file videosweep writes into an output root goes through :func:`write_atomic`: written to
a scratch name that says which process wrote it (``.<stem>.<pid>.tmp<suffix>``), checked where
a check is given, flushed to the disk, then renamed over the final name. A process killed
mid-write leaves only a scratch file, which :func:`remove_stale_scratch` deletes once that
process is gone (every run does so when it takes its output root).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

#: ``.<stem>.<pid>.tmp<suffix>``: the scratch names of :func:`write_atomic`.
SCRATCH = re.compile(r"^\..+\.(\d+)\.tmp(\.[^./]+)?$")


def scratch_path(path: Path) -> Path:
    """Where :func:`write_atomic` writes ``path`` before renaming it (same suffix, so tools pick the same format)."""
    return path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")


def write_atomic(path: Path, write: Callable[[Path], object], check: Callable[[Path], object] | None = None) -> Path:
    """``write(scratch)``, then ``check(scratch)`` (which raises if the file is not right), flush, rename to ``path``.

    If ``write`` or ``check`` raises (a full disk, an encoder that failed, a kill), the scratch file
    goes and ``path`` is left as it was: a final name only ever holds a whole, checked file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = scratch_path(path)
    try:
        write(scratch)
        if check is not None:
            check(scratch)
        _flush_to_disk(scratch)
        os.replace(scratch, path)
    finally:
        scratch.unlink(missing_ok=True)
    return path


def _flush_to_disk(path: Path) -> None:
    """The file's bytes on the disk before its rename, so a crash of the machine cannot leave a renamed empty file."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def remove_stale_scratch(folder: Path, alive: Callable[[int], bool]) -> list[Path]:
    """Delete the scratch files under ``folder`` whose writing process is not ``alive``; return them.

    A scratch file of a live process (another command writing a grid into the same root) is left alone.
    """
    removed = []
    if not folder.is_dir():
        return removed
    for directory, folders, files in os.walk(folder):
        for name in files:
            match = SCRATCH.match(name)
            if match and not alive(int(match.group(1))):
                path = Path(directory) / name
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed
